/*
 * main.c: the nnc command line. Parses flags, runs the pipeline (compile.c)
 * and prints what was asked: a summary (`nnc check`), or the graph IR as
 * text or Graphviz (`--emit=ir`, `--emit=dot`). Exit status: 0 on success,
 * 1 on any error in the user's input or flags.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compile.h"
#include "emit_c.h"
#include "summary.h"

#ifndef NNC_VERSION
#define NNC_VERSION "0.0.0"
#endif

static const char usage[] =
	"usage: nnc check FILE.nn [--model NAME] [--params] [--list]\n"
	"       nnc FILE.nn -o MODEL.c [--main] [--prefix NAME] [--inference] [--model NAME]\n"
	"       nnc FILE.nn --emit=ir|dot|loops [-o OUT] [--inference] [--model NAME]\n"
	"       nnc --help | --version\n"
	"\n"
	"Compiles neural networks written in the nn language (docs/language.md).\n"
	"\n"
	"commands:\n"
	"  check FILE.nn       check the model and print a summary: every layer with its\n"
	"                      output shape, parameters and FLOPs, then the totals\n"
	"\n"
	"options:\n"
	"  --model NAME        the model to use when the file holds several (default: the first)\n"
	"  --params            (check) list every parameter and buffer with its shape, as a\n"
	"                      PyTorch state_dict names them\n"
	"  --list              (check) list the models in the file\n"
	"  -o MODEL.c          write C99 that trains and runs the model: MODEL.c and MODEL.h\n"
	"                      (compile with: cc MODEL.c -Iruntime runtime/libnnrt.a -lz -lm)\n"
	"  --main              (with -o) add main(): a program with the training command line\n"
	"  --prefix NAME       (with -o) start every generated symbol with NAME (default: the model's name)\n"
	"  --inference         forward only: no training step, no backward graph\n"
	"  --emit=ir           print the graph IR: the training step (forward, backward, updates),\n"
	"                      or the inference graph with --inference or for a model without a loss\n"
	"  --emit=dot          the same graph as Graphviz (render with: dot -Tsvg)\n"
	"  --emit=loops        print the loop IR the backends translate\n"
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
	bool params, list, main, inference;
} Flags;

static const char *const known[] = { "--model", "--params", "--list", "--emit", "-o", "--help", "--version", "-h",
				     "--main", "--prefix", "--inference" };

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
		else if (!strcmp(a, "--params"))
			f->params = true;
		else if (!strcmp(a, "--main"))
			f->main = true;
		else if (!strcmp(a, "--inference"))
			f->inference = true;
		else if (!strcmp(a, "--list"))
			f->list = true;
		else if (a[0] == '-' && a[1]) {
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
	if (f->emit && strcmp(f->emit, "ir") && strcmp(f->emit, "dot") && strcmp(f->emit, "loops"))
		return bad_flags("unknown --emit kind '%s'", f->emit, "--emit takes ir, dot or loops");
	if (!f->cmd && !f->emit && !f->out)
		return bad_flags("%s", "nothing to do: give a command, -o MODEL.c or --emit",
				 "nnc check FILE.nn, nnc FILE.nn -o model.c, or nnc FILE.nn --emit=ir");
	if (!f->cmd && !f->emit && (strlen(f->out) < 3 || strcmp(f->out + strlen(f->out) - 2, ".c")))
		return bad_flags("the output '%s' should end in .c", f->out, "nnc writes MODEL.c and MODEL.h beside it");
	if ((f->main || f->prefix) && (f->cmd || f->emit))
		return bad_flags("%s", "--main and --prefix go with -o MODEL.c", NULL);
	if (f->prefix && !valid_prefix(f->prefix))
		return bad_flags("the prefix '%s' must be a C identifier", f->prefix, "letters, digits and '_', not starting with a digit");
	if (f->cmd && f->emit)
		return bad_flags("%s", "check and --emit do not go together", "run them as two commands");
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

int main(int argc, char **argv)
{
	Flags f = { 0 };
	int r = parse_flags(argc, argv, &f);
	if (r)
		return r == 2 ? 0 : 1;
	CompileOpts o = { .model = f.model, .diag_out = stderr, .inference = f.inference };
	if (f.emit && !strcmp(f.emit, "loops"))
		o.upto = UPTO_LOOPS;
	else if (f.emit)
		o.upto = UPTO_GRAPHS;
	else if (!f.cmd)
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
	} else if (!f.emit) {
		rc = write_code(&f, c);
	} else if (!strcmp(f.emit, "loops")) {
		rc = write_output(f.out, emit_loops, c->loops);
	} else {
		const IrGraph *g = c->train ? c->train : c->infer;
		rc = write_output(f.out, !strcmp(f.emit, "ir") ? emit_ir : emit_dot, g);
	}
	compile_free(c);
	return rc;
}
