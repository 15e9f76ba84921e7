/*
 * test_gradcheck_cnn.c: the gradient oracle (DESIGN.md, "Three oracles") for
 * pooling, batchnorm, concat and up-sampling, as test_gradcheck.c does it for
 * the dense ops: a small model is compiled to loop IR and run in double
 * precision by the interpreter (loop_interp.c); the gradient the compiler
 * derived must match central finite differences within 1e-6 (relative,
 * element-wise, see test_gradcheck.c for the measure and the step).
 *
 * Symbolic gradient: one train_step with sgd(lr=1) moves every parameter by
 * exactly -grad. Numeric gradient: the loss train_step returns with lr=0.
 * Batchnorm is in training mode there (batch statistics); its running
 * statistics change with every step, which training mode never reads, and
 * they are restored with the parameters anyway.
 *
 * An image needs parameters before the op under test, so rank-3 models start
 * with a 1x1 convolution (no bias before a batchnorm: its gradient is exactly
 * 0, and a relative error of rounding noise over 0 means nothing). The
 * inputs are random doubles, so a max-pool window has no ties, and no two
 * values lie within the finite-difference step of each other.
 *
 * Also here: bn_running_update against PyTorch's running statistics, and
 * inference batchnorm against its formula.
 *
 * NNC_GRADCHECK_VERBOSE=1 prints the worst error of each test.
 */
#include "support.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loop.h"
#include "loop_interp.h"

#include "gradcheck.h"

/* every test here uses the same step */
static void gradcheck(const char *name, const char *src)
{
	gradcheck_assert(name, src, H);
}

/* ---- models ---- */

#define TRAIN "train {\n  optimizer = sgd(lr=1)\n}\n"
/* x [2, 7, 8] -> 1x1 conv to 3 channels -> OP -> tanh -> flatten -> dense(3), mse */
#define IMAGE_MODEL(op)                                                                \
	"model m {\n  input x: [2, 7, 8]\n  target t: [3]\n"                           \
	"  h = x -> conv2d(3, kernel=1) -> " op " -> tanh -> flatten -> dense(3)\n"    \
	"  output h\n  loss mse(h, t)\n}\n" TRAIN
/* x [5], float target t [3]; BODY defines h [3] */
#define VEC_MODEL(body)                                                                \
	"model m {\n  input x: [5]\n  target t: [3]\n" body                            \
	"  output h\n  loss mse(h, t)\n}\n" TRAIN

/* kernel 2 and 3; stride 1, 2, 3; padding; a non-square kernel, stride and padding */
static const char *const POOLS[] = {
	"(2)",
	"(3, stride=1)",
	"(3, stride=2)",
	"(2, stride=3)",
	"(3, stride=2, pad=1)",
	"(2, stride=1, pad=1)",
	"([3, 2], stride=[2, 1], pad=[1, 0])",
	"([3, 2], stride=[1, 3], pad=[0, 1])",
};

static void pools(const char *op)
{
	for (size_t i = 0; i < sizeof POOLS / sizeof POOLS[0]; i++) {
		char call[96], src[512];
		snprintf(call, sizeof call, "%s%s", op, POOLS[i]);
		snprintf(src, sizeof src, IMAGE_MODEL("%s"), call);
		gradcheck(call, src);
	}
}

static void test_maxpool(void **state)
{
	(void)state;
	pools("maxpool");
}

static void test_avgpool(void **state)
{
	(void)state;
	pools("avgpool");
}

/* rows of 11 windows (lower.c runs a row in chunks of 8 that overlap), the
 * windows tiled (2) and overlapping (3, stride 1: 20 a row) */
static void test_pool_wide_rows(void **state)
{
	(void)state;
	static const char *const ops[] = { "maxpool(2)", "avgpool(2)", "maxpool(3, stride=1)", "avgpool(3, stride=1)" };
	for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
		char src[512];
		snprintf(src, sizeof src,
			 "model m {\n  input x: [2, 4, 22]\n  target t: [3]\n"
			 "  h = x -> conv2d(2, kernel=1) -> %s -> tanh -> flatten -> dense(3)\n"
			 "  output h\n  loss mse(h, t)\n}\n" TRAIN, ops[i]);
		gradcheck(ops[i], src);
	}
}

static void test_global_avgpool(void **state)
{
	(void)state;
	gradcheck("global_avgpool",
		  "model m {\n  input x: [2, 5, 6]\n  target t: [3]\n"
		  "  h = x -> conv2d(4, kernel=1) -> global_avgpool -> tanh -> dense(3)\n"
		  "  output h\n  loss mse(h, t)\n}\n" TRAIN);
}

static void test_batchnorm_rank1(void **state)
{
	(void)state;
	gradcheck("batchnorm [4]", VEC_MODEL("  h = x -> dense(4, bias=false) -> batchnorm -> tanh -> dense(3)\n"));
	gradcheck("batchnorm [4] (momentum, eps)",
		  VEC_MODEL("  h = x -> dense(4, bias=false) -> batchnorm(momentum=0.3, eps=0.01) -> tanh -> dense(3)\n"));
}

static void test_batchnorm_rank3(void **state)
{
	(void)state;
	gradcheck("batchnorm [3, 4, 5]",
		  "model m {\n  input x: [2, 4, 5]\n  target t: [3]\n"
		  "  h = x -> conv2d(3, kernel=1, bias=false) -> batchnorm -> tanh -> flatten -> dense(3)\n"
		  "  output h\n  loss mse(h, t)\n}\n" TRAIN);
	/* planes of 72 positions: the statistics and the passes run plane by plane (lower.c, PLANE_POS) */
	gradcheck("batchnorm [3, 8, 9]",
		  "model m {\n  input x: [2, 8, 9]\n  target t: [3]\n"
		  "  h = x -> conv2d(3, kernel=1, bias=false) -> batchnorm -> tanh -> global_avgpool -> dense(3)\n"
		  "  output h\n  loss mse(h, t)\n}\n" TRAIN);
}

/* whether train_step keeps a buffer for the value of the training graph's node
 * of layer `layer` and op `op` (named "train_step bn1 %8") */
static bool value_kept(const Compile *c, const char *layer, IrOp op)
{
	const IrGraph *g = c->train;
	for (int i = 0; i < g->nnodes; i++) {
		const IrNode *n = g->nodes[i];
		if (n->op != op || !n->layer || strcmp(n->layer, layer))
			continue;
		char name[96];
		snprintf(name, sizeof name, "train_step %s %%%d", layer, n->id);
		return loop_find_buf(c->loops, name) != NULL;
	}
	fail_msg("no %s node of layer %s", ir_op_name(op), layer);
	return false;
}

/*
 * ReLU's gradient reads ReLU's output, so the value a batchnorm hands to a
 * ReLU is not kept for the backward: it lives in a register of the fused
 * loop and has no buffer (nor does the sum before the ReLU of a residual
 * block). The gradients stay those of the differences, through the
 * plane-by-plane passes (72 positions) and the channel-by-channel ones.
 */
static void test_batchnorm_relu_keeps_no_value(void **state)
{
	(void)state;
	const char *src = "model m {\n  input x: [2, 8, 9]\n  target t: [3]\n"
			  "  h = x -> conv2d(2, kernel=1, bias=false) -> batchnorm -> relu\n"
			  "  r = h -> conv2d(2, kernel=1, bias=false) -> batchnorm\n"
			  "  o = relu(r + h) -> global_avgpool -> dense(3)\n"
			  "  output o\n  loss mse(o, t)\n}\n" TRAIN;
	gradcheck("conv2d -> batchnorm -> relu, residual", src);
	Compile *c = compile_loops_ok(src);
	assert_false(value_kept(c, "bn1", IR_BATCHNORM_TRAIN));
	assert_false(value_kept(c, "bn2", IR_BATCHNORM_TRAIN));
	assert_false(value_kept(c, "add1", IR_ADD));
	assert_true(value_kept(c, "relu1", IR_RELU));
	assert_true(value_kept(c, "conv2", IR_CONV2D));
	compile_free(c);
	gradcheck("dense -> batchnorm -> leaky_relu (channel by channel)",
		  VEC_MODEL("  h = x -> dense(4, bias=false) -> batchnorm -> leaky_relu(slope=0.2) -> dense(3)\n"));
	gradcheck("dense -> batchnorm -> leaky_relu, negative slope (reads its input)",
		  VEC_MODEL("  h = x -> dense(4, bias=false) -> batchnorm -> leaky_relu(slope=-0.5) -> dense(3)\n"));
}

/* whether statement s, or one inside it, stores into b */
static bool stores_to(const LoopStmt *s, const LoopBuf *b)
{
	if (s->kind == LS_STORE && s->buf == b)
		return true;
	for (const LoopStmt *t = s->body; t; t = t->next)
		if (stores_to(t, b))
			return true;
	return false;
}

static bool has_gemm(const LoopStmt *s)
{
	if (s->kind == LS_GEMM)
		return true;
	for (const LoopStmt *t = s->body; t; t = t->next)
		if (has_gemm(t))
			return true;
	return false;
}

/*
 * A training batchnorm over the planes of a convolution's result sums each
 * plane in the convolution's kernel, sample by sample after its GEMM (lower.c,
 * host_bn_sums), and its backward reads those sums instead of summing x
 * again: the one kernel of train_step that writes bn's plane sums of x is the
 * convolution's. The gradients through the per-plane shifts are checked
 * above (this model) and by the statistics far from zero below.
 */
static void test_batchnorm_sums_in_the_conv_kernel(void **state)
{
	(void)state;
	Compile *c = compile_loops_ok("model m {\n  input x: [2, 8, 9]\n  target t: [3]\n"
				      "  h = x -> conv2d(3, kernel=3, pad=1) -> batchnorm -> relu\n"
				      "  o = h -> conv2d(2, kernel=1, bias=false) -> batchnorm -> global_avgpool -> dense(3)\n"
				      "  output o\n  loss mse(o, t)\n}\n" TRAIN);
	const IrGraph *g = c->train;
	const LoopFn *fn = loop_find_fn(c->loops, "train_step");
	int bns = 0;
	for (int i = 0; i < g->nnodes; i++) {
		const IrNode *n = g->nodes[i];
		if (n->op != IR_BATCHNORM_TRAIN)
			continue;
		char name[96];
		snprintf(name, sizeof name, "train_step %s plane sums %%%d", n->layer, n->id);
		const LoopBuf *b = loop_find_buf(c->loops, name);
		assert_non_null(b);
		int writers = 0;
		for (const LoopStmt *s = fn->body; s; s = s->next)
			if (stores_to(s, b)) {
				writers++;
				assert_true(s->kind == LS_FOR && has_gemm(s));
			}
		assert_int_equal(writers, 1);
		bns++;
	}
	assert_int_equal(bns, 2);
	compile_free(c);
}

/* a convolution's bias gradient over planes of 64 positions, summed plane by plane with the
 * activation and pooling gradients that feed it (lower.c, plane_sums) */
static void test_channel_sums_by_plane(void **state)
{
	(void)state;
	gradcheck("conv2d [3, 8, 8] -> tanh -> maxpool(2)",
		  "model m {\n  input x: [2, 8, 8]\n  target t: [3]\n"
		  "  h = x -> conv2d(3, kernel=3, pad=1) -> tanh -> maxpool(2) -> flatten -> dense(3)\n"
		  "  output h\n  loss mse(h, t)\n}\n" TRAIN);
}

static void test_concat(void **state)
{
	(void)state;
	gradcheck("concat [3] [2]",
		  VEC_MODEL("  a = x -> dense(3)\n  b = x -> dense(2)\n  h = concat(a, b) -> tanh -> dense(3)\n"));
	gradcheck("concat [3] [2] [3] (a twice)",
		  VEC_MODEL("  a = x -> dense(3)\n  b = x -> dense(2) -> tanh\n"
			    "  h = concat(a, b, a) -> tanh -> dense(3)\n"));
	const char *img = "model m {\n  input x: [2, 3, 4]\n  target t: [3]\n"
			  "  a = x -> conv2d(2, kernel=1)\n  b = x -> conv2d(3, kernel=1) -> tanh\n"
			  "  c = x -> conv2d(1, kernel=1)\n"
			  "  h = concat(%s) -> tanh -> flatten -> dense(3)\n"
			  "  output h\n  loss mse(h, t)\n}\n" TRAIN;
	char src[512];
	snprintf(src, sizeof src, img, "a, b");
	gradcheck("concat [2, 3, 4] [3, 3, 4]", src);
	snprintf(src, sizeof src, img, "b, c, a");
	gradcheck("concat [3, 3, 4] [1, 3, 4] [2, 3, 4]", src);
	/* the input itself has no gradient: a's slice starts after its 2 channels */
	snprintf(src, sizeof src, img, "x, a, c");
	gradcheck("concat input [2, 3, 4] [2, 3, 4] [1, 3, 4]", src);
	/* read only by convolutions: im2col reads the inputs, the input gradient's GEMM writes the slices */
	const char *conv = "model m {\n  input x: [2, 3, 4]\n  target t: [3]\n"
			   "  a = x -> conv2d(2, kernel=1)\n  b = x -> conv2d(3, kernel=3, pad=1) -> tanh\n"
			   "  h = concat(%s) -> conv2d(2, kernel=3%s) -> tanh -> flatten -> dense(3)\n"
			   "  output h\n  loss mse(h, t)\n}\n" TRAIN;
	snprintf(src, sizeof src, conv, "b, a, b", ", pad=1");
	gradcheck("concat [3, 3, 4] [2, 3, 4] [3, 3, 4] -> conv2d 3x3 same", src);
	snprintf(src, sizeof src, conv, "a, x", "");
	gradcheck("concat [2, 3, 4] input [2, 3, 4] -> conv2d 3x3 valid", src);
}

static void test_upsample(void **state)
{
	(void)state;
	const char *img = "model m {\n  input x: [2, 3, 4]\n  target t: [3]\n"
			  "  h = x -> conv2d(2, kernel=1) -> %s -> tanh -> flatten -> dense(3)\n"
			  "  output h\n  loss mse(h, t)\n}\n" TRAIN;
	const char *ups[] = { "upsample(2)", "upsample([2, 3])", "upsample(3)", "upsample(2, mode=\"bilinear\")",
			      "upsample([2, 3], mode=\"bilinear\")", "upsample([3, 1], mode=\"bilinear\")" };
	for (size_t i = 0; i < sizeof ups / sizeof ups[0]; i++) {
		char src[512];
		snprintf(src, sizeof src, img, ups[i]);
		gradcheck(ups[i], src);
	}
}

/* ---- batchnorm's running statistics and inference ---- */

/* x[i] = sin(0.7 i + 0.3) * (1 + i % 3): the batch of the PyTorch reference below */
static void bn_batch(double *x, int n)
{
	for (int i = 0; i < n; i++)
		x[i] = sin(0.7 * i + 0.3) * (1 + i % 3);
}

static void assert_near(const double *got, const double *want, int n, double tol)
{
	for (int i = 0; i < n; i++)
		if (!(fabs(got[i] - want[i]) <= tol * (1 + fabs(want[i]))))
			fail_msg("element %d: got %.9g, want %.9g", i, got[i], want[i]);
}

/*
 * Two training steps on one batch of 3 samples [2, 2, 3], then of 3 samples
 * [4]. The expected running statistics come from PyTorch 1.13
 * (/usr/bin/python3), in float64:
 *
 *   import torch, math
 *   x = torch.tensor([math.sin(0.7*i+0.3)*(1+i%3) for i in range(36)], dtype=torch.float64)
 *   bn = torch.nn.BatchNorm2d(2, momentum=0.3).double().train()
 *   for _ in range(2): bn(x.view(3, 2, 2, 3))
 *   print(bn.running_mean.tolist(), bn.running_var.tolist())
 *   x = x[:12]; bn = torch.nn.BatchNorm1d(4).double().train()
 *   for _ in range(2): bn(x.view(3, 4))
 *   print(bn.running_mean.tolist(), bn.running_var.tolist())
 */
static void running_stats_at(const char *src, int elems, const double *mean, const double *var, int nc, double offset,
			     double tol)
{
	Compile *c = compile_loops_ok(src);
	LoopMachine *lm = loop_machine_new(c->loops, BATCH, 1);
	double x[BATCH * 12], t[BATCH * 2] = { 0 };
	assert_true(elems <= 12);
	bn_batch(x, BATCH * elems);
	for (int i = 0; i < BATCH * elems; i++)
		x[i] += offset;
	for (int i = 0; i < 2; i++)
		loop_machine_run(lm, "train_step", BATCH, x, t, NULL);
	assert_near(loop_machine_buf(lm, "bn1.running_mean"), mean, nc, tol);
	assert_near(loop_machine_buf(lm, "bn1.running_var"), var, nc, tol);
	loop_machine_free(lm);
	compile_free(c);
}

static void running_stats(const char *src, int elems, const double *mean, const double *var, int nc)
{
	running_stats_at(src, elems, mean, var, nc, 0, 1e-12);
}

static void test_batchnorm_running_stats(void **state)
{
	(void)state;
	static const double mean3[] = { 0.0054314757148758094, -0.004107592067593653 };
	static const double var3[] = { 1.738475599363849, 1.7544737881748058 };
	running_stats("model m {\n  input x: [2, 2, 3]\n  target t: [2]\n"
		      "  h = x -> batchnorm(momentum=0.3) -> flatten -> dense(2)\n"
		      "  output h\n  loss mse(h, t)\n}\n" TRAIN, 12, mean3, var3, 2);
	static const double mean1[] = { -0.04705340265430999, 0.010064278485730889, 0.2342280451467977,
					0.11885314523546268 };
	static const double var1[] = { 0.9209895484992016, 1.4075751727144503, 1.5832898562411748,
				       1.8753086287279266 };
	running_stats("model m {\n  input x: [4]\n  target t: [2]\n"
		      "  h = x -> batchnorm -> dense(2)\n"
		      "  output h\n  loss mse(h, t)\n}\n" TRAIN, 4, mean1, var1, 4);
}

/*
 * The statistics are one pass of sums around a shift (lower.c, bn_stats_with):
 * with the same batch moved by 1e6, the variance must not change and the mean
 * moves by the offset. Moving the batch rounds it by up to 1.2e-10 (double's
 * step at 1e6), so 1e-8 here; sums of x and x^2 without the shift would lose
 * about 1e-2 of the variance (36 squares near 1e12 rounded to 1e-16).
 */
static void test_batchnorm_statistics_far_from_zero(void **state)
{
	(void)state;
	const double offset = 1e6, decay = 1 - 0.7 * 0.7;	/* momentum 0.3, two steps from 0 */
	double mean3[] = { 0.0054314757148758094 + decay * offset, -0.004107592067593653 + decay * offset };
	static const double var3[] = { 1.738475599363849, 1.7544737881748058 };
	running_stats_at("model m {\n  input x: [2, 2, 3]\n  target t: [2]\n"
			 "  h = x -> batchnorm(momentum=0.3) -> flatten -> dense(2)\n"
			 "  output h\n  loss mse(h, t)\n}\n" TRAIN, 12, mean3, var3, 2, offset, 1e-8);
}

/* the same on planes of 72 positions, summed plane by plane: the running variance after a
 * batch moved by 1e6 equals the one without the move, the mean moves by decay * 1e6 */
static void test_batchnorm_statistics_far_from_zero_by_plane(void **state)
{
	(void)state;
	const char *src = "model m {\n  input x: [2, 8, 9]\n  target t: [2]\n"
			  "  h = x -> batchnorm(momentum=0.3) -> global_avgpool -> dense(2)\n"
			  "  output h\n  loss mse(h, t)\n}\n" TRAIN;
	double mean[2][2], var[2][2];
	for (int k = 0; k < 2; k++) {
		Compile *c = compile_loops_ok(src);
		LoopMachine *lm = loop_machine_new(c->loops, BATCH, 1);
		double x[BATCH * 144], t[BATCH * 2] = { 0 };
		bn_batch(x, BATCH * 144);
		for (int i = 0; i < BATCH * 144; i++)
			x[i] += k ? 1e6 : 0;
		for (int i = 0; i < 2; i++)
			loop_machine_run(lm, "train_step", BATCH, x, t, NULL);
		memcpy(mean[k], loop_machine_buf(lm, "bn1.running_mean"), sizeof mean[k]);
		memcpy(var[k], loop_machine_buf(lm, "bn1.running_var"), sizeof var[k]);
		loop_machine_free(lm);
		compile_free(c);
	}
	const double decay = 1 - 0.7 * 0.7, shifted[2] = { mean[0][0] + decay * 1e6, mean[0][1] + decay * 1e6 };
	assert_true(var[0][0] > 0.5 && var[0][1] > 0.5);
	assert_near(var[1], var[0], 2, 1e-8);
	assert_near(mean[1], shifted, 2, 1e-12);
}

/* forward uses the running statistics: y = (x - mean) / sqrt(var + eps) w + b */
static void test_batchnorm_inference(void **state)
{
	(void)state;
	Compile *c = compile_loops_ok("model m {\n  input x: [2, 1, 3]\n"
				      "  h = x -> batchnorm(eps=0.5)\n  output h\n}\n");
	LoopMachine *lm = loop_machine_new(c->loops, 2, 1);
	const double rm[] = { 0.5, -1 }, rv[] = { 1.5, 3.5 }, w[] = { 2, -3 }, b[] = { 0.25, 1 };
	memcpy(loop_machine_buf(lm, "bn1.running_mean"), rm, sizeof rm);
	memcpy(loop_machine_buf(lm, "bn1.running_var"), rv, sizeof rv);
	memcpy(loop_machine_buf(lm, "bn1.weight"), w, sizeof w);
	memcpy(loop_machine_buf(lm, "bn1.bias"), b, sizeof b);
	double x[12], out[12], want[12];
	bn_batch(x, 12);
	for (int i = 0; i < 12; i++) {
		int ch = i / 3 % 2;
		want[i] = (x[i] - rm[ch]) / sqrt(rv[ch] + 0.5) * w[ch] + b[ch];
	}
	loop_machine_run(lm, "forward", 2, x, NULL, out);
	assert_near(out, want, 12, 1e-12);
	loop_machine_free(lm);
	compile_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_maxpool),
		cmocka_unit_test(test_avgpool),
		cmocka_unit_test(test_pool_wide_rows),
		cmocka_unit_test(test_global_avgpool),
		cmocka_unit_test(test_batchnorm_rank1),
		cmocka_unit_test(test_batchnorm_rank3),
		cmocka_unit_test(test_batchnorm_relu_keeps_no_value),
		cmocka_unit_test(test_batchnorm_sums_in_the_conv_kernel),
		cmocka_unit_test(test_channel_sums_by_plane),
		cmocka_unit_test(test_concat),
		cmocka_unit_test(test_upsample),
		cmocka_unit_test(test_batchnorm_running_stats),
		cmocka_unit_test(test_batchnorm_statistics_far_from_zero),
		cmocka_unit_test(test_batchnorm_statistics_far_from_zero_by_plane),
		cmocka_unit_test(test_batchnorm_inference),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
