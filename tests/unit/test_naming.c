/*
 * test_naming.c: layer and parameter names (compiler/elab.c, "Naming"):
 * a counter per kind in source order, block instance prefixes, name=
 * overrides, and the PyTorch state_dict keys of parameters and buffers.
 */
#include "support.h"

/* the layer names of the graph's non-state nodes, in order, joined by spaces */
static const char *layers(const IrGraph *g, char *buf, size_t n)
{
	size_t k = 0;
	buf[0] = 0;
	for (int i = 0; i < g->nnodes && k < n; i++) {
		const IrNode *x = g->nodes[i];
		if (!ir_is_state(x) && x->layer)
			k += (size_t)snprintf(buf + k, n - k, "%s%s", k ? " " : "", x->layer);
	}
	return buf;
}

/* the state names of the graph, in order, joined by spaces */
static const char *states(const IrGraph *g, char *buf, size_t n)
{
	size_t k = 0;
	buf[0] = 0;
	for (int i = 0; i < g->nnodes && k < n; i++) {
		const IrNode *x = g->nodes[i];
		if (ir_is_state(x))
			k += (size_t)snprintf(buf + k, n - k, "%s%s", k ? " " : "", x->name);
	}
	return buf;
}

static void test_counters_per_kind_in_source_order(void **state)
{
	(void)state;
	Compile *c = compile_ok("model m {\n  input x: [1, 16, 16]\n"
				"  a = x -> conv2d(4, kernel=3, pad=1) -> batchnorm -> relu\n"
				"  b = a -> conv2d(4, kernel=3, pad=1) -> batchnorm -> relu\n"
				"  u = b -> conv_transpose2d(2, kernel=2, stride=2) -> maxpool(2) -> relu\n"
				"  d = u -> flatten -> dense(8) -> dropout(0.1) -> dense(3)\n"
				"  output d\n}\n");
	char buf[1024];
	assert_string_equal(layers(c->model->graph, buf, sizeof buf),
			    "x conv1 bn1 relu1 conv2 bn2 relu2 deconv1 maxpool1 relu3 flatten1 dense1 dropout1 dense2");
	compile_free(c);
}

static void test_counters_follow_evaluation_order(void **state)
{
	(void)state;
	/* in concat(a -> dense, b -> dense) the first argument is made first */
	Compile *c = compile_ok("model m {\n  input x: [4]\n"
				"  y = concat(x -> dense(2), x -> dense(3)) -> dense(1)\n"
				"  output y\n}\n");
	const IrGraph *g = c->model->graph;
	assert_int_equal(layer_node(g, "dense1")->a.units, 2);
	assert_int_equal(layer_node(g, "dense2")->a.units, 3);
	assert_int_equal(layer_node(g, "dense3")->a.units, 1);
	compile_free(c);
}

static void test_operators_are_named_too(void **state)
{
	(void)state;
	Compile *c = compile_ok("model m {\n  input x: [4]\n  target t: [4]\n"
				"  a = x + x\n  b = a * x\n  c = a + b\n  output c\n"
				"  loss 2 * mse(c, t) + mae(c, t)\n}\n");
	char buf[1024];
	assert_string_equal(layers(c->model->graph, buf, sizeof buf),
			    "x t add1 mul1 add2 mse1 scale1 mae1 add3");
	compile_free(c);
}

static void test_block_instance_prefix(void **state)
{
	(void)state;
	Compile *c = compile_ok("block bottleneck(x, mid, out) {\n"
				"  h = x -> conv2d(mid, kernel=1) -> batchnorm -> relu\n"
				"  h = h -> conv2d(out, kernel=1) -> batchnorm\n"
				"  return relu(h + x)\n"
				"}\n"
				"model m {\n  input x: [8, 4, 4]\n"
				"  h = x -> conv2d(8, kernel=1)\n"
				"  repeat 2 { h = h -> bottleneck(4, 8) }\n"
				"  h = h -> conv2d(8, kernel=1)\n"
				"  output h\n}\n");
	const IrGraph *g = c->model->graph;
	char buf[1024];
	assert_string_equal(layers(g, buf, sizeof buf),
			    "x conv1 "
			    "bottleneck1.conv1 bottleneck1.bn1 bottleneck1.relu1 bottleneck1.conv2 bottleneck1.bn2 "
			    "bottleneck1.add1 bottleneck1.relu2 "
			    "bottleneck2.conv1 bottleneck2.bn1 bottleneck2.relu1 bottleneck2.conv2 bottleneck2.bn2 "
			    "bottleneck2.add1 bottleneck2.relu2 "
			    "conv2");	/* the counter outside the block goes on from conv1 */
	assert_non_null(state_node(g, "bottleneck2.conv1.weight"));
	assert_non_null(state_node(g, "bottleneck2.bn2.running_var"));
	compile_free(c);
}

static void test_nested_block_prefixes(void **state)
{
	(void)state;
	Compile *c = compile_ok("block leaf(x) {\n  return x -> dense(4)\n}\n"
				"block mid(x) {\n  return x -> leaf -> dense(4) -> leaf\n}\n"
				"block top(x) {\n  return x -> mid -> leaf\n}\n"
				"model m {\n  input x: [4]\n  y = x -> top -> mid\n  output y\n}\n");
	char buf[1024];
	assert_string_equal(layers(c->model->graph, buf, sizeof buf),
			    "x top1.mid1.leaf1.dense1 top1.mid1.dense1 top1.mid1.leaf2.dense1 top1.leaf1.dense1 "
			    "mid1.leaf1.dense1 mid1.dense1 mid1.leaf2.dense1");
	assert_non_null(state_node(c->model->graph, "top1.mid1.leaf2.dense1.bias"));
	compile_free(c);
}

static void test_name_override(void **state)
{
	(void)state;
	Compile *c = compile_ok("block b(x) {\n  return x -> dense(4, name=\"proj\")\n}\n"
				"model m {\n  input x: [4]\n"
				"  y = x -> dense(4, name=\"stem\") -> batchnorm(name=\"norm\") -> dense(4) -> b -> b\n"
				"  output y\n}\n");
	const IrGraph *g = c->model->graph;
	char buf[1024];
	/* a named layer does not use up a number: the next dense is dense1 */
	assert_string_equal(layers(g, buf, sizeof buf), "x stem norm dense1 b1.proj b2.proj");
	assert_string_equal(states(g, buf, sizeof buf),
			    "stem.weight stem.bias norm.weight norm.bias norm.running_mean norm.running_var "
			    "dense1.weight dense1.bias b1.proj.weight b1.proj.bias b2.proj.weight b2.proj.bias");
	compile_free(c);
}

static void test_duplicate_name_is_an_error(void **state)
{
	(void)state;
	Compile *c = compile_err("model m {\n  input x: [4]\n"
				 "  a = x -> dense(4, name=\"fc\")\n"
				 "  b = a -> dense(4, name=\"fc\")\n"
				 "  output b\n}\n");
	assert_int_equal(c->nerrors, 1);
	assert_diag_has(c, "<test>:4:12: error:");
	assert_diag_has(c, "'fc'");
	assert_diag_has(c, "<test>:3:12: note:");
	compile_free(c);

	/* a given name may not take an automatic one either */
	c = compile_err("model m {\n  input x: [4]\n"
			"  a = x -> dense(4, name=\"dense2\") -> dense(4) -> dense(4)\n"
			"  output a\n}\n");
	assert_int_equal(c->nerrors, 1);
	assert_diag_has(c, "'dense2'");
	compile_free(c);

	/* nor the name of an input */
	c = compile_err("model m {\n  input x: [4]\n  a = x -> dense(4, name=\"x\")\n  output a\n}\n");
	assert_int_equal(c->nerrors, 1);
	assert_diag_has(c, "<test>:3:12: error:");
	compile_free(c);
}

static void test_same_name_in_different_models_is_fine(void **state)
{
	(void)state;
	Compile *c = compile_ok("model a {\n  input x: [4]\n  y = x -> dense(2, name=\"fc\") -> dense(5)\n  output y\n}\n"
				"model b {\n  input x: [4]\n  y = x -> dense(3, name=\"fc\") -> dense(6)\n  output y\n}\n");
	const IrGraph *a = c->prog->models[0]->graph, *b = c->prog->models[1]->graph;
	assert_non_null(state_node(a, "fc.weight"));
	assert_non_null(state_node(b, "fc.weight"));
	/* and each model counts from 1 */
	assert_int_equal(layer_node(a, "dense1")->a.units, 5);
	assert_int_equal(layer_node(b, "dense1")->a.units, 6);
	compile_free(c);
}

static void test_bad_layer_name(void **state)
{
	(void)state;
	Compile *c = compile_err("model m {\n  input x: [4]\n"
				 "  a = x -> dense(4, name=\"a.b\")\n"
				 "  b = x -> dense(4, name=\"\")\n"	/* empty: the automatic name */
				 "  d = x -> dense(4, name=3)\n"
				 "  output a\n}\n");
	assert_int_equal(c->nerrors, 2);
	assert_diag_has(c, "<test>:3:12: error:");
	assert_diag_has(c, "<test>:5:26: error:");
	compile_free(c);
}

static void test_parameter_names_and_kinds(void **state)
{
	(void)state;
	Compile *c = compile_ok("model m {\n  input x: [2, 8, 8]\n"
				"  h = x -> conv2d(4, kernel=3, bias=false) -> batchnorm -> conv_transpose2d(2, kernel=2, bias=false)\n"
				"  d = h -> flatten -> dense(3) -> batchnorm -> dense(2, bias=false)\n"
				"  output d\n}\n");
	const IrGraph *g = c->model->graph;
	char buf[1024];
	assert_string_equal(states(g, buf, sizeof buf),
			    "conv1.weight bn1.weight bn1.bias bn1.running_mean bn1.running_var deconv1.weight "
			    "dense1.weight dense1.bias bn2.weight bn2.bias bn2.running_mean bn2.running_var dense2.weight");
	assert_int_equal(state_node(g, "bn1.weight")->op, IR_PARAM);
	assert_int_equal(state_node(g, "bn1.bias")->op, IR_PARAM);
	assert_int_equal(state_node(g, "bn1.running_mean")->op, IR_BUFFER);
	assert_int_equal(state_node(g, "bn1.running_var")->op, IR_BUFFER);
	/* bias=false leaves the layer without a bias input */
	const IrNode *conv = layer_node(g, "conv1");
	assert_int_equal(conv->nin, 2);
	assert_int_equal(conv->a.bias, 0);
	assert_ptr_equal(conv->in[1], state_node(g, "conv1.weight"));
	assert_null(state_node(g, "conv1.bias"));
	assert_null(state_node(g, "dense2.bias"));
	const IrNode *d1 = layer_node(g, "dense1");
	assert_int_equal(d1->nin, 3);
	assert_int_equal(d1->a.bias, 1);
	assert_ptr_equal(d1->in[2], state_node(g, "dense1.bias"));
	/* every state node belongs to its layer, is unbatched, and comes right before it */
	const IrNode *bn = layer_node(g, "bn1");
	for (int i = 1; i < 5; i++) {
		assert_string_equal(bn->in[i]->layer, "bn1");
		assert_false(bn->in[i]->batched);
		assert_true(bn->in[i]->id < bn->id);
	}
	compile_free(c);
}

static void test_inputs_and_targets_keep_their_names(void **state)
{
	(void)state;
	Compile *c = compile_ok("model m {\n  input image: [4]\n  target label: class(4)\n"
				"  p = image -> dense(4)\n  output p\n  loss cross_entropy(p, label)\n}\n");
	const IrGraph *g = c->model->graph;
	assert_string_equal(g->nodes[0]->name, "image");
	assert_string_equal(g->nodes[0]->layer, "image");
	assert_int_equal(g->nodes[0]->op, IR_INPUT);
	assert_string_equal(g->nodes[1]->name, "label");
	assert_int_equal(g->nodes[1]->op, IR_TARGET);
	assert_string_equal(g->output_names[0], "p");
	assert_string_equal(g->loss->layer, "cross_entropy1");
	compile_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_counters_per_kind_in_source_order),
		cmocka_unit_test(test_counters_follow_evaluation_order),
		cmocka_unit_test(test_operators_are_named_too),
		cmocka_unit_test(test_block_instance_prefix),
		cmocka_unit_test(test_nested_block_prefixes),
		cmocka_unit_test(test_name_override),
		cmocka_unit_test(test_duplicate_name_is_an_error),
		cmocka_unit_test(test_same_name_in_different_models_is_fine),
		cmocka_unit_test(test_bad_layer_name),
		cmocka_unit_test(test_parameter_names_and_kinds),
		cmocka_unit_test(test_inputs_and_targets_keep_their_names),
	};
	return cmocka_run_group_tests_name("naming", tests, NULL, NULL);
}
