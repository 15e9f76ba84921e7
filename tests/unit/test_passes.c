/*
 * test_passes.c: the graph passes (compiler/passes/) and the pass manager.
 * Every pass must preserve results: each model is compiled at -O0 and with
 * passes on (all of them, each one alone, each one disabled), then run in the
 * loop interpreter (double precision): forward, and 5 training steps with
 * the same data and dropout draws; outputs, losses and every parameter and
 * optimizer state must agree within 1e-5 relative. Then what each pass is
 * for: dce drops a dead branch, cse merges a duplicate, fold removes scale
 * chains, fusion makes fewer kernels.
 */
#include "support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "loop.h"
#include "loop_interp.h"

enum { BATCH = 2, STEPS = 5 };

/* an MLP with element-wise chains, a scale, a residual add, a product,
 * dropout, l2 (scale chains in its gradient) and a dead branch */
static const char *const chain_model =
	"model m {\n"
	"  input x: [5]\n  target t: [3]\n"
	"  dead = x -> dense(4) -> relu\n"
	"  h = x -> dense(6) -> sigmoid -> tanh\n"
	"  g = 2 * h\n"
	"  r = g + h -> relu\n"
	"  k = r * h -> softplus -> dropout(0.3) -> dense(6) -> gelu -> elu\n"
	"  o = k + r -> leaky_relu -> dense(3)\n"
	"  output o\n  loss mse(o, t)\n}\n"
	"train {\n  optimizer = adam(lr=0.01)\n  l1 = 0.001\n  l2 = 0.01\n}\n";

/* the same value computed twice: cse merges the two relus */
static const char *const dup_model =
	"model m {\n"
	"  input x: [4]\n  target y: class(3)\n"
	"  a = x -> relu\n  b = x -> relu\n"
	"  h = a + b -> dense(3)\n"
	"  output h\n  loss cross_entropy(h, y)\n}\n"
	"train {\n  optimizer = sgd(lr=0.1, momentum=0.9)\n}\n";

/* a small CNN: conv bias, relu, pooling, batchnorm, a residual */
static const char *const cnn_model =
	"model m {\n"
	"  input x: [2, 6, 6]\n  target y: class(4)\n"
	"  h = x -> conv2d(3, kernel=3, pad=1) -> batchnorm -> relu\n"
	"  h2 = h -> conv2d(3, kernel=3, pad=1) -> tanh\n"
	"  s = h + h2 -> sigmoid -> maxpool(2) -> flatten -> dense(4)\n"
	"  output s\n  loss cross_entropy(s, y)\n}\n"
	"train {\n  optimizer = rmsprop(lr=0.01, momentum=0.5)\n}\n";

/* ReLU before max pooling: swapped by poolrelu where the ReLU's only user is
 * the pooling (a, e: overlapping padded windows), kept where it has two (b) */
static const char *const pool_model =
	"model m {\n"
	"  input x: [2, 8, 8]\n  target y: class(4)\n"
	"  a = x -> conv2d(3, kernel=3, pad=1) -> relu -> maxpool(2)\n"
	"  b = x -> conv2d(3, kernel=3, pad=1) -> relu\n"
	"  c = b -> maxpool(3, stride=2, pad=1)\n"
	"  d = b -> avgpool(2)\n"
	"  e = x -> tanh -> relu -> maxpool(3, stride=2, pad=1)\n"
	"  h = concat(a, c, d, e) -> flatten -> dense(4)\n"
	"  output h\n  loss cross_entropy(h, y)\n}\n"
	"train {\n  optimizer = sgd(lr=0.1, momentum=0.9)\n}\n";

typedef struct Run {
	double *out;		/* BATCH * nout */
	int64_t nout;
	double loss[STEPS + 1];
	double *state;		/* every persistent buffer, concatenated in buffer order */
	int64_t nstate;
	int kernels_train, kernels_forward;
} Run;

static double unit(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return (double)((z ^ (z >> 31)) >> 11) / 9007199254740992.0 * 2 - 1;
}

static Compile *compile_with(const char *src, const char *file, const PassOpts *p)
{
	CompileOpts o = { .upto = UPTO_LOOPS, .passes = p };
	Compile *c = file ? compile_file(file, &o) : compile_string_opts(src, &o);
	if (c->nerrors || !c->loops)
		fail_msg("expected loop IR, got:\n%s", c->diag.text ? c->diag.text : "");
	return c;
}

static int fn_kernels(const Compile *c, const char *name)
{
	const LoopFn *f = loop_find_fn(c->loops, name);
	return f ? f->kernels : -1;
}

/* forward on one batch, then STEPS training steps on the same batch */
static Run run(const char *src, const char *file, const PassOpts *p)
{
	Compile *c = compile_with(src, file, p);
	const LoopModule *m = c->loops;
	Run r = { .kernels_train = fn_kernels(c, "train_step"), .kernels_forward = fn_kernels(c, "forward") };
	uint64_t seed = 7;
	int64_t ne = m->meta.in_elems * BATCH, te = m->meta.target_elems * BATCH;
	double *x = malloc(sizeof(double) * (size_t)ne), *yd = malloc(sizeof(double) * (size_t)te);
	int64_t *yl = malloc(sizeof(int64_t) * (size_t)te);
	for (int64_t i = 0; i < ne; i++)
		x[i] = unit(&seed);
	for (int64_t i = 0; i < te; i++) {
		yd[i] = unit(&seed);
		yl[i] = m->meta.classes ? (int64_t)(i * 7 + 1) % m->meta.classes : 0;
	}
	const void *y = m->meta.class_target ? (const void *)yl : (const void *)yd;
	r.nout = m->meta.out_elems * BATCH;
	r.out = calloc((size_t)r.nout + 1, sizeof(double));
	LoopMachine *lm = loop_machine_new(m, BATCH, 1);
	loop_machine_seed_rng(lm, 3);
	loop_machine_run(lm, "forward", BATCH, x, NULL, r.out);
	for (int s = 0; s < STEPS && loop_find_fn(m, "train_step"); s++)
		r.loss[s] = loop_machine_run(lm, "train_step", BATCH, x, y, NULL);
	for (int i = 0; i < m->nbufs; i++) {
		const LoopBuf *b = m->bufs[i];
		if (b->kind != LB_PARAM && b->kind != LB_STATE && b->kind != LB_OPT)
			continue;
		int64_t len = loop_machine_buf_len(lm, b->name);
		r.state = realloc(r.state, sizeof(double) * (size_t)(r.nstate + len));
		memcpy(r.state + r.nstate, loop_machine_buf(lm, b->name), sizeof(double) * (size_t)len);
		r.nstate += len;
	}
	loop_machine_free(lm);
	free(x);
	free(yd);
	free(yl);
	compile_free(c);
	return r;
}

static int mismatches;

static void close_to(const char *what, const char *cfg, int i, double a, double b)
{
	double tol = 1e-5 * fmax(1e-3, fmax(fabs(a), fabs(b)));
	if (!(fabs(a - b) <= tol) && mismatches++ < 3)
		print_error("%s: %s differs at %d: %.17g (-O0) vs %.17g\n", cfg, what, i, a, b);
}

static void same_results(const Run *ref, const Run *r, const char *cfg)
{
	mismatches = 0;
	assert_int_equal(ref->nout, r->nout);
	for (int i = 0; i < ref->nout; i++)
		close_to("forward output", cfg, i, ref->out[i], r->out[i]);
	for (int i = 0; i < STEPS; i++)
		close_to("training loss", cfg, i, ref->loss[i], r->loss[i]);
	assert_int_equal(ref->nstate, r->nstate);
	for (int64_t i = 0; i < ref->nstate; i++)
		close_to("parameter or state", cfg, (int)i, ref->state[i], r->state[i]);
	if (mismatches && !getenv("NNC_TEST_KEEP_GOING"))
		fail_msg("%s: %d values differ from -O0", cfg, mismatches);
}

/* -O0 against -O1, -O2, each pass alone and each pass disabled */
static void preserves(const char *src, const char *file)
{
	PassOpts o0 = { .olevel = 0 };
	Run ref = run(src, file, &o0);
	for (int i = 0; file == NULL && i < pass_count(); i++) {
		char cfg[64];
		PassOpts alone = { .olevel = 2 }, without = { .olevel = 2 };
		for (int k = 0; k < pass_count(); k++)
			if (k != i)
				alone.disabled[alone.ndisabled++] = pass_name(k);
		without.disabled[without.ndisabled++] = pass_name(i);
		Run a = run(src, file, &alone), w = run(src, file, &without);
		snprintf(cfg, sizeof cfg, "%s alone", pass_name(i));
		same_results(&ref, &a, cfg);
		snprintf(cfg, sizeof cfg, "without %s", pass_name(i));
		same_results(&ref, &w, cfg);
		free(a.state);
		free(w.state);
		free(a.out);
		free(w.out);
	}
	for (int level = 1; level <= 2; level++) {
		PassOpts o = { .olevel = level };
		Run r = run(src, file, &o);
		same_results(&ref, &r, level == 1 ? "-O1" : "-O2");
		free(r.state);
		free(r.out);
	}
	free(ref.state);
	free(ref.out);
}

static void test_passes_preserve_small_models(void **state)
{
	(void)state;
	preserves(chain_model, NULL);
	preserves(dup_model, NULL);
	preserves(cnn_model, NULL);
	preserves(pool_model, NULL);
}

/* poolrelu swaps the two it may, in both graphs, only at -O2 */
static void test_poolrelu(void **state)
{
	(void)state;
	int k = pass_lookup("poolrelu");
	assert_true(k >= 0);
	PassOpts o1 = { .olevel = 1 }, o2 = { .olevel = 2 };
	Compile *c1 = compile_with(pool_model, NULL, &o1), *c2 = compile_with(pool_model, NULL, &o2);
	assert_int_equal(c2->stats_infer.fired[k], 2);
	assert_int_equal(c2->stats_train.fired[k], 2);
	assert_false(c1->stats_train.ran[k]);
	int relus = 0;	/* in the training graph: each ReLU reads a pooling, or is b's */
	for (int i = 0; i < c2->train->nnodes; i++) {
		const IrNode *n = c2->train->nodes[i];
		if (n->op == IR_MAXPOOL)
			assert_true(n->in[0]->op != IR_RELU || n->a.kernel[0] == 3);
		relus += n->op == IR_RELU;
	}
	assert_int_equal(relus, 3);
	compile_free(c1);
	compile_free(c2);
}

/* random small models: chains of element-wise layers between dense layers */
static void test_passes_preserve_random_models(void **state)
{
	(void)state;
	static const char *const acts[] = { "relu", "tanh", "sigmoid", "softplus", "gelu", "elu", "leaky_relu" };
	uint64_t seed = 11;
	for (int t = 0; t < 6; t++) {
		char src[2048];
		int k = snprintf(src, sizeof src, "model r {\n  input x: [4]\n  target y: [2]\n  h = x -> dense(5)\n");
		int layers = 2 + (int)((unit(&seed) + 1) * 2);
		for (int i = 0; i < layers; i++) {
			const char *a = acts[(int)((unit(&seed) + 1) * 3.5) % 7];
			double u = unit(&seed);
			if (u < -0.3)
				k += snprintf(src + k, sizeof src - (size_t)k, "  h = h -> %s\n", a);
			else if (u < 0.3)
				k += snprintf(src + k, sizeof src - (size_t)k, "  h = h + (h -> %s) -> %s\n", a, acts[i % 7]);
			else
				k += snprintf(src + k, sizeof src - (size_t)k, "  h = 0.5 * h * (h -> %s)\n", a);
		}
		snprintf(src + k, sizeof src - (size_t)k,
			 "  o = h -> dense(2)\n  output o\n  loss mse(o, y)\n}\n"
			 "train {\n  optimizer = adam(lr=0.01)\n  l2 = 0.001\n}\n");
		preserves(src, NULL);
	}
}

static int count_op(const IrGraph *g, IrOp op)
{
	int k = 0;
	for (int i = 0; i < g->nnodes; i++)
		k += g->nodes[i]->op == op;
	return k;
}

static void test_dce_removes_dead_branch(void **state)
{
	(void)state;
	PassOpts o0 = { .olevel = 0 }, o1 = { .olevel = 1 };
	CompileOpts a = { .upto = UPTO_GRAPHS, .passes = &o0 }, b = { .upto = UPTO_GRAPHS, .passes = &o1 };
	Compile *c0 = compile_string_opts(chain_model, &a), *c1 = compile_string_opts(chain_model, &b);
	assert_int_equal(c0->nerrors + c1->nerrors, 0);
	assert_non_null(layer_node(c0->infer, "dense1"));	/* the dead branch */
	assert_null(layer_node(c1->infer, "dense1"));
	assert_null(layer_node(c1->infer, "relu1"));
	assert_non_null(state_node(c1->infer, "dense1.weight"));	/* the state_dict does not change */
	assert_true(c1->stats_infer.fired[pass_lookup("dce")] >= 2);
	assert_true(c1->infer->nnodes < c0->infer->nnodes);
	compile_free(c0);
	compile_free(c1);
}

static void test_cse_merges_duplicate(void **state)
{
	(void)state;
	PassOpts o0 = { .olevel = 0 }, o1 = { .olevel = 1 };
	CompileOpts a = { .upto = UPTO_GRAPHS, .passes = &o0 }, b = { .upto = UPTO_GRAPHS, .passes = &o1 };
	Compile *c0 = compile_string_opts(dup_model, &a), *c1 = compile_string_opts(dup_model, &b);
	assert_int_equal(count_op(c0->infer, IR_RELU), 2);
	assert_int_equal(count_op(c1->infer, IR_RELU), 1);
	assert_int_equal(c1->stats_infer.fired[pass_lookup("cse")], 1);
	const IrNode *add = layer_node(c1->infer, "add1");
	assert_non_null(add);
	assert_ptr_equal(add->in[0], add->in[1]);
	compile_free(c0);
	compile_free(c1);
}

/* the regularization gradients scale a const 1 twice and multiply by it: fold
 * leaves no scale_by and no scale of a const */
static void test_fold_scale_chains(void **state)
{
	(void)state;
	PassOpts o0 = { .olevel = 0 }, o1 = { .olevel = 1 };
	CompileOpts a = { .upto = UPTO_GRAPHS, .passes = &o0 }, b = { .upto = UPTO_GRAPHS, .passes = &o1 };
	Compile *c0 = compile_string_opts(chain_model, &a), *c1 = compile_string_opts(chain_model, &b);
	assert_true(count_op(c0->train, IR_SCALE_BY) > 0);
	assert_int_equal(count_op(c1->train, IR_SCALE_BY), 0);
	for (int i = 0; i < c1->train->nnodes; i++) {
		const IrNode *n = c1->train->nodes[i];
		if (n->op == IR_SCALE)
			assert_true(n->in[0]->op != IR_CONST && n->in[0]->op != IR_SCALE && n->a.scale != 1);
	}
	assert_true(c1->stats_train.fired[pass_lookup("fold")] > 0);
	compile_free(c0);
	compile_free(c1);
}

/* direct calls: each pass on its own keeps the graph valid and has nothing left to do after dce */
static void test_direct_calls(void **state)
{
	(void)state;
	int (*const passes[])(IrGraph *) = { pass_simplify, pass_fold, pass_cse, pass_dce, pass_fuse };
	for (size_t p = 0; p < sizeof passes / sizeof passes[0]; p++) {
		PassOpts o0 = { .olevel = 0 };
		CompileOpts o = { .upto = UPTO_GRAPHS, .passes = &o0 };
		Compile *c = compile_string_opts(chain_model, &o);
		char buf[256];
		passes[p](c->train);
		assert_null(ir_verify(c->train, buf, sizeof buf));
		if (passes[p] != pass_fuse) {
			pass_dce(c->train);	/* replaced nodes stay in the list until dce */
			assert_int_equal(passes[p](c->train), 0);
		}
		compile_free(c);
	}
}

static void test_unknown_level_names(void **state)
{
	(void)state;
	assert_int_equal(pass_lookup("fuse"), pass_count() - 1);
	assert_int_equal(pass_lookup("fusion"), -1);
	for (int i = 0; i < pass_count(); i++)
		assert_true(pass_min_level(i) >= 1 && pass_min_level(i) <= 2);
}

static void test_fusion_reduces_kernels(void **state)
{
	(void)state;
	PassOpts o0 = { .olevel = 0 }, o2 = { .olevel = 2 };
	Compile *c0 = compile_with(chain_model, NULL, &o0), *c2 = compile_with(chain_model, NULL, &o2);
	int t0 = fn_kernels(c0, "train_step"), t2 = fn_kernels(c2, "train_step");
	int f0 = fn_kernels(c0, "forward"), f2 = fn_kernels(c2, "forward");
	printf("chain model: train_step %d -> %d kernels, forward %d -> %d\n", t0, t2, f0, f2);
	assert_true(t2 < t0 - 5);
	assert_true(f2 < f0 - 3);
	/* a fused intermediate gets no buffer: fewer temporaries */
	assert_true(c2->loops->nbufs < c0->loops->nbufs);
	compile_free(c0);
	compile_free(c2);
}

/* the examples, -O0 against -O2, and their kernel counts */
static void test_examples(void **state)
{
	(void)state;
	static const char *const files[] = { "examples/mlp.nn", "examples/lenet.nn", "examples/resnet_mini.nn",
					     "examples/unet_tiny.nn" };
	for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
		PassOpts o0 = { .olevel = 0 }, o2 = { .olevel = 2 };
		Compile *c0 = compile_with(NULL, files[i], &o0), *c2 = compile_with(NULL, files[i], &o2);
		printf("%-24s train_step %3d -> %3d kernels, forward %2d -> %2d (-O0 -> -O2)\n", files[i],
		       fn_kernels(c0, "train_step"), fn_kernels(c2, "train_step"), fn_kernels(c0, "forward"),
		       fn_kernels(c2, "forward"));
		assert_true(fn_kernels(c2, "train_step") <= fn_kernels(c0, "train_step"));
		compile_free(c0);
		compile_free(c2);
		if (strcmp(files[i], "examples/resnet_mini.nn"))	/* the interpreter is slow on 28x28x32 */
			preserves(NULL, files[i]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_passes_preserve_small_models),
		cmocka_unit_test(test_poolrelu),
		cmocka_unit_test(test_passes_preserve_random_models),
		cmocka_unit_test(test_dce_removes_dead_branch),
		cmocka_unit_test(test_cse_merges_duplicate),
		cmocka_unit_test(test_fold_scale_chains),
		cmocka_unit_test(test_direct_calls),
		cmocka_unit_test(test_unknown_level_names),
		cmocka_unit_test(test_fusion_reduces_kernels),
		cmocka_unit_test(test_examples),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
