/*
 * test_gradcheck.c: the gradient oracle (DESIGN.md, "Three oracles"). For
 * every op and loss with a gradient rule, a small model is compiled to loop
 * IR and run in double precision by the interpreter (loop_interp.c); the
 * gradient the compiler derived must match central finite differences.
 *
 * Symbolic gradient: one train_step with sgd(lr=1) and no momentum moves
 * each parameter by exactly -grad, so grad = p_before - p_after.
 * Numeric gradient: (L(p + h) - L(p - h)) / 2h per element, with L the loss
 * train_step returns when the learning rate is 0 (nothing moves, and the
 * loss includes the l1 and l2 terms the gradient includes).
 *
 * Error measure, element-wise: |s - f| / max(|s| + |f|, 1e-8) for the
 * symbolic s and numeric f of each parameter element; a test passes when the
 * worst element over all parameters is below 1e-6. With h = 1e-5 and a
 * loss near 1 the difference quotient is good to about 1e-11 absolute
 * (truncation h^2 f'''/6, rounding 1e-16/h), far below the gradients here.
 * The kinks of relu, leaky_relu, elu, mae and l1 lie away from the points
 * the fixed random inputs and weights produce; a kink within h of one would
 * show as a large error, so a pass is not luck.
 *
 * NNC_GRADCHECK_VERBOSE=1 prints the worst error of each test.
 */
#include "support.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "loop.h"
#include "loop_interp.h"

enum { BATCH = 3 };

static const double TOL = 1e-6;

typedef void (*Tweak)(LoopMachine *lm);

/* splitmix64: the test's own data, fixed, independent of the compiler's generator */
static uint64_t mix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static double unit(uint64_t *s)
{
	return (double)(mix(s) >> 11) * 0x1p-53;
}

typedef struct Check {
	const char *name;
	Compile *c;
	LoopMachine *lm;
	double *x;
	int64_t *labels;
	double *t;
	bool reseed;		/* reseed the context's generator before every step: one dropout mask */
	double **saved;		/* persistent buffers, by buffer id */
} Check;

static bool persistent(const LoopBuf *b)
{
	return b->kind == LB_PARAM || b->kind == LB_STATE || b->kind == LB_OPT;
}

static void check_open(Check *k, const char *name, const char *src, Tweak tweak)
{
	k->name = name;
	k->c = compile_loops_ok(src);
	const LoopModule *m = k->c->loops;
	k->lm = loop_machine_new(m, BATCH, 11);
	if (tweak)
		tweak(k->lm);
	uint64_t s = 2024;
	k->x = calloc((size_t)(BATCH * m->meta.in_elems), sizeof *k->x);
	for (int64_t i = 0; i < BATCH * m->meta.in_elems; i++)
		k->x[i] = 2 * unit(&s) - 1;
	if (m->meta.class_target) {
		k->labels = calloc(BATCH, sizeof *k->labels);
		for (int64_t i = 0; i < BATCH; i++)
			k->labels[i] = (2 * i + 1) % m->meta.classes;
	} else {
		k->t = calloc((size_t)(BATCH * m->meta.target_elems), sizeof *k->t);
		for (int64_t i = 0; i < BATCH * m->meta.target_elems; i++)
			k->t[i] = 0.05 + 0.9 * unit(&s);
	}
	k->saved = calloc((size_t)m->nbufs + 1, sizeof *k->saved);
	for (int i = 0; i < m->nbufs; i++)
		if (persistent(m->bufs[i]))
			k->saved[i] = calloc((size_t)m->bufs[i]->elems, sizeof(double));
}

static void check_close(Check *k)
{
	for (int i = 0; i < k->c->loops->nbufs; i++)
		free(k->saved[i]);
	free(k->saved);
	free(k->x);
	free(k->labels);
	free(k->t);
	loop_machine_free(k->lm);
	compile_free(k->c);
}

static void save(Check *k)
{
	const LoopModule *m = k->c->loops;
	for (int i = 0; i < m->nbufs; i++)
		if (k->saved[i])
			memcpy(k->saved[i], loop_machine_buf(k->lm, m->bufs[i]->name), sizeof(double) * (size_t)m->bufs[i]->elems);
}

static void restore(Check *k)
{
	const LoopModule *m = k->c->loops;
	for (int i = 0; i < m->nbufs; i++)
		if (k->saved[i])
			memcpy(loop_machine_buf(k->lm, m->bufs[i]->name), k->saved[i], sizeof(double) * (size_t)m->bufs[i]->elems);
}

static double step(Check *k, double lr)
{
	loop_machine_set_lr(k->lm, lr);
	if (k->reseed)
		loop_machine_seed_rng(k->lm, 5);
	const void *y = k->labels ? (const void *)k->labels : (const void *)k->t;
	double loss = loop_machine_run(k->lm, "train_step", BATCH, k->x, y, NULL);
	if (!isfinite(loss))
		fail_msg("%s: the loss is %g", k->name, loss);
	return loss;
}

static double rel_err(double s, double f)
{
	double den = fabs(s) + fabs(f);
	return fabs(s - f) / (den > 1e-8 ? den : 1e-8);
}

/* the worst error over the elements of one parameter */
static double check_param(Check *k, const LoopBuf *b, double h)
{
	double *p = loop_machine_buf(k->lm, b->name), worst = 0;
	int64_t e = b->elems;
	double *grad = calloc((size_t)e, sizeof *grad);
	save(k);
	step(k, 1);
	for (int64_t i = 0; i < e; i++)
		grad[i] = k->saved[b->id][i] - p[i];
	restore(k);
	for (int64_t i = 0; i < e; i++) {
		double p0 = p[i];
		p[i] = p0 + h;
		double lp = step(k, 0);
		p[i] = p0 - h;
		double lm = step(k, 0);
		restore(k);
		double fd = (lp - lm) / (2 * h), err = rel_err(grad[i], fd);
		if (getenv("NNC_GRADCHECK_VERBOSE") && err > worst && err > 1e-8)
			printf("    %s[%" PRId64 "]: symbolic %.12g, numeric %.12g\n", b->name, i, grad[i], fd);
		worst = err > worst ? err : worst;
	}
	free(grad);
	return worst;
}

/* compiles src, checks every parameter's gradient; returns the worst error */
static double gradcheck_with(const char *name, const char *src, double h, Tweak tweak, bool reseed)
{
	Check k = { .reseed = reseed };
	check_open(&k, name, src, tweak);
	const LoopModule *m = k.c->loops;
	double worst = 0;
	int nparams = 0;
	for (int i = 0; i < m->nbufs; i++)
		if (m->bufs[i]->kind == LB_PARAM) {
			double e = check_param(&k, m->bufs[i], h);
			worst = e > worst ? e : worst;
			nparams++;
		}
	if (getenv("NNC_GRADCHECK_VERBOSE"))
		printf("gradcheck %-28s worst relative error %.2e over %d parameters\n", name, worst, nparams);
	assert_true(nparams > 0);
	check_close(&k);
	return worst;
}

static void gradcheck(const char *name, const char *src, double h)
{
	double worst = gradcheck_with(name, src, h, NULL, false);
	if (!(worst < TOL))
		fail_msg("%s: worst relative error %.3g (tolerance %.0e)", name, worst, TOL);
}

/* ---- models ---- */

#define TRAIN "train {\n  optimizer = sgd(lr=1)\n}\n"
/* x [5] -> dense(4) -> ACT -> dense(3), cross entropy on class labels */
#define ACT_MODEL(act)                                                                 \
	"model m {\n  input x: [5]\n  target y: class(3)\n"                            \
	"  h = x -> dense(4) -> " act " -> dense(3)\n"                                 \
	"  output h\n  loss cross_entropy(h, y)\n}\n" TRAIN
/* x [5], float target t [3]; BODY defines h [3] */
#define REG_MODEL(body, loss)                                                          \
	"model m {\n  input x: [5]\n  target t: [3]\n" body                            \
	"  output h\n  loss " loss "\n}\n" TRAIN

static const double H = 1e-5;	/* the finite-difference step */

static void test_relu(void **state) { (void)state; gradcheck("relu", ACT_MODEL("relu"), H); }
static void test_leaky_relu(void **state)
{
	(void)state;
	gradcheck("leaky_relu(slope=0.2)", ACT_MODEL("leaky_relu(slope=0.2)"), H);
	gradcheck("leaky_relu (default)", ACT_MODEL("leaky_relu"), H);
}
static void test_elu(void **state)
{
	(void)state;
	gradcheck("elu(alpha=0.7)", ACT_MODEL("elu(alpha=0.7)"), H);
	gradcheck("elu (default)", ACT_MODEL("elu"), H);
}
static void test_sigmoid(void **state) { (void)state; gradcheck("sigmoid", ACT_MODEL("sigmoid"), H); }
static void test_tanh(void **state) { (void)state; gradcheck("tanh", ACT_MODEL("tanh"), H); }
static void test_gelu(void **state) { (void)state; gradcheck("gelu", ACT_MODEL("gelu"), H); }
static void test_softmax(void **state) { (void)state; gradcheck("softmax", ACT_MODEL("softmax"), H); }
static void test_log_softmax(void **state) { (void)state; gradcheck("log_softmax", ACT_MODEL("log_softmax"), H); }

static void test_softplus_below_threshold(void **state)
{
	(void)state;
	gradcheck("softplus (below 20)", ACT_MODEL("softplus"), H);
}

/* biases of 30 and 26 put two units above softplus's threshold of 20 for any
 * input (|x . w| <= sqrt(5) here), where softplus is the identity; the other
 * two stay below it */
static void big_biases(LoopMachine *lm)
{
	double *b = loop_machine_buf(lm, "dense1.bias");
	assert_non_null(b);
	b[0] = 30;
	b[2] = 26;
}

static void test_softplus_above_threshold(void **state)
{
	(void)state;
	const char *src = REG_MODEL("  h = x -> dense(4) -> softplus -> dense(3)\n", "mse(h, t)");
	double worst = gradcheck_with("softplus (above 20)", src, H, big_biases, false);
	assert_true(worst < TOL);
}

static void test_dense(void **state)
{
	(void)state;
	gradcheck("dense", REG_MODEL("  h = x -> dense(3)\n", "mse(h, t)"), H);
	gradcheck("dense(bias=false)", ACT_MODEL("tanh -> dense(4, bias=false)"), H);
	gradcheck("dense(bias=false) first",
		  REG_MODEL("  h = x -> dense(4, bias=false) -> tanh -> dense(3, bias=false)\n", "mse(h, t)"), H);
}

static void test_add(void **state)
{
	(void)state;
	gradcheck("add [4] + [4] residual",
		  REG_MODEL("  a = x -> dense(4) -> tanh\n  b = a -> dense(4)\n  s = a + b\n  h = s -> dense(3)\n",
			    "mse(h, t)"), H);
	gradcheck("add [4] + [1]",
		  REG_MODEL("  a = x -> dense(4)\n  b = x -> dense(1)\n  s = a + b\n  h = s -> tanh -> dense(3)\n",
			    "mse(h, t)"), H);
	gradcheck("add [1] + [4]",
		  REG_MODEL("  a = x -> dense(4)\n  b = x -> dense(1)\n  s = b + a\n  h = s -> tanh -> dense(3)\n",
			    "mse(h, t)"), H);
	gradcheck("add h + h", REG_MODEL("  a = x -> dense(4)\n  s = a + a\n  h = s -> tanh -> dense(3)\n", "mse(h, t)"),
		  H);
}

static void test_mul(void **state)
{
	(void)state;
	gradcheck("mul [4] * [4]",
		  REG_MODEL("  a = x -> dense(4)\n  b = x -> dense(4) -> sigmoid\n  s = a * b\n  h = s -> dense(3)\n",
			    "mse(h, t)"), H);
	gradcheck("mul [4] * [1]",
		  REG_MODEL("  a = x -> dense(4)\n  b = x -> dense(1)\n  s = a * b\n  h = s -> dense(3)\n", "mse(h, t)"),
		  H);
	gradcheck("mul [1] * [4]",
		  REG_MODEL("  a = x -> dense(4)\n  b = x -> dense(1)\n  s = b * a\n  h = s -> dense(3)\n", "mse(h, t)"),
		  H);
	gradcheck("mul h * h", REG_MODEL("  a = x -> dense(4)\n  s = a * a\n  h = s -> dense(3)\n", "mse(h, t)"), H);
}

static void test_scale(void **state)
{
	(void)state;
	gradcheck("number * tensor",
		  REG_MODEL("  a = x -> dense(4)\n  s = 2.5 * a\n  h = s -> tanh -> dense(3)\n", "mse(h, t)"), H);
	gradcheck("tensor * number",
		  REG_MODEL("  a = x -> dense(4)\n  s = a * -0.75\n  h = s -> tanh -> dense(3)\n", "mse(h, t)"), H);
}

static void test_flatten(void **state)
{
	(void)state;
	gradcheck("flatten [2, 3, 2] -> dense",
		  "model m {\n  input x: [2, 3, 2]\n  target y: class(3)\n"
		  "  h = x -> flatten -> dense(4) -> tanh -> dense(3)\n"
		  "  output h\n  loss cross_entropy(h, y)\n}\n" TRAIN, H);
	/* on rank 1 flatten is a no-op, but its gradient rule (a reshape) runs */
	gradcheck("flatten [4]", ACT_MODEL("flatten -> tanh"), H);
}

static void test_cross_entropy(void **state)
{
	(void)state;
	gradcheck("cross_entropy (labels)", ACT_MODEL("tanh"), H);
	/* probabilities that do not sum to 1 exercise the sum(t) term of the gradient */
	gradcheck("cross_entropy (probabilities)",
		  REG_MODEL("  h = x -> dense(4) -> tanh -> dense(3)\n", "cross_entropy(h, t)"), H);
}

static void test_bce(void **state)
{
	(void)state;
	gradcheck("bce", REG_MODEL("  h = x -> dense(4) -> tanh -> dense(3)\n", "bce(h, t)"), H);
}

static void test_mse(void **state)
{
	(void)state;
	gradcheck("mse", REG_MODEL("  h = x -> dense(4) -> tanh -> dense(3)\n", "mse(h, t)"), H);
}

static void test_mae(void **state)
{
	(void)state;
	gradcheck("mae", REG_MODEL("  h = x -> dense(4) -> tanh -> dense(3)\n", "mae(h, t)"), H);
}

static void test_rmse(void **state)
{
	(void)state;
	gradcheck("rmse", REG_MODEL("  h = x -> dense(4) -> tanh -> dense(3)\n", "rmse(h, t)"), H);
}

static void test_sum_of_losses(void **state)
{
	(void)state;
	gradcheck("mse + 0.5 * mae", REG_MODEL("  h = x -> dense(4) -> tanh -> dense(3)\n", "mse(h, t) + 0.5 * mae(h, t)"),
		  H);
}

/* a loss whose second argument is computed from parameters */
static void test_computed_target(void **state)
{
	(void)state;
	gradcheck("mse(h, computed)", REG_MODEL("  h = x -> dense(3)\n  g = x -> dense(3) -> tanh\n", "mse(h, g)"), H);
	gradcheck("mae(h, computed)", REG_MODEL("  h = x -> dense(3)\n  g = x -> dense(3) -> tanh\n", "mae(h, g)"), H);
	gradcheck("rmse(h, computed)", REG_MODEL("  h = x -> dense(3)\n  g = x -> dense(3) -> tanh\n", "rmse(h, g)"), H);
}

static void test_l1_l2(void **state)
{
	(void)state;
	const char *src = "model m {\n  input x: [5]\n  target y: class(3)\n"
			  "  h = x -> dense(4) -> tanh -> dense(3)\n"
			  "  output h\n  loss cross_entropy(h, y)\n}\n"
			  "train {\n  optimizer = sgd(lr=1)\n  l2 = 0.1\n  l1 = 0.01\n}\n";
	gradcheck("l1 + l2", src, H);
	gradcheck("l2", "model m {\n  input x: [5]\n  target t: [3]\n  h = x -> dense(3)\n  output h\n  loss mse(h, t)\n}\n"
			"train {\n  optimizer = sgd(lr=1)\n  l2 = 0.3\n}\n", H);
}

/* dropout: the same mask in every run (the generator is reseeded), so the loss is a smooth function */
static void test_dropout(void **state)
{
	(void)state;
	double worst = gradcheck_with("dropout(0.5)", ACT_MODEL("dropout(0.5) -> tanh"), H, NULL, true);
	assert_true(worst < TOL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_relu),
		cmocka_unit_test(test_leaky_relu),
		cmocka_unit_test(test_elu),
		cmocka_unit_test(test_sigmoid),
		cmocka_unit_test(test_tanh),
		cmocka_unit_test(test_gelu),
		cmocka_unit_test(test_softmax),
		cmocka_unit_test(test_log_softmax),
		cmocka_unit_test(test_softplus_below_threshold),
		cmocka_unit_test(test_softplus_above_threshold),
		cmocka_unit_test(test_dense),
		cmocka_unit_test(test_add),
		cmocka_unit_test(test_mul),
		cmocka_unit_test(test_scale),
		cmocka_unit_test(test_flatten),
		cmocka_unit_test(test_cross_entropy),
		cmocka_unit_test(test_bce),
		cmocka_unit_test(test_mse),
		cmocka_unit_test(test_mae),
		cmocka_unit_test(test_rmse),
		cmocka_unit_test(test_sum_of_losses),
		cmocka_unit_test(test_computed_target),
		cmocka_unit_test(test_l1_l2),
		cmocka_unit_test(test_dropout),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
