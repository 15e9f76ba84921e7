/*
 * test_memplan.c: the static memory plan (compiler/memplan.c) and the
 * runtime's layout of it (runtime/model.c). For every example, the arena the
 * runtime lays out from the plan is checked against liveness worked out here
 * independently: no two temporaries live at once in a function share a byte,
 * parameters and state share none with anything, everything lies inside
 * nnrt_arena_size. The plan must also pay: lenet and resnet_mini train in at
 * least 40% less arena than at one buffer per tensor. And --mem-budget.
 */
#include "support.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loop.h"
#include "memplan.h"
#include "nnrt.h"

typedef struct Span {
	int64_t lo, hi;		/* top-level statements, inclusive; lo > hi: unused */
} Span;

static void use(Span *s, const LoopBuf *b, int64_t t)
{
	if (!b)
		return;
	if (t < s[b->id].lo)
		s[b->id].lo = t;
	if (t > s[b->id].hi)
		s[b->id].hi = t;
}

static void use_expr(Span *s, const LoopExpr *x, int64_t t)
{
	if (!x)
		return;
	if (x->kind == LE_LOAD)
		use(s, x->buf, t);
	use_expr(s, x->a, t);
	use_expr(s, x->b, t);
	use_expr(s, x->c, t);
}

static void use_stmts(Span *s, const LoopStmt *st, int64_t t, bool all)
{
	for (; st; st = all ? st->next : NULL) {
		use(s, st->buf, t);
		use_expr(s, st->lo, t);
		use_expr(s, st->hi, t);
		use_expr(s, st->idx, t);
		use_expr(s, st->val, t);
		use_stmts(s, st->body, t, true);
		if (st->gemm) {
			const LoopGemm *g = st->gemm;
			use(s, g->a, t);
			use(s, g->b, t);
			use(s, g->c, t);
			use_expr(s, g->aoff, t);
			use_expr(s, g->boff, t);
			use_expr(s, g->coff, t);
		}
	}
}

/* the liveness of every buffer in f, by its top-level statements */
static Span *liveness(const LoopModule *m, const LoopFn *f)
{
	Span *s = calloc((size_t)m->nbufs, sizeof *s);
	assert_non_null(s);
	for (int i = 0; i < m->nbufs; i++)
		s[i] = (Span){ INT64_MAX, -1 };
	int64_t t = 0;
	for (const LoopStmt *st = f->body; st; st = st->next, t++)
		use_stmts(s, st, t, false);
	use(s, f->result, t);
	return s;
}

typedef struct Range {
	unsigned char *lo, *hi;		/* [lo, hi) */
} Range;

static bool meet(Range a, Range b)
{
	return a.lo < b.hi && b.lo < a.hi && a.lo < a.hi && b.lo < b.hi;
}

/* lays the module out through the runtime at max_batch and checks the layout */
static void check_layout(const LoopModule *m, int64_t max_batch, const char *what)
{
	NnrtBuffer *tab = calloc((size_t)m->nbufs, sizeof *tab);
	float **bufs = calloc((size_t)m->nbufs, sizeof *bufs);
	Range *r = calloc((size_t)m->nbufs, sizeof *r);
	assert_true(tab && bufs && r);
	for (int i = 0; i < m->nbufs; i++) {
		const LoopBuf *b = m->bufs[i];
		bool arg = b->kind == LB_ARG_X || b->kind == LB_ARG_Y || b->kind == LB_ARG_OUT;
		tab[i] = (NnrtBuffer){ .kind = (int)b->kind, .elems = arg ? 0 : b->elems, .batched = b->batched,
				       .plan_ps = b->plan_ps, .plan_fixed = b->plan_fixed };
	}
	NnrtModelInfo info = { .name = what, .nbufs = m->nbufs, .bufs = tab, .temps_ps = m->temps_ps,
			       .temps_fixed = m->temps_fixed };
	size_t size = nnrt_arena_size(&info, max_batch);
	MemPlanStats st = memplan_stats(m, max_batch);
	assert_int_equal((int64_t)size, st.total);
	unsigned char *arena = aligned_alloc(64, size ? size : 64);
	assert_non_null(arena);
	NnrtCtx ctx;
	nnrt_init(&ctx, &info, bufs, arena, max_batch, 1);
	for (int i = 0; i < m->nbufs; i++) {
		const LoopBuf *b = m->bufs[i];
		if (!tab[i].elems)
			continue;
		r[i].lo = (unsigned char *)bufs[i];
		r[i].hi = r[i].lo + (size_t)b->elems * (size_t)(b->batched ? max_batch : 1) * sizeof(float);
		if (r[i].lo < arena || r[i].hi > arena + size || ((uintptr_t)r[i].lo & 63))
			fail_msg("%s: b%d (%s) lies outside the arena or is not 64-byte aligned", what, i, b->name);
	}
	/* parameters, model state and optimizer state: memory of their own */
	for (int i = 0; i < m->nbufs; i++) {
		if (!tab[i].elems || m->bufs[i]->kind == LB_TEMP)
			continue;
		for (int j = 0; j < m->nbufs; j++)
			if (j != i && tab[j].elems && meet(r[i], r[j]))
				fail_msg("%s: persistent b%d (%s) overlaps b%d (%s)", what, i, m->bufs[i]->name, j,
					 m->bufs[j]->name);
	}
	/* temporaries: no two live at once in a function share a byte */
	int64_t pairs = 0;
	for (int f = 0; f < m->nfns; f++) {
		Span *s = liveness(m, m->fns[f]);
		for (int i = 0; i < m->nbufs; i++) {
			if (m->bufs[i]->kind != LB_TEMP || s[i].lo > s[i].hi)
				continue;
			for (int j = i + 1; j < m->nbufs; j++) {
				if (m->bufs[j]->kind != LB_TEMP || s[j].lo > s[j].hi)
					continue;
				if (s[i].lo > s[j].hi || s[j].lo > s[i].hi)
					continue;
				pairs++;
				if (meet(r[i], r[j]))
					fail_msg("%s, %s at batch %" PRId64 ": b%d (%s, statements %" PRId64 "-%" PRId64
						 ") and b%d (%s, %" PRId64 "-%" PRId64 ") are live at once and share memory",
						 what, m->fns[f]->name, max_batch, i, m->bufs[i]->name, s[i].lo, s[i].hi, j,
						 m->bufs[j]->name, s[j].lo, s[j].hi);
			}
		}
		free(s);
	}
	assert_true(pairs > 0);
	free(arena);
	free(r);
	free(bufs);
	free(tab);
}

static Compile *example(const char *path, int64_t budget)
{
	CompileOpts o = { .upto = UPTO_LOOPS, .mem_budget = budget };
	return compile_file(path, &o);
}

static const char *const examples[] = { "examples/mlp.nn", "examples/lenet.nn", "examples/resnet_mini.nn",
					"examples/unet_tiny.nn" };

static void test_examples_never_overlap_live_buffers(void **state)
{
	(void)state;
	for (size_t k = 0; k < sizeof examples / sizeof examples[0]; k++) {
		Compile *c = example(examples[k], 0);
		if (c->nerrors || !c->loops)
			fail_msg("%s: %s", examples[k], c->diag.text ? c->diag.text : "no loops");
		assert_true(c->loops->planned);
		check_layout(c->loops, 1, examples[k]);
		check_layout(c->loops, 3, examples[k]);
		check_layout(c->loops, c->loops->meta.batch, examples[k]);
		compile_free(c);
	}
}

/* an inference-only module and a small model with batchnorm (model state) */
static void test_small_models(void **state)
{
	(void)state;
	Compile *c = compile_loops_ok("model m {\n  input x: [2, 8, 8]\n  target t: [3]\n"
				      "  h = x -> conv2d(4, kernel=3) -> batchnorm -> relu -> conv2d(4, kernel=3) -> relu"
				      " -> flatten -> dense(3)\n  output h\n  loss mse(h, t)\n}\n");
	check_layout(c->loops, 5, "small");
	compile_free(c);
	CompileOpts o = { .upto = UPTO_LOOPS, .inference = true };
	c = compile_file("examples/lenet.nn", &o);
	assert_int_equal(c->nerrors, 0);
	check_layout(c->loops, 7, "lenet --inference");
	compile_free(c);
}

static void test_plan_pays_off(void **state)
{
	(void)state;
	for (size_t k = 0; k < sizeof examples / sizeof examples[0]; k++) {
		Compile *c = example(examples[k], 0);
		assert_int_equal(c->nerrors, 0);
		MemPlanStats s = memplan_stats(c->loops, c->loops->meta.batch);
		double saved = 1.0 - (double)s.total / (double)s.unplanned;
		printf("    %-24s batch %3" PRId64 ": %10" PRId64 " bytes planned, %10" PRId64
		       " at one buffer per tensor (%.1f%% smaller)\n",
		       examples[k], s.batch, s.total, s.unplanned, 100 * saved);
		assert_int_equal(s.total, s.params + s.state + s.opt + s.temps);
		assert_true(s.temps <= s.temps_unplanned);
		if (k == 1 || k == 2)
			assert_true(saved >= 0.40);
		compile_free(c);
	}
}

static void test_mem_budget(void **state)
{
	(void)state;
	Compile *c = example("examples/lenet.nn", 1024);
	assert_int_equal(c->nerrors, 1);
	assert_non_null(c->diag.text);
	assert_non_null(strstr(c->diag.text, "the planned arena needs"));
	assert_non_null(strstr(c->diag.text, "memory budget of 1024 bytes"));
	compile_free(c);
	c = example("examples/lenet.nn", INT64_C(1) << 30);
	assert_int_equal(c->nerrors, 0);
	compile_free(c);
	/* the budget is the planned arena, not one buffer per tensor */
	c = example("examples/lenet.nn", 0);
	MemPlanStats s = memplan_stats(c->loops, c->loops->meta.batch);
	compile_free(c);
	c = example("examples/lenet.nn", s.total);
	assert_int_equal(c->nerrors, 0);
	compile_free(c);
	c = example("examples/lenet.nn", s.total - 1);
	assert_int_equal(c->nerrors, 1);
	compile_free(c);
}

static void test_parse_bytes(void **state)
{
	(void)state;
	assert_int_equal(memplan_parse_bytes("1K"), 1024);
	assert_int_equal(memplan_parse_bytes("12"), 12);
	assert_int_equal(memplan_parse_bytes("3M"), 3 << 20);
	assert_int_equal(memplan_parse_bytes("2G"), INT64_C(2) << 30);
	assert_int_equal(memplan_parse_bytes("64KB"), 64 << 10);
	assert_int_equal(memplan_parse_bytes("x"), -1);
	assert_int_equal(memplan_parse_bytes("1KX"), -1);
	assert_int_equal(memplan_parse_bytes("-1"), -1);
	assert_int_equal(memplan_parse_bytes(""), -1);
	assert_int_equal(memplan_parse_bytes("99999999999999999999G"), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_examples_never_overlap_live_buffers),
		cmocka_unit_test(test_small_models),
		cmocka_unit_test(test_plan_pays_off),
		cmocka_unit_test(test_mem_budget),
		cmocka_unit_test(test_parse_bytes),
	};
	return cmocka_run_group_tests_name("memplan", tests, NULL, NULL);
}
