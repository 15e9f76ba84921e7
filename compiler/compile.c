/*
 * compile.c: the front end's pipeline, in order, one call per stage; it stops
 * after the first stage that reported errors, since later stages would only
 * repeat them. The IR verifier runs last: its failures are nnc's bugs.
 */
#include "compile.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "embed.h"
#include "lower.h"
#include "memplan.h"
#include "modes.h"
#include "shape.h"

static Compile *compile_new(const CompileOpts *o)
{
	Compile *c = calloc(1, sizeof *c);
	if (!c) {
		fprintf(stderr, "nnc: out of memory\n");
		exit(1);
	}
	c->arena = arena_new();
	diag_init(&c->diag, o ? o->diag_out : NULL);
	return c;
}

static Model *select_model(Compile *c, const char *want)
{
	Program *p = c->prog;
	if (p->nmodels == 0) {
		SrcLoc at = { &c->src, 1, 1, 1 };
		bool blank = true;
		for (size_t i = 0; i < c->src.len && blank; i++)
			blank = c->src.text[i] == ' ' || c->src.text[i] == '\t' || c->src.text[i] == '\n' || c->src.text[i] == '\r';
		if (blank)
			diag_error(at, "%s is empty", c->src.name);
		else
			diag_error(at, "%s holds no model", c->src.name);
		diag_hint("a model starts with 'model NAME {' (see docs/language.md)");
		return NULL;
	}
	if (!want)
		return p->models[0];
	const char *cands[64];
	int n = 0;
	for (int i = 0; i < p->nmodels; i++) {
		if (!strcmp(p->models[i]->name, want))
			return p->models[i];
		if (n < 64)
			cands[n++] = p->models[i]->name;
	}
	SrcLoc none = { 0 };
	diag_error(none, "%s has no model '%s'", c->src.name, want);
	const char *near = diag_closest(want, cands, n);
	if (near)
		diag_hint("did you mean '%s'?", near);
	else
		diag_hint("the models in it: %s%s", cands[0], n > 1 ? " and others (nnc check --list)" : "");
	return NULL;
}

static void verify(const IrGraph *g, const char *which)
{
	char buf[256];
	const char *bad = ir_verify(g, buf, sizeof buf);
	if (bad)
		NNC_BUG("%s graph of '%s' fails verification: %s", which, g->name, bad);
}

/* --optimizer SPEC, checked by the same front end as a train section: its
 * mistakes point into the flag's text */
static bool override_optimizer(Compile *c, const char *spec)
{
	Arena *a = c->arena;
	const char *text = arena_printf(a, "model flag { input x: [1]\n output x }\ntrain { optimizer = %s\n }\n", spec);
	SrcFile *src = arena_alloc(a, sizeof *src);
	*src = (SrcFile){ "--optimizer", text, strlen(text) };
	int before = c->diag.nerrors;
	AstFile *f = ast_parse(a, src);
	Program *p = c->diag.nerrors == before ? elab_program(a, f) : NULL;
	if (c->diag.nerrors != before || !p || p->nmodels != 1)
		return false;
	const TrainConfig *t = &p->models[0]->train;
	TrainConfig *m = &c->model->train;
	m->opt = t->opt;
	m->lr = t->lr;
	m->momentum = t->momentum;
	m->nesterov = t->nesterov;
	m->beta1 = t->beta1;
	m->beta2 = t->beta2;
	m->eps = t->eps;
	m->alpha = t->alpha;
	m->weight_decay = t->weight_decay;
	return true;
}

/* the graphs of training and inference, then their loops */
static bool back_end(Compile *c, const CompileOpts *o)
{
	if (o->optimizer && !override_optimizer(c, o->optimizer)) {
		c->failed_stage = "flags";
		return false;
	}
	const Model *m = c->model;
	PassOpts o2 = { .olevel = 2 };
	const PassOpts *po = o->passes ? o->passes : &o2;
	/* passes that compute from the weights (bnfold) need a forward-only module */
	PassOpts pi = *po, pt = *po;
	pi.frozen = po->frozen && o->inference;
	pt.frozen = false;
	c->infer = mode_inference(m->graph, &pi, &c->stats_infer);
	verify(c->infer, "inference");
	pass_run_all(c->infer, &pi, &c->stats_infer);
	if (!o->inference && m->graph->loss) {
		c->train = mode_training(m->graph, &m->train, &pt, &c->stats_train);
		if (c->diag.nerrors) {
			c->failed_stage = "autodiff";
			return false;
		}
		verify(c->train, "training");
		pass_run_all(c->train, &pt, &c->stats_train);
	}
	if (o->upto < UPTO_LOOPS)
		return true;
	c->loops = lower_model(c->arena, m, c->infer, c->train, c->src.name);
	if (!c->loops) {
		c->failed_stage = "lower";
		return false;
	}
	if (o->embed_weights && !embed_weights(c->loops, o->embed_weights)) {
		c->failed_stage = "embed";
		return false;
	}
	pass_memplan(c->loops);
	if (o->mem_budget > 0) {
		MemPlanStats st = memplan_stats(c->loops, c->loops->meta.batch);
		if (st.total > o->mem_budget) {
			SrcLoc none = { 0 };
			diag_error(none, "the planned arena needs %" PRId64 " bytes at batch %" PRId64
				   ", more than the memory budget of %" PRId64 " bytes (--mem-budget)", st.total, st.batch,
				   o->mem_budget);
			diag_hint("a smaller batch in the train section needs less; parameters and optimizer state take %" PRId64 " bytes",
				  st.params + st.state + st.opt);
			c->failed_stage = "memplan";
			return false;
		}
	}
	return true;
}

static void run(Compile *c, const CompileOpts *o)
{
	Diag *old = diag_use(&c->diag);
	c->ast = ast_parse(c->arena, &c->src);
	if (c->diag.nerrors) {
		c->failed_stage = "parse";
		goto out;
	}
	c->prog = elab_program(c->arena, c->ast);
	if (c->diag.nerrors) {
		c->failed_stage = "elaborate";
		goto out;
	}
	for (int i = 0; i < c->prog->nmodels; i++)
		shape_infer(c->prog->models[i]->graph);
	if (c->diag.nerrors) {
		c->failed_stage = "shape";
		goto out;
	}
	c->model = select_model(c, o ? o->model : NULL);
	if (!c->model) {
		c->failed_stage = "select";
		goto out;
	}
	/* -fbottleneck changes the model itself: before its training and inference graphs */
	if (o && o->bottleneck > 0)
		pass_bottleneck(c->model->graph, o->bottleneck, &c->bottleneck);
	for (int i = 0; i < c->prog->nmodels; i++)
		verify(c->prog->models[i]->graph, "model");
	if (o && o->upto >= UPTO_GRAPHS && !back_end(c, o))
		goto out;
out:
	c->nerrors = c->diag.nerrors;
	c->first_error = c->diag.first_error;
	diag_use(old);
}

Compile *compile_source(const char *name, const char *text, size_t len, const CompileOpts *o)
{
	Compile *c = compile_new(o);
	char *copy = arena_alloc(c->arena, len + 1);
	memcpy(copy, text, len);
	c->src = (SrcFile){ arena_strdup(c->arena, name), copy, len };
	run(c, o);
	return c;
}

Compile *compile_string(const char *text)
{
	return compile_source("<test>", text, strlen(text), NULL);
}

static Compile *read_failed(const CompileOpts *o, const char *path, const char *why, const char *hint)
{
	Compile *c = compile_new(o);
	Diag *old = diag_use(&c->diag);
	SrcLoc none = { 0 };
	diag_error(none, "cannot read '%s': %s", path, why);
	if (hint)
		diag_hint("%s", hint);
	c->nerrors = c->diag.nerrors;
	c->first_error = c->diag.first_error;
	c->failed_stage = "read";
	diag_use(old);
	return c;
}

Compile *compile_file(const char *path, const CompileOpts *o)
{
	struct stat st;
	if (stat(path, &st) != 0)
		return read_failed(o, path, strerror(errno), errno == ENOENT ? "check the path; it is taken from the current folder" : NULL);
	if (S_ISDIR(st.st_mode))
		return read_failed(o, path, "it is a folder", "give the path of a .nn file");
	if (st.st_size > COMPILE_MAX_FILE)
		return read_failed(o, path, "it is larger than 64 MiB", "a model file is text of a few kilobytes");
	FILE *f = fopen(path, "rb");
	if (!f)
		return read_failed(o, path, strerror(errno), NULL);
	size_t cap = (size_t)st.st_size + 1, len = 0;
	char *buf = malloc(cap + 1);
	if (!buf) {
		fclose(f);
		return read_failed(o, path, "out of memory", NULL);
	}
	/* read to the end even if the size changed since stat (a pipe, a growing file) */
	for (size_t got; (got = fread(buf + len, 1, cap - len, f)) > 0;) {
		len += got;
		if (len == cap) {
			if (cap > COMPILE_MAX_FILE) {
				free(buf);
				fclose(f);
				return read_failed(o, path, "it is larger than 64 MiB", NULL);
			}
			cap *= 2;
			char *nb = realloc(buf, cap + 1);
			if (!nb) {
				free(buf);
				fclose(f);
				return read_failed(o, path, "out of memory", NULL);
			}
			buf = nb;
		}
	}
	int err = ferror(f);
	fclose(f);
	if (err) {
		free(buf);
		return read_failed(o, path, "a read error occurred", NULL);
	}
	Compile *c = compile_source(path, buf, len, o);
	free(buf);
	return c;
}

void compile_free(Compile *c)
{
	if (!c)
		return;
	diag_fini(&c->diag);
	arena_free(c->arena);
	free(c);
}
