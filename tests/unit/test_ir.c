/*
 * test_ir.c: the graph IR (compiler/ir.c): builders, the op table, shapes
 * and their printing, the text and Graphviz printers, and the verifier,
 * which must catch every kind of broken graph.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "support.h"

static const SrcLoc noloc = { 0 };

static Shape shp(int rank, int64_t d0, int64_t d1, int64_t d2, int64_t d3)
{
	const int64_t d[4] = { d0, d1, d2, d3 };
	return shape_make(rank, d);
}

/* x [4] -> dense(3) with weight and bias; output "y" */
typedef struct Small {
	Arena *arena;
	IrGraph *g;
	IrNode *x, *w, *b, *d;
} Small;

static Small small(void)
{
	Small s;
	s.arena = arena_new();
	s.g = ir_new_graph(s.arena, "small", noloc);
	s.x = ir_new_source(s.g, IR_INPUT, "x", noloc);
	s.x->shape = shp(1, 4, 0, 0, 0);
	s.w = ir_new_source(s.g, IR_PARAM, "dense1.weight", noloc);
	s.w->shape = shp(2, 3, 4, 0, 0);
	s.b = ir_new_source(s.g, IR_PARAM, "dense1.bias", noloc);
	s.b->shape = shp(1, 3, 0, 0, 0);
	IrNode *in[3] = { s.x, s.w, s.b };
	s.d = ir_new_node(s.g, IR_DENSE, 3, in, noloc);
	s.d->a.units = 3;
	s.d->shape = shp(1, 3, 0, 0, 0);
	s.d->layer = "dense1";
	s.g->outputs = arena_alloc(s.arena, sizeof(IrNode *));
	s.g->output_names = arena_alloc(s.arena, sizeof(char *));
	s.g->outputs[0] = s.d;
	s.g->output_names[0] = "y";
	s.g->noutputs = 1;
	return s;
}

/* verifies and returns the message (in buf), or NULL */
static const char *verify(const Small *s, char *buf, size_t n)
{
	const char *r = ir_verify(s->g, buf, n);
	if (r)
		assert_ptr_equal(r, buf);
	return r;
}

#define assert_broken(s, needle)                                                       \
	do {                                                                           \
		char buf_[256];                                                        \
		const char *r_ = verify(&(s), buf_, sizeof buf_);                      \
		assert_non_null(r_);                                                   \
		if (!strstr(r_, (needle)))                                             \
			fail_msg("verifier said \"%s\", expected it to mention \"%s\"", r_, (needle)); \
		arena_free((s).arena);                                                 \
	} while (0)

static void test_builders(void **state)
{
	(void)state;
	Small s = small();
	assert_int_equal(s.g->nnodes, 4);
	for (int i = 0; i < 4; i++)
		assert_int_equal(s.g->nodes[i]->id, i);
	assert_true(s.x->batched);
	assert_false(s.w->batched);	/* parameters carry their whole shape */
	assert_true(s.d->batched);
	assert_int_equal(s.d->dtype, DT_F32);
	assert_int_equal(s.d->nin, 3);
	assert_ptr_equal(s.d->in[1], s.w);
	assert_string_equal(s.g->name, "small");
	/* a node made without a shape starts out unshaped */
	IrNode *r = ir_new_node(s.g, IR_RELU, 1, &s.d, noloc);
	assert_true(shape_poisoned(r->shape));
	/* the node list grows past its first block */
	for (int i = 0; i < 200; i++)
		r = ir_new_node(s.g, IR_RELU, 1, &r, noloc);
	assert_int_equal(s.g->nnodes, 205);
	assert_ptr_equal(s.g->nodes[204], r);
	assert_int_equal(r->in[0]->id, 203);
	arena_free(s.arena);
}

static void test_op_table(void **state)
{
	(void)state;
	assert_string_equal(ir_op_name(IR_CONV_T2D), "conv_transpose2d");
	assert_string_equal(ir_op_name(IR_GLOBAL_AVGPOOL), "global_avgpool");
	assert_string_equal(ir_op_name(IR_CROSS_ENTROPY), "cross_entropy");
	assert_int_equal(ir_op_family(IR_DENSE), FAM_CONTRACT);
	assert_int_equal(ir_op_family(IR_BATCHNORM), FAM_NORM);
	assert_int_equal(ir_op_family(IR_MSE), FAM_LOSS);
	assert_int_equal(ir_op_family(IR_SOFTMAX), FAM_AXIS);
	assert_int_equal(ir_op_family(IR_PARAM), FAM_SOURCE);
	assert_int_equal(ir_op_min_arity(IR_DENSE), 2);
	assert_int_equal(ir_op_max_arity(IR_DENSE), 3);
	assert_int_equal(ir_op_min_arity(IR_BATCHNORM), 5);
	assert_int_equal(ir_op_max_arity(IR_CONCAT), -1);
	assert_int_equal(ir_op_max_arity(IR_INPUT), 0);
	/* every op has a distinct name */
	for (int i = 0; i < IR_NOPS; i++)
		for (int j = 0; j < i; j++)
			assert_string_not_equal(ir_op_name((IrOp)i), ir_op_name((IrOp)j));
}

static void test_shapes(void **state)
{
	(void)state;
	assert_string_equal(shape_str(shp(3, 16, 5, 5, 0)), "[16, 5, 5]");
	assert_string_equal(shape_str(shp(1, 784, 0, 0, 0)), "[784]");
	assert_string_equal(shape_str(shp(0, 0, 0, 0, 0)), "[]");
	assert_string_equal(shape_str(shape_poison()), "[?]");
	assert_string_equal(shape_str(shp(4, 2147483647, 1, 2, 3)), "[2147483647, 1, 2, 3]");
	/* a few results may be used in one message */
	const char *a = shape_str(shp(1, 1, 0, 0, 0)), *b = shape_str(shp(1, 2, 0, 0, 0));
	const char *c = shape_str(shp(1, 3, 0, 0, 0));
	assert_string_equal(a, "[1]");
	assert_string_equal(b, "[2]");
	assert_string_equal(c, "[3]");
	assert_true(shape_eq(shp(2, 3, 4, 0, 0), shp(2, 3, 4, 9, 9)));	/* sizes past the rank do not count */
	assert_false(shape_eq(shp(2, 3, 4, 0, 0), shp(2, 4, 3, 0, 0)));
	assert_false(shape_eq(shp(1, 3, 0, 0, 0), shp(2, 3, 1, 0, 0)));
	assert_true(shape_poisoned(shape_poison()));
	assert_false(shape_poisoned(shp(0, 0, 0, 0, 0)));
}

static void test_numel(void **state)
{
	(void)state;
	Small s = small();
	assert_int_equal(ir_numel(s.w), 12);
	assert_int_equal(ir_numel(s.x), 4);
	s.x->shape = shp(3, 2, 3, 4, 0);
	assert_int_equal(ir_numel(s.x), 24);
	s.x->shape = shp(4, 2, 3, 4, 5);
	assert_int_equal(ir_numel(s.x), 120);
	s.x->shape = shp(0, 0, 0, 0, 0);
	assert_int_equal(ir_numel(s.x), 1);	/* a scalar */
	arena_free(s.arena);
}

static void test_verify_accepts_a_good_graph(void **state)
{
	(void)state;
	Small s = small();
	char buf[256];
	assert_null(verify(&s, buf, sizeof buf));
	arena_free(s.arena);

	/* everything the compiler makes from the examples verifies */
	static const char *const files[] = { "examples/mlp.nn", "examples/lenet.nn", "examples/resnet_mini.nn",
					     "examples/unet_tiny.nn" };
	for (int i = 0; i < 4; i++) {
		Compile *c = compile_file(files[i], NULL);
		assert_int_equal(c->nerrors, 0);
		assert_null(ir_verify(c->model->graph, buf, sizeof buf));
		compile_free(c);
	}
}

static void test_verify_wrong_arity(void **state)
{
	(void)state;
	Small s = small();
	s.d->nin = 1;	/* dense needs x and its weight */
	assert_broken(s, "%3");

	s = small();
	IrNode *two[2] = { s.d, s.d };
	IrNode *r = ir_new_node(s.g, IR_RELU, 2, two, noloc);
	r->shape = s.d->shape;
	assert_broken(s, "relu");

	s = small();
	IrNode *bn = ir_new_node(s.g, IR_BATCHNORM, 3, (IrNode *[]){ s.d, s.w, s.b }, noloc);
	bn->shape = s.d->shape;
	assert_broken(s, "batchnorm");
}

static void test_verify_input_not_earlier(void **state)
{
	(void)state;
	Small s = small();
	IrNode *r = ir_new_node(s.g, IR_RELU, 1, &s.d, noloc);
	r->shape = s.d->shape;
	s.d->in[0] = r;	/* a cycle: dense reads the relu made after it */
	assert_broken(s, "%3");

	s = small();
	IrNode *self = ir_new_node(s.g, IR_RELU, 1, &s.d, noloc);
	self->shape = s.d->shape;
	self->in[0] = self;
	assert_broken(s, "%4");

	/* a node of another graph */
	s = small();
	Small other = small();
	s.d->in[0] = other.x;
	assert_broken(s, "%3");
	arena_free(other.arena);

	s = small();
	s.d->in[2] = NULL;
	assert_broken(s, "%3");
}

static void test_verify_duplicate_param_names(void **state)
{
	(void)state;
	Small s = small();
	s.b->name = "dense1.weight";
	assert_broken(s, "dense1.weight");

	/* a buffer may not share a parameter's name either */
	s = small();
	IrNode *buf = ir_new_source(s.g, IR_BUFFER, "dense1.bias", noloc);
	buf->shape = shp(1, 3, 0, 0, 0);
	assert_broken(s, "dense1.bias");
}

static void test_verify_batched_or_unnamed_param(void **state)
{
	(void)state;
	Small s = small();
	s.w->batched = true;
	assert_broken(s, "%1");

	s = small();
	s.b->name = NULL;
	assert_broken(s, "%2");
}

static void test_verify_shapes(void **state)
{
	(void)state;
	Small s = small();
	s.d->shape = shape_poison();
	assert_broken(s, "%3");

	s = small();
	s.w->shape = shp(2, 3, 0, 0, 0);
	assert_broken(s, "%1");

	s = small();
	s.x->shape.rank = IR_MAX_RANK + 1;
	assert_broken(s, "%0");
}

static void test_verify_targets_and_losses(void **state)
{
	(void)state;
	Small s = small();
	IrNode *y = ir_new_source(s.g, IR_TARGET, "y", noloc);
	y->a.classes = 3;
	y->shape.rank = 0;	/* but still f32: a class target must be i64 */
	assert_broken(s, "%4");

	s = small();
	IrNode *t = ir_new_source(s.g, IR_TARGET, "t", noloc);
	t->shape = s.d->shape;
	IrNode *l = ir_new_node(s.g, IR_MSE, 2, (IrNode *[]){ s.d, t }, noloc);
	l->shape.rank = 0;
	l->batched = false;
	s.g->loss = l;
	char buf[256];
	assert_null(verify(&s, buf, sizeof buf));
	l->batched = true;	/* a loss per sample is not a loss */
	assert_broken(s, "%5");

	s = small();
	t = ir_new_source(s.g, IR_TARGET, "t", noloc);
	t->shape = s.d->shape;
	IrNode *sum = ir_new_node(s.g, IR_ADD, 2, (IrNode *[]){ s.d, t }, noloc);
	sum->shape = s.d->shape;
	s.g->loss = sum;	/* batched, rank 1 */
	assert_broken(s, "loss");
}

static void test_verify_outputs(void **state)
{
	(void)state;
	Small s = small();
	Small other = small();
	s.g->outputs[0] = other.d;
	assert_broken(s, "output 0");
	arena_free(other.arena);

	s = small();
	s.g->output_names[0] = NULL;
	assert_broken(s, "output 0");
}

static void test_verify_node_order(void **state)
{
	(void)state;
	Small s = small();
	IrNode *t = s.g->nodes[1];
	s.g->nodes[1] = s.g->nodes[2];
	s.g->nodes[2] = t;
	assert_broken(s, "node 1");
}

static void test_verify_many_params_is_fast(void **state)
{
	(void)state;
	/* a hundred thousand parameters, as a big model has: verification must not be quadratic */
	Arena *a = arena_new();
	IrGraph *g = ir_new_graph(a, "big", noloc);
	for (int i = 0; i < 100000; i++) {
		IrNode *p = ir_new_source(g, IR_PARAM, arena_printf(a, "layer%d.weight", i), noloc);
		p->shape = shp(1, 1, 0, 0, 0);
	}
	char buf[256];
	clock_t t0 = clock();
	assert_null(ir_verify(g, buf, sizeof buf));
	double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
	if (secs > 5)
		fail_msg("verifying 100000 parameters took %.1f s", secs);
	g->nodes[99999]->name = "layer5.weight";
	const char *r = ir_verify(g, buf, sizeof buf);
	assert_non_null(r);
	assert_non_null(strstr(r, "%99999"));
	arena_free(a);
}

/* what ir_print or ir_print_dot writes, in a malloc'd string */
static char *printed(const IrGraph *g, bool dot)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	assert_non_null(f);
	if (dot)
		ir_print_dot(f, g);
	else
		ir_print(f, g);
	fclose(f);
	return text;
}

#define assert_has_line(text, line)                                                    \
	do {                                                                           \
		if (!strstr((text), line "\n"))                                        \
			fail_msg("missing line \"%s\" in:\n%s", line, (text));        \
	} while (0)

static void test_printer(void **state)
{
	(void)state;
	Compile *c = compile_ok("model m {\n  input x: [1, 8, 8]\n  target y: class(3)\n"
				"  h = x -> conv2d(4, kernel=[3, 1], pad=1, stride=[1, 2]) -> batchnorm -> leaky_relu(0.2)\n"
				"  z = h -> maxpool(2) -> flatten -> dense(3, bias=false) -> dropout(0.25)\n"
				"  output z\n  loss 0.5 * cross_entropy(z, y)\n}\n");
	char *t = printed(c->model->graph, false);
	assert_int_equal(strncmp(t, "graph m {\n", 10), 0);
	assert_has_line(t, "  %0 = input \"x\" : f32[N,1,8,8]  # x");
	assert_has_line(t, "  %1 = target \"y\" classes=3 : i64[N]  # y");
	assert_has_line(t, "  %2 = param \"conv1.weight\" : f32[4,1,3,1]  # conv1");
	assert_has_line(t, "  %4 = conv2d %0, %2, %3 filters=4 kernel=[3,1] stride=[1,2] pad=[1,1,1,1] dilation=1 groups=1"
			   " : f32[N,4,8,5]  # conv1");
	assert_has_line(t, "  %7 = buffer \"bn1.running_mean\" : f32[4]  # bn1");
	assert_has_line(t, "  %9 = batchnorm %4, %5, %6, %7, %8 momentum=0.1 eps=1e-05 : f32[N,4,8,5]  # bn1");
	assert_has_line(t, "  %10 = leaky_relu %9 slope=0.2 : f32[N,4,8,5]  # leaky_relu1");
	assert_has_line(t, "  %11 = maxpool %10 kernel=2 stride=2 pad=[0,0,0,0] : f32[N,4,4,2]  # maxpool1");
	assert_has_line(t, "  %14 = dense %12, %13 units=3 : f32[N,3]  # dense1");
	assert_has_line(t, "  %15 = dropout %14 p=0.25 : f32[N,3]  # dropout1");
	assert_has_line(t, "  %16 = cross_entropy %15, %1 : f32[]  # cross_entropy1");
	assert_has_line(t, "  %17 = scale %16 by=0.5 : f32[]  # scale1");
	assert_has_line(t, "  output \"z\" = %15");
	assert_has_line(t, "  loss = %17");
	assert_string_equal(t + strlen(t) - 2, "}\n");
	free(t);
	compile_free(c);
}

static void test_printer_unshaped_and_transposed(void **state)
{
	(void)state;
	Compile *c = compile_ok("model m {\n  input x: [2, 4, 4]\n"
				"  y = x -> conv_transpose2d(3, kernel=3, stride=2, output_pad=1) -> upsample(2, mode=\"bilinear\")\n"
				"  output y\n}\n");
	char *t = printed(c->model->graph, false);
	assert_has_line(t, "  %3 = conv_transpose2d %0, %1, %2 filters=3 kernel=3 stride=2 pad=[0,0,0,0] dilation=1"
			   " output_pad=1 : f32[N,3,10,10]  # deconv1");
	assert_has_line(t, "  %4 = upsample %3 scale=2 mode=bilinear : f32[N,3,20,20]  # upsample1");
	free(t);
	compile_free(c);

	Small s = small();
	ir_new_node(s.g, IR_RELU, 1, &s.d, noloc);
	t = printed(s.g, false);
	assert_has_line(t, "  %4 = relu %3 : f32[N,?]");
	free(t);
	arena_free(s.arena);
}

static void test_printer_dot(void **state)
{
	(void)state;
	Small s = small();
	char *t = printed(s.g, true);
	assert_int_equal(strncmp(t, "digraph \"small\" {\n", 18), 0);
	assert_has_line(t, "  n0 -> n3;");
	assert_has_line(t, "  n1 -> n3;");
	assert_has_line(t, "  n2 -> n3;");
	assert_has_line(t, "  n3 -> out0;");
	assert_non_null(strstr(t, "n1 [label=\"dense1.weight\\nparam\\nf32[3,4]\", style=dashed];"));
	assert_non_null(strstr(t, "n3 [label=\"dense1\\ndense\\nf32[N,3]\"];"));
	free(t);
	arena_free(s.arena);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_builders),
		cmocka_unit_test(test_op_table),
		cmocka_unit_test(test_shapes),
		cmocka_unit_test(test_numel),
		cmocka_unit_test(test_verify_accepts_a_good_graph),
		cmocka_unit_test(test_verify_wrong_arity),
		cmocka_unit_test(test_verify_input_not_earlier),
		cmocka_unit_test(test_verify_duplicate_param_names),
		cmocka_unit_test(test_verify_batched_or_unnamed_param),
		cmocka_unit_test(test_verify_shapes),
		cmocka_unit_test(test_verify_targets_and_losses),
		cmocka_unit_test(test_verify_outputs),
		cmocka_unit_test(test_verify_node_order),
		cmocka_unit_test(test_verify_many_params_is_fast),
		cmocka_unit_test(test_printer),
		cmocka_unit_test(test_printer_unshaped_and_transposed),
		cmocka_unit_test(test_printer_dot),
	};
	return cmocka_run_group_tests_name("ir", tests, NULL, NULL);
}
