/*
 * util.c: what several passes share: replacing values in one sweep, dropping
 * nodes and renumbering, users of every node. Needs: a verified graph.
 * Sets: nothing by itself. Keeps: the topological order of the node list.
 */
#include "passes.h"

#include <stdlib.h>

IrNode **pass_repl_new(const IrGraph *g)
{
	return arena_alloc(g->arena, sizeof(IrNode *) * (size_t)(g->nnodes + 1));
}

void pass_remap(IrNode *n, IrNode *const *repl)
{
	for (int k = 0; k < n->nin; k++)
		if (repl[n->in[k]->id])
			n->in[k] = repl[n->in[k]->id];
}

void pass_remap_roots(IrGraph *g, IrNode *const *repl)
{
	for (int i = 0; i < g->noutputs; i++)
		if (repl[g->outputs[i]->id])
			g->outputs[i] = repl[g->outputs[i]->id];
	if (g->loss && repl[g->loss->id])
		g->loss = repl[g->loss->id];
}

int pass_compact(IrGraph *g, const bool *keep)
{
	int k = 0;
	for (int i = 0; i < g->nnodes; i++) {
		IrNode *n = g->nodes[i];
		if (!keep[i])
			continue;
		n->id = k;
		g->nodes[k++] = n;
	}
	int dropped = g->nnodes - k;
	g->nnodes = k;
	return dropped;
}

PassUses pass_uses(const IrGraph *g)
{
	PassUses u;
	u.off = arena_alloc(g->arena, sizeof(int) * (size_t)(g->nnodes + 2));
	for (int i = 0; i < g->nnodes; i++)
		for (int k = 0; k < g->nodes[i]->nin; k++)
			u.off[g->nodes[i]->in[k]->id + 2]++;
	for (int i = 0; i < g->nnodes; i++)
		u.off[i + 2] += u.off[i + 1];
	u.use = arena_alloc(g->arena, sizeof(IrNode *) * (size_t)(u.off[g->nnodes + 1] + 1));
	/* off[i + 1] is the fill cursor of node i; after filling, off[i] .. off[i + 1] */
	for (int i = 0; i < g->nnodes; i++)
		for (int k = 0; k < g->nodes[i]->nin; k++)
			u.use[u.off[g->nodes[i]->in[k]->id + 1]++] = g->nodes[i];
	return u;
}

bool pass_is_const(const IrNode *n, double v)
{
	return n->op == IR_CONST && !n->batched && n->shape.rank == 0 && n->a.scale == v;
}
