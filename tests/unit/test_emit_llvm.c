/*
 * test_emit_llvm.c: the LLVM backend (compiler/emit_llvm.c) through the JIT
 * (compiler/jit.c), against the loop-IR interpreter (loop_interp.c), which
 * follows the C emitter's semantics in double precision. Small models cover
 * every op, loss, optimizer and regularizer: the same seed initializes both,
 * three training steps run on the same batch, then eval and forward; losses,
 * every parameter and optimizer state, and the outputs must agree within
 * 1e-4 of each tensor's scale (float against double, so not bit for bit: the
 * e2e test compares the JIT with the emitted C bit for bit on the examples).
 *
 * Also: the .ll text and the object file of --emit=llvm and --emit=obj, and
 * the JIT's own errors.
 */
#include "support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "emit_llvm.h"
#include "jit.h"
#include "loop.h"
#include "loop_interp.h"
#include "nnrt.h"

enum { BATCH = 4, STEPS = 3, SEED = 7 };
static const double TOL = 1e-4;

#define SGD "train {\n  optimizer = sgd(lr=0.1)\n}\n"
/* x [5] -> dense(4) -> ACT -> dense(3), cross entropy on class labels */
#define ACT_MODEL(act)                                                                 \
	"model m {\n  input x: [5]\n  target y: class(3)\n"                            \
	"  h = x -> dense(4) -> " act " -> dense(3)\n"                                 \
	"  output h\n  loss cross_entropy(h, y)\n}\n" SGD
/* x [5], float target t [3] in [0, 1]; BODY defines h [3] */
#define REG_MODEL(body, loss, train)                                                   \
	"model m {\n  input x: [5]\n  target t: [3]\n" body                            \
	"  output h\n  loss " loss "\n}\n" train
#define OPT_MODEL(opt, extra)                                                          \
	REG_MODEL("  h = x -> dense(4) -> tanh -> dense(3)\n", "mse(h, t)",            \
		  "train {\n  optimizer = " opt "\n" extra "}\n")
/* an image [2, 6, 6] through OPS to a dense layer */
#define IMAGE_MODEL(ops)                                                               \
	"model m {\n  input x: [2, 6, 6]\n  target t: [3]\n"                           \
	"  h = x -> " ops " -> tanh -> flatten -> dense(3)\n"                          \
	"  output h\n  loss mse(h, t)\n}\n" SGD

/* splitmix64: the test's own data */
static double unit(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return (double)((z ^ (z >> 31)) >> 11) * 0x1p-53;
}

/* the worst difference of a against b over the scale of b */
static double rel_diff(const float *a, const double *b, int64_t n)
{
	double worst = 0, scale = 1e-3;
	for (int64_t i = 0; i < n; i++) {
		worst = fmax(worst, fabs((double)a[i] - b[i]));
		scale = fmax(scale, fabs(b[i]));
	}
	return worst / scale;
}

static void check_close(const char *name, const char *what, double jit, double ref)
{
	double d = fabs(jit - ref) / fmax(fabs(ref), 1e-3);
	if (!(d <= TOL))
		fail_msg("%s: %s: JIT %.9g, interpreter %.9g (relative %.3g)", name, what, jit, ref, d);
}

typedef struct Run {
	const LoopModule *m;
	const NnrtModelInfo *info;
	NnrtCtx ctx;
	float **bufs;
	void *arena;
	LoopMachine *lm;
	float *x, *yf, *out;
	double *xd, *yd, *outd;
	int64_t *labels;
} Run;

static void make_data(Run *r)
{
	const LoopMeta *mm = &r->m->meta;
	uint64_t s = 42;
	int64_t nx = BATCH * mm->in_elems, ny = BATCH * mm->target_elems, no = BATCH * (mm->out_elems + 1);
	r->x = calloc((size_t)nx, sizeof *r->x);
	r->xd = calloc((size_t)nx, sizeof *r->xd);
	r->yf = calloc((size_t)ny + 1, sizeof *r->yf);
	r->yd = calloc((size_t)ny + 1, sizeof *r->yd);
	r->labels = calloc(BATCH, sizeof *r->labels);
	r->out = calloc((size_t)no, sizeof *r->out);
	r->outd = calloc((size_t)no, sizeof *r->outd);
	for (int64_t i = 0; i < nx; i++)
		r->xd[i] = r->x[i] = (float)(2 * unit(&s) - 1);
	for (int64_t i = 0; i < ny; i++)
		r->yd[i] = r->yf[i] = (float)unit(&s);
	for (int i = 0; i < BATCH; i++)
		r->labels[i] = mm->classes ? (i * 2 + 1) % mm->classes : 0;
}

static void free_run(Run *r)
{
	free(r->x);
	free(r->xd);
	free(r->yf);
	free(r->yd);
	free(r->labels);
	free(r->out);
	free(r->outd);
	free(r->bufs);
	free(r->arena);
	loop_machine_free(r->lm);
}

/* every persistent buffer (parameters, running statistics, optimizer state) */
static void compare_state(const char *name, Run *r, const char *when)
{
	for (int i = 0; i < r->info->nbufs; i++) {
		const NnrtBuffer *b = &r->info->bufs[i];
		if (b->kind != NNRT_BUF_PARAM && b->kind != NNRT_BUF_STATE && b->kind != NNRT_BUF_OPT)
			continue;
		const double *ref = loop_machine_buf(r->lm, b->name);
		assert_non_null(ref);
		assert_int_equal(loop_machine_buf_len(r->lm, b->name), b->elems);
		double d = rel_diff(r->bufs[i], ref, b->elems);
		if (!(d <= TOL))
			fail_msg("%s: %s %s differs by %.3g of its scale", name, when, b->name, d);
	}
}

static void compare_out(const char *name, Run *r, const char *what)
{
	int64_t n = BATCH * r->m->meta.out_elems;
	double d = rel_diff(r->out, r->outd, n);
	if (!(d <= TOL))
		fail_msg("%s: %s outputs differ by %.3g of their scale", name, what, d);
}

/* the JIT and the interpreter from the same seed, on the same batch */
static void agree(const char *name, const char *src)
{
	Compile *c = compile_loops_ok(src);
	Run r = { .m = c->loops };
	char err[512];
	Jit *j = jit_new(r.m, "m", err, sizeof err);
	if (!j || jit_wait(j, NULL, err, sizeof err))
		fail_msg("%s: %s", name, err);
	r.info = jit_model(j);
	r.bufs = calloc((size_t)r.info->nbufs, sizeof *r.bufs);
	r.arena = aligned_alloc(64, (nnrt_arena_size(r.info, BATCH) + 64) & ~(size_t)63);
	nnrt_init(&r.ctx, r.info, r.bufs, r.arena, BATCH, SEED);
	r.lm = loop_machine_new(r.m, BATCH, SEED);
	make_data(&r);
	bool cls = r.m->meta.class_target;
	const void *y = cls ? (const void *)r.labels : r.yf, *yd = cls ? (const void *)r.labels : r.yd;
	compare_state(name, &r, "initial");
	for (int s = 0; s < STEPS; s++) {
		float lj = r.info->train_step(&r.ctx, BATCH, r.x, y, s ? NULL : r.out);
		double li = loop_machine_run(r.lm, "train_step", BATCH, r.xd, yd, s ? NULL : r.outd);
		char what[32];
		snprintf(what, sizeof what, "loss of step %d", s + 1);
		check_close(name, what, lj, li);
		if (!s)
			compare_out(name, &r, "training");
	}
	assert_int_equal(r.ctx.step, STEPS);
	compare_state(name, &r, "after 3 steps:");
	check_close(name, "eval loss", r.info->eval(&r.ctx, BATCH, r.x, y, r.out),
		    loop_machine_run(r.lm, "eval", BATCH, r.xd, yd, r.outd));
	compare_out(name, &r, "eval");
	memset(r.out, 0, sizeof(float) * (size_t)(BATCH * r.m->meta.out_elems));
	r.info->forward(&r.ctx, BATCH, r.x, r.out);
	loop_machine_run(r.lm, "forward", BATCH, r.xd, NULL, r.outd);
	compare_out(name, &r, "forward");
	compare_state(name, &r, "after eval and forward:");	/* inference changes no state */
	free_run(&r);
	jit_free(j);
	compile_free(c);
}

static void test_activations(void **state)
{
	(void)state;
	static const char *const acts[] = { "relu", "leaky_relu(slope=0.2)", "elu(alpha=0.7)", "sigmoid", "tanh",
					    "softplus", "gelu", "softmax", "log_softmax", "flatten -> tanh" };
	for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++) {
		char src[512];
		snprintf(src, sizeof src, ACT_MODEL("%s"), acts[i]);
		agree(acts[i], src);
	}
}

static void test_losses(void **state)
{
	(void)state;
	static const char *const losses[] = { "mse(h, t)", "mae(h, t)", "rmse(h, t)", "bce(h, t)", "cross_entropy(h, t)" };
	for (size_t i = 0; i < sizeof losses / sizeof losses[0]; i++) {
		char src[512];
		snprintf(src, sizeof src, REG_MODEL("  h = x -> dense(4) -> tanh -> dense(3)\n", "%s", SGD), losses[i]);
		agree(losses[i], src);
	}
}

static void test_arithmetic(void **state)
{
	(void)state;
	agree("add, mul, scale",
	      REG_MODEL("  a = x -> dense(4)\n  b = x -> dense(1)\n  s = a * b + 2.5 * a\n  h = s -> tanh -> dense(3)\n",
			"mse(h, t)", SGD));
	agree("dense(bias=false)", REG_MODEL("  h = x -> dense(4, bias=false) -> tanh -> dense(3)\n", "mse(h, t)", SGD));
}

/* the optimizers and the regularizers: their updates mix float and double */
static void test_optimizers(void **state)
{
	(void)state;
	agree("sgd", OPT_MODEL("sgd(lr=0.05)", ""));
	agree("sgd nesterov, l1, l2", OPT_MODEL("sgd(lr=0.05, momentum=0.9, nesterov=true)", "  l1 = 0.001\n  l2 = 0.01\n"));
	agree("adagrad", OPT_MODEL("adagrad(lr=0.01, eps=0.01)", ""));
	agree("rmsprop", OPT_MODEL("rmsprop(lr=0.001, momentum=0.8, eps=0.001)", ""));
	agree("adam", OPT_MODEL("adam(lr=0.001, eps=0.001)", "  l2 = 0.01\n"));
	agree("adamw", OPT_MODEL("adamw(lr=0.001, eps=0.001, weight_decay=0.1)", ""));
}

/* dropout draws from the context's generator: both draw the same masks */
static void test_dropout(void **state)
{
	(void)state;
	agree("dropout", ACT_MODEL("dropout(0.5) -> tanh"));
}

/* padded windows: loads guarded by conditions C evaluates lazily */
static void test_images(void **state)
{
	(void)state;
	agree("conv pad stride", IMAGE_MODEL("conv2d(3, kernel=3, stride=2, pad=1)"));
	agree("conv groups same", IMAGE_MODEL("conv2d(4, kernel=3, pad=\"same\", groups=2)"));
	agree("maxpool", IMAGE_MODEL("conv2d(3, kernel=1) -> tanh -> maxpool(3, stride=2, pad=1)"));
	agree("avgpool", IMAGE_MODEL("conv2d(3, kernel=1) -> avgpool([3, 2], stride=[2, 1], pad=[1, 0])"));
	agree("batchnorm", IMAGE_MODEL("conv2d(3, kernel=1, bias=false) -> batchnorm"));
	agree("upsample", IMAGE_MODEL("conv2d(2, kernel=1) -> upsample(2, mode=\"bilinear\") -> maxpool(2) -> upsample(2)"));
	agree("conv_transpose2d", IMAGE_MODEL("conv_transpose2d(2, kernel=3, stride=2, pad=1, output_pad=1)"));
	agree("global_avgpool", "model m {\n  input x: [2, 5, 6]\n  target t: [3]\n"
				"  h = x -> conv2d(4, kernel=1) -> global_avgpool -> tanh -> dense(3)\n"
				"  output h\n  loss mse(h, t)\n}\n" SGD);
	agree("concat", "model m {\n  input x: [2, 3, 4]\n  target t: [3]\n"
			"  a = x -> conv2d(2, kernel=1)\n  b = x -> conv2d(3, kernel=1) -> tanh\n"
			"  h = concat(b, x, a) -> tanh -> flatten -> dense(3)\n"
			"  output h\n  loss mse(h, t)\n}\n" SGD);
}

static const char *const MLP = ACT_MODEL("relu");

static bool has(const char *text, size_t len, const char *want)
{
	size_t n = strlen(want);
	for (size_t i = 0; i + n <= len; i++)
		if (!memcmp(text + i, want, n))
			return true;
	return false;
}

/* --emit=llvm and --emit=obj: model.c's symbols, verified text, a host object */
static void test_ir_and_object(void **state)
{
	(void)state;
	Compile *c = compile_loops_ok(MLP);
	EmitllOpts o = { .prefix = "net", .with_main = true, .opt = 2 };
	char *data, err[512];
	size_t len;
	assert_int_equal(emitll_render(c->loops, &o, EMITLL_IR, &data, &len, err, sizeof err), 0);
	const char *want[] = { "@net_info = constant %struct.NnrtModelInfo", "@buffers = internal constant",
			       "define internal void @k_forward(", "define internal float @k_eval(",
			       "define internal float @k_train_step(", "define i32 @main(", "call i32 @nnrt_train_main(",
			       "define void @net_init(", "define float @net_train_step(", "define i32 @net_save(",
			       "c\"dense1.weight\\00\"", "target triple" };
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
		if (!has(data, len, want[i]))
			fail_msg("the .ll text lacks '%s'", want[i]);
	free(data);
	assert_int_equal(emitll_render(c->loops, &o, EMITLL_OBJ, &data, &len, err, sizeof err), 0);
	assert_true(len > 1000);
	assert_memory_equal(data, "\177ELF", 4);
	assert_true(has(data, len, "net_info") && has(data, len, "nnrt_sgemm"));
	free(data);
	compile_free(c);
}

/* the trampolines know one JIT: a second is refused with a reason, not a crash */
static void test_one_jit_at_a_time(void **state)
{
	(void)state;
	Compile *c = compile_loops_ok(MLP);
	char err[512];
	Jit *a = jit_new(c->loops, "m", err, sizeof err);
	assert_non_null(a);
	assert_null(jit_new(c->loops, "m", err, sizeof err));
	assert_string_equal(err, "one JIT at a time: free the other first");
	assert_int_equal(jit_wait(a, "backward", err, sizeof err), -1);
	assert_string_equal(err, "the model has no function 'backward'");
	assert_int_equal(jit_wait(a, "train_step", err, sizeof err), 0);
	assert_string_equal(jit_model(a)->name, "m");
	jit_free(a);
	Jit *b = jit_new(c->loops, "m", err, sizeof err);	/* freed: a new one is fine, and freeing early too */
	assert_non_null(b);
	jit_free(b);
	compile_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_activations),
		cmocka_unit_test(test_losses),
		cmocka_unit_test(test_arithmetic),
		cmocka_unit_test(test_optimizers),
		cmocka_unit_test(test_dropout),
		cmocka_unit_test(test_images),
		cmocka_unit_test(test_ir_and_object),
		cmocka_unit_test(test_one_jit_at_a_time),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
