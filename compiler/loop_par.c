/*
 * loop_par.c: which parallel loops the emitters outline, and what each
 * outlined body needs from its function (loop.h documents the rules). One
 * analysis for both emitters, so the C and LLVM code thread the same loops
 * with the same estimates of work.
 *
 * The work of an iteration is a static estimate, in about operations: loads,
 * stores and float arithmetic count 1 (integer index arithmetic 0), a
 * division 4, a transcendental function 10,
 * a nested loop its trip count times its body, a GEMM m*n*k/4 (it is
 * vectorized). Trip counts come from the loop's limits
 * evaluated over the enclosing counters' ranges, with the train section's
 * batch for n.
 */
#include "loop.h"

#include <math.h>

enum { UNKNOWN_TRIPS = 16 };	/* a loop whose limits have no static bound */

typedef struct Range {
	double lo, hi;
	bool known;
} Range;

/* what a region of statements touches */
typedef struct Scan {
	bool *bufs;		/* by buffer id */
	int *refs;		/* by variable id: reads and sets */
	bool *set;		/* by variable id: locals set, counters of loops */
	bool n, ctx, rand;
} Scan;

typedef struct Par {
	const LoopModule *m;
	const LoopFn *f;
	Range *var;		/* by variable id: the ranges of enclosing counters */
	int *refs;		/* by variable id: references in the whole function */
	LoopPars out;
	int cap;
} Par;

static void scan_expr(const LoopExpr *x, Scan *sc)
{
	if (!x)
		return;
	switch (x->kind) {
	case LE_VAR: sc->refs[x->var->id]++; break;
	case LE_N: sc->n = true; break;
	case LE_CTX: sc->ctx = true; break;
	case LE_RAND: sc->rand = true; break;
	case LE_LOAD:
		if (sc->bufs)
			sc->bufs[x->buf->id] = true;
		break;
	default: break;
	}
	scan_expr(x->a, sc);
	scan_expr(x->b, sc);
	scan_expr(x->c, sc);
}

/* the statements from s on (all of them, or s alone); bodies of the loops in
 * skip (outlined ones) are left out but their limits are not */
static void scan_stmts(const LoopStmt *s, bool all, Scan *sc, const LoopPars *skip)
{
	for (; s; s = all ? s->next : NULL) {
		scan_expr(s->idx, sc);
		scan_expr(s->val, sc);
		scan_expr(s->lo, sc);
		scan_expr(s->hi, sc);
		if (s->kind == LS_STORE && sc->bufs)
			sc->bufs[s->buf->id] = true;
		if (s->kind == LS_SET) {
			sc->refs[s->var->id]++;
			sc->set[s->var->id] = true;
		}
		if (s->kind == LS_GEMM) {
			const LoopGemm *g = s->gemm;
			if (sc->bufs)
				sc->bufs[g->a->id] = sc->bufs[g->b->id] = sc->bufs[g->c->id] = true;
			const LoopExpr *e[] = { g->m, g->n, g->k, g->aoff, g->boff, g->coff, g->lda, g->ldb, g->ldc };
			for (size_t i = 0; i < sizeof e / sizeof e[0]; i++)
				scan_expr(e[i], sc);
		}
		if (s->kind == LS_FOR) {
			sc->set[s->var->id] = true;
			if (!skip || loop_par_index(skip, s) < 0)
				scan_stmts(s->body, true, sc, skip);
		}
	}
}

/* ---- static bounds and work ---- */

/* x's value with every enclosing counter at fraction t of its range and n
 * at the train section's batch; false when x has no such static value. Trip
 * counts are taken at a few t: interval bounds would lose that the limits of
 * a pooling window [2i, 2i + 2) move together. */
static bool at(const Par *p, const LoopExpr *x, double t, double *v)
{
	double a, b;
	switch (x->kind) {
	case LE_CONST:
		*v = (double)x->i;
		return x->type == LT_I64 || x->type == LT_BOOL;
	case LE_VAR: {
		Range r = p->var[x->var->id];
		*v = floor(r.lo + t * (r.hi - r.lo) + 0.5);
		return x->var->is_index && r.known;
	}
	case LE_N:
		*v = (double)(p->m->meta.batch > 0 ? p->m->meta.batch : 64);
		return true;
	case LE_UN: return x->op == LO_CVT && x->type == LT_I64 && x->a->type == LT_I64 && at(p, x->a, t, v);
	case LE_BIN: break;
	default: return false;
	}
	if (x->type != LT_I64 || !at(p, x->a, t, &a) || !at(p, x->b, t, &b))
		return false;
	switch ((LoopBinOp)x->op) {
	case LO_ADD: *v = a + b; return true;
	case LO_SUB: *v = a - b; return true;
	case LO_MUL: *v = a * b; return true;
	case LO_MIN: *v = fmin(a, b); return true;
	case LO_MAX: *v = fmax(a, b); return true;
	case LO_DIV: *v = b ? trunc(a / b) : 0; return b != 0;
	default: return false;
	}
}

/* the mean trip count of loop s over its enclosing counters' ranges; sets
 * the range of its own counter */
static double trips(Par *p, const LoopStmt *s, bool *known)
{
	static const double ts[] = { 0, 0.5, 1 };
	double sum = 0, lo_min = 0, hi_max = 0;
	*known = true;
	for (int k = 0; k < 3 && *known; k++) {
		double lo, hi;
		*known = at(p, s->lo, ts[k], &lo) && at(p, s->hi, ts[k], &hi);
		if (!*known)
			break;
		sum += hi > lo ? hi - lo : 0;
		lo_min = k ? fmin(lo_min, lo) : lo;
		hi_max = k ? fmax(hi_max, hi) : hi;
	}
	p->var[s->var->id] = (Range){ lo_min, hi_max - 1, *known };
	return *known ? sum / 3 : UNKNOWN_TRIPS;
}

static double expr_work(const LoopExpr *x)
{
	if (!x)
		return 0;
	double w = 0;
	switch (x->kind) {
	case LE_CTX: case LE_LOAD: case LE_SELECT: w = 1; break;
	case LE_RAND: w = 4; break;
	case LE_BIN:	/* index arithmetic is mostly strength-reduced away: free */
		w = x->type == LT_I64 || x->type == LT_BOOL ? 0 : x->op == LO_DIV ? 4 : x->op == LO_POW ? 20 : 1;
		break;
	case LE_UN:
		w = x->op == LO_SQRT ? 4 : x->op == LO_NEG || x->op == LO_ABS || x->op == LO_CVT ? 1 : 10;
		break;
	default: break;
	}
	return w + expr_work(x->a) + expr_work(x->b) + expr_work(x->c);
}

static double body_work(Par *p, const LoopStmt *s)
{
	double w = 0;
	for (; s; s = s->next) {
		bool known;
		switch (s->kind) {
		case LS_STORE: w += 1 + expr_work(s->idx) + expr_work(s->val); break;
		case LS_SET: w += 1 + expr_work(s->val); break;
		case LS_FOR: w += 1 + trips(p, s, &known) * (1 + body_work(p, s->body)); break;
		case LS_GEMM: {
			const LoopGemm *g = s->gemm;
			const LoopExpr *dims[] = { g->m, g->n, g->k };
			double mnk = 1, d;
			for (int i = 0; i < 3; i++)
				mnk *= at(p, dims[i], 0.5, &d) ? d : 64;
			w += 1 + mnk / 4;
			break;
		}
		}
	}
	return w;
}

/* ---- choosing the loops ---- */

typedef enum { OUTLINE, SERIAL, DESCEND } Choice;

static Choice choose(Par *p, const LoopStmt *s, LoopPar *lp)
{
	size_t nv = (size_t)p->f->nvars + 1;
	Scan sc = { arena_alloc(p->m->arena, (size_t)p->m->nbufs + 1), arena_alloc(p->m->arena, nv * sizeof(int)),
		    arena_alloc(p->m->arena, nv), false, false, false };
	/* the body starts its chunk at lo; hi is the caller's (the count) */
	scan_expr(s->lo, &sc);
	scan_stmts(s->body, true, &sc, NULL);
	sc.set[s->var->id] = true;
	if (sc.rand)
		return DESCEND;
	bool known;
	double t = trips(p, s, &known);
	if (known && t <= 1)
		return DESCEND;
	double w = 1 + body_work(p, s->body);
	if (known && t * w < LOOP_GRAIN)
		return SERIAL;
	/* a local set inside and used outside would need its last value back */
	bool *locals = arena_alloc(p->m->arena, nv), *captured = arena_alloc(p->m->arena, nv);
	for (int v = 0; v < p->f->nvars; v++) {
		if (p->f->vars[v]->is_index) {
			captured[v] = sc.refs[v] && !sc.set[v];
			continue;
		}
		if (sc.set[v] && sc.refs[v] != p->refs[v])
			return DESCEND;
		locals[v] = sc.set[v];
		captured[v] = sc.refs[v] && !sc.set[v];
	}
	*lp = (LoopPar){ s, sc.bufs, captured, locals, sc.n, sc.ctx, w > 1e15 ? (int64_t)1e15 : (int64_t)w };
	return OUTLINE;
}

static void walk(Par *p, const LoopStmt *s)
{
	for (; s; s = s->next) {
		if (s->kind != LS_FOR)
			continue;
		bool known;
		trips(p, s, &known);
		LoopPar lp;
		Choice c = s->parallel ? choose(p, s, &lp) : DESCEND;
		if (c == OUTLINE) {
			if (p->out.npar == p->cap) {
				int cap = p->cap ? p->cap * 2 : 16;
				p->out.par = arena_grow(p->m->arena, p->out.par, (size_t)p->out.npar, (size_t)cap, sizeof(LoopPar));
				p->cap = cap;
			}
			p->out.par[p->out.npar++] = lp;
		} else if (c == DESCEND) {
			walk(p, s->body);
		}
	}
}

LoopPars loop_pars(const LoopModule *m, const LoopFn *f)
{
	size_t nv = (size_t)f->nvars + 1;
	Par p = { m, f, arena_alloc(m->arena, nv * sizeof(Range)), arena_alloc(m->arena, nv * sizeof(int)), { 0 }, 0 };
	Scan all = { NULL, p.refs, arena_alloc(m->arena, nv), false, false, false };
	scan_stmts(f->body, true, &all, NULL);
	walk(&p, f->body);
	Scan outer = { NULL, arena_alloc(m->arena, nv * sizeof(int)), arena_alloc(m->arena, nv), false, false, false };
	scan_stmts(f->body, true, &outer, &p.out);
	p.out.outer_locals = arena_alloc(m->arena, nv);
	for (int v = 0; v < f->nvars; v++)
		p.out.outer_locals[v] = !f->vars[v]->is_index && outer.refs[v];
	return p.out;
}

int loop_par_index(const LoopPars *p, const LoopStmt *s)
{
	for (int i = 0; i < p->npar; i++)
		if (p->par[i].loop == s)
			return i;
	return -1;
}
