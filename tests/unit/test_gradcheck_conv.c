/*
 * test_gradcheck_conv.c: conv2d and conv_transpose2d against two oracles, in
 * double precision through the loop-IR interpreter (loop_interp.c).
 *
 * 1. Forward: the output of the lowered loops equals a direct sum written
 *    here from PyTorch's definitions (conv2d gathers, conv_transpose2d
 *    scatters), element by element, to 1e-12. A gradient check alone would
 *    pass a kernel that is consistently wrong (flipped, shifted), so this
 *    is the check of the geometry itself.
 * 2. Gradients: the harness of test_gradcheck.c (see there): one sgd(lr=1)
 *    step gives the symbolic gradient, central differences the numeric one,
 *    and the worst relative error over every parameter element must be
 *    below 1e-6. Every model stacks two layers of the kind under test, so
 *    the first layer's weight gradient flows through the second layer's data
 *    gradient (conv2d's is a conv_transpose2d with the same geometry, and
 *    conversely) and the second one's weight gradient is conv_dw; biases
 *    check channel_sum. The dense layer at the end only reduces the image
 *    to a loss: test_gradcheck.c checks its gradient, so its parameters are
 *    skipped here (they are most of the elements, and the time).
 *
 * The interpreter also checks what the C emitter relies on: every index
 * within its buffer, every temporary written before it is read, and no
 * parallel loop whose iterations touch each other's elements.
 *
 * NNC_GRADCHECK_VERBOSE=1 prints the worst error of each model.
 */
#include "support.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "loop.h"
#include "loop_interp.h"

#include "gradcheck.h"

/* the convolutions' parameters (the dense layer after them is checked elsewhere) */
static void gradcheck(const char *name, const char *src)
{
	int nparams;
	double worst = gradcheck_some(name, src, H, NULL, false, "dense", &nparams);
	assert_true(nparams >= 2);	/* both layers' weights at least */
	if (!(worst < TOL))
		fail_msg("%s: worst relative error %.3g (tolerance %.0e)", name, worst, TOL);
}

/* x [SHAPE] -> A -> tanh -> B -> flatten -> dense(2), mse against t [2] */
#define STACK(shape, a, b)                                                             \
	"model m {\n  input x: [" shape "]\n  target t: [2]\n"                         \
	"  h = x -> " a " -> tanh -> " b " -> flatten -> dense(2)\n"                   \
	"  output h\n  loss mse(h, t)\n}\ntrain {\n  optimizer = sgd(lr=1)\n}\n"

static void test_conv2d_stride_pad(void **state)
{
	(void)state;
	gradcheck("conv2d k3 s2 p1 (odd sizes)", STACK("3, 7, 6", "conv2d(4, kernel=3, stride=2, pad=1)", "conv2d(2, kernel=2)"));
	gradcheck("conv2d k3 s3, then s2 p2",
		  STACK("2, 8, 7", "conv2d(3, kernel=3, stride=3, pad=1)", "conv2d(2, kernel=2, stride=2, pad=2)"));
	gradcheck("conv2d stride [2, 1], pad [0, 2]",
		  STACK("2, 7, 5", "conv2d(3, kernel=3, stride=[2, 1], pad=[0, 2])", "conv2d(2, kernel=3, stride=[1, 3])"));
}

/* the second convolution's input gradient as a gather (lower.c, conv_t_gathers): stride 1,
 * padding of at least half the kernel, square and not, padding past half */
static void test_conv2d_input_gradient_gathers(void **state)
{
	(void)state;
	gradcheck("conv2d 3x3 p1, then 3x3 p1", STACK("2, 6, 7", "conv2d(3, kernel=3, pad=1)", "conv2d(2, kernel=3, pad=1)"));
	gradcheck("conv2d 3x3 p1, then [3, 5] p[1, 2]",
		  STACK("2, 6, 7", "conv2d(3, kernel=3, pad=1)", "conv2d(2, kernel=[3, 5], pad=[1, 2])"));
	gradcheck("conv2d 3x3 p1, then [5, 3] p[3, 1]",
		  STACK("2, 5, 6", "conv2d(3, kernel=3, pad=1)", "conv2d(2, kernel=[5, 3], pad=[3, 1])"));
}

static void test_conv2d_same(void **state)
{
	(void)state;
	gradcheck("conv2d same, kernels 3 and 2", STACK("2, 5, 6", "conv2d(3, kernel=3, pad=\"same\")", "conv2d(2, kernel=2, pad=\"same\")"));
	gradcheck("conv2d same, kernels 4 and [2, 3]",
		  STACK("2, 5, 5", "conv2d(2, kernel=4, pad=\"same\")", "conv2d(2, kernel=[2, 3], pad=\"same\")"));
	gradcheck("conv2d same with dilation 2",
		  STACK("2, 6, 5", "conv2d(2, kernel=2, dilation=2, pad=\"same\")", "conv2d(2, kernel=3, dilation=2, pad=\"same\")"));
}

static void test_conv2d_dilation(void **state)
{
	(void)state;
	gradcheck("conv2d dilation 2",
		  STACK("2, 9, 8", "conv2d(3, kernel=3, dilation=2, pad=1)", "conv2d(2, kernel=2, dilation=2, stride=2)"));
	gradcheck("conv2d dilation [2, 1]",
		  STACK("2, 7, 6", "conv2d(3, kernel=3, dilation=[2, 1])", "conv2d(2, kernel=2, dilation=[1, 3], pad=1)"));
}

static void test_conv2d_groups(void **state)
{
	(void)state;
	gradcheck("conv2d groups 2", STACK("4, 6, 5", "conv2d(4, kernel=3, groups=2, pad=1)", "conv2d(2, kernel=3, groups=2, stride=2)"));
	gradcheck("conv2d depthwise (groups = C)",
		  STACK("3, 5, 6", "conv2d(3, kernel=3, groups=3, pad=1)", "conv2d(6, kernel=3, groups=3, stride=2)"));
	gradcheck("conv2d 1x1 groups 2",
		  STACK("4, 4, 3", "conv2d(4, kernel=1, groups=2)", "conv2d(2, kernel=1, groups=2)"));
}

static void test_conv2d_kernels(void **state)
{
	(void)state;
	gradcheck("conv2d 1x1 (no columns)", STACK("3, 4, 5", "conv2d(4, kernel=1)", "conv2d(2, kernel=1)"));
	gradcheck("conv2d 1x1 stride 2, 1x1 pad 1",
		  STACK("3, 5, 5", "conv2d(3, kernel=1, stride=2)", "conv2d(2, kernel=1, pad=1)"));
	gradcheck("conv2d kernel 5 pad 2, kernel 2",
		  STACK("2, 7, 7", "conv2d(3, kernel=5, pad=2)", "conv2d(2, kernel=2, stride=2)"));
	gradcheck("conv2d kernels [3, 1] and [1, 3]",
		  STACK("2, 6, 5", "conv2d(3, kernel=[3, 1], pad=[1, 0])", "conv2d(2, kernel=[1, 3], stride=[1, 2])"));
}

static void test_conv2d_no_bias(void **state)
{
	(void)state;
	gradcheck("conv2d bias=false", STACK("3, 6, 5", "conv2d(3, kernel=3, pad=1, bias=false)", "conv2d(2, kernel=3, bias=false)"));
	gradcheck("conv2d 1x1 bias=false", STACK("3, 4, 4", "conv2d(3, kernel=1, bias=false)", "conv2d(2, kernel=1, bias=false)"));
}

static void test_conv_transpose2d_stride_pad(void **state)
{
	(void)state;
	gradcheck("conv_transpose2d k3 s2 p1",
		  STACK("3, 3, 4", "conv_transpose2d(2, kernel=3, stride=2, pad=1)", "conv_transpose2d(2, kernel=2, stride=2)"));
	gradcheck("conv_transpose2d k3 s3, k3 p2",
		  STACK("2, 2, 3", "conv_transpose2d(2, kernel=3, stride=3)", "conv_transpose2d(2, kernel=3, pad=2)"));
	gradcheck("conv_transpose2d stride [1, 2], pad [1, 0]",
		  STACK("2, 3, 3", "conv_transpose2d(3, kernel=3, stride=[1, 2], pad=[1, 0])", "conv_transpose2d(2, kernel=2)"));
}

static void test_conv_transpose2d_output_pad(void **state)
{
	(void)state;
	gradcheck("conv_transpose2d output_pad 1",
		  STACK("2, 3, 3", "conv_transpose2d(3, kernel=3, stride=2, pad=1, output_pad=1)",
			"conv_transpose2d(2, kernel=2, stride=2, output_pad=1)"));
	gradcheck("conv_transpose2d stride 3 output_pad [2, 1]",
		  STACK("2, 2, 3", "conv_transpose2d(2, kernel=2, stride=3, output_pad=[2, 1])",
			"conv_transpose2d(2, kernel=3, stride=2, pad=1, output_pad=1)"));
}

static void test_conv_transpose2d_kernels(void **state)
{
	(void)state;
	gradcheck("conv_transpose2d 1x1 (no columns)",
		  STACK("3, 3, 4", "conv_transpose2d(4, kernel=1)", "conv_transpose2d(2, kernel=1)"));
	gradcheck("conv_transpose2d 1x1 stride 2, 1x1 pad 1",
		  STACK("2, 3, 3", "conv_transpose2d(3, kernel=1, stride=2)", "conv_transpose2d(2, kernel=1, pad=1)"));
	gradcheck("conv_transpose2d kernel 5 pad 2 stride 2",
		  STACK("2, 3, 3", "conv_transpose2d(2, kernel=5, stride=2, pad=2)", "conv_transpose2d(2, kernel=2)"));
	gradcheck("conv_transpose2d kernels [3, 1] and [1, 3]",
		  STACK("2, 3, 4", "conv_transpose2d(3, kernel=[3, 1], stride=[2, 1])", "conv_transpose2d(2, kernel=[1, 3], pad=[0, 1])"));
}

static void test_conv_transpose2d_no_bias(void **state)
{
	(void)state;
	gradcheck("conv_transpose2d bias=false",
		  STACK("3, 3, 3", "conv_transpose2d(3, kernel=3, stride=2, bias=false)", "conv_transpose2d(2, kernel=2, bias=false)"));
}

/* each kind feeding the other: the data gradient of each, in both orders */
static void test_mixed(void **state)
{
	(void)state;
	gradcheck("conv2d -> conv_transpose2d",
		  STACK("3, 7, 6", "conv2d(4, kernel=3, stride=2, pad=1)", "conv_transpose2d(2, kernel=3, stride=2, output_pad=1)"));
	gradcheck("conv_transpose2d -> conv2d groups 2 dilation 2",
		  STACK("2, 3, 3", "conv_transpose2d(4, kernel=3, stride=2)", "conv2d(2, kernel=3, groups=2, dilation=2)"));
}

/* ---- the forward pass against a direct sum ---- */

typedef struct Geom {
	int transposed;
	int64_t c, h, w;	/* input */
	int64_t f, ho, wo;	/* output, as PyTorch computes it */
	int kh, kw, sh, sw, dh, dw, ph, pw, groups;	/* ph, pw: top and left padding */
	int bias;
} Geom;

/* PyTorch's conv2d and conv_transpose2d written as loops over the output
 * (gather) and over the input (scatter) */
static void reference(const Geom *g, const double *x, const double *w, const double *b, double *y)
{
	int64_t cg = g->c / g->groups, fg = g->f / g->groups;
	for (int64_t i = 0; i < g->f * g->ho * g->wo; i++)
		y[i] = g->bias ? b[i / (g->ho * g->wo)] : 0;
	for (int64_t o = 0; o < g->f; o++)
		for (int64_t ci = 0; ci < cg; ci++)
			for (int ky = 0; ky < g->kh; ky++)
				for (int kx = 0; kx < g->kw; kx++)
					for (int64_t p = 0; p < (g->transposed ? g->h : g->ho); p++)
						for (int64_t q = 0; q < (g->transposed ? g->w : g->wo); q++) {
							int64_t iy = p * g->sh - g->ph + ky * g->dh, ix = q * g->sw - g->pw + kx * g->dw;
							if (!g->transposed) {
								int64_t c = o / fg * cg + ci;
								if (iy < 0 || iy >= g->h || ix < 0 || ix >= g->w)
									continue;
								double wv = w[((o * cg + ci) * g->kh + ky) * g->kw + kx];
								y[(o * g->ho + p) * g->wo + q] += wv * x[(c * g->h + iy) * g->w + ix];
							} else {	/* groups 1: x channel ci, weight [C, F, kh, kw] */
								if (iy < 0 || iy >= g->ho || ix < 0 || ix >= g->wo)
									continue;
								double wv = w[((ci * g->f + o) * g->kh + ky) * g->kw + kx];
								y[(o * g->ho + iy) * g->wo + ix] += wv * x[(ci * g->h + p) * g->w + q];
							}
						}
}

static void forward_matches(const char *layer, const Geom *g)
{
	char src[512];
	snprintf(src, sizeof src, "model m {\n  input x: [%" PRId64 ", %" PRId64 ", %" PRId64 "]\n  h = x -> %s\n  output h\n}\n",
		 g->c, g->h, g->w, layer);
	Compile *c = compile_loops_ok(src);
	assert_shape(c->infer->outputs[0], g->f, g->ho, g->wo);
	LoopMachine *lm = loop_machine_new(c->loops, BATCH, 5);
	const char *lname = g->transposed ? "deconv1" : "conv1";
	char wname[32], bname[32];
	snprintf(wname, sizeof wname, "%s.weight", lname);
	snprintf(bname, sizeof bname, "%s.bias", lname);
	double *w = loop_machine_buf(lm, wname), *b = loop_machine_buf(lm, bname);
	assert_non_null(w);
	assert_true(!g->bias == !b);
	int64_t in = g->c * g->h * g->w, out = g->f * g->ho * g->wo;
	double *x = random_inputs(BATCH * in, 77), *y = calloc((size_t)(BATCH * out), sizeof *y);
	double *want = calloc((size_t)out, sizeof *want);
	loop_machine_run(lm, "forward", BATCH, x, NULL, y);
	double worst = 0, scale = 0;
	for (int s = 0; s < BATCH; s++) {
		reference(g, x + s * in, w, b, want);
		for (int64_t i = 0; i < out; i++) {
			double d = fabs(y[s * out + i] - want[i]);
			worst = d > worst ? d : worst;
			scale = fabs(want[i]) > scale ? fabs(want[i]) : scale;
		}
	}
	if (getenv("NNC_GRADCHECK_VERBOSE"))
		printf("forward %-56s worst difference %.2e (scale %.2f)\n", layer, worst, scale);
	if (!(worst < 1e-12) || !(scale > 0.1))
		fail_msg("%s: worst difference %.3g from the direct sum (scale %.3g)", layer, worst, scale);
	free(x);
	free(y);
	free(want);
	loop_machine_free(lm);
	compile_free(c);
}

static void test_conv2d_forward(void **state)
{
	(void)state;
	Geom g = { .c = 3, .h = 7, .w = 6, .f = 4, .ho = 4, .wo = 3, .kh = 3, .kw = 3, .sh = 2, .sw = 2, .dh = 1, .dw = 1,
		   .ph = 1, .pw = 1, .groups = 1, .bias = 1 };
	forward_matches("conv2d(4, kernel=3, stride=2, pad=1)", &g);
	Geom same = { .c = 2, .h = 5, .w = 6, .f = 3, .ho = 5, .wo = 6, .kh = 4, .kw = 2, .sh = 1, .sw = 1, .dh = 1, .dw = 2,
		      .ph = 1, .pw = 1, .groups = 1, .bias = 1 };	/* rows: 1 above, 2 below; columns: 1 each side */
	forward_matches("conv2d(3, kernel=[4, 2], dilation=[1, 2], pad=\"same\")", &same);
	Geom grp = { .c = 4, .h = 6, .w = 5, .f = 6, .ho = 2, .wo = 2, .kh = 3, .kw = 3, .sh = 2, .sw = 2, .dh = 2, .dw = 1,
		     .ph = 1, .pw = 0, .groups = 2, .bias = 0 };
	forward_matches("conv2d(6, kernel=3, stride=2, dilation=[2, 1], pad=[1, 0], groups=2, bias=false)", &grp);
	Geom dw = { .c = 3, .h = 4, .w = 5, .f = 3, .ho = 4, .wo = 5, .kh = 3, .kw = 3, .sh = 1, .sw = 1, .dh = 1, .dw = 1,
		    .ph = 1, .pw = 1, .groups = 3, .bias = 1 };
	forward_matches("conv2d(3, kernel=3, pad=1, groups=3)", &dw);
	Geom one = { .c = 4, .h = 3, .w = 5, .f = 2, .ho = 3, .wo = 5, .kh = 1, .kw = 1, .sh = 1, .sw = 1, .dh = 1, .dw = 1,
		     .groups = 2, .bias = 1 };
	forward_matches("conv2d(2, kernel=1, groups=2)", &one);
	Geom k5 = { .c = 2, .h = 7, .w = 8, .f = 2, .ho = 2, .wo = 2, .kh = 5, .kw = 5, .sh = 3, .sw = 3, .dh = 1, .dw = 1,
		    .ph = 1, .pw = 1, .groups = 1, .bias = 1 };
	forward_matches("conv2d(2, kernel=5, stride=3, pad=1)", &k5);
}

static void test_conv_transpose2d_forward(void **state)
{
	(void)state;
	Geom g = { .transposed = 1, .c = 3, .h = 3, .w = 4, .f = 2, .ho = 6, .wo = 8, .kh = 3, .kw = 3, .sh = 2, .sw = 2,
		   .dh = 1, .dw = 1, .ph = 1, .pw = 1, .groups = 1, .bias = 1 };
	forward_matches("conv_transpose2d(2, kernel=3, stride=2, pad=1, output_pad=1)", &g);
	Geom s3 = { .transposed = 1, .c = 2, .h = 2, .w = 3, .f = 3, .ho = 7, .wo = 9, .kh = 2, .kw = 3, .sh = 3, .sw = 3,
		    .dh = 1, .dw = 1, .ph = 0, .pw = 0, .groups = 1, .bias = 0 };
	forward_matches("conv_transpose2d(3, kernel=[2, 3], stride=3, output_pad=[2, 0], bias=false)", &s3);
	Geom one = { .transposed = 1, .c = 3, .h = 3, .w = 2, .f = 2, .ho = 3, .wo = 2, .kh = 1, .kw = 1, .sh = 1, .sw = 1,
		     .dh = 1, .dw = 1, .groups = 1, .bias = 1 };
	forward_matches("conv_transpose2d(2, kernel=1)", &one);
	Geom pad = { .transposed = 1, .c = 2, .h = 4, .w = 4, .f = 2, .ho = 2, .wo = 4, .kh = 3, .kw = 3, .sh = 1, .sw = 1,
		     .dh = 1, .dw = 1, .ph = 2, .pw = 1, .groups = 1, .bias = 1 };
	forward_matches("conv_transpose2d(2, kernel=3, pad=[2, 1])", &pad);
}

/* ---- the lowering's shape ---- */

static int count_columns(const LoopModule *m)
{
	int k = 0;
	for (int i = 0; i < m->nbufs; i++)
		k += m->bufs[i]->name && strstr(m->bufs[i]->name, " columns ") != NULL;
	return k;
}

/* a 1x1 kernel with stride 1 and no padding reads the image itself as its
 * column matrix: no scratch columns in any function; a 3x3 one needs them */
static void test_pointwise_needs_no_columns(void **state)
{
	(void)state;
	Compile *c = compile_loops_ok(STACK("3, 4, 5", "conv2d(4, kernel=1)", "conv_transpose2d(2, kernel=1)"));
	assert_int_equal(count_columns(c->loops), 0);
	compile_free(c);
	c = compile_loops_ok(STACK("3, 4, 5", "conv2d(4, kernel=3)", "conv2d(2, kernel=1, stride=2)"));
	/* forward, eval: one each per layer; train_step: forward 2, conv1 dw, conv2 dx and dw */
	assert_int_equal(count_columns(c->loops), 2 + 2 + 5);
	compile_free(c);
}

static int count_implicit(const LoopStmt *s)
{
	int k = 0;
	for (; s; s = s->next)
		k += (s->kind == LS_GEMM && s->gemm->conv) + count_implicit(s->body);
	return k;
}

/* From 64 rows of col and 16 output columns on, convolutions read the
 * image as an implicit column matrix (lower.c, conv_implicit), and so do the
 * gathers of their input gradients; weight gradients with stride 1, the
 * output as wide as the image and at most 8 filters a group always do
 * (conv_implicit_dw). With 8 channels on 16 columns nothing builds columns;
 * with 4 channels (36 rows) the convolutions and the gather do. */
static int implicit_gemms(const LoopModule *m)
{
	int k = 0;
	for (int i = 0; i < m->nfns; i++)
		k += count_implicit(m->fns[i]->body);
	return k;
}

static void test_implicit_columns(void **state)
{
	(void)state;
	Compile *c = compile_loops_ok(STACK("8, 3, 16", "conv2d(8, kernel=3, pad=1)", "conv2d(8, kernel=3, pad=1)"));
	/* forward, eval: both layers; train_step: both, conv2's input gradient, both weight gradients */
	assert_int_equal(implicit_gemms(c->loops), 2 + 2 + 5);
	assert_int_equal(count_columns(c->loops), 0);
	compile_free(c);
	c = compile_loops_ok(STACK("4, 3, 16", "conv2d(4, kernel=3, pad=1)", "conv2d(4, kernel=3, pad=1)"));
	assert_int_equal(implicit_gemms(c->loops), 2);
	assert_int_equal(count_columns(c->loops), 2 + 2 + 3);
	compile_free(c);
	c = compile_loops_ok(STACK("8, 3, 6", "conv2d(8, kernel=3, pad=1)", "conv2d(8, kernel=3, pad=1)"));
	assert_int_equal(implicit_gemms(c->loops), 2);	/* 6 columns: only the weight gradients */
	compile_free(c);
}

/* the geometries through implicit column matrices: forward against the
 * direct sum, gradients against differences (strided packing, a gather,
 * weight gradients as dot products over the image) */
static void test_implicit_geometries(void **state)
{
	(void)state;
	Geom g = { .c = 8, .h = 3, .w = 33, .f = 3, .ho = 2, .wo = 17, .kh = 3, .kw = 3, .sh = 2, .sw = 2, .dh = 1, .dw = 1,
		   .ph = 1, .pw = 1, .groups = 1, .bias = 1 };
	forward_matches("conv2d(3, kernel=3, stride=2, pad=1)", &g);
	Geom same = { .c = 8, .h = 3, .w = 16, .f = 3, .ho = 3, .wo = 16, .kh = 4, .kw = 2, .sh = 1, .sw = 1, .dh = 1, .dw = 2,
		      .ph = 1, .pw = 1, .groups = 1, .bias = 1 };
	forward_matches("conv2d(3, kernel=[4, 2], dilation=[1, 2], pad=\"same\")", &same);
	Geom grp = { .c = 16, .h = 6, .w = 20, .f = 4, .ho = 2, .wo = 18, .kh = 3, .kw = 3, .sh = 2, .sw = 1, .dh = 2, .dw = 1,
		     .ph = 1, .pw = 0, .groups = 2, .bias = 0 };
	forward_matches("conv2d(4, kernel=3, stride=[2, 1], dilation=[2, 1], pad=[1, 0], groups=2, bias=false)", &grp);
	Geom k5 = { .c = 3, .h = 4, .w = 18, .f = 2, .ho = 4, .wo = 18, .kh = 5, .kw = 5, .sh = 1, .sw = 1, .dh = 1, .dw = 1,
		    .ph = 2, .pw = 2, .groups = 1, .bias = 1 };
	forward_matches("conv2d(2, kernel=5, pad=2)", &k5);
	gradcheck("implicit k5 p2, then [5, 7] p[2, 3] (gather)",
		  STACK("3, 2, 16", "conv2d(2, kernel=5, pad=2)", "conv2d(2, kernel=[5, 7], pad=[2, 3])"));
	gradcheck("implicit stride [1, 2], then [3, 11] p[1, 5]",
		  STACK("5, 2, 32", "conv2d(2, kernel=[3, 5], stride=[1, 2], pad=[1, 2])", "conv2d(2, kernel=[3, 11], pad=[1, 5])"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_conv2d_forward),
		cmocka_unit_test(test_conv_transpose2d_forward),
		cmocka_unit_test(test_pointwise_needs_no_columns),
		cmocka_unit_test(test_implicit_columns),
		cmocka_unit_test(test_implicit_geometries),
		cmocka_unit_test(test_conv2d_stride_pad),
		cmocka_unit_test(test_conv2d_input_gradient_gathers),
		cmocka_unit_test(test_conv2d_same),
		cmocka_unit_test(test_conv2d_dilation),
		cmocka_unit_test(test_conv2d_groups),
		cmocka_unit_test(test_conv2d_kernels),
		cmocka_unit_test(test_conv2d_no_bias),
		cmocka_unit_test(test_conv_transpose2d_stride_pad),
		cmocka_unit_test(test_conv_transpose2d_output_pad),
		cmocka_unit_test(test_conv_transpose2d_kernels),
		cmocka_unit_test(test_conv_transpose2d_no_bias),
		cmocka_unit_test(test_mixed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
