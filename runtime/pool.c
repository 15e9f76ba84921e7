/*
 * pool.c: the runtime's thread pool, its one piece of global state. Generated
 * code outlines the body of a parallel loop and calls nnrt_parallel_for_grain
 * (a chunk per grain of work, so small loops run inline); the GEMM splits
 * large products over it with nnrt_parallel_for.
 *
 * [0, n) is cut into t = min(threads, n) contiguous chunks whose sizes differ
 * by at most one (the first n % t are one longer), so a given thread count
 * always gives the same chunks (nnrt_parallel_for_grain picks the number of
 * chunks from the work instead, up to 4 a thread). The caller runs chunk 0,
 * then it and up to t - 1 workers claim the others under the pool's mutex
 * until none is left; which thread runs which of those varies, the chunks do
 * not. Workers are created by the first call that needs them; between calls
 * they spin a little (a back-to-back call then costs no wake-up) and then
 * sleep on a condition variable. A call made while a body runs, on any thread, runs serially in
 * the calling thread; calls from several threads at once take turns.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <unistd.h>

#include "nnrt.h"

/* SPIN: pause instructions a worker executes before it sleeps, under 0.1 ms
 * on a Zen 4; long enough to bridge the gaps between the kernels of one
 * training step, short enough to leave an idle machine idle */
enum { MAX_THREADS = 256, SPIN = 2000, GRAIN_SPLIT = 4 };

typedef void Body(void *ctx, int64_t begin, int64_t end);

static struct {
	pthread_mutex_t mu;		/* guards all below; gen is also read without it */
	pthread_cond_t wake;		/* sleeping workers wait here for a new job */
	pthread_cond_t done;		/* the caller waits here for the job's last chunk */
	pthread_mutex_t turn;		/* held by the caller whose job is posted */
	atomic_int threads;		/* nnrt_pool_set_threads; 0: not decided yet */
	atomic_uint_fast64_t gen;	/* the job's number: bumped to post one */
	int started, sleeping;		/* workers created; workers waiting on wake */
	int forked;			/* the pthread_atfork handler is registered */
	/* the posted job: chunks [0, chunks) of [0, n), claimed in order */
	Body *body;
	void *ctx;
	int64_t n;
	int chunks, next, finished;
	int helpers, joined;		/* workers wanted and workers that came */
} pool = {.mu = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER, .done = PTHREAD_COND_INITIALIZER,
	  .turn = PTHREAD_MUTEX_INITIALIZER};

/* set while this thread runs a job's chunks (always, in a worker): a nested
 * call runs serially instead of waiting for threads that are all busy */
static _Thread_local int inside;

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

static int online_cores(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : (int)n;
}

void nnrt_pool_set_threads(int n)
{
	atomic_store(&pool.threads, n <= 0 ? online_cores() : n > MAX_THREADS ? MAX_THREADS : n);
}

int nnrt_pool_threads(void)
{
	int t = atomic_load(&pool.threads);
	if (t == 0) {
		int zero = 0;
		atomic_compare_exchange_strong(&pool.threads, &zero, online_cores());
		t = atomic_load(&pool.threads);
	}
	return t;
}

/* chunk c of t over [0, n): n / t each, the first n % t one longer */
static int64_t chunk_begin(int64_t n, int t, int c)
{
	return n / t * c + (c < n % t ? c : n % t);
}

/* Runs chunks of job gen until none is left to claim. Called and returns
 * with mu held; the body runs without it. */
static void run_chunks(uint64_t gen)
{
	while (atomic_load(&pool.gen) == gen && pool.next < pool.chunks) {
		int c = pool.next++;
		Body *body = pool.body;
		void *ctx = pool.ctx;
		int64_t b = chunk_begin(pool.n, pool.chunks, c), e = chunk_begin(pool.n, pool.chunks, c + 1);
		pthread_mutex_unlock(&pool.mu);
		body(ctx, b, e);
		pthread_mutex_lock(&pool.mu);
		if (++pool.finished == pool.chunks)
			pthread_cond_signal(&pool.done);
	}
}

/* a worker: waits for a job newer than the last one it saw, helps with it if
 * the job still wants helpers, and waits again; it never exits */
static void *worker(void *arg)
{
	uint64_t seen = (uint64_t)(uintptr_t)arg;
	inside = 1;
	for (;;) {
		for (int i = 0; i < SPIN && atomic_load_explicit(&pool.gen, memory_order_relaxed) == seen; i++)
			cpu_relax();
		pthread_mutex_lock(&pool.mu);
		while (atomic_load(&pool.gen) == seen) {
			pool.sleeping++;
			pthread_cond_wait(&pool.wake, &pool.mu);
			pool.sleeping--;
		}
		seen = atomic_load(&pool.gen);
		if (pool.joined < pool.helpers) {
			pool.joined++;
			run_chunks(seen);
		}
		pthread_mutex_unlock(&pool.mu);
	}
	return NULL;
}

/* A child of fork has only the thread that forked: forget the workers (and
 * whatever state the locks were in), so the child creates its own. */
static void after_fork_in_child(void)
{
	pthread_mutex_init(&pool.mu, NULL);
	pthread_mutex_init(&pool.turn, NULL);
	pthread_cond_init(&pool.wake, NULL);
	pthread_cond_init(&pool.done, NULL);
	pool.started = pool.sleeping = 0;
}

/* Creates workers up to want, with mu held. They start having seen the
 * current job, so the next one posted is their first. A worker that cannot
 * be created is not: the chunks it would have run go to the others. */
static void start_workers(int want)
{
	if (!pool.forked)
		pool.forked = pthread_atfork(NULL, NULL, after_fork_in_child) == 0;
	while (pool.started < want) {
		pthread_t t;
		uintptr_t seen = (uintptr_t)atomic_load(&pool.gen);
		if (pthread_create(&t, NULL, worker, (void *)seen) != 0)
			return;
		pthread_detach(t);
		pool.started++;
	}
}

/* body over [0, n) in chunks (1 <= chunks <= n) on up to t threads */
static void run(int64_t n, int chunks, int t, Body *body, void *ctx)
{
	if (chunks <= 1 || t <= 1 || inside) {
		body(ctx, 0, n);
		return;
	}
	pthread_mutex_lock(&pool.turn);
	pthread_mutex_lock(&pool.mu);
	start_workers(t - 1);
	pool.body = body;
	pool.ctx = ctx;
	pool.n = n;
	pool.chunks = chunks;
	pool.next = 1;			/* chunk 0 is the caller's */
	pool.finished = pool.joined = 0;
	pool.helpers = t - 1;
	uint64_t gen = atomic_load(&pool.gen) + 1;
	atomic_store(&pool.gen, gen);
	int sleeping = pool.sleeping;
	pthread_mutex_unlock(&pool.mu);
	/* woken outside the lock, so a worker that wakes does not block on it */
	if (sleeping)
		pthread_cond_broadcast(&pool.wake);
	inside = 1;
	body(ctx, 0, chunk_begin(n, chunks, 1));
	pthread_mutex_lock(&pool.mu);
	pool.finished++;
	run_chunks(gen);
	while (pool.finished < pool.chunks)
		pthread_cond_wait(&pool.done, &pool.mu);
	inside = 0;
	pthread_mutex_unlock(&pool.mu);
	pthread_mutex_unlock(&pool.turn);
}

void nnrt_parallel_for(int64_t n, void (*body)(void *ctx, int64_t begin, int64_t end), void *ctx)
{
	if (n <= 0)
		return;
	int t = nnrt_pool_threads();
	if (t > n)
		t = (int)n;
	run(n, t, t, body, ctx);
}

void nnrt_parallel_for_grain(int64_t n, int64_t work, void (*body)(void *ctx, int64_t begin, int64_t end), void *ctx)
{
	if (n <= 0)
		return;
	if (work < 1)
		work = 1;
	/* at most one chunk per NNRT_GRAIN of work and per iteration; up to
	 * GRAIN_SPLIT chunks a thread, so that when a worker is late (the machine
	 * is busy), the others take its share instead of waiting for it */
	int64_t most = work >= NNRT_GRAIN ? n : n / ((NNRT_GRAIN + work - 1) / work);
	int t = nnrt_pool_threads();
	int64_t chunks = most < (int64_t)t * GRAIN_SPLIT ? most : (int64_t)t * GRAIN_SPLIT;
	if (chunks < 1)
		chunks = 1;
	run(n, (int)chunks, chunks < t ? (int)chunks : t, body, ctx);
}
