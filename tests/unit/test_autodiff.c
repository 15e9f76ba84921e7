/*
 * test_autodiff.c: the training graph is what autodiff.c promises: a value
 * used twice sums its gradients, only what the loss depends on is
 * differentiated, and a convolution's gradients are convolutions.
 */
#include "support.h"

#include "loop.h"
#include "loop_interp.h"

static Compile *graphs(const char *src)
{
	CompileOpts o = { .upto = UPTO_GRAPHS };
	return compile_string_opts(src, &o);
}

static Compile *graphs_ok(const char *src)
{
	Compile *c = graphs(src);
	if (c->nerrors || !c->train)
		fail_msg("expected a training graph, got:\n%s", c->diag.text ? c->diag.text : "");
	return c;
}

static int count_op(const IrGraph *g, IrOp op)
{
	int n = 0;
	for (int i = 0; i < g->nnodes; i++)
		n += g->nodes[i]->op == op;
	return n;
}

/* optimizer updates, whatever the optimizer */
static int count_updates(const IrGraph *g)
{
	int n = 0;
	for (int i = 0; i < g->nnodes; i++)
		n += ir_op_family(g->nodes[i]->op) == FAM_UPDATE;
	return n;
}

static const IrNode *find_op(const IrGraph *g, IrOp op)
{
	for (int i = 0; i < g->nnodes; i++)
		if (g->nodes[i]->op == op)
			return g->nodes[i];
	return NULL;
}

#define TWICE(expr)                                                                    \
	"model m {\n  input x: [3]\n  target t: [4]\n  h = x -> dense(4)\n  y = " expr "\n" \
	"  output y\n  loss mse(y, t)\n}\ntrain {\n  optimizer = sgd(lr=1)\n}\n"

/* y = h + h: h's gradient is g + g, the sum of its two uses */
static void test_value_used_twice_accumulates(void **state)
{
	(void)state;
	Compile *c = graphs_ok(TWICE("h + h"));
	const IrNode *dw = find_op(c->train, IR_DENSE_DW);
	assert_non_null(dw);
	const IrNode *gh = dw->in[0];
	assert_int_equal(gh->op, IR_ADD);
	assert_ptr_equal(gh->in[0], gh->in[1]);
	assert_int_equal(gh->in[0]->op, IR_MSE_BWD);
	compile_free(c);
}

/* ... and numerically the gradient is exactly that of y = 2 h (same weights:
 * the same seed and buffer order) */
static void test_twice_is_double(void **state)
{
	(void)state;
	const char *srcs[2] = { TWICE("h + h"), TWICE("2 * h") };
	double w[2][12];
	for (int k = 0; k < 2; k++) {
		Compile *c = compile_loops_ok(srcs[k]);
		LoopMachine *lm = loop_machine_new(c->loops, 2, 7);
		const double x[] = { 0.5, -1, 2, 1.5, 0.25, -0.75 }, t[] = { 1, 0, -1, 2, 0.5, 0.5, 0, 1 };
		loop_machine_run(lm, "train_step", 2, x, t, NULL);
		memcpy(w[k], loop_machine_buf(lm, "dense1.weight"), sizeof w[k]);
		loop_machine_free(lm);
		compile_free(c);
	}
	for (int i = 0; i < 12; i++)
		assert_true(w[0][i] == w[1][i]);
}

/* the second output does not reach the loss: no gradient, no update for it */
static void test_only_the_loss_is_differentiated(void **state)
{
	(void)state;
	Compile *c = graphs_ok("model m {\n  input x: [3]\n  target t: [4]\n  h = x -> dense(4)\n"
			       "  o = x -> dense(2) -> relu\n  output h, o\n  loss mse(h, t)\n}\n");
	const IrGraph *g = c->train;
	int forward = c->infer->nnodes;	/* no dropout, no l1/l2: the training graph starts with the same nodes */
	assert_true(g->nnodes > forward);
	for (int i = forward; i < g->nnodes; i++) {
		const IrNode *n = g->nodes[i];
		if (n->layer && (!strcmp(n->layer, "dense2") || !strcmp(n->layer, "relu1")))
			fail_msg("backward node %%%d (%s) belongs to %s", n->id, ir_op_name(n->op), n->layer);
		for (int k = 0; k < n->nin; k++)
			if (n->in[k]->name && !strncmp(n->in[k]->name, "dense2.", 7))
				fail_msg("backward node %%%d (%s) reads %s", n->id, ir_op_name(n->op), n->in[k]->name);
	}
	assert_int_equal(count_op(g, IR_RELU_BWD), 0);
	assert_int_equal(count_updates(g), 2);	/* dense1.weight and dense1.bias */
	assert_int_equal(count_op(g, IR_DENSE_DX), 0);	/* nothing before dense1 is trained */
	compile_free(c);
}

/* conv2d's gradients are convolutions with its geometry (autodiff.c,
 * grad_conv): the data gradient of the second layer is a conv_transpose2d
 * back to the first one's channels, the weight gradients conv_dw, the
 * biases channel_sum. (Every op a user can write has a gradient rule now,
 * so the "no gradient rule" error has no model left to test it with.) */
static void test_conv2d_gradients_are_convolutions(void **state)
{
	(void)state;
	Compile *c = graphs_ok("model m {\n  input x: [3, 9, 8]\n  target t: [2]\n"
			       "  h = x -> conv2d(4, kernel=3) -> conv2d(6, kernel=3, stride=2, pad=1, dilation=2, groups=2)"
			       " -> flatten -> dense(2)\n  output h\n  loss mse(h, t)\n}\n");
	const IrGraph *g = c->train;
	assert_int_equal(count_op(g, IR_CONV_DW), 2);
	assert_int_equal(count_op(g, IR_CHANNEL_SUM), 2);
	assert_int_equal(count_op(g, IR_CONV_T2D), 1);	/* x is data: conv1 needs no data gradient */
	const IrNode *dx = find_op(g, IR_CONV_T2D), *conv1 = layer_node(g, "conv1"), *conv2 = layer_node(g, "conv2");
	assert_ptr_equal(dx->in[1], conv2->in[1]);
	assert_int_equal(dx->a.units, 4);
	assert_int_equal(dx->a.groups, 2);
	assert_int_equal(dx->a.stride[0], 2);
	assert_int_equal(dx->a.dilation[1], 2);
	assert_int_equal(dx->a.pad[0], 1);
	assert_true(shape_eq(dx->shape, conv1->shape));
	for (int i = 0; i < g->nnodes; i++) {
		const IrNode *n = g->nodes[i];
		if (n->op == IR_CONV_DW)
			assert_true(shape_eq(n->shape, n->in[1] == conv1 ? conv2->in[1]->shape : conv1->in[1]->shape));
	}
	compile_free(c);
}

/* a conv2d the loss does not depend on needs no gradient */
static void test_conv2d_off_the_loss_path_trains(void **state)
{
	(void)state;
	Compile *c = graphs_ok("model m {\n  input x: [1, 4, 4]\n  target t: [2]\n"
			       "  c = x -> conv2d(2, kernel=4)\n  h = x -> flatten -> dense(2)\n"
			       "  output h, c\n  loss mse(h, t)\n}\n");
	assert_int_equal(count_updates(c->train), 2);
	compile_free(c);
}

/* mse, mae and rmse differentiate their second argument too (test_gradcheck
 * checks the values); bce and cross_entropy cannot yet, and say so */
static void test_computed_target(void **state)
{
	(void)state;
	Compile *c = graphs_ok("model m {\n  input x: [3]\n  target t: [2]\n  h = x -> dense(2)\n"
			       "  g = x -> dense(2)\n  output h\n  loss mse(h, g)\n}\n");
	assert_int_equal(count_updates(c->train), 4);
	compile_free(c);
	c = graphs("model m {\n  input x: [3]\n  target t: [2]\n  h = x -> dense(2)\n"
		   "  g = x -> dense(2) -> sigmoid\n  output h\n  loss bce(h, g)\n}\n");
	assert_int_equal(c->nerrors, 1);
	assert_string_equal(c->first_error, "nnc cannot train through the second argument of bce yet: it depends on parameters");
	assert_diag_has(c, "<test>:7:8: error:");
	compile_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_value_used_twice_accumulates),
		cmocka_unit_test(test_twice_is_double),
		cmocka_unit_test(test_only_the_loss_is_differentiated),
		cmocka_unit_test(test_conv2d_gradients_are_convolutions),
		cmocka_unit_test(test_conv2d_off_the_loss_path_trains),
		cmocka_unit_test(test_computed_target),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
