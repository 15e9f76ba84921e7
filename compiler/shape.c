/*
 * shape.c: shape inference and checking, one rule per op. Walks the graph in
 * order (inputs come first), sets every node's shape and dtype, and gives
 * each parameter its PyTorch shape from the layer that uses it. A rule that
 * finds a mistake reports it at the layer's source and poisons the node;
 * nodes fed by a poisoned one are poisoned silently, so one mistake gives one
 * message and independent mistakes each give theirs.
 *
 * Arithmetic is PyTorch's: convolution and pooling floor; pad="same" pads
 * d*(k-1) in total, the extra one at the end when odd; transposed convolution
 * out = (in-1)*s - 2p + d*(k-1) + output_pad + 1.
 */
#include "shape.h"

#include <inttypes.h>
#include <limits.h>
#include <string.h>

#define MAX_ELEMS INT64_C(2147483647)

static void poison(IrNode *n)
{
	n->shape = shape_poison();
}

static const char *who(const IrNode *n)
{
	return n->name && (n->op == IR_INPUT || n->op == IR_TARGET) ? n->name : NULL;
}

/* a shape's element count, or -1 past MAX_ELEMS */
static int64_t elems(const Shape *s)
{
	int64_t k = 1;
	for (int i = 0; i < s->rank; i++)
		if (__builtin_mul_overflow(k, s->d[i], &k) || k > MAX_ELEMS)
			return -1;
	return k;
}

static bool set(IrNode *n, int rank, const int64_t *d)
{
	Shape s = shape_make(rank, d);
	for (int i = 0; i < rank; i++)
		if (d[i] < 1 || d[i] > MAX_ELEMS)
			goto too_big;
	if (elems(&s) < 0)
		goto too_big;
	n->shape = s;
	return true;
too_big:
	if (ir_is_state(n))
		diag_error(n->loc, "%s would be %s, more than 2147483647 elements", n->name, shape_str(s));
	else
		diag_error(n->loc, "%s would make a tensor of more than 2147483647 elements%s", ir_op_name(n->op),
			   n->batched ? " per sample" : "");
	diag_hint("make the layer or its input smaller");
	poison(n);
	return false;
}

static bool set_param(IrNode *n, IrNode *p, int rank, const int64_t *d)
{
	if (!set(p, rank, d)) {
		poison(n);
		return false;
	}
	return true;
}

static bool need_float(IrNode *n, const IrNode *x)
{
	if (x->dtype == DT_F32)
		return true;
	diag_error(n->loc, "%s needs a float tensor, but '%s' holds class labels", ir_op_name(n->op),
		   who(x) ? who(x) : "its input");
	diag_hint("class labels are only a target for cross_entropy");
	poison(n);
	return false;
}

/* flatten and concat move a sample's values; a loss is one number for the whole batch */
static bool need_batched(IrNode *n, const IrNode *x)
{
	if (x->batched)
		return true;
	diag_error(n->loc, "%s applies to tensors, not to a loss", ir_op_name(n->op));
	poison(n);
	return false;
}

static bool need_image(IrNode *n, const IrNode *x)
{
	if (x->shape.rank == 3)
		return need_float(n, x);
	diag_error(n->loc, "%s expects a [channels, height, width] input but got %s", ir_op_name(n->op),
		   shape_str(x->shape));
	if (x->shape.rank == 1 && x->op == IR_INPUT)
		diag_hint("declare image inputs with three sizes, like 'input x: [1, 28, 28]'");
	poison(n);
	return false;
}

static void rule_dense(IrNode *n)
{
	IrNode *x = n->in[0];
	if (x->shape.rank != 1) {
		diag_error(n->loc, "dense expects a rank-1 input but got %s", shape_str(x->shape));
		diag_hint("insert 'flatten' before it");
		poison(n);
		return;
	}
	if (!need_float(n, x))
		return;
	int64_t w[2] = { n->a.units, x->shape.d[0] };
	if (!set_param(n, n->in[1], 2, w) || (n->nin > 2 && !set_param(n, n->in[2], 1, w)))
		return;
	set(n, 1, w);
}

/* the padded extent must hold one dilated kernel */
static int64_t window_out(IrNode *n, int64_t in, int lo, int hi, int k, int d, int s, const char *axis)
{
	int64_t span = (int64_t)d * (k - 1) + 1, padded = in + lo + hi;
	if (padded < span) {
		char what[64], room[64];
		if (d == 1)
			snprintf(what, sizeof what, "kernel %s (%d)", axis, k);
		else
			snprintf(what, sizeof what, "kernel %s %d with dilation %d spans %" PRId64 ", which", axis, k, d, span);
		if (lo + hi)
			snprintf(room, sizeof room, "%" PRId64 " with padding", padded);
		else
			snprintf(room, sizeof room, "%" PRId64, padded);
		diag_error(n->loc, "%s's %s is larger than its input %s (%s)", ir_op_name(n->op), what, axis, room);
		diag_hint("use a smaller kernel, more padding, or a larger input");
		poison(n);
		return -1;
	}
	return (padded - span) / s + 1;
}

/* the largest number up to limit that divides both a and b: O(sqrt), for a hint */
static int64_t divisor_below(int64_t a, int64_t b, int64_t limit)
{
	while (b) {
		int64_t t = a % b;
		a = b;
		b = t;
	}
	int64_t best = 1;
	for (int64_t i = 1; i * i <= a; i++)
		if (a % i == 0) {
			if (i <= limit && i > best)
				best = i;
			if (a / i <= limit && a / i > best)
				best = a / i;
		}
	return best;
}

static void rule_conv(IrNode *n)
{
	IrNode *x = n->in[0];
	IrAttrs *a = &n->a;
	if (!need_image(n, x))
		return;
	int64_t c = x->shape.d[0], f = a->units;
	if (c % a->groups || f % a->groups) {
		diag_error(n->loc, "groups=%d must divide both the input channels (%" PRId64 ") and the filters (%" PRId64 ")",
			   a->groups, c, f);
		diag_hint("try groups=%" PRId64 ", which divides both", divisor_below(c, f, a->groups));
		poison(n);
		return;
	}
	if (a->pad_same) {
		if (a->stride[0] != 1 || a->stride[1] != 1) {
			if (a->stride[0] == a->stride[1])
				diag_error(n->loc, "pad=\"same\" needs stride 1, but the stride is %d", a->stride[0]);
			else
				diag_error(n->loc, "pad=\"same\" needs stride 1, but the stride is [%d, %d]", a->stride[0],
					   a->stride[1]);
			diag_hint("give the padding as a number, like pad=%" PRId64,
				  (int64_t)a->dilation[0] * (a->kernel[0] - 1) / 2);
			poison(n);
			return;
		}
		for (int i = 0; i < 2; i++) {
			int64_t total = (int64_t)a->dilation[i] * (a->kernel[i] - 1);
			if (total > 2 * (int64_t)INT_MAX - 1) {
				diag_error(n->loc, "pad=\"same\" would pad the %s by %" PRId64 "; sizes stop at 2147483647",
					   i ? "width" : "height", total);
				diag_hint("use a smaller kernel or dilation");
				poison(n);
				return;
			}
			a->pad[2 * i] = (int)(total / 2);
			a->pad[2 * i + 1] = (int)(total - total / 2);
		}
	}
	int64_t ho = window_out(n, x->shape.d[1], a->pad[0], a->pad[1], a->kernel[0], a->dilation[0], a->stride[0], "height");
	int64_t wo = ho < 0 ? -1 :
		     window_out(n, x->shape.d[2], a->pad[2], a->pad[3], a->kernel[1], a->dilation[1], a->stride[1], "width");
	if (wo < 0)
		return;
	int64_t w[4] = { f, c / a->groups, a->kernel[0], a->kernel[1] }, out[3] = { f, ho, wo };
	if (!set_param(n, n->in[1], 4, w) || (n->nin > 2 && !set_param(n, n->in[2], 1, &f)))
		return;
	set(n, 3, out);
}

static void rule_conv_t(IrNode *n)
{
	IrNode *x = n->in[0];
	IrAttrs *a = &n->a;
	if (!need_image(n, x))
		return;
	int64_t out[3] = { a->units, 0, 0 };
	for (int i = 0; i < 2; i++) {
		if (a->out_pad[i] >= a->stride[i] && a->out_pad[i] >= a->dilation[i]) {
			diag_error(n->loc, "output_pad (%d) must be smaller than the stride (%d)", a->out_pad[i], a->stride[i]);
			if (a->stride[i] > 1)
				diag_hint("output_pad picks one of the %d output sizes a stride of %d allows: use 0 to %d",
					  a->stride[i], a->stride[i], a->stride[i] - 1);
			else
				diag_hint("with stride 1 there is only one output size: remove output_pad");
			poison(n);
			return;
		}
		int64_t o = (x->shape.d[1 + i] - 1) * a->stride[i] - 2 * (int64_t)a->pad[2 * i] +
			    (int64_t)a->dilation[i] * (a->kernel[i] - 1) + a->out_pad[i] + 1;
		if (o < 1) {
			diag_error(n->loc, "conv_transpose2d's padding (%d) leaves no output %s", a->pad[2 * i],
				   i ? "width" : "height");
			poison(n);
			return;
		}
		out[1 + i] = o;
	}
	int64_t w[4] = { x->shape.d[0], a->units, a->kernel[0], a->kernel[1] };
	if (!set_param(n, n->in[1], 4, w) || (n->nin > 2 && !set_param(n, n->in[2], 1, &a->units)))
		return;
	set(n, 3, out);
}

static void rule_pool(IrNode *n)
{
	IrNode *x = n->in[0];
	IrAttrs *a = &n->a;
	if (!need_image(n, x))
		return;
	for (int i = 0; i < 2; i++)
		if (a->pad[2 * i] > a->kernel[i] / 2) {
			diag_error(n->loc, "%s's pad (%d) must be at most half its kernel (%d)", ir_op_name(n->op),
				   a->pad[2 * i], a->kernel[i]);
			diag_hint("use pad=%d or less, or a larger kernel", a->kernel[i] / 2);
			poison(n);
			return;
		}
	int64_t ho = window_out(n, x->shape.d[1], a->pad[0], a->pad[1], a->kernel[0], 1, a->stride[0], "height");
	int64_t wo = ho < 0 ? -1 : window_out(n, x->shape.d[2], a->pad[2], a->pad[3], a->kernel[1], 1, a->stride[1], "width");
	if (wo < 0)
		return;
	int64_t out[3] = { x->shape.d[0], ho, wo };
	set(n, 3, out);
}

static void rule_batchnorm(IrNode *n)
{
	IrNode *x = n->in[0];
	if (x->shape.rank != 1 && x->shape.rank != 3) {
		diag_error(n->loc, "batchnorm expects [features] or [channels, height, width] but got %s", shape_str(x->shape));
		poison(n);
		return;
	}
	if (!need_float(n, x))
		return;
	for (int i = 1; i < 5; i++)
		if (!set_param(n, n->in[i], 1, &x->shape.d[0]))
			return;
	n->shape = x->shape;
}

static void rule_concat(IrNode *n)
{
	const IrNode *x0 = n->in[0];
	int64_t d[IR_MAX_RANK];
	memcpy(d, x0->shape.d, sizeof d);
	for (int i = 0; i < n->nin; i++) {
		const IrNode *x = n->in[i];
		if (!need_batched(n, x) || !need_float(n, x))
			return;
		if (x->shape.rank != x0->shape.rank || (x0->shape.rank == 3 && (x->shape.d[1] != x0->shape.d[1] ||
									      x->shape.d[2] != x0->shape.d[2]))) {
			diag_error(n->loc, "concat joins along channels, so the other sizes must match, but got %s and %s",
				   shape_str(x0->shape), shape_str(x->shape));
			if (x0->shape.rank == 3 && x->shape.rank == 3)
				diag_hint("upsample or pool one input to the other's height and width");
			poison(n);
			return;
		}
		if (i > 0)
			d[0] += x->shape.d[0];
	}
	set(n, x0->shape.rank, d);
}

/* equal ranks; each size equal or 1 (docs/language.md, "Broadcasting") */
static void rule_broadcast(IrNode *n)
{
	const IrNode *a = n->in[0], *b = n->in[1];
	const char *verb = n->op == IR_ADD ? "add" : "multiply";
	if (a->batched != b->batched) {
		diag_error(n->loc, "cannot %s a loss and a tensor", verb);
		diag_hint("losses combine with losses: 'loss mse(p, t) + 0.1 * mae(p, t)'");
		poison(n);
		return;
	}
	if (!need_float(n, a) || !need_float(n, b))
		return;
	if (a->shape.rank != b->shape.rank) {
		diag_error(n->loc, "cannot %s %s and %s: the ranks differ", verb, shape_str(a->shape), shape_str(b->shape));
		poison(n);
		return;
	}
	int64_t d[IR_MAX_RANK];
	for (int i = 0; i < a->shape.rank; i++) {
		int64_t x = a->shape.d[i], y = b->shape.d[i];
		if (x != y && x != 1 && y != 1) {
			static const char *const axes[] = { "channels", "heights", "widths" };
			if (a->shape.rank == 3)
				diag_error(n->loc, "cannot %s %s and %s: the %s differ (%" PRId64 " and %" PRId64 ")",
					   verb, shape_str(a->shape), shape_str(b->shape), axes[i], x, y);
			else
				diag_error(n->loc, "cannot %s %s and %s: sizes %" PRId64 " and %" PRId64 " differ at position %d",
					   verb, shape_str(a->shape), shape_str(b->shape), x, y, i + 1);
			if (i == 0 && n->op == IR_ADD && a->shape.rank == 3)
				diag_hint("for a residual connection, give the shortcut the same channels, e.g. with conv2d(%" PRId64
					  ", kernel=1)", x > y ? x : y);
			poison(n);
			return;
		}
		d[i] = x > y ? x : y;
	}
	n->batched = a->batched;
	set(n, a->shape.rank, d);
}

static void rule_loss(IrNode *n)
{
	const IrNode *p = n->in[0], *t = n->in[1];
	n->batched = false;
	if (!p->batched || !t->batched) {
		diag_error(n->loc, "%s takes a prediction and a target, not a loss", ir_op_name(n->op));
		poison(n);
		return;
	}
	if (!need_float(n, p))
		return;
	if (n->op == IR_CROSS_ENTROPY) {
		if (p->shape.rank != 1) {
			diag_error(n->loc, "cross_entropy expects logits of rank 1, one score per class, but got %s",
				   shape_str(p->shape));
			if (p->shape.rank == 3)
				diag_hint("insert 'global_avgpool' or 'flatten -> dense(K)' before it");
			poison(n);
			return;
		}
		if (t->dtype == DT_I64 && t->a.classes != p->shape.d[0]) {
			diag_error(n->loc, "cross_entropy gets %" PRId64 " scores per sample but the target '%s' has class(%" PRId64 ")",
				   p->shape.d[0], t->name ? t->name : "", t->a.classes);
			diag_hint("make the last layer dense(%" PRId64 ")", t->a.classes);
			poison(n);
			return;
		}
		if (t->dtype == DT_F32 && !shape_eq(p->shape, t->shape)) {
			diag_error(n->loc, "cross_entropy with probability targets needs the same shape, but got %s and %s",
				   shape_str(p->shape), shape_str(t->shape));
			poison(n);
			return;
		}
	} else {
		if (t->dtype == DT_I64) {
			diag_error(n->loc, "%s needs a float target, but '%s' holds class labels", ir_op_name(n->op),
				   t->name ? t->name : "the target");
			diag_hint("use cross_entropy(logits, %s) for class labels", t->name ? t->name : "y");
			poison(n);
			return;
		}
		if (!shape_eq(p->shape, t->shape)) {
			diag_error(n->loc, "%s needs the prediction and target to have the same shape, but got %s and %s",
				   ir_op_name(n->op), shape_str(p->shape), shape_str(t->shape));
			poison(n);
			return;
		}
	}
	n->shape.rank = 0;
}

static void infer(IrNode *n)
{
	for (int i = 0; i < n->nin; i++)
		if (shape_poisoned(n->in[i]->shape) && !ir_is_state(n->in[i])) {
			poison(n);
			return;
		}
	const IrNode *x = n->nin ? n->in[0] : NULL;
	switch (n->op) {
	case IR_INPUT:
	case IR_TARGET:
		/* elaboration checked each size; the product must fit too, as every count downstream assumes */
		if (elems(&n->shape) < 0) {
			diag_error(n->loc, "'%s' would hold more than 2147483647 elements per sample", n->name);
			diag_hint("make its shape smaller");
			poison(n);
		}
		return;
	case IR_PARAM:
	case IR_BUFFER:
		return;		/* set by the layer that uses them */
	case IR_DENSE: rule_dense(n); return;
	case IR_CONV2D: rule_conv(n); return;
	case IR_CONV_T2D: rule_conv_t(n); return;
	case IR_MAXPOOL:
	case IR_AVGPOOL: rule_pool(n); return;
	case IR_GLOBAL_AVGPOOL:
		if (need_image(n, x))
			set(n, 1, x->shape.d);
		return;
	case IR_BATCHNORM: rule_batchnorm(n); return;
	case IR_FLATTEN: {
		int64_t k = ir_numel(x);
		if (need_batched(n, x) && need_float(n, x))
			set(n, 1, &k);
		return;
	}
	case IR_UPSAMPLE: {
		if (!need_image(n, x))
			return;
		int64_t d[3] = { x->shape.d[0], x->shape.d[1] * n->a.up[0], x->shape.d[2] * n->a.up[1] };
		set(n, 3, d);
		return;
	}
	case IR_CONCAT: rule_concat(n); return;
	case IR_ADD:
	case IR_MUL: rule_broadcast(n); return;
	case IR_SCALE:
		n->batched = x->batched;
		if (need_float(n, x))
			n->shape = x->shape;
		return;
	case IR_DROPOUT:
	case IR_RELU:
	case IR_LEAKY_RELU:
	case IR_ELU:
	case IR_SIGMOID:
	case IR_TANH:
	case IR_SOFTPLUS:
	case IR_GELU:
	case IR_SOFTMAX:
	case IR_LOG_SOFTMAX:
		if (!x->batched) {
			diag_error(n->loc, "%s applies to tensors, not to a loss", ir_op_name(n->op));
			poison(n);
			return;
		}
		if (need_float(n, x))
			n->shape = x->shape;
		return;
	case IR_CROSS_ENTROPY:
	case IR_BCE:
	case IR_MSE:
	case IR_MAE:
	case IR_RMSE: rule_loss(n); return;
	default: break;	/* training ops: their makers set their shapes */
	}
	NNC_BUG("no shape rule for %s", ir_op_name(n->op));
}

static void check_results(IrGraph *g)
{
	IrNode *l = g->loss;
	if (l && !shape_poisoned(l->shape) && (l->batched || l->shape.rank != 0)) {
		diag_error(l->loc, "the loss must be one number for the batch, but this is a %s tensor per sample",
			   shape_str(l->shape));
		diag_hint("compute it with a loss such as cross_entropy(logits, y) or mse(p, t)");
	}
	for (int i = 0; i < g->noutputs; i++) {
		IrNode *o = g->outputs[i];
		if (o->op == IR_TARGET) {
			diag_error(o->loc, "the target '%s' cannot be an output", o->name);
			diag_hint("outputs are what the model computes from its inputs");
		}
	}
}

int shape_infer(IrGraph *g)
{
	int before = diag_errors();
	for (int i = 0; i < g->nnodes; i++)
		infer(g->nodes[i]);
	check_results(g);
	return diag_errors() - before;
}
