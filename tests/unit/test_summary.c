/*
 * test_summary.c: the numbers of `nnc check` (compiler/summary.c): parameters,
 * buffers, forward FLOPs and activation bytes, per node and per model,
 * checked against counts worked out by hand, and the printed summary.
 */
#include <stdio.h>
#include <stdlib.h>

#include "support.h"

static Compile *chain(const char *in, const char *chain_src)
{
	char src[1024];
	snprintf(src, sizeof src, "model m {\n  input x: %s\n  y = x -> %s\n  output y\n}\n", in, chain_src);
	return compile_ok(src);
}

static int64_t flops_of(const char *in, const char *chain_src, const char *layer)
{
	Compile *c = chain(in, chain_src);
	const IrNode *n = layer_node(c->model->graph, layer);
	assert_non_null(n);
	int64_t f = summary_node_flops(n);
	compile_free(c);
	return f;
}

static void test_conv_flops_by_hand(void **state)
{
	(void)state;
	/* conv2d(4, kernel=3) on [1, 8, 8]: 4*6*6 outputs, each 9 multiply-adds, plus a bias add */
	assert_int_equal(flops_of("[1, 8, 8]", "conv2d(4, kernel=3)", "conv1"), 2 * 4 * 6 * 6 * 9 + 4 * 36);
	assert_int_equal(flops_of("[1, 8, 8]", "conv2d(4, kernel=3, bias=false)", "conv1"), 2 * 4 * 6 * 6 * 9);
	/* three input channels: 27 multiply-adds per output */
	assert_int_equal(flops_of("[3, 8, 8]", "conv2d(4, kernel=3)", "conv1"), 2 * 144 * 27 + 144);
	/* groups=2 on 4 channels: each output sees 2 channels, 18 multiply-adds */
	assert_int_equal(flops_of("[4, 8, 8]", "conv2d(4, kernel=3, groups=2)", "conv1"), 2 * 144 * 18 + 144);
	/* a 1x1 convolution with stride 2 on [8, 6, 6]: 16*3*3 outputs of 8 multiply-adds */
	assert_int_equal(flops_of("[8, 6, 6]", "conv2d(16, kernel=1, stride=2)", "conv1"), 2 * 144 * 8 + 144);
	/* transposed [4, 5, 5] -> [3, 10, 10], kernel 2: each input pixel scatters into 3*2*2 outputs */
	assert_int_equal(flops_of("[4, 5, 5]", "conv_transpose2d(3, kernel=2, stride=2)", "deconv1"),
			 2 * 100 * 3 * 4 + 300);
}

static void test_other_node_flops(void **state)
{
	(void)state;
	assert_int_equal(flops_of("[10]", "dense(5)", "dense1"), 2 * 10 * 5 + 5);
	assert_int_equal(flops_of("[10]", "dense(5, bias=false)", "dense1"), 2 * 10 * 5);
	/* pooling: one per window element of each output */
	assert_int_equal(flops_of("[4, 8, 8]", "avgpool(2)", "avgpool1"), 4 * 4 * 4 * 4);
	assert_int_equal(flops_of("[4, 8, 8]", "maxpool(3, stride=1)", "maxpool1"), 4 * 6 * 6 * 9);
	assert_int_equal(flops_of("[4, 6, 6]", "global_avgpool", "global_avgpool1"), 144);
	/* batchnorm: scale and shift */
	assert_int_equal(flops_of("[4, 6, 6]", "batchnorm", "bn1"), 2 * 144);
	assert_int_equal(flops_of("[4, 6, 6]", "relu", "relu1"), 144);
	assert_int_equal(flops_of("[10]", "softmax", "softmax1"), 30);
	/* moving data is free */
	assert_int_equal(flops_of("[4, 6, 6]", "flatten", "flatten1"), 0);
	assert_int_equal(flops_of("[4, 6, 6]", "dropout(0.5)", "dropout1"), 0);
	assert_int_equal(flops_of("[4, 6, 6]", "upsample", "upsample1"), 0);
	assert_int_equal(flops_of("[4, 6, 6]", "upsample(mode=\"bilinear\")", "upsample1"), 7 * 4 * 12 * 12);
	/* an input is a source */
	assert_int_equal(flops_of("[4, 6, 6]", "relu", "x"), 0);
}

static void test_node_params(void **state)
{
	(void)state;
	Compile *c = chain("[2, 8, 8]", "conv2d(4, kernel=3) -> batchnorm -> flatten -> dense(3, bias=false)");
	const IrGraph *g = c->model->graph;
	assert_int_equal(summary_node_params(layer_node(g, "conv1")), 4 * 2 * 9 + 4);
	assert_int_equal(summary_node_params(layer_node(g, "bn1")), 8);	/* not the running statistics */
	assert_int_equal(summary_node_params(layer_node(g, "flatten1")), 0);
	assert_int_equal(summary_node_params(layer_node(g, "dense1")), 3 * 144);
	compile_free(c);
}

static void test_small_model_totals(void **state)
{
	(void)state;
	Compile *c = chain("[1, 8, 8]", "conv2d(4, kernel=3) -> relu -> maxpool(2) -> flatten -> dense(3)");
	ModelStats s = summary_stats(c->model->graph);
	/* conv 4*9+4, dense 36*3+3 */
	assert_int_equal(s.params, 40 + 111);
	assert_int_equal(s.buffers, 0);
	/* conv 2736, relu 144, maxpool 36*4, flatten 0, dense 2*36*3+3 */
	assert_int_equal(s.flops, 2736 + 144 + 144 + 0 + 219);
	/* x 64, conv 144, relu 144, maxpool 36, flatten 36, dense 3 floats */
	assert_int_equal(s.act_bytes, 4 * (64 + 144 + 144 + 36 + 36 + 3));
	assert_int_equal(s.layers, 6);
	compile_free(c);
}

static void test_batchnorm_buffers_and_losses(void **state)
{
	(void)state;
	Compile *c = compile_ok("model m {\n  input x: [3, 4, 4]\n  target y: class(2)\n"
				"  h = x -> batchnorm -> flatten -> dense(2) -> batchnorm\n"
				"  output h\n  loss 0.5 * cross_entropy(h, y)\n}\n");
	ModelStats s = summary_stats(c->model->graph);
	/* bn1 3+3, dense 48*2+2, bn2 2+2 */
	assert_int_equal(s.params, 6 + 98 + 4);
	assert_int_equal(s.buffers, 6 + 4);
	/* rows: x, bn1, flatten1, dense1, bn2; the target and the loss are not rows */
	assert_int_equal(s.layers, 5);
	assert_int_equal(s.flops, 2 * 48 + 0 + (2 * 48 * 2 + 2) + 2 * 2);
	/* a loss node still has a count of its own: 3 per prediction element */
	assert_int_equal(summary_node_flops(c->model->graph->loss->in[0]), 3 * 2);
	compile_free(c);
}

typedef struct Example {
	const char *file;
	int64_t params, buffers, flops;
} Example;

static void test_examples(void **state)
{
	(void)state;
	/* parameter counts as PyTorch counts them; FLOPs worked out by hand for mlp and lenet:
	 * mlp   784*256*2+256 + 256 + 256*128*2+128 + 128 + 128*10*2+10
	 * lenet conv 239904 + relu 4704 + pool 4704 + conv 481600 + relu 1600 + pool 1600
	 *       + dense 96120 + 120 + dense 20244 + 84 + dense 1690 */
	static const Example ex[] = {
		{ "examples/mlp.nn", 235146, 0, 470282 },
		{ "examples/lenet.nn", 61706, 0, 852370 },
		{ "examples/resnet_mini.nn", 11274, 448, -1 },
		{ "examples/unet_tiny.nn", 14505, 0, -1 },
	};
	for (int i = 0; i < 4; i++) {
		Compile *c = compile_file(ex[i].file, NULL);
		if (c->nerrors)
			fail_msg("%s: %s", ex[i].file, c->diag.text);
		ModelStats s = summary_stats(c->model->graph);
		assert_int_equal(s.params, ex[i].params);
		assert_int_equal(s.buffers, ex[i].buffers);
		if (ex[i].flops >= 0)
			assert_int_equal(s.flops, ex[i].flops);
		compile_free(c);
	}
}

static char *print_summary(const Compile *c, bool params)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	assert_non_null(f);
	if (params)
		summary_print_params(f, c->model->graph);
	else
		summary_print(f, c->model, "file.nn");
	fclose(f);
	return text;
}

#define assert_text_has(text, want)                                                    \
	do {                                                                           \
		if (!strstr((text), (want)))                                           \
			fail_msg("missing \"%s\" in:\n%s", (want), (text));           \
	} while (0)

static void test_printed_summary(void **state)
{
	(void)state;
	Compile *c = compile_file("examples/resnet_mini.nn", NULL);
	assert_int_equal(c->nerrors, 0);
	char *t = print_summary(c, false);
	assert_text_has(t, "Model \"resnet_mini\" (file.nn)\n");
	assert_text_has(t, "Parameters:      11,274 ");
	assert_text_has(t, "Buffers:         448 ");
	assert_text_has(t, "Output:          logits [10]\n");
	assert_text_has(t, "bottleneck3.conv2 (conv2d)");
	assert_text_has(t, "[16, 28, 28]");
	assert_text_has(t, "Training:        adam(lr=0.001, beta1=0.9, beta2=0.999, eps=1e-08), batch 64, 1 epoch, seed 1\n");
	assert_text_has(t, "Data:            /usr/share/datasets/fashion-mnist\n");
	free(t);
	compile_free(c);

	c = chain("[10]", "dense(5)");
	t = print_summary(c, false);
	assert_text_has(t, "Parameters:      55 ");
	assert_text_has(t, "dense1 (dense)");
	assert_true(strstr(t, "Buffers:") == NULL);	/* no batchnorm, no line */
	assert_text_has(t, "(defaults: the file has no train section)");
	assert_text_has(t, "Forward FLOPs:   105 per sample");
	free(t);
	compile_free(c);
}

static void test_printed_train_settings(void **state)
{
	(void)state;
	Compile *c = compile_ok("model m {\n  input x: [4]\n  y = x -> dense(2)\n  output y\n}\n"
				"train {\n  optimizer = sgd(lr=0.1, momentum=0.9, nesterov=true)\n  epochs = 3\n"
				"  l2 = 0.0001\n  schedule = step(every=2, gamma=0.5)\n}\n");
	char *t = print_summary(c, false);
	assert_text_has(t, "sgd(lr=0.1, momentum=0.9, nesterov=true), batch 64, 3 epochs, seed 1, l1=0, l2=0.0001, "
			   "schedule step(every=2, gamma=0.5)\n");
	free(t);
	compile_free(c);
}

static void test_printed_params(void **state)
{
	(void)state;
	Compile *c = chain("[2, 8, 8]", "conv2d(4, kernel=3, bias=false) -> batchnorm");
	char *t = print_summary(c, true);
	assert_string_equal(t, "conv1.weight [4, 2, 3, 3] param\n"
			       "bn1.weight [4] param\n"
			       "bn1.bias [4] param\n"
			       "bn1.running_mean [4] buffer\n"
			       "bn1.running_var [4] buffer\n");
	free(t);
	compile_free(c);
}

static void test_big_numbers_get_commas(void **state)
{
	(void)state;
	/* 1000*1000 + 1000 = 1,001,000 parameters */
	Compile *c = chain("[1000]", "dense(1000)");
	char *t = print_summary(c, false);
	assert_text_has(t, "Parameters:      1,001,000 ");
	assert_text_has(t, "2,001,000");	/* FLOPs of the dense row */
	free(t);
	compile_free(c);
}

static void test_huge_counts_saturate(void **state)
{
	(void)state;
	/* each convolution: 46340^2 outputs, each 46340^2 multiply-adds (just under 2^63 FLOPs);
	 * two of them do not fit in 64 bits, and the total must not wrap around to a negative */
	Compile *c = compile_ok("model m {\n  input x: [1, 1, 1]\n"
				"  y = x -> conv2d(1, kernel=46340, pad=46339)\n"
				"  z = x -> conv2d(1, kernel=46340, pad=46339)\n  output y, z\n}\n");
	const int64_t k = INT64_C(46340) * 46340;
	assert_int_equal(summary_node_flops(layer_node(c->model->graph, "conv1")), 2 * k * k + k);
	ModelStats s = summary_stats(c->model->graph);
	assert_int_equal(s.flops, INT64_MAX);
	assert_int_equal(s.params, 2 * (k + 1));
	compile_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_conv_flops_by_hand),
		cmocka_unit_test(test_other_node_flops),
		cmocka_unit_test(test_node_params),
		cmocka_unit_test(test_small_model_totals),
		cmocka_unit_test(test_batchnorm_buffers_and_losses),
		cmocka_unit_test(test_examples),
		cmocka_unit_test(test_printed_summary),
		cmocka_unit_test(test_printed_train_settings),
		cmocka_unit_test(test_printed_params),
		cmocka_unit_test(test_big_numbers_get_commas),
		cmocka_unit_test(test_huge_counts_saturate),
	};
	return cmocka_run_group_tests_name("summary", tests, NULL, NULL);
}
