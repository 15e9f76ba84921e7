/*
 * test_loop_interp.c: the loop IR interpreter (compiler/loop_interp.c) on
 * small models whose results are worked out by hand, and its initializers
 * and random numbers against the runtime's, which the generated code calls.
 */
#include "support.h"

#include <math.h>

#include "loop.h"
#include "loop_interp.h"

/* the runtime's generator and initializers, built into this test: what
 * generated code calls, so the interpreter must give the same numbers */
#include "../../runtime/rng.c"

static void set(double *dst, const double *src, int n)
{
	memcpy(dst, src, sizeof *dst * (size_t)n);
}

/* out = x w^T + b with w = [[1, 2], [3, 4]], b = [0.5, -1] */
static void test_dense_forward(void **state)
{
	(void)state;
	Compile *c = compile_loops_ok("model m {\n  input x: [2]\n  h = x -> dense(2)\n  output h\n}\n");
	LoopMachine *lm = loop_machine_new(c->loops, 4, 1);
	set(loop_machine_buf(lm, "dense1.weight"), (const double[]){ 1, 2, 3, 4 }, 4);
	set(loop_machine_buf(lm, "dense1.bias"), (const double[]){ 0.5, -1 }, 2);
	const double x[] = { 1, 1, 2, -1, 0.25, 0 };
	double out[6];
	loop_machine_run(lm, "forward", 3, x, NULL, out);
	const double want[] = { 3.5, 6, 0.5, 1, 0.75, -0.25 };
	for (int i = 0; i < 6; i++)
		assert_true(out[i] == want[i]);
	loop_machine_free(lm);
	compile_free(c);
}

/* equal logits: every class has probability 1/3 and the loss is log 3; the
 * mse of h = x against t: ((1-0)^2 + (2-4)^2) / 2 = 2.5 */
static void test_eval_losses(void **state)
{
	(void)state;
	Compile *c = compile_loops_ok("model m {\n  input x: [3]\n  target y: class(3)\n  h = x -> dense(3)\n"
				      "  output h\n  loss cross_entropy(h, y)\n}\n");
	LoopMachine *lm = loop_machine_new(c->loops, 2, 1);
	memset(loop_machine_buf(lm, "dense1.weight"), 0, sizeof(double) * 9);
	memset(loop_machine_buf(lm, "dense1.bias"), 0, sizeof(double) * 3);
	const double x[] = { 1, 2, 3, -1, 0, 5 };
	const int64_t y[] = { 2, 0 };
	assert_true(fabs(loop_machine_run(lm, "eval", 2, x, y, NULL) - log(3.0)) < 1e-15);
	/* w[2][2] = log(2) / 5: logits [0, 0, 3 log(2) / 5] with label 2, and
	 * [0, 0, log 2] with label 0, whose loss is log(1 + 1 + 2) - 0 */
	loop_machine_buf(lm, "dense1.weight")[8] = log(2.0) / 5;
	double z = 3 * log(2.0) / 5, want0 = log(2 + exp(z)) - z;
	assert_true(fabs(loop_machine_run(lm, "eval", 2, x, y, NULL) - (want0 + log(4.0)) / 2) < 1e-15);
	loop_machine_free(lm);
	compile_free(c);

	c = compile_loops_ok("model m {\n  input x: [2]\n  target t: [2]\n  output x\n  loss mse(x, t)\n}\n");
	lm = loop_machine_new(c->loops, 1, 1);
	assert_true(loop_machine_run(lm, "eval", 1, (const double[]){ 1, 2 }, (const double[]){ 0, 4 }, NULL) == 2.5);
	loop_machine_free(lm);
	compile_free(c);
}

#define ONE_WEIGHT(opt)                                                                \
	"model m {\n  input x: [1]\n  target t: [1]\n  h = x -> dense(1, bias=false)\n"  \
	"  output h\n  loss mse(h, t)\n}\ntrain {\n  optimizer = " opt "\n}\n"

/* w = 2, x = [1, 3], t = [0, 0]: h = [2, 6], loss = (4 + 36) / 2 = 20,
 * dL/dw = mean of 2 (h - t) x = (2*2*1 + 2*6*3) / 2 = 20 */
static void test_sgd_step(void **state)
{
	(void)state;
	Compile *c = compile_loops_ok(ONE_WEIGHT("sgd(lr=0.01)"));
	LoopMachine *lm = loop_machine_new(c->loops, 2, 1);
	double *w = loop_machine_buf(lm, "dense1.weight");
	assert_int_equal(loop_machine_buf_len(lm, "dense1.weight"), 1);
	*w = 2;
	assert_true(loop_machine_lr(lm) == 0.01);
	double out[2];
	double loss = loop_machine_run(lm, "train_step", 2, (const double[]){ 1, 3 }, (const double[]){ 0, 0 }, out);
	assert_true(loss == 20);
	assert_true(fabs(*w - (2 - 0.01 * 20)) < 1e-15);
	assert_true(out[0] == 2 && out[1] == 6);	/* the outputs before the update */
	assert_int_equal(loop_machine_step(lm), 1);
	loop_machine_run(lm, "forward", 1, (const double[]){ 1 }, NULL, out);
	assert_int_equal(loop_machine_step(lm), 1);	/* only training counts steps */
	assert_true(fabs(out[0] - 1.8) < 1e-15);
	loop_machine_free(lm);
	compile_free(c);
}

/* adam's first step, bias-corrected: m / (1 - b1) = g and sqrt(v / (1 - b2)) = |g|,
 * so w moves by lr g / (|g| + eps) = 0.1 * 20 / (20 + 1e-8) */
static void test_adam_first_step(void **state)
{
	(void)state;
	Compile *c = compile_loops_ok(ONE_WEIGHT("adam(lr=0.1)"));
	LoopMachine *lm = loop_machine_new(c->loops, 2, 1);
	double *w = loop_machine_buf(lm, "dense1.weight");
	*w = 2;
	loop_machine_run(lm, "train_step", 2, (const double[]){ 1, 3 }, (const double[]){ 0, 0 }, NULL);
	/* the constants are float: b1 = 0.9f, 1 - b1 rounded again; allow for it */
	assert_true(fabs(*w - (2 - 0.1 * 20 / (20 + 1e-8))) < 1e-7);
	assert_true(fabs(loop_machine_buf(lm, "dense1.weight.exp_avg")[0] - 0.1 * 20) < 1e-6);
	assert_true(fabs(loop_machine_buf(lm, "dense1.weight.exp_avg_sq")[0] - 0.001 * 400) < 1e-6);
	loop_machine_free(lm);
	compile_free(c);
}

/* parameters start as the generated init() makes them: nnrt_init_uniform
 * from the stream (seed, buffer index) with bound 1/sqrt(fan_in), exactly */
static void test_init_matches_runtime(void **state)
{
	(void)state;
	Compile *c = compile_loops_ok("model m {\n  input x: [7]\n  h = x -> dense(5) -> relu -> dense(3)\n  output h\n}\n");
	const LoopModule *m = c->loops;
	LoopMachine *lm = loop_machine_new(m, 1, 1234);
	int checked = 0;
	for (int i = 0; i < m->nbufs; i++) {
		const LoopBuf *b = m->bufs[i];
		if (b->kind != LB_PARAM)
			continue;
		float want[64];
		NnrtRng r;
		nnrt_rng_seed(&r, 1234, (uint64_t)i);
		assert_int_equal(b->init, LI_UNIFORM);
		assert_true(b->elems <= 64);
		nnrt_init_uniform(&r, want, b->elems, (float)b->init_value);
		const double *got = loop_machine_buf(lm, b->name);
		for (int64_t k = 0; k < b->elems; k++)
			assert_true(got[k] == (double)want[k]);
		checked++;
	}
	assert_int_equal(checked, 4);
	/* PyTorch's bounds: 1/sqrt(fan_in) for weight and bias; dense2's fan_in is 5 */
	assert_true(fabs(loop_find_buf(m, "dense2.weight")->init_value - 1 / sqrt(5.0)) < 1e-15);
	assert_true(fabs(loop_find_buf(m, "dense2.bias")->init_value - 1 / sqrt(5.0)) < 1e-15);
	assert_true(fabs(loop_find_buf(m, "dense1.bias")->init_value - 1 / sqrt(7.0)) < 1e-15);
	loop_machine_free(lm);
	compile_free(c);
}

/* dropout(0.5) keeps an element with the factor 2 or zeroes it, drawing
 * nnrt_rng_uniform from the context's stream (seed, 0x6e6e63) in order */
static void test_dropout_draws_like_runtime(void **state)
{
	(void)state;
	Compile *c = compile_loops_ok("model m {\n  input x: [16]\n  target t: [16]\n  h = x -> dropout(0.5)\n"
				      "  output h\n  loss mse(h, t)\n}\n");
	LoopMachine *lm = loop_machine_new(c->loops, 2, 99);
	double x[32], t[32] = { 0 }, out[32];
	for (int i = 0; i < 32; i++)
		x[i] = i + 1;
	loop_machine_run(lm, "train_step", 2, x, t, out);
	NnrtRng r;
	nnrt_rng_seed(&r, 99, 0x6e6e63);
	int kept = 0;
	for (int i = 0; i < 32; i++) {
		bool keep = nnrt_rng_uniform(&r) >= 0.5f;
		assert_true(out[i] == (keep ? 2 * x[i] : 0));
		kept += keep;
	}
	assert_true(kept > 0 && kept < 32);
	loop_machine_run(lm, "forward", 2, x, NULL, out);	/* inference: the identity */
	for (int i = 0; i < 32; i++)
		assert_true(out[i] == x[i]);
	loop_machine_free(lm);
	compile_free(c);
}

/* a smaller batch than the machine holds; out may be NULL */
static void test_partial_batch(void **state)
{
	(void)state;
	Compile *c = compile_loops_ok("model m {\n  input x: [2]\n  target y: class(2)\n  h = x -> dense(2)\n"
				      "  output h\n  loss cross_entropy(h, y)\n}\n");
	LoopMachine *lm = loop_machine_new(c->loops, 8, 3);
	memset(loop_machine_buf(lm, "dense1.weight"), 0, sizeof(double) * 4);
	memset(loop_machine_buf(lm, "dense1.bias"), 0, sizeof(double) * 2);
	double loss = loop_machine_run(lm, "train_step", 1, (const double[]){ 1, 2 }, (const int64_t[]){ 1 }, NULL);
	assert_true(fabs(loss - log(2.0)) < 1e-15);
	assert_null(loop_machine_buf(lm, "x"));
	assert_null(loop_machine_buf(lm, "no.such"));
	assert_int_equal(loop_machine_buf_len(lm, "no.such"), 0);
	loop_machine_free(lm);
	compile_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dense_forward),
		cmocka_unit_test(test_eval_losses),
		cmocka_unit_test(test_sgd_step),
		cmocka_unit_test(test_adam_first_step),
		cmocka_unit_test(test_init_matches_runtime),
		cmocka_unit_test(test_dropout_draws_like_runtime),
		cmocka_unit_test(test_partial_batch),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
