/*
 * loop.c: builders and the printer of the loop IR (loop.h). Builders keep
 * expressions typed (they insert conversions) and fold integer arithmetic on
 * constants, so index expressions stay small and every emitter sees the same
 * explicit tree.
 */
#include "loop.h"

#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "diag.h"

LoopModule *loop_new_module(Arena *a)
{
	LoopModule *m = arena_alloc(a, sizeof *m);
	m->arena = a;
	return m;
}

LoopBuf *loop_new_buf(LoopModule *m, const char *name, LoopType t, int64_t elems, bool batched, LoopBufKind k)
{
	if (m->nbufs == m->capbufs) {
		int cap = m->capbufs ? m->capbufs * 2 : 64;
		m->bufs = arena_grow(m->arena, m->bufs, (size_t)m->nbufs, (size_t)cap, sizeof(LoopBuf *));
		m->capbufs = cap;
	}
	LoopBuf *b = arena_alloc(m->arena, sizeof *b);
	b->id = m->nbufs;
	b->name = name;
	b->type = t;
	b->elems = elems;
	b->batched = batched;
	b->kind = k;
	m->bufs[m->nbufs++] = b;
	return b;
}

LoopBuf *loop_find_buf(const LoopModule *m, const char *name)
{
	for (int i = 0; i < m->nbufs; i++)
		if (m->bufs[i]->name && !strcmp(m->bufs[i]->name, name))
			return m->bufs[i];
	return NULL;
}

LoopFn *loop_new_fn(LoopModule *m, const char *name)
{
	if (m->nfns == m->capfns) {
		int cap = m->capfns ? m->capfns * 2 : 4;
		m->fns = arena_grow(m->arena, m->fns, (size_t)m->nfns, (size_t)cap, sizeof(LoopFn *));
		m->capfns = cap;
	}
	LoopFn *f = arena_alloc(m->arena, sizeof *f);
	f->arena = m->arena;
	f->name = name;
	f->tail = &f->body;
	m->fns[m->nfns++] = f;
	return f;
}

LoopFn *loop_find_fn(const LoopModule *m, const char *name)
{
	for (int i = 0; i < m->nfns; i++)
		if (!strcmp(m->fns[i]->name, name))
			return m->fns[i];
	return NULL;
}

static void *alloc(LoopFn *f, size_t n)
{
	return arena_alloc(f->arena, n);
}

static LoopStmt *append(LoopFn *f, LoopStmtKind k)
{
	LoopStmt *s = alloc(f, sizeof *s);
	s->kind = k;
	*f->tail = s;
	f->tail = &s->next;
	if (f->depth == 0 && (k == LS_FOR || k == LS_GEMM))
		f->kernels++;	/* a loop nest or a GEMM call; top-level scalar statements are not kernels */
	return s;
}

static LoopVar *new_var(LoopFn *f, LoopType t, bool index)
{
	if (f->nvars == f->capvars) {
		int cap = f->capvars ? f->capvars * 2 : 16;
		f->vars = arena_grow(f->arena, f->vars, (size_t)f->nvars, (size_t)cap, sizeof(LoopVar *));
		f->capvars = cap;
	}
	LoopVar *v = alloc(f, sizeof *v);
	v->id = f->nvars;
	v->type = t;
	v->is_index = index;
	f->vars[f->nvars++] = v;
	return v;
}

LoopVar *loop_for(LoopFn *f, LoopExpr *lo, LoopExpr *hi)
{
	if (f->depth >= LOOP_MAX_NEST)
		NNC_BUG("loop nest deeper than %d", LOOP_MAX_NEST);
	LoopStmt *s = append(f, LS_FOR);
	s->var = new_var(f, LT_I64, true);
	s->lo = loop_cvt(f, LT_I64, lo);
	s->hi = loop_cvt(f, LT_I64, hi);
	f->stack[f->depth++] = f->tail;
	f->tail = &s->body;
	return s->var;
}

LoopVar *loop_for_n(LoopFn *f, int64_t hi)
{
	return loop_for(f, loop_i64(f, 0), loop_i64(f, hi));
}

/* the FOR statement whose body is open: the tail saved by loop_for points at its next */
static LoopStmt *open_loop(LoopFn *f)
{
	if (f->depth == 0)
		NNC_BUG("no open loop");
	LoopStmt **after = f->stack[f->depth - 1];
	return (LoopStmt *)((char *)after - offsetof(LoopStmt, next));
}

void loop_parallel(LoopFn *f)
{
	open_loop(f)->parallel = true;
}

void loop_end(LoopFn *f)
{
	if (f->depth == 0)
		NNC_BUG("loop_end without loop_for");
	f->tail = f->stack[--f->depth];
}

void loop_store(LoopFn *f, LoopBuf *b, LoopExpr *idx, LoopExpr *v)
{
	LoopStmt *s = append(f, LS_STORE);
	s->buf = b;
	s->idx = loop_cvt(f, LT_I64, idx);
	s->val = loop_cvt(f, b->type, v);
}

LoopVar *loop_local(LoopFn *f, LoopType t, LoopExpr *init)
{
	LoopVar *v = new_var(f, t, false);
	loop_set(f, v, init);
	return v;
}

void loop_set(LoopFn *f, LoopVar *v, LoopExpr *val)
{
	LoopStmt *s = append(f, LS_SET);
	s->var = v;
	s->val = loop_cvt(f, v->type, val);
}

void loop_gemm(LoopFn *f, const LoopGemm *g)
{
	LoopStmt *s = append(f, LS_GEMM);
	s->gemm = alloc(f, sizeof *s->gemm);
	*s->gemm = *g;
	LoopGemm *c = s->gemm;
	if (g->conv) {
		LoopConv *conv = alloc(f, sizeof *conv);
		*conv = *g->conv;
		c->conv = conv;
	}
	LoopExpr **ints[] = { &c->m, &c->n, &c->k, &c->aoff, &c->boff, &c->coff, &c->lda, &c->ldb, &c->ldc };
	for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
		*ints[i] = *ints[i] ? loop_cvt(f, LT_I64, *ints[i]) : loop_i64(f, 0);
}

void loop_conv_fields(const LoopConv *c, int64_t out[LOOP_CONV_FIELDS])
{
	const int64_t v[LOOP_CONV_FIELDS] = { c->c, c->h, c->w, c->kh, c->kw, c->sh, c->sw,
					      c->ph, c->pw, c->dh, c->dw, c->oh, c->ow };
	memcpy(out, v, sizeof v);
}

static LoopExpr *expr(LoopFn *f, LoopExprKind k, LoopType t)
{
	LoopExpr *e = alloc(f, sizeof *e);
	e->kind = k;
	e->type = t;
	return e;
}

LoopExpr *loop_f32(LoopFn *f, double v)
{
	LoopExpr *e = expr(f, LE_CONST, LT_F32);
	e->f = (float)v;
	return e;
}

LoopExpr *loop_f64(LoopFn *f, double v)
{
	LoopExpr *e = expr(f, LE_CONST, LT_F64);
	e->f = v;
	return e;
}

LoopExpr *loop_i64(LoopFn *f, int64_t v)
{
	LoopExpr *e = expr(f, LE_CONST, LT_I64);
	e->i = v;
	return e;
}

LoopExpr *loop_var(LoopFn *f, LoopVar *v)
{
	LoopExpr *e = expr(f, LE_VAR, v->type);
	e->var = v;
	return e;
}

LoopExpr *loop_n(LoopFn *f)
{
	return expr(f, LE_N, LT_I64);
}

LoopExpr *loop_ctx(LoopFn *f, LoopCtxField field)
{
	LoopExpr *e = expr(f, LE_CTX, LT_F64);
	e->field = field;
	return e;
}

LoopExpr *loop_load(LoopFn *f, LoopBuf *b, LoopExpr *idx)
{
	LoopExpr *e = expr(f, LE_LOAD, b->type);
	e->buf = b;
	e->a = loop_cvt(f, LT_I64, idx);
	return e;
}

LoopExpr *loop_cvt(LoopFn *f, LoopType t, LoopExpr *a)
{
	if (a->type == t)
		return a;
	if (a->kind == LE_CONST && t != LT_BOOL) {
		LoopExpr *c = expr(f, LE_CONST, t);
		double v = a->type == LT_I64 || a->type == LT_BOOL ? (double)a->i : a->f;
		if (t == LT_I64)
			c->i = (int64_t)v;
		else
			c->f = t == LT_F32 ? (float)v : v;
		return c;
	}
	LoopExpr *e = expr(f, LE_UN, t);
	e->op = LO_CVT;
	e->a = a;
	return e;
}

static int rank(LoopType t)
{
	return t == LT_BOOL ? 0 : t == LT_I64 ? 1 : t == LT_F32 ? 2 : 3;
}

static bool is_const_i(const LoopExpr *e, int64_t v)
{
	return e->kind == LE_CONST && e->type == LT_I64 && e->i == v;
}

/* integer folding: constants, x+0, x*1, x*0 */
static LoopExpr *fold(LoopFn *f, LoopBinOp op, LoopExpr *a, LoopExpr *b)
{
	if (a->type != LT_I64)
		return NULL;
	if (a->kind == LE_CONST && b->kind == LE_CONST) {
		int64_t x = a->i, y = b->i, r;
		switch (op) {
		case LO_ADD: r = x + y; break;
		case LO_SUB: r = x - y; break;
		case LO_MUL: r = x * y; break;
		case LO_DIV: if (!y) return NULL; r = x / y; break;
		case LO_MIN: r = x < y ? x : y; break;
		case LO_MAX: r = x > y ? x : y; break;
		default: return NULL;
		}
		LoopExpr *e = expr(f, LE_CONST, LT_I64);
		e->i = r;
		return e;
	}
	if ((op == LO_ADD && is_const_i(b, 0)) || (op == LO_MUL && is_const_i(b, 1)) ||
	    (op == LO_SUB && is_const_i(b, 0)) || (op == LO_DIV && is_const_i(b, 1)))
		return a;
	if ((op == LO_ADD && is_const_i(a, 0)) || (op == LO_MUL && is_const_i(a, 1)))
		return b;
	if (op == LO_MUL && (is_const_i(a, 0) || is_const_i(b, 0)))
		return is_const_i(a, 0) ? a : b;
	return NULL;
}

LoopExpr *loop_bin(LoopFn *f, LoopBinOp op, LoopExpr *a, LoopExpr *b)
{
	LoopType t = rank(a->type) >= rank(b->type) ? a->type : b->type;
	if (op == LO_AND || op == LO_OR)
		t = LT_BOOL;
	else if (t == LT_BOOL)
		t = LT_I64;
	if (op == LO_POW && t == LT_I64)
		t = LT_F64;
	a = loop_cvt(f, t, a);
	b = loop_cvt(f, t, b);
	LoopExpr *folded = fold(f, op, a, b);
	if (folded)
		return folded;
	bool cmp = op >= LO_LT && op <= LO_NE;
	LoopExpr *e = expr(f, LE_BIN, cmp ? LT_BOOL : t);
	e->op = op;
	e->a = a;
	e->b = b;
	return e;
}

LoopExpr *loop_un(LoopFn *f, LoopUnOp op, LoopExpr *a)
{
	if (op != LO_NEG && op != LO_ABS && a->type != LT_F64)
		a = loop_cvt(f, LT_F32, a);
	LoopExpr *e = expr(f, LE_UN, a->type);
	e->op = op;
	e->a = a;
	return e;
}

LoopExpr *loop_select(LoopFn *f, LoopExpr *c, LoopExpr *a, LoopExpr *b)
{
	LoopType t = rank(a->type) >= rank(b->type) ? a->type : b->type;
	LoopExpr *e = expr(f, LE_SELECT, t);
	e->a = a->type == t ? a : loop_cvt(f, t, a);
	e->b = b->type == t ? b : loop_cvt(f, t, b);
	e->c = c;
	return e;
}

LoopExpr *loop_rand(LoopFn *f)
{
	return expr(f, LE_RAND, LT_F32);
}

LoopExpr *loop_add(LoopFn *f, LoopExpr *a, LoopExpr *b) { return loop_bin(f, LO_ADD, a, b); }
LoopExpr *loop_sub(LoopFn *f, LoopExpr *a, LoopExpr *b) { return loop_bin(f, LO_SUB, a, b); }
LoopExpr *loop_mul(LoopFn *f, LoopExpr *a, LoopExpr *b) { return loop_bin(f, LO_MUL, a, b); }
LoopExpr *loop_div(LoopFn *f, LoopExpr *a, LoopExpr *b) { return loop_bin(f, LO_DIV, a, b); }
LoopExpr *loop_max(LoopFn *f, LoopExpr *a, LoopExpr *b) { return loop_bin(f, LO_MAX, a, b); }

/* ---- analysis shared by the emitters ---- */

static void expr_bufs_used(const LoopExpr *x, bool *used)
{
	if (!x)
		return;
	if (x->kind == LE_LOAD)
		used[x->buf->id] = true;
	expr_bufs_used(x->a, used);
	expr_bufs_used(x->b, used);
	expr_bufs_used(x->c, used);
}

/* ---- evaluating ahead of C: both emitters' && and || and ?: ---- */

static bool same_expr(const LoopExpr *a, const LoopExpr *b)
{
	if (!a || !b)
		return a == b;
	if (a->kind != b->kind || a->type != b->type || a->op != b->op)
		return false;
	switch (a->kind) {
	case LE_CONST: return a->type == LT_F32 || a->type == LT_F64 ? a->f == b->f : a->i == b->i;
	case LE_VAR: return a->var == b->var;
	case LE_N: return true;
	case LE_CTX: return a->field == b->field;
	case LE_RAND: return false;
	case LE_LOAD: return a->buf == b->buf && same_expr(a->a, b->a);
	default: return same_expr(a->a, b->a) && same_expr(a->b, b->b) && same_expr(a->c, b->c);
	}
}

/* does x evaluate a load of exactly `load` whatever its values (not in a lazy operand)? */
static bool loads_surely(const LoopExpr *x, const LoopExpr *load)
{
	if (!x)
		return false;
	if (same_expr(x, load))
		return true;
	if (x->kind == LE_SELECT)
		return loads_surely(x->c, load);
	if (x->kind == LE_BIN && (x->op == LO_AND || x->op == LO_OR))
		return loads_surely(x->a, load);
	return loads_surely(x->a, load) || loads_surely(x->b, load);
}

bool loop_speculable(const LoopExpr *x, const LoopExpr *done)
{
	if (!x)
		return true;
	switch (x->kind) {
	case LE_RAND: return false;
	case LE_LOAD: return loads_surely(done, x);
	case LE_BIN:
		if (x->op == LO_DIV && x->type != LT_F32 && x->type != LT_F64 && !(x->b->kind == LE_CONST && x->b->i != 0))
			return false;
		break;
	default: break;
	}
	return loop_speculable(x->a, done) && loop_speculable(x->b, done) && loop_speculable(x->c, done);
}

void loop_bufs_used(const LoopStmt *s, bool *used)
{
	for (; s; s = s->next) {
		if (s->kind == LS_STORE)
			used[s->buf->id] = true;
		if (s->kind == LS_GEMM) {
			const LoopGemm *g = s->gemm;
			used[g->a->id] = used[g->b->id] = used[g->c->id] = true;
			const LoopExpr *e[] = { g->m, g->n, g->k, g->aoff, g->boff, g->coff, g->lda, g->ldb, g->ldc };
			for (size_t i = 0; i < sizeof e / sizeof e[0]; i++)
				expr_bufs_used(e[i], used);
		}
		expr_bufs_used(s->idx, used);
		expr_bufs_used(s->val, used);
		expr_bufs_used(s->lo, used);
		expr_bufs_used(s->hi, used);
		loop_bufs_used(s->body, used);
	}
}

/* ---- printer: a readable dump for --emit=loops and for debugging ---- */

const char *loop_type_name(LoopType t)
{
	static const char *const n[] = { "bool", "i64", "f32", "f64" };
	return n[t];
}

static const char *const bin_names[] = { "+", "-", "*", "/", "min", "max", "pow", "<", "<=", ">", ">=", "==", "!=",
					 "&&", "||" };
static const char *const un_names[] = { "-", "exp", "expm1", "log", "log1p", "tanh", "sqrt", "abs", "erf", "cvt" };

static void print_expr(FILE *o, const LoopExpr *e)
{
	switch (e->kind) {
	case LE_CONST:
		if (e->type == LT_I64 || e->type == LT_BOOL)
			fprintf(o, "%" PRId64, e->i);
		else
			fprintf(o, "%.9g%s", e->f, e->type == LT_F32 ? "f" : "");
		return;
	case LE_VAR: fprintf(o, "%c%d", e->var->is_index ? 'i' : 'v', e->var->id); return;
	case LE_N: fprintf(o, "n"); return;
	case LE_CTX: fprintf(o, "%s", e->field == LC_LR ? "ctx.lr" : "ctx.step"); return;
	case LE_RAND: fprintf(o, "rand()"); return;
	case LE_LOAD:
		fprintf(o, "b%d[", e->buf->id);
		print_expr(o, e->a);
		fprintf(o, "]");
		return;
	case LE_BIN:
		if (e->op == LO_MIN || e->op == LO_MAX || e->op == LO_POW) {
			fprintf(o, "%s(", bin_names[e->op]);
			print_expr(o, e->a);
			fprintf(o, ", ");
			print_expr(o, e->b);
			fprintf(o, ")");
			return;
		}
		fprintf(o, "(");
		print_expr(o, e->a);
		fprintf(o, " %s ", bin_names[e->op]);
		print_expr(o, e->b);
		fprintf(o, ")");
		return;
	case LE_UN:
		if (e->op == LO_CVT)
			fprintf(o, "%s(", loop_type_name(e->type));
		else
			fprintf(o, "%s(", un_names[e->op]);
		print_expr(o, e->a);
		fprintf(o, ")");
		return;
	case LE_SELECT:
		fprintf(o, "(");
		print_expr(o, e->c);
		fprintf(o, " ? ");
		print_expr(o, e->a);
		fprintf(o, " : ");
		print_expr(o, e->b);
		fprintf(o, ")");
		return;
	}
}

static void print_body(FILE *o, const LoopStmt *s, int ind)
{
	for (; s; s = s->next) {
		fprintf(o, "%*s", ind, "");
		switch (s->kind) {
		case LS_FOR:
			fprintf(o, "for%s i%d in [", s->parallel ? " parallel" : "", s->var->id);
			print_expr(o, s->lo);
			fprintf(o, ", ");
			print_expr(o, s->hi);
			fprintf(o, ") {\n");
			print_body(o, s->body, ind + 2);
			fprintf(o, "%*s}\n", ind, "");
			break;
		case LS_STORE:
			fprintf(o, "b%d[", s->buf->id);
			print_expr(o, s->idx);
			fprintf(o, "] = ");
			print_expr(o, s->val);
			fprintf(o, "\n");
			break;
		case LS_SET:
			fprintf(o, "v%d = ", s->var->id);
			print_expr(o, s->val);
			fprintf(o, "\n");
			break;
		case LS_GEMM: {
			const LoopGemm *g = s->gemm;
			fprintf(o, "gemm%s%s(m=", g->ta ? " Aᵀ" : "", g->tb ? " Bᵀ" : "");
			print_expr(o, g->m);
			fprintf(o, ", n=");
			print_expr(o, g->n);
			fprintf(o, ", k=");
			print_expr(o, g->k);
			fprintf(o, ", %g * b%d+", g->alpha, g->a->id);
			print_expr(o, g->aoff);
			fprintf(o, " . %sb%d+", g->conv && !g->col2im ? "im2col " : "", g->b->id);
			print_expr(o, g->boff);
			if (g->conv) {
				const LoopConv *c = g->conv;
				fprintf(o, " [%" PRId64 "x%" PRId64 "x%" PRId64 " k%" PRId64 "x%" PRId64 " s%" PRId64 "x%" PRId64
					   " p%" PRId64 "x%" PRId64 " d%" PRId64 "x%" PRId64 " -> %" PRId64 "x%" PRId64 "]",
					c->c, c->h, c->w, c->kh, c->kw, c->sh, c->sw, c->ph, c->pw, c->dh, c->dw, c->oh, c->ow);
			}
			fprintf(o, " + %g * %sb%d+", g->beta, g->col2im ? "col2im " : "", g->c->id);
			print_expr(o, g->coff);
			fprintf(o, ")\n");
			break;
		}
		}
	}
}

void loop_print(FILE *o, const LoopModule *m)
{
	static const char *const kinds[] = { "param", "state", "opt", "temp", "arg x", "arg y", "arg out", "folded",
					     "const" };
	for (int i = 0; i < m->nbufs; i++) {
		const LoopBuf *b = m->bufs[i];
		fprintf(o, "b%d: %s %s[%s%" PRId64 "]  %s\n", i, kinds[b->kind], loop_type_name(b->type),
			b->batched ? "n x " : "", b->elems, b->name ? b->name : "");
	}
	for (int i = 0; i < m->nfns; i++) {
		const LoopFn *f = m->fns[i];
		fprintf(o, "\nfn %s (%d kernels)%s {\n", f->name, f->kernels, f->counts_step ? " counts a step" : "");
		if (f->result)
			fprintf(o, "  # returns b%d[0]\n", f->result->id);
		print_body(o, f->body, 2);
		fprintf(o, "}\n");
	}
}

