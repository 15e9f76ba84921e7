/*
 * train.c: the training driver, the command line of every generated program
 * (`nnc model.nn -o model.c --main`) and of `nnc train`. It parses the flags,
 * loads the data, lays out the model's arena, runs epochs of shuffled batches
 * through the model's train_step, evaluates on the test set after each epoch,
 * writes checkpoints and the weights (or, with --bench, only times the
 * steps). The model is reached only through its NnrtModelInfo.
 *
 * Checkpoints hold everything a step depends on: parameters, running
 * statistics, optimizer state, the step count, the epoch and the next batch,
 * the data-order generator as it was at the epoch's start (so the epoch's
 * order can be drawn again) and the dropout generator; a CRC-32 of the tensor
 * data guards them. Resuming from one continues exactly as if training had
 * never stopped.
 *
 * It is the one part of the runtime that prints (progress to stdout, errors
 * to stderr) and allocates freely; generated code never does either.
 */
#include "nnrt.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define PI 3.14159265358979323846

typedef struct Opts {
	const char *data, *test, *init, *save, *resume, *log, *checkpoint;
	int64_t epochs, batch, seed, steps;	/* steps: stop after this many in all; 0 = no limit */
	double lr;
	bool shuffle, quiet, verbose;
	bool bench;	/* time steps instead of training a model (see bench) */
	int argc;
	char **argv;
} Opts;

static const char usage[] =
	"usage: %s [--data PATH] [--test PATH] [--epochs N] [--batch N] [--lr X] [--seed N]\n"
	"          [--steps N] [--no-shuffle] [--init W] [--save W] [--resume CKPT]\n"
	"          [--checkpoint CKPT] [--log FILE.csv] [--threads N] [--quiet] [--verbose] [--bench]\n"
	"\n"
	"Trains model \"%s\" and evaluates it after every epoch.\n"
	"  --data PATH        training data: a folder of MNIST-style IDX files (train-*, t10k-*;\n"
	"                     raw or .gz), a .csv file (label in the last column), or\n"
	"                     inputs.npy,targets.npy%s%s%s\n"
	"  --test PATH        test data, in the same forms (default: the t10k files of an IDX folder)\n"
	"  --epochs N         passes over the training data (default %lld)\n"
	"  --batch N          samples per step (default %lld)\n"
	"  --lr X             learning rate (default %g, %s)\n"
	"  --seed N           seed of the initial weights, the data order and dropout (default %lld)\n"
	"  --steps N          stop after N steps in all\n"
	"  --no-shuffle       keep the data in file order\n"
	"  --init W           start from these weights (safetensors) instead of the seed\n"
	"  --save W           write the trained weights there (safetensors, atomically)\n"
	"  --checkpoint CKPT  where to write a checkpoint after every epoch and on Ctrl-C\n"
	"                     (default: W.ckpt beside --save, else %s.ckpt)\n"
	"  --resume CKPT      continue exactly where that checkpoint stopped\n"
	"  --log FILE.csv     one row per epoch: loss, accuracy, test loss and accuracy, lr, time\n"
	"  --threads N        threads of the runtime (GEMM, parallel loops); default: every core\n"
	"  --quiet            print only the final results\n"
	"  --verbose          also print timings of the setup\n"
	"  --bench            measure training speed: --steps N steps (default 100) after N/10\n"
	"                     (at least 2) untimed warm-up steps, then print samples/s; no test\n"
	"                     evaluation, checkpoint, log or saved weights\n";

static int fail(const char *fmt, const char *arg, const char *hint)
{
	fprintf(stderr, "error: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n");
	if (hint)
		fprintf(stderr, "hint: %s\n", hint);
	return 1;
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* ---- flags ---- */

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

static const char *const value_flags[] = { "--data", "--test", "--init", "--save", "--resume", "--checkpoint", "--log",
					   "--epochs", "--batch", "--seed", "--steps", "--lr", "--threads" };

static bool takes_value(const char *a)
{
	for (size_t i = 0; i < sizeof value_flags / sizeof value_flags[0]; i++)
		if (!strcmp(a, value_flags[i]))
			return true;
	return false;
}

static int print_usage(const NnrtModelInfo *m, const char *prog)
{
	printf(usage, prog, m->name, m->data ? " (default " : "", m->data ? m->data : "", m->data ? ")" : "",
	       (long long)m->epochs, (long long)m->batch, m->lr, m->optimizer ? m->optimizer : "", (long long)m->seed,
	       m->name);
	return 2;
}

static int one_flag(const char *a, const char *v, Opts *o)
{
	const char **slot = !strcmp(a, "--data") ? &o->data : !strcmp(a, "--test") ? &o->test :
			    !strcmp(a, "--init") ? &o->init : !strcmp(a, "--save") ? &o->save :
			    !strcmp(a, "--resume") ? &o->resume : !strcmp(a, "--checkpoint") ? &o->checkpoint :
			    !strcmp(a, "--log") ? &o->log : NULL;
	if (slot) {
		*slot = v;
		return 0;
	}
	if (!strcmp(a, "--epochs"))
		return int_flag(a, v, 1, 1000000, &o->epochs);
	if (!strcmp(a, "--batch"))
		return int_flag(a, v, 1, 1 << 24, &o->batch);
	if (!strcmp(a, "--seed"))
		return int_flag(a, v, 0, INT64_MAX, &o->seed);
	if (!strcmp(a, "--steps"))
		return int_flag(a, v, 1, INT64_MAX, &o->steps);
	if (!strcmp(a, "--threads")) {
		int64_t t;
		if (int_flag(a, v, 1, 1024, &t))
			return 1;
		nnrt_pool_set_threads((int)t);
		return 0;
	}
	char *end;
	o->lr = strtod(v, &end);
	if (end == v || *end || !(o->lr > 0) || !isfinite(o->lr))
		return fail("--lr takes a positive number, not '%s'", v, NULL);
	return 0;
}

static int parse(const NnrtModelInfo *m, int argc, char **argv, Opts *o)
{
	*o = (Opts){ .data = m->data, .test = m->test, .epochs = m->epochs, .batch = m->batch, .seed = m->seed,
		     .lr = m->lr, .shuffle = true, .argc = argc, .argv = argv };
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--help") || !strcmp(a, "-h"))
			return print_usage(m, argv[0]);
		if (!strcmp(a, "--bench")) {
			o->bench = true;
			continue;
		}
		if (!strcmp(a, "--no-shuffle") || !strcmp(a, "--quiet") || !strcmp(a, "--verbose")) {
			bool *f = a[2] == 'n' ? &o->shuffle : a[2] == 'q' ? &o->quiet : &o->verbose;
			*f = a[2] != 'n';
			continue;
		}
		if (!takes_value(a))
			return fail("unknown option '%s'", a, "run with --help for the options");
		if (i + 1 >= argc)
			return fail("%s needs a value", a, NULL);
		if (one_flag(a, argv[++i], o))
			return 1;
	}
	if (!o->data)
		return fail("%s", "no training data: the model names none and --data is missing",
			    "pass --data PATH: an IDX folder, a .csv file, or inputs.npy,targets.npy");
	return 0;
}

/* ---- data ---- */

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

static int load_data(const NnrtModelInfo *m, const Opts *o, NnrtDataset *train, NnrtDataset *test, bool *has_test)
{
	NnrtError err;
	NnrtDataSpec spec = spec_of(m);
	if (nnrt_data_load(o->data, NNRT_SPLIT_TRAIN, &spec, train, &err) != 0) {
		fprintf(stderr, "error: %s\n", err.msg);
		return 1;
	}
	const char *tp = o->test ? o->test : is_dir(o->data) ? o->data : NULL;
	*has_test = tp && m->eval && !o->bench;	/* --bench evaluates nothing */
	if (*has_test && nnrt_data_load(tp, NNRT_SPLIT_TEST, &spec, test, &err) != 0) {
		fprintf(stderr, "error: %s\n", err.msg);
		nnrt_data_free(train);
		return 1;
	}
	return 0;
}

/* ---- the model in memory ---- */

typedef struct Run {
	const NnrtModelInfo *m;
	NnrtCtx ctx;
	float **bufs;
	void *arena;
	float *x, *out;
	void *y;
	int64_t max_batch;
} Run;

static void run_free(Run *r)
{
	free(r->arena);
	free(r->bufs);
	free(r->x);
	free(r->y);
	free(r->out);
}

static int run_setup(Run *r, const NnrtModelInfo *m, int64_t batch, uint64_t seed)
{
	size_t bytes = (nnrt_arena_size(m, batch) + 63) & ~(size_t)63;
	r->m = m;
	r->max_batch = batch;
	r->arena = aligned_alloc(64, bytes ? bytes : 64);
	r->bufs = calloc((size_t)m->nbufs + 1, sizeof(float *));
	r->x = malloc(sizeof(float) * (size_t)(batch * m->in_elems));
	r->y = malloc((size_t)batch * (m->target == NNRT_TARGET_CLASS ? sizeof(int64_t)
								     : sizeof(float) * (size_t)m->target_elems));
	r->out = malloc(sizeof(float) * (size_t)(batch * (m->out_elems ? m->out_elems : 1)));
	if (!r->arena || !r->bufs || !r->x || !r->y || !r->out) {
		fprintf(stderr, "error: out of memory for batches of %lld (%zu bytes of arena)\n", (long long)batch, bytes);
		return 1;
	}
	nnrt_init(&r->ctx, m, r->bufs, r->arena, batch, seed);
	return 0;
}

static int64_t argmax(const float *v, int64_t n)
{
	int64_t best = 0;
	for (int64_t i = 1; i < n; i++)
		if (v[i] > v[best])
			best = i;
	return best;
}

static bool classifies(const NnrtModelInfo *m)
{
	return m->metric == NNRT_METRIC_ACCURACY && m->target == NNRT_TARGET_CLASS && m->out_elems == m->classes;
}

static bool segments(const NnrtModelInfo *m)
{
	return m->metric == NNRT_METRIC_IOU && m->target == NNRT_TARGET_FLOAT && m->out_elems == m->target_elems;
}

static bool has_metric(const NnrtModelInfo *m)
{
	return classifies(m) || segments(m);
}

/* the metric beside the loss: accuracy, or the intersection over union of masks */
typedef struct Score {
	int64_t right, seen;	/* accuracy: correct samples of those seen */
	int64_t inter, uni;	/* IoU: pixels in both masks, in either */
} Score;

static double score_value(const NnrtModelInfo *m, const Score *s)
{
	if (segments(m))
		return s->uni ? (double)s->inter / (double)s->uni : 1.0;
	return s->seen ? (double)s->right / (double)s->seen : 0;
}

/* adds n samples whose outputs are in r->out; confusion[label][predicted] counts classes */
static void score_add(const Run *r, int64_t n, Score *s, int64_t *confusion)
{
	const NnrtModelInfo *m = r->m;
	s->seen += n;
	if (segments(m)) {	/* logits: the prediction is out > 0, the mask target > 0.5 */
		const float *t = r->y;
		for (int64_t i = 0; i < n * m->out_elems; i++) {
			bool p = r->out[i] > 0, y = t[i] > 0.5f;
			s->inter += p && y;
			s->uni += p || y;
		}
		return;
	}
	if (!classifies(m))
		return;
	int64_t c = m->classes;
	for (int64_t i = 0; i < n; i++) {
		int64_t p = argmax(r->out + i * m->out_elems, m->out_elems), y = ((int64_t *)r->y)[i];
		s->right += p == y;
		if (confusion)
			confusion[y * c + p]++;
	}
}

/* "acc 81.20%" or "iou 0.8531" */
static const char *metric_str(const NnrtModelInfo *m, double v)
{
	static char buf[32];	/* the driver is single-threaded; each use prints at once */
	if (segments(m))
		snprintf(buf, sizeof buf, "iou %.4f", v);
	else
		snprintf(buf, sizeof buf, "acc %.2f%%", 100 * v);
	return buf;
}

/* mean loss and the metric over a whole data set, in inference mode */
static void evaluate(Run *r, const NnrtDataset *d, double *loss, double *acc, int64_t *confusion)
{
	double sum = 0;
	Score sc = { 0 };
	int64_t *order = malloc(sizeof(int64_t) * (size_t)(d->count ? d->count : 1));
	if (!order) {
		*loss = *acc = NAN;
		return;
	}
	for (int64_t i = 0; i < d->count; i++)
		order[i] = i;
	for (int64_t at = 0; at < d->count; at += r->max_batch) {
		int64_t n = d->count - at < r->max_batch ? d->count - at : r->max_batch;
		nnrt_gather(d, order, at, n, r->x, r->y);
		sum += (double)r->m->eval(&r->ctx, n, r->x, r->y, r->out) * (double)n;
		score_add(r, n, &sc, confusion);
	}
	free(order);
	*loss = d->count ? sum / (double)d->count : 0;
	*acc = score_value(r->m, &sc);
}

/* ---- checkpoints ---- */

typedef struct Position {
	int64_t epoch, batch;		/* the next batch to train */
	NnrtRng data_rng;		/* the data-order generator at the start of that epoch */
} Position;

static bool in_checkpoint(const NnrtBuffer *b)
{
	return b->kind == NNRT_BUF_PARAM || b->kind == NNRT_BUF_STATE || b->kind == NNRT_BUF_OPT;
}

static int ckpt_tensors(const Run *r, NnrtTensor *t)
{
	int n = 0;
	for (int i = 0; i < r->m->nbufs; i++) {
		const NnrtBuffer *b = &r->m->bufs[i];
		if (!in_checkpoint(b))
			continue;
		t[n] = (NnrtTensor){ .name = b->name, .rank = b->rank, .data = r->bufs[i] };
		memcpy(t[n].shape, b->shape, sizeof t[n].shape);
		if (b->rank == 0 && b->elems > 1) {	/* optimizer state without a recorded shape */
			t[n].rank = 1;
			t[n].shape[0] = b->elems;
		}
		n++;
	}
	return n;
}

static uint32_t tensors_crc(const NnrtTensor *t, int n, const Run *r)
{
	uLong crc = crc32(0L, Z_NULL, 0);
	for (int i = 0; i < n; i++) {
		int64_t k = 1;
		for (int d = 0; d < t[i].rank; d++)
			k *= t[i].shape[d];
		crc = crc32(crc, (const Bytef *)t[i].data, (uInt)(k * (int64_t)sizeof(float)));
	}
	(void)r;
	return (uint32_t)crc;
}

static int ckpt_save(const Run *r, const Opts *o, const char *path, const Position *p, NnrtError *err)
{
	NnrtTensor *t = calloc((size_t)r->m->nbufs + 1, sizeof *t);
	if (!t)
		return fail("%s", "out of memory", NULL);
	int n = ckpt_tensors(r, t);
	char v[9][64];
	snprintf(v[0], 64, "%" PRId64, r->ctx.step);
	snprintf(v[1], 64, "%" PRId64, p->epoch);
	snprintf(v[2], 64, "%" PRId64, p->batch);
	snprintf(v[3], 64, "%" PRId64, o->batch);
	snprintf(v[4], 64, "%016" PRIx64 ":%016" PRIx64, p->data_rng.state, p->data_rng.inc);
	snprintf(v[5], 64, "%016" PRIx64 ":%016" PRIx64, r->ctx.rng.state, r->ctx.rng.inc);
	snprintf(v[6], 64, "%08" PRIx32, tensors_crc(t, n, r));
	snprintf(v[7], 64, "%d", o->shuffle);
	snprintf(v[8], 64, "%" PRId64, o->epochs);
	const char *meta[] = { "format", "nnc-checkpoint", "nnc_model", r->m->name, "step", v[0], "epoch", v[1],
			       "next_batch", v[2], "batch_size", v[3], "data_rng", v[4], "dropout_rng", v[5], "crc32", v[6],
			       "shuffle", v[7], "epochs", v[8] };
	int rc = nnrt_st_save(path, t, n, meta, (int)(sizeof meta / sizeof meta[0]) / 2, err);
	free(t);
	return rc;
}

static int meta_get(const char *path, const char *key, char *out, size_t cap)
{
	NnrtError err;
	int rc = nnrt_st_metadata(path, key, out, cap, &err);
	if (rc < 0)
		fprintf(stderr, "error: %s\n", err.msg);
	else if (rc == 0)
		fprintf(stderr, "error: %s: not an nnc checkpoint (no \"%s\" in its metadata)\n"
				"hint: --resume takes a .ckpt file written by nnc training; --init takes plain weights\n",
			path, key);
	return rc == 1 ? 0 : 1;
}

static int parse_rng(const char *s, NnrtRng *r)
{
	unsigned long long a, b;
	if (sscanf(s, "%16llx:%16llx", &a, &b) != 2)
		return 1;
	r->state = a;
	r->inc = b;
	return 0;
}

/* restores a checkpoint into the run: tensors, step, generators, and where to go on */
static int ckpt_load(Run *r, const Opts *o, const char *path, Position *p)
{
	char model[256], step[64], epoch[64], next[64], batch[64], drng[64], rrng[64], crc[64];
	if (meta_get(path, "nnc_model", model, sizeof model))
		return 1;
	if (strcmp(model, r->m->name)) {
		fprintf(stderr, "error: %s is a checkpoint of model '%s', not of '%s'\n", path, model, r->m->name);
		return 1;
	}
	if (meta_get(path, "step", step, 64) || meta_get(path, "epoch", epoch, 64) ||
	    meta_get(path, "next_batch", next, 64) || meta_get(path, "batch_size", batch, 64) ||
	    meta_get(path, "data_rng", drng, 64) || meta_get(path, "dropout_rng", rrng, 64) ||
	    meta_get(path, "crc32", crc, 64))
		return 1;
	if (strtoll(batch, NULL, 10) != o->batch) {
		fprintf(stderr, "error: %s was written with --batch %s, not %lld\nhint: resume with --batch %s\n", path,
			batch, (long long)o->batch, batch);
		return 1;
	}
	NnrtTensor *t = calloc((size_t)r->m->nbufs + 1, sizeof *t);
	NnrtError err;
	if (!t)
		return fail("%s", "out of memory", NULL);
	int n = ckpt_tensors(r, t);
	int rc = nnrt_st_load(path, t, n, &err);
	if (rc)
		fprintf(stderr, "error: %s\n", err.msg);
	else if (strtoul(crc, NULL, 16) != tensors_crc(t, n, r))
		rc = fail("%s: the checksum of the checkpoint's data does not match; the file is damaged", path, NULL);
	free(t);
	if (rc)
		return 1;
	r->ctx.step = strtoll(step, NULL, 10);
	p->epoch = strtoll(epoch, NULL, 10);
	p->batch = strtoll(next, NULL, 10);
	if (parse_rng(drng, &p->data_rng) || parse_rng(rrng, &r->ctx.rng) || p->epoch < 0 || p->batch < 0)
		return fail("%s: the checkpoint's position is unreadable; the file is damaged", path, NULL);
	return 0;
}

typedef struct LogRow {
	double loss, acc, test_loss, test_acc, lr, secs;
} LogRow;

typedef struct Trainer {
	Run *r;
	const Opts *o;
	const NnrtDataset *tr, *te;
	bool has_test;
	const char *ckpt;
	int64_t *order;
	NnrtRng data_rng;
	LogRow *log;
	int64_t first_epoch;	/* of this run: the log keeps earlier rows as it found them */
	char *log_prefix;	/* those rows, from the log file a resumed run found */
	int64_t first_step;
	double t0, age_at_start;	/* when nnrt_train_main began, and the process's age then (ms) */
} Trainer;

/* ---- the CSV log, rewritten whole (atomically) after each epoch ---- */

static void log_rows(FILE *f, const Trainer *t, int64_t upto)
{
	bool classes = has_metric(t->r->m), test = t->has_test;
	const char *name = segments(t->r->m) ? "iou" : "accuracy";
	fprintf(f, "epoch,loss%s%s%s%s%s,lr,seconds\n", classes ? "," : "", classes ? name : "", test ? ",test_loss" : "",
		test && classes ? ",test_" : "", test && classes ? name : "");
	if (t->log_prefix)
		fputs(t->log_prefix, f);
	for (int64_t i = t->first_epoch; i < upto; i++) {
		const LogRow *row = &t->log[i];
		fprintf(f, "%lld,%.6f", (long long)i + 1, row->loss);
		if (classes)
			fprintf(f, ",%.6f", row->acc);
		if (test)
			fprintf(f, ",%.6f", row->test_loss);
		if (test && classes)
			fprintf(f, ",%.6f", row->test_acc);
		fprintf(f, ",%.8g,%.3f\n", row->lr, row->secs);
	}
}

static int write_log(const Trainer *t, int64_t upto)
{
	const char *path = t->o->log;
	size_t len = strlen(path);
	char *tmp = malloc(len + 16);
	if (!tmp)
		return 1;
	snprintf(tmp, len + 16, "%s.tmpXXXXXX", path);
	int fd = mkstemp(tmp);
	FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (!f) {
		fprintf(stderr, "error: cannot write the log '%s': %s\n", path, strerror(errno));
		if (fd >= 0) {
			close(fd);
			unlink(tmp);
		}
		free(tmp);
		return 1;
	}
	log_rows(f, t, upto);
	bool ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
	ok &= fclose(f) == 0;
	if (!ok || rename(tmp, path) != 0) {
		fprintf(stderr, "error: cannot write the log '%s': %s\n", path, strerror(errno));
		unlink(tmp);
		free(tmp);
		return 1;
	}
	free(tmp);
	return 0;
}

/* a resumed run keeps the rows of the epochs before it: lines 2 .. first_epoch+1 of the old log */
static void read_log_prefix(Trainer *t)
{
	FILE *f = t->o->log && t->o->resume ? fopen(t->o->log, "r") : NULL;
	if (!f)
		return;
	char line[512];
	size_t cap = 4096, len = 0;
	char *buf = malloc(cap);
	int64_t row = -1;
	while (buf && fgets(line, sizeof line, f) && row < t->first_epoch) {
		if (row++ < 0)
			continue;	/* the header */
		size_t n = strlen(line);
		if (len + n + 1 > cap) {
			char *nb = realloc(buf, cap *= 2);
			if (!nb)
				break;
			buf = nb;
		}
		memcpy(buf + len, line, n + 1);
		len += n;
	}
	fclose(f);
	t->log_prefix = buf;
}

/* milliseconds since this process started (Linux /proc), or 0 where unknown */
static double process_age_ms(void)
{
	FILE *f = fopen("/proc/self/stat", "r");
	FILE *u = fopen("/proc/uptime", "r");
	double age = 0, up = 0;
	unsigned long long start = 0;
	if (f && u && fscanf(u, "%lf", &up) == 1) {
		char buf[1024];
		size_t n = fread(buf, 1, sizeof buf - 1, f);
		buf[n] = 0;
		const char *p = strrchr(buf, ')');	/* the command name may hold spaces */
		int field = 2;
		for (; p && *p && field < 22; p++)
			if (*p == ' ')
				field++;
		if (p && sscanf(p, "%llu", &start) == 1)
			age = up * 1000 - (double)start * 1000 / (double)sysconf(_SC_CLK_TCK);
	}
	if (f)
		fclose(f);
	if (u)
		fclose(u);
	return age > 0 ? age : 0;
}

/* ---- progress ---- */

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
	(void)sig;
	interrupted = 1;
}

typedef struct Progress {
	bool tty;
	double start, last;
	int64_t done, total;	/* batches this epoch */
	int64_t samples;
	double loss_sum;
	int64_t seen;
	Score score;
} Progress;

static void fmt_time(char *buf, size_t n, double s)
{
	long t = (long)(s + 0.5);
	if (t >= 3600)
		snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
	else
		snprintf(buf, n, "%ld:%02ld", t / 60, t % 60);
}

/* one line redrawn in place on a terminal, at most ten times a second */
static void progress_draw(const Progress *p, const Opts *o, const NnrtModelInfo *m, int64_t e, bool force)
{
	double t = now(), el = t - p->start;
	if (!p->tty || o->quiet || (!force && t - p->last < 0.1))
		return;
	char eta[32];
	double rate = el > 0 ? (double)p->samples / el : 0;
	fmt_time(eta, sizeof eta, p->done ? el / (double)p->done * (double)(p->total - p->done) : 0);
	int width = 24, fill = p->total ? (int)(width * p->done / p->total) : width;
	char bar[32];
	for (int i = 0; i < width; i++)
		bar[i] = i < fill ? '=' : i == fill ? '>' : ' ';
	bar[width] = 0;
	printf("\repoch %lld/%lld [%s] %lld/%lld  loss %.4f", (long long)e + 1, (long long)o->epochs, bar,
	       (long long)p->done, (long long)p->total, p->seen ? p->loss_sum / (double)p->seen : 0.0);
	if (has_metric(m))
		printf("  %s", metric_str(m, score_value(m, &p->score)));
	printf("  %.0f samples/s  ETA %s \033[K", rate, eta);
	fflush(stdout);
}

/* ---- training ---- */


static void say_resume(const Trainer *t)
{
	fprintf(stderr, "resume with:");
	for (int i = 0; i < t->o->argc; i++) {
		if (!strcmp(t->o->argv[i], "--resume")) {
			i++;
			continue;
		}
		fprintf(stderr, " %s", t->o->argv[i]);
	}
	fprintf(stderr, " --resume %s\n", t->ckpt);
}

static int checkpoint(Trainer *t, const Position *p)
{
	if (!t->ckpt)
		return 0;
	NnrtError err;
	if (ckpt_save(t->r, t->o, t->ckpt, p, &err) != 0) {
		fprintf(stderr, "error: %s\n", err.msg);
		return 1;
	}
	return 0;
}

/* trains batches [p->batch, end) of epoch p->epoch; 1 on error, 2 when interrupted */
static int epoch(Trainer *t, Position *p, Progress *pg)
{
	Run *r = t->r;
	const Opts *o = t->o;
	const NnrtDataset *d = t->tr;
	int64_t nb = (d->count + o->batch - 1) / o->batch;
	pg->total = nb;
	for (; p->batch < nb && (!o->steps || r->ctx.step < o->steps); p->batch++) {
		int64_t at = p->batch * o->batch, n = d->count - at < o->batch ? d->count - at : o->batch;
		nnrt_gather(d, t->order, at, n, r->x, r->y);
		float l = r->m->train_step(&r->ctx, n, r->x, r->y, r->out);
		if (!isfinite(l)) {
			if (pg->tty && !o->quiet)
				printf("\n");
			fprintf(stderr, "error: the loss became %s at step %lld (epoch %lld, batch %lld)\n",
				isnan(l) ? "NaN" : "infinite", (long long)r->ctx.step, (long long)p->epoch + 1,
				(long long)p->batch + 1);
			fprintf(stderr, "hint: lower the learning rate (--lr) or check the data for huge values%s%s%s\n",
				t->ckpt ? "; the last good checkpoint, " : "", t->ckpt ? t->ckpt : "", t->ckpt ? ", is intact" : "");
			return 1;
		}
		pg->done = p->batch + 1;
		pg->samples += n;
		pg->loss_sum += (double)l * (double)n;
		pg->seen += n;
		score_add(r, n, &pg->score, NULL);
		progress_draw(pg, o, r->m, p->epoch, false);
		if (interrupted) {
			p->batch++;
			if (pg->tty && !o->quiet)
				printf("\n");
			fprintf(stderr, "interrupted at step %lld (epoch %lld, batch %lld of %lld)\n", (long long)r->ctx.step,
				(long long)p->epoch + 1, (long long)p->batch, (long long)nb);
			if (!t->ckpt || checkpoint(t, p))
				return 1;
			fprintf(stderr, "checkpoint saved to %s\n", t->ckpt);
			say_resume(t);
			return 2;
		}
	}
	return 0;
}

/* draws the epoch's data order from the generator as it was at the epoch's start */
static void order_for(Trainer *t, const Position *p)
{
	for (int64_t i = 0; i < t->tr->count; i++)
		t->order[i] = i;
	t->data_rng = p->data_rng;
	if (t->o->shuffle)
		nnrt_shuffle(&t->data_rng, t->order, t->tr->count);
}

static void epoch_line(const Trainer *t, int64_t e, const Progress *pg, const LogRow *row)
{
	const NnrtModelInfo *m = t->r->m;
	if (t->o->quiet)
		return;
	if (pg->tty)
		printf("\r\033[K");
	printf("epoch %lld/%lld  loss %.4f", (long long)e + 1, (long long)t->o->epochs, row->loss);
	if (has_metric(m))
		printf("  %s", metric_str(m, row->acc));
	if (t->has_test)
		printf("  test loss %.4f", row->test_loss);
	if (t->has_test && has_metric(m))
		printf("  test %s", metric_str(m, row->test_acc));
	printf("  (%.1f s, %.0f samples/s)\n", row->secs, row->secs > 0 ? (double)pg->samples / row->secs : 0);
	fflush(stdout);
}

double nnrt_schedule_lr(const NnrtModelInfo *m, double lr, int64_t e, int64_t epochs)
{
	if (m->schedule == 1 && m->step_every > 0)
		return lr * pow(m->step_gamma, (double)(e / m->step_every));
	if (m->schedule == 2 && epochs > 0)
		return 0.5 * lr * (1 + cos(PI * (double)e / (double)epochs));
	return lr;
}

static int train(Trainer *t, Position p)
{
	Run *r = t->r;
	const Opts *o = t->o;
	bool tty = isatty(STDOUT_FILENO);
	int64_t nb = (t->tr->count + o->batch - 1) / o->batch;
	while (p.epoch < o->epochs && (!o->steps || r->ctx.step < o->steps)) {
		LogRow *row = &t->log[p.epoch];
		row->lr = nnrt_schedule_lr(r->m, o->lr, p.epoch, o->epochs);
		r->ctx.lr = row->lr;
		order_for(t, &p);
		if (o->verbose && r->ctx.step == t->first_step)
			fprintf(stderr, "nnc: first training step %.0f ms after launch\n", t->age_at_start + (now() - t->t0) * 1000);
		Progress pg = { .tty = tty, .start = now(), .done = p.batch };
		int rc = epoch(t, &p, &pg);
		if (rc)
			return rc;
		row->secs = now() - pg.start;
		row->loss = pg.seen ? pg.loss_sum / (double)pg.seen : 0;
		row->acc = score_value(r->m, &pg.score);
		if (t->has_test)
			evaluate(r, t->te, &row->test_loss, &row->test_acc, NULL);
		epoch_line(t, p.epoch, &pg, row);
		/* a finished epoch continues at the next one, with the generator as this
		 * epoch's shuffle left it; one cut short by --steps continues where it stopped */
		Position next = p;
		if (p.batch >= nb)
			next = (Position){ .epoch = p.epoch + 1, .batch = 0, .data_rng = t->data_rng };
		if (checkpoint(t, &next))
			return 1;
		if (o->log && write_log(t, p.epoch + 1))
			return 1;
		if (p.batch < nb)
			break;
		p = next;
	}
	return 0;
}

/*
 * --bench: the steady-state speed of train_step with the data in memory, for
 * bench/train.py. Batches are drawn as in training (shuffled, epoch after
 * epoch, however many epochs that takes); the warm-up steps absorb what only
 * the first steps pay (the JIT's compilation, cold caches, the pool's start)
 * and are not timed. Nothing is evaluated, written or saved.
 */
static int bench(Trainer *t, Position p)
{
	Run *r = t->r;
	const Opts *o = t->o;
	int64_t steps = o->steps ? o->steps : 100, warm = steps / 10 > 2 ? steps / 10 : 2;
	int64_t nb = (t->tr->count + o->batch - 1) / o->batch, samples = 0, s = 0;
	double t0 = now();
	float l = 0;
	r->ctx.lr = nnrt_schedule_lr(r->m, o->lr, 0, o->epochs);
	order_for(t, &p);
	for (; s < warm + steps && !interrupted; s++, p.batch++) {
		if (p.batch >= nb) {
			p = (Position){ .epoch = p.epoch + 1, .batch = 0, .data_rng = t->data_rng };
			order_for(t, &p);
		}
		if (s == warm)
			t0 = now();
		int64_t at = p.batch * o->batch, n = t->tr->count - at < o->batch ? t->tr->count - at : o->batch;
		nnrt_gather(t->tr, t->order, at, n, r->x, r->y);
		l = r->m->train_step(&r->ctx, n, r->x, r->y, r->out);
		if (!isfinite(l)) {
			fprintf(stderr, "error: the loss became %s at step %lld\n", isnan(l) ? "NaN" : "infinite",
				(long long)r->ctx.step);
			return 1;
		}
		samples += s >= warm ? n : 0;
	}
	double secs = now() - t0;
	if (s <= warm)
		return fail("%s", "interrupted during the warm-up: nothing was timed", NULL);
	printf("bench: %lld steps of batch %lld after %lld warm-up, threads %d: %.1f samples/s, %.3f ms/step "
	       "(last loss %.4f)\n",
	       (long long)(s - warm), (long long)o->batch, (long long)warm, nnrt_pool_threads(),
	       secs > 0 ? (double)samples / secs : 0.0, 1000 * secs / (double)(s - warm), l);
	return 0;
}

static void final_report(const Trainer *t)
{
	const Run *r = t->r;
	if (t->has_test) {
		double tl, ta;
		evaluate((Run *)r, t->te, &tl, &ta, NULL);
		printf("test: loss %.4f", tl);
		if (classifies(r->m))
			printf("  accuracy %.2f%%", 100 * ta);
		else if (segments(r->m))
			printf("  IoU %.4f", ta);
		printf(" (%lld samples)\n", (long long)t->te->count);
	}
	printf("trained %lld steps", (long long)r->ctx.step);
	if (t->o->save)
		printf("; weights: %s", t->o->save);
	if (t->ckpt)
		printf("; checkpoint: %s", t->ckpt);
	if (t->o->log)
		printf("; log: %s", t->o->log);
	printf("\n");
}

static const char *default_ckpt(const NnrtModelInfo *m, const Opts *o, char *buf, size_t n)
{
	if (o->checkpoint)
		return o->checkpoint;
	if (o->resume)
		return o->resume;
	if (o->save)
		snprintf(buf, n, "%s.ckpt", o->save);
	else
		snprintf(buf, n, "%s.ckpt", m->name);
	return buf;
}

static int start(Run *r, const Opts *o, Position *p)
{
	NnrtError err;
	nnrt_rng_seed(&p->data_rng, (uint64_t)o->seed, 0x64617461);
	if (o->resume)
		return ckpt_load(r, o, o->resume, p);
	if (o->init && nnrt_load_weights(&r->ctx, o->init, &err) != 0) {
		fprintf(stderr, "error: %s\n", err.msg);
		return 1;
	}
	return 0;
}

int nnrt_train_main(const NnrtModelInfo *m, int argc, char **argv)
{
	double t0 = now(), age = process_age_ms();
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
	char ckpt[4096];
	Trainer t = { .r = &r, .o = &o, .tr = &tr, .te = &te, .has_test = has_test,
		      .ckpt = default_ckpt(m, &o, ckpt, sizeof ckpt), .t0 = t0, .age_at_start = age };
	t.order = malloc(sizeof(int64_t) * (size_t)(tr.count ? tr.count : 1));
	t.log = calloc((size_t)o.epochs, sizeof *t.log);
	Position p = { 0 };
	rc = !t.order || !t.log ? fail("%s", "out of memory", NULL) : 0;
	rc = rc || run_setup(&r, m, o.batch, (uint64_t)o.seed) || start(&r, &o, &p);
	t.first_epoch = p.epoch < o.epochs ? p.epoch : o.epochs;
	t.first_step = r.ctx.step;
	read_log_prefix(&t);
	struct sigaction sa = { .sa_handler = on_sigint }, old;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old);
	if (!rc)
		rc = o.bench ? bench(&t, p) : train(&t, p);
	sigaction(SIGINT, &old, NULL);
	NnrtError err;
	if (!rc && !o.bench && o.save && nnrt_save_weights(&r.ctx, o.save, &err) != 0) {
		fprintf(stderr, "error: %s\n", err.msg);
		rc = 1;
	}
	if (!rc && !o.bench)
		final_report(&t);
	run_free(&r);
	free(t.order);
	free(t.log);
	free(t.log_prefix);
	nnrt_data_free(&tr);
	if (has_test)
		nnrt_data_free(&te);
	return rc == 2 ? 130 : rc;
}

/* ---- nnc eval: loss, accuracy and the confusion matrix of saved weights ---- */

int nnrt_eval_main(const NnrtModelInfo *m, int argc, char **argv)
{
	const char *weights = NULL, *data = m->test ? m->test : m->data;
	int64_t batch = m->batch;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if ((!strcmp(a, "--weights") || !strcmp(a, "--data") || !strcmp(a, "--batch")) && i + 1 >= argc)
			return fail("%s needs a value", a, NULL);
		if (!strcmp(a, "--weights"))
			weights = argv[++i];
		else if (!strcmp(a, "--data"))
			data = argv[++i];
		else if (!strcmp(a, "--batch")) {
			if (int_flag(a, argv[++i], 1, 1 << 24, &batch))
				return 1;
		} else
			return fail("unknown option '%s'", a, "eval takes --weights W, --data PATH and --batch N");
	}
	if (!weights)
		return fail("%s", "eval needs --weights W.safetensors", NULL);
	if (!data)
		return fail("%s", "no data to evaluate on: pass --data PATH", NULL);
	if (!m->eval)
		return fail("model '%s' has no loss to evaluate", m->name, NULL);
	NnrtDataset d = { 0 };
	NnrtDataSpec spec = spec_of(m);
	NnrtError err;
	if (nnrt_data_load(data, is_dir(data) ? NNRT_SPLIT_TEST : NNRT_SPLIT_TRAIN, &spec, &d, &err) != 0)
		return fail("%s", err.msg, NULL);
	Run r = { 0 };
	int64_t c = classifies(m) ? m->classes : 0;
	int64_t *conf = calloc((size_t)(c * c + 1), sizeof *conf);
	int rc = !conf || run_setup(&r, m, batch, 0);
	if (!rc && nnrt_load_weights(&r.ctx, weights, &err) != 0)
		rc = fail("%s", err.msg, NULL);
	if (!rc) {
		double loss, acc;
		evaluate(&r, &d, &loss, &acc, conf);
		printf("loss %.4f", loss);
		if (c)
			printf("  accuracy %.2f%% (%lld of %lld)", 100 * acc, (long long)llround(acc * (double)d.count),
			       (long long)d.count);
		else if (segments(m))
			printf("  IoU %.4f (%lld samples)", acc, (long long)d.count);
		printf("\n");
		if (c && c <= 32) {
			printf("confusion (rows: label, columns: predicted)\n      ");
			for (int64_t j = 0; j < c; j++)
				printf("%6lld", (long long)j);
			printf("\n");
			for (int64_t i = 0; i < c; i++) {
				printf("%6lld", (long long)i);
				for (int64_t j = 0; j < c; j++)
					printf("%6lld", (long long)conf[i * c + j]);
				printf("\n");
			}
		}
	}
	free(conf);
	run_free(&r);
	nnrt_data_free(&d);
	return rc;
}

/* ---- nnc predict: the model's outputs for inputs without labels ---- */

typedef struct PredictOpts {
	const char *weights, *input, *output;
	int64_t batch, top;
} PredictOpts;

static int predict_flags(const NnrtModelInfo *m, int argc, char **argv, PredictOpts *o)
{
	*o = (PredictOpts){ .batch = m->batch };
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!v)
			return fail("%s needs a value", a, NULL);
		if (!strcmp(a, "--weights"))
			o->weights = v;
		else if (!strcmp(a, "--input"))
			o->input = v;
		else if (!strcmp(a, "--output"))
			o->output = v;
		else if (!strcmp(a, "--batch")) {
			if (int_flag(a, v, 1, 1 << 24, &o->batch))
				return 1;
		} else if (!strcmp(a, "--top")) {
			if (int_flag(a, v, 1, m->out_elems ? m->out_elems : 1, &o->top))
				return 1;
		} else
			return fail("unknown option '%s'", a,
				    "predict takes --weights W, --input FILE, --top K, --output FILE.csv and --batch N");
		i++;
	}
	if (!o->weights || !o->input)
		return fail("%s", "predict needs --weights W.safetensors and --input FILE",
			    "FILE is a .npy of inputs, an IDX images file, or a CSV of inputs");
	if (!m->out_elems)
		return fail("model '%s' has no output to predict", m->name, NULL);
	return 0;
}

/* one CSV row per sample: every output, or the top k (index, value) pairs */
static void predict_rows(FILE *f, const NnrtModelInfo *m, const float *out, int64_t n, int64_t first, int64_t top)
{
	for (int64_t i = 0; i < n; i++) {
		const float *o = out + i * m->out_elems;
		fprintf(f, "%lld", (long long)(first + i));
		if (!top) {
			for (int64_t j = 0; j < m->out_elems; j++)
				fprintf(f, ",%.9g", o[j]);
		}
		for (int64_t k = 0, last = -1; k < top; k++) {
			/* the k-th largest: the best below the previous pick, ties by index */
			int64_t best = -1;
			for (int64_t j = 0; j < m->out_elems; j++) {
				bool below = last < 0 || o[j] < o[last] || (o[j] == o[last] && j > last);
				if (below && (best < 0 || o[j] > o[best]))
					best = j;
			}
			fprintf(f, ",%lld,%.9g", (long long)best, o[best]);
			last = best;
		}
		fprintf(f, "\n");
	}
}

static void predict_header(FILE *f, const NnrtModelInfo *m, int64_t top)
{
	fprintf(f, "sample");
	for (int64_t j = 0; j < (top ? top : m->out_elems); j++)
		fprintf(f, top ? ",class%lld,score%lld" : ",out%lld", (long long)j + 1, (long long)j + 1);
	fprintf(f, "\n");
}

int nnrt_predict_main(const NnrtModelInfo *m, int argc, char **argv)
{
	PredictOpts o;
	if (predict_flags(m, argc, argv, &o))
		return 1;
	NnrtDataSpec spec = { .in_elems = m->in_elems, .target = NNRT_TARGET_NONE, .csv_label_column = -1, .csv_header = -1 };
	NnrtDataset d = { 0 };
	NnrtError err;
	if (nnrt_data_load(o.input, NNRT_SPLIT_TEST, &spec, &d, &err) != 0)
		return fail("%s", err.msg, NULL);
	Run r = { 0 };
	int rc = run_setup(&r, m, o.batch, 0);
	if (!rc && nnrt_load_weights(&r.ctx, o.weights, &err) != 0)
		rc = fail("%s", err.msg, NULL);
	char *tmp = NULL;
	FILE *f = stdout;
	if (!rc && o.output) {
		size_t n = strlen(o.output) + 16;
		tmp = malloc(n);
		snprintf(tmp, n, "%s.tmpXXXXXX", o.output);
		int fd = mkstemp(tmp);
		f = fd >= 0 ? fdopen(fd, "w") : NULL;
		if (!f)
			rc = fail("cannot write '%s'", o.output, strerror(errno));
	}
	int64_t *order = malloc(sizeof(int64_t) * (size_t)(d.count ? d.count : 1));
	if (!rc && order) {
		predict_header(f, m, o.top);
		for (int64_t i = 0; i < d.count; i++)
			order[i] = i;
		for (int64_t at = 0; at < d.count; at += o.batch) {
			int64_t n = d.count - at < o.batch ? d.count - at : o.batch;
			nnrt_gather(&d, order, at, n, r.x, NULL);
			m->forward(&r.ctx, n, r.x, r.out);
			predict_rows(f, m, r.out, n, at, o.top);
		}
	}
	if (f && f != stdout) {
		bool ok = !rc && fflush(f) == 0 && fsync(fileno(f)) == 0;
		ok &= fclose(f) == 0;
		if (!ok || rename(tmp, o.output) != 0) {
			unlink(tmp);
			rc = rc ? rc : fail("cannot write '%s'", o.output, strerror(errno));
		}
	}
	free(tmp);
	free(order);
	run_free(&r);
	nnrt_data_free(&d);
	return rc;
}
