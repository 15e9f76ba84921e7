/*
 * gradcheck.h: the finite-difference harness of the gradient oracle
 * (DESIGN.md, "Three oracles"), shared by test_gradcheck*.c. A model is
 * compiled to loop IR and run in double by the interpreter (loop_interp.c).
 * Symbolic gradient: one train_step with sgd(lr=1) moves every parameter by
 * exactly -grad. Numeric gradient: central differences of the loss that
 * train_step returns with lr=0 (nothing moves; l1/l2 terms included). The
 * error is |s - f| / max(|s| + |f|, 1e-8) per element; the worst must stay
 * below TOL. Include after support.h.
 */
#ifndef NNC_TEST_GRADCHECK_H
#define NNC_TEST_GRADCHECK_H

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loop.h"
#include "loop_interp.h"

enum { BATCH = 3 };

static const double TOL = 1e-6;

typedef void (*Tweak)(LoopMachine *lm);

/* splitmix64: the test's own data, fixed, independent of the compiler's generator */
static uint64_t mix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static double unit(uint64_t *s)
{
	return (double)(mix(s) >> 11) * 0x1p-53;
}

/* count values uniform in [-1, 1) from the stream seed (freed by the caller) */
static double *random_inputs(int64_t count, uint64_t seed)
{
	double *x = calloc((size_t)count, sizeof *x);
	for (int64_t i = 0; i < count; i++)
		x[i] = 2 * unit(&seed) - 1;
	return x;
}

typedef struct Check {
	const char *name;
	Compile *c;
	LoopMachine *lm;
	double *x;
	int64_t *labels;
	double *t;
	bool reseed;		/* reseed the context's generator before every step: one dropout mask */
	double **saved;		/* persistent buffers, by buffer id */
} Check;

static bool persistent(const LoopBuf *b)
{
	return b->kind == LB_PARAM || b->kind == LB_STATE || b->kind == LB_OPT;
}

static void check_open(Check *k, const char *name, const char *src, Tweak tweak)
{
	k->name = name;
	k->c = compile_loops_ok(src);
	const LoopModule *m = k->c->loops;
	k->lm = loop_machine_new(m, BATCH, 11);
	if (tweak)
		tweak(k->lm);
	uint64_t s = 2024;
	k->x = calloc((size_t)(BATCH * m->meta.in_elems), sizeof *k->x);
	for (int64_t i = 0; i < BATCH * m->meta.in_elems; i++)
		k->x[i] = 2 * unit(&s) - 1;
	if (m->meta.class_target) {
		k->labels = calloc(BATCH, sizeof *k->labels);
		for (int64_t i = 0; i < BATCH; i++)
			k->labels[i] = (2 * i + 1) % m->meta.classes;
	} else {
		k->t = calloc((size_t)(BATCH * m->meta.target_elems), sizeof *k->t);
		for (int64_t i = 0; i < BATCH * m->meta.target_elems; i++)
			k->t[i] = 0.05 + 0.9 * unit(&s);
	}
	k->saved = calloc((size_t)m->nbufs + 1, sizeof *k->saved);
	for (int i = 0; i < m->nbufs; i++)
		if (persistent(m->bufs[i]))
			k->saved[i] = calloc((size_t)m->bufs[i]->elems, sizeof(double));
}

static void check_close(Check *k)
{
	for (int i = 0; i < k->c->loops->nbufs; i++)
		free(k->saved[i]);
	free(k->saved);
	free(k->x);
	free(k->labels);
	free(k->t);
	loop_machine_free(k->lm);
	compile_free(k->c);
}

static void save(Check *k)
{
	const LoopModule *m = k->c->loops;
	for (int i = 0; i < m->nbufs; i++)
		if (k->saved[i])
			memcpy(k->saved[i], loop_machine_buf(k->lm, m->bufs[i]->name), sizeof(double) * (size_t)m->bufs[i]->elems);
}

static void restore(Check *k)
{
	const LoopModule *m = k->c->loops;
	for (int i = 0; i < m->nbufs; i++)
		if (k->saved[i])
			memcpy(loop_machine_buf(k->lm, m->bufs[i]->name), k->saved[i], sizeof(double) * (size_t)m->bufs[i]->elems);
}

static double step(Check *k, double lr)
{
	loop_machine_set_lr(k->lm, lr);
	if (k->reseed)
		loop_machine_seed_rng(k->lm, 5);
	const void *y = k->labels ? (const void *)k->labels : (const void *)k->t;
	double loss = loop_machine_run(k->lm, "train_step", BATCH, k->x, y, NULL);
	if (!isfinite(loss))
		fail_msg("%s: the loss is %g", k->name, loss);
	return loss;
}

static double rel_err(double s, double f)
{
	double den = fabs(s) + fabs(f);
	return fabs(s - f) / (den > 1e-8 ? den : 1e-8);
}

/* the worst error over the elements of one parameter */
static double check_param(Check *k, const LoopBuf *b, double h)
{
	double *p = loop_machine_buf(k->lm, b->name), worst = 0;
	int64_t e = b->elems;
	double *grad = calloc((size_t)e, sizeof *grad);
	save(k);
	step(k, 1);
	for (int64_t i = 0; i < e; i++)
		grad[i] = k->saved[b->id][i] - p[i];
	restore(k);
	for (int64_t i = 0; i < e; i++) {
		double p0 = p[i];
		p[i] = p0 + h;
		double lp = step(k, 0);
		p[i] = p0 - h;
		double lm = step(k, 0);
		restore(k);
		double fd = (lp - lm) / (2 * h), err = rel_err(grad[i], fd);
		if (getenv("NNC_GRADCHECK_VERBOSE") && err > worst && err > 1e-8)
			printf("    %s[%" PRId64 "]: symbolic %.12g, numeric %.12g\n", b->name, i, grad[i], fd);
		worst = err > worst ? err : worst;
	}
	free(grad);
	return worst;
}

/* compiles src, checks the gradient of every parameter whose name does not start
 * with skip (NULL: every one); returns the worst error, *checked the parameters */
static double gradcheck_some(const char *name, const char *src, double h, Tweak tweak, bool reseed, const char *skip,
			     int *checked)
{
	Check k = { .reseed = reseed };
	check_open(&k, name, src, tweak);
	const LoopModule *m = k.c->loops;
	double worst = 0;
	int nparams = 0;
	for (int i = 0; i < m->nbufs; i++)
		if (m->bufs[i]->kind == LB_PARAM && !(skip && !strncmp(m->bufs[i]->name, skip, strlen(skip)))) {
			double e = check_param(&k, m->bufs[i], h);
			worst = e > worst ? e : worst;
			nparams++;
		}
	if (getenv("NNC_GRADCHECK_VERBOSE"))
		printf("gradcheck %-28s worst relative error %.2e over %d parameters\n", name, worst, nparams);
	assert_true(nparams > 0);
	check_close(&k);
	if (checked)
		*checked = nparams;
	return worst;
}

/* compiles src, checks every parameter's gradient; returns the worst error */
static double gradcheck_with(const char *name, const char *src, double h, Tweak tweak, bool reseed)
{
	return gradcheck_some(name, src, h, tweak, reseed, NULL, NULL);
}

static const double H = 1e-5;	/* the finite-difference step */

/* checks every parameter of src and fails the test unless the worst error is below TOL */
static void gradcheck_assert(const char *name, const char *src, double h)
{
	double worst = gradcheck_with(name, src, h, NULL, false);
	if (!(worst < TOL))
		fail_msg("%s: worst relative error %.3g (tolerance %.0e)", name, worst, TOL);
}

#endif
