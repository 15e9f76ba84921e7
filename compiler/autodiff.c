/*
 * autodiff.c: appends the backward graph, in the same IR, from one gradient
 * rule per op. Reads a shaped graph with a scalar loss; writes new nodes at
 * the end (shapes set here: each gradient has its value's shape).
 *
 * Only values on a path from a parameter to the loss are differentiated; a
 * value used several times sums the gradients of its uses (ad_accum). The
 * rules run in reverse node order, so a value's gradient is complete before
 * its own rule reads it.
 */
#include "autodiff.h"

#include <stdlib.h>
#include <string.h>

typedef struct AdCtx {
	IrGraph *graph;
	IrNode **grad;		/* by node id */
	bool *wanted;		/* on a path from a parameter to the loss */
	int n;			/* nodes before differentiation */
} AdCtx;

static IrNode *like(AdCtx *c, IrOp op, int nin, IrNode *const *in, const IrNode *shape_of)
{
	IrNode *n = ir_new_node(c->graph, op, nin, in, shape_of->loc);
	n->shape = shape_of->shape;
	n->batched = shape_of->batched;
	n->dtype = DT_F32;
	n->layer = shape_of->layer;
	return n;
}

static IrNode *op2(AdCtx *c, IrOp op, IrNode *a, IrNode *b, const IrNode *shape_of)
{
	IrNode *in[2] = { a, b };
	return like(c, op, 2, in, shape_of);
}

static IrNode *op3(AdCtx *c, IrOp op, IrNode *a, IrNode *b, IrNode *d, const IrNode *shape_of)
{
	IrNode *in[3] = { a, b, d };
	return like(c, op, 3, in, shape_of);
}

/* g has the shape of a broadcast result; sum it back to v's shape */
static IrNode *reduce_to(AdCtx *c, IrNode *g, const IrNode *v)
{
	if (shape_eq(g->shape, v->shape))
		return g;
	return like(c, IR_REDUCE_TO, 1, &g, v);
}

/* adds one use's gradient to v's */
static void ad_accum(AdCtx *c, IrNode *v, IrNode *g)
{
	if (!c->wanted[v->id])
		return;
	IrNode *old = c->grad[v->id];
	c->grad[v->id] = old ? op2(c, IR_ADD, old, g, v) : g;
}

/* d(a+b) = g to both; d(a*b)/da = g*b, d(a*b)/db = g*a; each summed back to its shape */
static void grad_add_mul(AdCtx *c, IrNode *n, IrNode *g)
{
	IrNode *a = n->in[0], *b = n->in[1];
	if (n->op == IR_ADD) {
		ad_accum(c, a, reduce_to(c, g, a));
		ad_accum(c, b, reduce_to(c, g, b));
		return;
	}
	if (c->wanted[a->id])
		ad_accum(c, a, reduce_to(c, op2(c, IR_MUL, g, b, n), a));
	if (c->wanted[b->id])
		ad_accum(c, b, reduce_to(c, op2(c, IR_MUL, g, a, n), b));
}

/* out = x w^T + b: dx = g w, dw = g^T x, db = sum of g over the batch */
static void grad_dense(AdCtx *c, IrNode *n, IrNode *g)
{
	IrNode *x = n->in[0], *w = n->in[1];
	if (c->wanted[x->id])
		ad_accum(c, x, op2(c, IR_DENSE_DX, g, w, x));
	if (c->wanted[w->id])
		ad_accum(c, w, op2(c, IR_DENSE_DW, g, x, w));
	if (n->nin > 2 && c->wanted[n->in[2]->id])
		ad_accum(c, n->in[2], like(c, IR_BATCH_SUM, 1, &g, n->in[2]));
}

/*
 * The op whose backward kernel reads the input (x) or the output (y). ReLU's
 * reads y: y > 0 exactly where x > 0 (so the gradient is bitwise the same),
 * and y is what the forward keeps anyway, so the value ReLU reads (often a
 * batchnorm's or a sum's) need not be stored for the backward. Likewise
 * leaky ReLU with a positive slope. PyTorch's ReLU saves its result too.
 */
static IrOp act_bwd(const IrNode *n, bool *reads_output)
{
	IrOp op = n->op;
	*reads_output = op == IR_SIGMOID || op == IR_TANH || op == IR_SOFTMAX || op == IR_LOG_SOFTMAX ||
			op == IR_RELU || (op == IR_LEAKY_RELU && n->a.alpha > 0);
	switch (op) {
	case IR_RELU: return IR_RELU_BWD;
	case IR_LEAKY_RELU: return IR_LEAKY_RELU_BWD;
	case IR_ELU: return IR_ELU_BWD;
	case IR_SIGMOID: return IR_SIGMOID_BWD;
	case IR_TANH: return IR_TANH_BWD;
	case IR_SOFTPLUS: return IR_SOFTPLUS_BWD;
	case IR_GELU: return IR_GELU_BWD;
	case IR_SOFTMAX: return IR_SOFTMAX_BWD;
	case IR_LOG_SOFTMAX: return IR_LOG_SOFTMAX_BWD;
	default: return IR_NOPS;
	}
}

static void grad_loss(AdCtx *c, IrNode *n, IrNode *g)
{
	IrNode *p = n->in[0], *t = n->in[1], *d;
	switch (n->op) {
	case IR_CROSS_ENTROPY: d = op3(c, IR_CROSS_ENTROPY_BWD, g, p, t, p); break;
	case IR_BCE: d = op3(c, IR_BCE_BWD, g, p, t, p); break;
	case IR_MSE: d = op3(c, IR_MSE_BWD, g, p, t, p); break;
	case IR_MAE: d = op3(c, IR_MAE_BWD, g, p, t, p); break;
	default: {
		IrNode *in[4] = { g, p, t, n };
		d = like(c, IR_RMSE_BWD, 4, in, p);
		break;
	}
	}
	ad_accum(c, p, d);
	if (!c->wanted[t->id])
		return;		/* data: a target or an input */
	/* t computed from parameters: mse, mae and rmse depend on p - t, so dt = -dp */
	if (n->op == IR_MSE || n->op == IR_MAE || n->op == IR_RMSE) {
		IrNode *dt = like(c, IR_SCALE, 1, &d, t);
		dt->a.scale = -1;
		ad_accum(c, t, dt);
		return;
	}
	diag_error(n->loc, "nnc cannot train through the second argument of %s yet: it depends on parameters",
		   ir_op_name(n->op));
	diag_hint("the target of %s must be data (a target or an input) in this version", ir_op_name(n->op));
}

/*
 * conv2d gathers a small image from a big one, conv_transpose2d scatters a
 * small one into a big one, with the same geometry and weight layout [small,
 * big/groups, kh, kw]: each is the other's data gradient. The weight gradient
 * correlates the small side with the big side's patches (conv_dw).
 */
static void grad_conv(AdCtx *c, IrNode *n, IrNode *g)
{
	IrNode *x = n->in[0], *w = n->in[1];
	bool gather = n->op == IR_CONV2D;
	if (c->wanted[x->id]) {
		IrNode *d = op2(c, gather ? IR_CONV_T2D : IR_CONV2D, g, w, x);
		d->a = n->a;
		d->a.bias = 0;
		d->a.units = x->shape.d[0];
		ad_accum(c, x, d);
	}
	if (c->wanted[w->id]) {
		IrNode *d = op2(c, IR_CONV_DW, gather ? g : x, gather ? x : g, w);
		d->a = n->a;
		ad_accum(c, w, d);
	}
	if (n->nin > 2 && c->wanted[n->in[2]->id])
		ad_accum(c, n->in[2], like(c, IR_CHANNEL_SUM, 1, &g, n->in[2]));
}

/* y = w (x - mean) / sqrt(var + eps) + b with the batch's statistics */
static void grad_batchnorm(AdCtx *c, IrNode *n, IrNode *g)
{
	IrNode *x = n->in[0], *w = n->in[1], *b = n->in[2];
	if (c->wanted[x->id]) {
		IrNode *d = op3(c, IR_BN_DX, g, x, w, x);
		d->a = n->a;
		ad_accum(c, x, d);
	}
	if (c->wanted[w->id]) {
		IrNode *d = op2(c, IR_BN_DW, g, x, w);
		d->a = n->a;
		ad_accum(c, w, d);
	}
	if (c->wanted[b->id])
		ad_accum(c, b, like(c, IR_CHANNEL_SUM, 1, &g, b));
}

/* each input gets its channels of g back */
static void grad_concat(AdCtx *c, IrNode *n, IrNode *g)
{
	int64_t at = 0;
	for (int k = 0; k < n->nin; k++) {
		IrNode *x = n->in[k];
		if (c->wanted[x->id]) {
			IrNode *d = like(c, IR_SLICE, 1, &g, x);
			d->a.units = at;
			ad_accum(c, x, d);
		}
		at += x->shape.d[0];
	}
}

/* pooling and up-sampling: a backward kernel with the forward's attributes */
static void grad_window(AdCtx *c, IrNode *n, IrNode *g)
{
	IrNode *x = n->in[0], *d;
	switch (n->op) {
	case IR_MAXPOOL: d = op2(c, IR_MAXPOOL_BWD, g, x, x); break;
	case IR_AVGPOOL: d = like(c, IR_AVGPOOL_BWD, 1, &g, x); break;
	case IR_GLOBAL_AVGPOOL: d = like(c, IR_GLOBAL_AVGPOOL_BWD, 1, &g, x); break;
	default: d = like(c, IR_UPSAMPLE_BWD, 1, &g, x); break;
	}
	d->a = n->a;
	ad_accum(c, x, d);
}

static bool rule(AdCtx *c, IrNode *n, IrNode *g)
{
	bool reads_y;
	IrOp bwd = act_bwd(n, &reads_y);
	if (bwd != IR_NOPS) {
		IrNode *d = op2(c, bwd, g, reads_y ? n : n->in[0], n->in[0]);
		d->a = n->a;	/* slope, alpha */
		ad_accum(c, n->in[0], d);
		return true;
	}
	switch (n->op) {
	case IR_DENSE: grad_dense(c, n, g); return true;
	case IR_CONV2D:
	case IR_CONV_T2D: grad_conv(c, n, g); return true;
	case IR_BATCHNORM_TRAIN: grad_batchnorm(c, n, g); return true;
	case IR_CONCAT: grad_concat(c, n, g); return true;
	case IR_MAXPOOL:
	case IR_AVGPOOL:
	case IR_GLOBAL_AVGPOOL:
	case IR_UPSAMPLE: grad_window(c, n, g); return true;
	case IR_ADD:
	case IR_MUL: grad_add_mul(c, n, g); return true;
	case IR_SCALE: {
		IrNode *d = like(c, IR_SCALE, 1, &g, n->in[0]);
		d->a.scale = n->a.scale;
		ad_accum(c, n->in[0], d);
		return true;
	}
	case IR_FLATTEN:
	case IR_RESHAPE:
		ad_accum(c, n->in[0], like(c, IR_RESHAPE, 1, &g, n->in[0]));
		return true;
	case IR_DROPOUT:	/* only in inference graphs, where nothing is trained */
		ad_accum(c, n->in[0], g);
		return true;
	case IR_SUMSQ: {	/* d sum(w^2) = 2 w g */
		IrNode *d = op2(c, IR_SCALE_BY, n->in[0], g, n->in[0]);
		d->a.scale = 2;
		ad_accum(c, n->in[0], d);
		return true;
	}
	case IR_SUMABS:
		ad_accum(c, n->in[0], op2(c, IR_L1_BWD, g, n->in[0], n->in[0]));
		return true;
	case IR_CROSS_ENTROPY:
	case IR_BCE:
	case IR_MSE:
	case IR_MAE:
	case IR_RMSE: grad_loss(c, n, g); return true;
	default:
		return false;
	}
}

/* wanted = reached from a parameter, and reaching the loss */
static void mark(AdCtx *c, const IrNode *loss)
{
	bool *from = calloc((size_t)c->n, 1), *to = calloc((size_t)c->n, 1);
	if (!from || !to) {
		fprintf(stderr, "nnc: out of memory\n");
		exit(1);
	}
	for (int i = 0; i < c->n; i++) {
		IrNode *n = c->graph->nodes[i];
		from[i] = n->op == IR_PARAM;
		for (int k = 0; k < n->nin && !from[i]; k++)
			from[i] = from[n->in[k]->id] && n->op != IR_DROPOUT_MASK;
	}
	to[loss->id] = true;
	for (int i = loss->id; i >= 0; i--) {
		IrNode *n = c->graph->nodes[i];
		for (int k = 0; to[i] && k < n->nin; k++)
			to[n->in[k]->id] = true;
	}
	for (int i = 0; i < c->n; i++)
		c->wanted[i] = from[i] && to[i];
	free(from);
	free(to);
}

IrNode **ad_backward(IrGraph *g)
{
	AdCtx c = { .graph = g, .n = g->nnodes };
	c.grad = arena_alloc(g->arena, sizeof(IrNode *) * (size_t)(c.n + 1));
	c.wanted = arena_alloc(g->arena, (size_t)(c.n + 1));
	if (!g->loss)
		return c.grad;
	mark(&c, g->loss);
	IrNode *one = ir_new_node(g, IR_CONST, 0, NULL, g->loss->loc);
	one->a.scale = 1;
	one->batched = false;
	one->shape.rank = 0;
	c.grad[g->loss->id] = one;
	for (int i = g->loss->id; i >= 0; i--) {
		IrNode *n = g->nodes[i];
		if (!c.wanted[i] || !c.grad[i] || n->op == IR_PARAM)
			continue;
		if (!rule(&c, n, c.grad[i])) {
			diag_error(n->loc, "nnc cannot train through %s yet: it has no gradient rule", ir_op_name(n->op));
			diag_hint("this layer works for inference (forward) only in this version");
		}
	}
	return c.grad;
}
