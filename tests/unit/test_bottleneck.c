/*
 * test_bottleneck.c: -fbottleneck (compiler/passes/bottleneck.c): which
 * convolutions it rewrites, the names, shapes and wiring of the three that
 * replace one, the savings measured on the rewritten graph, and that every
 * graph made from the rewritten model verifies.
 */
#include <stdio.h>
#include <stdlib.h>

#include "support.h"

/* the model's graph after -fbottleneck=r, compiled as far as upto */
static Compile *rewrite(const char *src, int r, CompileUpto upto)
{
	CompileOpts o = { .bottleneck = r, .upto = upto };
	Compile *c = compile_string_opts(src, &o);
	if (c->nerrors)
		fail_msg("expected no errors, got:\n%s", c->diag.text ? c->diag.text : "");
	return c;
}

static const char wide[] = "model m {\n  input x: [256, 14, 14]\n"
			   "  y = x -> conv2d(256, kernel=3, pad=1)\n  output y\n}\n";

static void test_ratio_256_is_between_8_and_9(void **state)
{
	(void)state;
	Compile *before = compile_ok(wide), *after = rewrite(wide, 4, UPTO_CHECK);
	ModelStats sb = summary_stats(before->model->graph), sa = summary_stats(after->model->graph);
	/* 256*64 + 64*64*9 + 64*256 weights and the 256 biases, against 256*256*9 + 256 */
	assert_int_equal(sb.params, 589824 + 256);
	assert_int_equal(sa.params, 256 * 64 + 64 * 64 * 9 + 64 * 256 + 256);
	double pr = (double)sb.params / (double)sa.params, fr = (double)sb.flops / (double)sa.flops;
	assert_true(pr > 8 && pr < 9);
	assert_true(fr > 8 && fr < 9);
	/* the log's per-layer numbers agree with the graphs' */
	const PassBottleneckLog *log = &after->bottleneck;
	assert_int_equal(log->n, 1);
	assert_int_equal(summary_node_params(log->convs[0].orig), sb.params);
	assert_int_equal(summary_stats(&log->before).params, sb.params);
	assert_int_equal(summary_stats(&log->before).flops, sb.flops);
	compile_free(before);
	compile_free(after);
}

static void test_names_shapes_and_wiring(void **state)
{
	(void)state;
	Compile *c = rewrite(wide, 4, UPTO_CHECK);
	const IrGraph *g = c->model->graph;
	assert_null(state_node(g, "conv1.weight"));
	assert_null(state_node(g, "conv1.bias"));
	assert_null(state_node(g, "conv1.reduce.bias"));
	assert_null(state_node(g, "conv1.conv.bias"));
	assert_shape(state_node(g, "conv1.reduce.weight"), 64, 256, 1, 1);
	assert_shape(state_node(g, "conv1.conv.weight"), 64, 64, 3, 3);
	assert_shape(state_node(g, "conv1.expand.weight"), 256, 64, 1, 1);
	assert_shape(state_node(g, "conv1.expand.bias"), 256);
	IrNode *r = layer_node(g, "conv1.reduce"), *k = layer_node(g, "conv1.conv"), *e = layer_node(g, "conv1.expand");
	assert_shape(r, 64, 14, 14);
	assert_shape(k, 64, 14, 14);
	assert_shape(e, 256, 14, 14);
	assert_int_equal(r->nin, 2);
	assert_int_equal(k->nin, 2);
	assert_int_equal(e->nin, 3);
	assert_ptr_equal(r->in[0], g->nodes[0]);
	assert_ptr_equal(k->in[0], r);
	assert_ptr_equal(e->in[0], k);
	assert_ptr_equal(g->outputs[0], e);
	assert_int_equal(k->a.pad[0], 1);
	assert_int_equal(r->a.kernel[0], 1);
	assert_int_equal(r->a.pad[0], 0);
	compile_free(c);
}

/* stride, dilation and padding stay on the KxK; a 1x1 has none */
static void test_keeps_geometry(void **state)
{
	(void)state;
	Compile *c = rewrite("model m {\n  input x: [32, 20, 20]\n"
			     "  y = x -> conv2d(48, kernel=[3, 5], stride=2, dilation=2, pad=[2, 4], bias=false)\n"
			     "  output y\n}\n",
			     4, UPTO_CHECK);
	const IrGraph *g = c->model->graph;
	IrNode *k = layer_node(g, "conv1.conv"), *e = layer_node(g, "conv1.expand");
	assert_shape(k, 8, 10, 10);
	assert_int_equal(k->a.kernel[0], 3);
	assert_int_equal(k->a.kernel[1], 5);
	assert_int_equal(k->a.stride[1], 2);
	assert_int_equal(k->a.dilation[0], 2);
	assert_int_equal(k->a.pad[2], 4);
	assert_shape(e, 48, 10, 10);
	assert_int_equal(e->nin, 2);	/* bias=false stays false */
	assert_null(state_node(g, "conv1.expand.bias"));
	compile_free(c);
}

/* at R = 4 a convolution needs 16 input and 16 output channels, groups 1, and K >= 3 both ways */
static void test_which_convolutions(void **state)
{
	(void)state;
	Compile *c = rewrite("model m {\n  input x: [16, 12, 12]\n"
			     "  a = x -> conv2d(16, kernel=3, pad=1)\n"		/* conv1: yes, exactly 4R */
			     "  b = a -> conv2d(15, kernel=3, pad=1)\n"		/* conv2: 15 filters */
			     "  c = b -> conv2d(16, kernel=3, pad=1)\n"		/* conv3: 15 inputs */
			     "  d = c -> conv2d(16, kernel=1)\n"			/* conv4: 1x1 */
			     "  e = d -> conv2d(16, kernel=[1, 3], pad=[0, 1])\n"	/* conv5: 1x3 */
			     "  f = e -> conv2d(16, kernel=3, pad=1, groups=2)\n"	/* conv6: grouped */
			     "  g = f -> conv_transpose2d(16, kernel=3)\n"		/* deconv1: not conv2d */
			     "  h = g -> conv2d(16, kernel=3)\n"			/* conv7: yes */
			     "  output h\n}\n",
			     4, UPTO_CHECK);
	const IrGraph *g = c->model->graph;
	assert_int_equal(c->bottleneck.n, 2);
	assert_non_null(layer_node(g, "conv1.conv"));
	assert_non_null(layer_node(g, "conv7.conv"));
	const char *kept[] = { "conv2", "conv3", "conv4", "conv5", "conv6", "deconv1" };
	for (size_t i = 0; i < sizeof kept / sizeof kept[0]; i++) {
		char name[32];
		snprintf(name, sizeof name, "%s.weight", kept[i]);
		assert_non_null(layer_node(g, kept[i]));
		assert_non_null(state_node(g, name));
	}
	/* R = 100 asks for 400 channels: nothing qualifies, the graph stays as written */
	Compile *none = rewrite(wide, 100, UPTO_CHECK);
	assert_int_equal(none->bottleneck.n, 0);
	assert_non_null(state_node(none->model->graph, "conv1.weight"));
	compile_free(none);
	compile_free(c);
}

/* two rewritten convolutions in a row: the second reads the first's expand */
static void test_chain_and_verified_graphs(void **state)
{
	(void)state;
	const char *src = "model m {\n  input x: [1, 8, 8]\n  target t: class(3)\n"
			  "  h = x -> conv2d(8, kernel=3, pad=1) -> conv2d(8, kernel=3, pad=1) -> relu\n"
			  "  y = h -> flatten -> dense(3)\n  output y\n  loss cross_entropy(y, t)\n}\n";
	Compile *c = rewrite(src, 2, UPTO_LOOPS);
	assert_non_null(c->loops);
	assert_non_null(c->train);
	assert_int_equal(c->bottleneck.n, 1);	/* conv1 has one input channel */
	Compile *d = rewrite("model m {\n  input x: [8, 8, 8]\n  target t: class(3)\n"
			     "  h = x -> conv2d(8, kernel=3, pad=1) -> conv2d(8, kernel=3, pad=1) -> relu\n"
			     "  y = h -> flatten -> dense(3)\n  output y\n  loss cross_entropy(y, t)\n}\n",
			     2, UPTO_LOOPS);
	const IrGraph *g = d->model->graph;
	assert_int_equal(d->bottleneck.n, 2);
	assert_ptr_equal(layer_node(g, "conv2.reduce")->in[0], layer_node(g, "conv1.expand"));
	char buf[256];
	assert_null(ir_verify(g, buf, sizeof buf));
	assert_null(ir_verify(d->infer, buf, sizeof buf));
	assert_null(ir_verify(d->train, buf, sizeof buf));
	/* ids are the positions, parameters come before their layer */
	for (int i = 0; i < g->nnodes; i++) {
		assert_int_equal(g->nodes[i]->id, i);
		for (int k = 0; k < g->nodes[i]->nin; k++)
			assert_true(g->nodes[i]->in[k]->id < i);
	}
	compile_free(c);
	compile_free(d);
}

/* the printed table: each layer's numbers and the model's totals */
static void test_printed_table(void **state)
{
	(void)state;
	Compile *c = rewrite(wide, 4, UPTO_CHECK);
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	summary_print_bottleneck(f, &c->bottleneck, c->model->graph);
	fclose(f);
	assert_non_null(strstr(text, "Bottleneck rewrite (-fbottleneck=4): 1 convolution rewritten"));
	assert_non_null(strstr(text, "3x3 256->64->256"));
	assert_non_null(strstr(text, "590,080"));
	assert_non_null(strstr(text, "69,888"));
	assert_non_null(strstr(text, "8.44x"));
	free(text);
	compile_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ratio_256_is_between_8_and_9),
		cmocka_unit_test(test_names_shapes_and_wiring),
		cmocka_unit_test(test_keeps_geometry),
		cmocka_unit_test(test_which_convolutions),
		cmocka_unit_test(test_chain_and_verified_graphs),
		cmocka_unit_test(test_printed_table),
	};
	return cmocka_run_group_tests_name("bottleneck", tests, NULL, NULL);
}
