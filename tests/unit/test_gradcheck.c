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

#include "gradcheck.h"

static void gradcheck(const char *name, const char *src, double h)
{
	gradcheck_assert(name, src, h);
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
