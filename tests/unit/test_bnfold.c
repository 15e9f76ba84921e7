/*
 * test_bnfold.c: passes/bnfold.c and the prepare function lower.c makes for
 * it. In the loop interpreter (double), with batchnorm statistics far from
 * init's written into the weights and prepare run again (as load does), the
 * folded forward pass must match the unfolded one within 1e-9 relative; the
 * folded graph has no batchnorm left, a module that trains is never folded,
 * and a layer whose value has another user is left alone.
 */
#include "support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "loop.h"
#include "loop_interp.h"

enum { BATCH = 3 };

/* dense, conv2d without bias, grouped conv2d, conv_transpose2d, two batchnorms in a row */
static const char *const bn_model =
	"model m {\n"
	"  input x: [2, 6, 6]\n  target y: class(3)\n"
	"  a = x -> conv2d(4, kernel=3, pad=1, bias=false) -> batchnorm -> relu\n"
	"  b = a -> conv2d(4, kernel=3, stride=2, pad=1, groups=2) -> batchnorm -> batchnorm(eps=0.1) -> relu\n"
	"  c = b -> conv_transpose2d(3, kernel=2, stride=2) -> batchnorm -> tanh\n"
	"  d = c -> flatten -> dense(8) -> batchnorm -> relu -> dense(3)\n"
	"  output d\n  loss cross_entropy(d, y)\n}\n"
	"train {\n  optimizer = sgd(lr=0.1)\n}\n";

/* the convolution's value feeds the batchnorm and a residual: no fold */
static const char *const shared_model =
	"model m {\n"
	"  input x: [2, 4, 4]\n"
	"  h = x -> conv2d(2, kernel=3, pad=1)\n"
	"  o = h + (h -> batchnorm) -> flatten -> dense(2)\n"
	"  output o\n}\n";

static uint64_t rng = 5;

static double unit(void)
{
	uint64_t z = (rng += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return (double)((z ^ (z >> 31)) >> 11) / 9007199254740992.0;
}

static Compile *compile_infer(const char *src, bool fold)
{
	PassOpts p = { .olevel = 2, .frozen = true };
	if (!fold)
		p.disabled[p.ndisabled++] = "bnfold";
	CompileOpts o = { .upto = UPTO_LOOPS, .inference = true, .passes = &p };
	Compile *c = compile_string_opts(src, &o);
	if (c->nerrors || !c->loops)
		fail_msg("expected loop IR, got:\n%s", c->diag.text ? c->diag.text : "");
	return c;
}

static int count_op(const IrGraph *g, IrOp op)
{
	int k = 0;
	for (int i = 0; i < g->nnodes; i++)
		k += g->nodes[i]->op == op;
	return k;
}

/* writes the same random weights into both machines (statistics: mean ~ U(-1, 1),
 * var ~ U(0.2, 3), gamma ~ U(0.5, 1.5)) and reruns prepare where there is one */
static void set_weights(LoopMachine **lm, const LoopModule **m)
{
	const LoopModule *ref = m[1];
	for (int i = 0; i < ref->nbufs; i++) {
		const LoopBuf *b = ref->bufs[i];
		if (b->kind != LB_PARAM && b->kind != LB_STATE)
			continue;
		const char *leaf = strrchr(b->name, '.') + 1;
		char stats[256];
		snprintf(stats, sizeof stats, "%.*s.running_mean", (int)(leaf - 1 - b->name), b->name);
		bool bn = loop_find_buf(ref, stats) != NULL;
		double *w[2] = { loop_machine_buf(lm[0], b->name), loop_machine_buf(lm[1], b->name) };
		assert_non_null(w[0]);
		assert_non_null(w[1]);
		for (int64_t k = 0; k < b->elems; k++) {
			double u = unit();
			double v = !strcmp(leaf, "running_var") ? 0.2 + 2.8 * u : !strcmp(leaf, "running_mean") ? 2 * u - 1 :
				   bn && !strcmp(leaf, "weight") ? 0.5 + u : u - 0.5;
			w[0][k] = w[1][k] = (float)v;
		}
	}
	for (int k = 0; k < 2; k++)
		if (loop_find_fn(m[k], "prepare"))
			loop_machine_run(lm[k], "prepare", 1, NULL, NULL, NULL);
}

static void test_folded_forward_matches(void **state)
{
	(void)state;
	Compile *c[2] = { compile_infer(bn_model, true), compile_infer(bn_model, false) };
	assert_int_equal(count_op(c[0]->infer, IR_BATCHNORM), 0);
	assert_int_equal(count_op(c[1]->infer, IR_BATCHNORM), 5);
	const LoopModule *m[2] = { c[0]->loops, c[1]->loops };
	assert_non_null(loop_find_fn(m[0], "prepare"));
	assert_null(loop_find_fn(m[1], "prepare"));
	/* one kernel fewer per batchnorm: each ran alone or headed an epilogue */
	assert_int_equal(loop_find_fn(m[0], "forward")->kernels + 5, loop_find_fn(m[1], "forward")->kernels);
	LoopMachine *lm[2] = { loop_machine_new(m[0], BATCH, 1), loop_machine_new(m[1], BATCH, 1) };
	set_weights(lm, m);
	int64_t ni = m[0]->meta.in_elems * BATCH, no = m[0]->meta.out_elems * BATCH;
	double *x = malloc(sizeof(double) * (size_t)ni), *o[2] = { calloc((size_t)no, sizeof(double)),
								    calloc((size_t)no, sizeof(double)) };
	for (int64_t i = 0; i < ni; i++)
		x[i] = 2 * unit() - 1;
	int64_t y[BATCH] = { 0, 1, 2 };
	double loss[2];
	for (int k = 0; k < 2; k++) {
		loop_machine_run(lm[k], "forward", BATCH, x, NULL, o[k]);
		loss[k] = loop_machine_run(lm[k], "eval", BATCH, x, y, NULL);
	}
	double scale = 0;
	for (int64_t i = 0; i < no; i++)
		scale = fmax(scale, fabs(o[1][i]));
	assert_true(scale > 0.1);
	for (int64_t i = 0; i < no; i++)
		if (!(fabs(o[0][i] - o[1][i]) <= 1e-9 * scale))
			fail_msg("output %lld: %.17g folded vs %.17g unfolded", (long long)i, o[0][i], o[1][i]);
	assert_true(fabs(loss[0] - loss[1]) <= 1e-9 * fabs(loss[1]));
	for (int k = 0; k < 2; k++) {
		loop_machine_free(lm[k]);
		free(o[k]);
		compile_free(c[k]);
	}
	free(x);
}

/* the weights train: folding would use stale ones after the first step */
static void test_training_build_not_folded(void **state)
{
	(void)state;
	PassOpts p = { .olevel = 2, .frozen = true };
	CompileOpts o = { .upto = UPTO_LOOPS, .passes = &p };
	Compile *c = compile_string_opts(bn_model, &o);
	assert_int_equal(c->nerrors, 0);
	assert_int_equal(count_op(c->infer, IR_BATCHNORM), 5);
	assert_null(loop_find_fn(c->loops, "prepare"));
	compile_free(c);
	/* nor without the back end's promise to run prepare (JIT, LLVM) */
	p.frozen = false;
	o.inference = true;
	c = compile_string_opts(bn_model, &o);
	assert_int_equal(count_op(c->infer, IR_BATCHNORM), 5);
	compile_free(c);
}

static void test_shared_layer_not_folded(void **state)
{
	(void)state;
	Compile *c = compile_infer(shared_model, true);
	assert_int_equal(count_op(c->infer, IR_BATCHNORM), 1);
	assert_null(loop_find_fn(c->loops, "prepare"));
	compile_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_folded_forward_matches),
		cmocka_unit_test(test_training_build_not_folded),
		cmocka_unit_test(test_shared_layer_not_folded),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
