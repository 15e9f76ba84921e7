/*
 * cse.c: merges identical nodes (same op, attributes, shape and inputs) into
 * the first of them. Sources, random draws (dropout masks) and updates are
 * never merged: each is a distinct tensor or effect.
 * Needs: a verified graph. Sets: inputs of users of merged nodes. Keeps: the
 * node list (dce drops the duplicates).
 */
#include "passes.h"

#include <stdint.h>
#include <string.h>

static bool mergeable(const IrNode *n)
{
	IrFamily f = ir_op_family(n->op);
	return f != FAM_SOURCE && f != FAM_RANDOM && f != FAM_UPDATE;
}

static bool attrs_eq(const IrAttrs *a, const IrAttrs *b)
{
	return a->units == b->units && !memcmp(a->kernel, b->kernel, sizeof a->kernel) &&
	       !memcmp(a->stride, b->stride, sizeof a->stride) && !memcmp(a->dilation, b->dilation, sizeof a->dilation) &&
	       !memcmp(a->pad, b->pad, sizeof a->pad) && !memcmp(a->out_pad, b->out_pad, sizeof a->out_pad) &&
	       a->groups == b->groups && a->bias == b->bias && a->pad_same == b->pad_same &&
	       !memcmp(a->up, b->up, sizeof a->up) && a->mode == b->mode && a->alpha == b->alpha && a->p == b->p &&
	       a->momentum == b->momentum && a->eps == b->eps && a->scale == b->scale && a->classes == b->classes &&
	       a->beta1 == b->beta1 && a->beta2 == b->beta2 && a->wd == b->wd && a->nesterov == b->nesterov;
}

static bool same(const IrNode *a, const IrNode *b)
{
	if (a->op != b->op || a->nin != b->nin || a->batched != b->batched || a->dtype != b->dtype ||
	    !shape_eq(a->shape, b->shape) || !attrs_eq(&a->a, &b->a))
		return false;
	for (int k = 0; k < a->nin; k++)
		if (a->in[k] != b->in[k])
			return false;
	return true;
}

static uint64_t hash(const IrNode *n)
{
	uint64_t h = 1469598103934665603u ^ (uint64_t)n->op;
	for (int k = 0; k < n->nin; k++)
		h = (h ^ (uint64_t)n->in[k]->id) * 1099511628211u;
	for (int i = 0; i < n->shape.rank; i++)
		h = (h ^ (uint64_t)n->shape.d[i]) * 1099511628211u;
	return h;
}

int pass_cse(IrGraph *g)
{
	size_t cap = 16;
	while (cap < 2 * (size_t)g->nnodes)
		cap *= 2;
	IrNode **set = arena_alloc(g->arena, sizeof(IrNode *) * cap);
	IrNode **repl = pass_repl_new(g);
	int merged = 0;
	for (int i = 0; i < g->nnodes; i++) {
		IrNode *n = g->nodes[i];
		pass_remap(n, repl);
		if (!mergeable(n))
			continue;
		size_t k = (size_t)hash(n) & (cap - 1);
		while (set[k] && !same(set[k], n))
			k = (k + 1) & (cap - 1);
		if (set[k]) {
			repl[n->id] = set[k];
			merged++;
		} else {
			set[k] = n;
		}
	}
	pass_remap_roots(g, repl);
	return merged;
}
