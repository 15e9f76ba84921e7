/*
 * test_pool.c: the thread pool. Every index of [0, n) is visited exactly once
 * for many n and thread counts 1..8, in the documented chunks (contiguous,
 * sizes within one, the first n % t longer); the caller runs chunk 0; a call
 * made inside a body runs serially on that thread; thread counts set later
 * take effect; callers on several threads at once each get their whole
 * range; idle workers sleep instead of spinning; nnrt_parallel_for_grain
 * makes chunks of at least a grain of work.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "nnrt.h"

enum { MAX_CHUNKS = 64 };

/* what one nnrt_parallel_for saw: visits per index, and its chunks */
typedef struct Record {
	atomic_int *visits;
	pthread_mutex_t mu;
	int nchunks;
	int64_t begin[MAX_CHUNKS], end[MAX_CHUNKS];
	pthread_t thread[MAX_CHUNKS];
} Record;

static void record_init(Record *r, int64_t n)
{
	memset(r, 0, sizeof *r);
	r->visits = calloc((size_t)n + 1, sizeof *r->visits);
	assert_non_null(r->visits);
	pthread_mutex_init(&r->mu, NULL);
}

static void record_free(Record *r)
{
	free(r->visits);
	pthread_mutex_destroy(&r->mu);
}

static void visit(void *ctx, int64_t begin, int64_t end)
{
	Record *r = ctx;
	for (int64_t i = begin; i < end; i++)
		atomic_fetch_add(&r->visits[i], 1);
	pthread_mutex_lock(&r->mu);
	if (r->nchunks < MAX_CHUNKS) {
		r->begin[r->nchunks] = begin;
		r->end[r->nchunks] = end;
		r->thread[r->nchunks] = pthread_self();
	}
	r->nchunks++;
	pthread_mutex_unlock(&r->mu);
}

/* the chunk that starts at begin, or -1 */
static int chunk_at(const Record *r, int64_t begin)
{
	for (int c = 0; c < r->nchunks; c++)
		if (r->begin[c] == begin)
			return c;
	return -1;
}

/* one call over [0, n) with t threads: each index once, in the documented
 * chunks, chunk 0 on the calling thread */
static void check_call(int64_t n, int t)
{
	Record r;
	record_init(&r, n);
	nnrt_pool_set_threads(t);
	nnrt_parallel_for(n, visit, &r);
	for (int64_t i = 0; i < n; i++)
		if (atomic_load(&r.visits[i]) != 1)
			fail_msg("n=%lld t=%d: index %lld visited %d times", (long long)n, t, (long long)i,
				 atomic_load(&r.visits[i]));
	int want = n < t ? (int)n : t;
	assert_int_equal(r.nchunks, want);
	int64_t at = 0;
	for (int c = 0; c < want; c++) {
		int k = chunk_at(&r, at);
		assert_true(k >= 0);
		assert_true(r.end[k] - r.begin[k] == n / want + (c < n % want));
		if (c == 0)
			assert_true(pthread_equal(r.thread[k], pthread_self()));
		at = r.end[k];
	}
	assert_true(at == n);
	record_free(&r);
}

static void test_every_index_once(void **state)
{
	(void)state;
	static const int64_t sizes[] = {1, 2, 3, 5, 7, 8, 9, 16, 63, 64, 100, 1000, 4097, 100003};
	for (int t = 1; t <= 8; t++)
		for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
			check_call(sizes[s], t);
	nnrt_pool_set_threads(0);
}

/* nnrt_parallel_for_grain: every index once; chunks of at least NNRT_GRAIN
 * work, so a loop with less than two grains of work runs in one piece on the
 * calling thread, and a large one on every thread */
static void check_grain(int64_t n, int64_t work, int t, int want)
{
	Record r;
	record_init(&r, n);
	nnrt_pool_set_threads(t);
	nnrt_parallel_for_grain(n, work, visit, &r);
	for (int64_t i = 0; i < n; i++)
		assert_int_equal(atomic_load(&r.visits[i]), 1);
	if (r.nchunks != want)
		fail_msg("n=%lld work=%lld t=%d: %d chunks, want %d", (long long)n, (long long)work, t, r.nchunks, want);
	if (want == 1)
		assert_true(pthread_equal(r.thread[0], pthread_self()));
	record_free(&r);
}

static void test_grain(void **state)
{
	(void)state;
	check_grain(1000, 1, 4, 1);				/* 1000 operations: inline */
	check_grain(100, NNRT_GRAIN / 64, 4, 1);		/* 1.6 grains */
	check_grain(100, NNRT_GRAIN / 25, 4, 3);		/* 26 iterations a grain: 3 chunks */
	check_grain(100, NNRT_GRAIN / 40, 4, 2);		/* 41 iterations a grain: 2 chunks */
	check_grain(100000, NNRT_GRAIN / 16, 4, 16);		/* up to 4 chunks a thread */
	check_grain(3, (int64_t)NNRT_GRAIN * 100, 8, 3);	/* never more chunks than iterations */
	check_grain(10, 0, 4, 1);				/* no estimate: as 1 */
	Record r;
	record_init(&r, 1);
	check_grain(1, 1, 1, 1);
	nnrt_parallel_for_grain(0, 100, visit, &r);
	nnrt_parallel_for_grain(-1, 100, visit, &r);
	assert_int_equal(r.nchunks, 0);
	record_free(&r);
	nnrt_pool_set_threads(0);
}

/* n <= 0: the body is not called */
static void test_empty_range(void **state)
{
	(void)state;
	Record r;
	record_init(&r, 1);
	nnrt_pool_set_threads(4);
	nnrt_parallel_for(0, visit, &r);
	nnrt_parallel_for(-5, visit, &r);
	assert_int_equal(r.nchunks, 0);
	record_free(&r);
	nnrt_pool_set_threads(0);
}

/* a body that calls nnrt_parallel_for: the inner call runs serially, in one
 * piece, on the thread of the outer chunk */
typedef struct Nest {
	atomic_int outer, inner, wrong;
	atomic_long covered;
} Nest;

typedef struct Inner {
	pthread_t thread;
	int calls;
	int64_t begin, end;
} Inner;

static void inner_body(void *ctx, int64_t begin, int64_t end)
{
	Inner *in = ctx;
	in->thread = pthread_self();
	in->calls++;
	in->begin = begin;
	in->end = end;
}

static void outer_body(void *ctx, int64_t begin, int64_t end)
{
	Nest *nest = ctx;
	atomic_fetch_add(&nest->outer, 1);
	for (int64_t i = begin; i < end; i++) {
		Inner in = {0};
		nnrt_parallel_for(1000, inner_body, &in);
		if (in.calls != 1 || in.begin != 0 || in.end != 1000 || !pthread_equal(in.thread, pthread_self()))
			atomic_fetch_add(&nest->wrong, 1);
		atomic_fetch_add(&nest->inner, in.calls);
	}
	atomic_fetch_add(&nest->covered, end - begin);
}

static void test_nested_calls_run_serially(void **state)
{
	(void)state;
	for (int t = 2; t <= 8; t += 3) {
		Nest nest = {0};
		nnrt_pool_set_threads(t);
		nnrt_parallel_for(40, outer_body, &nest);
		assert_int_equal(atomic_load(&nest.outer), t);
		assert_int_equal(atomic_load(&nest.inner), 40);
		assert_int_equal(atomic_load(&nest.wrong), 0);
		assert_int_equal(atomic_load(&nest.covered), 40);
	}
	nnrt_pool_set_threads(0);
}

/* distinct threads that ran a call's chunks */
static int distinct_threads(const Record *r)
{
	int d = 0;
	for (int c = 0; c < r->nchunks; c++) {
		int seen = 0;
		for (int e = 0; e < c; e++)
			seen |= pthread_equal(r->thread[c], r->thread[e]);
		d += !seen;
	}
	return d;
}

/* a body slow enough that every thread of the job gets a chunk */
static void slow_visit(void *ctx, int64_t begin, int64_t end)
{
	struct timespec ms = {0, 2000000};
	nanosleep(&ms, NULL);
	visit(ctx, begin, end);
}

static void test_set_threads_takes_effect(void **state)
{
	(void)state;
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	nnrt_pool_set_threads(0);
	assert_int_equal(nnrt_pool_threads(), cores < 1 ? 1 : cores);
	static const int counts[] = {3, 1, 6, 2, 5, 1, 4};
	for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
		int t = counts[i];
		nnrt_pool_set_threads(t);
		assert_int_equal(nnrt_pool_threads(), t);
		Record r;
		record_init(&r, 600);
		nnrt_parallel_for(t * 4 > 8 ? t * 4 : 8, slow_visit, &r);
		int d = distinct_threads(&r);
		assert_true(d >= 1 && d <= t);
		if (t == 1)
			assert_true(r.nchunks == 1 && pthread_equal(r.thread[0], pthread_self()));
		record_free(&r);
		check_call(600, t);
	}
	nnrt_pool_set_threads(-3);
	assert_int_equal(nnrt_pool_threads(), cores < 1 ? 1 : cores);
}

/* two user threads calling at once: each call still covers its range once */
static void *caller(void *arg)
{
	int *bad = arg;
	for (int rep = 0; rep < 200; rep++) {
		Record r;
		int64_t n = 1 + rep * 7;
		record_init(&r, n);
		nnrt_parallel_for(n, visit, &r);
		for (int64_t i = 0; i < n; i++)
			*bad += atomic_load(&r.visits[i]) != 1;
		record_free(&r);
	}
	return NULL;
}

static void test_concurrent_callers(void **state)
{
	(void)state;
	nnrt_pool_set_threads(3);
	pthread_t th[3];
	int bad[3] = {0};
	for (int i = 0; i < 3; i++)
		assert_int_equal(pthread_create(&th[i], NULL, caller, &bad[i]), 0);
	for (int i = 0; i < 3; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(bad[i], 0);
	}
	nnrt_pool_set_threads(0);
}

static double cpu_seconds(void)
{
	struct timespec t;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
	return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* After a call, workers spin briefly and then sleep: over 200 ms of idle
 * time the process uses far less than the 200 ms per worker of a spin. */
static void test_idle_workers_sleep(void **state)
{
	(void)state;
	nnrt_pool_set_threads(4);
	Record r;
	record_init(&r, 1000);
	nnrt_parallel_for(1000, visit, &r);
	record_free(&r);
	struct timespec settle = {0, 50000000}, idle = {0, 200000000};
	nanosleep(&settle, NULL);
	double before = cpu_seconds();
	nanosleep(&idle, NULL);
	assert_true(cpu_seconds() - before < 0.05);
	nnrt_pool_set_threads(0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_index_once),
		cmocka_unit_test(test_empty_range),
		cmocka_unit_test(test_grain),
		cmocka_unit_test(test_nested_calls_run_serially),
		cmocka_unit_test(test_set_threads_takes_effect),
		cmocka_unit_test(test_concurrent_callers),
		cmocka_unit_test(test_idle_workers_sleep),
	};
	return cmocka_run_group_tests_name("pool", tests, NULL, NULL);
}
