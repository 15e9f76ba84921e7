/*
 * bottleneck.c: -fbottleneck[=R], the opt-in bottleneck rewrite. Every KxK
 * convolution with K >= 3 in both dimensions, groups 1, and at least 4R input
 * channels C and 4R filters F becomes three convolutions:
 *   L.reduce  1x1, C -> C/R, no bias
 *   L.conv    KxK, C/R -> C/R, the original stride, padding and dilation, no bias
 *   L.expand  1x1, C/R -> F, with a bias when L had one
 * (C/R rounds down; 4R channels keep it at 4 or more). The parameters are
 * L.reduce.weight, L.conv.weight, L.expand.weight and L.expand.bias; L.weight
 * and L.bias are gone. Non-square kernels qualify when both sides are >= 3
 * (a 1x3 or 3x1 is already thin along one side).
 *
 * It changes the model, so it is not in the -O table: compile.c runs it on the
 * model graph before the inference and training graphs are made from it, and
 * the rewritten model is what trains, saves and loads.
 * Needs: a shaped, verified model graph (no backward or update nodes).
 * Sets: the new nodes' shapes and attributes; ids (renumbered in order).
 * Keeps: the topological order, outputs, loss, every other node, and the
 * output shape of each rewritten layer. A convolution whose new names would
 * clash with an existing parameter stays as written.
 */
#include "passes.h"

#include <string.h>

/* parameter names, as an open-addressing set in the graph's arena */
typedef struct Names {
	const char **slot;
	size_t cap;
} Names;

static size_t hash(const char *s)
{
	size_t h = 1469598103934665603u;
	while (*s)
		h = (h ^ (unsigned char)*s++) * 1099511628211u;
	return h;
}

static bool names_has(const Names *s, const char *name)
{
	for (size_t k = hash(name) & (s->cap - 1); s->slot[k]; k = (k + 1) & (s->cap - 1))
		if (!strcmp(s->slot[k], name))
			return true;
	return false;
}

/* the caller keeps the set at most half full */
static void names_add(Names *s, const char *name)
{
	size_t k = hash(name) & (s->cap - 1);
	while (s->slot[k])
		k = (k + 1) & (s->cap - 1);
	s->slot[k] = name;
}

/* a KxK convolution wide enough on both sides, owning its weight (and bias) */
static bool qualifies(const IrNode *n, int64_t r, const PassUses *u)
{
	if (n->op != IR_CONV2D || n->a.groups != 1 || n->a.kernel[0] < 3 || n->a.kernel[1] < 3)
		return false;
	if (n->in[0]->shape.rank != 3 || n->in[0]->shape.d[0] < 4 * r || n->a.units < 4 * r)
		return false;
	for (int k = 1; k < n->nin; k++) {
		const IrNode *p = n->in[k];
		if (p->op != IR_PARAM || u->off[p->id + 1] - u->off[p->id] != 1)
			return false;
	}
	return true;
}

static IrNode *new_param(IrGraph *g, const IrNode *conv, const char *layer, const char *what, int rank,
			 const int64_t *d)
{
	IrNode *p = ir_new_source(g, IR_PARAM, arena_printf(g->arena, "%s.%s", layer, what), conv->loc);
	p->shape = shape_make(rank, d);
	p->layer = layer;
	return p;
}

/* one convolution of the three: x [C, H, W] -> [f, h, w] with weight [f, C, kh, kw] */
static IrNode *new_conv(IrGraph *g, const IrNode *orig, const char *part, IrNode *x, int64_t f, bool kxk,
			bool bias)
{
	const char *layer = arena_printf(g->arena, "%s.%s", orig->layer, part);
	IrAttrs a = orig->a;
	a.units = f;
	a.bias = bias;
	if (!kxk) {
		a.kernel[0] = a.kernel[1] = a.stride[0] = a.stride[1] = a.dilation[0] = a.dilation[1] = 1;
		memset(a.pad, 0, sizeof a.pad);
		a.pad_same = 0;
	}
	int64_t w[4] = { f, x->shape.d[0], kxk ? a.kernel[0] : 1, kxk ? a.kernel[1] : 1 };
	IrNode *in[3] = { x, new_param(g, orig, layer, "weight", 4, w), NULL };
	if (bias)
		in[2] = new_param(g, orig, layer, "bias", 1, &f);
	IrNode *n = ir_new_node(g, IR_CONV2D, bias ? 3 : 2, in, orig->loc);
	n->a = a;
	/* 1x1 with stride 1 keeps the input's size; the KxK one has the original's */
	int64_t out[3] = { f, kxk ? orig->shape.d[1] : x->shape.d[1], kxk ? orig->shape.d[2] : x->shape.d[2] };
	n->shape = shape_make(3, out);
	n->layer = layer;
	return n;
}

static bool names_free(const Names *s, const IrNode *n, Arena *a)
{
	static const char *const made[] = { "reduce.weight", "conv.weight", "expand.weight", "expand.bias" };
	for (size_t i = 0; i < sizeof made / sizeof made[0]; i++)
		if (names_has(s, arena_printf(a, "%s.%s", n->layer, made[i])))
			return false;
	return true;
}

static void claim(Names *s, const PassBottleneck *b)
{
	for (int k = 1; k < b->reduce->nin; k++)
		names_add(s, b->reduce->in[k]->name);
	for (int k = 1; k < b->conv->nin; k++)
		names_add(s, b->conv->in[k]->name);
	for (int k = 1; k < b->expand->nin; k++)
		names_add(s, b->expand->in[k]->name);
}

/* the new nodes were appended after the first n0; put each group [from[i],
 * to[i]) where its convolution was, drop what it replaced, and renumber */
static void reorder(IrGraph *g, int n0, const int *from, const int *to, const bool *drop, IrNode *const *repl)
{
	IrNode **order = arena_alloc(g->arena, sizeof(IrNode *) * (size_t)(g->nnodes + 1));
	int k = 0;
	for (int i = 0; i < n0; i++) {
		IrNode *n = g->nodes[i];
		if (drop[i])
			continue;
		if (to[i] > from[i]) {
			for (int j = from[i]; j < to[i]; j++)
				order[k++] = g->nodes[j];
			continue;
		}
		pass_remap(n, repl);
		order[k++] = n;
	}
	pass_remap_roots(g, repl);
	for (int i = 0; i < k; i++) {
		order[i]->id = i;
		g->nodes[i] = order[i];
	}
	g->nnodes = k;
}

/* C -> C/R (1x1) -> C/R (KxK) -> F (1x1); the input is already remapped */
static PassBottleneck split(IrGraph *g, IrNode *orig, IrNode *x, int64_t r)
{
	int64_t mid = x->shape.d[0] / r;
	PassBottleneck b = { .orig = orig };
	b.reduce = new_conv(g, orig, "reduce", x, mid, false, false);
	b.conv = new_conv(g, orig, "conv", b.reduce, mid, true, false);
	b.expand = new_conv(g, orig, "expand", b.conv, orig->a.units, false, orig->nin > 2);
	return b;
}

int pass_bottleneck(IrGraph *g, int r, PassBottleneckLog *log)
{
	Arena *a = g->arena;
	int n0 = g->nnodes;
	*log = (PassBottleneckLog){ .r = r };
	/* the graph as written, for the totals before (its nodes are not changed below, only unlisted) */
	log->before = *g;
	log->before.nodes = arena_alloc(a, sizeof(IrNode *) * (size_t)(n0 + 1));
	memcpy(log->before.nodes, g->nodes, sizeof(IrNode *) * (size_t)n0);
	PassUses u = pass_uses(g);
	Names names = { .cap = 16 };
	while (names.cap < 10 * (size_t)n0 + 16)	/* at most 5 names a node, half full */
		names.cap *= 2;
	names.slot = arena_alloc(a, sizeof(char *) * names.cap);
	int nconv = 0;
	for (int i = 0; i < n0; i++) {
		if (ir_is_state(g->nodes[i]))
			names_add(&names, g->nodes[i]->name);
		nconv += g->nodes[i]->op == IR_CONV2D && g->nodes[i]->a.kernel[0] >= 3 && g->nodes[i]->a.kernel[1] >= 3;
	}
	log->convs = arena_alloc(a, sizeof(PassBottleneck) * (size_t)(nconv + 1));
	IrNode **repl = pass_repl_new(g);
	int *from = arena_alloc(a, sizeof(int) * (size_t)(n0 + 1)), *to = arena_alloc(a, sizeof(int) * (size_t)(n0 + 1));
	bool *drop = arena_alloc(a, (size_t)n0 + 1);
	for (int i = 0; i < n0; i++) {
		IrNode *n = g->nodes[i];
		if (!qualifies(n, r, &u) || !n->layer || !names_free(&names, n, a))
			continue;
		IrNode *x = repl[n->in[0]->id] ? repl[n->in[0]->id] : n->in[0];
		from[i] = g->nnodes;
		PassBottleneck b = split(g, n, x, r);
		to[i] = g->nnodes;
		claim(&names, &b);
		for (int k = 1; k < n->nin; k++)
			drop[n->in[k]->id] = true;
		repl[i] = b.expand;
		log->convs[log->n++] = b;
	}
	if (log->n)
		reorder(g, n0, from, to, drop, repl);
	return log->n;
}
