/*
 * train.c: the training driver, the command line of every generated program
 * (`nnc model.nn -o model.c --main`). It parses the flags, loads the data,
 * lays out the model's arena, runs epochs of shuffled batches through the
 * model's train_step, evaluates on the test set after each epoch, and saves
 * the weights. The model is reached only through its NnrtModelInfo.
 *
 * It is the one part of the runtime that prints (progress to stdout, errors
 * to stderr) and allocates freely; generated code never does either.
 */
#include "nnrt.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

typedef struct Opts {
	const char *data, *test, *init, *save;
	int64_t epochs, batch, seed, steps;	/* steps: stop after this many in all; 0 = no limit */
	double lr;
	bool shuffle, quiet;
} Opts;

static const char usage[] =
	"usage: %s [--data PATH] [--test PATH] [--epochs N] [--batch N] [--lr X] [--seed N]\n"
	"          [--steps N] [--no-shuffle] [--init W.safetensors] [--save W.safetensors] [--quiet]\n"
	"\n"
	"Trains model \"%s\" and evaluates it after every epoch.\n"
	"  --data PATH    training data: a folder of MNIST-style IDX files (train-*, t10k-*; raw or .gz),\n"
	"                 a .csv file (label in the last column), or inputs.npy,targets.npy%s%s%s\n"
	"  --test PATH    test data, in the same forms (default: the t10k files of an IDX folder)\n"
	"  --epochs N     passes over the training data (default %lld)\n"
	"  --batch N      samples per step (default %lld)\n"
	"  --lr X         learning rate (default %g, %s)\n"
	"  --seed N       seed of the initial weights, the data order and dropout (default %lld)\n"
	"  --steps N      stop after N steps in all\n"
	"  --no-shuffle   keep the data in file order\n"
	"  --init W       start from these weights (safetensors) instead of the seed\n"
	"  --save W       write the trained weights there (safetensors, atomically)\n"
	"  --quiet        print only the final results\n";

static int fail(const char *fmt, const char *arg, const char *hint)
{
	fprintf(stderr, "error: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n");
	if (hint)
		fprintf(stderr, "hint: %s\n", hint);
	return 1;
}

static int int_flag(const char *flag, const char *v, int64_t lo, int64_t hi, int64_t *out)
{
	char *end;
	errno = 0;
	long long x = strtoll(v, &end, 10);
	if (errno || end == v || *end || x < lo || x > hi) {
		fprintf(stderr, "error: %s takes a whole number from %lld to %lld, not '%s'\n", flag, (long long)lo,
			(long long)hi, v);
		return 1;
	}
	*out = x;
	return 0;
}

static int parse(const NnrtModelInfo *m, int argc, char **argv, Opts *o)
{
	*o = (Opts){ .data = m->data, .test = m->test, .epochs = m->epochs, .batch = m->batch, .seed = m->seed,
		     .lr = m->lr, .shuffle = true };
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		bool takes = strcmp(a, "--no-shuffle") && strcmp(a, "--quiet") && strcmp(a, "--help") && strcmp(a, "-h");
		if (takes && !v)
			return fail("%s needs a value", a, NULL);
		int bad = 0;
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			printf(usage, argv[0], m->name, m->data ? " (default " : "", m->data ? m->data : "",
			       m->data ? ")" : "", (long long)m->epochs, (long long)m->batch, m->lr, m->optimizer,
			       (long long)m->seed);
			return 2;
		} else if (!strcmp(a, "--data"))
			o->data = v;
		else if (!strcmp(a, "--test"))
			o->test = v;
		else if (!strcmp(a, "--init"))
			o->init = v;
		else if (!strcmp(a, "--save"))
			o->save = v;
		else if (!strcmp(a, "--epochs"))
			bad = int_flag(a, v, 1, 1000000, &o->epochs);
		else if (!strcmp(a, "--batch"))
			bad = int_flag(a, v, 1, 1 << 24, &o->batch);
		else if (!strcmp(a, "--seed"))
			bad = int_flag(a, v, 0, INT64_MAX, &o->seed);
		else if (!strcmp(a, "--steps"))
			bad = int_flag(a, v, 1, INT64_MAX, &o->steps);
		else if (!strcmp(a, "--lr")) {
			char *end;
			o->lr = strtod(v, &end);
			if (end == v || *end || !(o->lr > 0) || !isfinite(o->lr))
				return fail("--lr takes a positive number, not '%s'", v, NULL);
		} else if (!strcmp(a, "--no-shuffle")) {
			o->shuffle = false;
			continue;
		} else if (!strcmp(a, "--quiet")) {
			o->quiet = true;
			continue;
		} else
			return fail("unknown option '%s'", a, "run with --help for the options");
		if (bad)
			return 1;
		i++;
	}
	if (!o->data)
		return fail("%s", "no training data: the model names none and --data is missing",
			    "pass --data PATH: an IDX folder, a .csv file, or inputs.npy,targets.npy");
	return 0;
}

static bool is_dir(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static NnrtDataSpec spec_of(const NnrtModelInfo *m)
{
	NnrtDataSpec s = { .in_elems = m->in_elems, .target = m->target, .target_elems = m->target_elems,
			   .classes = m->classes, .csv_label_column = -1, .csv_header = -1 };
	return s;
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static int64_t argmax(const float *v, int64_t n)
{
	int64_t best = 0;
	for (int64_t i = 1; i < n; i++)
		if (v[i] > v[best])
			best = i;
	return best;
}

typedef struct Run {
	const NnrtModelInfo *m;
	NnrtCtx ctx;
	float **bufs;
	float *x, *out;
	void *y;
	int64_t max_batch;
} Run;

/* correct predictions among n samples whose outputs are in r->out */
static int64_t correct(const Run *r, int64_t n)
{
	if (r->m->target != NNRT_TARGET_CLASS || r->m->out_elems != r->m->classes)
		return 0;
	int64_t k = 0;
	for (int64_t i = 0; i < n; i++)
		k += argmax(r->out + i * r->m->out_elems, r->m->out_elems) == ((int64_t *)r->y)[i];
	return k;
}

/* mean loss and accuracy over a whole data set, in inference mode */
static void evaluate(Run *r, const NnrtDataset *d, int64_t *order, double *loss, double *acc)
{
	double sum = 0;
	int64_t right = 0;
	for (int64_t i = 0; i < d->count; i++)
		order[i] = i;
	for (int64_t at = 0; at < d->count; at += r->max_batch) {
		int64_t n = d->count - at < r->max_batch ? d->count - at : r->max_batch;
		nnrt_gather(d, order, at, n, r->x, r->y);
		sum += (double)r->m->eval(&r->ctx, n, r->x, r->y, r->out) * (double)n;
		right += correct(r, n);
	}
	*loss = sum / (double)d->count;
	*acc = (double)right / (double)d->count;
}

static int load_data(const NnrtModelInfo *m, const Opts *o, NnrtDataset *train, NnrtDataset *test, bool *has_test)
{
	NnrtError err;
	NnrtDataSpec spec = spec_of(m);
	if (nnrt_data_load(o->data, NNRT_SPLIT_TRAIN, &spec, train, &err) != 0) {
		fprintf(stderr, "error: %s\n", err.msg);
		return 1;
	}
	const char *tp = o->test ? o->test : is_dir(o->data) ? o->data : NULL;
	*has_test = tp && m->eval;
	if (*has_test && nnrt_data_load(tp, NNRT_SPLIT_TEST, &spec, test, &err) != 0) {
		fprintf(stderr, "error: %s\n", err.msg);
		nnrt_data_free(train);
		return 1;
	}
	return 0;
}

static int setup(Run *r, const NnrtModelInfo *m, const Opts *o, void **arena)
{
	size_t bytes = (nnrt_arena_size(m, o->batch) + 63) & ~(size_t)63;
	*arena = aligned_alloc(64, bytes ? bytes : 64);
	r->bufs = calloc((size_t)m->nbufs + 1, sizeof(float *));
	r->x = malloc(sizeof(float) * (size_t)(o->batch * m->in_elems));
	r->y = malloc((size_t)o->batch * (m->target == NNRT_TARGET_CLASS ? sizeof(int64_t) : sizeof(float) * (size_t)m->target_elems));
	r->out = malloc(sizeof(float) * (size_t)(o->batch * (m->out_elems ? m->out_elems : 1)));
	r->m = m;
	r->max_batch = o->batch;
	if (!*arena || !r->bufs || !r->x || !r->y || !r->out) {
		fprintf(stderr, "error: out of memory for batches of %lld (%zu bytes of arena)\n", (long long)o->batch, bytes);
		return 1;
	}
	nnrt_init(&r->ctx, m, r->bufs, *arena, o->batch, (uint64_t)o->seed);
	NnrtError err;
	if (o->init && nnrt_load_weights(&r->ctx, o->init, &err) != 0) {
		fprintf(stderr, "error: %s\n", err.msg);
		return 1;
	}
	return 0;
}

/* one pass over the shuffled training set; returns -1 if the loss stopped being finite */
static int epoch(Run *r, const Opts *o, const NnrtDataset *d, int64_t *order, NnrtRng *rng, int64_t *step,
		 double *loss, double *acc)
{
	for (int64_t i = 0; i < d->count; i++)
		order[i] = i;
	if (o->shuffle)
		nnrt_shuffle(rng, order, d->count);
	double sum = 0;
	int64_t seen = 0, right = 0;
	for (int64_t at = 0; at < d->count && (!o->steps || *step < o->steps); at += o->batch) {
		int64_t n = d->count - at < o->batch ? d->count - at : o->batch;
		nnrt_gather(d, order, at, n, r->x, r->y);
		float l = r->m->train_step(&r->ctx, n, r->x, r->y, r->out);
		++*step;
		if (!isfinite(l)) {
			fprintf(stderr, "error: the loss became %s at step %lld\n", isnan(l) ? "NaN" : "infinite",
				(long long)*step);
			fprintf(stderr, "hint: lower the learning rate (--lr) or check the data for huge values\n");
			return -1;
		}
		sum += (double)l * (double)n;
		seen += n;
		right += correct(r, n);
	}
	*loss = seen ? sum / (double)seen : 0;
	*acc = seen ? (double)right / (double)seen : 0;
	return 0;
}

double nnrt_schedule_lr(const NnrtModelInfo *m, double lr, int64_t e, int64_t epochs)
{
	if (m->schedule == 1 && m->step_every > 0)
		return lr * pow(m->step_gamma, (double)(e / m->step_every));
	if (m->schedule == 2 && epochs > 0)
		return 0.5 * lr * (1 + cos(3.14159265358979323846 * (double)e / (double)epochs));
	return lr;
}

static int train(Run *r, const Opts *o, const NnrtDataset *tr, const NnrtDataset *te, bool has_test)
{
	const NnrtModelInfo *m = r->m;
	int64_t cnt = tr->count > (has_test ? te->count : 0) ? tr->count : te->count;
	int64_t *order = malloc(sizeof(int64_t) * (size_t)cnt);
	if (!order)
		return fail("%s", "out of memory", NULL);
	NnrtRng rng;
	nnrt_rng_seed(&rng, (uint64_t)o->seed, 0x64617461);
	int64_t step = 0;
	bool classes = m->target == NNRT_TARGET_CLASS && m->out_elems == m->classes;
	for (int64_t e = 0; e < o->epochs && (!o->steps || step < o->steps); e++) {
		r->ctx.lr = nnrt_schedule_lr(m, o->lr, e, o->epochs);
		double t0 = now(), loss, acc, tl = 0, ta = 0;
		int64_t before = step;
		if (epoch(r, o, tr, order, &rng, &step, &loss, &acc) != 0) {
			free(order);
			return 1;
		}
		double secs = now() - t0;
		if (has_test)
			evaluate(r, te, order, &tl, &ta);
		if (o->quiet)
			continue;
		printf("epoch %lld/%lld  loss %.4f", (long long)e + 1, (long long)o->epochs, loss);
		if (classes)
			printf("  acc %.2f%%", 100 * acc);
		if (has_test)
			printf("  test loss %.4f", tl);
		if (has_test && classes)
			printf("  test acc %.2f%%", 100 * ta);
		int64_t samples = (step - before) * o->batch < tr->count ? (step - before) * o->batch : tr->count;
		printf("  (%.1f s, %.0f samples/s)\n", secs, secs > 0 ? (double)samples / secs : 0);
		fflush(stdout);
	}
	if (has_test) {
		double tl, ta;
		evaluate(r, te, order, &tl, &ta);
		printf("test: loss %.4f", tl);
		if (classes)
			printf("  accuracy %.2f%% (%lld samples)", 100 * ta, (long long)te->count);
		printf("\n");
	}
	free(order);
	return 0;
}

int nnrt_train_main(const NnrtModelInfo *m, int argc, char **argv)
{
	Opts o;
	int rc = parse(m, argc, argv, &o);
	if (rc)
		return rc == 2 ? 0 : 1;
	if (!m->train_step)
		return fail("model '%s' has no loss, so it cannot be trained", m->name, NULL);
	NnrtDataset tr = { 0 }, te = { 0 };
	bool has_test;
	if (load_data(m, &o, &tr, &te, &has_test))
		return 1;
	Run r = { 0 };
	void *arena = NULL;
	rc = setup(&r, m, &o, &arena) || train(&r, &o, &tr, &te, has_test);
	NnrtError err;
	if (!rc && o.save) {
		if (nnrt_save_weights(&r.ctx, o.save, &err) != 0) {
			fprintf(stderr, "error: %s\n", err.msg);
			rc = 1;
		} else if (!o.quiet) {
			printf("weights saved to %s\n", o.save);
		}
	}
	free(arena);
	free(r.bufs);
	free(r.x);
	free(r.y);
	free(r.out);
	nnrt_data_free(&tr);
	if (has_test)
		nnrt_data_free(&te);
	return rc;
}
