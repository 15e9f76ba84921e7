/*
 * main.c: the nnc command line. Parses flags, runs the pipeline (compile.c)
 * and prints what was asked: a summary (`nnc check`), or the graph IR as
 * text or Graphviz (`--emit=ir`, `--emit=dot`), C (`-o MODEL.c`), LLVM IR
 * or an object file (`--emit=llvm`, `--emit=obj`); `nnc train` JIT-compiles
 * the model and runs the runtime's training driver. Exit status: 0 on
 * success, 1 on any error in the user's input or flags.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "compile.h"
#include "emit_c.h"
#include "emit_llvm.h"
#include "jit.h"
#include "memplan.h"
#include "summary.h"

#ifndef NNC_VERSION
#define NNC_VERSION "0.0.0"
#endif

static const char usage[] =
	"usage: nnc check FILE.nn [--model NAME] [--params] [--list] [--mem-budget BYTES]\n"
	"       nnc FILE.nn -o MODEL.c [--main] [--prefix NAME] [--inference] [--model NAME] [--mem-budget BYTES]\n"
	"       nnc FILE.nn --emit=ir|dot|loops [-o OUT] [--inference] [--model NAME]\n"
	"       nnc FILE.nn --emit=llvm|obj [-o OUT] [--main] [--prefix NAME] [--inference] [--model NAME]\n"
	"       nnc train|eval|predict FILE.nn [--model NAME] [-O0|-O1|-O2] [--disable-pass=NAME]\n"
	"                 [-fbottleneck[=R]] [training flags: nnc train FILE.nn --help]\n"
	"       nnc --help | --version\n"
	"\n"
	"Compiles neural networks written in the nn language (docs/language.md).\n"
	"\n"
	"commands:\n"
	"  check FILE.nn       check the model and print a summary: every layer with its\n"
	"                      output shape, parameters and FLOPs, then the totals and the\n"
	"                      training arena (nnc's static memory plan) at the train section's batch\n"
	"  train FILE.nn       compile the model for this machine (LLVM JIT) and train it; the\n"
	"                      flags after the file are the training driver's (docs/training.md);\n"
	"                      --verbose also times the compilation and the start\n"
	"\n"
	"options:\n"
	"  --model NAME        the model to use when the file holds several (default: the first)\n"
	"  --params            (check) list every parameter and buffer with its shape, as a\n"
	"                      PyTorch state_dict names them\n"
	"  --list              (check) list the models in the file\n"
	"  -o MODEL.c          write C99 that trains and runs the model: MODEL.c and MODEL.h\n"
	"                      (compile with: cc -O3 -fno-math-errno MODEL.c -Iruntime runtime/libnnrt.a -lz -lm)\n"
	"  --main              (with -o) add main(): a program with the training command line\n"
	"  --prefix NAME       (with -o) start every generated symbol with NAME (default: the model's name)\n"
	"  --inference         forward only: no training step, no backward graph; at -O1 and -O2\n"
	"                      a batchnorm after a dense or convolution layer is folded into its\n"
	"                      weights when init or load runs (pass bnfold; C and --emit=loops)\n"
	"  --embed-weights W   (with --inference and -o MODEL.c) read the safetensors file W now,\n"
	"                      fold it, and compile the weights into MODEL.c as constants: the\n"
	"                      code needs no weights file\n"
	"  -O0, -O1, -O2       graph optimization level (default -O2): -O1 cleans up (simplify,\n"
	"                      fold, cse, dce), -O2 also puts ReLU after max pooling (poolrelu)\n"
	"                      and fuses element-wise ops into one loop\n"
	"  --disable-pass=NAME skip one graph pass (poolrelu, simplify, fold, bnfold, cse, dce, fuse); repeatable\n"
	"                      (these two also go with train, eval and predict)\n"
	"  -fbottleneck[=R]    rewrite each KxK convolution (K >= 3, groups 1) with at least 4R\n"
	"                      input and output channels as 1x1 (C -> C/R), KxK (C/R -> C/R),\n"
	"                      1x1 (C/R -> F); R defaults to 4. It changes the model: use it for\n"
	"                      train, eval and predict alike. check prints the parameters and\n"
	"                      FLOPs before and after (docs/passes.md)\n"
	"  --print-ir-after=PASS, --print-ir-after-all\n"
	"                      print the graph IR to standard error after that pass (or each)\n"
	"  --stats             (check) kernels per function at the -O level, the rewrites\n"
	"                      each pass made, and what fuse put in one kernel, layer by layer\n"
	"  --mem-budget BYTES  fail when the planned arena (training, at the train section's batch)\n"
	"                      is larger than BYTES; suffixes K, M, G (powers of 1024)\n"
	"  --emit=ir           print the graph IR: the training step (forward, backward, updates),\n"
	"                      or the inference graph with --inference or for a model without a loss\n"
	"  --emit=dot          the same graph as Graphviz (render with: dot -Tsvg)\n"
	"  --emit=loops        print the loop IR the backends translate\n"
	"  --emit=llvm         the model's LLVM module (.ll text, optimized for this machine)\n"
	"  --emit=obj          an object file for this machine (needs -o), what MODEL.c compiles to;\n"
	"                      with --main: cc OUT.o runtime/libnnrt.a -lz -lm -o model\n"
	"  -o OUT              (with --emit) write the output to OUT instead of standard output\n"
	"  -h, --help          show this help\n"
	"  --version           show the version\n"
	"\n"
	"Errors point at FILE:LINE:COL with a hint; the exit status is 1 after any error.\n";

typedef struct Flags {
	const char *cmd;	/* "check" or NULL */
	const char *file;
	const char *model;
	const char *emit;
	const char *out;
	const char *prefix;
	const char *mem_budget;
	const char *embed;	/* --embed-weights FILE */
	int64_t budget;		/* --mem-budget in bytes, 0 without */
	bool params, list, main, inference;
	PassOpts passes;	/* -O, --disable-pass, --print-ir-after */
	bool stats;		/* check --stats */
	int bottleneck;		/* -fbottleneck=R, 0 without */
} Flags;

static const char *const known[] = { "--model", "--params", "--list", "--emit", "-o", "--help", "--version", "-h",
				     "--main", "--prefix", "--inference", "--mem-budget", "-O0", "-O1", "-O2",
				     "--disable-pass", "--print-ir-after", "--print-ir-after-all", "--stats",
				     "-fbottleneck", "--embed-weights" };

static int bad_flags(const char *fmt, const char *arg, const char *hint)
{
	fprintf(stderr, "nnc: error: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n");
	if (hint)
		fprintf(stderr, "hint: %s\n", hint);
	fprintf(stderr, "run 'nnc --help' for the usage\n");
	return 1;
}

/* the value of `--flag VALUE` or `--flag=VALUE` */
static const char *value(int argc, char **argv, int *i)
{
	const char *eq = strchr(argv[*i], '=');
	if (eq)
		return eq + 1;
	if (*i + 1 < argc)
		return argv[++*i];
	return NULL;
}

static bool is_flag(const char *arg, const char *flag)
{
	size_t n = strlen(flag);
	return !strncmp(arg, flag, n) && (arg[n] == 0 || arg[n] == '=');
}

static bool valid_prefix(const char *p)
{
	if (!*p || (*p >= '0' && *p <= '9') || strlen(p) > 64)
		return false;
	for (; *p; p++)
		if (!(*p == '_' || (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
			return false;
	return true;
}

/* a pass name given to --disable-pass or --print-ir-after: 0 when known */
static int check_pass_name(const char *flag, const char *name)
{
	if (pass_lookup(name) >= 0)
		return 0;
	const char *names[PASS_MAX];
	for (int i = 0; i < pass_count(); i++)
		names[i] = pass_name(i);
	const char *near = diag_closest(name, names, pass_count());
	char hint[160];
	if (near)
		snprintf(hint, sizeof hint, "did you mean '%s'?", near);
	else
		snprintf(hint, sizeof hint, "the passes: poolrelu, simplify, fold, bnfold, cse, dce, fuse");
	fprintf(stderr, "nnc: error: %s: unknown pass '%s'\nhint: %s\n", flag, name, hint);
	return 1;
}

static int check_passes(const PassOpts *p)
{
	for (int i = 0; i < p->ndisabled; i++)
		if (check_pass_name("--disable-pass", p->disabled[i]))
			return 1;
	return p->print_after ? check_pass_name("--print-ir-after", p->print_after) : 0;
}

/* -fbottleneck or -fbottleneck=R into *r: 0 when it parsed, else 1 after the message */
static int parse_bottleneck(const char *arg, int *r)
{
	const char *v = arg + strlen("-fbottleneck");
	if (!*v) {
		*r = 4;
		return 0;
	}
	char *end;
	errno = 0;
	long k = *v == '=' && v[1] >= '0' && v[1] <= '9' ? strtol(v + 1, &end, 10) : -1;
	if (k < 1 || *end || errno || k > 1000000)
		return bad_flags("-fbottleneck takes a positive whole number, not '%s'", *v == '=' ? v + 1 : v,
				 "-fbottleneck=4 makes each wide convolution's middle 4 times thinner");
	*r = (int)k;
	return 0;
}

/* 0: parsed; 1: error reported; 2: --help or --version handled */
static int parse_flags(int argc, char **argv, Flags *f)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char **slot = NULL;
		if (!strcmp(a, "-h") || !strcmp(a, "--help") || (i == 1 && !strcmp(a, "help"))) {
			fputs(usage, stdout);
			return 2;
		}
		if (!strcmp(a, "--version")) {
			printf("nnc %s\n", NNC_VERSION);
			return 2;
		}
		if (is_flag(a, "--model"))
			slot = &f->model;
		else if (is_flag(a, "--emit"))
			slot = &f->emit;
		else if (is_flag(a, "-o"))
			slot = &f->out;
		else if (is_flag(a, "--prefix"))
			slot = &f->prefix;
		else if (is_flag(a, "--mem-budget"))
			slot = &f->mem_budget;
		else if (is_flag(a, "--embed-weights"))
			slot = &f->embed;
		else if (!strcmp(a, "--params"))
			f->params = true;
		else if (!strcmp(a, "-O0") || !strcmp(a, "-O1") || !strcmp(a, "-O2"))
			f->passes.olevel = a[2] - '0';
		else if (!strcmp(a, "--print-ir-after-all"))
			f->passes.print_all = true;
		else if (is_flag(a, "--print-ir-after"))
			slot = &f->passes.print_after;
		else if (is_flag(a, "--disable-pass")) {
			if (f->passes.ndisabled == PASS_MAX_DISABLED)
				return bad_flags("%s", "too many --disable-pass flags", NULL);
			slot = &f->passes.disabled[f->passes.ndisabled++];
		} else if (!strcmp(a, "--stats"))
			f->stats = true;
		else if (!strcmp(a, "--main"))
			f->main = true;
		else if (!strcmp(a, "--inference"))
			f->inference = true;
		else if (!strcmp(a, "--list"))
			f->list = true;
		else if (is_flag(a, "-fbottleneck")) {
			if (parse_bottleneck(a, &f->bottleneck))
				return 1;
		} else if (a[0] == '-' && a[1]) {
			char word[64];
			snprintf(word, sizeof word, "%.*s", (int)strcspn(a, "="), a);
			const char *near = diag_closest(word, known, sizeof known / sizeof known[0]);
			char hint[96];
			snprintf(hint, sizeof hint, "did you mean '%s'?", near ? near : "");
			return bad_flags("unknown option '%s'", a, near ? hint : NULL);
		} else if (i == 1 && !strcmp(a, "check")) {
			f->cmd = "check";
		} else if (!f->file) {
			f->file = a;
		} else {
			return bad_flags("unexpected argument '%s'", a, "nnc takes one .nn file");
		}
		if (slot) {
			const char *v = value(argc, argv, &i);
			if (!v || !*v)
				return bad_flags("option '%s' needs a value", a, NULL);
			*slot = v;
		}
	}
	if (!f->file)
		return bad_flags("%s", f->cmd ? "check needs a .nn file" : "no input file", "nnc check model.nn");
	bool code = f->emit && (!strcmp(f->emit, "llvm") || !strcmp(f->emit, "obj"));	/* LLVM: like -o MODEL.c */
	if (f->emit && !code && strcmp(f->emit, "ir") && strcmp(f->emit, "dot") && strcmp(f->emit, "loops"))
		return bad_flags("unknown --emit kind '%s'", f->emit, "--emit takes ir, dot, loops, llvm or obj");
	if (f->emit && !strcmp(f->emit, "obj") && !f->out)
		return bad_flags("%s", "--emit=obj needs -o FILE.o", NULL);
	if (!f->cmd && !f->emit && !f->out)
		return bad_flags("%s", "nothing to do: give a command, -o MODEL.c or --emit",
				 "nnc check FILE.nn, nnc FILE.nn -o model.c, or nnc FILE.nn --emit=ir");
	if (!f->cmd && !f->emit && (strlen(f->out) < 3 || strcmp(f->out + strlen(f->out) - 2, ".c")))
		return bad_flags("the output '%s' should end in .c", f->out, "nnc writes MODEL.c and MODEL.h beside it");
	if ((f->main || f->prefix) && (f->cmd || (f->emit && !code)))
		return bad_flags("%s", "--main and --prefix go with -o MODEL.c, --emit=llvm or --emit=obj", NULL);
	if (f->prefix && !valid_prefix(f->prefix))
		return bad_flags("the prefix '%s' must be a C identifier", f->prefix, "letters, digits and '_', not starting with a digit");
	if (f->cmd && f->emit)
		return bad_flags("%s", "check and --emit do not go together", "run them as two commands");
	if (check_passes(&f->passes))
		return 1;
	if (f->stats && (!f->cmd || f->params || f->list))
		return bad_flags("%s", "--stats goes with nnc check", NULL);
	if (f->embed && (!f->inference || f->cmd || (f->emit && strcmp(f->emit, "loops"))))
		return bad_flags("%s", "--embed-weights goes with --inference and -o MODEL.c (or --emit=loops)",
				 "nnc model.nn -o model.c --inference --embed-weights w.safetensors");
	/* forward-only C (and its loops) runs prepare after init and load: the
	 * weights are frozen between calls, so bnfold may fold into them */
	f->passes.frozen = f->inference && !code;
	if (f->mem_budget && ((f->budget = memplan_parse_bytes(f->mem_budget)) <= 0))
		return bad_flags("--mem-budget takes a size in bytes, not '%s'", f->mem_budget, "e.g. --mem-budget 512K, 64M or 2G");
	return 0;
}

/* writes through a temporary beside the target, then renames: never a half-written file */
static int write_output(const char *path, void (*fn)(FILE *, const void *), const void *arg)
{
	if (!path) {
		fn(stdout, arg);
		return fflush(stdout) == 0 ? 0 : 1;
	}
	size_t n = strlen(path);
	char *tmp = malloc(n + 16);
	if (!tmp)
		return 1;
	snprintf(tmp, n + 16, "%s.tmpXXXXXX", path);
	int fd = mkstemp(tmp);
	FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (!f) {
		fprintf(stderr, "nnc: error: cannot write '%s': %s\n", path, strerror(errno));
		if (fd >= 0) {
			close(fd);
			unlink(tmp);
		}
		free(tmp);
		return 1;
	}
	fn(f, arg);
	bool ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
	ok &= fclose(f) == 0;
	if (!ok || rename(tmp, path) != 0) {
		fprintf(stderr, "nnc: error: cannot write '%s': %s\n", path, strerror(errno));
		unlink(tmp);
		free(tmp);
		return 1;
	}
	free(tmp);
	/* make the rename itself durable */
	char *dcopy = strdup(path);
	int dfd = dcopy ? open(dirname(dcopy), O_RDONLY) : -1;
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	free(dcopy);
	return 0;
}

static void emit_ir(FILE *f, const void *g) { ir_print(f, g); }
static void emit_dot(FILE *f, const void *g) { ir_print_dot(f, g); }
static void emit_loops(FILE *f, const void *m) { loop_print(f, m); }

typedef struct CodeArgs {
	const LoopModule *m;
	const char *prefix, *hname;
	bool main;
} CodeArgs;

static void emit_h(FILE *f, const void *a)
{
	const CodeArgs *c = a;
	emitc_header(f, c->m, c->prefix, c->hname);
}

static void emit_c(FILE *f, const void *a)
{
	const CodeArgs *c = a;
	emitc_source(f, c->m, c->prefix, c->hname, c->main);
}

/* MODEL.c and MODEL.h, each written atomically */
static int write_code(const Flags *f, const Compile *c)
{
	size_t n = strlen(f->out);
	char *h = strdup(f->out);
	if (!h)
		return 1;
	h[n - 1] = 'h';
	const char *slash = strrchr(h, '/');
	CodeArgs a = { c->loops, f->prefix ? f->prefix : c->model->name, slash ? slash + 1 : h, f->main };
	int rc = write_output(h, emit_h, &a) || write_output(f->out, emit_c, &a);
	free(h);
	return rc;
}

typedef struct Bytes {
	const char *data;
	size_t len;
} Bytes;

static void emit_bytes(FILE *f, const void *a)
{
	const Bytes *b = a;
	fwrite(b->data, 1, b->len, f);
}

/* --emit=llvm and --emit=obj: the LLVM module as text or as an object file */
static int write_llvm(const Flags *f, const Compile *c)
{
	EmitllOpts o = { .prefix = f->prefix ? f->prefix : c->model->name, .with_main = f->main, .opt = 2 };
	char err[512];
	Bytes b = { 0 };
	char *data = NULL;
	if (emitll_render(c->loops, &o, strcmp(f->emit, "obj") ? EMITLL_IR : EMITLL_OBJ, &data, &b.len, err, sizeof err)) {
		fprintf(stderr, "nnc: error: %s\n", err);
		return 1;
	}
	b.data = data;
	int rc = write_output(f->out, emit_bytes, &b);
	free(data);
	return rc;
}

/* ---- nnc train FILE.nn [--model NAME] [training flags] ----
 * The kernels compile in the background while the driver loads the data
 * (jit.h); with --verbose (the driver's flag, passed on) nnc also reports
 * when the JIT started and when train_step's code was there. */

static double ms_since(const struct timespec *t0)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) * 1e3 + (double)(t.tv_nsec - t0->tv_nsec) * 1e-6;
}

/* milliseconds since the process started (Linux: /proc/self/stat, 10 ms
 * resolution), so the time the loader spends mapping libLLVM counts too; -1
 * where that is unknown */
static double ms_since_exec(void)
{
	char buf[1024];
	FILE *f = fopen("/proc/self/stat", "r");
	size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
	if (f)
		fclose(f);
	buf[n] = 0;
	const char *p = strrchr(buf, ')');	/* the command name may hold spaces */
	unsigned long long start = 0;
	for (int field = 2; p && field < 22; field++)
		p = strchr(p + 1, ' ');
	struct timespec now;
	if (!p || sscanf(p, " %llu", &start) != 1 || clock_gettime(CLOCK_BOOTTIME, &now) != 0)
		return -1;
	return ((double)now.tv_sec + (double)now.tv_nsec * 1e-9 - (double)start / (double)sysconf(_SC_CLK_TCK)) * 1e3;
}

static struct {
	struct timespec t0;	/* main() entered */
	Jit *jit;
	float (*train_step)(NnrtCtx *, int64_t, const float *, const void *, float *);
	bool reported;
} verbose;

/* with --verbose: the model's train_step, timing the first call once its code is there */
static float timed_step(NnrtCtx *ctx, int64_t n, const float *x, const void *y, float *out)
{
	if (!verbose.reported) {
		verbose.reported = true;
		struct timespec t;
		clock_gettime(CLOCK_MONOTONIC, &t);
		char err[512];
		if (jit_wait(verbose.jit, "train_step", err, sizeof err)) {
			fprintf(stderr, "nnc: error: %s\n", err);
			exit(1);
		}
		fprintf(stderr, "nnc: train_step compiled and running %.0f ms after launch (waited %.0f ms for it)\n",
			ms_since_exec(), ms_since(&t));
	}
	return verbose.train_step(ctx, n, x, y, out);
}

typedef struct RunArgs {
	const char *cmd;		/* train, eval or predict */
	const char *model, *optimizer, *backend;
	bool verbose, quiet, help;
	PassOpts passes;		/* -O0|-O1|-O2, --disable-pass */
	int bottleneck;			/* -fbottleneck=R */
} RunArgs;

/* the compiler's flags among a command's: -O0|-O1|-O2, --disable-pass=NAME,
 * -fbottleneck[=R]; *i moves past a value. 1: taken, 0: not ours, -1: error */
static int compiler_flag(int argc, char **argv, int *i, RunArgs *a)
{
	const char *f = argv[*i];
	if (!strcmp(f, "-O0") || !strcmp(f, "-O1") || !strcmp(f, "-O2")) {
		a->passes.olevel = f[2] - '0';
		return 1;
	}
	if (is_flag(f, "-fbottleneck"))
		return parse_bottleneck(f, &a->bottleneck) ? -1 : 1;
	if (!is_flag(f, "--disable-pass"))
		return 0;
	const char *v = value(argc, argv, i);
	if (!v || !*v || a->passes.ndisabled == PASS_MAX_DISABLED) {
		bad_flags(v && *v ? "%s: too many of them" : "option '%s' needs a value", f, NULL);
		return -1;
	}
	a->passes.disabled[a->passes.ndisabled++] = v;
	return check_pass_name("--disable-pass", v) ? -1 : 1;
}

/* the arguments after `nnc CMD FILE.nn`: --model, --optimizer, --backend and
 * the compiler's flags are nnc's; the rest goes to the runtime's driver after
 * a program name (rest has room for argc) */
static int run_args(int argc, char **argv, char **rest, int *nrest, RunArgs *a)
{
	for (int i = 3; i < argc; i++) {
		int mine = compiler_flag(argc, argv, &i, a);
		if (mine < 0)
			return 1;
		if (mine)
			continue;
		const char **slot = is_flag(argv[i], "--model") ? &a->model : is_flag(argv[i], "--optimizer") ? &a->optimizer :
				    is_flag(argv[i], "--backend") ? &a->backend : NULL;
		if (slot) {
			const char *flag = argv[i];
			*slot = value(argc, argv, &i);
			if (!*slot || !**slot)
				return bad_flags("option '%s' needs a value", flag, NULL);
		} else {
			a->verbose |= !strcmp(argv[i], "--verbose");
			a->quiet |= !strcmp(argv[i], "--quiet");
			a->help |= !strcmp(argv[i], "--help") || !strcmp(argv[i], "-h");
			rest[(*nrest)++] = argv[i];
		}
	}
	if (a->backend && strcmp(a->backend, "jit") && strcmp(a->backend, "c"))
		return bad_flags("unknown backend '%s'", a->backend, "--backend takes jit or c");
	if (a->backend && !strcmp(a->backend, "c") && strcmp(a->cmd, "train"))
		return bad_flags("%s", "--backend c goes with nnc train", NULL);
	if (a->optimizer && strcmp(a->cmd, "train"))
		return bad_flags("%s", "--optimizer goes with nnc train", NULL);
	return 0;
}

/* the JIT's model through the runtime's driver */
static int run_jit(const Compile *c, const RunArgs *a, int nrest, char **rest)
{
	char err[512];
	Jit *j = jit_new(c->loops, c->model->name, err, sizeof err);
	if (!j) {
		fprintf(stderr, "nnc: error: %s\n", err);
		return 1;
	}
	NnrtModelInfo info = *jit_model(j);
	/* --bench times steady training: the kernels it never calls (eval, forward)
	 * would otherwise compile in the background during the timed steps, on a
	 * core the training's threads want */
	bool bench = false;
	for (int i = 0; i < nrest; i++)
		bench |= !strcmp(rest[i], "--bench");
	if (bench && jit_wait(j, NULL, err, sizeof err)) {
		fprintf(stderr, "nnc: error: %s\n", err);
		jit_free(j);
		return 1;
	}
	if (a->verbose && info.train_step && !strcmp(a->cmd, "train")) {
		fprintf(stderr, "nnc: JIT started %.0f ms after launch (%.0f ms after main); kernels compile in the background\n",
			ms_since_exec(), ms_since(&verbose.t0));
		verbose.jit = j;
		verbose.train_step = info.train_step;
		info.train_step = timed_step;
	}
	int rc = !strcmp(a->cmd, "eval") ? nnrt_eval_main(&info, nrest, rest) :
		 !strcmp(a->cmd, "predict") ? nnrt_predict_main(&info, nrest, rest) : nnrt_train_main(&info, nrest, rest);
	jit_free(j);
	return rc;
}

static bool exists(const char *dir, const char *file, char *out, size_t n)
{
	return (size_t)snprintf(out, n, "%s/%s", dir, file) < n && access(out, R_OK) == 0;
}

/* the runtime beside this executable: its headers (inc) and libnnrt.a (lib),
 * for ./nnc (runtime/ beside it) and build/nnc (build/libnnrt.a, ../runtime) */
static bool runtime_paths(char *inc, char *lib, size_t n)
{
	char exe[1024], tmp[1024];
	ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (k <= 0)
		return false;
	exe[k] = 0;
	char *slash = strrchr(exe, '/');
	if (!slash)
		return false;
	*slash = 0;
	const char *incs[] = { "runtime", "../runtime" }, *libs[] = { "runtime/libnnrt.a", "libnnrt.a", "../runtime/libnnrt.a" };
	bool hi = false, hl = false;
	for (int i = 0; i < 2 && !hi; i++)
		if ((hi = exists(exe, incs[i], tmp, sizeof tmp) && exists(tmp, "nnrt.h", inc, n)))
			memcpy(inc, tmp, strlen(tmp) + 1 < n ? strlen(tmp) + 1 : n);
	for (int i = 0; i < 3 && !hl; i++)
		hl = exists(exe, libs[i], lib, n);
	return hi && hl;
}

/* --backend c: the emitted C with a main(), compiled by cc in a scratch
 * folder, then run with the driver's flags */
static int run_c(const Compile *c, int nrest, char **rest)
{
	char inc[1024], lib[1024], dir[] = "/tmp/nnc-XXXXXX";
	inc[sizeof inc - 1] = 0;
	if (!runtime_paths(inc, lib, sizeof inc))
		return bad_flags("%s", "cannot find the runtime (nnrt.h and libnnrt.a) beside nnc", "build it with make");
	if (!mkdtemp(dir))
		return bad_flags("cannot make a scratch folder: %s", strerror(errno), NULL);
	char src[64], exe[64], cmd[4096];
	snprintf(src, sizeof src, "%s/model.c", dir);
	snprintf(exe, sizeof exe, "%s/model", dir);
	Flags f = { .out = src, .main = true, .prefix = c->model->name };
	int rc = write_code(&f, c);
	const char *cc = getenv("CC") && *getenv("CC") ? getenv("CC") : "cc";
	snprintf(cmd, sizeof cmd, "%s -std=c99 -O3 -fno-math-errno -march=native -I'%s' '%s' '%s' -lz -lm -pthread -o '%s'", cc, inc, src, lib,
		 exe);
	if (!rc && system(cmd) != 0)
		rc = bad_flags("the C compiler failed: %s", cmd, "set CC to a working C99 compiler, or use --backend jit");
	if (!rc) {
		rest[0] = exe;
		rest[nrest] = NULL;
		fflush(NULL);
		pid_t pid = fork();
		if (pid == 0) {
			execv(exe, rest);
			_exit(127);
		}
		int st = 0;
		rc = pid < 0 || waitpid(pid, &st, 0) < 0 ? 1 : WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	}
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "nnc: warning: could not remove %s\n", dir);
	return rc;
}

/* nnc train|eval|predict FILE.nn [flags] */
static int run_command(int argc, char **argv)
{
	clock_gettime(CLOCK_MONOTONIC, &verbose.t0);
	RunArgs a = { .cmd = argv[1], .passes.olevel = 2 };
	if (argc < 3 || argv[2][0] == '-') {
		if (argc >= 3 && (!strcmp(argv[2], "--help") || !strcmp(argv[2], "-h"))) {
			fputs(usage, stdout);
			return 0;
		}
		return bad_flags("%s needs a .nn file first", a.cmd, "for example: nnc train examples/lenet.nn --epochs 1");
	}
	char **rest = calloc((size_t)argc + 2, sizeof *rest), prog[256];
	if (!rest)
		return 1;
	snprintf(prog, sizeof prog, "nnc %s %s", a.cmd, argv[2]);
	int nrest = 0;
	rest[nrest++] = prog;
	int rc = run_args(argc, argv, rest, &nrest, &a);
	if (!rc) {
		bool infer = strcmp(a.cmd, "train") != 0;
		CompileOpts o = { .model = a.model, .diag_out = stderr, .upto = UPTO_LOOPS, .inference = infer,
				  .optimizer = a.optimizer, .passes = &a.passes, .bottleneck = a.bottleneck };
		Compile *c = compile_file(argv[2], &o);
		if (c->nerrors > 1)
			fprintf(stderr, "%d errors\n", c->nerrors);
		if (!c->nerrors && !strcmp(a.cmd, "train") && !a.quiet && !a.help) {
			summary_print(stdout, c->model, argv[2]);	/* what is about to train */
			printf("\n");
			if (a.bottleneck) {
				summary_print_bottleneck(stdout, &c->bottleneck, c->model->graph);
				printf("\n");
			}
			fflush(stdout);
		}
		rc = c->nerrors ? 1 : a.backend && !strcmp(a.backend, "c") ? run_c(c, nrest, rest) : run_jit(c, &a, nrest, rest);
		compile_free(c);
	}
	free(rest);
	return rc;
}

/* nnc check: the training arena at the train section's batch, from the memory
 * plan; a model the back end cannot lower yet says so instead */
static void print_arena(const Compile *c, const CompileOpts *o, const char *file)
{
	Compile *lc = NULL;
	if (!c->loops) {
		CompileOpts lo = *o;
		lo.upto = UPTO_LOOPS;
		lo.diag_out = NULL;
		lc = compile_file(file, &lo);
	}
	const Compile *with = lc ? lc : c;
	if (with->loops && !with->nerrors) {
		MemPlanStats ms = memplan_stats(with->loops, with->loops->meta.batch);
		memplan_print(stdout, &ms, "");
	} else {
		printf("Arena:           not planned (%s)\n", with->first_error ? with->first_error : "no code for this model");
	}
	compile_free(lc);
}

static void print_fusions(FILE *out, const IrGraph *g);

/* check --stats: kernels (top-level loop nests and GEMM calls) per function, and
 * the rewrites of each pass on the inference and the training graph */
static void print_stats(FILE *out, const Compile *c, int olevel)
{
	fprintf(out, "Kernels (-O%d):  ", olevel);
	for (int i = 0; c->loops && i < c->loops->nfns; i++)
		fprintf(out, "%s%s %d", i ? ", " : "", c->loops->fns[i]->name, c->loops->fns[i]->kernels);
	fprintf(out, "\nRewrites:        pass: inference, training\n");
	for (int i = 0; i < pass_count(); i++) {
		if (!c->stats_infer.ran[i] && !c->stats_train.ran[i]) {
			fprintf(out, "  %-9s      not run\n", pass_name(i));
			continue;
		}
		fprintf(out, "  %-9s      %d, %d\n", pass_name(i), c->stats_infer.fired[i], c->stats_train.fired[i]);
	}
	print_fusions(out, c->train);
}

static const char *layer_of(const IrNode *n)
{
	if (ir_op_family(n->op) == FAM_UPDATE && n->nin && n->in[0]->name)
		return n->in[0]->name;	/* an update: its parameter */
	return n->layer ? n->layer : ir_op_name(n->op);
}

/* check --stats: where the fusion pass put ops in one kernel on the training graph
 * (passes/fuse.c): element-wise groups with their head, channel groups, ops run by
 * another op's kernel, sums taken in the loop of their input */
static void print_fusions(FILE *out, const IrGraph *g)
{
	if (!g)
		return;
	fprintf(out, "Fused (train_step):\n");
	int shown = 0;
	for (int i = 0; i < g->nnodes; i++) {
		const IrNode *n = g->nodes[i];
		for (int ch = 0; ch < 2; ch++) {	/* the element-wise group it heads, its channel group */
			if ((ch ? n->cgroup : n->group) != i + 1)
				continue;
			fprintf(out, "  %-26s %s", layer_of(n), ch ? "channel group: " : "");
			int k = 0;
			for (int j = i; j < g->nnodes; j++)
				if ((ch ? g->nodes[j]->cgroup : g->nodes[j]->group) == i + 1)
					fprintf(out, "%s%s", k++ ? " + " : "", ir_op_name(g->nodes[j]->op));
			fprintf(out, "\n");
			shown++;
		}
		if (n->host) {
			const IrNode *h = g->nodes[n->host - 1];
			fprintf(out, "  %-26s %s in the kernel of %s (%s)\n", layer_of(n), ir_op_name(n->op), layer_of(h),
				ir_op_name(h->op));
			shown++;
		}
		if (n->tail) {
			const IrNode *v = g->nodes[n->tail - 1];
			fprintf(out, "  %-26s %s in the loop of %s (%s)\n", layer_of(n), ir_op_name(n->op), layer_of(v),
				ir_op_name(v->op));
			shown++;
		}
	}
	if (!shown)
		fprintf(out, "  nothing (the fuse pass did not run or found nothing)\n");
}

int main(int argc, char **argv)
{
	if (argc >= 2 && (!strcmp(argv[1], "train") || !strcmp(argv[1], "eval") || !strcmp(argv[1], "predict")))
		return run_command(argc, argv);
	Flags f = { .passes.olevel = 2 };
	int r = parse_flags(argc, argv, &f);
	if (r)
		return r == 2 ? 0 : 1;
	CompileOpts o = { .model = f.model, .diag_out = stderr, .inference = f.inference, .mem_budget = f.budget,
			  .passes = &f.passes, .bottleneck = f.bottleneck, .embed_weights = f.embed };
	if (f.emit && (!strcmp(f.emit, "loops") || !strcmp(f.emit, "llvm") || !strcmp(f.emit, "obj")))
		o.upto = UPTO_LOOPS;
	else if (f.emit)
		o.upto = UPTO_GRAPHS;
	else if (!f.cmd || f.budget || f.stats)
		o.upto = UPTO_LOOPS;
	Compile *c = compile_file(f.file, &o);
	if (c->nerrors) {
		if (c->nerrors > 1)
			fprintf(stderr, "%d errors\n", c->nerrors);
		compile_free(c);
		return 1;
	}
	int rc = 0;
	if (f.list) {
		for (int i = 0; i < c->prog->nmodels; i++)
			printf("%s\n", c->prog->models[i]->name);
	} else if (f.cmd && f.params) {
		summary_print_params(stdout, c->model->graph);
	} else if (f.cmd) {
		summary_print(stdout, c->model, f.file);
		print_arena(c, &o, f.file);
		if (f.bottleneck) {
			printf("\n");
			summary_print_bottleneck(stdout, &c->bottleneck, c->model->graph);
		}
		if (f.stats)
			print_stats(stdout, c, f.passes.olevel);
	} else if (!f.emit) {
		rc = write_code(&f, c);
	} else if (!strcmp(f.emit, "llvm") || !strcmp(f.emit, "obj")) {
		rc = write_llvm(&f, c);
	} else if (!strcmp(f.emit, "loops")) {
		rc = write_output(f.out, emit_loops, c->loops);
	} else {
		const IrGraph *g = c->train ? c->train : c->infer;
		rc = write_output(f.out, !strcmp(f.emit, "ir") ? emit_ir : emit_dot, g);
	}
	compile_free(c);
	return rc;
}
