/*
 * test_elab.c: elaboration (compiler/elab.c): blocks expanded with their
 * defaults, repeat unrolled, names bound and shadowed, operators turned into
 * IR nodes, layer arguments checked, train settings resolved, and the model
 * picked by CompileOpts.model.
 */
#include "support.h"

/* the only node with this op; fails if there are none or several */
static IrNode *only(const IrGraph *g, IrOp op)
{
	IrNode *found = NULL;
	for (int i = 0; i < g->nnodes; i++)
		if (g->nodes[i]->op == op) {
			if (found)
				fail_msg("more than one %s node", ir_op_name(op));
			found = g->nodes[i];
		}
	if (!found)
		fail_msg("no %s node", ir_op_name(op));
	return found;
}

static int count_op(const IrGraph *g, IrOp op)
{
	int n = 0;
	for (int i = 0; i < g->nnodes; i++)
		n += g->nodes[i]->op == op;
	return n;
}

static const IrNode *output_named(const IrGraph *g, const char *name)
{
	for (int i = 0; i < g->noutputs; i++)
		if (!strcmp(g->output_names[i], name))
			return g->outputs[i];
	fail_msg("no output '%s'", name);
	return NULL;
}

/* ---- blocks ---- */

static const char *const conv_block =
	"block cbr(x, c, k=3) {\n"
	"  h = x -> conv2d(c, kernel=k, pad=1) -> relu\n"
	"  return h\n"
	"}\n";

static void test_block_expansion(void **state)
{
	(void)state;
	char src[1024];
	snprintf(src, sizeof src, "%s"
		 "model m {\n"
		 "  input x: [3, 8, 8]\n"
		 "  h = x -> cbr(4) -> cbr(c=6)\n"
		 "  output h\n"
		 "}\n", conv_block);
	Compile *c = compile_ok(src);
	const IrGraph *g = c->model->graph;
	IrNode *c1 = layer_node(g, "cbr1.conv1"), *r1 = layer_node(g, "cbr1.relu1");
	IrNode *c2 = layer_node(g, "cbr2.conv1"), *r2 = layer_node(g, "cbr2.relu1");
	assert_non_null(c1);
	assert_non_null(r1);
	assert_non_null(c2);
	assert_non_null(r2);
	assert_int_equal(c1->op, IR_CONV2D);
	assert_ptr_equal(c1->in[0], only(g, IR_INPUT));
	assert_ptr_equal(r1->in[0], c1);
	assert_ptr_equal(c2->in[0], r1);	/* the second instance reads the first's result */
	assert_int_equal(c1->a.units, 4);
	assert_int_equal(c2->a.units, 6);
	assert_int_equal(c1->a.kernel[0], 3);	/* the default k */
	assert_ptr_equal(output_named(g, "h"), r2);
	assert_int_equal(count_op(g, IR_CONV2D), 2);
	/* a layer made inside a block points at its call in the block's body */
	assert_int_equal(c1->loc.line, 2);
	assert_int_equal(c1->loc.col, 12);
	compile_free(c);
}

static void test_block_defaults_see_earlier_parameters(void **state)
{
	(void)state;
	Compile *c = compile_ok("block wide(x, c, out=c * 2, last=out + 1) {\n"
				"  return x -> dense(out) -> dense(last)\n"
				"}\n"
				"model m {\n"
				"  input x: [4]\n"
				"  a = x -> wide(3)\n"
				"  b = x -> wide(3, out=5)\n"
				"  d = wide(x, 1, 2, 7)\n"
				"  output a, b, d\n"
				"}\n");
	const IrGraph *g = c->model->graph;
	assert_int_equal(layer_node(g, "wide1.dense1")->a.units, 6);
	assert_int_equal(layer_node(g, "wide1.dense2")->a.units, 7);
	assert_int_equal(layer_node(g, "wide2.dense1")->a.units, 5);
	assert_int_equal(layer_node(g, "wide2.dense2")->a.units, 6);
	assert_int_equal(layer_node(g, "wide3.dense1")->a.units, 2);
	assert_int_equal(layer_node(g, "wide3.dense2")->a.units, 7);
	compile_free(c);
}

static void test_block_default_cannot_see_later_parameter(void **state)
{
	(void)state;
	Compile *c = compile_err("block b(x, out=c, c=2) {\n  return x -> dense(out)\n}\n"
				 "model m {\n  input x: [4]\n  y = x -> b\n  output y\n}\n");
	assert_int_equal(c->nerrors, 1);
	assert_string_equal(c->failed_stage, "elaborate");
	assert_diag_has(c, "<test>:1:16: error:");
	assert_diag_has(c, "'c'");
	compile_free(c);
}

static void test_nested_blocks(void **state)
{
	(void)state;
	Compile *c = compile_ok("block inner(x) {\n  return x -> dense(4) -> relu\n}\n"
				"block outer(x) {\n  h = x -> inner -> inner\n  return h + x\n}\n"
				"model m {\n  input x: [4]\n  y = x -> outer -> outer\n  output y\n}\n");
	const IrGraph *g = c->model->graph;
	static const char *const names[] = { "outer1.inner1.dense1", "outer1.inner2.dense1", "outer2.inner1.dense1",
					     "outer2.inner2.dense1" };
	for (int i = 0; i < 4; i++)
		assert_non_null(layer_node(g, names[i]));
	assert_int_equal(count_op(g, IR_DENSE), 4);
	IrNode *add = layer_node(g, "outer1.add1");
	assert_non_null(add);
	assert_int_equal(add->op, IR_ADD);
	assert_ptr_equal(add->in[0], layer_node(g, "outer1.inner2.relu1"));
	assert_ptr_equal(add->in[1], only(g, IR_INPUT));
	assert_ptr_equal(layer_node(g, "outer2.inner1.dense1")->in[0], add);
	compile_free(c);
}

static void test_recursion_is_an_error(void **state)
{
	(void)state;
	Compile *c = compile_err("block a(x) {\n  return x -> b\n}\n"
				 "block b(x) {\n  return x -> a\n}\n"
				 "model m {\n  input x: [4]\n  y = x -> a\n  output y\n}\n");
	assert_int_equal(c->nerrors, 1);
	assert_diag_has(c, "<test>:5:15: error:");	/* where b calls a again */
	assert_diag_has(c, "a -> b -> a");
	compile_free(c);

	c = compile_err("block self(x) {\n  return x -> relu -> self\n}\n"
			"model m {\n  input x: [4]\n  y = x -> self\n  output y\n}\n");
	assert_int_equal(c->nerrors, 1);
	assert_diag_has(c, "self -> self");
	compile_free(c);
}

static void test_block_scope_is_closed(void **state)
{
	(void)state;
	Compile *c = compile_err("block b(x) {\n  return x + skip\n}\n"
				 "model m {\n  input x: [4]\n  skip = x -> relu\n  y = x -> b\n  output y\n}\n");
	assert_int_equal(c->nerrors, 1);
	assert_diag_has(c, "<test>:2:14: error:");
	assert_diag_has(c, "'skip'");
	compile_free(c);
}

static void test_block_argument_errors(void **state)
{
	(void)state;
	Compile *c = compile_err("block b(x, c) {\n  return x -> dense(c)\n}\n"
				 "model m {\n  input x: [4]\n"
				 "  y1 = x -> b\n"			/* c missing */
				 "  y2 = x -> b(2, 3)\n"		/* one too many */
				 "  y3 = x -> b(cc=2)\n"		/* no such parameter */
				 "  y4 = x -> b(2, c=3)\n"		/* given twice */
				 "  output x\n}\n");
	assert_int_equal(c->nerrors, 4);
	assert_diag_has(c, "<test>:6:13: error:");
	assert_diag_has(c, "<test>:7:18: error:");
	assert_diag_has(c, "<test>:8:15: error:");
	assert_diag_has(c, "did you mean 'c'?");
	assert_diag_has(c, "<test>:9:18: error:");
	compile_free(c);
}

static void test_block_needs_return(void **state)
{
	(void)state;
	Compile *c = compile_err("block b(x) {\n  h = x -> relu\n}\n"
				 "model m {\n  input x: [4]\n  y = x -> b\n  output y\n}\n");
	assert_int_equal(c->nerrors, 1);
	assert_diag_has(c, "<test>:1:7: error:");
	compile_free(c);

	c = compile_err("block b(x) {\n  return x\n  h = x -> relu\n}\n"
			"model m {\n  input x: [4]\n  y = x -> b\n  output y\n}\n");
	assert_int_equal(c->nerrors, 1);
	assert_diag_has(c, "<test>:3:3: error:");	/* after return: never runs */
	compile_free(c);
}

/* ---- statements ---- */

static void test_repeat_rebinds(void **state)
{
	(void)state;
	Compile *c = compile_ok("model m {\n  input x: [4]\n  h = x\n"
				"  repeat 3 { h = h -> dense(4) }\n"
				"  repeat 0 { h = h -> sigmoid }\n"
				"  output h\n}\n");
	const IrGraph *g = c->model->graph;
	assert_int_equal(count_op(g, IR_DENSE), 3);
	assert_int_equal(count_op(g, IR_SIGMOID), 0);
	IrNode *d1 = layer_node(g, "dense1"), *d2 = layer_node(g, "dense2"), *d3 = layer_node(g, "dense3");
	assert_ptr_equal(d1->in[0], only(g, IR_INPUT));
	assert_ptr_equal(d2->in[0], d1);
	assert_ptr_equal(d3->in[0], d2);
	assert_ptr_equal(output_named(g, "h"), d3);
	compile_free(c);
}

static void test_repeat_count_is_an_expression(void **state)
{
	(void)state;
	Compile *c = compile_ok("model m {\n  input x: [4]\n  n = 2\n  h = x\n"
				"  repeat n * 2 + 1 { h = h -> relu }\n  output h\n}\n");
	assert_int_equal(count_op(c->model->graph, IR_RELU), 5);
	compile_free(c);

	c = compile_err("model m {\n  input x: [4]\n  h = x\n  repeat 2.5 { h = h -> relu }\n  output h\n}\n");
	assert_int_equal(c->nerrors, 1);
	assert_diag_has(c, "<test>:4:10: error:");
	compile_free(c);
}

static void test_shadowing(void **state)
{
	(void)state;
	Compile *c = compile_ok("model m {\n  input x: [4]\n"
				"  h = x -> relu\n"
				"  first = h\n"
				"  h = h -> sigmoid\n"
				"  width = 3\n"
				"  width = width + 2\n"
				"  h = h -> dense(width)\n"
				"  output h, first\n}\n");
	const IrGraph *g = c->model->graph;
	assert_ptr_equal(output_named(g, "h"), layer_node(g, "dense1"));
	assert_ptr_equal(output_named(g, "first"), layer_node(g, "relu1"));
	assert_ptr_equal(layer_node(g, "dense1")->in[0], layer_node(g, "sigmoid1"));
	assert_int_equal(layer_node(g, "dense1")->a.units, 5);
	compile_free(c);
}

static void test_input_cannot_be_declared_twice(void **state)
{
	(void)state;
	Compile *c = compile_err("model m {\n  input x: [4]\n  input x: [5]\n  output x\n}\n");
	assert_diag_has(c, "<test>:3:9: error:");
	assert_diag_has(c, "<test>:2:9: note:");
	compile_free(c);
}

static void test_plus_and_times_make_nodes(void **state)
{
	(void)state;
	Compile *c = compile_ok("model m {\n  input x: [4]\n  input z: [4]\n"
				"  s = x + z\n  p = s * x\n  q = 0.5 * p\n  r = p * 3\n  output q, r\n}\n");
	const IrGraph *g = c->model->graph;
	IrNode *add = only(g, IR_ADD), *mul = only(g, IR_MUL);
	assert_string_equal(add->in[0]->name, "x");
	assert_string_equal(add->in[1]->name, "z");
	assert_ptr_equal(mul->in[0], add);
	assert_string_equal(mul->in[1]->name, "x");
	assert_int_equal(count_op(g, IR_SCALE), 2);
	const IrNode *q = output_named(g, "q"), *r = output_named(g, "r");
	assert_int_equal(q->op, IR_SCALE);
	assert_float_equal(q->a.scale, 0.5, 0);
	assert_ptr_equal(q->in[0], mul);
	assert_float_equal(r->a.scale, 3, 0);
	assert_string_equal(add->layer, "add1");
	assert_string_equal(mul->layer, "mul1");
	compile_free(c);
}

static void test_number_times_loss_scales_it(void **state)
{
	(void)state;
	Compile *c = compile_ok("model m {\n  input x: [4]\n  target y: class(3)\n  target t: [3]\n"
				"  p = x -> dense(3)\n  output p\n"
				"  loss cross_entropy(p, y) + 0.25 * mse(p, t)\n}\n");
	const IrGraph *g = c->model->graph;
	IrNode *ce = only(g, IR_CROSS_ENTROPY), *mse = only(g, IR_MSE), *sc = only(g, IR_SCALE), *add = only(g, IR_ADD);
	assert_ptr_equal(g->loss, add);
	assert_ptr_equal(add->in[0], ce);
	assert_ptr_equal(add->in[1], sc);
	assert_ptr_equal(sc->in[0], mse);
	assert_float_equal(sc->a.scale, 0.25, 0);
	assert_false(add->batched);
	assert_int_equal(add->shape.rank, 0);
	assert_false(sc->batched);
	compile_free(c);
}

static void test_arithmetic_on_numbers_is_folded(void **state)
{
	(void)state;
	Compile *c = compile_ok("model m {\n  input x: [4]\n  k = (2 + 4) / 3 * 5 - 1\n"
				"  y = x -> dense(k) -> dropout(1 / 4)\n  output y\n}\n");
	const IrGraph *g = c->model->graph;
	assert_int_equal(layer_node(g, "dense1")->a.units, 9);
	assert_float_equal(layer_node(g, "dropout1")->a.p, 0.25, 1e-12);
	assert_int_equal(count_op(g, IR_SCALE), 0);
	compile_free(c);

	/* 7 / 2 is not a whole number, so it cannot size a layer */
	c = compile_err("model m {\n  input x: [4]\n  y = x -> dense(7 / 2)\n  output y\n}\n");
	assert_int_equal(c->nerrors, 1);
	compile_free(c);

	c = compile_err("model m {\n  input x: [4]\n  y = x -> dense(1 / 0)\n  output y\n}\n");
	assert_int_equal(c->nerrors, 1);
	assert_diag_has(c, "<test>:3:20: error:");
	compile_free(c);
}

static void test_tensor_minus_is_an_error(void **state)
{
	(void)state;
	Compile *c = compile_err("model m {\n  input x: [4]\n  y = x - x\n  output y\n}\n");
	assert_int_equal(c->nerrors, 1);
	assert_diag_has(c, "<test>:3:9: error:");
	compile_free(c);
}

/* ---- layer arguments ---- */

static void test_layer_defaults_and_arguments(void **state)
{
	(void)state;
	Compile *c = compile_ok("model m {\n  input x: [2, 16, 16]\n"
				"  h = x -> conv2d(4, 3) -> maxpool(2) -> avgpool(3, stride=1, pad=1)\n"
				"  h = h -> batchnorm -> leaky_relu -> elu -> dropout -> upsample\n"
				"  k = h -> batchnorm(momentum=0.2, eps=0.001) -> leaky_relu(0.2) -> elu(alpha=2)\n"
				"  k = k -> dropout(0.1) -> upsample(scale=[2, 3], mode=\"bilinear\")\n"
				"  output h, k\n}\n");
	const IrGraph *g = c->model->graph;
	const IrAttrs *a = &layer_node(g, "conv1")->a;
	assert_int_equal(a->units, 4);
	assert_int_equal(a->kernel[0], 3);
	assert_int_equal(a->kernel[1], 3);
	assert_int_equal(a->stride[0], 1);
	assert_int_equal(a->dilation[1], 1);
	assert_int_equal(a->groups, 1);
	assert_int_equal(a->bias, 1);
	assert_int_equal(a->pad[0] + a->pad[1] + a->pad[2] + a->pad[3], 0);
	a = &layer_node(g, "maxpool1")->a;
	assert_int_equal(a->stride[0], 2);	/* the stride defaults to the kernel */
	assert_int_equal(a->stride[1], 2);
	a = &layer_node(g, "avgpool1")->a;
	assert_int_equal(a->kernel[0], 3);
	assert_int_equal(a->stride[0], 1);
	assert_int_equal(a->pad[0], 1);
	assert_int_equal(a->pad[3], 1);
	assert_float_equal(layer_node(g, "bn1")->a.momentum, 0.1, 1e-12);
	assert_float_equal(layer_node(g, "bn1")->a.eps, 1e-5, 1e-15);
	assert_float_equal(layer_node(g, "bn2")->a.momentum, 0.2, 1e-12);
	assert_float_equal(layer_node(g, "bn2")->a.eps, 1e-3, 1e-15);
	assert_float_equal(layer_node(g, "leaky_relu1")->a.alpha, 0.01, 1e-12);
	assert_float_equal(layer_node(g, "leaky_relu2")->a.alpha, 0.2, 1e-12);
	assert_float_equal(layer_node(g, "elu1")->a.alpha, 1.0, 1e-12);
	assert_float_equal(layer_node(g, "elu2")->a.alpha, 2.0, 1e-12);
	assert_float_equal(layer_node(g, "dropout1")->a.p, 0.5, 1e-12);
	assert_float_equal(layer_node(g, "dropout2")->a.p, 0.1, 1e-12);
	a = &layer_node(g, "upsample1")->a;
	assert_int_equal(a->up[0], 2);
	assert_int_equal(a->up[1], 2);
	assert_int_equal(a->mode, UP_NEAREST);
	a = &layer_node(g, "upsample2")->a;
	assert_int_equal(a->up[0], 2);
	assert_int_equal(a->up[1], 3);
	assert_int_equal(a->mode, UP_BILINEAR);
	compile_free(c);
}

static void test_unknown_layer_suggests(void **state)
{
	(void)state;
	Compile *c = compile_err("model m {\n  input x: [4]\n  y = x -> rleu\n  output y\n}\n");
	assert_int_equal(c->nerrors, 1);
	assert_diag_has(c, "<test>:3:12: error:");
	assert_diag_has(c, "'rleu'");
	assert_diag_has(c, "did you mean 'relu'?");
	compile_free(c);
}

static void test_layer_argument_errors_are_all_reported(void **state)
{
	(void)state;
	Compile *c = compile_err("model m {\n  input x: [1, 8, 8]\n"
				 "  a = x -> conv2d(4)\n"			/* kernel missing */
				 "  b = x -> conv2d(4, kernel=3, strid=2)\n"	/* unknown keyword */
				 "  d = x -> conv2d(4.5, kernel=3)\n"		/* not whole */
				 "  e = x -> conv2d(4, kernel=[3, 3, 3])\n"	/* list of three */
				 "  f = x -> dropout(1.5)\n"			/* out of range */
				 "  g = x -> upsample(mode=\"bilinar\")\n"	/* unknown mode */
				 "  h = x -> conv2d(4, kernel=3, pad=\"valid\")\n"
				 "  i = x -> relu(2)\n"				/* relu takes nothing */
				 "  output x\n}\n");
	assert_int_equal(c->nerrors, 8);
	for (int line = 3; line <= 10; line++) {
		char at[32];
		snprintf(at, sizeof at, "<test>:%d:", line);
		assert_int_equal(diag_count(c, at) >= 1, 1);
	}
	assert_diag_has(c, "did you mean 'stride'?");
	assert_diag_has(c, "did you mean \"bilinear\"?");
	compile_free(c);
}

static void test_undefined_name_suggests(void **state)
{
	(void)state;
	Compile *c = compile_err("model m {\n  input image: [4]\n  y = imag -> relu\n  output yy\n}\n");
	assert_int_equal(c->nerrors, 2);
	assert_diag_has(c, "<test>:3:7: error:");
	assert_diag_has(c, "did you mean 'image'?");
	assert_diag_has(c, "<test>:4:10: error:");
	compile_free(c);
}

static void test_model_needs_input_and_result(void **state)
{
	(void)state;
	Compile *c = compile_err("model m {\n  k = 3\n}\n");
	assert_int_equal(c->nerrors, 1);
	assert_diag_has(c, "<test>:1:7: error:");
	compile_free(c);

	c = compile_err("model m {\n  input x: [4]\n  loss x -> relu\n  loss x -> relu\n}\n");
	assert_diag_has(c, "<test>:4:3: error:");
	compile_free(c);
}

/* ---- train settings ---- */

static const char *const tiny = "model m {\n  input x: [4]\n  target y: class(2)\n  p = x -> dense(2)\n"
				"  output p\n  loss cross_entropy(p, y)\n}\n";

static Compile *with_train(const char *train, bool ok)
{
	char src[2048];
	snprintf(src, sizeof src, "%s%s", tiny, train);
	return ok ? compile_ok(src) : compile_err(src);
}

static void test_train_defaults(void **state)
{
	(void)state;
	Compile *c = with_train("", true);
	const TrainConfig *t = &c->model->train;
	assert_false(t->given);
	assert_int_equal(t->opt, OPT_ADAM);
	assert_float_equal(t->lr, 0.001, 1e-15);
	assert_float_equal(t->beta1, 0.9, 1e-15);
	assert_float_equal(t->beta2, 0.999, 1e-15);
	assert_float_equal(t->eps, 1e-8, 1e-20);
	assert_int_equal(t->batch, 64);
	assert_int_equal(t->epochs, 1);
	assert_int_equal(t->seed, 1);
	assert_int_equal(t->sched, SCHED_CONSTANT);
	assert_float_equal(t->l1, 0, 0);
	assert_float_equal(t->l2, 0, 0);
	assert_null(t->data);
	assert_null(t->test);
	compile_free(c);
}

static void test_train_overrides(void **state)
{
	(void)state;
	Compile *c = with_train("train {\n  batch = 16\n  epochs = 7\n  seed = 42\n  l1 = 0.001\n  l2 = 5e-4\n"
				"  schedule = cosine\n}\n", true);
	const TrainConfig *t = &c->model->train;
	assert_true(t->given);
	assert_int_equal(t->loc.line, 8);
	assert_int_equal(t->opt, OPT_ADAM);	/* not set: the default */
	assert_int_equal(t->batch, 16);
	assert_int_equal(t->epochs, 7);
	assert_int_equal(t->seed, 42);
	assert_float_equal(t->l1, 0.001, 1e-15);
	assert_float_equal(t->l2, 5e-4, 1e-15);
	assert_int_equal(t->sched, SCHED_COSINE);
	compile_free(c);
}

static void test_optimizer_sgd(void **state)
{
	(void)state;
	Compile *c = with_train("train {\n  optimizer = sgd(lr=0.1, momentum=0.9, nesterov=true)\n}\n", true);
	const TrainConfig *t = &c->model->train;
	assert_int_equal(t->opt, OPT_SGD);
	assert_float_equal(t->lr, 0.1, 1e-15);
	assert_float_equal(t->momentum, 0.9, 1e-15);
	assert_int_equal(t->nesterov, 1);
	assert_string_equal(elab_opt_name(t->opt), "sgd");
	compile_free(c);

	c = with_train("train {\n  optimizer = sgd(0.05)\n}\n", true);
	t = &c->model->train;
	assert_float_equal(t->lr, 0.05, 1e-15);
	assert_float_equal(t->momentum, 0, 0);
	assert_int_equal(t->nesterov, 0);
	compile_free(c);
}

static void test_optimizer_adagrad_rmsprop(void **state)
{
	(void)state;
	Compile *c = with_train("train {\n  optimizer = adagrad(lr=0.05)\n}\n", true);
	const TrainConfig *t = &c->model->train;
	assert_int_equal(t->opt, OPT_ADAGRAD);
	assert_float_equal(t->lr, 0.05, 1e-15);
	assert_float_equal(t->eps, 1e-10, 1e-22);
	compile_free(c);

	c = with_train("train {\n  optimizer = rmsprop(0.02, alpha=0.9, momentum=0.5)\n}\n", true);
	t = &c->model->train;
	assert_int_equal(t->opt, OPT_RMSPROP);
	assert_float_equal(t->lr, 0.02, 1e-15);
	assert_float_equal(t->alpha, 0.9, 1e-15);
	assert_float_equal(t->eps, 1e-8, 1e-20);
	assert_float_equal(t->momentum, 0.5, 1e-15);
	compile_free(c);

	/* torch.optim's default lr for these two is 0.01 */
	c = with_train("train {\n  optimizer = rmsprop\n}\n", true);
	t = &c->model->train;
	assert_float_equal(t->lr, 0.01, 1e-15);
	assert_float_equal(t->alpha, 0.99, 1e-15);
	compile_free(c);
}

static void test_optimizer_adam_adamw(void **state)
{
	(void)state;
	Compile *c = with_train("train {\n  optimizer = adam(beta2=0.99, eps=1e-6)\n}\n", true);
	const TrainConfig *t = &c->model->train;
	assert_int_equal(t->opt, OPT_ADAM);
	assert_float_equal(t->lr, 0.001, 1e-15);
	assert_float_equal(t->beta1, 0.9, 1e-15);
	assert_float_equal(t->beta2, 0.99, 1e-15);
	assert_float_equal(t->eps, 1e-6, 1e-18);
	compile_free(c);

	c = with_train("train {\n  optimizer = adamw(lr=0.002, beta1=0.8, weight_decay=0.05)\n}\n", true);
	t = &c->model->train;
	assert_int_equal(t->opt, OPT_ADAMW);
	assert_float_equal(t->lr, 0.002, 1e-15);
	assert_float_equal(t->beta1, 0.8, 1e-15);
	assert_float_equal(t->beta2, 0.999, 1e-15);
	assert_float_equal(t->weight_decay, 0.05, 1e-15);
	assert_string_equal(elab_opt_name(t->opt), "adamw");
	compile_free(c);

	c = with_train("train {\n  optimizer = adamw\n}\n", true);
	assert_float_equal(c->model->train.weight_decay, 0.01, 1e-15);
	compile_free(c);
}

static void test_optimizer_errors(void **state)
{
	(void)state;
	Compile *c = with_train("train {\n  optimizer = adma(lr=0.1)\n}\n", false);
	assert_int_equal(c->nerrors, 1);
	assert_diag_has(c, "<test>:9:15: error:");
	assert_diag_has(c, "did you mean 'adam'?");
	compile_free(c);

	c = with_train("train {\n  optimizer = sgd\n}\n", false);	/* sgd has no default lr */
	assert_int_equal(c->nerrors, 1);
	assert_diag_has(c, "'lr'");
	compile_free(c);

	c = with_train("train {\n  optimizer = sgd(lr=0.1, nesterov=true)\n}\n", false);
	assert_int_equal(c->nerrors, 1);
	assert_diag_has(c, "nesterov");
	compile_free(c);

	c = with_train("train {\n  optimizer = adam(lr=0)\n}\n", false);
	assert_int_equal(c->nerrors, 1);
	compile_free(c);

	c = with_train("train {\n  optimizer = adam(betaa=0.5)\n}\n", false);
	assert_int_equal(c->nerrors, 1);
	assert_diag_has(c, "did you mean 'beta1'?");
	compile_free(c);

	c = with_train("train {\n  optimizer = 0.1\n}\n", false);
	assert_int_equal(c->nerrors, 1);
	compile_free(c);
}

static void test_schedules(void **state)
{
	(void)state;
	Compile *c = with_train("train {\n  schedule = step(every=10, gamma=0.5)\n}\n", true);
	const TrainConfig *t = &c->model->train;
	assert_int_equal(t->sched, SCHED_STEP);
	assert_int_equal(t->step_every, 10);
	assert_float_equal(t->step_gamma, 0.5, 1e-15);
	assert_string_equal(elab_sched_name(t->sched), "step");
	compile_free(c);

	c = with_train("train {\n  schedule = step(3)\n}\n", true);
	t = &c->model->train;
	assert_int_equal(t->step_every, 3);
	assert_float_equal(t->step_gamma, 0.1, 1e-15);
	compile_free(c);

	c = with_train("train {\n  schedule = constant\n}\n", true);
	assert_int_equal(c->model->train.sched, SCHED_CONSTANT);
	compile_free(c);

	c = with_train("train {\n  schedule = cosine()\n}\n", true);
	assert_int_equal(c->model->train.sched, SCHED_COSINE);
	compile_free(c);
}

static void test_schedule_errors(void **state)
{
	(void)state;
	Compile *c = with_train("train {\n  schedule = step\n}\n", false);
	assert_int_equal(c->nerrors, 1);
	assert_diag_has(c, "'every'");
	compile_free(c);

	c = with_train("train {\n  schedule = cosin\n}\n", false);
	assert_int_equal(c->nerrors, 1);
	assert_diag_has(c, "did you mean 'cosine'?");
	compile_free(c);

	c = with_train("train {\n  schedule = cosine(5)\n}\n", false);
	assert_int_equal(c->nerrors, 1);
	compile_free(c);

	c = with_train("train {\n  schedule = step(every=0)\n}\n", false);
	assert_int_equal(c->nerrors, 1);
	compile_free(c);
}

static void test_train_setting_errors(void **state)
{
	(void)state;
	Compile *c = with_train("train {\n"
				"  epoch = 3\n"		/* line 9: unknown */
				"  batch = 0.5\n"	/* line 10: not whole */
				"  seed = \"one\"\n"	/* line 11: not a number */
				"  batch = 8\n"		/* line 12: set twice */
				"  l2 = -1\n"		/* line 13: negative */
				"  data = \"\"\n"	/* line 14: empty path */
				"  input z: [3]\n"	/* line 15: not a setting */
				"}\n", false);
	assert_int_equal(c->nerrors, 7);
	assert_diag_has(c, "<test>:9:3: error:");
	assert_diag_has(c, "did you mean 'epochs'?");
	assert_diag_has(c, "<test>:10:11: error:");
	assert_diag_has(c, "<test>:11:10: error:");
	assert_diag_has(c, "<test>:12:3: error:");
	assert_diag_has(c, "<test>:10:3: note:");
	assert_diag_has(c, "<test>:13:");
	assert_diag_has(c, "<test>:14:10: error:");
	assert_diag_has(c, "<test>:15:3: error:");
	compile_free(c);
}

static void test_data_paths_resolve_against_the_file(void **state)
{
	(void)state;
	char src[2048];
	snprintf(src, sizeof src, "%strain {\n  data = \"train.csv\"\n  test = \"/abs/test.csv\"\n}\n", tiny);
	Compile *c = compile_source("dir/sub/x.nn", src, strlen(src), NULL);
	assert_int_equal(c->nerrors, 0);
	assert_string_equal(c->model->train.data, "dir/sub/train.csv");
	assert_string_equal(c->model->train.test, "/abs/test.csv");
	compile_free(c);

	c = compile_source("x.nn", src, strlen(src), NULL);
	assert_int_equal(c->nerrors, 0);
	assert_string_equal(c->model->train.data, "train.csv");
	compile_free(c);

	c = compile_source("/home/u/m.nn", src, strlen(src), NULL);
	assert_string_equal(c->model->train.data, "/home/u/train.csv");
	compile_free(c);

	snprintf(src, sizeof src, "%strain {\n  test = \"../t/test.csv\"\n}\n", tiny);
	c = compile_source("models/x.nn", src, strlen(src), NULL);
	assert_string_equal(c->model->train.test, "models/../t/test.csv");
	assert_null(c->model->train.data);
	compile_free(c);
}

/* "inputs.npy,targets.npy" is two paths: each relative one is joined with the folder */
static void test_npy_pair_paths_resolve_each_part(void **state)
{
	(void)state;
	char src[2048];
	snprintf(src, sizeof src, "%strain {\n  data = \"s/x.npy,s/y.npy\"\n  test = \"/abs/x.npy,t/y.npy\"\n}\n",
		 tiny);
	Compile *c = compile_source("examples/m.nn", src, strlen(src), NULL);
	assert_int_equal(c->nerrors, 0);
	assert_string_equal(c->model->train.data, "examples/s/x.npy,examples/s/y.npy");
	assert_string_equal(c->model->train.test, "/abs/x.npy,examples/t/y.npy");
	compile_free(c);

	c = compile_source("m.nn", src, strlen(src), NULL);
	assert_string_equal(c->model->train.data, "s/x.npy,s/y.npy");
	compile_free(c);
}

static const char *const two_models = "model small {\n  input x: [4]\n  y = x -> dense(2)\n  output y\n}\n"
				      "model big {\n  input x: [8]\n  y = x -> dense(16) -> dense(2)\n  output y\n}\n";

static void test_train_named_model(void **state)
{
	(void)state;
	/* a named section may come before the model it trains */
	char src[2048];
	snprintf(src, sizeof src, "train big {\n  epochs = 9\n}\n%s", two_models);
	CompileOpts o = { .model = "big" };
	Compile *c = compile_source("<test>", src, strlen(src), &o);
	assert_int_equal(c->nerrors, 0);
	assert_string_equal(c->model->name, "big");
	assert_true(c->model->train.given);
	assert_int_equal(c->model->train.epochs, 9);
	assert_false(c->prog->models[0]->train.given);
	assert_int_equal(c->prog->models[0]->train.epochs, 1);
	compile_free(c);

	snprintf(src, sizeof src, "%strain small {\n  epochs = 4\n}\ntrain {\n  epochs = 6\n}\n", two_models);
	c = compile_string(src);
	assert_int_equal(c->nerrors, 0);
	assert_int_equal(c->prog->nmodels, 2);
	assert_string_equal(c->prog->models[0]->name, "small");
	assert_int_equal(c->prog->models[0]->train.epochs, 4);
	assert_int_equal(c->prog->models[1]->train.epochs, 6);	/* the unnamed one: the model before it */
	compile_free(c);
}

static void test_train_section_errors(void **state)
{
	(void)state;
	char src[2048];
	snprintf(src, sizeof src, "train {\n  epochs = 2\n}\n%strain smal {\n  epochs = 2\n}\n", two_models);
	Compile *c = compile_string(src);
	assert_int_equal(c->nerrors, 2);
	assert_diag_has(c, "<test>:1:1: error:");	/* before any model */
	assert_diag_has(c, "<test>:14:7: error:");
	assert_diag_has(c, "did you mean 'small'?");
	compile_free(c);

	snprintf(src, sizeof src, "%strain {\n  epochs = 2\n}\ntrain big {\n  epochs = 3\n}\n", two_models);
	c = compile_string(src);
	assert_int_equal(c->nerrors, 1);
	assert_diag_has(c, "<test>:14:1: error:");
	assert_diag_has(c, "<test>:11:1: note:");
	compile_free(c);
}

static void test_model_selection(void **state)
{
	(void)state;
	Compile *c = compile_string(two_models);
	assert_int_equal(c->nerrors, 0);
	assert_string_equal(c->model->name, "small");	/* the first is the default */
	assert_int_equal(c->prog->nmodels, 2);
	compile_free(c);

	CompileOpts o = { .model = "big" };
	c = compile_source("<test>", two_models, strlen(two_models), &o);
	assert_int_equal(c->nerrors, 0);
	assert_string_equal(c->model->name, "big");
	assert_non_null(layer_node(c->model->graph, "dense2"));
	assert_int_equal(c->model->graph->nodes[0]->shape.d[0], 8);
	compile_free(c);

	o.model = "bigg";
	c = compile_source("<test>", two_models, strlen(two_models), &o);
	assert_int_equal(c->nerrors, 1);
	assert_null(c->model);
	assert_string_equal(c->failed_stage, "select");
	assert_non_null(strstr(c->first_error, "'bigg'"));
	assert_diag_has(c, "did you mean 'big'?");
	compile_free(c);
}

static void test_duplicate_items(void **state)
{
	(void)state;
	Compile *c = compile_err("block b(x) { return x }\nblock b(x) { return x }\n"
				 "block relu(x) { return x }\nblock d(x, x) { return x }\n"
				 "model m {\n  input x: [4]\n  output x\n}\nmodel m {\n  input x: [4]\n  output x\n}\n");
	assert_int_equal(c->nerrors, 4);
	assert_diag_has(c, "<test>:2:7: error:");
	assert_diag_has(c, "<test>:3:7: error:");
	assert_diag_has(c, "<test>:4:12: error:");
	assert_diag_has(c, "<test>:9:7: error:");
	compile_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_block_expansion),
		cmocka_unit_test(test_block_defaults_see_earlier_parameters),
		cmocka_unit_test(test_block_default_cannot_see_later_parameter),
		cmocka_unit_test(test_nested_blocks),
		cmocka_unit_test(test_recursion_is_an_error),
		cmocka_unit_test(test_block_scope_is_closed),
		cmocka_unit_test(test_block_argument_errors),
		cmocka_unit_test(test_block_needs_return),
		cmocka_unit_test(test_repeat_rebinds),
		cmocka_unit_test(test_repeat_count_is_an_expression),
		cmocka_unit_test(test_shadowing),
		cmocka_unit_test(test_input_cannot_be_declared_twice),
		cmocka_unit_test(test_plus_and_times_make_nodes),
		cmocka_unit_test(test_number_times_loss_scales_it),
		cmocka_unit_test(test_arithmetic_on_numbers_is_folded),
		cmocka_unit_test(test_tensor_minus_is_an_error),
		cmocka_unit_test(test_layer_defaults_and_arguments),
		cmocka_unit_test(test_unknown_layer_suggests),
		cmocka_unit_test(test_layer_argument_errors_are_all_reported),
		cmocka_unit_test(test_undefined_name_suggests),
		cmocka_unit_test(test_model_needs_input_and_result),
		cmocka_unit_test(test_train_defaults),
		cmocka_unit_test(test_train_overrides),
		cmocka_unit_test(test_optimizer_sgd),
		cmocka_unit_test(test_optimizer_adagrad_rmsprop),
		cmocka_unit_test(test_optimizer_adam_adamw),
		cmocka_unit_test(test_optimizer_errors),
		cmocka_unit_test(test_schedules),
		cmocka_unit_test(test_schedule_errors),
		cmocka_unit_test(test_train_setting_errors),
		cmocka_unit_test(test_data_paths_resolve_against_the_file),
		cmocka_unit_test(test_npy_pair_paths_resolve_each_part),
		cmocka_unit_test(test_train_named_model),
		cmocka_unit_test(test_train_section_errors),
		cmocka_unit_test(test_model_selection),
		cmocka_unit_test(test_duplicate_items),
	};
	return cmocka_run_group_tests_name("elab", tests, NULL, NULL);
}
