/*
 * test_loop_par.c: which parallel loops the emitters outline (loop_par.c)
 * and what each outlined body takes from its function, on loop nests built
 * by hand: big loops are outlined and small ones are not, loops that draw
 * random numbers stay serial, enclosing counters and earlier locals are
 * captured, locals set inside are the body's own, a local read after the
 * loop keeps it serial, and nested parallel loops are not outlined again.
 */
#include "support.h"

#include "loop.h"

typedef struct Fixture {
	Arena *a;
	LoopModule *m;
	LoopFn *f;
	LoopBuf *x, *y;
} Fixture;

static Fixture fixture(void)
{
	Fixture t;
	t.a = arena_new();
	t.m = loop_new_module(t.a);
	t.m->meta.batch = 64;
	t.x = loop_new_buf(t.m, "x", LT_F32, 4096, true, LB_TEMP);
	t.y = loop_new_buf(t.m, "y", LT_F32, 4096, true, LB_TEMP);
	t.f = loop_new_fn(t.m, "forward");
	return t;
}

/* y[i] = exp(x[i]) for i < n * 4096, through a local set inside */
static LoopVar *elementwise(Fixture *t, LoopExpr *hi, bool parallel)
{
	LoopFn *f = t->f;
	LoopVar *i = loop_for(f, loop_i64(f, 0), hi);
	if (parallel)
		loop_parallel(f);
	LoopVar *v = loop_local(f, LT_F32, loop_load(f, t->x, loop_var(f, i)));
	loop_store(f, t->y, loop_var(f, i), loop_un(f, LO_EXP, loop_var(f, v)));
	loop_end(f);
	return v;
}

static void test_big_loop_outlined(void **state)
{
	(void)state;
	Fixture t = fixture();
	LoopFn *f = t.f;
	LoopVar *v = elementwise(&t, loop_mul(f, loop_n(f), loop_i64(f, 4096)), true);
	LoopPars p = loop_pars(t.m, f);
	assert_int_equal(p.npar, 1);
	assert_ptr_equal(p.par[0].loop, f->body);
	assert_int_equal(loop_par_index(&p, f->body), 0);
	assert_true(p.par[0].bufs[t.x->id] && p.par[0].bufs[t.y->id]);
	assert_true(p.par[0].locals[v->id]);
	assert_false(p.par[0].captured[v->id]);
	assert_false(p.par[0].uses_n);	/* n is in the bound only: the caller's */
	assert_false(p.par[0].uses_ctx);
	assert_false(p.outer_locals[v->id]);	/* the kernel does not declare it */
	/* a load, an exp, a store, the local: about 13 operations */
	assert_true(p.par[0].work >= 10 && p.par[0].work <= 20);
	arena_free(t.a);
}

/* 1000 iterations of 13 operations: under a grain, known at compile time */
static void test_small_loop_stays_serial(void **state)
{
	(void)state;
	Fixture t = fixture();
	LoopFn *f = t.f;
	LoopVar *v = elementwise(&t, loop_i64(f, 1000), true);
	elementwise(&t, loop_mul(f, loop_n(f), loop_i64(f, 4096)), false);	/* not parallel */
	LoopPars p = loop_pars(t.m, f);
	assert_int_equal(p.npar, 0);
	assert_int_equal(loop_par_index(&p, f->body), -1);
	assert_true(p.outer_locals[v->id]);
	arena_free(t.a);
}

/* dropout: the draws keep their serial order */
static void test_random_stays_serial(void **state)
{
	(void)state;
	Fixture t = fixture();
	LoopFn *f = t.f;
	LoopVar *i = loop_for(f, loop_i64(f, 0), loop_mul(f, loop_n(f), loop_i64(f, 4096)));
	loop_parallel(f);
	loop_store(f, t.y, loop_var(f, i), loop_mul(f, loop_rand(f), loop_load(f, t.x, loop_var(f, i))));
	loop_end(f);
	assert_int_equal(loop_pars(t.m, f).npar, 0);
	arena_free(t.a);
}

/* for s < n (serial) { c = lr; for parallel j < 4096 { for parallel k < 64 {
 * y[s*4096 + j] = x[..] * c * k } } }: the j loop is outlined and captures s
 * and c (lr is read before it); the k loop inside it is not outlined again */
static void test_captures_and_nesting(void **state)
{
	(void)state;
	Fixture t = fixture();
	LoopFn *f = t.f;
	LoopVar *s = loop_for(f, loop_i64(f, 0), loop_n(f));
	LoopVar *c = loop_local(f, LT_F32, loop_cvt(f, LT_F32, loop_ctx(f, LC_LR)));
	LoopVar *j = loop_for(f, loop_i64(f, 0), loop_i64(f, 4096));
	loop_parallel(f);
	LoopExpr *at = loop_add(f, loop_mul(f, loop_var(f, s), loop_i64(f, 4096)), loop_var(f, j));
	LoopVar *k = loop_for(f, loop_i64(f, 0), loop_i64(f, 64));
	loop_parallel(f);
	loop_store(f, t.y, at, loop_mul(f, loop_load(f, t.x, at), loop_mul(f, loop_var(f, c), loop_cvt(f, LT_F32, loop_var(f, k)))));
	loop_end(f);
	loop_end(f);
	loop_end(f);
	const LoopStmt *outer = f->body, *inner = NULL;
	for (const LoopStmt *b = outer->body; b; b = b->next)
		if (b->kind == LS_FOR)
			inner = b;
	LoopPars p = loop_pars(t.m, f);
	assert_int_equal(p.npar, 1);
	assert_ptr_equal(p.par[0].loop, inner);
	assert_true(p.par[0].captured[s->id] && p.par[0].captured[c->id]);
	assert_false(p.par[0].captured[j->id] || p.par[0].captured[k->id]);
	assert_false(p.par[0].uses_ctx);
	assert_true(p.outer_locals[c->id]);
	assert_int_equal(loop_par_index(&p, inner->body), -1);
	arena_free(t.a);
}

/* a local set inside and read after the loop would need its last value: serial */
static void test_local_read_after_stays_serial(void **state)
{
	(void)state;
	Fixture t = fixture();
	LoopFn *f = t.f;
	LoopVar *v = elementwise(&t, loop_mul(f, loop_n(f), loop_i64(f, 4096)), true);
	loop_store(f, t.y, loop_i64(f, 0), loop_var(f, v));
	assert_int_equal(loop_pars(t.m, f).npar, 0);
	arena_free(t.a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_big_loop_outlined),
		cmocka_unit_test(test_small_loop_stays_serial),
		cmocka_unit_test(test_random_stays_serial),
		cmocka_unit_test(test_captures_and_nesting),
		cmocka_unit_test(test_local_read_after_stays_serial),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
