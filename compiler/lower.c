/*
 * lower.c: graph IR -> loop IR. The only file that knows what each op
 * computes: every op's kernel is written here once, as loops over buffers
 * (or a GEMM call), and every backend gets it from here.
 *
 * Reads the shaped inference and training graphs of one model; writes one
 * loop module with three functions: forward (inference outputs), eval
 * (inference loss and outputs) and train_step (training forward, backward,
 * updates; returns the loss), or instead of train_step in forward-only
 * modules, prepare (values computed from the weights alone, once: see the
 * end of the file). Parameters and persistent state are buffers shared by
 * name between the functions; every other value gets a buffer of its own per
 * function (memory planning comes later).
 *
 * Layout: a batched value of per-sample shape [d0, d1, ...] is row-major
 * [n, d0, d1, ...]; unbatched values (parameters, gradients, losses) are
 * row-major in their own shape.
 */
#include "lower.h"

#include <math.h>
#include <string.h>

#define SQRT1_2 0.70710678118654752440		/* 1/sqrt(2) */
#define INV_SQRT_2PI 0.39894228040143267794	/* 1/sqrt(2 pi) */

typedef struct Lower {
	LoopModule *m;
	LoopFn *fn;
	const IrGraph *g;
	LoopBuf **buf;		/* by node id, for the function being lowered */
	LoopVar **local;	/* by node id: a fused group member's value in the group's loop */
	const bool *need, *stores;	/* by node id: lowered in this function; stored by its group */
	const bool *through;	/* by node id: concats that im2col reads input by input (concats_through) */
	const bool *split;	/* by node id: gathered conv_transpose2ds whose GEMMs write their slices (transposes_split) */
	const int *last;	/* by group: its last needed member */
	/* forward-only modules: by node id of the inference graph, values computed from the
	 * weights alone, once, by the prepare function (kept: those the other functions
	 * read, in buffers of their own); NULL otherwise */
	const bool *weight_only, *kept;
	bool prepare;		/* lowering the prepare function */
	/* the optimizer's scalars for this step (see opt_scalars), set before the first kernel */
	LoopVar *opt_lr, *opt_step, *opt_eps, *opt_decay;
	/* a batchnorm's value at the element its group's body runs on, when
	 * nothing outside the group reads it (then it has no buffer: bn_head) */
	const IrNode *head;
	LoopVar *head_val;
	/* by node id of a batchnorm's input x: the plane sums of x (BnPart.xs) a
	 * kernel of this function has written, which later kernels read */
	LoopBuf **bn_xs;
} Lower;

static void conv_epilogue(Lower *l, const IrNode *n, LoopVar *s);
static LoopBuf *kernel_temp(Lower *l, const IrNode *n, const char *what, int64_t elems, bool batched);
static void host_pools(Lower *l, const IrNode *conv, LoopVar *s);
static void host_bn_sums(Lower *l, const IrNode *conv, LoopVar *s);
static void host_updates(Lower *l, const IrNode *host, LoopVar *i);
static void group_body(Lower *l, int grp, int last, LoopVar *i);
static LoopBuf *kept_buf(Lower *l, const IrNode *n);
static void hoist_weight_only(Lower *l, const IrGraph *g);
static bool lower_prepare(Lower *l, const IrGraph *g);
static LoopExpr *f_rsqrt(Lower *l, const IrNode *n, LoopExpr **x);

/* heads whose group runs inside their own loops, reading their value from memory */
static bool epilogue_head(const IrNode *n)
{
	return n->op == IR_CONV2D || n->op == IR_CONV_T2D || n->op == IR_BATCHNORM || n->op == IR_BATCHNORM_TRAIN;
}

/* ---- buffers ---- */

static int64_t elems(const IrNode *n)
{
	return ir_numel(n);
}

/* the layer node that uses parameter p, for its initializer */
static const IrNode *owner(const IrGraph *g, const IrNode *p)
{
	for (int i = p->id + 1; i < g->nnodes; i++)
		for (int k = 0; k < g->nodes[i]->nin; k++)
			if (g->nodes[i]->in[k] == p && ir_op_family(g->nodes[i]->op) != FAM_UPDATE)
				return g->nodes[i];
	return NULL;
}

/* PyTorch's defaults: dense and convolutions U(-1/sqrt(fan_in), +); batchnorm 1 and 0 */
static void set_init(LoopBuf *b, const IrGraph *g, const IrNode *p)
{
	const IrNode *o = owner(g, p);
	const char *what = strrchr(p->name, '.');
	what = what ? what + 1 : p->name;
	b->init = LI_CONST;
	b->init_value = 0;
	if (p->op != IR_PARAM || !o)
		b->init_value = !strcmp(what, "running_var") ? 1 : 0;
	else if (o->op == IR_BATCHNORM || o->op == IR_BATCHNORM_TRAIN)
		b->init_value = !strcmp(what, "weight") ? 1 : 0;
	else if (o->op == IR_DENSE || o->op == IR_CONV2D || o->op == IR_CONV_T2D) {
		const Shape *w = &o->in[1]->shape;
		int64_t fan_in = w->d[1];
		for (int i = 2; i < w->rank; i++)
			fan_in *= w->d[i];
		b->init = LI_UNIFORM;
		b->init_value = 1.0 / sqrt((double)fan_in);
	}
}

static LoopBuf *state_buf(Lower *l, const IrNode *n)
{
	LoopBuf *b = loop_find_buf(l->m, n->name);
	if (b)
		return b;
	b = loop_new_buf(l->m, n->name, LT_F32, elems(n), false,
			 n->op == IR_PARAM ? LB_PARAM : n->op == IR_BUFFER ? LB_STATE : LB_OPT);
	b->rank = n->shape.rank;
	for (int i = 0; i < n->shape.rank; i++)
		b->shape[i] = n->shape.d[i];
	set_init(b, l->g, n);
	return b;
}

static LoopBuf *arg_buf(Lower *l, const IrNode *n)
{
	const char *name = n->op == IR_INPUT ? "x" : "y";
	LoopBuf *b = loop_find_buf(l->m, name);
	if (!b)
		b = loop_new_buf(l->m, name, n->dtype == DT_I64 ? LT_I64 : LT_F32, n->dtype == DT_I64 ? 1 : elems(n), true,
				 n->op == IR_INPUT ? LB_ARG_X : LB_ARG_Y);
	return b;
}

static LoopBuf *lower_buf(Lower *l, const IrNode *n)
{
	if (l->buf[n->id])
		return l->buf[n->id];
	if (l->kept && l->g->nodes[n->id] == n && l->kept[n->id])
		return l->buf[n->id] = kept_buf(l, n);
	LoopBuf *b;
	switch (n->op) {
	case IR_PARAM:
	case IR_BUFFER:
	case IR_OPT_STATE: b = state_buf(l, n); break;
	case IR_INPUT:
	case IR_TARGET: b = arg_buf(l, n); break;
	case IR_FLATTEN:
	case IR_RESHAPE: b = lower_buf(l, n->in[0]); break;	/* same elements, same order */
	default:
		b = loop_new_buf(l->m, arena_printf(l->m->arena, "%s %s %%%d", l->fn->name, n->layer ? n->layer : ir_op_name(n->op),
						    n->id),
				 LT_F32, elems(n), n->batched, LB_TEMP);
	}
	l->buf[n->id] = b;
	return b;
}

/* ---- expression helpers ---- */

static LoopExpr *I(Lower *l, int64_t v) { return loop_i64(l->fn, v); }
static LoopExpr *F(Lower *l, double v) { return loop_f32(l->fn, v); }
static LoopExpr *V(Lower *l, LoopVar *v) { return loop_var(l->fn, v); }
static LoopExpr *add(Lower *l, LoopExpr *a, LoopExpr *b) { return loop_add(l->fn, a, b); }
static LoopExpr *sub(Lower *l, LoopExpr *a, LoopExpr *b) { return loop_sub(l->fn, a, b); }
static LoopExpr *mul(Lower *l, LoopExpr *a, LoopExpr *b) { return loop_mul(l->fn, a, b); }
static LoopExpr *dvd(Lower *l, LoopExpr *a, LoopExpr *b) { return loop_div(l->fn, a, b); }
static LoopExpr *un(Lower *l, LoopUnOp op, LoopExpr *a) { return loop_un(l->fn, op, a); }
static LoopExpr *gt0(Lower *l, LoopExpr *a) { return loop_bin(l->fn, LO_GT, a, F(l, 0)); }
static LoopExpr *sel(Lower *l, LoopExpr *c, LoopExpr *a, LoopExpr *b) { return loop_select(l->fn, c, a, b); }

static LoopExpr *ld(Lower *l, const IrNode *n, LoopExpr *idx)
{
	return loop_load(l->fn, lower_buf(l, n), idx);
}

static void st(Lower *l, const IrNode *n, LoopExpr *idx, LoopExpr *v)
{
	loop_store(l->fn, lower_buf(l, n), idx, v);
}

/* every element of a value: n * elems when batched */
static LoopExpr *total(Lower *l, const IrNode *n)
{
	return n->batched ? mul(l, loop_n(l->fn), I(l, elems(n))) : I(l, elems(n));
}

/* the element count the mean-reducing losses divide by: n * per-sample elements */
static LoopExpr *count_f(Lower *l, const IrNode *n)
{
	return loop_cvt(l->fn, LT_F32, total(l, n));
}

static LoopExpr *scalar(Lower *l, const IrNode *n)
{
	return ld(l, n, I(l, 0));
}

/* ---- element-wise ops ---- */

typedef LoopExpr *(*MapFn)(Lower *l, const IrNode *n, LoopExpr **in);

/* out[i] = fn(in0[i], in1[i], ...) over all elements; inputs share the output's shape,
 * except unbatched scalars (losses, gradients of losses) which read element 0 */
static void map(Lower *l, const IrNode *n, MapFn fn)
{
	LoopVar *i = loop_for(l->fn, I(l, 0), total(l, n));
	loop_parallel(l->fn);
	LoopExpr *in[4];
	for (int k = 0; k < n->nin && k < 4; k++) {
		const IrNode *x = n->in[k];
		bool scalar_in = !x->batched && x->shape.rank == 0 && (n->batched || n->shape.rank > 0);
		in[k] = ld(l, x, scalar_in ? I(l, 0) : V(l, i));
	}
	st(l, n, V(l, i), fn(l, n, in));
	loop_end(l->fn);
}

static LoopExpr *f_relu(Lower *l, const IrNode *n, LoopExpr **x) { (void)n; return sel(l, gt0(l, x[0]), x[0], F(l, 0)); }
static LoopExpr *f_leaky(Lower *l, const IrNode *n, LoopExpr **x)
{
	return sel(l, gt0(l, x[0]), x[0], mul(l, x[0], F(l, n->a.alpha)));
}
static LoopExpr *f_elu(Lower *l, const IrNode *n, LoopExpr **x)
{
	return sel(l, gt0(l, x[0]), x[0], mul(l, F(l, n->a.alpha), un(l, LO_EXPM1, x[0])));
}
static LoopExpr *f_sigmoid(Lower *l, const IrNode *n, LoopExpr **x)
{
	(void)n;
	return dvd(l, F(l, 1), add(l, F(l, 1), un(l, LO_EXP, un(l, LO_NEG, x[0]))));
}
static LoopExpr *f_tanh(Lower *l, const IrNode *n, LoopExpr **x) { (void)n; return un(l, LO_TANH, x[0]); }
/* PyTorch's softplus: x itself above the threshold 20 */
static LoopExpr *f_softplus(Lower *l, const IrNode *n, LoopExpr **x)
{
	(void)n;
	return sel(l, loop_bin(l->fn, LO_GT, x[0], F(l, 20)), x[0], un(l, LO_LOG1P, un(l, LO_EXP, x[0])));
}
/* the exact gelu: x * Phi(x) */
static LoopExpr *f_gelu(Lower *l, const IrNode *n, LoopExpr **x)
{
	(void)n;
	LoopExpr *phi = mul(l, F(l, 0.5), add(l, F(l, 1), un(l, LO_ERF, mul(l, x[0], F(l, SQRT1_2)))));
	return mul(l, x[0], phi);
}
static LoopExpr *f_add(Lower *l, const IrNode *n, LoopExpr **x) { (void)n; return add(l, x[0], x[1]); }
static LoopExpr *f_mul(Lower *l, const IrNode *n, LoopExpr **x) { (void)n; return mul(l, x[0], x[1]); }
static LoopExpr *f_scale(Lower *l, const IrNode *n, LoopExpr **x) { return mul(l, x[0], F(l, n->a.scale)); }
static LoopExpr *f_scale_by(Lower *l, const IrNode *n, LoopExpr **x)
{
	return mul(l, mul(l, x[0], x[1]), F(l, n->a.scale));
}
static LoopExpr *f_copy(Lower *l, const IrNode *n, LoopExpr **x) { (void)l; (void)n; return x[0]; }
/* keep with probability 1-p, scaled so the expectation is unchanged */
static LoopExpr *f_mask(Lower *l, const IrNode *n, LoopExpr **x)
{
	(void)x;
	LoopExpr *keep = loop_bin(l->fn, LO_GE, loop_rand(l->fn), F(l, n->a.p));
	return sel(l, keep, F(l, 1.0 / (1.0 - n->a.p)), F(l, 0));
}

/* backward kernels: x[0] is the upstream gradient g */
static LoopExpr *b_relu(Lower *l, const IrNode *n, LoopExpr **x) { (void)n; return sel(l, gt0(l, x[1]), x[0], F(l, 0)); }
static LoopExpr *b_leaky(Lower *l, const IrNode *n, LoopExpr **x)
{
	return sel(l, gt0(l, x[1]), x[0], mul(l, x[0], F(l, n->a.alpha)));
}
static LoopExpr *b_elu(Lower *l, const IrNode *n, LoopExpr **x)
{
	return sel(l, gt0(l, x[1]), x[0], mul(l, x[0], mul(l, F(l, n->a.alpha), un(l, LO_EXP, x[1]))));
}
static LoopExpr *b_sigmoid(Lower *l, const IrNode *n, LoopExpr **x)
{
	(void)n;
	return mul(l, x[0], mul(l, x[1], sub(l, F(l, 1), x[1])));
}
static LoopExpr *b_tanh(Lower *l, const IrNode *n, LoopExpr **x)
{
	(void)n;
	return mul(l, x[0], sub(l, F(l, 1), mul(l, x[1], x[1])));
}
static LoopExpr *b_softplus(Lower *l, const IrNode *n, LoopExpr **x)
{
	(void)n;
	LoopExpr *z = un(l, LO_EXP, x[1]);
	return sel(l, loop_bin(l->fn, LO_GT, x[1], F(l, 20)), x[0], mul(l, x[0], dvd(l, z, add(l, z, F(l, 1)))));
}
static LoopExpr *b_gelu(Lower *l, const IrNode *n, LoopExpr **x)
{
	(void)n;
	LoopExpr *cdf = mul(l, F(l, 0.5), add(l, F(l, 1), un(l, LO_ERF, mul(l, x[1], F(l, SQRT1_2)))));
	LoopExpr *pdf = mul(l, F(l, INV_SQRT_2PI),
			    un(l, LO_EXP, mul(l, F(l, -0.5), mul(l, x[1], x[1]))));
	return mul(l, x[0], add(l, cdf, mul(l, x[1], pdf)));
}
/* sign(w) * g, with sign(0) = 0 as torch.sign */
static LoopExpr *b_l1(Lower *l, const IrNode *n, LoopExpr **x)
{
	(void)n;
	LoopExpr *sign = sel(l, gt0(l, x[1]), F(l, 1), sel(l, loop_bin(l->fn, LO_LT, x[1], F(l, 0)), F(l, -1), F(l, 0)));
	return mul(l, sign, x[0]);
}

/* ---- broadcasting add and multiply ---- */

/* the element index of x for the output position (s, k0, k1, ...); broadcast sizes read 0 */
static LoopExpr *bcast_index(Lower *l, const IrNode *x, LoopVar *s, LoopVar **k, int rank)
{
	LoopExpr *idx = x->batched ? mul(l, V(l, s), I(l, elems(x))) : I(l, 0);
	int64_t stride = 1;
	for (int d = rank - 1; d >= 0; d--) {
		if (x->shape.d[d] != 1)
			idx = add(l, idx, mul(l, V(l, k[d]), I(l, stride)));
		stride *= x->shape.d[d];
	}
	return idx;
}

static void nest_open(Lower *l, const IrNode *n, LoopVar **s, LoopVar **k)
{
	*s = loop_for(l->fn, I(l, 0), n->batched ? loop_n(l->fn) : I(l, 1));
	loop_parallel(l->fn);
	for (int d = 0; d < n->shape.rank; d++)
		k[d] = loop_for_n(l->fn, n->shape.d[d]);
}

static void nest_close(Lower *l, const IrNode *n)
{
	for (int d = 0; d <= n->shape.rank; d++)
		loop_end(l->fn);
}

static void lower_binary(Lower *l, const IrNode *n)
{
	const IrNode *a = n->in[0], *b = n->in[1];
	if (shape_eq(a->shape, n->shape) && shape_eq(b->shape, n->shape) && a->batched == b->batched) {
		map(l, n, n->op == IR_ADD ? f_add : f_mul);
		return;
	}
	LoopVar *s, *k[IR_MAX_RANK];
	nest_open(l, n, &s, k);
	LoopExpr *x = ld(l, a, bcast_index(l, a, s, k, n->shape.rank));
	LoopExpr *y = ld(l, b, bcast_index(l, b, s, k, n->shape.rank));
	st(l, n, bcast_index(l, n, s, k, n->shape.rank), n->op == IR_ADD ? add(l, x, y) : mul(l, x, y));
	nest_close(l, n);
}

/* sums g (the broadcast shape) into n (the operand's shape, sizes 1 where broadcast) */
static void lower_reduce_to(Lower *l, const IrNode *n)
{
	const IrNode *g = n->in[0];
	LoopVar *i = loop_for(l->fn, I(l, 0), total(l, n));
	st(l, n, V(l, i), F(l, 0));
	loop_end(l->fn);
	LoopVar *s, *k[IR_MAX_RANK];
	nest_open(l, g, &s, k);
	LoopExpr *at = bcast_index(l, n, s, k, g->shape.rank);
	st(l, n, at, add(l, ld(l, n, at), ld(l, g, bcast_index(l, g, s, k, g->shape.rank))));
	nest_close(l, g);
}

/* ---- dense ---- */

static void gemm(Lower *l, int ta, int tb, LoopExpr *m, LoopExpr *nn, LoopExpr *k, const IrNode *a, int64_t lda,
		 const IrNode *b, int64_t ldb, float beta, const IrNode *c, int64_t ldc)
{
	LoopGemm g = { .ta = ta, .tb = tb, .m = m, .n = nn, .k = k, .alpha = 1, .beta = beta,
		       .a = lower_buf(l, a), .b = lower_buf(l, b), .c = lower_buf(l, c),
		       .lda = I(l, lda), .ldb = I(l, ldb), .ldc = I(l, ldc) };
	loop_gemm(l->fn, &g);
}

/* out[n, U] = x[n, K] w[U, K]^T + b[U] */
static void lower_dense(Lower *l, const IrNode *n)
{
	const IrNode *x = n->in[0], *w = n->in[1];
	int64_t u = n->a.units, k = elems(x);
	gemm(l, 0, 1, loop_n(l->fn), I(l, u), I(l, k), x, k, w, k, 0, n, u);
	if (n->nin < 3 || n->group)
		return;		/* in a fused group, the group's loop adds the bias */
	LoopVar *i = loop_for(l->fn, I(l, 0), loop_n(l->fn));
	loop_parallel(l->fn);
	LoopVar *j = loop_for_n(l->fn, u);
	LoopExpr *at = add(l, mul(l, V(l, i), I(l, u)), V(l, j));
	st(l, n, at, add(l, ld(l, n, at), ld(l, n->in[2], V(l, j))));
	loop_end(l->fn);
	loop_end(l->fn);
}

/* dx[n, K] = g[n, U] w[U, K] */
static void lower_dense_dx(Lower *l, const IrNode *n)
{
	const IrNode *g = n->in[0], *w = n->in[1];
	int64_t u = elems(g), k = elems(n);
	gemm(l, 0, 0, loop_n(l->fn), I(l, k), I(l, u), g, u, w, k, 0, n, k);
}

/* dw[U, K] = g[n, U]^T x[n, K] */
static void lower_dense_dw(Lower *l, const IrNode *n)
{
	const IrNode *g = n->in[0], *x = n->in[1];
	int64_t u = elems(g), k = elems(x);
	gemm(l, 1, 0, I(l, u), I(l, k), loop_n(l->fn), g, u, x, k, 0, n, k);
}

/*
 * out[j] = sum over the batch of g[i, j], in float, rows in order. Blocks of
 * SUM_COLS columns run in parallel (each output element has one writer, and
 * fused updates run on their block's elements at the end); within a block
 * the rows are read in order and each row's columns are contiguous, so the
 * adds run in vectors. value(i, at) gives g at element at = i * e + j.
 */
enum { SUM_COLS = 64 };

typedef LoopExpr *(*ColValue)(Lower *l, const void *env, LoopVar *at);

static LoopExpr *col_load(Lower *l, const void *env, LoopVar *at) { return ld(l, env, V(l, at)); }

static void col_sums(Lower *l, const IrNode *n, ColValue value, const void *env)
{
	int64_t e = elems(n), blocks = (e + SUM_COLS - 1) / SUM_COLS;
	LoopVar *b = loop_for_n(l->fn, blocks);
	loop_parallel(l->fn);
	LoopExpr *lo = mul(l, V(l, b), I(l, SUM_COLS));
	LoopExpr *hi = loop_bin(l->fn, LO_MIN, add(l, mul(l, V(l, b), I(l, SUM_COLS)), I(l, SUM_COLS)), I(l, e));
	LoopVar *j = loop_for(l->fn, lo, hi);
	st(l, n, V(l, j), F(l, 0));
	loop_end(l->fn);
	LoopVar *i = loop_for(l->fn, I(l, 0), loop_n(l->fn));
	j = loop_for(l->fn, mul(l, V(l, b), I(l, SUM_COLS)),
		     loop_bin(l->fn, LO_MIN, add(l, mul(l, V(l, b), I(l, SUM_COLS)), I(l, SUM_COLS)), I(l, e)));
	LoopVar *at = loop_local(l->fn, LT_I64, add(l, mul(l, V(l, i), I(l, e)), V(l, j)));
	st(l, n, V(l, j), add(l, ld(l, n, V(l, j)), value(l, env, at)));
	loop_end(l->fn);
	loop_end(l->fn);
	j = loop_for(l->fn, mul(l, V(l, b), I(l, SUM_COLS)),
		     loop_bin(l->fn, LO_MIN, add(l, mul(l, V(l, b), I(l, SUM_COLS)), I(l, SUM_COLS)), I(l, e)));
	host_updates(l, n, j);
	loop_end(l->fn);
	loop_end(l->fn);
}

static void lower_batch_sum(Lower *l, const IrNode *n)
{
	col_sums(l, n, col_load, n->in[0]);
}

/* ---- softmax over the first per-sample axis ---- */

typedef struct Axis {
	LoopVar *s, *r;		/* sample, position after the axis */
	int64_t c, inner;	/* axis length, elements after it */
} Axis;

/* loops over (sample, inner position); idx(c) addresses channel c there.
 * The sample loop is parallel unless the body sums across samples (a loss). */
static Axis axis_open(Lower *l, const IrNode *n, bool parallel)
{
	Axis a = { .c = n->shape.rank ? n->shape.d[0] : 1 };
	a.inner = n->shape.rank ? elems(n) / a.c : 1;
	a.s = loop_for(l->fn, I(l, 0), loop_n(l->fn));
	if (parallel)
		loop_parallel(l->fn);
	a.r = loop_for_n(l->fn, a.inner);
	return a;
}

static LoopExpr *axis_idx(Lower *l, const Axis *a, LoopExpr *c)
{
	return add(l, mul(l, V(l, a->s), I(l, a->c * a->inner)), add(l, mul(l, c, I(l, a->inner)), V(l, a->r)));
}

static void axis_close(Lower *l)
{
	loop_end(l->fn);
	loop_end(l->fn);
}

/* max over the axis, then the sum of exp(x - max): the stable log-sum-exp */
static void axis_lse(Lower *l, const Axis *a, const IrNode *x, LoopVar **mx, LoopVar **sum)
{
	*mx = loop_local(l->fn, LT_F32, F(l, -INFINITY));
	LoopVar *c = loop_for_n(l->fn, a->c);
	loop_set(l->fn, *mx, loop_max(l->fn, V(l, *mx), ld(l, x, axis_idx(l, a, V(l, c)))));
	loop_end(l->fn);
	*sum = loop_local(l->fn, LT_F32, F(l, 0));
	c = loop_for_n(l->fn, a->c);
	loop_set(l->fn, *sum, add(l, V(l, *sum), un(l, LO_EXP, sub(l, ld(l, x, axis_idx(l, a, V(l, c))), V(l, *mx)))));
	loop_end(l->fn);
}

static void lower_softmax(Lower *l, const IrNode *n)
{
	const IrNode *x = n->in[0];
	Axis a = axis_open(l, n, true);
	LoopVar *mx, *sum;
	axis_lse(l, &a, x, &mx, &sum);
	LoopVar *c = loop_for_n(l->fn, a.c);
	LoopExpr *at = axis_idx(l, &a, V(l, c)), *z = sub(l, ld(l, x, at), V(l, mx));
	if (n->op == IR_SOFTMAX)
		st(l, n, at, dvd(l, un(l, LO_EXP, z), V(l, sum)));
	else
		st(l, n, at, sub(l, z, un(l, LO_LOG, V(l, sum))));
	loop_end(l->fn);
	axis_close(l);
}

/* softmax: dx = y (g - sum g y); log_softmax: dx = g - exp(y) sum g */
static void lower_softmax_bwd(Lower *l, const IrNode *n)
{
	const IrNode *g = n->in[0], *y = n->in[1];
	bool lg = n->op == IR_LOG_SOFTMAX_BWD;
	Axis a = axis_open(l, n, true);
	LoopVar *dot = loop_local(l->fn, LT_F32, F(l, 0));
	LoopVar *c = loop_for_n(l->fn, a.c);
	LoopExpr *at = axis_idx(l, &a, V(l, c));
	loop_set(l->fn, dot, add(l, V(l, dot), lg ? ld(l, g, at) : mul(l, ld(l, g, at), ld(l, y, at))));
	loop_end(l->fn);
	c = loop_for_n(l->fn, a.c);
	at = axis_idx(l, &a, V(l, c));
	if (lg)
		st(l, n, at, sub(l, ld(l, g, at), mul(l, un(l, LO_EXP, ld(l, y, at)), V(l, dot))));
	else
		st(l, n, at, mul(l, ld(l, y, at), sub(l, ld(l, g, at), V(l, dot))));
	loop_end(l->fn);
	axis_close(l);
}

/* ---- losses: a scalar, summed in double, divided as PyTorch's mean ---- */

/* cross entropy with class labels: mean over samples of lse(x) - x[y];
 * with probabilities t: mean over samples of -sum t * log_softmax(x) */
/* one row's term of cross_entropy n: acc += lse - x[label] (or sum t (lse - x)) */
static void ce_row(Lower *l, const IrNode *n, const Axis *a, LoopVar *mx, LoopVar *sum, LoopVar *acc)
{
	const IrNode *x = n->in[0], *t = n->in[1];
	LoopExpr *lse = add(l, V(l, mx), un(l, LO_LOG, V(l, sum)));
	if (t->dtype == DT_I64) {
		LoopExpr *xy = ld(l, x, axis_idx(l, a, ld(l, t, V(l, a->s))));
		loop_set(l->fn, acc, add(l, V(l, acc), sub(l, lse, xy)));
	} else {
		LoopVar *c = loop_for_n(l->fn, a->c);
		LoopExpr *at = axis_idx(l, a, V(l, c));
		loop_set(l->fn, acc, add(l, V(l, acc), mul(l, ld(l, t, at), sub(l, lse, ld(l, x, at)))));
		loop_end(l->fn);
	}
}

/* one row of cross_entropy_bwd n: d/dx = g/n (softmax(x) * sum(t) - t), sum(t) = 1 for a one-hot label */
static void ce_bwd_row(Lower *l, const IrNode *n, const Axis *a, LoopVar *mx, LoopVar *sum)
{
	const IrNode *g = n->in[0], *x = n->in[1], *t = n->in[2];
	bool labels = t->dtype == DT_I64;
	LoopVar *tsum = NULL;
	if (!labels) {
		tsum = loop_local(l->fn, LT_F32, F(l, 0));
		LoopVar *c = loop_for_n(l->fn, a->c);
		loop_set(l->fn, tsum, add(l, V(l, tsum), ld(l, t, axis_idx(l, a, V(l, c)))));
		loop_end(l->fn);
	}
	LoopExpr *scale = dvd(l, scalar(l, g), loop_cvt(l->fn, LT_F32, loop_n(l->fn)));
	LoopVar *c = loop_for_n(l->fn, a->c);
	LoopExpr *at = axis_idx(l, a, V(l, c));
	LoopExpr *p = dvd(l, un(l, LO_EXP, sub(l, ld(l, x, at), V(l, mx))), V(l, sum));
	LoopExpr *d = labels ? sub(l, p, sel(l, loop_bin(l->fn, LO_EQ, V(l, c), ld(l, t, V(l, a->s))), F(l, 1), F(l, 0)))
			     : sub(l, mul(l, p, V(l, tsum)), ld(l, t, at));
	st(l, n, at, mul(l, d, scale));
	loop_end(l->fn);
}

static void lower_cross_entropy(Lower *l, const IrNode *n)
{
	LoopVar *acc = loop_local(l->fn, LT_F64, loop_f64(l->fn, 0));
	Axis a = axis_open(l, n->in[0], false);	/* acc sums over the samples */
	LoopVar *mx, *sum;
	axis_lse(l, &a, n->in[0], &mx, &sum);
	ce_row(l, n, &a, mx, sum, acc);
	axis_close(l);
	st(l, n, I(l, 0), dvd(l, V(l, acc), loop_cvt(l->fn, LT_F64, loop_n(l->fn))));
}

/* with the loss it is the gradient of, when passes/fuse.c put both in one kernel
 * (ce->host): one log-sum-exp per row serves both, rows in order for the loss's sum */
static void lower_cross_entropy_bwd(Lower *l, const IrNode *n)
{
	const IrNode *ce = NULL;
	for (int i = 0; i < n->id; i++)
		if (l->g->nodes[i]->op == IR_CROSS_ENTROPY && l->g->nodes[i]->host == n->id + 1 && l->need[i])
			ce = l->g->nodes[i];
	LoopVar *acc = ce ? loop_local(l->fn, LT_F64, loop_f64(l->fn, 0)) : NULL;
	Axis a = axis_open(l, n->in[1], !ce);
	LoopVar *mx, *sum;
	axis_lse(l, &a, n->in[1], &mx, &sum);
	if (ce)
		ce_row(l, ce, &a, mx, sum, acc);
	ce_bwd_row(l, n, &a, mx, sum);
	axis_close(l);
	if (ce)
		st(l, ce, I(l, 0), dvd(l, V(l, acc), loop_cvt(l->fn, LT_F64, loop_n(l->fn))));
}

typedef enum { R_BCE, R_SQ, R_ABS } Residual;

/* sum over every element of f(p, t), in double */
static LoopVar *loss_sum(Lower *l, const IrNode *p, const IrNode *t, Residual r)
{
	LoopVar *acc = loop_local(l->fn, LT_F64, loop_f64(l->fn, 0));
	LoopVar *i = loop_for(l->fn, I(l, 0), total(l, p));
	LoopExpr *x = ld(l, p, V(l, i)), *y = ld(l, t, V(l, i)), *v;
	if (r == R_BCE)	/* max(x, 0) - x t + log(1 + exp(-|x|)), stable for any x */
		v = add(l, sub(l, loop_max(l->fn, x, F(l, 0)), mul(l, x, y)),
			un(l, LO_LOG1P, un(l, LO_EXP, un(l, LO_NEG, un(l, LO_ABS, x)))));
	else if (r == R_SQ)
		v = mul(l, sub(l, x, y), sub(l, x, y));
	else
		v = un(l, LO_ABS, sub(l, x, y));
	loop_set(l->fn, acc, add(l, V(l, acc), v));
	loop_end(l->fn);
	return acc;
}

static void lower_mean_loss(Lower *l, const IrNode *n)
{
	Residual r = n->op == IR_BCE ? R_BCE : n->op == IR_MAE ? R_ABS : R_SQ;
	LoopVar *acc = loss_sum(l, n->in[0], n->in[1], r);
	LoopExpr *mean = dvd(l, V(l, acc), loop_cvt(l->fn, LT_F64, total(l, n->in[0])));
	st(l, n, I(l, 0), n->op == IR_RMSE ? un(l, LO_SQRT, mean) : mean);
}

/* bce: (sigmoid(x) - t) g / N; mse: 2 (p - t) g / N; mae: sign(p - t) g / N;
 * rmse: (p - t) g / (N rmse), 0 where the rmse is 0 */
static void lower_loss_bwd(Lower *l, const IrNode *n)
{
	const IrNode *g = n->in[0], *p = n->in[1], *t = n->in[2];
	LoopExpr *k = dvd(l, scalar(l, g), count_f(l, p));
	LoopVar *i = loop_for(l->fn, I(l, 0), total(l, p));
	loop_parallel(l->fn);
	LoopExpr *x = ld(l, p, V(l, i)), *y = ld(l, t, V(l, i)), *d = sub(l, x, y), *v;
	switch (n->op) {
	case IR_BCE_BWD: v = sub(l, dvd(l, F(l, 1), add(l, F(l, 1), un(l, LO_EXP, un(l, LO_NEG, x)))), y); break;
	case IR_MSE_BWD: v = mul(l, F(l, 2), d); break;
	case IR_MAE_BWD:
		v = sel(l, gt0(l, d), F(l, 1), sel(l, loop_bin(l->fn, LO_LT, d, F(l, 0)), F(l, -1), F(l, 0)));
		break;
	default: {
		LoopExpr *rmse = scalar(l, n->in[3]);
		v = sel(l, gt0(l, rmse), dvd(l, d, rmse), F(l, 0));
		break;
	}
	}
	st(l, n, V(l, i), mul(l, v, k));
	loop_end(l->fn);
}

static void lower_reduce_scalar(Lower *l, const IrNode *n)
{
	const IrNode *w = n->in[0];
	LoopVar *acc = loop_local(l->fn, LT_F64, loop_f64(l->fn, 0));
	LoopVar *i = loop_for(l->fn, I(l, 0), total(l, w));
	LoopExpr *x = ld(l, w, V(l, i));
	loop_set(l->fn, acc, add(l, V(l, acc), n->op == IR_SUMSQ ? mul(l, x, x) : un(l, LO_ABS, x)));
	loop_end(l->fn);
	st(l, n, I(l, 0), V(l, acc));
}

/* ---- optimizer updates, as torch.optim computes them ---- */

static LoopExpr *f64(Lower *l, double v) { return loop_f64(l->fn, v); }

/*
 * Each update is a body for one element i, run either by a loop of its own
 * or, fused (passes/fuse.c, n->host), by the kernel that computes the
 * gradient, right after that kernel has the gradient's element i. The
 * scalars that depend only on the step (the learning rate, Adam's bias
 * corrections) are computed once per train_step, before its first kernel.
 */
static bool is_step_update(const IrNode *n)
{
	return n->op == IR_SGD_STEP || n->op == IR_ADAGRAD_STEP || n->op == IR_RMSPROP_STEP || n->op == IR_ADAM_STEP;
}

/* the scalars of u's optimizer, as locals at the current (top) level of the function */
static void opt_scalars(Lower *l, const IrNode *u)
{
	if (u->op != IR_ADAM_STEP) {
		l->opt_lr = loop_local(l->fn, LT_F32, loop_ctx(l->fn, LC_LR));
		return;
	}
	LoopExpr *t = loop_ctx(l->fn, LC_STEP);
	LoopExpr *bc1 = sub(l, f64(l, 1), loop_bin(l->fn, LO_POW, f64(l, u->a.beta1), t));
	LoopExpr *bc2 = sub(l, f64(l, 1), loop_bin(l->fn, LO_POW, f64(l, u->a.beta2), loop_ctx(l->fn, LC_STEP)));
	LoopExpr *root = un(l, LO_SQRT, bc2);
	l->opt_step = loop_local(l->fn, LT_F32, dvd(l, mul(l, loop_ctx(l->fn, LC_LR), root), bc1));
	l->opt_eps = loop_local(l->fn, LT_F32, mul(l, f64(l, u->a.eps), un(l, LO_SQRT, sub(l, f64(l, 1),
		loop_bin(l->fn, LO_POW, f64(l, u->a.beta2), loop_ctx(l->fn, LC_STEP))))));
	if (u->a.wd > 0)
		l->opt_decay = loop_local(l->fn, LT_F32, sub(l, f64(l, 1), mul(l, loop_ctx(l->fn, LC_LR), f64(l, u->a.wd))));
}

/* p -= lr d; d = g, or with momentum buf = mu buf + g and d = buf (nesterov: g + mu buf) */
static void sgd_body(Lower *l, const IrNode *n, LoopVar *i)
{
	const IrNode *p = n->in[0], *g = n->in[1], *buf = n->nin > 2 ? n->in[2] : NULL;
	LoopExpr *d = ld(l, g, V(l, i));
	if (buf) {
		LoopExpr *b = add(l, mul(l, ld(l, buf, V(l, i)), F(l, n->a.momentum)), d);
		st(l, buf, V(l, i), b);
		b = ld(l, buf, V(l, i));
		d = n->a.nesterov ? add(l, ld(l, g, V(l, i)), mul(l, b, F(l, n->a.momentum))) : b;
	}
	st(l, p, V(l, i), sub(l, ld(l, p, V(l, i)), mul(l, V(l, l->opt_lr), d)));
}

/* sum += g^2; p -= lr g / (sqrt(sum) + eps) */
static void adagrad_body(Lower *l, const IrNode *n, LoopVar *i)
{
	const IrNode *p = n->in[0], *g = n->in[1], *s = n->in[2];
	LoopExpr *gi = ld(l, g, V(l, i));
	st(l, s, V(l, i), add(l, ld(l, s, V(l, i)), mul(l, gi, gi)));
	LoopExpr *std = add(l, un(l, LO_SQRT, ld(l, s, V(l, i))), F(l, n->a.eps));
	st(l, p, V(l, i), sub(l, ld(l, p, V(l, i)), mul(l, V(l, l->opt_lr), dvd(l, ld(l, g, V(l, i)), std))));
}

/* sq = alpha sq + (1 - alpha) g^2; avg = sqrt(sq) + eps; p -= lr g / avg
 * (with momentum: buf = mu buf + g / avg; p -= lr buf) */
static void rmsprop_body(Lower *l, const IrNode *n, LoopVar *i)
{
	const IrNode *p = n->in[0], *g = n->in[1], *sq = n->in[2], *buf = n->nin > 3 ? n->in[3] : NULL;
	LoopExpr *gi = ld(l, g, V(l, i));
	st(l, sq, V(l, i), add(l, mul(l, ld(l, sq, V(l, i)), F(l, n->a.alpha)), mul(l, mul(l, gi, ld(l, g, V(l, i))), F(l, 1 - n->a.alpha))));
	LoopExpr *avg = add(l, un(l, LO_SQRT, ld(l, sq, V(l, i))), F(l, n->a.eps));
	LoopExpr *d = dvd(l, ld(l, g, V(l, i)), avg);
	if (buf) {
		st(l, buf, V(l, i), add(l, mul(l, ld(l, buf, V(l, i)), F(l, n->a.momentum)), d));
		d = ld(l, buf, V(l, i));
	}
	st(l, p, V(l, i), sub(l, ld(l, p, V(l, i)), mul(l, V(l, l->opt_lr), d)));
}

/*
 * adam(w): p *= 1 - lr wd; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
 * p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps), computed as
 * p -= (lr sqrt(1 - b2^t) / (1 - b1^t)) * m / (sqrt(v) + eps sqrt(1 - b2^t)):
 * the same value up to rounding with one division an element instead of
 * two. Division and square root share one unit; with two divisions Adam
 * was about 13% of the mlp's step (docs/training.md).
 */
static void adam_body(Lower *l, const IrNode *n, LoopVar *i)
{
	const IrNode *p = n->in[0], *g = n->in[1], *m = n->in[2], *v = n->in[3];
	LoopExpr *gi = ld(l, g, V(l, i));
	if (n->a.wd > 0)
		st(l, p, V(l, i), mul(l, ld(l, p, V(l, i)), V(l, l->opt_decay)));
	st(l, m, V(l, i), add(l, mul(l, ld(l, m, V(l, i)), F(l, n->a.beta1)), mul(l, gi, F(l, 1 - n->a.beta1))));
	LoopExpr *g2 = ld(l, g, V(l, i));
	st(l, v, V(l, i), add(l, mul(l, ld(l, v, V(l, i)), F(l, n->a.beta2)), mul(l, mul(l, g2, ld(l, g, V(l, i))), F(l, 1 - n->a.beta2))));
	LoopExpr *den = add(l, un(l, LO_SQRT, ld(l, v, V(l, i))), V(l, l->opt_eps));
	st(l, p, V(l, i), sub(l, ld(l, p, V(l, i)), dvd(l, mul(l, V(l, l->opt_step), ld(l, m, V(l, i))), den)));
}

static void update_body(Lower *l, const IrNode *n, LoopVar *i)
{
	switch (n->op) {
	case IR_SGD_STEP: sgd_body(l, n, i); break;
	case IR_ADAGRAD_STEP: adagrad_body(l, n, i); break;
	case IR_RMSPROP_STEP: rmsprop_body(l, n, i); break;
	default: adam_body(l, n, i); break;
	}
}

/* an update in a loop of its own */
static void lower_update(Lower *l, const IrNode *n)
{
	LoopVar *i = loop_for(l->fn, I(l, 0), I(l, elems(n->in[0])));
	loop_parallel(l->fn);
	update_body(l, n, i);
	loop_end(l->fn);
}

/* the updates fused into the kernel of host (their gradient), for its element i */
static void host_updates(Lower *l, const IrNode *host, LoopVar *i)
{
	for (int k = host->id + 1; k < l->g->nnodes; k++) {
		const IrNode *u = l->g->nodes[k];
		if (u->host == host->id + 1 && l->need[k] && is_step_update(u))
			update_body(l, u, i);
	}
}

/* ---- convolution: gather (conv2d), scatter (conv_transpose2d), weight gradient ---- */

/*
 * One geometry serves the three ops. A big image [B, H, W] and a small one
 * [S, h, w] meet through a kernel of kh x kw taps: small position (oy, ox)
 * and tap (ky, kx) meet big position (oy*sh - ph + ky*dh, ox*sw - pw + kx*dw),
 * with ph, pw the top and left padding; the extents are the nodes' own
 * shapes, which covers asymmetric "same" padding and output_pad. Big
 * positions outside the image read as 0 (gather) or are dropped (scatter).
 * The weight is [S, B/groups, kh, kw] for all three ops.
 *
 * Per sample, the column matrix col [B*kh*kw, h*w] holds in row (c, ky, kx)
 * the big channel c as tap (ky, kx) sees it. Per group, with K = B/groups*kh*kw:
 *   conv2d            small = w [S/g, K] . col [K, h*w]       (im2col, GEMM)
 *   conv_transpose2d  col = w^T . small, then col2im          (the adjoint)
 *   conv_dw           dw [S/g, K] += small [S/g, h*w] . col^T
 * A 1x1 kernel with stride 1 and no padding needs no columns: the big image
 * itself is the column matrix. The scratch columns are one buffer shared by
 * the samples, so those sample loops are not parallel.
 */
enum { CONV_SLOTS = 4 };	/* a power of two: see sample_open */

typedef struct ConvGeom {
	int64_t big_c, big_h, big_w, small_c, small_h, small_w;
	int64_t kh, kw, sh, sw, dh, dw, ph, pw, groups;
	int64_t c0;		/* im2col of one input of a read-through concat: its first channel in col */
} ConvGeom;

static ConvGeom conv_geom(const IrNode *n, const IrNode *small, const IrNode *big)
{
	const IrAttrs *a = &n->a;
	ConvGeom g = { .big_c = big->shape.d[0], .big_h = big->shape.d[1], .big_w = big->shape.d[2],
		       .small_c = small->shape.d[0], .small_h = small->shape.d[1], .small_w = small->shape.d[2],
		       .kh = a->kernel[0], .kw = a->kernel[1], .sh = a->stride[0], .sw = a->stride[1],
		       .dh = a->dilation[0], .dw = a->dilation[1], .ph = a->pad[0], .pw = a->pad[2],
		       .groups = a->groups > 0 ? a->groups : 1 };
	return g;
}

static int64_t small_hw(const ConvGeom *g) { return g->small_h * g->small_w; }
static int64_t group_k(const ConvGeom *g) { return g->big_c / g->groups * g->kh * g->kw; }	/* K */

/* the big image is its own column matrix */
static bool conv_direct(const ConvGeom *g)
{
	return g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->ph == 0 && g->pw == 0 &&
	       g->big_h == g->small_h && g->big_w == g->small_w;
}

/* some tap of some small position falls outside the big image along one axis */
static bool clips_lo(int64_t pad) { return pad > 0; }
static bool clips_hi(int64_t in, int64_t out, int64_t k, int64_t s, int64_t d, int64_t pad)
{
	return (out - 1) * s - pad + (k - 1) * d >= in;
}

static bool conv_clips(const ConvGeom *g)
{
	return clips_lo(g->ph) || clips_lo(g->pw) || clips_hi(g->big_h, g->small_h, g->kh, g->sh, g->dh, g->ph) ||
	       clips_hi(g->big_w, g->small_w, g->kw, g->sw, g->dw, g->pw);
}

/*
 * An innermost loop over [0, n) whose iterations store values that do not
 * depend on when they run (each stores a function of what no iteration
 * writes), as chunks of exactly CHUNK iterations: the last chunk starts at
 * n - CHUNK and redoes part of the one before. The compilers vectorize a
 * loop of 14 or 10 iterations with 8 lanes and leave the rest to a scalar
 * loop, iteration by iteration (LLVM folds no tail into masks here: see
 * emit_llvm.c's init_once): lenet's 14 pooling windows a row ran 8 in
 * vectors and 6 alone. Chunked, they are two vectors of 8. Loops of fewer
 * than CHUNK iterations, or a multiple of it, stay as they are. Returns the
 * index; chunked_close closes it.
 */
enum { CHUNK = 8 };

static bool chunks(int64_t n) { return n > CHUNK && n % CHUNK; }

static LoopExpr *chunked_open(Lower *l, int64_t n)
{
	if (!chunks(n))
		return V(l, loop_for_n(l->fn, n));
	LoopVar *c = loop_for_n(l->fn, (n + CHUNK - 1) / CHUNK);
	LoopVar *base = loop_local(l->fn, LT_I64, loop_bin(l->fn, LO_MIN, mul(l, V(l, c), I(l, CHUNK)), I(l, n - CHUNK)));
	return add(l, V(l, base), V(l, loop_for_n(l->fn, CHUNK)));
}

static void chunked_close(Lower *l, int64_t n)
{
	loop_end(l->fn);
	if (chunks(n))
		loop_end(l->fn);
}

/* ceil(a / s) for a >= 0 */
static LoopExpr *ceil_div(Lower *l, LoopExpr *a, int64_t s)
{
	return dvd(l, add(l, a, I(l, s - 1)), I(l, s));
}

/* along one axis, the loop over the small positions o whose big position o*s - pad + k*d
 * lies in [0, in): ceil((pad - k d) / s) <= o < ceil((in + pad - k d) / s), within [0, out) */
static void tap_range(Lower *l, LoopVar *k, int64_t in, int64_t out, int64_t kn, int64_t s, int64_t d, int64_t pad,
		      LoopExpr **lo, LoopExpr **hi)
{
	*lo = I(l, 0), *hi = I(l, out);
	if (clips_lo(pad))
		*lo = ceil_div(l, loop_max(l->fn, sub(l, I(l, pad), mul(l, V(l, k), I(l, d))), I(l, 0)), s);
	if (clips_hi(in, out, kn, s, d, pad)) {
		LoopExpr *room = loop_max(l->fn, sub(l, I(l, in + pad), mul(l, V(l, k), I(l, d))), I(l, 0));
		*hi = loop_bin(l->fn, LO_MIN, *hi, ceil_div(l, room, s));
	}
}

static LoopVar *tap_loop(Lower *l, LoopVar *k, int64_t in, int64_t out, int64_t kn, int64_t s, int64_t d, int64_t pad)
{
	LoopExpr *lo, *hi;
	tap_range(l, k, in, out, kn, s, d, pad, &lo, &hi);
	return loop_for(l->fn, lo, hi);
}

/* [lo, hi) of tap_range clamped to a partition of [0, out): [0, lo) [lo, hi) [hi, out) */
static void tap_parts(Lower *l, LoopVar *k, int64_t in, int64_t out, int64_t kn, int64_t s, int64_t d, int64_t pad,
		      LoopVar **lo, LoopVar **hi)
{
	LoopExpr *a, *b;
	tap_range(l, k, in, out, kn, s, d, pad, &a, &b);
	*lo = loop_local(l->fn, LT_I64, loop_bin(l->fn, LO_MIN, a, I(l, out)));
	*hi = loop_local(l->fn, LT_I64, loop_max(l->fn, loop_bin(l->fn, LO_MIN, b, I(l, out)), V(l, *lo)));
}

/* col[base + y * w + x] = 0 for x in [x0, x1) */
static void zero_span(Lower *l, LoopBuf *col, LoopVar *base, int64_t w, LoopVar *y, LoopExpr *x0, LoopExpr *x1)
{
	LoopVar *x = loop_for(l->fn, x0, x1);
	loop_store(l->fn, col, add(l, V(l, base), add(l, mul(l, V(l, y), I(l, w)), V(l, x))), F(l, 0));
	loop_end(l->fn);
}

/* opens the loops over the column rows (c, ky, kx) and the small positions
 * (oy, ox) whose big position lies inside the image; *col indexes the
 * per-sample column matrix, *big the big image of sample s. A channel owns
 * its rows of col and its plane of the big image: the channel loop is parallel. */
static void patches_open(Lower *l, const ConvGeom *g, LoopVar *s, LoopExpr **col, LoopExpr **big)
{
	LoopVar *c = loop_for_n(l->fn, g->big_c);
	loop_parallel(l->fn);
	LoopVar *ky = loop_for_n(l->fn, g->kh), *kx = loop_for_n(l->fn, g->kw);
	LoopVar *oy = tap_loop(l, ky, g->big_h, g->small_h, g->kh, g->sh, g->dh, g->ph);
	LoopVar *ox = tap_loop(l, kx, g->big_w, g->small_w, g->kw, g->sw, g->dw, g->pw);
	LoopExpr *row = add(l, mul(l, add(l, mul(l, add(l, V(l, c), I(l, g->c0)), I(l, g->kh)), V(l, ky)), I(l, g->kw)),
			    V(l, kx));
	*col = add(l, mul(l, row, I(l, small_hw(g))), add(l, mul(l, V(l, oy), I(l, g->small_w)), V(l, ox)));
	LoopExpr *iy = add(l, sub(l, mul(l, V(l, oy), I(l, g->sh)), I(l, g->ph)), mul(l, V(l, ky), I(l, g->dh)));
	LoopExpr *ix = add(l, sub(l, mul(l, V(l, ox), I(l, g->sw)), I(l, g->pw)), mul(l, V(l, kx), I(l, g->dw)));
	LoopExpr *plane = add(l, mul(l, V(l, s), I(l, g->big_c)), V(l, c));
	*big = add(l, mul(l, plane, I(l, g->big_h * g->big_w)), add(l, mul(l, iy, I(l, g->big_w)), ix));
}

static void patches_close(Lower *l)
{
	for (int i = 0; i < 5; i++)
		loop_end(l->fn);
}

/*
 * The column elements whose tap falls outside the image are 0: per row (c,
 * ky, kx) of col, the small positions outside the tap's [lo, hi) along each
 * axis, written once (zeroing all of col first would write it twice). They
 * are the same for every sample, so a slot zeroes them before its first
 * sample only: per sample, lenet's first convolution (pad 2) zeroed 1,400
 * spans of one or two elements, which C compilers turn into memset calls.
 */
static void im2col_borders(Lower *l, const ConvGeom *g, LoopBuf *col, LoopExpr *col_at)
{
	LoopVar *c = loop_for_n(l->fn, g->big_c);
	loop_parallel(l->fn);
	LoopVar *ky = loop_for_n(l->fn, g->kh), *kx = loop_for_n(l->fn, g->kw);
	LoopVar *ylo, *yhi, *xlo, *xhi;
	tap_parts(l, ky, g->big_h, g->small_h, g->kh, g->sh, g->dh, g->ph, &ylo, &yhi);
	tap_parts(l, kx, g->big_w, g->small_w, g->kw, g->sw, g->dw, g->pw, &xlo, &xhi);
	LoopExpr *row = add(l, mul(l, add(l, mul(l, V(l, c), I(l, g->kh)), V(l, ky)), I(l, g->kw)), V(l, kx));
	LoopVar *base = loop_local(l->fn, LT_I64, add(l, col_at, mul(l, row, I(l, small_hw(g)))));
	LoopVar *y = loop_for(l->fn, I(l, 0), V(l, ylo));	/* rows above */
	zero_span(l, col, base, g->small_w, y, I(l, 0), I(l, g->small_w));
	loop_end(l->fn);
	y = loop_for(l->fn, V(l, yhi), I(l, g->small_h));	/* rows below */
	zero_span(l, col, base, g->small_w, y, I(l, 0), I(l, g->small_w));
	loop_end(l->fn);
	y = loop_for(l->fn, V(l, ylo), V(l, yhi));		/* left and right of the rows between */
	zero_span(l, col, base, g->small_w, y, I(l, 0), V(l, xlo));
	zero_span(l, col, base, g->small_w, y, V(l, xhi), I(l, g->small_w));
	loop_end(l->fn);
	loop_end(l->fn);
	loop_end(l->fn);
	loop_end(l->fn);
}

/*
 * With stride 1 and the small image as wide as the big one, a tap's row of
 * col is the big plane shifted by one offset, (ky dh - ph) w + kx dw - pw: its
 * inside part is one contiguous copy from the first inside position to the
 * last, after which the positions left and right of the inside columns (read
 * from the neighbouring image rows, all within the plane) are zeroed again.
 * C compilers made each image row of the copy a memcpy call: resnet_mini's
 * 3x3 convolutions took 4,032 calls of 26-28 floats per sample. Every tap
 * must reach some column (|kx dw - pw| < w), else a span would leave the plane.
 */
static bool im2col_spans(const ConvGeom *g)
{
	return g->sh == 1 && g->sw == 1 && g->small_w == g->big_w && g->pw < g->big_w &&
	       (g->kw - 1) * g->dw - g->pw < g->big_w;
}

static void im2col_by_spans(Lower *l, const ConvGeom *g, LoopVar *s, LoopBuf *col, LoopExpr *col_at, LoopBuf *big)
{
	int64_t w = g->big_w;
	LoopVar *c = loop_for_n(l->fn, g->big_c);
	loop_parallel(l->fn);
	LoopVar *ky = loop_for_n(l->fn, g->kh);
	LoopVar *ylo, *yhi;
	tap_parts(l, ky, g->big_h, g->small_h, g->kh, g->sh, g->dh, g->ph, &ylo, &yhi);
	LoopExpr *plane = mul(l, add(l, mul(l, V(l, s), I(l, g->big_c)), V(l, c)), I(l, g->big_h * w));
	LoopVar *rows = loop_local(l->fn, LT_I64, add(l, plane, mul(l, sub(l, mul(l, V(l, ky), I(l, g->dh)), I(l, g->ph)), I(l, w))));
	/* one block per kx: the columns outside are then a few constant
	 * positions per row, stored one by one (a loop over them, of 1 or 2
	 * elements, became a memset call per row) */
	for (int64_t kx = 0; kx < g->kw; kx++) {
		int64_t shift = kx * g->dw - g->pw;
		int64_t xlo = shift < 0 ? -shift : 0, xhi = shift > 0 ? w - shift : w;
		LoopExpr *row = add(l, mul(l, add(l, mul(l, add(l, V(l, c), I(l, g->c0)), I(l, g->kh)), V(l, ky)), I(l, g->kw)),
				    I(l, kx));
		LoopVar *base = loop_local(l->fn, LT_I64, add(l, col_at, mul(l, row, I(l, small_hw(g)))));
		/* [ylo w + xlo, (yhi - 1) w + xhi): empty when no row is inside */
		LoopVar *q = loop_for(l->fn, add(l, mul(l, V(l, ylo), I(l, w)), I(l, xlo)),
				      add(l, mul(l, sub(l, V(l, yhi), I(l, 1)), I(l, w)), I(l, xhi)));
		loop_store(l->fn, col, add(l, V(l, base), V(l, q)),
			   loop_load(l->fn, big, add(l, add(l, V(l, rows), I(l, shift)), V(l, q))));
		loop_end(l->fn);
		if (xlo == 0 && xhi == w)
			continue;
		LoopVar *y = loop_for(l->fn, V(l, ylo), V(l, yhi));
		LoopExpr *at = add(l, V(l, base), mul(l, V(l, y), I(l, w)));
		for (int64_t x = 0; x < xlo; x++)
			loop_store(l->fn, col, add(l, at, I(l, x)), F(l, 0));
		for (int64_t x = xhi; x < w; x++)
			loop_store(l->fn, col, add(l, at, I(l, x)), F(l, 0));
		loop_end(l->fn);
	}
	loop_end(l->fn);
	loop_end(l->fn);
}

/* col = the patches of big[s] inside the image; the borders are left as they are: they are
 * zeroed once per slot (slot_borders), and nothing else writes a slot's columns */
static void im2col(Lower *l, const ConvGeom *g, LoopVar *s, LoopBuf *col, LoopExpr *col_at, LoopBuf *big)
{
	if (im2col_spans(g)) {
		im2col_by_spans(l, g, s, col, col_at, big);
		return;
	}
	LoopExpr *ci, *bi;
	patches_open(l, g, s, &ci, &bi);
	loop_store(l->fn, col, add(l, col_at, ci), loop_load(l->fn, big, bi));
	patches_close(l);
}

/*
 * A concat read through: im2col of each of its inputs into that input's
 * rows of col, so the concat itself is never copied together. U-Nets feed
 * every skip connection's concat to a convolution, which only im2col reads
 * (forward and weight gradient). In unet_tiny this removes 8 copy kernels
 * (with the slices of transposes_split) and 1.5 MB of arena at batch 32; on
 * one thread its speed did not change measurably (median of 8 runs).
 */
static void im2col_of(Lower *l, const ConvGeom *g, LoopVar *s, LoopBuf *col, LoopExpr *col_at, const IrNode *x)
{
	if (!l->through || !l->through[x->id]) {
		im2col(l, g, s, col, col_at, lower_buf(l, x));
		return;
	}
	ConvGeom piece = *g;
	for (int k = 0; k < x->nin; k++) {
		piece.big_c = x->in[k]->shape.d[0];
		im2col(l, &piece, s, col, col_at, lower_buf(l, x->in[k]));
		piece.c0 += piece.big_c;
	}
}

/* the adjoint of im2col: big[s] += every column element at its position; taps outside are dropped */
static void col2im(Lower *l, const ConvGeom *g, LoopVar *s, LoopBuf *col, LoopExpr *col_at, LoopBuf *big)
{
	LoopExpr *ci, *bi;
	patches_open(l, g, s, &ci, &bi);
	loop_store(l->fn, big, bi, add(l, loop_load(l->fn, big, bi), loop_load(l->fn, col, add(l, col_at, ci))));
	patches_close(l);
}

/* the column matrices of one call, one per slot */
static int64_t col_elems(const ConvGeom *g) { return g->groups * group_k(g) * small_hw(g); }

static LoopBuf *col_scratch(Lower *l, const IrNode *n, const ConvGeom *g)
{
	const char *name = arena_printf(l->m->arena, "%s %s columns %%%d", l->fn->name,
					n->layer ? n->layer : ir_op_name(n->op), n->id);
	return loop_new_buf(l->m, name, LT_F32, CONV_SLOTS * col_elems(g), false, LB_TEMP);
}

/* out[s, f, :] = bias[f], or 0 without a bias */
static void fill_sample(Lower *l, const IrNode *n, LoopVar *s, const IrNode *bias)
{
	int64_t c = n->shape.d[0], hw = elems(n) / c;
	LoopVar *f = loop_for_n(l->fn, c);
	loop_parallel(l->fn);
	LoopVar *p = loop_for_n(l->fn, hw);
	LoopExpr *at = add(l, mul(l, add(l, mul(l, V(l, s), I(l, c)), V(l, f)), I(l, hw)), V(l, p));
	st(l, n, at, bias ? ld(l, bias, V(l, f)) : F(l, 0));
	loop_end(l->fn);
	loop_end(l->fn);
}

/* the loop over the groups (their GEMMs write disjoint blocks), none for one group */
static LoopVar *group_open(Lower *l, const ConvGeom *g)
{
	if (g->groups == 1)
		return NULL;
	LoopVar *gi = loop_for_n(l->fn, g->groups);
	loop_parallel(l->fn);
	return gi;
}

/* gi * stride: the element offset of group gi's block */
static LoopExpr *group_at(Lower *l, LoopVar *gi, int64_t stride)
{
	return gi ? mul(l, V(l, gi), I(l, stride)) : I(l, 0);
}

static void group_close(Lower *l, LoopVar *gi)
{
	if (gi)
		loop_end(l->fn);
}

/*
 * The samples of a convolution. Without scratch (a direct 1x1 GEMM, or an
 * implicit column matrix) each sample is one parallel iteration. Scratch
 * columns, and conv_dw's sum over
 * the samples, are per slot: slot t takes samples t, t + CONV_SLOTS, ... in
 * order, the slot loop is the parallel one. Which thread runs a slot changes
 * nothing, so results are the same for every thread count; CONV_SLOTS bounds
 * how many threads a convolution keeps busy and costs as many column matrices.
 */
static LoopExpr *slot_at(Lower *l, LoopVar *slot, int64_t block);

/* cols: the slots' column matrices of g, whose borders each slot zeroes first (im2col) */
static LoopVar *sample_open(Lower *l, bool slotted, LoopVar **slot, const ConvGeom *g, LoopBuf *cols)
{
	*slot = NULL;
	if (!slotted) {
		LoopVar *s = loop_for(l->fn, I(l, 0), loop_n(l->fn));
		loop_parallel(l->fn);
		return s;
	}
	*slot = loop_for_n(l->fn, CONV_SLOTS);
	loop_parallel(l->fn);
	if (cols && conv_clips(g))
		im2col_borders(l, g, cols, slot_at(l, *slot, col_elems(g)));
	LoopVar *q = loop_for(l->fn, I(l, 0), ceil_div(l, sub(l, loop_n(l->fn), V(l, *slot)), CONV_SLOTS));
	return loop_local(l->fn, LT_I64, add(l, mul(l, V(l, q), I(l, CONV_SLOTS)), V(l, *slot)));
}

static void sample_close(Lower *l, LoopVar *slot)
{
	loop_end(l->fn);
	if (slot)
		loop_end(l->fn);
}

/* slot t's first element in a buffer of CONV_SLOTS blocks of `block` elements */
static LoopExpr *slot_at(Lower *l, LoopVar *slot, int64_t block)
{
	return slot ? mul(l, V(l, slot), I(l, block)) : I(l, 0);
}

/*
 * Convolutions with a column matrix read it without building it: the GEMM's
 * B is the implicit im2col of the image (loop.h's LoopConv), which the
 * runtime packs sliver by sliver straight from the image into L1. Building
 * col wrote each pixel kh*kw times to memory for the GEMM to read back: in
 * unet_tiny that was a quarter of the step. The result is bit for bit the
 * GEMM of the built col, but for the 3x3 products the runtime computes by
 * Winograd's algorithm (runtime/winograd.c), which round differently.
 */
static LoopConv implicit_geom(const ConvGeom *g)
{
	return (LoopConv){ .c = g->big_c / g->groups, .h = g->big_h, .w = g->big_w, .kh = g->kh, .kw = g->kw,
			   .sh = g->sh, .sw = g->sw, .ph = g->ph, .pw = g->pw, .dh = g->dh, .dw = g->dw,
			   .oh = g->small_h, .ow = g->small_w };
}

/* A 5x5 convolution of stride and dilation 1 with 6 channels and 16 filters
 * a group or more: the runtime computes it, and its weight gradient, by
 * Winograd's F(2x2, 5x5) with AVX-512 or AVX2 (runtime/winograd.c, the same
 * rules as nnrt_winograd_pays_5x5 and nnrt_winograd_pays_5x5_dw); lenet's
 * second layer. The portable runtime builds col per call for it. */
static bool conv_winograd5(const ConvGeom *g)
{
	return g->kh == 5 && g->kw == 5 && g->sh == 1 && g->sw == 1 && g->dh == 1 && g->dw == 1 &&
	       g->big_c / g->groups >= 6 && g->small_c / g->groups >= 16;
}

/* A convolution of at most 32 taps (channels x KH x KW; lenet's first layer:
 * 25) and 16 filters a group, of stride and dilation 1: the runtime sums it
 * tap by tap from a padded copy of the image, bitwise the GEMM on the built
 * col (runtime/direct.c, the rule of nnrt_conv_direct_pays). lenet's step
 * 1.03x with the JIT, 1.04x with the emitted C (its im2col was copied with
 * memcpy calls). */
static bool conv_direct_sum(const ConvGeom *g)
{
	return g->big_c / g->groups * g->kh * g->kw <= 32 && g->small_c / g->groups <= 16 && g->sh == 1 &&
	       g->sw == 1 && g->dh == 1 && g->dw == 1 &&
	       g->ph < g->kh && g->pw < g->kw && g->small_h == g->big_h + 2 * g->ph - g->kh + 1 &&
	       g->small_w == g->big_w + 2 * g->pw - g->kw + 1 && g->small_w >= 8;
}

/* Below 64 rows (lenet's first layer: 25, a one-channel 3x3: 9) a sliver's
 * tables cost more than its few rows save, and below 16 output columns a
 * sliver takes 3 or more output rows, each a masked load per row of the
 * sliver: col is built. Measured, AVX-512: 25 and 9 rows 0.83x and 0.90x
 * the built col's speed; lenet's second layer (10 columns) cost 45% more
 * in training than with col built, until Winograd's algorithm took it;
 * 16 channels 3x3 on 14x14 to 32x32, 1.0-1.5x. */
static bool conv_implicit(const ConvGeom *g)
{
	return !conv_direct(g) && ((group_k(g) >= 64 && g->small_w >= 16) || conv_winograd5(g) || conv_direct_sum(g));
}

/* A 3x3 weight gradient of stride and dilation 1 with 16 channels and 16
 * filters a group or more, or a 5x5 one of conv_winograd5: the runtime
 * computes it from the image by Winograd's algorithm (runtime/winograd.c,
 * the same rules as nnrt_winograd_pays_dw and nnrt_winograd_pays_5x5_dw),
 * 1.3-1.7x its other paths with AVX-512 or AVX2 for resnet_mini's 3x3s;
 * lenet's step 1.09x (JIT) for its second layer's. The portable runtime
 * builds col per call for it. */
static bool conv_winograd_dw(const ConvGeom *g)
{
	return (g->kh == 3 && g->kw == 3 && g->sh == 1 && g->sw == 1 && g->dh == 1 && g->dw == 1 &&
		g->big_c / g->groups >= 16 && g->small_c / g->groups >= 16) || conv_winograd5(g);
}

/* A weight gradient reads its implicit column matrix by dot products, each
 * row (a tap of a channel) the image shifted: the runtime needs stride 1 and
 * the output as wide as the image, and dot products pay up to 8 rows of dw
 * with AVX2, 16 with AVX-512 (runtime/gemm.c, use_dot); past that the
 * runtime would build col once per call, slower than this lowering's im2col
 * (AVX2 runtime: unet_tiny 0.90x, resnet_mini 0.89x with 16 rows here). */
static bool conv_implicit_dw(const ConvGeom *g)
{
	return !conv_direct(g) && g->sh == 1 && g->sw == 1 &&
	       ((g->small_w == g->big_w && g->small_c / g->groups <= 8) || conv_winograd_dw(g));
}

/* m with B the implicit column matrix of group gi of x[s]; a read-through concat
 * (im2col_of) is one GEMM per input: over its columns of A, each after the
 * first adding to C, or for a weight gradient (tb) into its columns of C */
static void gemm_implicit(Lower *l, const ConvGeom *g, LoopGemm m, LoopVar *s, LoopVar *gi, const IrNode *x)
{
	int64_t plane = g->big_h * g->big_w, taps = g->kh * g->kw;
	LoopConv geom = implicit_geom(g);
	m.conv = &geom;
	if (!l->through || !l->through[x->id]) {
		m.b = lower_buf(l, x);
		m.boff = add(l, mul(l, V(l, s), I(l, g->big_c * plane)), group_at(l, gi, geom.c * plane));
		loop_gemm(l->fn, &m);
		return;
	}
	LoopExpr *aoff = m.aoff, *coff = m.coff;
	for (int i = 0, c0 = 0; i < x->nin; c0 += (int)geom.c, i++) {
		geom.c = x->in[i]->shape.d[0];
		if (m.tb) {	/* a weight gradient: the input's columns of C */
			m.n = I(l, geom.c * taps);
			m.coff = add(l, coff, I(l, c0 * taps));
		} else {
			m.k = I(l, geom.c * taps);
			m.aoff = add(l, aoff, I(l, c0 * taps));
			m.beta = i ? 1 : m.beta;
		}
		m.b = lower_buf(l, x->in[i]);
		m.boff = mul(l, V(l, s), I(l, geom.c * plane));
		loop_gemm(l->fn, &m);
	}
}

/* m over col, or over x[s]'s implicit column matrix */
static void gemm_of(Lower *l, const ConvGeom *g, bool implicit, LoopGemm m, LoopVar *s, const IrNode *x)
{
	if (implicit)
		gemm_implicit(l, g, m, s, NULL, x);
	else
		loop_gemm(l->fn, &m);
}

/* conv2d: y[s] = w . im2col(x[s]) per group, plus bias (filled in first, GEMM adds) */
static bool lower_conv_gather(Lower *l, const IrNode *n)
{
	const IrNode *x = n->in[0], *w = n->in[1], *b = n->nin > 2 ? n->in[2] : NULL;
	ConvGeom g = conv_geom(n, n, x);
	bool direct = conv_direct(&g);
	int64_t sg = g.small_c / g.groups, k = group_k(&g), hw = small_hw(&g);
	bool implicit = conv_implicit(&g), cols = !direct && !implicit;
	LoopBuf *col = direct ? lower_buf(l, x) : cols ? col_scratch(l, n, &g) : NULL;
	LoopVar *slot, *s = sample_open(l, cols, &slot, &g, col);
	if (cols)
		im2col_of(l, &g, s, col, slot_at(l, slot, col_elems(&g)), x);
	if (b)
		fill_sample(l, n, s, b);
	LoopVar *gi = group_open(l, &g);
	LoopExpr *base = direct ? mul(l, V(l, s), I(l, g.big_c * hw)) : slot_at(l, slot, col_elems(&g));
	LoopGemm m = { .m = I(l, sg), .n = I(l, hw), .k = I(l, k), .alpha = 1, .beta = b ? 1 : 0,
		       .a = lower_buf(l, w), .aoff = group_at(l, gi, sg * k), .lda = I(l, k),
		       .b = col, .boff = add(l, base, group_at(l, gi, k * hw)), .ldb = I(l, hw),
		       .c = lower_buf(l, n), .ldc = I(l, hw),
		       .coff = add(l, mul(l, V(l, s), I(l, g.small_c * hw)), group_at(l, gi, sg * hw)) };
	if (implicit)
		gemm_implicit(l, &g, m, s, gi, x);
	else
		loop_gemm(l->fn, &m);
	group_close(l, gi);
	if (n->group)
		conv_epilogue(l, n, s);
	host_pools(l, n, s);
	host_bn_sums(l, n, s);
	sample_close(l, slot);
	return true;
}

/*
 * conv_transpose2d with stride 1, dilation 1 and one group (a convolution's
 * input gradient, mostly) as a gather: y[f, Y, X] = sum over c, ky, kx of
 * w[c, f, ky, kx] x[c, Y + ph - ky, X + pw - kx] is the convolution of x
 * with the taps flipped, w'[f, c, kh-1-ky, kw-1-kx] = w[c, f, ky, kx], and
 * padding kh-1-ph, kw-1-pw: im2col of x, then one GEMM writes y[s]. No
 * col2im, whose adds into y (each element once per tap) were most of the
 * kernel, and whose short clipped rows vectorized badly.
 */
static bool conv_t_gathers(const ConvGeom *g)
{
	/* the gather pads x by kh-1-ph: from a "same" convolution's gradient (ph >= (kh-1)/2) at most
	 * ph; from an unpadded one, kh-1 on every side (lenet's 5x5 on 10x10: 3.2x the area, measured
	 * 21% slower than col2im), so those keep the scatter */
	return g->sh == 1 && g->sw == 1 && g->dh == 1 && g->dw == 1 && g->groups == 1 && 2 * g->ph >= g->kh - 1 &&
	       2 * g->pw >= g->kw - 1 && g->ph <= g->kh - 1 && g->pw <= g->kw - 1 && !conv_direct(g);
}

static bool lower_conv_t_gather(Lower *l, const IrNode *n, const ConvGeom *t)
{
	const IrNode *x = n->in[0], *w = n->in[1], *b = n->nin > 2 ? n->in[2] : NULL;
	int64_t f = n->shape.d[0], c = x->shape.d[0], kh = t->kh, kw = t->kw, taps = kh * kw;
	LoopBuf *wf = kernel_temp(l, n, "flipped weight", f * c * taps, false);
	{			/* wf[f, c, ky, kx] = w[c, f, kh-1-ky, kw-1-kx] */
		LoopVar *fi = loop_for_n(l->fn, f);
		loop_parallel(l->fn);
		LoopVar *ci = loop_for_n(l->fn, c), *ky = loop_for_n(l->fn, kh), *kx = loop_for_n(l->fn, kw);
		LoopExpr *to = add(l, mul(l, add(l, mul(l, add(l, mul(l, V(l, fi), I(l, c)), V(l, ci)), I(l, kh)), V(l, ky)),
					  I(l, kw)), V(l, kx));
		LoopExpr *from = add(l, mul(l, add(l, mul(l, add(l, mul(l, V(l, ci), I(l, f)), V(l, fi)), I(l, kh)),
						  sub(l, I(l, kh - 1), V(l, ky))), I(l, kw)), sub(l, I(l, kw - 1), V(l, kx)));
		loop_store(l->fn, wf, to, ld(l, w, from));
		for (int i = 0; i < 4; i++)
			loop_end(l->fn);
	}
	ConvGeom g = { .big_c = c, .big_h = x->shape.d[1], .big_w = x->shape.d[2], .small_c = f,
		       .small_h = n->shape.d[1], .small_w = n->shape.d[2], .kh = kh, .kw = kw, .sh = 1, .sw = 1,
		       .dh = 1, .dw = 1, .ph = kh - 1 - t->ph, .pw = kw - 1 - t->pw, .groups = 1 };
	int64_t k = group_k(&g), hw = small_hw(&g);
	bool implicit = conv_implicit(&g);
	LoopBuf *col = implicit ? NULL : col_scratch(l, n, &g);
	LoopVar *slot, *s = sample_open(l, !implicit, &slot, &g, col);
	if (!implicit)
		im2col_of(l, &g, s, col, slot_at(l, slot, col_elems(&g)), x);
	if (b)
		fill_sample(l, n, s, b);
	LoopGemm m = { .m = I(l, f), .n = I(l, hw), .k = I(l, k), .alpha = 1, .beta = b ? 1 : 0,
		       .a = wf, .aoff = I(l, 0), .lda = I(l, k),
		       .b = col, .boff = slot_at(l, slot, col_elems(&g)), .ldb = I(l, hw),
		       .ldc = I(l, hw), .coff = mul(l, V(l, s), I(l, f * hw)) };
	if (l->split && l->split[n->id]) {
		/* only slices read y (a concat's gradient): each slice's rows of the product go
		 * straight to the slice, and the slices copy nothing */
		for (int i = n->id + 1; i < l->g->nnodes; i++) {
			const IrNode *u = l->g->nodes[i];
			if (!l->need[i] || u->op != IR_SLICE || u->in[0] != n)
				continue;
			int64_t rows = u->shape.d[0];
			LoopGemm part = m;
			part.m = I(l, rows);
			part.aoff = I(l, u->a.units * k);
			part.c = lower_buf(l, u);
			part.coff = mul(l, V(l, s), I(l, rows * hw));
			gemm_of(l, &g, implicit, part, s, x);
		}
	} else {
		m.c = lower_buf(l, n);
		gemm_of(l, &g, implicit, m, s, x);
	}
	if (n->group)
		conv_epilogue(l, n, s);
	sample_close(l, slot);
	return true;
}

/*
 * With stride and dilation 1 along W, the runtime adds the product into
 * y[s] itself (nnrt_sgemm_col2im, loop.h's col2im GEMM): its scratch column
 * matrix stays in L2, and it writes each row of y[s] once, summing the taps
 * that land on it in vectors. The scatter below added each column row into
 * y[s] in runs as short as the small image's rows (lenet's conv2 input
 * gradient: 10), which compilers vectorized badly, and kept a column matrix
 * per slot in the arena. Measured on that gradient, AVX-512, one sample: the
 * scatter about 4.5 us, the runtime's about 1.3 us, its product 5.8 us.
 * Strided rows (unet_tiny's up-convolutions) keep the scatter.
 */
static bool conv_t_fused(const ConvGeom *g)
{
	return g->sw == 1 && g->dw == 1 && !conv_direct(g);
}

static bool lower_conv_col2im(Lower *l, const IrNode *n, const ConvGeom *g)
{
	const IrNode *x = n->in[0], *w = n->in[1], *b = n->nin > 2 ? n->in[2] : NULL;
	int64_t sg = g->small_c / g->groups, k = group_k(g), hw = small_hw(g), plane = g->big_h * g->big_w;
	LoopVar *slot, *s = sample_open(l, false, &slot, g, NULL);
	if (b)
		fill_sample(l, n, s, b);
	LoopVar *gi = group_open(l, g);
	LoopConv geom = implicit_geom(g);
	LoopGemm m = { .ta = 1, .col2im = true, .conv = &geom, .m = I(l, k), .n = I(l, hw), .k = I(l, sg),
		       .alpha = 1, .beta = b ? 1 : 0, .a = lower_buf(l, w), .aoff = group_at(l, gi, sg * k),
		       .lda = I(l, k), .b = lower_buf(l, x), .ldb = I(l, hw),
		       .boff = add(l, mul(l, V(l, s), I(l, g->small_c * hw)), group_at(l, gi, sg * hw)),
		       .c = lower_buf(l, n), .ldc = I(l, g->big_w),
		       .coff = add(l, mul(l, V(l, s), I(l, g->big_c * plane)), group_at(l, gi, geom.c * plane)) };
	loop_gemm(l->fn, &m);
	group_close(l, gi);
	if (n->group)
		conv_epilogue(l, n, s);
	sample_close(l, slot);
	return true;
}

/* conv_transpose2d: y[s] = col2im(w^T . x[s]) per group, plus bias (col2im adds
 * into the bias, or into 0; a direct GEMM writes y[s] itself) */
static bool lower_conv_scatter(Lower *l, const IrNode *n)
{
	const IrNode *x = n->in[0], *w = n->in[1], *b = n->nin > 2 ? n->in[2] : NULL;
	ConvGeom g = conv_geom(n, x, n);
	if (conv_t_gathers(&g))
		return lower_conv_t_gather(l, n, &g);
	if (conv_t_fused(&g))
		return lower_conv_col2im(l, n, &g);
	bool direct = conv_direct(&g);
	int64_t sg = g.small_c / g.groups, k = group_k(&g), hw = small_hw(&g);
	LoopBuf *col = direct ? lower_buf(l, n) : col_scratch(l, n, &g);
	LoopVar *slot, *s = sample_open(l, !direct, &slot, &g, NULL);
	if (b || !direct)
		fill_sample(l, n, s, b);
	LoopVar *gi = group_open(l, &g);
	LoopExpr *base = direct ? mul(l, V(l, s), I(l, g.big_c * hw)) : slot_at(l, slot, col_elems(&g));
	LoopGemm m = { .ta = 1, .m = I(l, k), .n = I(l, hw), .k = I(l, sg), .alpha = 1, .beta = direct && b ? 1 : 0,
		       .a = lower_buf(l, w), .aoff = group_at(l, gi, sg * k), .lda = I(l, k),
		       .b = lower_buf(l, x), .ldb = I(l, hw),
		       .boff = add(l, mul(l, V(l, s), I(l, g.small_c * hw)), group_at(l, gi, sg * hw)),
		       .c = col, .coff = add(l, base, group_at(l, gi, k * hw)), .ldc = I(l, hw) };
	loop_gemm(l->fn, &m);
	group_close(l, gi);
	if (!direct)
		col2im(l, &g, s, col, slot_at(l, slot, col_elems(&g)), lower_buf(l, n));
	if (n->group)
		conv_epilogue(l, n, s);
	sample_close(l, slot);
	return true;
}

/* conv_dw: dw = sum over samples of small[s] . im2col(big[s])^T per group. Each
 * slot sums its samples into its own partial dw (zeroed first, every GEMM adds);
 * then dw = the partial sums added pairwise in slot order. */
static bool lower_conv_dw(Lower *l, const IrNode *n)
{
	const IrNode *small = n->in[0], *big = n->in[1];
	ConvGeom g = conv_geom(n, small, big);
	bool direct = conv_direct(&g), implicit = conv_implicit_dw(&g), cols = !direct && !implicit;
	int64_t sg = g.small_c / g.groups, k = group_k(&g), hw = small_hw(&g), e = elems(n);
	LoopBuf *col = direct ? lower_buf(l, big) : cols ? col_scratch(l, n, &g) : NULL;
	const char *name = arena_printf(l->m->arena, "%s %s partial sums %%%d", l->fn->name,
					n->layer ? n->layer : ir_op_name(n->op), n->id);
	LoopBuf *part = loop_new_buf(l->m, name, LT_F32, CONV_SLOTS * e, false, LB_TEMP);
	LoopVar *slot = loop_for_n(l->fn, CONV_SLOTS);
	loop_parallel(l->fn);
	LoopVar *i = loop_for_n(l->fn, e);
	loop_store(l->fn, part, add(l, slot_at(l, slot, e), V(l, i)), F(l, 0));
	loop_end(l->fn);
	if (cols && conv_clips(&g))
		im2col_borders(l, &g, col, slot_at(l, slot, col_elems(&g)));
	LoopVar *q = loop_for(l->fn, I(l, 0), ceil_div(l, sub(l, loop_n(l->fn), V(l, slot)), CONV_SLOTS));
	LoopVar *s = loop_local(l->fn, LT_I64, add(l, mul(l, V(l, q), I(l, CONV_SLOTS)), V(l, slot)));
	if (cols)
		im2col_of(l, &g, s, col, slot_at(l, slot, col_elems(&g)), big);
	LoopVar *gi = group_open(l, &g);
	LoopExpr *base = direct ? mul(l, V(l, s), I(l, g.big_c * hw)) : slot_at(l, slot, col_elems(&g));
	LoopGemm m = { .tb = 1, .m = I(l, sg), .n = I(l, k), .k = I(l, hw), .alpha = 1, .beta = 1,
		       .a = lower_buf(l, small), .lda = I(l, hw),
		       .aoff = add(l, mul(l, V(l, s), I(l, g.small_c * hw)), group_at(l, gi, sg * hw)),
		       .b = col, .boff = add(l, base, group_at(l, gi, k * hw)), .ldb = I(l, hw),
		       .c = part, .coff = add(l, slot_at(l, slot, e), group_at(l, gi, sg * k)), .ldc = I(l, k) };
	if (implicit)
		gemm_implicit(l, &g, m, s, gi, big);
	else
		loop_gemm(l->fn, &m);
	group_close(l, gi);
	loop_end(l->fn);
	loop_end(l->fn);
	i = loop_for_n(l->fn, e);
	loop_parallel(l->fn);
	LoopExpr *t[CONV_SLOTS];
	for (int j = 0; j < CONV_SLOTS; j++)
		t[j] = loop_load(l->fn, part, add(l, I(l, j * e), V(l, i)));
	for (int w = CONV_SLOTS; w > 1; w /= 2)
		for (int j = 0; j < w / 2; j++)
			t[j] = add(l, t[2 * j], t[2 * j + 1]);
	st(l, n, V(l, i), t[0]);
	host_updates(l, n, i);
	loop_end(l->fn);
	return true;
}

/*
 * Per-channel sums in double of x viewed as [N, C, P]: channel c's N*P
 * elements, term(k, at) the k-th summand at element `at`. One running sum
 * would wait on the latency of each add before the next; SUM_LANES partial
 * sums over neighbouring elements are independent (the C compiler and LLVM
 * may also put them in vectors). They combine in one fixed order, so the
 * result is the same on both backends and for every thread count. The lanes
 * run along the positions, or along the samples when a channel has fewer
 * positions than lanes (batchnorm on [C], sums of [n, C]). Along the
 * positions, each sum has its own loop over a sample's positions, which stay
 * in L1 from one loop to the next: gcc 12 vectorizes a loop holding one
 * group of lane sums and leaves a loop of two or more groups scalar
 * (measured: 3-4x slower for batchnorm's statistics).
 */
enum { SUM_LANES = 8, MAX_SUMS = 4 };

typedef LoopExpr *(*SumTerm)(Lower *l, const void *env, int k, LoopExpr *at);

/* runs in chan_sums's sample loop before the sample's terms (channels of at least SUM_LANES positions) */
typedef struct SumPrologue {
	void (*fn)(Lower *l, const struct SumPrologue *pro, LoopVar *c, LoopVar *s);
	const IrNode *node, *value;
} SumPrologue;

static LoopExpr *chan_at(Lower *l, LoopExpr *s, LoopVar *c, int64_t ch, int64_t pos, LoopExpr *p)
{
	return add(l, mul(l, add(l, mul(l, s, I(l, ch)), V(l, c)), I(l, pos)), p);
}

static void chan_sums_pro(Lower *l, LoopVar *c, int64_t ch, int64_t pos, bool batched, int nsum, SumTerm term,
			  const void *env, LoopVar **out, const SumPrologue *pro)
{
	LoopVar *acc[MAX_SUMS][SUM_LANES];
	for (int k = 0; k < nsum; k++)
		for (int j = 0; j < SUM_LANES; j++)
			acc[k][j] = loop_local(l->fn, LT_F64, f64(l, 0));
	LoopExpr *samples = batched ? loop_n(l->fn) : I(l, 1);
	if (pos >= SUM_LANES) {
		int64_t whole = pos / SUM_LANES * SUM_LANES;
		LoopVar *s = loop_for(l->fn, I(l, 0), samples);
		if (pro)
			pro->fn(l, pro, c, s);
		for (int k = 0; k < nsum; k++) {	/* one sum per loop: C compilers vectorize those */
			LoopVar *q = loop_for_n(l->fn, pos / SUM_LANES);
			for (int j = 0; j < SUM_LANES; j++) {
				LoopExpr *p = add(l, mul(l, V(l, q), I(l, SUM_LANES)), I(l, j));
				loop_set(l->fn, acc[k][j], add(l, V(l, acc[k][j]), term(l, env, k, chan_at(l, V(l, s), c, ch, pos, p))));
			}
			loop_end(l->fn);
		}
		if (whole < pos) {
			LoopVar *p = loop_for(l->fn, I(l, whole), I(l, pos));
			for (int k = 0; k < nsum; k++)
				loop_set(l->fn, acc[k][0], add(l, V(l, acc[k][0]), term(l, env, k, chan_at(l, V(l, s), c, ch, pos, V(l, p)))));
			loop_end(l->fn);
		}
		loop_end(l->fn);
	} else {
		if (pro)
			NNC_BUG("a sum prologue needs channels of %d positions or more", SUM_LANES);
		LoopExpr *blocks = dvd(l, samples, I(l, SUM_LANES));
		LoopVar *q = loop_for(l->fn, I(l, 0), blocks);
		LoopVar *p = loop_for_n(l->fn, pos);
		for (int j = 0; j < SUM_LANES; j++) {
			LoopExpr *s = add(l, mul(l, V(l, q), I(l, SUM_LANES)), I(l, j));
			for (int k = 0; k < nsum; k++)
				loop_set(l->fn, acc[k][j], add(l, V(l, acc[k][j]), term(l, env, k, chan_at(l, s, c, ch, pos, V(l, p)))));
		}
		loop_end(l->fn);
		loop_end(l->fn);
		LoopVar *s = loop_for(l->fn, mul(l, dvd(l, batched ? loop_n(l->fn) : I(l, 1), I(l, SUM_LANES)), I(l, SUM_LANES)),
				      batched ? loop_n(l->fn) : I(l, 1));
		p = loop_for_n(l->fn, pos);
		for (int k = 0; k < nsum; k++)
			loop_set(l->fn, acc[k][0], add(l, V(l, acc[k][0]), term(l, env, k, chan_at(l, V(l, s), c, ch, pos, V(l, p)))));
		loop_end(l->fn);
		loop_end(l->fn);
	}
	for (int k = 0; k < nsum; k++) {	/* a pairwise tree: ((0+1)+(2+3))+((4+5)+(6+7)) */
		LoopExpr *t[SUM_LANES];
		for (int j = 0; j < SUM_LANES; j++)
			t[j] = V(l, acc[k][j]);
		for (int w = SUM_LANES; w > 1; w /= 2)
			for (int j = 0; j < w / 2; j++)
				t[j] = add(l, t[2 * j], t[2 * j + 1]);
		out[k] = loop_local(l->fn, LT_F64, t[0]);
	}
}

static void chan_sums(Lower *l, LoopVar *c, int64_t ch, int64_t pos, bool batched, int nsum, SumTerm term,
		      const void *env, LoopVar **out)
{
	chan_sums_pro(l, c, ch, pos, batched, nsum, term, env, out, NULL);
}

static LoopExpr *term_load(Lower *l, const void *env, int k, LoopExpr *at)
{
	(void)k;
	return loop_cvt(l->fn, LT_F64, ld(l, env, at));
}

/*
 * Sums over the channels of images (at least PLANE_POS positions a plane)
 * run plane by plane in memory order: a loop, parallel over the n*C planes,
 * sums each plane and keeps the sum; then each channel adds its n plane sums
 * in sample order. A channel's values are runs of H*W floats every C*H*W:
 * reading one channel at a time jumps between them, and measured 3x slower
 * than streaming the planes. The result does not depend on the thread count.
 */
enum { PLANE_POS = 64 };

static LoopBuf *kernel_temp(Lower *l, const IrNode *n, const char *what, int64_t elems, bool batched)
{
	const char *name = arena_printf(l->m->arena, "%s %s %s %%%d", l->fn->name,
					n->layer ? n->layer : ir_op_name(n->op), what, n->id);
	return loop_new_buf(l->m, name, LT_F32, elems, batched, LB_TEMP);
}

/* the double v as two floats at b[at], b[at + 1]: v rounded, and the rest rounded; their sum
 * is v to 48 bits (buffers hold floats) */
static void store_split(Lower *l, LoopBuf *b, LoopExpr *at, LoopVar *v)
{
	LoopVar *hi = loop_local(l->fn, LT_F32, loop_cvt(l->fn, LT_F32, V(l, v)));
	loop_store(l->fn, b, at, V(l, hi));
	loop_store(l->fn, b, add(l, at, I(l, 1)), loop_cvt(l->fn, LT_F32, sub(l, V(l, v), loop_cvt(l->fn, LT_F64, V(l, hi)))));
}

static LoopExpr *load_split(Lower *l, LoopBuf *b, LoopExpr *at)
{
	return add(l, loop_cvt(l->fn, LT_F64, loop_load(l->fn, b, at)),
		   loop_cvt(l->fn, LT_F64, loop_load(l->fn, b, add(l, at, I(l, 1)))));
}

/* channel c's sum of the plane sums of one kind, or of pairs at (s * C + c) * stride + at, in sample order */
static LoopVar *plane_total(Lower *l, LoopBuf *b, int64_t ch, LoopVar *c, int64_t stride, int64_t at)
{
	LoopVar *acc = loop_local(l->fn, LT_F64, f64(l, 0));
	LoopVar *s = loop_for(l->fn, I(l, 0), loop_n(l->fn));
	LoopExpr *i = add(l, mul(l, add(l, mul(l, V(l, s), I(l, ch)), V(l, c)), I(l, stride)), I(l, at));
	loop_set(l->fn, acc, add(l, V(l, acc), load_split(l, b, i)));
	loop_end(l->fn);
	return acc;
}

/* run on plane p of a sum's value before the plane is summed (plane_sums) */
typedef void PlaneFn(Lower *l, const void *env, LoopVar *p);

/* the sums of the planes of v [n, C, P]: returns part, per sample [C, 2] (store_split),
 * after pro(plane) when pro != NULL */
static LoopBuf *plane_sums(Lower *l, const IrNode *n, const IrNode *v, PlaneFn *pro, const void *env)
{
	int64_t ch = v->shape.d[0];
	LoopBuf *part = kernel_temp(l, n, "plane sums", 2 * ch, true);
	LoopVar *p = loop_for(l->fn, I(l, 0), mul(l, loop_n(l->fn), I(l, ch)));
	loop_parallel(l->fn);
	if (pro)
		pro(l, env, p);
	LoopVar *sum;
	chan_sums(l, p, 1, elems(v) / ch, false, 1, term_load, v, &sum);	/* plane p as channel p of one sample */
	store_split(l, part, mul(l, V(l, p), I(l, 2)), sum);
	loop_end(l->fn);
	return part;
}

/* channel_sum: out[c] = sum over samples and positions of g[s, c, ...], in double;
 * a channel per iteration, so each output element has one writer */
static bool lower_channel_sum(Lower *l, const IrNode *n)
{
	const IrNode *g = n->in[0];
	int64_t c = elems(n), rest = elems(g) / c;
	LoopBuf *part = g->batched && rest >= PLANE_POS ? plane_sums(l, n, g, NULL, NULL) : NULL;
	LoopVar *ch = loop_for_n(l->fn, c);
	loop_parallel(l->fn);
	LoopVar *acc;
	if (part)
		acc = plane_total(l, part, c, ch, 2, 0);
	else
		chan_sums(l, ch, c, rest, g->batched, 1, term_load, g, &acc);
	st(l, n, V(l, ch), V(l, acc));
	host_updates(l, n, ch);
	loop_end(l->fn);
	return true;
}

/* ---- pooling, batchnorm, concat, up-sampling ---- */

/*
 * Images are [N, C, H, W] row-major, so the n*C planes of H*W elements are
 * contiguous: plane p = sample * C + channel starts at element p*H*W. Each
 * kernel below writes only its own plane (or channel), so that loop runs in
 * parallel; the backward scatters overlap within a plane, never across planes.
 */
static LoopVar *planes_open(Lower *l, const IrNode *img)
{
	LoopVar *p = loop_for(l->fn, I(l, 0), mul(l, loop_n(l->fn), I(l, img->shape.d[0])));
	loop_parallel(l->fn);
	return p;
}

/* element (y, x) of plane p of img [N, C, H, W] */
static LoopExpr *plane_at(Lower *l, const IrNode *img, LoopVar *p, LoopExpr *y, LoopExpr *x)
{
	int64_t w = img->shape.d[2];
	return add(l, mul(l, V(l, p), I(l, img->shape.d[1] * w)), add(l, mul(l, y, I(l, w)), x));
}

/* PyTorch's window of pooling output (oy, ox) over the input img: rows [y0, y1) and columns
 * [x0, x1) inside the input, and avgpool's divisor with count_include_pad: the window clipped
 * to the padded input, (min(ys + kh, H + pad) - ys) * (...), as PyTorch computes it per window.
 * When no window can reach past the input (no padding, and the last window ends inside: the
 * common pooling of even sizes), every window is kh x kw from (y0, x0): `inside` says so, and
 * small windows are written out cell by cell (win_each), so that the C compilers and LLVM
 * vectorize across the output's columns (measured on lenet's 2x2 maxpool alone: 25x faster). */
enum { WIN_UNROLL = 16 };	/* windows of up to this many cells are written out cell by cell */

typedef struct PoolWin {
	LoopExpr *y0, *y1, *x0, *x1;
	LoopExpr *div;		/* F32 */
	bool inside;
	int64_t kh, kw;
} PoolWin;

static bool pool_inside(const IrAttrs *a, const IrNode *img, const IrNode *out)
{
	return a->pad[0] == 0 && a->pad[1] == 0 && a->pad[2] == 0 && a->pad[3] == 0 &&
	       (out->shape.d[1] - 1) * a->stride[0] + a->kernel[0] <= img->shape.d[1] &&
	       (out->shape.d[2] - 1) * a->stride[1] + a->kernel[1] <= img->shape.d[2];
}

/* windows written out cell by cell (win_each): their loop over the output's columns stores
 * values that do not depend on when it runs, and goes in chunks (chunked_open) */
static bool pool_written_out(const IrAttrs *a, const IrNode *img, const IrNode *out)
{
	return pool_inside(a, img, out) && a->kernel[0] * a->kernel[1] <= WIN_UNROLL;
}

static PoolWin pool_win(Lower *l, const IrAttrs *a, const IrNode *img, LoopVar *oy, LoopVar *ox, const IrNode *out)
{
	int64_t h = img->shape.d[1], w = img->shape.d[2];
	LoopExpr *ys = sub(l, mul(l, V(l, oy), I(l, a->stride[0])), I(l, a->pad[0]));
	LoopExpr *xs = sub(l, mul(l, V(l, ox), I(l, a->stride[1])), I(l, a->pad[2]));
	if (pool_inside(a, img, out))
		return (PoolWin){ .y0 = ys, .x0 = xs, .div = F(l, (double)(a->kernel[0] * a->kernel[1])), .inside = true,
				  .kh = a->kernel[0], .kw = a->kernel[1] };
	LoopExpr *ye = loop_bin(l->fn, LO_MIN, add(l, ys, I(l, a->kernel[0])), I(l, h + a->pad[1]));
	LoopExpr *xe = loop_bin(l->fn, LO_MIN, add(l, xs, I(l, a->kernel[1])), I(l, w + a->pad[3]));
	return (PoolWin){ .y0 = loop_max(l->fn, ys, I(l, 0)), .y1 = loop_bin(l->fn, LO_MIN, ye, I(l, h)),
			  .x0 = loop_max(l->fn, xs, I(l, 0)), .x1 = loop_bin(l->fn, LO_MIN, xe, I(l, w)),
			  .div = loop_cvt(l->fn, LT_F32, mul(l, sub(l, ye, ys), sub(l, xe, xs))) };
}

/* what is done at each cell of a window: `cell` is its element in img */
typedef void CellFn(Lower *l, void *env, LoopExpr *cell);


/* fn at every cell of the window inside the input, in row-major order. A
 * window that is always inside and small is written out cell by cell: the
 * loop over the output's columns is then the innermost, and vectorizes. */
static void win_each(Lower *l, const PoolWin *win, const IrNode *img, LoopVar *p, CellFn *fn, void *env)
{
	if (win->inside && win->kh * win->kw <= WIN_UNROLL) {
		for (int64_t y = 0; y < win->kh; y++)
			for (int64_t x = 0; x < win->kw; x++)
				fn(l, env, plane_at(l, img, p, add(l, win->y0, I(l, y)), add(l, win->x0, I(l, x))));
		return;
	}
	LoopVar *y, *x;
	if (win->inside) {
		y = loop_for_n(l->fn, win->kh);
		x = loop_for_n(l->fn, win->kw);
		fn(l, env, plane_at(l, img, p, add(l, win->y0, V(l, y)), add(l, win->x0, V(l, x))));
	} else {
		y = loop_for(l->fn, win->y0, win->y1);
		x = loop_for(l->fn, win->x0, win->x1);
		fn(l, env, plane_at(l, img, p, V(l, y), V(l, x)));
	}
	loop_end(l->fn);
	loop_end(l->fn);
}

typedef struct WinMax {
	const IrNode *x;
	LoopVar *mx, *at;
	LoopVar *ord;		/* or the first maximum's ordinal in a written-out window, as a float */
	int64_t cells;		/* the cells seen so far */
} WinMax;

static void cell_max(Lower *l, void *env, LoopExpr *cell)
{
	WinMax *e = env;
	LoopExpr *v = ld(l, e->x, cell);
	LoopExpr *wins = loop_bin(l->fn, LO_OR, loop_bin(l->fn, LO_GT, v, V(l, e->mx)), loop_bin(l->fn, LO_NE, v, v));
	if (e->at)	/* before mx changes: wins reads it */
		loop_set(l->fn, e->at, sel(l, wins, cell, V(l, e->at)));
	if (e->ord)
		loop_set(l->fn, e->ord, sel(l, wins, F(l, (double)e->cells), V(l, e->ord)));
	loop_set(l->fn, e->mx, sel(l, wins, v, V(l, e->mx)));
	e->cells++;
}

/* the window's maximum and (at != NULL) the element of its first maximum in row-major order, as
 * PyTorch's CPU kernel: a cell wins when above the best so far or NaN; padding (-inf) never wins,
 * so only cells inside the input are read, and a window of -inf keeps its first cell */
static LoopVar *win_max(Lower *l, const PoolWin *win, const IrNode *x, LoopVar *p, LoopVar **at)
{
	WinMax e = { .x = x, .mx = loop_local(l->fn, LT_F32, F(l, -INFINITY)) };
	if (at)
		e.at = *at = loop_local(l->fn, LT_I64, plane_at(l, x, p, win->y0, win->x0));
	win_each(l, win, x, p, cell_max, &e);
	return e.mx;
}

/* the cells' sum (avgpool), their update by d (avgpool's gradient), g at the ordinal arg and 0
 * elsewhere (maxpool's gradient over windows that do not overlap) */
typedef struct WinCell {
	const IrNode *n;
	LoopVar *acc, *arg;
	int64_t cells;
} WinCell;

static void cell_sum(Lower *l, void *env, LoopExpr *cell)
{
	WinCell *e = env;
	loop_set(l->fn, e->acc, add(l, V(l, e->acc), ld(l, e->n, cell)));
}

static void cell_add(Lower *l, void *env, LoopExpr *cell)
{
	WinCell *e = env;
	st(l, e->n, cell, add(l, ld(l, e->n, cell), V(l, e->acc)));
}

/* g at the element arg and 0 elsewhere (windows not written out) */
static void cell_pick_at(Lower *l, void *env, LoopExpr *cell)
{
	WinCell *e = env;
	st(l, e->n, cell, sel(l, loop_bin(l->fn, LO_EQ, cell, V(l, e->arg)), V(l, e->acc), F(l, 0)));
}

static void cell_pick(Lower *l, void *env, LoopExpr *cell)
{
	WinCell *e = env;
	LoopExpr *first = loop_bin(l->fn, LO_EQ, F(l, (double)e->cells++), V(l, e->arg));
	st(l, e->n, cell, sel(l, first, V(l, e->acc), F(l, 0)));
}

/* global_avgpool: out[p] = the mean of plane p, summed in double */
static void lower_global_avgpool(Lower *l, const IrNode *n)
{
	const IrNode *x = n->in[0];
	int64_t hw = x->shape.d[1] * x->shape.d[2];
	LoopVar *p = planes_open(l, x), *sum;
	/* in double with lanes: one chain of dependent adds ran 784-position planes at a quarter
	 * of the speed of a read (resnet_mini: 1.9% of the step) */
	chan_sums(l, p, 1, hw, false, 1, term_load, x, &sum);	/* plane p as channel p of one sample */
	st(l, n, V(l, p), dvd(l, V(l, sum), f64(l, (double)hw)));
	loop_end(l->fn);
}

/* maxpool: the window's maximum; avgpool: its sum (float, as PyTorch) over the divisor;
 * all planes, or (s != NULL) the planes of sample s only */
static void pool_planes(Lower *l, const IrNode *n, LoopVar *s)
{
	const IrNode *x = n->in[0];
	LoopVar *p;
	if (s) {
		LoopVar *c = loop_for_n(l->fn, n->shape.d[0]);
		loop_parallel(l->fn);
		p = loop_local(l->fn, LT_I64, add(l, mul(l, V(l, s), I(l, n->shape.d[0])), V(l, c)));
	} else {
		p = planes_open(l, n);
	}
	LoopVar *oy = loop_for_n(l->fn, n->shape.d[1]);
	int64_t ow = n->shape.d[2];
	bool chunked = pool_written_out(&n->a, x, n);
	LoopVar *ox = chunked ? loop_local(l->fn, LT_I64, chunked_open(l, ow)) : loop_for_n(l->fn, ow);
	PoolWin win = pool_win(l, &n->a, x, oy, ox, n);
	LoopExpr *v;
	if (n->op == IR_MAXPOOL) {
		v = V(l, win_max(l, &win, x, p, NULL));
	} else {
		WinCell e = { .n = x, .acc = loop_local(l->fn, LT_F32, F(l, 0)) };
		win_each(l, &win, x, p, cell_sum, &e);
		v = dvd(l, V(l, e.acc), win.div);
	}
	st(l, n, plane_at(l, n, p, V(l, oy), V(l, ox)), v);
	if (chunked)
		chunked_close(l, ow);
	else
		loop_end(l->fn);
	loop_end(l->fn);
	loop_end(l->fn);
}

static bool lower_pool(Lower *l, const IrNode *n)		/* maxpool, avgpool, global_avgpool */
{
	if (n->op == IR_GLOBAL_AVGPOOL)
		lower_global_avgpool(l, n);
	else
		pool_planes(l, n, NULL);
	return true;
}

static MapFn map_fn(IrOp op);

/* the pooling of a convolution's result run by the convolution's kernel (passes/fuse.c:
 * n->host), sample by sample as soon as the sample's result is complete; then the
 * element-wise op of the pooling's result that it hosts too */
static void host_pools(Lower *l, const IrNode *conv, LoopVar *s)
{
	for (int k = conv->id + 1; k < l->g->nnodes; k++) {
		const IrNode *p = l->g->nodes[k];
		if (p->host != conv->id + 1 || !l->need[k])
			continue;
		if (p->op == IR_MAXPOOL || p->op == IR_AVGPOOL) {
			pool_planes(l, p, s);
		} else if (p->nin == 1 && map_fn(p->op)) {
			int64_t e = elems(p);
			LoopVar *i = loop_for_n(l->fn, e);
			LoopExpr *at = add(l, mul(l, V(l, s), I(l, e)), V(l, i));
			LoopExpr *in[1] = { ld(l, p->in[0], at) };
			st(l, p, at, map_fn(p->op)(l, p, in));
			loop_end(l->fn);
		}
	}
}

/* maxpool: dx = 0, then each window's g to its first maximum (overlapping windows add up);
 * avgpool: dx = 0, then g / divisor to each of the window's cells inside the input;
 * global_avgpool: dx = g / (H*W) everywhere. n has the input's shape, n->in[0] is g. */
static void pool_bwd_plane(Lower *l, const IrNode *n, LoopVar *p);

static bool lower_pool_bwd(Lower *l, const IrNode *n)	/* their gradients */
{
	LoopVar *p = planes_open(l, n);
	pool_bwd_plane(l, n, p);
	loop_end(l->fn);
	return true;
}

/* the gradient's plane p (the planes loop stays open) */
static void pool_bwd_plane(Lower *l, const IrNode *n, LoopVar *p)
{
	const IrNode *g = n->in[0];
	int64_t hw = n->shape.d[1] * n->shape.d[2];
	const IrAttrs *a = &n->a;
	bool apart = n->op == IR_MAXPOOL_BWD && a->stride[0] >= a->kernel[0] && a->stride[1] >= a->kernel[1];
	/* windows side by side that cover the plane (lenet's and unet_tiny's 2x2): every cell is
	 * stored below, so the plane is not zeroed first */
	bool tiled = apart && a->stride[0] == a->kernel[0] && a->stride[1] == a->kernel[1] &&
		     g->shape.d[1] * a->stride[0] == n->shape.d[1] && g->shape.d[2] * a->stride[1] == n->shape.d[2] &&
		     !a->pad[0] && !a->pad[1] && !a->pad[2] && !a->pad[3] && a->kernel[0] * a->kernel[1] <= WIN_UNROLL;
	if (!tiled) {
		LoopVar *i = loop_for_n(l->fn, hw);
		LoopExpr *at = add(l, mul(l, V(l, p), I(l, hw)), V(l, i));
		st(l, n, at, n->op == IR_GLOBAL_AVGPOOL_BWD ? dvd(l, ld(l, g, V(l, p)), F(l, (double)hw)) : F(l, 0));
		loop_end(l->fn);
	}
	if (n->op == IR_GLOBAL_AVGPOOL_BWD)
		return;
	LoopVar *oy = loop_for_n(l->fn, g->shape.d[1]);
	int64_t ow = g->shape.d[2];
	/* each cell stored once, with g or 0 (below) */
	bool chunked = apart && pool_written_out(&n->a, n, g);
	LoopVar *ox = chunked ? loop_local(l->fn, LT_I64, chunked_open(l, ow)) : loop_for_n(l->fn, ow);
	PoolWin win = pool_win(l, &n->a, n, oy, ox, g);
	LoopExpr *gv = ld(l, g, plane_at(l, g, p, V(l, oy), V(l, ox)));
	if (apart && win.inside && win.kh * win.kw <= WIN_UNROLL) {
		/* windows that do not overlap, written out: each cell gets g or 0, stored, which
		 * vectorizes (a scatter to the maximum does not); the same values as 0 + g at the
		 * maximum. The maximum is its ordinal in the window, a float: with the element's
		 * int64 index the compiler's vectors held half as many lanes, in two types. */
		WinMax m = { .x = n->in[1], .mx = loop_local(l->fn, LT_F32, F(l, -INFINITY)),
			     .ord = loop_local(l->fn, LT_F32, F(l, 0)) };
		win_each(l, &win, n->in[1], p, cell_max, &m);
		WinCell e = { .n = n, .arg = m.ord, .acc = loop_local(l->fn, LT_F32, gv) };
		win_each(l, &win, n, p, cell_pick, &e);
	} else if (apart && win.inside) {
		WinCell e = { .n = n };
		win_max(l, &win, n->in[1], p, &e.arg);
		e.acc = loop_local(l->fn, LT_F32, gv);
		win_each(l, &win, n, p, cell_pick_at, &e);
	} else if (n->op == IR_MAXPOOL_BWD) {
		LoopVar *arg;
		win_max(l, &win, n->in[1], p, &arg);
		st(l, n, V(l, arg), add(l, ld(l, n, V(l, arg)), gv));
	} else {
		WinCell e = { .n = n, .acc = loop_local(l->fn, LT_F32, dvd(l, gv, win.div)) };
		win_each(l, &win, n, p, cell_add, &e);
	}
	if (chunked)
		chunked_close(l, ow);
	else
		loop_end(l->fn);
	loop_end(l->fn);
}

/*
 * Batchnorm sees its input x as [N, C, P] with P = 1 for [C] and H*W for
 * [C, H, W]; statistics run per channel over the M = n*P values of the
 * samples and positions. Every kernel loops over channels in parallel (each
 * writes its channel's elements), then over samples and positions.
 */
static LoopExpr *bn_at(Lower *l, const IrNode *x, LoopVar *s, LoopVar *c, LoopVar *p)
{
	int64_t ch = x->shape.d[0];
	return add(l, mul(l, add(l, mul(l, V(l, s), I(l, ch)), V(l, c)), I(l, elems(x) / ch)), V(l, p));
}

/* opens the loops over the samples (returned) and positions (*p) of one channel */
static LoopVar *bn_open(Lower *l, const IrNode *x, LoopVar **p)
{
	LoopVar *s = loop_for(l->fn, I(l, 0), loop_n(l->fn));
	*p = loop_for_n(l->fn, elems(x) / x->shape.d[0]);
	return s;
}

static void bn_close(Lower *l)
{
	loop_end(l->fn);
	loop_end(l->fn);
}

static LoopExpr *bn_count(Lower *l, const IrNode *x)	/* M, F64 */
{
	return loop_cvt(l->fn, LT_F64, mul(l, loop_n(l->fn), I(l, elems(x) / x->shape.d[0])));
}

/* what the batchnorm sums read: x, its channel's mean, the incoming gradient g */
typedef struct BnEnv {
	const IrNode *x, *g;
	LoopVar *mean;
} BnEnv;

static LoopExpr *bn_dev(Lower *l, const BnEnv *e, LoopExpr *at)	/* x - mean, F64 */
{
	return sub(l, loop_cvt(l->fn, LT_F64, ld(l, e->x, at)), V(l, e->mean));
}

/* what the one-pass statistics sum, with d = x - K (K, env's mean: the channel's first
 * element, or for plane sums the plane's): 0: d, 1: d^2, and with a gradient g, 2: d g, 3: g */
static LoopExpr *term_shifted(Lower *l, const void *env, int k, LoopExpr *at)
{
	const BnEnv *e = env;
	if (k == 3)
		return loop_cvt(l->fn, LT_F64, ld(l, e->g, at));
	LoopExpr *d = bn_dev(l, e, at);
	if (k == 0)
		return d;
	return mul(l, d, k == 1 ? bn_dev(l, e, at) : loop_cvt(l->fn, LT_F64, ld(l, e->g, at)));
}

static int64_t bn_pos(const IrNode *x) { return elems(x) / x->shape.d[0]; }

/*
 * Batchnorm kernels loop over the channels, in parallel. Image channels (at
 * least PLANE_POS positions) are read plane by plane instead: a first loop,
 * parallel over the n*C planes, sums each plane in double and keeps the sums
 * (bn_part; for a convolution's result, its sample loop does: host_bn_sums),
 * then the loop over the channels adds each channel's n plane sums in sample
 * order, moved to the channel's shift (plane_shift_totals). A channel's positions are a
 * run of P floats every C*P, so reading a whole channel at a time jumps
 * between short runs; the planes in memory order stream (measured on a [64,
 * 32, 28, 28] batch: 3x faster). The passes that write (the normalized
 * values, dx) run over the planes too, from per-channel coefficients the
 * channel loop stores. The result does not depend on the thread count.
 */
static bool bn_by_planes(const IrNode *x) { return bn_pos(x) >= PLANE_POS; }

/*
 * The plane sums of a batchnorm kernel (none: summed channel by channel).
 * Each plane's sums are taken around the plane's own first element Kp, so a
 * plane's sums need no other sample: the forward's can run in the loop of
 * the convolution that writes x, sample by sample (host_bn_sums), and the
 * backward reads the forward's instead of summing x again. The channel loop
 * moves them to the channel's K (bn_stats_with). Per sample [C, 2 sums, 2]:
 * each sum as two floats (store_split).
 */
typedef struct BnPart {
	LoopBuf *xs;	/* d and d^2, d = x - Kp */
	LoopBuf *gs;	/* with a gradient g: d g and g */
} BnPart;

static LoopExpr *plane_chan(Lower *l, const IrNode *x, LoopVar *p)	/* the channel of plane p */
{
	LoopExpr *ch = I(l, x->shape.d[0]);
	return sub(l, V(l, p), mul(l, dvd(l, V(l, p), ch), ch));
}

/* K, the shift of channel c's sums: its first element, of sample 0 */
static LoopVar *bn_shift(Lower *l, const IrNode *x, LoopExpr *c)
{
	return loop_local(l->fn, LT_F64, loop_cvt(l->fn, LT_F64, ld(l, x, mul(l, c, I(l, bn_pos(x))))));
}

static LoopExpr *term_shifted_g(Lower *l, const void *env, int k, LoopExpr *at)	/* d g, g */
{
	return term_shifted(l, env, k + 2, at);
}

/* plane p's sums around its first element, into buf[p]: of x (d, d^2), or with g of g (d g, g) */
static void bn_plane_sums(Lower *l, const IrNode *x, const IrNode *g, LoopVar *p, LoopBuf *buf)
{
	BnEnv e = { .x = x, .g = g };
	e.mean = loop_local(l->fn, LT_F64, loop_cvt(l->fn, LT_F64, ld(l, x, mul(l, V(l, p), I(l, bn_pos(x))))));
	LoopVar *sums[2];
	chan_sums(l, p, 1, bn_pos(x), false, 2, g ? term_shifted_g : term_shifted, &e, sums);	/* plane p as channel p of one sample */
	for (int k = 0; k < 2; k++)
		store_split(l, buf, add(l, mul(l, V(l, p), I(l, 4)), I(l, 2 * k)), sums[k]);
}

/* the first pass of a batchnorm kernel over image channels: the plane sums of x, unless a
 * kernel before has them, and of g */
static BnPart bn_part(Lower *l, const IrNode *n, const IrNode *x, const IrNode *g)
{
	BnPart bp = { 0 };
	if (!bn_by_planes(x))
		return bp;
	bp.xs = l->bn_xs[x->id];
	bool sum_x = !bp.xs;
	if (sum_x)
		bp.xs = l->bn_xs[x->id] = kernel_temp(l, n, "plane sums", x->shape.d[0] * 4, true);
	if (g)
		bp.gs = kernel_temp(l, n, "plane sums of g", x->shape.d[0] * 4, true);
	if (!sum_x && !g)
		return bp;
	LoopVar *p = planes_open(l, x);
	if (sum_x)
		bn_plane_sums(l, x, NULL, p, bp.xs);
	if (g)
		bn_plane_sums(l, x, g, p, bp.gs);
	loop_end(l->fn);
	return bp;
}

/* the plane sums of sample s of conv, when a training batchnorm reads conv plane by plane:
 * in the conv's sample loop, while the sample is in cache, instead of a pass of their own */
static void host_bn_sums(Lower *l, const IrNode *conv, LoopVar *s)
{
	if (conv->group || !bn_by_planes(conv) || l->bn_xs[conv->id])
		return;
	const IrNode *bn = NULL;
	for (int k = conv->id + 1; k < l->g->nnodes && !bn; k++) {
		const IrNode *m = l->g->nodes[k];
		if (l->need[k] && m->op == IR_BATCHNORM_TRAIN && m->in[0] == conv)
			bn = m;
	}
	if (!bn)
		return;
	int64_t ch = conv->shape.d[0];
	LoopBuf *xs = l->bn_xs[conv->id] = kernel_temp(l, bn, "plane sums", ch * 4, true);
	LoopVar *c = loop_for_n(l->fn, ch);
	bn_plane_sums(l, conv, NULL, loop_local(l->fn, LT_I64, add(l, mul(l, V(l, s), I(l, ch)), V(l, c))), xs);
	loop_end(l->fn);
}

/* channel c's sums around K (bn_shift) from the plane sums around each plane's Kp:
 * with e = Kp - K, sum (x - K) = S1 + P e, sum (x - K)^2 = S2 + e (2 S1 + P e),
 * sum (x - K) g = S(d g) + e S(g); in sample order */
static void plane_shift_totals(Lower *l, const IrNode *x, const BnPart *bp, LoopVar *c, LoopVar *k, LoopVar **sums)
{
	int64_t ch = x->shape.d[0], pos = bn_pos(x);
	int nsum = bp->gs ? 4 : 2;
	for (int j = 0; j < nsum; j++)
		sums[j] = loop_local(l->fn, LT_F64, f64(l, 0));
	LoopVar *s = loop_for(l->fn, I(l, 0), loop_n(l->fn));
	LoopVar *p = loop_local(l->fn, LT_I64, add(l, mul(l, V(l, s), I(l, ch)), V(l, c)));
	LoopVar *e = loop_local(l->fn, LT_F64, sub(l, loop_cvt(l->fn, LT_F64, ld(l, x, mul(l, V(l, p), I(l, pos)))), V(l, k)));
	LoopExpr *at = mul(l, V(l, p), I(l, 4));
	LoopVar *s1 = loop_local(l->fn, LT_F64, load_split(l, bp->xs, at));
	LoopVar *s2 = loop_local(l->fn, LT_F64, load_split(l, bp->xs, add(l, at, I(l, 2))));
	LoopVar *pe = loop_local(l->fn, LT_F64, mul(l, f64(l, (double)pos), V(l, e)));
	loop_set(l->fn, sums[0], add(l, V(l, sums[0]), add(l, V(l, s1), V(l, pe))));
	loop_set(l->fn, sums[1], add(l, V(l, sums[1]),
				       add(l, V(l, s2), mul(l, V(l, e), add(l, mul(l, f64(l, 2), V(l, s1)), V(l, pe))))));
	if (bp->gs) {
		LoopVar *dg = loop_local(l->fn, LT_F64, load_split(l, bp->gs, at));
		LoopVar *gsum = loop_local(l->fn, LT_F64, load_split(l, bp->gs, add(l, at, I(l, 2))));
		loop_set(l->fn, sums[2], add(l, V(l, sums[2]), add(l, V(l, dg), mul(l, V(l, e), V(l, gsum)))));
		loop_set(l->fn, sums[3], add(l, V(l, sums[3]), V(l, gsum)));
	}
	loop_end(l->fn);
}

/*
 * Channel c's batch mean and sum of squared deviations (ssd), in double, in
 * one pass over x: the sums of d = x - K and of d^2 around K, the channel's
 * first element, give mean = K + S1 / M and ssd = S2 - S1^2 / M. K is near
 * the mean, so S2 and S1^2 / M do not cancel the way the plain sums of x and
 * x^2 would, and in double the error stays far under float rounding. With a
 * gradient g (g != NULL), the same pass also sums d g and g, which give the
 * backward's dot = sum (x - mean) g = S(d g) - (S1 / M) S(g), and *gsum = S(g).
 * Two passes over the data fewer in the backward, one fewer in the forward.
 * bp: the plane sums of bn_part, or none (then summed here, channel by channel).
 */
static void bn_stats_with(Lower *l, const IrNode *x, const IrNode *g, const BnPart *bp, LoopVar *c, LoopVar **mean,
			  LoopVar **ssd, LoopVar **dot, LoopVar **gsum)
{
	int64_t ch = x->shape.d[0];
	LoopVar *k = bn_shift(l, x, V(l, c));
	LoopVar *sums[4];
	if (bp->xs) {
		plane_shift_totals(l, x, bp, c, k, sums);
	} else {
		BnEnv e = { .x = x, .g = g, .mean = k };
		chan_sums(l, c, ch, bn_pos(x), true, g ? 4 : 2, term_shifted, &e, sums);
	}
	LoopVar *shift = loop_local(l->fn, LT_F64, dvd(l, V(l, sums[0]), bn_count(l, x)));	/* mean - K */
	*mean = loop_local(l->fn, LT_F64, add(l, V(l, k), V(l, shift)));
	*ssd = loop_local(l->fn, LT_F64, loop_max(l->fn, sub(l, V(l, sums[1]), mul(l, V(l, shift), V(l, sums[0]))),
						f64(l, 0)));
	if (g) {
		*dot = loop_local(l->fn, LT_F64, sub(l, V(l, sums[2]), mul(l, V(l, shift), V(l, sums[3]))));
		*gsum = sums[3];
	}
}

static void bn_stats(Lower *l, const IrNode *x, const BnPart *bp, LoopVar *c, LoopVar **mean, LoopVar **ssd)
{
	bn_stats_with(l, x, NULL, bp, c, mean, ssd, NULL, NULL);
}

/* 1 / sqrt(ssd / M + eps) with the biased variance, rounded to float as PyTorch saves it */
static LoopVar *bn_invstd(Lower *l, const IrNode *x, double eps, LoopVar *ssd)
{
	LoopExpr *var = dvd(l, V(l, ssd), bn_count(l, x));
	return loop_local(l->fn, LT_F32, dvd(l, f64(l, 1), un(l, LO_SQRT, add(l, var, f64(l, eps)))));
}

/* y = x * alpha + beta with alpha = w * invstd, beta = b - mean * alpha per channel, as
 * PyTorch's CPU kernel; mean and variance are the running ones (batchnorm, inference) or
 * the batch's, with the biased variance (batchnorm_train) */
static void bn_update(Lower *l, const IrNode *n, LoopVar *c, LoopVar *mean, LoopVar *ssd);
static bool lower_node(Lower *l, const IrNode *n);

/* the element of position i of plane p */
static LoopExpr *bn_plane_at(Lower *l, const IrNode *x, LoopVar *p, LoopVar *i)
{
	return add(l, mul(l, V(l, p), I(l, bn_pos(x))), V(l, i));
}

/* y = x * alpha + beta: channel c's alpha = w * invstd and beta = b - mean * alpha */
static void bn_affine(Lower *l, const IrNode *n, LoopExpr *c, LoopVar *mean, LoopVar *invstd, LoopVar **alpha,
		      LoopVar **beta)
{
	*alpha = loop_local(l->fn, LT_F32, mul(l, V(l, invstd), ld(l, n->in[1], c)));
	*beta = loop_local(l->fn, LT_F32, sub(l, ld(l, n->in[2], c), mul(l, loop_cvt(l->fn, LT_F32, V(l, mean)), V(l, *alpha))));
}

/* the running statistics' mean and 1 / sqrt(var + eps) of channel c */
static void bn_running(Lower *l, const IrNode *n, LoopExpr *c, LoopVar **mean, LoopVar **invstd)
{
	*mean = loop_local(l->fn, LT_F32, ld(l, n->in[3], c));
	*invstd = loop_local(l->fn, LT_F32, dvd(l, F(l, 1), un(l, LO_SQRT, add(l, ld(l, n->in[4], c), F(l, n->a.eps)))));
}

/* a batchnorm's value y at element at, then the group it heads on that element.
 * y is stored when something outside the group reads it (ReLU's gradient
 * reads ReLU's output, so after batchnorm -> relu usually nothing does) */
static void bn_head(Lower *l, const IrNode *n, LoopExpr *at, LoopExpr *y)
{
	if (!n->group) {
		st(l, n, at, y);
		return;
	}
	LoopVar *i = loop_local(l->fn, LT_I64, at);
	if (l->stores[n->id]) {
		st(l, n, V(l, i), y);
	} else {
		l->head = n;
		l->head_val = loop_local(l->fn, LT_F32, y);
	}
	group_body(l, n->group, l->last[n->group], i);
	l->head = NULL;
}

/* inference batchnorm of images: plane by plane, each plane's coefficients from its channel's */
static bool bn_running_planes(Lower *l, const IrNode *n)
{
	const IrNode *x = n->in[0];
	LoopVar *mean, *invstd, *alpha, *beta, *p = planes_open(l, x);
	LoopExpr *c = plane_chan(l, x, p);
	bn_running(l, n, c, &mean, &invstd);
	bn_affine(l, n, c, mean, invstd, &alpha, &beta);
	LoopVar *i = loop_for_n(l->fn, bn_pos(x));
	LoopExpr *at = bn_plane_at(l, x, p, i);
	bn_head(l, n, at, add(l, mul(l, ld(l, x, at), V(l, alpha)), V(l, beta)));
	bn_close(l);
	return true;
}

/* upd[0..nupd): bn_running_update kernels of x in n's channel group, from the same statistics */
static bool lower_batchnorm_with(Lower *l, const IrNode *n, const IrNode *const *upd, int nupd)
{
	const IrNode *x = n->in[0];
	bool train = n->op == IR_BATCHNORM_TRAIN, planes = bn_by_planes(x);
	if (planes && !train)
		return bn_running_planes(l, n);
	BnPart bp = train ? bn_part(l, n, x, NULL) : (BnPart){ 0 };
	LoopBuf *coef = planes ? kernel_temp(l, n, "alpha beta", 2 * x->shape.d[0], false) : NULL;
	LoopVar *c = loop_for_n(l->fn, x->shape.d[0]);
	loop_parallel(l->fn);
	LoopVar *mean, *invstd;
	if (n->op == IR_BATCHNORM_TRAIN) {
		LoopVar *ssd;
		bn_stats(l, x, &bp, c, &mean, &ssd);
		invstd = bn_invstd(l, x, n->a.eps, ssd);
		for (int i = 0; i < nupd; i++)
			bn_update(l, upd[i], c, mean, ssd);
	} else {
		bn_running(l, n, V(l, c), &mean, &invstd);
	}
	LoopVar *alpha, *beta;
	bn_affine(l, n, V(l, c), mean, invstd, &alpha, &beta);
	LoopExpr *at;
	if (planes) {
		loop_store(l->fn, coef, mul(l, V(l, c), I(l, 2)), V(l, alpha));
		loop_store(l->fn, coef, add(l, mul(l, V(l, c), I(l, 2)), I(l, 1)), V(l, beta));
		loop_end(l->fn);
		LoopVar *p = planes_open(l, x);
		LoopExpr *pc = plane_chan(l, x, p);
		alpha = loop_local(l->fn, LT_F32, loop_load(l->fn, coef, mul(l, pc, I(l, 2))));
		beta = loop_local(l->fn, LT_F32, loop_load(l->fn, coef, add(l, mul(l, pc, I(l, 2)), I(l, 1))));
		at = bn_plane_at(l, x, p, loop_for_n(l->fn, bn_pos(x)));
	} else {
		LoopVar *p, *s = bn_open(l, x, &p);
		at = bn_at(l, x, s, c, p);
	}
	bn_head(l, n, at, add(l, mul(l, ld(l, x, at), V(l, alpha)), V(l, beta)));
	bn_close(l);	/* samples and positions, or positions and planes */
	if (!planes)
		loop_end(l->fn);
	return true;
}

static bool lower_batchnorm(Lower *l, const IrNode *n)	/* batchnorm (running statistics), batchnorm_train */
{
	return lower_batchnorm_with(l, n, NULL, 0);
}

/* running = (1 - momentum) running + momentum batch, in double, with the unbiased variance
 * ssd / (M - 1) as PyTorch (which refuses M = 1 in training; here M - 1 is at least 1) */
static void bn_update(Lower *l, const IrNode *n, LoopVar *c, LoopVar *mean, LoopVar *ssd)
{
	const IrNode *rm = n->in[1], *rv = n->in[2];
	double mom = n->a.momentum;
	LoopExpr *unbiased = dvd(l, V(l, ssd), loop_max(l->fn, sub(l, bn_count(l, n->in[0]), f64(l, 1)), f64(l, 1)));
	st(l, rm, V(l, c), add(l, mul(l, f64(l, mom), V(l, mean)), mul(l, f64(l, 1 - mom), ld(l, rm, V(l, c)))));
	st(l, rv, V(l, c), add(l, mul(l, f64(l, mom), unbiased), mul(l, f64(l, 1 - mom), ld(l, rv, V(l, c)))));
}

/* as PyTorch's CPU backward, with the batch's mean and invstd: dotp = sum (x - mean) g (double);
 * dw = dotp invstd; dx = (g - sum(g) / M - (x - mean) dotp invstd^2 / M) invstd w */
static void bn_dw(Lower *l, const IrNode *n)
{
	const IrNode *g = n->in[0], *x = n->in[1];
	BnPart bp = bn_part(l, n, x, g);
	LoopVar *c = loop_for_n(l->fn, x->shape.d[0]);
	loop_parallel(l->fn);
	LoopVar *mean, *ssd, *dot, *sum;
	bn_stats_with(l, x, g, &bp, c, &mean, &ssd, &dot, &sum);
	LoopVar *invstd = bn_invstd(l, x, n->a.eps, ssd);
	st(l, n, V(l, c), mul(l, V(l, dot), V(l, invstd)));
	loop_end(l->fn);
}

/* what the dx pass of a channel group needs to write dx and sum it */
typedef struct BnDx {
	const IrNode *x, *g, *dx;
	LoopVar *k, *gmean, *m32, *invstd, *w;
} BnDx;

/* dx at `at`, stored; the summand is the stored value */
static LoopExpr *term_dx(Lower *l, const void *env, int k, LoopExpr *at)
{
	(void)k;
	const BnDx *e = env;
	LoopExpr *centered = mul(l, sub(l, ld(l, e->x, at), V(l, e->m32)), V(l, e->k));
	LoopVar *v = loop_local(l->fn, LT_F32, mul(l, mul(l, sub(l, sub(l, ld(l, e->g, at), V(l, e->gmean)), centered),
							  V(l, e->invstd)), V(l, e->w)));
	st(l, e->dx, at, V(l, v));
	return loop_cvt(l->fn, LT_F64, V(l, v));
}

/*
 * A backward channel group (passes/fuse.c): batchnorm_dx with the
 * batchnorm_dw and channel_sums of its gradient and the channel_sums of its
 * result, in one loop over the channels. The statistics, the sums of (x -
 * mean) g and of g are computed once; the sums of dx are taken as dx is
 * written. Each value is the one its kernel alone computes, bit for bit.
 */
static void lower_bn_backward(Lower *l, const IrNode *dx, const IrNode *const *m, int nm)
{
	const IrNode *g = dx->in[0], *x = dx->in[1];
	int64_t ch = x->shape.d[0];
	BnPart bp = bn_part(l, dx, x, g);
	bool planes = bp.xs != NULL;
	enum { CK, CGMEAN, CM32, CINVSTD, CW, NCOEF };	/* what the plane pass reads per channel */
	LoopBuf *coef = planes ? kernel_temp(l, dx, "coefficients", NCOEF * ch, false) : NULL;
	LoopVar *c = loop_for_n(l->fn, ch);
	loop_parallel(l->fn);
	LoopVar *mean, *ssd, *sums[2];
	bn_stats_with(l, x, g, &bp, c, &mean, &ssd, &sums[0], &sums[1]);
	LoopVar *invstd = bn_invstd(l, x, dx->a.eps, ssd);
	const IrNode *dsum[MAX_SUMS * 8];
	int nd = 0;
	for (int i = 0; i < nm; i++) {
		if (m[i]->op == IR_BN_DW)
			st(l, m[i], V(l, c), mul(l, V(l, sums[0]), V(l, invstd)));
		else if (m[i]->op == IR_CHANNEL_SUM && m[i]->in[0] == g)
			st(l, m[i], V(l, c), V(l, sums[1]));
		else if (m[i]->op == IR_CHANNEL_SUM && nd < (int)(sizeof dsum / sizeof *dsum))
			dsum[nd++] = m[i];
	}
	BnDx d = { .x = x, .g = g, .dx = dx, .invstd = invstd };
	d.k = loop_local(l->fn, LT_F32, dvd(l, mul(l, V(l, sums[0]), mul(l, V(l, invstd), V(l, invstd))), bn_count(l, x)));
	d.gmean = loop_local(l->fn, LT_F32, dvd(l, V(l, sums[1]), bn_count(l, x)));
	d.m32 = loop_local(l->fn, LT_F32, V(l, mean));
	d.w = loop_local(l->fn, LT_F32, ld(l, dx->in[2], V(l, c)));
	if (planes) {	/* the coefficients, then dx plane by plane, then the channel sums of dx */
		LoopVar *const put[NCOEF] = { [CK] = d.k, [CGMEAN] = d.gmean, [CM32] = d.m32, [CINVSTD] = d.invstd,
					      [CW] = d.w };
		for (int j = 0; j < NCOEF; j++)
			loop_store(l->fn, coef, add(l, mul(l, V(l, c), I(l, NCOEF)), I(l, j)), V(l, put[j]));
		loop_end(l->fn);
		LoopBuf *dpart = nd ? kernel_temp(l, dx, "plane sums of dx", 2 * ch, true) : NULL;
		LoopVar *p = planes_open(l, x);
		LoopExpr *pc = mul(l, plane_chan(l, x, p), I(l, NCOEF));
		LoopVar *got[NCOEF];
		for (int j = 0; j < NCOEF; j++)
			got[j] = loop_local(l->fn, LT_F32, loop_load(l->fn, coef, add(l, pc, I(l, j))));
		BnDx dp = { .x = x, .g = g, .dx = dx, .k = got[CK], .gmean = got[CGMEAN], .m32 = got[CM32],
			    .invstd = got[CINVSTD], .w = got[CW] };
		if (nd) {
			LoopVar *total;
			chan_sums(l, p, 1, bn_pos(x), false, 1, term_dx, &dp, &total);	/* plane p as in bn_part */
			store_split(l, dpart, mul(l, V(l, p), I(l, 2)), total);
		} else {
			LoopVar *i = loop_for_n(l->fn, bn_pos(x));
			term_dx(l, &dp, 0, bn_plane_at(l, x, p, i));
			loop_end(l->fn);
		}
		loop_end(l->fn);
		c = loop_for_n(l->fn, ch);
		loop_parallel(l->fn);
		if (nd) {
			LoopVar *total = plane_total(l, dpart, ch, c, 2, 0);
			for (int i = 0; i < nd; i++)
				st(l, dsum[i], V(l, c), V(l, total));
		}
	} else if (nd) {
		LoopVar *total;
		chan_sums(l, c, ch, bn_pos(x), true, 1, term_dx, &d, &total);
		for (int i = 0; i < nd; i++)
			st(l, dsum[i], V(l, c), V(l, total));
	} else {
		LoopVar *p, *s = bn_open(l, x, &p);
		term_dx(l, &d, 0, bn_at(l, x, s, c, p));
		bn_close(l);
	}
	for (int i = 0; i < nm; i++)	/* last: the dx pass reads the weight */
		host_updates(l, m[i], c);
	loop_end(l->fn);
}

/* n is the first needed member of its channel group */
static bool cgroup_first(const IrGraph *g, const bool *need, const IrNode *n)
{
	for (int i = n->cgroup - 1; i < n->id; i++)
		if (need[i] && g->nodes[i]->cgroup == n->cgroup)
			return false;
	return true;
}

/* lowers n's channel group, which runs where n, its first needed member, stands */
static void lower_cgroup(Lower *l, const IrNode *n)
{
	const IrNode *m[64], *bn = NULL, *dx = NULL;
	int nm = 0;
	for (int i = n->id; i < l->g->nnodes && nm < 64; i++) {
		const IrNode *v = l->g->nodes[i];
		if (v->cgroup != n->cgroup || !l->need[i])
			continue;
		m[nm++] = v;
		if (v->op == IR_BATCHNORM_TRAIN)
			bn = v;
		else if (v->op == IR_BN_DX)
			dx = v;
	}
	if (bn) {
		const IrNode *upd[64];
		int nu = 0;
		for (int i = 0; i < nm; i++)
			if (m[i] != bn)
				upd[nu++] = m[i];
		lower_batchnorm_with(l, bn, upd, nu);
	} else if (dx) {
		lower_bn_backward(l, dx, m, nm);
	} else {	/* a group whose anchor is not needed here: each member alone */
		for (int i = 0; i < nm; i++)
			lower_node(l, m[i]);
	}
}

static bool lower_batchnorm_bwd(Lower *l, const IrNode *n)	/* batchnorm_dx, batchnorm_dw, bn_running_update */
{
	if (n->op == IR_BN_DX) {
		lower_bn_backward(l, n, &n, 1);
	} else if (n->op == IR_BN_DW) {
		bn_dw(l, n);
	} else {
		const IrNode *x = n->in[0];
		BnPart bp = bn_part(l, n, x, NULL);
		LoopVar *c = loop_for_n(l->fn, x->shape.d[0]);
		loop_parallel(l->fn);
		LoopVar *mean, *ssd;
		bn_stats(l, x, &bp, c, &mean, &ssd);
		bn_update(l, n, c, mean, ssd);	/* writes the buffers in place; n's own value is unused */
		loop_end(l->fn);
	}
	return true;
}

/* for every sample: len elements of dst from dst_at on = those of src from src_at on */
static void copy_span(Lower *l, const IrNode *dst, int64_t dst_at, const IrNode *src, int64_t src_at, int64_t len)
{
	LoopVar *s = loop_for(l->fn, I(l, 0), loop_n(l->fn));
	loop_parallel(l->fn);
	LoopVar *j = loop_for_n(l->fn, len);
	LoopExpr *to = add(l, mul(l, V(l, s), I(l, elems(dst))), add(l, I(l, dst_at), V(l, j)));
	LoopExpr *from = add(l, mul(l, V(l, s), I(l, elems(src))), add(l, I(l, src_at), V(l, j)));
	st(l, dst, to, ld(l, src, from));
	loop_end(l->fn);
	loop_end(l->fn);
}

/* channels are the first per-sample axis, so a sample's channels [a, b) are one contiguous run:
 * concat copies each input to its offset, slice copies channels [units, units + C) back out */
static bool lower_concat(Lower *l, const IrNode *n)		/* concat, slice */
{
	if (l->through && l->through[n->id])
		return true;	/* read input by input by its convolutions' im2col */
	if (n->op == IR_SLICE && l->split && l->split[n->in[0]->id])
		return true;	/* written by the GEMM of its input (lower_conv_t_gather) */
	if (n->op == IR_SLICE) {
		const IrNode *g = n->in[0];
		copy_span(l, n, 0, g, n->a.units * (elems(g) / g->shape.d[0]), elems(n));
		return true;
	}
	int64_t at = 0;
	for (int k = 0; k < n->nin; k++) {
		copy_span(l, n, at, n->in[k], 0, elems(n->in[k]));
		at += elems(n->in[k]);
	}
	return true;
}

/* bilinear with align_corners=False along one axis, as PyTorch's upsample_bilinear2d (in float):
 * the source coordinate (o + 0.5) * (1/scale) - 0.5 clamped at 0, i0 its floor, i1 = i0 + 1 unless
 * i0 is the last, weights l0 = 1 - l1 and l1 = the fraction */
typedef struct Lerp {
	LoopVar *i0, *i1, *l0, *l1;
} Lerp;

static Lerp lerp_axis(Lower *l, LoopVar *o, int scale, int64_t in)
{
	LoopExpr *src = sub(l, mul(l, F(l, 1.0 / scale), add(l, loop_cvt(l->fn, LT_F32, V(l, o)), F(l, 0.5))), F(l, 0.5));
	LoopVar *at = loop_local(l->fn, LT_F32, loop_max(l->fn, src, F(l, 0)));
	Lerp r;
	r.i0 = loop_local(l->fn, LT_I64, V(l, at));	/* truncation: the floor of a coordinate >= 0 */
	r.i1 = loop_local(l->fn, LT_I64, add(l, V(l, r.i0), sel(l, loop_bin(l->fn, LO_LT, V(l, r.i0), I(l, in - 1)),
							       I(l, 1), I(l, 0))));
	r.l1 = loop_local(l->fn, LT_F32, sub(l, V(l, at), loop_cvt(l->fn, LT_F32, V(l, r.i0))));
	r.l0 = loop_local(l->fn, LT_F32, sub(l, F(l, 1), V(l, r.l1)));
	return r;
}

/*
 * lerp_axis's values for output o, computed here in the same float
 * operations: the output columns of a row are then written out one by one
 * with constant taps and weights (a row of at most LERP_UNROLL outputs),
 * where the loop converted and compared for each output element and
 * vectorized nothing. The results are bitwise those of the loop.
 */
enum { LERP_UNROLL = 64 };

typedef struct LerpAt {
	int64_t i0, i1;
	float l0, l1;
} LerpAt;

static LerpAt lerp_at(int64_t o, int scale, int64_t in)
{
	float c = (float)(1.0 / scale), mid = (float)o + 0.5f;	/* float steps, as the loop's; */
	float scaled = c * mid;						/* one operation per statement, */
	float src = scaled - 0.5f;					/* so no compiler fuses them */
	float at = src > 0.0f ? src : 0.0f;
	LerpAt r;
	r.i0 = (int64_t)at;
	r.i1 = r.i0 + (r.i0 < in - 1 ? 1 : 0);
	r.l1 = at - (float)r.i0;
	r.l0 = 1.0f - r.l1;
	return r;
}

/* one output column's taps along x: lerp_axis's variables, or lerp_at's constants (var NULL) */
typedef struct XTaps {
	const Lerp *var;
	LerpAt at;
} XTaps;

static LoopExpr *xtap_at(Lower *l, const XTaps *t, int b)
{
	return t->var ? V(l, b ? t->var->i1 : t->var->i0) : I(l, b ? t->at.i1 : t->at.i0);
}

static LoopExpr *xtap_weight(Lower *l, const XTaps *t, int b)
{
	return t->var ? V(l, b ? t->var->l1 : t->var->l0) : F(l, b ? t->at.l1 : t->at.l0);
}

/* output (oy, tx's column) of plane p: (x[y0, x0] lx0 + x[y0, x1] lx1) ly0 + (...y1...) ly1 */
static LoopExpr *bilinear_value(Lower *l, const IrNode *x, LoopVar *p, const Lerp *ly, const XTaps *tx)
{
	LoopExpr *row[2];
	for (int a = 0; a < 2; a++) {
		LoopVar *y = a ? ly->i1 : ly->i0;
		row[a] = add(l, mul(l, ld(l, x, plane_at(l, x, p, V(l, y), xtap_at(l, tx, 0))), xtap_weight(l, tx, 0)),
			     mul(l, ld(l, x, plane_at(l, x, p, V(l, y), xtap_at(l, tx, 1))), xtap_weight(l, tx, 1)));
	}
	return add(l, mul(l, row[0], V(l, ly->l0)), mul(l, row[1], V(l, ly->l1)));
}

/* the adjoint: gv scattered onto dx (n) with the same four weights; i0 and i1 coincide at
 * the last row or column, hence +=, in the order a, b */
static void bilinear_scatter(Lower *l, const IrNode *n, LoopVar *p, const Lerp *ly, const XTaps *tx, LoopVar *gv)
{
	LoopVar *ys[2] = { ly->i0, ly->i1 }, *wy[2] = { ly->l0, ly->l1 };
	for (int a = 0; a < 2; a++)
		for (int b = 0; b < 2; b++) {
			LoopExpr *at = plane_at(l, n, p, V(l, ys[a]), xtap_at(l, tx, b));
			st(l, n, at, add(l, ld(l, n, at), mul(l, mul(l, V(l, wy[a]), xtap_weight(l, tx, b)), V(l, gv))));
		}
}

/* nearest: dx[y, x] = the sum of g over its sh x sw block, a gather in PyTorch's order;
 * bilinear: dx = 0, then each g scattered with the forward's four weights. n has x's shape. */
static void lower_upsample_bwd(Lower *l, const IrNode *n)
{
	const IrNode *g = n->in[0];
	int sh = n->a.up[0], sw = n->a.up[1];
	LoopVar *p = planes_open(l, n);
	if (n->a.mode == UP_NEAREST) {
		LoopVar *y = loop_for_n(l->fn, n->shape.d[1]), *x = loop_for_n(l->fn, n->shape.d[2]);
		LoopVar *sum = loop_local(l->fn, LT_F32, F(l, 0));
		LoopVar *dy = loop_for_n(l->fn, sh), *dx = loop_for_n(l->fn, sw);
		LoopExpr *gy = add(l, mul(l, V(l, y), I(l, sh)), V(l, dy)), *gx = add(l, mul(l, V(l, x), I(l, sw)), V(l, dx));
		loop_set(l->fn, sum, add(l, V(l, sum), ld(l, g, plane_at(l, g, p, gy, gx))));
		loop_end(l->fn);
		loop_end(l->fn);
		st(l, n, plane_at(l, n, p, V(l, y), V(l, x)), V(l, sum));
		loop_end(l->fn);
		loop_end(l->fn);
		loop_end(l->fn);
		return;
	}
	int64_t hw = n->shape.d[1] * n->shape.d[2];
	LoopVar *i = loop_for_n(l->fn, hw);
	st(l, n, add(l, mul(l, V(l, p), I(l, hw)), V(l, i)), F(l, 0));
	loop_end(l->fn);
	LoopVar *oy = loop_for_n(l->fn, g->shape.d[1]);
	Lerp ly = lerp_axis(l, oy, sh, n->shape.d[1]);
	int64_t ow = g->shape.d[2];
	if (ow <= LERP_UNROLL) {	/* the row's outputs one by one, in the loop's order */
		for (int64_t ox = 0; ox < ow; ox++) {
			XTaps tx = { NULL, lerp_at(ox, sw, n->shape.d[2]) };
			LoopVar *gv = loop_local(l->fn, LT_F32, ld(l, g, plane_at(l, g, p, V(l, oy), I(l, ox))));
			bilinear_scatter(l, n, p, &ly, &tx, gv);
		}
		loop_end(l->fn);
		loop_end(l->fn);
		return;
	}
	LoopVar *ox = loop_for_n(l->fn, ow);
	Lerp lx = lerp_axis(l, ox, sw, n->shape.d[2]);
	XTaps tx = { &lx, { 0 } };
	LoopVar *gv = loop_local(l->fn, LT_F32, ld(l, g, plane_at(l, g, p, V(l, oy), V(l, ox))));
	bilinear_scatter(l, n, p, &ly, &tx, gv);
	loop_end(l->fn);
	loop_end(l->fn);
	loop_end(l->fn);
}

/* nearest: out[y, x] = in[y / sh, x / sw]; bilinear: the four neighbours weighted as
 * PyTorch, (in[y0, x0] lx0 + in[y0, x1] lx1) ly0 + (in[y1, x0] lx0 + in[y1, x1] lx1) ly1 */
static bool lower_upsample(Lower *l, const IrNode *n)		/* upsample, upsample_bwd */
{
	if (n->op == IR_UPSAMPLE_BWD) {
		lower_upsample_bwd(l, n);
		return true;
	}
	const IrNode *x = n->in[0];
	int sh = n->a.up[0], sw = n->a.up[1];
	LoopVar *p = planes_open(l, n);
	LoopVar *oy = loop_for_n(l->fn, n->shape.d[1]);
	LoopExpr *v;
	LoopVar *ox;
	if (n->a.mode == UP_NEAREST) {
		ox = loop_for_n(l->fn, n->shape.d[2]);
		v = ld(l, x, plane_at(l, x, p, dvd(l, V(l, oy), I(l, sh)), dvd(l, V(l, ox), I(l, sw))));
	} else if (n->shape.d[2] <= LERP_UNROLL) {	/* the row's outputs one by one */
		Lerp ly = lerp_axis(l, oy, sh, x->shape.d[1]);
		for (int64_t o = 0; o < n->shape.d[2]; o++) {
			XTaps tx = { NULL, lerp_at(o, sw, x->shape.d[2]) };
			st(l, n, plane_at(l, n, p, V(l, oy), I(l, o)), bilinear_value(l, x, p, &ly, &tx));
		}
		loop_end(l->fn);
		loop_end(l->fn);
		return true;
	} else {
		Lerp ly = lerp_axis(l, oy, sh, x->shape.d[1]);
		ox = loop_for_n(l->fn, n->shape.d[2]);
		Lerp lx = lerp_axis(l, ox, sw, x->shape.d[2]);
		XTaps tx = { &lx, { 0 } };
		v = bilinear_value(l, x, p, &ly, &tx);
	}
	st(l, n, plane_at(l, n, p, V(l, oy), V(l, ox)), v);
	loop_end(l->fn);
	loop_end(l->fn);
	loop_end(l->fn);
	return true;
}

/* ---- dispatch ---- */

static MapFn map_fn(IrOp op)
{
	switch (op) {
	case IR_RELU: return f_relu;
	case IR_LEAKY_RELU: return f_leaky;
	case IR_ELU: return f_elu;
	case IR_SIGMOID: return f_sigmoid;
	case IR_TANH: return f_tanh;
	case IR_SOFTPLUS: return f_softplus;
	case IR_GELU: return f_gelu;
	case IR_SCALE: return f_scale;
	case IR_SCALE_BY: return f_scale_by;
	case IR_DROPOUT: return f_copy;
	case IR_DROPOUT_MASK: return f_mask;
	case IR_RELU_BWD: return b_relu;
	case IR_LEAKY_RELU_BWD: return b_leaky;
	case IR_ELU_BWD: return b_elu;
	case IR_SIGMOID_BWD: return b_sigmoid;
	case IR_TANH_BWD: return b_tanh;
	case IR_SOFTPLUS_BWD: return b_softplus;
	case IR_GELU_BWD: return b_gelu;
	case IR_L1_BWD: return b_l1;
	case IR_RSQRT: return f_rsqrt;
	default: return NULL;
	}
}

static bool lower_node(Lower *l, const IrNode *n)
{
	MapFn fn = map_fn(n->op);
	if (fn) {
		map(l, n, fn);
		return true;
	}
	switch (n->op) {
	case IR_INPUT:
	case IR_TARGET:
	case IR_PARAM:
	case IR_BUFFER:
	case IR_OPT_STATE:
	case IR_FLATTEN:
	case IR_RESHAPE:
		lower_buf(l, n);	/* no kernel: arguments, persistent state, or views */
		return true;
	case IR_CONST:
		st(l, n, I(l, 0), F(l, n->a.scale));
		return true;
	case IR_ADD:
	case IR_MUL: lower_binary(l, n); return true;
	case IR_REDUCE_TO: lower_reduce_to(l, n); return true;
	case IR_DENSE: lower_dense(l, n); return true;
	case IR_DENSE_DX: lower_dense_dx(l, n); return true;
	case IR_DENSE_DW: lower_dense_dw(l, n); return true;
	case IR_BATCH_SUM: lower_batch_sum(l, n); return true;
	case IR_SOFTMAX:
	case IR_LOG_SOFTMAX: lower_softmax(l, n); return true;
	case IR_SOFTMAX_BWD:
	case IR_LOG_SOFTMAX_BWD: lower_softmax_bwd(l, n); return true;
	case IR_CROSS_ENTROPY: lower_cross_entropy(l, n); return true;
	case IR_CROSS_ENTROPY_BWD: lower_cross_entropy_bwd(l, n); return true;
	case IR_BCE:
	case IR_MSE:
	case IR_MAE:
	case IR_RMSE: lower_mean_loss(l, n); return true;
	case IR_BCE_BWD:
	case IR_MSE_BWD:
	case IR_MAE_BWD:
	case IR_RMSE_BWD: lower_loss_bwd(l, n); return true;
	case IR_SUMSQ:
	case IR_SUMABS: lower_reduce_scalar(l, n); return true;
	case IR_SGD_STEP:
	case IR_ADAGRAD_STEP:
	case IR_RMSPROP_STEP:
	case IR_ADAM_STEP: lower_update(l, n); return true;
	case IR_CONV2D: return lower_conv_gather(l, n);
	case IR_CONV_T2D: return lower_conv_scatter(l, n);
	case IR_CONV_DW: return lower_conv_dw(l, n);
	case IR_CHANNEL_SUM: return lower_channel_sum(l, n);
	case IR_MAXPOOL:
	case IR_AVGPOOL:
	case IR_GLOBAL_AVGPOOL: return lower_pool(l, n);
	case IR_MAXPOOL_BWD:
	case IR_AVGPOOL_BWD:
	case IR_GLOBAL_AVGPOOL_BWD: return lower_pool_bwd(l, n);
	case IR_BATCHNORM:
	case IR_BATCHNORM_TRAIN: return lower_batchnorm(l, n);
	case IR_BN_DX:
	case IR_BN_DW:
	case IR_BN_UPDATE: return lower_batchnorm_bwd(l, n);
	case IR_CONCAT:
	case IR_SLICE: return lower_concat(l, n);
	case IR_UPSAMPLE:
	case IR_UPSAMPLE_BWD: return lower_upsample(l, n);
	default: return false;
	}
}

/* ---- fused groups (passes/fuse.c): one loop over the elements per group ---- */

static MapFn group_fn(const IrNode *n)
{
	MapFn fn = map_fn(n->op);
	if (!fn && (n->op == IR_ADD || n->op == IR_MUL))
		fn = n->op == IR_ADD ? f_add : f_mul;
	if (!fn)
		NNC_BUG("%s in a fused group has no element-wise lowering", ir_op_name(n->op));
	return fn;
}

/* the values a group member stores: used outside its group, an output or the loss */
static bool *group_stores(const IrGraph *g)
{
	bool *ext = arena_alloc(g->arena, (size_t)g->nnodes + 1);
	for (int i = 0; i < g->nnodes; i++)
		for (int k = 0; k < g->nodes[i]->nin; k++) {
			const IrNode *x = g->nodes[i]->in[k];
			ext[x->id] |= !x->group || x->group != g->nodes[i]->group;
		}
	for (int i = 0; i < g->noutputs; i++)
		ext[g->outputs[i]->id] = true;
	if (g->loss)
		ext[g->loss->id] = true;
	return ext;
}

/* the needed members of group grp up to last, in order, at element i: members read
 * earlier members from locals, everything else from memory (scalars at element 0, as
 * map). A dense head has run its GEMM already: its value is that plus the bias of the
 * element's column; a conv2d or batchnorm head's value is in its buffer already. */
static void group_body(Lower *l, int grp, int last, LoopVar *i)
{
	const IrGraph *g = l->g;
	for (int j = grp - 1; j <= last; j++) {
		const IrNode *m = g->nodes[j];
		if (m->group != grp || !l->need[j])
			continue;
		if (epilogue_head(m)) {
			if (l->head == m)
				l->local[j] = l->head_val;
			else if (!l->stores[j] && (m->op == IR_BATCHNORM || m->op == IR_BATCHNORM_TRAIN))
				NNC_BUG("batchnorm %%%d's group runs outside its kernel, where its value is not stored", m->id);
			else
				l->local[j] = loop_local(l->fn, LT_F32, ld(l, m, V(l, i)));
			continue;
		}
		if (m->op == IR_DENSE) {
			LoopExpr *u = I(l, m->a.units), *col = sub(l, V(l, i), mul(l, dvd(l, V(l, i), u), u));
			l->local[j] = loop_local(l->fn, LT_F32, add(l, ld(l, m, V(l, i)), ld(l, m->in[2], col)));
		} else {
			LoopExpr *in[4];
			for (int k = 0; k < m->nin && k < 4; k++) {
				const IrNode *x = m->in[k];
				bool scalar_in = !x->batched && x->shape.rank == 0 && (m->batched || m->shape.rank > 0);
				in[k] = x->group == grp && l->local[x->id] ? V(l, l->local[x->id])
									   : ld(l, x, scalar_in ? I(l, 0) : V(l, i));
			}
			l->local[j] = loop_local(l->fn, LT_F32, group_fn(m)(l, m, in));
		}
		if (l->stores[j])
			st(l, m, V(l, i), V(l, l->local[j]));
	}
}

/* one loop over the elements, where the group's last needed member stands */
/* v's value at element i: its group's body up to v, or v alone (stored either way) */
static LoopExpr *elem_at(Lower *l, const IrNode *v, LoopVar *i)
{
	if (v->group) {
		group_body(l, v->group, v->id, i);
		return V(l, l->local[v->id]);
	}
	LoopExpr *in[4];
	for (int k = 0; k < v->nin && k < 4; k++) {
		const IrNode *x = v->in[k];
		bool scalar_in = !x->batched && x->shape.rank == 0 && (v->batched || v->shape.rank > 0);
		in[k] = ld(l, x, scalar_in ? I(l, 0) : V(l, i));
	}
	LoopVar *r = loop_local(l->fn, LT_F32, group_fn(v)(l, v, in));
	st(l, v, V(l, i), V(l, r));
	return V(l, r);
}

static LoopExpr *term_elem(Lower *l, const void *env, int k, LoopExpr *at)
{
	(void)k;
	return loop_cvt(l->fn, LT_F64, elem_at(l, env, loop_local(l->fn, LT_I64, at)));
}

/* a pooling gradient run in v's loop (passes/fuse.c: n->host), plane by plane before v reads it */
static const IrNode *hosted_pool_bwd(const Lower *l, const IrNode *v)
{
	for (int k = 0; k < v->id; k++) {
		const IrNode *p = l->g->nodes[k];
		if (p->host == v->id + 1 && l->need[k] && (p->op == IR_MAXPOOL_BWD || p->op == IR_AVGPOOL_BWD))
			return p;
	}
	return NULL;
}

/* a plane of the value: the pooling gradient's (if one is hosted), then the value's, in a
 * loop of its own so that it runs in vectors; the sum then reads it back */
static void tail_plane(Lower *l, const SumPrologue *pro, LoopVar *plane)
{
	const IrNode *v = pro->value;
	int64_t pos = elems(v) / v->shape.d[0];
	if (pro->node)
		pool_bwd_plane(l, pro->node, plane);
	LoopVar *p = loop_for_n(l->fn, pos);
	elem_at(l, v, loop_local(l->fn, LT_I64, add(l, mul(l, V(l, plane), I(l, pos)), V(l, p))));
	loop_end(l->fn);
}

static void tail_plane_fn(Lower *l, const void *env, LoopVar *p) { tail_plane(l, env, p); }

/* sample s's plane of channel c, as tail_plane */
static void tail_prologue(Lower *l, const SumPrologue *pro, LoopVar *c, LoopVar *s)
{
	int64_t ch = pro->value->shape.d[0];
	tail_plane(l, pro, loop_local(l->fn, LT_I64, add(l, mul(l, V(l, s), I(l, ch)), V(l, c))));
}

/* v's loop with the sum r of v (passes/fuse.c: r->tail), over r's elements */
static LoopExpr *col_elem(Lower *l, const void *env, LoopVar *at) { return elem_at(l, env, at); }

static void lower_with_tail(Lower *l, const IrNode *v, const IrNode *r)
{
	int64_t e = elems(r);
	if (r->op == IR_BATCH_SUM) {
		col_sums(l, r, col_elem, v);
		return;
	}
	SumPrologue pro = { .fn = tail_prologue, .node = hosted_pool_bwd(l, v), .value = v };
	LoopBuf *part = v->batched && elems(v) / e >= PLANE_POS ? plane_sums(l, r, v, tail_plane_fn, &pro) : NULL;
	LoopVar *j = loop_for_n(l->fn, e);
	loop_parallel(l->fn);
	{				/* in double with lanes, as lower_channel_sum */
		LoopVar *acc;
		if (part)
			acc = plane_total(l, part, e, j, 2, 0);
		else if (elems(v) / e >= SUM_LANES && v->batched)
			chan_sums_pro(l, j, e, elems(v) / e, true, 1, term_load, v, &acc, &pro);
		else
			chan_sums(l, j, e, elems(v) / e, v->batched, 1, term_elem, v, &acc);
		st(l, r, V(l, j), V(l, acc));
	}
	host_updates(l, r, j);
	loop_end(l->fn);
}

/* the sum whose loop v's is, if any */
static const IrNode *tail_of(const Lower *l, const IrNode *v)
{
	for (int k = v->id + 1; k < l->g->nnodes; k++)
		if (l->g->nodes[k]->tail == v->id + 1 && l->need[k])
			return l->g->nodes[k];
	return NULL;
}

static void lower_group(Lower *l, const IrNode *last)
{
	LoopVar *i = loop_for(l->fn, I(l, 0), total(l, last));
	loop_parallel(l->fn);
	group_body(l, last->group, last->id, i);
	loop_end(l->fn);
}

/* the group a conv2d or conv_transpose2d heads, over sample s's elements inside the conv's sample loop,
 * while they are in cache (fuse.c: every input of the group is ready before the conv) */
static void conv_epilogue(Lower *l, const IrNode *n, LoopVar *s)
{
	LoopVar *e = loop_for_n(l->fn, elems(n));
	LoopVar *i = loop_local(l->fn, LT_I64, add(l, mul(l, V(l, s), I(l, elems(n))), V(l, e)));
	group_body(l, n->group, l->last[n->group], i);
	loop_end(l->fn);
}

/* for each group, the id of its last needed member (where the group's loop goes) */
static int *group_lasts(const IrGraph *g, const bool *need)
{
	int *last = arena_alloc(g->arena, sizeof(int) * (size_t)(g->nnodes + 2));
	for (int i = 0; i < g->nnodes; i++)
		if (g->nodes[i]->group && need[i])
			last[g->nodes[i]->group] = i;
	return last;
}

/* nodes the roots depend on */
static bool *needed(const IrGraph *g, IrNode *const *roots, int nroots)
{
	bool *need = arena_alloc(g->arena, (size_t)g->nnodes + 1);
	for (int i = 0; i < nroots; i++)
		if (roots[i])
			need[roots[i]->id] = true;
	for (int i = g->nnodes - 1; i >= 0; i--)
		for (int k = 0; need[i] && k < g->nodes[i]->nin; k++)
			need[g->nodes[i]->in[k]->id] = true;
	return need;
}

/* copies the first output into the out argument */
static void copy_out(Lower *l, const IrNode *o)
{
	LoopBuf *out = loop_find_buf(l->m, "out");
	if (!out)
		out = loop_new_buf(l->m, "out", LT_F32, elems(o), true, LB_ARG_OUT);
	LoopVar *i = loop_for(l->fn, I(l, 0), total(l, o));
	loop_store(l->fn, out, V(l, i), ld(l, o, V(l, i)));
	loop_end(l->fn);
}

/* consumer u reads the concat x only through im2col, as its input image */
static bool reads_through(const IrNode *u, int k, const IrNode *x)
{
	ConvGeom g;
	if (u->op == IR_CONV2D && k == 0)
		g = conv_geom(u, u, x);
	else if (u->op == IR_CONV_DW && k == 1)
		g = conv_geom(u, u->in[0], x);
	else
		return false;
	return !conv_direct(&g) && g.groups == 1;
}

/* the concats of this function that no one reads but convolutions' im2col (im2col_of): not
 * outputs, not kept for another function, not in a fused group, of batched inputs */
static bool *concats_through(Lower *l, const IrGraph *g, const bool *need)
{
	bool *through = arena_alloc(l->m->arena, (size_t)g->nnodes + 1);
	for (int i = 0; i < g->nnodes; i++) {
		const IrNode *x = g->nodes[i];
		if (!need[i] || x->op != IR_CONCAT || !x->batched || x->group || x->cgroup || x->host || x->tail ||
		    (l->kept && l->kept[i]) || (l->weight_only && l->weight_only[i]) || g->loss == x ||
		    (g->noutputs && g->outputs[0] == x))
			continue;
		bool ok = true;
		for (int k = 0; k < x->nin; k++)
			ok = ok && x->in[k]->batched;
		int uses = 0;
		for (int j = i + 1; ok && j < g->nnodes; j++)
			for (int k = 0; need[j] && k < g->nodes[j]->nin; k++)
				if (g->nodes[j]->in[k] == x) {
					uses++;
					ok = ok && reads_through(g->nodes[j], k, x);
				}
		through[i] = ok && uses > 0;
	}
	return through;
}

/* the conv_transpose2ds of this function gathered (conv_t_gathers), without bias or group,
 * whose value only slices read: the gradients of concats that feed convolutions */
static bool *transposes_split(Lower *l, const IrGraph *g, const bool *need)
{
	bool *split = arena_alloc(l->m->arena, (size_t)g->nnodes + 1);
	for (int i = 0; i < g->nnodes; i++) {
		const IrNode *y = g->nodes[i];
		if (!need[i] || y->op != IR_CONV_T2D || y->nin > 2 || !y->batched || y->group || y->cgroup ||
		    y->host || y->tail || (l->kept && l->kept[i]) || (l->weight_only && l->weight_only[i]) ||
		    (g->noutputs && g->outputs[0] == y))
			continue;
		ConvGeom cg = conv_geom(y, y->in[0], y);
		if (!conv_t_gathers(&cg))
			continue;
		bool ok = true;
		int uses = 0;
		for (int j = i + 1; ok && j < g->nnodes; j++)
			for (int k = 0; need[j] && k < g->nodes[j]->nin; k++)
				if (g->nodes[j]->in[k] == y) {
					uses++;
					ok = ok && g->nodes[j]->op == IR_SLICE && k == 0 && !g->nodes[j]->group &&
					     !(l->kept && l->kept[j]) && !(g->noutputs && g->outputs[0] == g->nodes[j]);
					for (int t = j + 1; ok && t < g->nnodes; t++)	/* nothing runs in the slice's loop */
						ok = !need[t] || (g->nodes[t]->tail != j + 1 && g->nodes[t]->host != j + 1);
				}
		split[i] = ok && uses > 0;
	}
	return split;
}

static bool lower_fn(Lower *l, const IrGraph *g, const char *name, IrNode *const *roots, int nroots)
{
	l->g = g;
	l->fn = loop_new_fn(l->m, name);
	l->buf = arena_alloc(l->m->arena, sizeof(LoopBuf *) * (size_t)(g->nnodes + 1));
	l->local = arena_alloc(l->m->arena, sizeof(LoopVar *) * (size_t)(g->nnodes + 1));
	bool *need = needed(g, roots, nroots);
	int *last = group_lasts(g, need);
	bool *stores = group_stores(g);
	l->need = need;
	l->stores = stores;
	l->bn_xs = arena_alloc(l->m->arena, sizeof(LoopBuf *) * (size_t)(g->nnodes + 1));
	l->last = last;
	l->through = concats_through(l, g, need);
	l->split = transposes_split(l, g, need);
	for (int i = 0; i < g->nnodes; i++)	/* optimizer state in node order, whichever kernel first touches it */
		if (need[i] && g->nodes[i]->op == IR_OPT_STATE)
			lower_buf(l, g->nodes[i]);
	for (int i = 0; i < g->nnodes; i++)
		if (need[i] && is_step_update(g->nodes[i])) {
			opt_scalars(l, g->nodes[i]);	/* every update uses the same optimizer */
			break;
		}
	for (int i = 0; i < g->nnodes; i++) {
		const IrNode *n = g->nodes[i];
		if (!need[i] || (l->weight_only && l->weight_only[i] && !l->prepare))
			continue;	/* unneeded, or computed by prepare */
		if (n->host && need[n->host - 1])
			continue;	/* run by its gradient's kernel */
		if (n->tail && need[n->tail - 1])
			continue;	/* summed in its input's loop */
		const IrNode *tail = tail_of(l, n);
		if (n->cgroup) {	/* the whole channel group where its first needed member stands */
			if (cgroup_first(g, need, n))
				lower_cgroup(l, n);
			continue;
		}
		if (n->group) {
			bool in_head = epilogue_head(g->nodes[n->group - 1]);
			if (n->op == IR_DENSE)
				lower_dense(l, n);	/* the GEMM now, the bias in the group's loop */
			else if (n->op == IR_CONV2D)
				lower_conv_gather(l, n);	/* with the group as its epilogue */
			else if (n->op == IR_CONV_T2D)
				lower_conv_scatter(l, n);	/* likewise */
			else if (n->op == IR_BATCHNORM || n->op == IR_BATCHNORM_TRAIN)
				lower_batchnorm(l, n);	/* likewise */
			if (last[n->group] == i && !in_head) {
				if (tail)
					lower_with_tail(l, n, tail);
				else
					lower_group(l, n);
			}
			continue;
		}
		if (tail) {
			lower_with_tail(l, n, tail);
			continue;
		}
		if (!lower_node(l, n)) {
			diag_error(n->loc, "nnc cannot generate code for %s yet", ir_op_name(n->op));
			diag_hint("this layer is checked and summarized, but code generation for it comes in a later version");
			return false;
		}
	}
	if (g->noutputs && !l->prepare)
		copy_out(l, g->outputs[0]);
	if (g->loss && need[g->loss->id])
		l->fn->result = lower_buf(l, g->loss);
	return true;
}

static void set_meta(LoopMeta *mm, const Model *model, const IrGraph *g, const char *source)
{
	const TrainConfig *t = &model->train;
	mm->name = model->name;
	mm->source = source;
	for (int i = 0; i < g->nnodes; i++) {
		const IrNode *n = g->nodes[i];
		if (n->op == IR_INPUT && !mm->in_elems) {
			mm->in_elems = ir_numel(n);
			mm->in_rank = n->shape.rank;
			for (int k = 0; k < n->shape.rank; k++)
				mm->in_shape[k] = n->shape.d[k];
		} else if (n->op == IR_TARGET && !mm->target_elems) {
			mm->class_target = n->dtype == DT_I64;
			mm->classes = n->a.classes;
			mm->target_elems = mm->class_target ? 1 : ir_numel(n);
		}
	}
	if (g->noutputs) {
		mm->out_elems = ir_numel(g->outputs[0]);
		mm->out_name = g->output_names[0];
	}
	mm->batch = t->batch;
	mm->epochs = t->epochs;
	mm->seed = t->seed;
	mm->lr = t->lr;
	mm->schedule = (int)t->sched;
	mm->step_every = t->step_every;
	mm->step_gamma = t->step_gamma;
	mm->data = t->data;
	mm->test = t->test;
	mm->optimizer = elab_opt_name(t->opt);
	/* accuracy for class labels scored by the output; IoU for masks trained with bce */
	const IrNode *loss = g->loss;
	if (mm->class_target && mm->out_elems == mm->classes)
		mm->metric = 1;
	else if (loss && loss->op == IR_BCE && g->noutputs && loss->in[0] == g->outputs[0])
		mm->metric = 2;
}

LoopModule *lower_model(Arena *a, const Model *model, const IrGraph *infer, const IrGraph *train, const char *source)
{
	LoopModule *m = loop_new_module(a);
	set_meta(&m->meta, model, infer, source);
	/* parameters and buffers first, from the model's own graph (the passes leave it as
	 * written): their indices seed init() and their layers pick the initializer, so the
	 * initial weights do not depend on the -O level */
	Lower l = { .m = m, .g = model->graph };
	for (int i = 0; i < model->graph->nnodes; i++)
		if (ir_is_state(model->graph->nodes[i]))
			state_buf(&l, model->graph->nodes[i]);
	IrNode *roots[64];
	int nr = 0;
	if (!train)	/* the weights change only by init and load, which run prepare */
		hoist_weight_only(&l, infer);
	if (infer->noutputs)
		roots[nr++] = infer->outputs[0];
	if (!lower_fn(&l, infer, "forward", roots, nr))
		return NULL;
	if (infer->loss) {
		roots[nr++] = infer->loss;
		if (!lower_fn(&l, infer, "eval", roots, nr))
			return NULL;
	}
	if (l.kept && !lower_prepare(&l, infer))
		return NULL;
	if (train && train->loss) {
		int n = 0;
		IrNode **troots = arena_alloc(a, sizeof(IrNode *) * (size_t)(train->nnodes + 2));
		for (int i = 0; i < train->nnodes; i++)
			if (ir_op_family(train->nodes[i]->op) == FAM_UPDATE)
				troots[n++] = train->nodes[i];
		troots[n++] = train->loss;
		if (train->noutputs)
			troots[n++] = train->outputs[0];
		if (!lower_fn(&l, train, "train_step", troots, n))
			return NULL;
		l.fn->counts_step = true;
	}
	return m;
}

/* ---- forward-only modules: what prepare computes from the weights ----
 * In a module without train_step the weights change only when init or load
 * fills them, and both run prepare next (the C emitter's API). So a value the
 * inference graph computes from weights alone (passes/bnfold.c's folded
 * weights) is computed there, once, into a buffer of its own (LB_FOLDED),
 * instead of in every forward call. */

static bool is_view(const IrNode *n)
{
	return n->op == IR_RESHAPE || n->op == IR_FLATTEN;
}

/* marks the weight-only values of g and those the other functions read (kept) */
static void hoist_weight_only(Lower *l, const IrGraph *g)
{
	bool *wo = arena_alloc(l->m->arena, (size_t)g->nnodes + 1), *kept = arena_alloc(l->m->arena, (size_t)g->nnodes + 1);
	int found = 0;
	for (int i = 0; i < g->nnodes; i++) {
		const IrNode *n = g->nodes[i];
		IrFamily fam = ir_op_family(n->op);
		wo[i] = fam != FAM_SOURCE && fam != FAM_UPDATE && fam != FAM_RANDOM && !n->batched && n->nin > 0;
		for (int k = 0; k < n->nin && wo[i]; k++)
			wo[i] = ir_is_state(n->in[k]) || n->in[k]->op == IR_CONST || wo[n->in[k]->id];
		found += wo[i];
	}
	if (!found)
		return;
	for (int i = 0; i < g->nnodes; i++)
		for (int k = 0; k < g->nodes[i]->nin; k++) {
			const IrNode *x = g->nodes[i]->in[k];
			kept[x->id] |= wo[x->id] && !wo[i];
			if (wo[i] != wo[x->id] && g->nodes[i]->group && g->nodes[i]->group == x->group)
				NNC_BUG("a fused group of '%s' mixes weight-only values with others", g->name);
		}
	for (int i = 0; i < g->noutputs; i++)
		kept[g->outputs[i]->id] |= wo[g->outputs[i]->id];
	/* a view shares its input's buffer: keep the value it views */
	for (int i = g->nnodes - 1; i >= 0; i--)
		if (kept[i] && is_view(g->nodes[i])) {
			kept[i] = false;
			const IrNode *x = g->nodes[i]->in[0];
			kept[x->id] = wo[x->id];
		}
	l->weight_only = wo;
	l->kept = kept;
}

static LoopBuf *kept_buf(Lower *l, const IrNode *n)
{
	const char *name = arena_printf(l->m->arena, "prepared %s %%%d", n->layer ? n->layer : ir_op_name(n->op), n->id);
	LoopBuf *b = loop_find_buf(l->m, name);
	if (b)
		return b;
	b = loop_new_buf(l->m, name, LT_F32, elems(n), false, LB_FOLDED);
	b->rank = n->shape.rank;
	for (int i = 0; i < n->shape.rank; i++)
		b->shape[i] = n->shape.d[i];
	return b;
}

/* the prepare function: the kept values, from the weights */
static bool lower_prepare(Lower *l, const IrGraph *g)
{
	IrNode **roots = arena_alloc(l->m->arena, sizeof(IrNode *) * (size_t)(g->nnodes + 1));
	int n = 0;
	for (int i = 0; i < g->nnodes; i++)
		if (l->kept[i])
			roots[n++] = g->nodes[i];
	l->prepare = true;
	bool ok = lower_fn(l, g, "prepare", roots, n);
	l->prepare = false;
	l->weight_only = l->kept = NULL;
	return ok;
}

/* 1 / sqrt(x + eps), in float as the inference batchnorm computes it */
static LoopExpr *f_rsqrt(Lower *l, const IrNode *n, LoopExpr **x)
{
	return dvd(l, F(l, 1), un(l, LO_SQRT, add(l, x[0], F(l, n->a.eps))));
}
