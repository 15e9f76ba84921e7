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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dense_needs_rank1),
		cmocka_unit_test(test_lenet_shapes),
	};
	return cmocka_run_group_tests_name("shape", tests, NULL, NULL);
}
