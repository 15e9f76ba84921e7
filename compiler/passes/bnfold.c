/*
 * bnfold.c: folds an inference batchnorm into the dense layer or convolution
 * before it. With s = gamma / sqrt(running_var + eps) per output channel,
 * bn(layer(x, W, b)) = layer(x, W * s, (b - running_mean) * s + beta), so the
 * batchnorm's kernel disappears from the forward pass. W * s and the new bias
 * are ordinary ops on the weights (rsqrt, mul, add, scale, reshape): lower.c
 * computes such weight-only values once, in the module's prepare function,
 * which the generated init and load run after filling the weights. The
 * weights file keeps its names (gamma, beta and the running statistics stay
 * parameters and buffers).
 * Only for frozen graphs (PassOpts.frozen: forward-only code whose back end
 * runs prepare): in a training build the weights change every step.
 * Needs: shapes, a graph without batchnorm_train. Sets: new nodes before each
 * folded layer, its users' inputs, outputs. Keeps: topological order; the old
 * layer and batchnorm stay in the list, unused, until dce drops them.
 */
#include "passes.h"

typedef struct Fold {
	IrGraph *g;
	int *anchor;		/* by id - old count, for nodes made here: the old node they go before */
} Fold;

static IrNode *node(Fold *f, IrOp op, int nin, IrNode **in, const IrNode *like, int rank, const int64_t *d)
{
	IrNode *n = ir_new_node(f->g, op, nin, in, like->loc);
	n->batched = false;
	n->layer = like->layer;
	n->shape = shape_make(rank, d);
	return n;
}

/* the weights' view with s's channels on the axis of the layer's outputs, sizes 1 elsewhere */
static IrNode *channel_view(Fold *f, IrNode *s, const IrNode *layer, const IrNode *w)
{
	int64_t d[IR_MAX_RANK];
	int axis = layer->op == IR_CONV_T2D ? 1 : 0;	/* conv_transpose2d's weight is [C, F, kh, kw] */
	for (int i = 0; i < w->shape.rank; i++)
		d[i] = i == axis ? w->shape.d[i] : 1;
	return node(f, IR_RESHAPE, 1, &s, s, w->shape.rank, d);
}

/* the folded layer: weight * s and (bias - mean) * s + beta, built before bn */
static IrNode *fold(Fold *f, IrNode *layer, IrNode *bn)
{
	IrNode *gamma = bn->in[1], *beta = bn->in[2], *mean = bn->in[3], *var = bn->in[4], *w = layer->in[1];
	const int64_t *c = gamma->shape.d;
	IrNode *r = node(f, IR_RSQRT, 1, &var, bn, 1, c);
	r->a.eps = bn->a.eps;
	IrNode *in[2] = { gamma, r };
	IrNode *s = node(f, IR_MUL, 2, in, bn, 1, c);
	in[0] = w;
	in[1] = channel_view(f, s, layer, w);
	IrNode *w2 = node(f, IR_MUL, 2, in, layer, w->shape.rank, w->shape.d);
	IrNode *d = node(f, IR_SCALE, 1, &mean, bn, 1, c);
	d->a.scale = -1;
	if (layer->nin == 3) {
		in[0] = layer->in[2];
		in[1] = d;
		d = node(f, IR_ADD, 2, in, bn, 1, c);
	}
	in[0] = d;
	in[1] = s;
	IrNode *e = node(f, IR_MUL, 2, in, bn, 1, c);
	in[0] = e;
	in[1] = beta;
	IrNode *b2 = node(f, IR_ADD, 2, in, bn, 1, c);
	IrNode *lin[3] = { layer->in[0], w2, b2 };
	IrNode *y = ir_new_node(f->g, layer->op, 3, lin, layer->loc);
	y->a = layer->a;
	y->a.bias = 1;
	y->shape = layer->shape;
	y->dtype = layer->dtype;
	y->batched = layer->batched;
	y->layer = layer->layer;
	return y;
}

static bool is_root(const IrGraph *g, const IrNode *n)
{
	for (int i = 0; i < g->noutputs; i++)
		if (g->outputs[i] == n)
			return true;
	return g->loss == n;
}

static int users(const PassUses *u, const IrNode *n)
{
	return u->off[n->id + 1] - u->off[n->id];
}

/* a live inference batchnorm (one that was folded already has no users left)
 * whose input is a layer that nothing else reads */
static bool foldable(const IrGraph *g, const PassUses *u, const IrNode *bn)
{
	if (bn->op != IR_BATCHNORM || (!users(u, bn) && !is_root(g, bn)))
		return false;
	const IrNode *p = bn->in[0];
	if (p->op != IR_DENSE && p->op != IR_CONV2D && p->op != IR_CONV_T2D)
		return false;
	if (users(u, p) != 1 || is_root(g, p) || p->in[1]->batched || p->dtype != DT_F32)
		return false;
	for (int k = 1; k < 5; k++)	/* per-channel vectors as long as the layer's outputs */
		if (bn->in[k]->batched || bn->in[k]->shape.rank != 1 || bn->in[k]->shape.d[0] != p->shape.d[0])
			return false;
	return true;
}

/* puts every node made here before its anchor and renumbers the list */
static void place(Fold *f, int old)
{
	IrGraph *g = f->g;
	IrNode **list = arena_alloc(g->arena, sizeof(IrNode *) * (size_t)(g->nnodes + 1));
	int k = 0, made = old;
	for (int i = 0; i < old; i++) {
		while (made < g->nnodes && f->anchor[made - old] == i)
			list[k++] = g->nodes[made++];
		list[k++] = g->nodes[i];
	}
	for (int i = 0; i < k; i++) {
		list[i]->id = i;
		g->nodes[i] = list[i];
	}
}

/* one sweep: returns the batchnorms folded */
static int sweep(IrGraph *g)
{
	int old = g->nnodes, fired = 0;
	PassUses u = pass_uses(g);
	/* a fold makes 9 nodes at most, and takes at least a layer and a batchnorm */
	Fold f = { .g = g, .anchor = arena_alloc(g->arena, sizeof(int) * (size_t)(old * 5 + 16)) };
	IrNode **repl = pass_repl_new(g);
	for (int i = 0; i < old; i++) {
		IrNode *n = g->nodes[i];
		if (!foldable(g, &u, n))
			continue;
		int before = g->nnodes;
		repl[i] = fold(&f, n->in[0], n);
		for (int k = before; k < g->nnodes; k++)
			f.anchor[k - old] = i;
		fired++;
	}
	if (!fired)
		return 0;
	/* the layers made here may read a batchnorm folded earlier in the sweep too */
	for (int i = 0; i < g->nnodes; i++)
		for (int k = 0; k < g->nodes[i]->nin; k++) {
			IrNode *x = g->nodes[i]->in[k];
			if (x->id < old && g->nodes[x->id] == x && repl[x->id])
				g->nodes[i]->in[k] = repl[x->id];
		}
	pass_remap_roots(g, repl);
	place(&f, old);
	return fired;
}

int pass_bnfold(IrGraph *g)
{
	int fired = 0;
	for (int k; (k = sweep(g));)	/* a layer with two batchnorms in a row folds both */
		fired += k;
	return fired;
}
