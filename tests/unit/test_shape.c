/* test_shape.c: shape inference and checking (compiler/shape.c) */
#include "support.h"

static void test_dense_needs_rank1(void **state)
{
	(void)state;
	Compile *c = compile_string("model m {\n input x: [1, 4, 4]\n y = x -> dense(3)\n output y\n}");
	assert_int_equal(c->nerrors, 1);
	assert_string_equal(c->first_error, "dense expects a rank-1 input but got [1, 4, 4]");
	compile_free(c);
}

static void test_lenet_shapes(void **state)
{
	(void)state;
	Compile *c = compile_ok("model m {\n input x: [1, 28, 28]\n"
				" h = x -> conv2d(6, kernel=5, pad=2) -> relu -> maxpool(2)\n"
				" h = h -> conv2d(16, kernel=5) -> relu -> maxpool(2) -> flatten -> dense(120)\n"
				" output h\n}");
	const IrGraph *g = c->model->graph;
	assert_shape(layer_node(g, "conv1"), 6, 28, 28);
	assert_shape(layer_node(g, "maxpool1"), 6, 14, 14);
	assert_shape(layer_node(g, "conv2"), 16, 10, 10);
	assert_shape(layer_node(g, "maxpool2"), 16, 5, 5);
	assert_shape(layer_node(g, "flatten1"), 400);
	assert_shape(state_node(g, "conv2.weight"), 16, 6, 5, 5);
	assert_shape(state_node(g, "dense1.weight"), 120, 400);
	compile_free(c);
}

/* model m { input x: IN;  y = x -> CHAIN;  output y } */
static Compile *chain(const char *in, const char *chain_src, bool ok)
{
	char src[1024];
	snprintf(src, sizeof src, "model m {\n  input x: %s\n  y = x -> %s\n  output y\n}\n", in, chain_src);
	return ok ? compile_ok(src) : compile_err(src);
}

/* one layer on an input; its node (named `layer`) must have the shape out */
#define assert_layer(in, src, layer, ...)                                              \
	do {                                                                           \
		Compile *c_ = chain(in, src, true);                                    \
		assert_shape(layer_node(c_->model->graph, layer), __VA_ARGS__);        \
		compile_free(c_);                                                      \
	} while (0)

/* ---- convolution: every expected size below is what PyTorch 1.13 gives ---- */

static void test_conv_stride_and_padding(void **state)
{
	(void)state;
	/* torch: Conv2d(1, 4, 3, stride=2) on [1, 9, 9] -> [4, 4, 4] */
	assert_layer("[1, 9, 9]", "conv2d(4, kernel=3, stride=2)", "conv1", 4, 4, 4);
	/* torch: Conv2d(3, 8, 3, stride=2, padding=1) on [3, 10, 10] -> [8, 5, 5] */
	assert_layer("[3, 10, 10]", "conv2d(8, kernel=3, stride=2, pad=1)", "conv1", 8, 5, 5);
	/* torch: Conv2d(2, 5, 3, stride=3) on [2, 10, 11] -> [5, 3, 3] */
	assert_layer("[2, 10, 11]", "conv2d(5, kernel=3, stride=3)", "conv1", 5, 3, 3);
	/* torch: Conv2d(1, 4, 5, stride=3, padding=2) on [1, 28, 28] -> [4, 10, 10] */
	assert_layer("[1, 28, 28]", "conv2d(4, kernel=5, stride=3, pad=2)", "conv1", 4, 10, 10);
	/* torch: Conv2d(3, 6, (1, 5), stride=(1, 2)) on [3, 8, 9] -> [6, 8, 3], weight [6, 3, 1, 5] */
	Compile *c = chain("[3, 8, 9]", "conv2d(6, kernel=[1, 5], stride=[1, 2])", true);
	assert_shape(layer_node(c->model->graph, "conv1"), 6, 8, 3);
	assert_shape(state_node(c->model->graph, "conv1.weight"), 6, 3, 1, 5);
	assert_shape(state_node(c->model->graph, "conv1.bias"), 6);
	compile_free(c);
}

static void test_conv_non_square_kernel(void **state)
{
	(void)state;
	/* torch: Conv2d(3, 6, (3, 1)) on [3, 8, 8] -> [6, 6, 8], weight [6, 3, 3, 1] */
	Compile *c = chain("[3, 8, 8]", "conv2d(6, kernel=[3, 1])", true);
	assert_shape(layer_node(c->model->graph, "conv1"), 6, 6, 8);
	assert_shape(state_node(c->model->graph, "conv1.weight"), 6, 3, 3, 1);
	compile_free(c);
	/* torch: Conv2d(3, 6, (3, 1), padding=(1, 0)) on [3, 8, 8] -> [6, 8, 8] */
	c = chain("[3, 8, 8]", "conv2d(6, kernel=[3, 1], pad=[1, 0])", true);
	const IrNode *n = layer_node(c->model->graph, "conv1");
	assert_shape(n, 6, 8, 8);
	assert_int_equal(n->a.pad[0], 1);	/* top */
	assert_int_equal(n->a.pad[1], 1);	/* bottom */
	assert_int_equal(n->a.pad[2], 0);	/* left */
	assert_int_equal(n->a.pad[3], 0);	/* right */
	compile_free(c);
}

static void assert_pads(const IrNode *n, int top, int bottom, int left, int right)
{
	assert_non_null(n);
	assert_int_equal(n->a.pad[0], top);
	assert_int_equal(n->a.pad[1], bottom);
	assert_int_equal(n->a.pad[2], left);
	assert_int_equal(n->a.pad[3], right);
}

static void test_conv_pad_same(void **state)
{
	(void)state;
	/* torch, padding='same': an odd kernel pads evenly; an even one puts the extra row and
	 * column at the bottom and right (_reversed_padding_repeated_twice = [l, r, t, b]) */
	Compile *c = chain("[2, 7, 9]", "conv2d(4, kernel=3, pad=\"same\")", true);
	const IrNode *n = layer_node(c->model->graph, "conv1");
	assert_shape(n, 4, 7, 9);
	assert_true(n->a.pad_same);
	assert_pads(n, 1, 1, 1, 1);
	compile_free(c);

	/* torch: Conv2d(2, 4, 4, padding='same') on [2, 7, 9] -> [4, 7, 9], pads [1, 2, 1, 2] */
	c = chain("[2, 7, 9]", "conv2d(4, kernel=4, pad=\"same\")", true);
	n = layer_node(c->model->graph, "conv1");
	assert_shape(n, 4, 7, 9);
	assert_pads(n, 1, 2, 1, 2);
	compile_free(c);

	/* torch: Conv2d(1, 1, (5, 4), padding='same'): pads [l=1, r=2, t=2, b=2] */
	c = chain("[1, 6, 6]", "conv2d(1, kernel=[5, 4], pad=\"same\")", true);
	n = layer_node(c->model->graph, "conv1");
	assert_shape(n, 1, 6, 6);
	assert_pads(n, 2, 2, 1, 2);
	compile_free(c);

	/* torch: Conv2d(1, 1, 3, padding='same', dilation=2): pads [2, 2, 2, 2] */
	c = chain("[1, 6, 6]", "conv2d(1, kernel=3, dilation=2, pad=\"same\")", true);
	n = layer_node(c->model->graph, "conv1");
	assert_shape(n, 1, 6, 6);
	assert_pads(n, 2, 2, 2, 2);
	compile_free(c);

	/* torch: Conv2d(2, 4, (4, 2), padding='same', dilation=(1, 3)) on [2, 7, 9] -> [4, 7, 9],
	 * pads [1, 2, 1, 2] */
	c = chain("[2, 7, 9]", "conv2d(4, kernel=[4, 2], dilation=[1, 3], pad=\"same\")", true);
	n = layer_node(c->model->graph, "conv1");
	assert_shape(n, 4, 7, 9);
	assert_pads(n, 1, 2, 1, 2);
	compile_free(c);
}

static void test_conv_pad_same_needs_stride_1(void **state)
{
	(void)state;
	Compile *c = chain("[1, 8, 8]", "conv2d(4, kernel=3, stride=2, pad=\"same\")", false);
	assert_int_equal(c->nerrors, 1);
	assert_string_equal(c->failed_stage, "shape");
	assert_diag_has(c, "<test>:3:12: error:");
	compile_free(c);
}

static void test_conv_dilation(void **state)
{
	(void)state;
	/* torch: Conv2d(1, 2, 3, dilation=2) on [1, 10, 10] -> [2, 6, 6] */
	assert_layer("[1, 10, 10]", "conv2d(2, kernel=3, dilation=2)", "conv1", 2, 6, 6);
	/* torch: Conv2d(1, 2, 3, dilation=(2, 3), padding=1) on [1, 12, 12] -> [2, 10, 8] */
	assert_layer("[1, 12, 12]", "conv2d(2, kernel=3, dilation=[2, 3], pad=1)", "conv1", 2, 10, 8);
}

static void test_conv_groups(void **state)
{
	(void)state;
	/* torch: Conv2d(8, 12, 3, groups=4) on [8, 5, 5] -> [12, 3, 3], weight [12, 2, 3, 3] */
	Compile *c = chain("[8, 5, 5]", "conv2d(12, kernel=3, groups=4)", true);
	assert_shape(layer_node(c->model->graph, "conv1"), 12, 3, 3);
	assert_shape(state_node(c->model->graph, "conv1.weight"), 12, 2, 3, 3);
	compile_free(c);
	/* torch: depthwise Conv2d(8, 8, 3, groups=8, padding=1): weight [8, 1, 3, 3] */
	c = chain("[8, 6, 6]", "conv2d(8, kernel=3, groups=8, pad=1)", true);
	assert_shape(layer_node(c->model->graph, "conv1"), 8, 6, 6);
	assert_shape(state_node(c->model->graph, "conv1.weight"), 8, 1, 3, 3);
	compile_free(c);
	/* groups must divide the input channels and the filters */
	c = chain("[6, 5, 5]", "conv2d(4, kernel=1, groups=3)", false);
	assert_int_equal(c->nerrors, 1);
	assert_diag_has(c, "groups=3");
	compile_free(c);
	c = chain("[4, 5, 5]", "conv2d(6, kernel=1, groups=4)", false);
	assert_int_equal(c->nerrors, 1);
	compile_free(c);
}

static void test_conv_window_larger_than_input(void **state)
{
	(void)state;
	Compile *c = chain("[1, 3, 3]", "conv2d(2, kernel=5)", false);
	assert_int_equal(c->nerrors, 1);
	assert_diag_has(c, "<test>:3:12: error:");
	compile_free(c);
	/* padding can make room: torch Conv2d(1, 2, 5, padding=1) on [1, 3, 3] -> [2, 1, 1] */
	assert_layer("[1, 3, 3]", "conv2d(2, kernel=5, pad=1)", "conv1", 2, 1, 1);
	/* dilation widens the window: 3 with dilation 3 spans 7 */
	c = chain("[1, 6, 8]", "conv2d(2, kernel=3, dilation=3)", false);
	assert_int_equal(c->nerrors, 1);
	compile_free(c);
}

static void test_conv_needs_an_image(void **state)
{
	(void)state;
	Compile *c = chain("[16]", "conv2d(2, kernel=1)", false);
	assert_int_equal(c->nerrors, 1);
	assert_non_null(strstr(c->first_error, "[16]"));
	compile_free(c);
}

static void test_conv_transpose(void **state)
{
	(void)state;
	/* torch: ConvTranspose2d(4, 3, 2, stride=2) on [4, 7, 6] -> [3, 14, 12], weight [4, 3, 2, 2] */
	Compile *c = chain("[4, 7, 6]", "conv_transpose2d(3, kernel=2, stride=2)", true);
	assert_shape(layer_node(c->model->graph, "deconv1"), 3, 14, 12);
	assert_shape(state_node(c->model->graph, "deconv1.weight"), 4, 3, 2, 2);
	assert_shape(state_node(c->model->graph, "deconv1.bias"), 3);
	compile_free(c);
	/* torch: ConvTranspose2d(4, 3, 3, stride=2, padding=1) on [4, 5, 5] -> [3, 9, 9] */
	assert_layer("[4, 5, 5]", "conv_transpose2d(3, kernel=3, stride=2, pad=1)", "deconv1", 3, 9, 9);
	/* torch: ... output_padding=1 -> [3, 10, 10] */
	assert_layer("[4, 5, 5]", "conv_transpose2d(3, kernel=3, stride=2, pad=1, output_pad=1)", "deconv1", 3, 10, 10);
	/* torch: ConvTranspose2d(4, 3, (3, 2), stride=(3, 1), output_padding=(2, 0)) on [4, 4, 5] -> [3, 14, 6] */
	assert_layer("[4, 4, 5]", "conv_transpose2d(3, kernel=[3, 2], stride=[3, 1], output_pad=[2, 0])", "deconv1",
		     3, 14, 6);
}

static void test_conv_transpose_errors(void **state)
{
	(void)state;
	/* torch: "output padding must be smaller than either stride or dilation" */
	Compile *c = chain("[4, 5, 5]", "conv_transpose2d(3, kernel=3, stride=2, output_pad=2)", false);
	assert_int_equal(c->nerrors, 1);
	compile_free(c);
	c = chain("[4, 5, 5]", "conv_transpose2d(3, kernel=3, output_pad=1)", false);
	assert_int_equal(c->nerrors, 1);
	compile_free(c);
	/* (1-1)*1 - 2*2 + (3-1) + 1 = -1: no output left */
	c = chain("[4, 1, 1]", "conv_transpose2d(3, kernel=3, pad=2)", false);
	assert_int_equal(c->nerrors, 1);
	compile_free(c);
}

/* ---- pooling, upsampling, reshaping ---- */

static void test_pooling_floors(void **state)
{
	(void)state;
	/* torch: MaxPool2d(2) on [3, 7, 7] -> [3, 3, 3] */
	assert_layer("[3, 7, 7]", "maxpool(2)", "maxpool1", 3, 3, 3);
	/* torch: MaxPool2d(3, stride=2, padding=1) on [3, 8, 8] -> [3, 4, 4]; on [3, 9, 9] -> [3, 5, 5] */
	assert_layer("[3, 8, 8]", "maxpool(3, stride=2, pad=1)", "maxpool1", 3, 4, 4);
	assert_layer("[3, 9, 9]", "maxpool(3, stride=2, pad=1)", "maxpool1", 3, 5, 5);
	/* torch: AvgPool2d(3) on [2, 10, 10] -> [2, 3, 3] */
	assert_layer("[2, 10, 10]", "avgpool(3)", "avgpool1", 2, 3, 3);
	/* torch: AvgPool2d(2, stride=1) on [2, 5, 5] -> [2, 4, 4] */
	assert_layer("[2, 5, 5]", "avgpool(2, stride=1)", "avgpool1", 2, 4, 4);
	/* torch: AvgPool2d((2, 3)) on [2, 9, 9] -> [2, 4, 3] */
	assert_layer("[2, 9, 9]", "avgpool([2, 3])", "avgpool1", 2, 4, 3);
	/* torch: AvgPool2d(3, stride=2, padding=1) on [1, 7, 7] -> [1, 4, 4] */
	assert_layer("[1, 7, 7]", "avgpool(3, stride=2, pad=1)", "avgpool1", 1, 4, 4);
}

static void test_pooling_errors(void **state)
{
	(void)state;
	/* torch: "pad should be at most half of kernel size" */
	Compile *c = chain("[1, 5, 5]", "maxpool(2, pad=2)", false);
	assert_int_equal(c->nerrors, 1);
	compile_free(c);
	c = chain("[1, 3, 3]", "avgpool(4)", false);
	assert_int_equal(c->nerrors, 1);
	compile_free(c);
	c = chain("[9]", "maxpool(2)", false);
	assert_int_equal(c->nerrors, 1);
	compile_free(c);
}

static void test_global_avgpool(void **state)
{
	(void)state;
	/* torch: AdaptiveAvgPool2d(1) on [5, 6, 6] -> [5, 1, 1]; ours drops the 1s */
	assert_layer("[5, 6, 6]", "global_avgpool", "global_avgpool1", 5);
	Compile *c = chain("[5]", "global_avgpool", false);
	assert_int_equal(c->nerrors, 1);
	compile_free(c);
}

static void test_upsample(void **state)
{
	(void)state;
	/* torch: Upsample(scale_factor=2) on [3, 5, 7] -> [3, 10, 14] */
	assert_layer("[3, 5, 7]", "upsample", "upsample1", 3, 10, 14);
	assert_layer("[3, 5, 7]", "upsample(2, mode=\"nearest\")", "upsample1", 3, 10, 14);
	/* torch: Upsample(scale_factor=3, mode='bilinear', align_corners=False) -> [3, 15, 21] */
	assert_layer("[3, 5, 7]", "upsample(3, mode=\"bilinear\")", "upsample1", 3, 15, 21);
	/* torch: Upsample(scale_factor=(2, 3)) -> [3, 10, 21] */
	assert_layer("[3, 5, 7]", "upsample(scale=[2, 3])", "upsample1", 3, 10, 21);
	Compile *c = chain("[4]", "upsample", false);
	assert_int_equal(c->nerrors, 1);
	compile_free(c);
}

static void test_flatten(void **state)
{
	(void)state;
	/* torch: Flatten() on [2, 3, 4] -> [24] */
	assert_layer("[2, 3, 4]", "flatten", "flatten1", 24);
	assert_layer("[7]", "flatten", "flatten1", 7);
}

static void test_concat_sums_channels(void **state)
{
	(void)state;
	Compile *c = compile_ok("model m {\n  input a: [2, 4, 4]\n  input b: [3, 4, 4]\n  input f: [3]\n  input g: [5]\n"
				"  y = concat(a, b, a -> conv2d(1, kernel=1))\n  z = concat(f, g)\n  output y, z\n}\n");
	assert_shape(layer_node(c->model->graph, "concat1"), 6, 4, 4);
	assert_shape(layer_node(c->model->graph, "concat2"), 8);
	compile_free(c);
}

static void test_concat_errors(void **state)
{
	(void)state;
	Compile *c = compile_err("model m {\n  input a: [2, 4, 4]\n  input b: [2, 4, 5]\n  input f: [8]\n"
				 "  y = concat(a, b)\n  z = concat(a, f)\n  output y, z\n}\n");
	assert_int_equal(c->nerrors, 2);
	assert_diag_has(c, "<test>:5:7: error:");
	assert_diag_has(c, "<test>:6:7: error:");
	compile_free(c);
}

/* ---- element-wise operators ---- */

static void test_broadcasting(void **state)
{
	(void)state;
	/* torch: zeros(4, 1, 1) + zeros(1, 5, 5) -> [4, 5, 5] */
	Compile *c = compile_ok("model m {\n  input a: [4, 1, 1]\n  input b: [1, 5, 5]\n  input v: [3]\n  input s: [1]\n"
				"  input w: [4, 5, 1]\n"
				"  p = a + b\n  q = v * s\n  r = s + v\n  t = p * w\n  u = a * a\n  output p, q, r, t, u\n}\n");
	const IrGraph *g = c->model->graph;
	assert_shape(layer_node(g, "add1"), 4, 5, 5);
	assert_shape(layer_node(g, "mul1"), 3);
	assert_shape(layer_node(g, "add2"), 3);
	assert_shape(layer_node(g, "mul2"), 4, 5, 5);
	assert_shape(layer_node(g, "mul3"), 4, 1, 1);
	assert_true(layer_node(g, "add1")->batched);
	compile_free(c);
}

static void test_broadcasting_errors(void **state)
{
	(void)state;
	Compile *c = compile_err("model m {\n  input a: [3, 4, 4]\n  input b: [2, 4, 4]\n  input v: [3]\n  input w: [4, 4, 2]\n"
				 "  p = a + b\n"	/* 3 vs 2 channels */
				 "  q = a * v\n"	/* ranks differ */
				 "  r = a + w\n"	/* 4 vs 2 in the last position */
				 "  output a\n}\n");
	assert_int_equal(c->nerrors, 3);
	assert_diag_has(c, "<test>:6:9: error:");
	assert_diag_has(c, "conv2d(3, kernel=1)");	/* the residual hint names the wider side */
	assert_diag_has(c, "<test>:7:9: error:");
	assert_diag_has(c, "<test>:8:9: error:");
	compile_free(c);
}

static void test_loss_and_tensor_do_not_mix(void **state)
{
	(void)state;
	Compile *c = compile_err("model m {\n  input x: [3]\n  target t: [3]\n  l = mse(x, t)\n"
				 "  a = x + l\n  b = l -> relu\n  output x\n  loss l\n}\n");
	assert_int_equal(c->nerrors, 2);
	assert_diag_has(c, "<test>:5:9: error:");
	assert_diag_has(c, "<test>:6:12: error:");
	compile_free(c);
}

static void test_loss_cannot_be_reshaped(void **state)
{
	(void)state;
	/* flatten and concat move a sample's values; a loss has no sample axis */
	Compile *c = compile_err("model m {\n  input x: [3]\n  target t: [3]\n  l = mse(x, t)\n"
				 "  f = l -> flatten\n  k = concat(l, l)\n  output f, k\n  loss l\n}\n");
	assert_int_equal(c->nerrors, 2);
	assert_diag_has(c, "<test>:5:12: error:");
	assert_diag_has(c, "<test>:6:7: error:");
	compile_free(c);
}

/* ---- normalisation and losses ---- */

static void test_batchnorm_rank1_and_rank3(void **state)
{
	(void)state;
	/* torch: BatchNorm1d(7).state_dict(): weight, bias, running_mean, running_var all [7] */
	Compile *c = compile_ok("model m {\n  input f: [7]\n  input i: [5, 4, 4]\n"
				"  a = f -> batchnorm\n  b = i -> batchnorm\n  output a, b\n}\n");
	const IrGraph *g = c->model->graph;
	assert_shape(layer_node(g, "bn1"), 7);
	assert_shape(layer_node(g, "bn2"), 5, 4, 4);
	static const char *const keys[] = { "weight", "bias", "running_mean", "running_var" };
	for (int i = 0; i < 4; i++) {
		char name[64];
		snprintf(name, sizeof name, "bn1.%s", keys[i]);
		assert_shape(state_node(g, name), 7);
		snprintf(name, sizeof name, "bn2.%s", keys[i]);
		assert_shape(state_node(g, name), 5);
	}
	compile_free(c);
}

static void test_loss_shapes(void **state)
{
	(void)state;
	Compile *c = compile_ok("model m {\n  input x: [1, 8, 8]\n  target y: class(4)\n  target mask: [1, 8, 8]\n"
				"  target p: [4]\n"
				"  logits = x -> flatten -> dense(4)\n  seg = x -> conv2d(1, kernel=3, pad=1)\n"
				"  output logits, seg\n"
				"  loss cross_entropy(logits, y) + bce(seg, mask) + mse(seg, mask) + mae(logits, p)"
				" + rmse(logits, p) + cross_entropy(logits, p)\n}\n");
	const IrGraph *g = c->model->graph;
	static const IrOp losses[] = { IR_CROSS_ENTROPY, IR_BCE, IR_MSE, IR_MAE, IR_RMSE };
	int seen = 0;
	for (int i = 0; i < g->nnodes; i++) {
		const IrNode *n = g->nodes[i];
		for (int k = 0; k < 5; k++)
			if (n->op == losses[k]) {
				assert_int_equal(n->shape.rank, 0);
				assert_false(n->batched);
				assert_int_equal(n->dtype, DT_F32);
				seen++;
			}
	}
	assert_int_equal(seen, 6);
	assert_int_equal(g->loss->shape.rank, 0);
	assert_false(g->loss->batched);
	/* a class target is one integer per sample */
	assert_int_equal(g->nodes[1]->dtype, DT_I64);
	assert_int_equal(g->nodes[1]->shape.rank, 0);
	assert_true(g->nodes[1]->batched);
	compile_free(c);
}

static void test_loss_errors(void **state)
{
	(void)state;
	Compile *c = compile_err("model m {\n  input x: [1, 8, 8]\n  target y: class(10)\n  target t: [4]\n"
				 "  l = x -> flatten -> dense(5)\n"
				 "  a = cross_entropy(l, y)\n"		/* 5 scores, 10 classes */
				 "  b = mse(l, t)\n"			/* [5] vs [4] */
				 "  d = bce(l, y)\n"			/* class target */
				 "  e = cross_entropy(x, y)\n"		/* rank-3 logits */
				 "  f = mse(mse(t, t), t)\n"		/* a loss as prediction */
				 "  g = l -> dense(3, name=\"g\") -> relu\n"
				 "  h = y -> relu\n"			/* labels are not floats */
				 "  output l\n}\n");
	assert_int_equal(c->nerrors, 6);
	for (int line = 6; line <= 10; line++) {
		char at[32];
		snprintf(at, sizeof at, "<test>:%d:", line);
		assert_true(diag_count(c, at) >= 1);
	}
	assert_diag_has(c, "dense(10)");
	assert_diag_has(c, "<test>:12:");
	assert_int_equal(diag_count(c, "<test>:11:"), 0);
	compile_free(c);
}

static void test_loss_must_be_a_scalar(void **state)
{
	(void)state;
	Compile *c = compile_err("model m {\n  input x: [3]\n  output x\n  loss x -> relu\n}\n");
	assert_int_equal(c->nerrors, 1);
	assert_diag_has(c, "<test>:4:13: error:");
	compile_free(c);
	c = compile_err("model m {\n  input x: [3]\n  target t: [3]\n  output t\n}\n");
	assert_int_equal(c->nerrors, 1);
	assert_diag_has(c, "'t'");
	compile_free(c);
}

static void test_one_mistake_one_message(void **state)
{
	(void)state;
	/* everything downstream of the bad dense stays quiet; the independent mistake is reported */
	Compile *c = compile_err("model m {\n  input x: [1, 4, 4]\n"
				 "  h = x -> dense(3) -> relu -> dense(2)\n"
				 "  k = h + h\n"
				 "  j = x -> conv2d(2, kernel=9)\n"
				 "  output k, j\n}\n");
	assert_int_equal(c->nerrors, 2);
	assert_diag_has(c, "<test>:3:12: error:");
	assert_diag_has(c, "<test>:5:12: error:");
	compile_free(c);
}

static void test_too_large_tensor(void **state)
{
	(void)state;
	Compile *c = chain("[100000]", "dense(100000)", false);
	assert_int_equal(c->nerrors, 1);
	assert_diag_has(c, "2147483647");
	compile_free(c);
}

static void test_input_too_large(void **state)
{
	(void)state;
	/* each size fits in 31 bits, their product does not: every later count would overflow */
	Compile *c = compile_err("model m {\n  input x: [2147483647, 2147483647, 2147483647]\n"
				 "  y = x -> relu -> flatten\n  output y\n}\n");
	assert_int_equal(c->nerrors, 1);
	assert_diag_has(c, "<test>:2:9: error:");
	compile_free(c);
	c = compile_err("model m {\n  input x: [4]\n  target t: [65536, 32768, 1]\n  output x\n}\n");
	assert_int_equal(c->nerrors, 1);
	assert_diag_has(c, "<test>:3:10: error:");
	compile_free(c);
	/* 2^31 - 1 elements exactly is still fine */
	c = compile_ok("model m {\n  input x: [2147483647, 1, 1]\n  output x\n}\n");
	assert_shape(c->model->graph->nodes[0], 2147483647, 1, 1);
	compile_free(c);
}

static void test_parameter_shapes_pytorch_layout(void **state)
{
	(void)state;
	/* torch: Linear(400, 120).weight [120, 400]; Conv2d(6, 16, 5).weight [16, 6, 5, 5];
	 * ConvTranspose2d(16, 8, 2, stride=2).weight [16, 8, 2, 2]; BatchNorm2d(8).weight [8] */
	Compile *c = compile_ok("model m {\n  input x: [6, 14, 14]\n"
				"  h = x -> conv2d(16, kernel=5) -> conv_transpose2d(8, kernel=2, stride=2) -> batchnorm\n"
				"  d = h -> maxpool(4) -> flatten -> dense(120)\n  output d\n}\n");
	const IrGraph *g = c->model->graph;
	assert_shape(state_node(g, "conv1.weight"), 16, 6, 5, 5);
	assert_shape(state_node(g, "conv1.bias"), 16);
	assert_shape(layer_node(g, "deconv1"), 8, 20, 20);
	assert_shape(state_node(g, "deconv1.weight"), 16, 8, 2, 2);
	assert_shape(state_node(g, "deconv1.bias"), 8);
	assert_shape(state_node(g, "bn1.running_mean"), 8);
	assert_shape(layer_node(g, "flatten1"), 200);
	assert_shape(state_node(g, "dense1.weight"), 120, 200);
	assert_shape(state_node(g, "dense1.bias"), 120);
	for (int i = 0; i < g->nnodes; i++)
		if (ir_is_state(g->nodes[i]))
			assert_false(g->nodes[i]->batched);
	compile_free(c);
}


int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dense_needs_rank1),
		cmocka_unit_test(test_lenet_shapes),
		cmocka_unit_test(test_conv_stride_and_padding),
		cmocka_unit_test(test_conv_non_square_kernel),
		cmocka_unit_test(test_conv_pad_same),
		cmocka_unit_test(test_conv_pad_same_needs_stride_1),
		cmocka_unit_test(test_conv_dilation),
		cmocka_unit_test(test_conv_groups),
		cmocka_unit_test(test_conv_window_larger_than_input),
		cmocka_unit_test(test_conv_needs_an_image),
		cmocka_unit_test(test_conv_transpose),
		cmocka_unit_test(test_conv_transpose_errors),
		cmocka_unit_test(test_pooling_floors),
		cmocka_unit_test(test_pooling_errors),
		cmocka_unit_test(test_global_avgpool),
		cmocka_unit_test(test_upsample),
		cmocka_unit_test(test_flatten),
		cmocka_unit_test(test_concat_sums_channels),
		cmocka_unit_test(test_concat_errors),
		cmocka_unit_test(test_broadcasting),
		cmocka_unit_test(test_broadcasting_errors),
		cmocka_unit_test(test_loss_and_tensor_do_not_mix),
		cmocka_unit_test(test_loss_cannot_be_reshaped),
		cmocka_unit_test(test_batchnorm_rank1_and_rank3),
		cmocka_unit_test(test_loss_shapes),
		cmocka_unit_test(test_loss_errors),
		cmocka_unit_test(test_loss_must_be_a_scalar),
		cmocka_unit_test(test_one_mistake_one_message),
		cmocka_unit_test(test_too_large_tensor),
		cmocka_unit_test(test_input_too_large),
		cmocka_unit_test(test_parameter_shapes_pytorch_layout),
	};
	return cmocka_run_group_tests_name("shape", tests, NULL, NULL);
}
