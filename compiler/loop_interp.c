/*
 * loop_interp.c: an interpreter of the loop IR in double precision (see
 * loop_interp.h), the reference the gradient checks run. It follows the C
 * emitter (emit_c.c) statement for statement: the same buffers, the same
 * initializers and random streams, the same order of evaluation; only the
 * arithmetic is wider. Integer expressions are int64_t, float ones double.
 *
 * Besides computing, it checks what the emitters assume and cannot check:
 * every index lies within its buffer (the batch counts n samples), arguments
 * x and y are never written, temporaries are written before they are read
 * (each call starts them as NaN), a parallel loop's iterations never touch
 * an element another iteration wrote (nor write one another read), and a
 * local set inside a parallel loop is declared inside it.
 */
#include "loop_interp.h"

#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "diag.h"

typedef struct Pcg {
	uint64_t state, inc;
} Pcg;

typedef union Val {
	double f;	/* F32, F64 */
	int64_t i;	/* I64, BOOL */
} Val;

typedef struct Slot {
	double *f;		/* float buffers */
	int64_t *i;		/* I64 buffers */
	double *own_f;		/* the machine's storage; arguments point at the caller's instead */
	int64_t *own_i;
	int64_t *wtag, *rtag, *rmany;	/* per element: the parallel iteration that last wrote, read it */
	bool readonly;
} Slot;

struct LoopMachine {
	const LoopModule *m;
	Arena *arena;
	int64_t max_batch;
	Slot *slot;		/* by buffer id */
	double lr;
	int64_t step;
	Pcg rng;		/* the context's generator (dropout masks) */
	Val *vars;		/* room for the largest function's variables */
	/* the call being run */
	const LoopFn *fn;
	int64_t n;
	/* parallel iterations: each gets a tag; first is the first tag of the
	 * outermost parallel loop running, 0 outside parallel loops */
	int64_t tag, first, next_tag;
};

/* ---- PCG32, as runtime/rng.c (nnrt.h documents it) ---- */

static uint32_t pcg_u32(Pcg *r)
{
	uint64_t old = r->state;
	r->state = old * 6364136223846793005ULL + r->inc;
	uint32_t x = (uint32_t)(((old >> 18) ^ old) >> 27), rot = (uint32_t)(old >> 59);
	return (x >> rot) | (x << ((-rot) & 31));
}

static void pcg_seed(Pcg *r, uint64_t seed, uint64_t stream)
{
	r->state = 0;
	r->inc = (stream << 1) | 1;
	pcg_u32(r);
	r->state += seed;
	pcg_u32(r);
}

static float pcg_uniform(Pcg *r)
{
	return (float)(pcg_u32(r) >> 8) * 0x1p-24f;
}

/* ---- buffers ---- */

static int64_t capacity(const LoopMachine *lm, const LoopBuf *b)
{
	return b->elems * (b->batched ? lm->max_batch : 1);
}

static bool is_int(LoopType t)
{
	return t == LT_I64 || t == LT_BOOL;
}

/* as the generated init(): uniform from the stream (seed, buffer index), in float */
static void init_buf(LoopMachine *lm, const LoopBuf *b, uint64_t seed)
{
	double *w = lm->slot[b->id].f;
	if (!w)
		NNC_BUG("persistent buffer b%d (%s) is not F32", b->id, b->name);
	Pcg r;
	pcg_seed(&r, seed, (uint64_t)b->id);
	float bound = (float)b->init_value;
	for (int64_t k = 0; k < b->elems; k++) {
		float v = b->init == LI_UNIFORM ? (2.0f * pcg_uniform(&r) - 1.0f) * bound : bound;
		w[k] = v;
	}
}

static void alloc_slot(LoopMachine *lm, const LoopBuf *b)
{
	Slot *s = &lm->slot[b->id];
	size_t cap = (size_t)capacity(lm, b) + 1;
	if (b->elems < 0)
		NNC_BUG("buffer b%d has %" PRId64 " elements", b->id, b->elems);
	if (is_int(b->type))
		s->own_i = s->i = arena_alloc(lm->arena, cap * sizeof(int64_t));
	else
		s->own_f = s->f = arena_alloc(lm->arena, cap * sizeof(double));
	s->wtag = arena_alloc(lm->arena, cap * sizeof(int64_t));
	s->rtag = arena_alloc(lm->arena, cap * sizeof(int64_t));
	s->rmany = arena_alloc(lm->arena, cap * sizeof(int64_t));
	s->readonly = b->kind == LB_ARG_X || b->kind == LB_ARG_Y || b->kind == LB_CONST;
	for (int64_t k = 0; b->kind == LB_CONST && b->data && k < b->elems; k++)
		s->f[k] = b->data[k];
}

/* ---- static checks ---- */

/* a local set inside a parallel loop must be declared (first set) in that
 * loop: an outlined body gets its own copy of such a local, while one
 * declared outside is shared by the iterations, a race */
static void check_locals(const LoopFn *f, const LoopStmt *s, const LoopStmt *par, const LoopStmt **decl, bool *seen)
{
	for (; s; s = s->next) {
		if (s->kind == LS_FOR) {
			check_locals(f, s->body, s->parallel ? s : par, decl, seen);
			continue;
		}
		if (s->kind != LS_SET)
			continue;
		int v = s->var->id;
		if (!seen[v]) {
			seen[v] = true;
			decl[v] = par;
		} else if (decl[v] != par) {
			NNC_BUG("%s: local v%d is set in a parallel loop it was not declared in (the iterations would race)",
				f->name, v);
		}
	}
}

static void check_fn(LoopMachine *lm, const LoopFn *f)
{
	const LoopStmt **decl = arena_alloc(lm->arena, sizeof *decl * (size_t)(f->nvars + 1));
	bool *seen = arena_alloc(lm->arena, (size_t)f->nvars + 1);
	check_locals(f, f->body, NULL, decl, seen);
}

/* ---- element access, with the checks ---- */

static void race(LoopMachine *lm, const LoopBuf *b, int64_t idx, const char *what)
{
	NNC_BUG("%s: a parallel loop's iteration %s b%d[%" PRId64 "] (%s) of another iteration", lm->fn->name, what,
		b->id, idx, b->name ? b->name : "");
}

static void on_read(LoopMachine *lm, const LoopBuf *b, Slot *s, int64_t idx)
{
	if (!lm->first)
		return;
	if (s->wtag[idx] >= lm->first && s->wtag[idx] != lm->tag)
		race(lm, b, idx, "reads the write to");
	if (s->rtag[idx] >= lm->first && s->rtag[idx] != lm->tag)
		s->rmany[idx] = lm->first;
	s->rtag[idx] = lm->tag;
}

static void on_write(LoopMachine *lm, const LoopBuf *b, Slot *s, int64_t idx)
{
	if (!lm->first)
		return;
	if (s->wtag[idx] >= lm->first && s->wtag[idx] != lm->tag)
		race(lm, b, idx, "overwrites the write to");
	if ((s->rtag[idx] >= lm->first && s->rtag[idx] != lm->tag) || s->rmany[idx] == lm->first)
		race(lm, b, idx, "writes over the read of");
	s->wtag[idx] = lm->tag;
}

/* the slot of b after checking idx against the elements this call may touch */
static Slot *slot_at(LoopMachine *lm, const LoopBuf *b, int64_t idx, bool write)
{
	int64_t limit = b->batched ? lm->n * b->elems : b->elems;
	Slot *s = &lm->slot[b->id];
	if (idx < 0 || idx >= limit)
		NNC_BUG("%s: index %" PRId64 " outside b%d (%s), which holds %" PRId64 " elements here", lm->fn->name, idx,
			b->id, b->name ? b->name : "", limit);
	if (write && s->readonly)
		NNC_BUG("%s: stores into the argument b%d (%s)", lm->fn->name, b->id, b->name ? b->name : "");
	if (is_int(b->type) ? !s->i : !s->f)
		NNC_BUG("%s: uses b%d (%s) but the caller gave no array for it", lm->fn->name, b->id, b->name ? b->name : "");
	if (write)
		on_write(lm, b, s, idx);
	else
		on_read(lm, b, s, idx);
	return s;
}

static double load_f(LoopMachine *lm, const LoopBuf *b, int64_t idx)
{
	if (is_int(b->type))
		NNC_BUG("%s: float load from the integer buffer b%d", lm->fn->name, b->id);
	return slot_at(lm, b, idx, false)->f[idx];
}

static void store_f(LoopMachine *lm, const LoopBuf *b, int64_t idx, double v)
{
	if (is_int(b->type))
		NNC_BUG("%s: float store into the integer buffer b%d", lm->fn->name, b->id);
	slot_at(lm, b, idx, true)->f[idx] = v;
}

/* ---- expressions ---- */

static double evf(LoopMachine *lm, const LoopExpr *e);
static int64_t evi(LoopMachine *lm, const LoopExpr *e);

static void same_types(const LoopMachine *lm, const LoopExpr *e)
{
	if (e->a->type != e->b->type)
		NNC_BUG("%s: operands of %s and %s in one operation", lm->fn->name, loop_type_name(e->a->type),
			loop_type_name(e->b->type));
}

static bool truth(LoopMachine *lm, const LoopExpr *c)
{
	return is_int(c->type) ? evi(lm, c) != 0 : evf(lm, c) != 0;
}

static int64_t compare(LoopMachine *lm, const LoopExpr *e)
{
	same_types(lm, e);
	double x, y;
	if (is_int(e->a->type)) {
		int64_t a = evi(lm, e->a), b = evi(lm, e->b);
		switch (e->op) {
		case LO_LT: return a < b;
		case LO_LE: return a <= b;
		case LO_GT: return a > b;
		case LO_GE: return a >= b;
		case LO_EQ: return a == b;
		default: return a != b;
		}
	}
	x = evf(lm, e->a);
	y = evf(lm, e->b);
	switch (e->op) {
	case LO_LT: return x < y;
	case LO_LE: return x <= y;
	case LO_GT: return x > y;
	case LO_GE: return x >= y;
	case LO_EQ: return x == y;
	default: return x != y;
	}
}

static int64_t bin_i(LoopMachine *lm, const LoopExpr *e)
{
	if (e->op >= LO_LT && e->op <= LO_NE)
		return compare(lm, e);
	if (e->op == LO_AND)
		return truth(lm, e->a) && truth(lm, e->b);
	if (e->op == LO_OR)
		return truth(lm, e->a) || truth(lm, e->b);
	same_types(lm, e);
	int64_t a = evi(lm, e->a), b = evi(lm, e->b);
	switch (e->op) {
	case LO_ADD: return a + b;
	case LO_SUB: return a - b;
	case LO_MUL: return a * b;
	case LO_DIV:
		if (b == 0)
			NNC_BUG("%s: integer division by zero", lm->fn->name);
		return a / b;
	case LO_MIN: return a < b ? a : b;
	case LO_MAX: return a > b ? a : b;
	default: NNC_BUG("%s: integer operation %d", lm->fn->name, e->op);
	}
}

/* C's conversion of a double to an integer type, which must be in range */
static int64_t to_int(LoopMachine *lm, double v, LoopType t)
{
	double lim = t == LT_BOOL ? 2147483648.0 : 9223372036854775808.0;
	if (!(v > -lim - 1 && v < lim))
		NNC_BUG("%s: converts %g to %s", lm->fn->name, v, loop_type_name(t));
	return (int64_t)v;
}

static int64_t un_i(LoopMachine *lm, const LoopExpr *e)
{
	switch (e->op) {
	case LO_CVT:
		if (!is_int(e->a->type))
			return to_int(lm, evf(lm, e->a), e->type);
		return e->type == LT_BOOL ? (int64_t)(int)evi(lm, e->a) : evi(lm, e->a);
	case LO_NEG: return -evi(lm, e->a);
	case LO_ABS: {
		int64_t v = evi(lm, e->a);
		return v < 0 ? -v : v;
	}
	default: NNC_BUG("%s: integer operand of unary operation %d", lm->fn->name, e->op);
	}
}

static int64_t evi(LoopMachine *lm, const LoopExpr *e)
{
	if (!is_int(e->type))
		NNC_BUG("%s: a %s expression where an integer is needed", lm->fn->name, loop_type_name(e->type));
	switch (e->kind) {
	case LE_CONST: return e->i;
	case LE_VAR: return lm->vars[e->var->id].i;
	case LE_N: return lm->n;
	case LE_LOAD: {
		int64_t idx = evi(lm, e->a);
		if (!is_int(e->buf->type))
			NNC_BUG("%s: integer load from the float buffer b%d", lm->fn->name, e->buf->id);
		return slot_at(lm, e->buf, idx, false)->i[idx];
	}
	case LE_BIN: return bin_i(lm, e);
	case LE_UN: return un_i(lm, e);
	case LE_SELECT: return truth(lm, e->c) ? evi(lm, e->a) : evi(lm, e->b);
	default: NNC_BUG("%s: integer expression of kind %d", lm->fn->name, e->kind);
	}
}

static double bin_f(LoopMachine *lm, const LoopExpr *e)
{
	same_types(lm, e);
	double a = evf(lm, e->a), b = evf(lm, e->b);
	switch (e->op) {
	case LO_ADD: return a + b;
	case LO_SUB: return a - b;
	case LO_MUL: return a * b;
	case LO_DIV: return a / b;
	case LO_MIN: return a < b ? a : b;	/* as the emitter's nn_min and nn_max */
	case LO_MAX: return a > b ? a : b;
	case LO_POW: return pow(a, b);
	default: NNC_BUG("%s: float operation %d", lm->fn->name, e->op);
	}
}

static double un_f(LoopMachine *lm, const LoopExpr *e)
{
	if (e->op == LO_CVT)	/* to F32 or F64: no rounding, on purpose */
		return is_int(e->a->type) ? (double)evi(lm, e->a) : evf(lm, e->a);
	if (e->a->type != e->type)
		NNC_BUG("%s: unary operation %d from %s to %s", lm->fn->name, e->op, loop_type_name(e->a->type),
			loop_type_name(e->type));
	double x = evf(lm, e->a);
	switch (e->op) {
	case LO_NEG: return -x;
	case LO_EXP: return exp(x);
	case LO_EXPM1: return expm1(x);
	case LO_LOG: return log(x);
	case LO_LOG1P: return log1p(x);
	case LO_TANH: return tanh(x);
	case LO_SQRT: return sqrt(x);
	case LO_ABS: return fabs(x);
	case LO_ERF: return erf(x);
	default: NNC_BUG("%s: unary operation %d", lm->fn->name, e->op);
	}
}

static double evf(LoopMachine *lm, const LoopExpr *e)
{
	if (is_int(e->type))
		NNC_BUG("%s: an integer expression where a float is needed", lm->fn->name);
	switch (e->kind) {
	case LE_CONST: return e->f;
	case LE_VAR: return lm->vars[e->var->id].f;
	case LE_CTX: return e->field == LC_LR ? lm->lr : (double)lm->step;
	case LE_LOAD: return load_f(lm, e->buf, evi(lm, e->a));
	case LE_BIN: return bin_f(lm, e);
	case LE_UN: return un_f(lm, e);
	case LE_SELECT: return truth(lm, e->c) ? evf(lm, e->a) : evf(lm, e->b);
	case LE_RAND: return pcg_uniform(&lm->rng);
	default: NNC_BUG("%s: float expression of kind %d", lm->fn->name, e->kind);
	}
}

/* ---- statements ---- */

static void exec(LoopMachine *lm, const LoopStmt *s);

/* element (p, j) of an implicit column matrix (loop.h's LoopConv) whose image starts at bo:
 * row p, column j of the column matrix */
static double conv_b(LoopMachine *lm, const LoopGemm *g, int64_t bo, int64_t p, int64_t j)
{
	const LoopConv *c = g->conv;
	int64_t ci = p / (c->kh * c->kw), ky = p / c->kw % c->kh, kx = p % c->kw;
	int64_t iy = j / c->ow * c->sh - c->ph + ky * c->dh, ix = j % c->ow * c->sw - c->pw + kx * c->dw;
	if (iy < 0 || iy >= c->h || ix < 0 || ix >= c->w)
		return 0;
	return load_f(lm, g->b, bo + (ci * c->h + iy) * c->w + ix);
}

/* the image C = beta C + alpha col2im(op(A) B) (loop.h): every element of the product, summed
 * in double, added into its pixel, in the order of the product's rows (taps) */
static void gemm_col2im(LoopMachine *lm, const LoopGemm *g)
{
	const LoopConv *c = g->conv;
	int64_t m = evi(lm, g->m), n = evi(lm, g->n), k = evi(lm, g->k);
	int64_t ao = evi(lm, g->aoff), bo = evi(lm, g->boff), co = evi(lm, g->coff);
	int64_t lda = evi(lm, g->lda), ldb = evi(lm, g->ldb);
	for (int64_t i = 0; i < c->c * c->h * c->w; i++)
		store_f(lm, g->c, co + i, g->beta != 0 ? g->beta * load_f(lm, g->c, co + i) : 0);
	for (int64_t i = 0; i < m; i++) {
		int64_t ci = i / (c->kh * c->kw), ky = i / c->kw % c->kh, kx = i % c->kw;
		for (int64_t j = 0; j < n; j++) {
			int64_t iy = j / c->ow * c->sh - c->ph + ky * c->dh, ix = j % c->ow * c->sw - c->pw + kx * c->dw;
			if (iy < 0 || iy >= c->h || ix < 0 || ix >= c->w)
				continue;
			double acc = 0;
			for (int64_t p = 0; p < k; p++)
				acc += load_f(lm, g->a, ao + (g->ta ? p * lda + i : i * lda + p)) *
				       load_f(lm, g->b, bo + p * ldb + j);
			int64_t at = co + (ci * c->h + iy) * c->w + ix;
			store_f(lm, g->c, at, load_f(lm, g->c, at) + g->alpha * acc);
		}
	}
}

/* C = alpha op(A) op(B) + beta C, row-major, summed in double; beta 0 never reads C */
static void gemm(LoopMachine *lm, const LoopGemm *g)
{
	if (g->col2im) {
		gemm_col2im(lm, g);
		return;
	}
	int64_t m = evi(lm, g->m), n = evi(lm, g->n), k = evi(lm, g->k);
	int64_t ao = evi(lm, g->aoff), bo = evi(lm, g->boff), co = evi(lm, g->coff);
	int64_t lda = evi(lm, g->lda), ldb = evi(lm, g->ldb), ldc = evi(lm, g->ldc);
	for (int64_t i = 0; i < m; i++)
		for (int64_t j = 0; j < n; j++) {
			double acc = 0;
			for (int64_t p = 0; p < k; p++) {
				double a = load_f(lm, g->a, ao + (g->ta ? p * lda + i : i * lda + p));
				double b = g->conv ? conv_b(lm, g, bo, g->tb ? j : p, g->tb ? p : j)
						   : load_f(lm, g->b, bo + (g->tb ? j * ldb + p : p * ldb + j));
				acc += a * b;
			}
			int64_t at = co + i * ldc + j;
			double c = g->beta != 0 ? g->beta * load_f(lm, g->c, at) : 0;
			store_f(lm, g->c, at, g->alpha * acc + c);
		}
}

static void exec_for(LoopMachine *lm, const LoopStmt *s)
{
	int64_t lo = evi(lm, s->lo), hi = evi(lm, s->hi);
	bool outer_par = s->parallel && !lm->first;	/* nested parallel loops run inside one iteration */
	if (outer_par)
		lm->first = lm->next_tag;
	for (int64_t i = lo; i < hi; i++) {
		if (outer_par)
			lm->tag = lm->next_tag++;
		lm->vars[s->var->id].i = i;
		exec(lm, s->body);
	}
	if (outer_par)
		lm->first = lm->tag = 0;
}

static void set_var(LoopMachine *lm, const LoopStmt *s)
{
	if (s->val->type != s->var->type)
		NNC_BUG("%s: sets the %s local v%d to a %s", lm->fn->name, loop_type_name(s->var->type), s->var->id,
			loop_type_name(s->val->type));
	if (is_int(s->var->type))
		lm->vars[s->var->id].i = evi(lm, s->val);
	else
		lm->vars[s->var->id].f = evf(lm, s->val);
}

static void store(LoopMachine *lm, const LoopStmt *s)
{
	if (s->val->type != s->buf->type)
		NNC_BUG("%s: stores a %s into the %s buffer b%d", lm->fn->name, loop_type_name(s->val->type),
			loop_type_name(s->buf->type), s->buf->id);
	int64_t idx = evi(lm, s->idx);
	if (is_int(s->buf->type)) {
		int64_t v = evi(lm, s->val);
		slot_at(lm, s->buf, idx, true)->i[idx] = v;
	} else {
		store_f(lm, s->buf, idx, evf(lm, s->val));
	}
}

static void exec(LoopMachine *lm, const LoopStmt *s)
{
	for (; s; s = s->next) {
		switch (s->kind) {
		case LS_FOR: exec_for(lm, s); break;
		case LS_STORE: store(lm, s); break;
		case LS_SET: set_var(lm, s); break;
		case LS_GEMM: gemm(lm, s->gemm); break;
		default: NNC_BUG("%s: statement of kind %d", lm->fn->name, s->kind);
		}
	}
}

/* ---- the machine ---- */

LoopMachine *loop_machine_new(const LoopModule *m, int64_t max_batch, uint64_t seed)
{
	Arena *a = arena_new();
	LoopMachine *lm = arena_alloc(a, sizeof *lm);
	lm->m = m;
	lm->arena = a;
	lm->max_batch = max_batch < 1 ? 1 : max_batch;
	lm->lr = m->meta.lr;
	lm->next_tag = 1;
	pcg_seed(&lm->rng, seed, 0x6e6e63);
	lm->slot = arena_alloc(a, sizeof *lm->slot * (size_t)(m->nbufs + 1));
	for (int i = 0; i < m->nbufs; i++) {
		const LoopBuf *b = m->bufs[i];
		alloc_slot(lm, b);
		if (b->kind == LB_PARAM || b->kind == LB_STATE || b->kind == LB_OPT)
			init_buf(lm, b, seed);
	}
	int nvars = 1;
	for (int i = 0; i < m->nfns; i++) {
		check_fn(lm, m->fns[i]);
		nvars = m->fns[i]->nvars > nvars ? m->fns[i]->nvars : nvars;
	}
	lm->vars = arena_alloc(a, sizeof *lm->vars * (size_t)nvars);
	if (loop_find_fn(m, "prepare"))	/* as the generated init() */
		loop_machine_run(lm, "prepare", 1, NULL, NULL, NULL);
	return lm;
}

void loop_machine_free(LoopMachine *lm)
{
	if (lm)
		arena_free(lm->arena);
}

/* arguments point at the caller's arrays; temporaries start as NaN (or an
 * impossible index), so a read before the call's first write shows */
static void bind(LoopMachine *lm, const double *x, const void *y, double *out)
{
	for (int i = 0; i < lm->m->nbufs; i++) {
		const LoopBuf *b = lm->m->bufs[i];
		Slot *s = &lm->slot[i];
		int64_t cap = capacity(lm, b);
		switch (b->kind) {
		case LB_ARG_X: s->f = (double *)x; break;
		case LB_ARG_Y:
			s->f = is_int(b->type) ? NULL : (double *)y;
			s->i = is_int(b->type) ? (int64_t *)y : NULL;
			break;
		case LB_ARG_OUT: s->f = out ? out : s->own_f; break;
		case LB_TEMP:
			for (int64_t k = 0; k < cap; k++)
				if (s->own_f)
					s->own_f[k] = NAN;
				else
					s->own_i[k] = INT64_MIN;
			break;
		default: break;
		}
	}
}

double loop_machine_run(LoopMachine *lm, const char *fn, int64_t n, const double *x, const void *y, double *out)
{
	const LoopFn *f = loop_find_fn(lm->m, fn);
	if (!f)
		NNC_BUG("the module has no function '%s'", fn);
	if (n < 1 || n > lm->max_batch)
		NNC_BUG("%s: batch of %" PRId64 " on a machine for at most %" PRId64, fn, n, lm->max_batch);
	lm->fn = f;
	lm->n = n;
	bind(lm, x, y, out);
	if (f->counts_step)
		lm->step++;
	exec(lm, f->body);
	double r = f->result ? load_f(lm, f->result, 0) : 0;
	lm->fn = NULL;
	return r;
}

static const LoopBuf *persistent(const LoopModule *m, const char *name)
{
	const LoopBuf *b = loop_find_buf(m, name);
	if (!b || (b->kind != LB_PARAM && b->kind != LB_STATE && b->kind != LB_OPT && b->kind != LB_FOLDED) ||
	    is_int(b->type))
		return NULL;
	return b;
}

double *loop_machine_buf(LoopMachine *lm, const char *name)
{
	const LoopBuf *b = persistent(lm->m, name);
	return b ? lm->slot[b->id].f : NULL;
}

int64_t loop_machine_buf_len(const LoopMachine *lm, const char *name)
{
	const LoopBuf *b = persistent(lm->m, name);
	return b ? b->elems : 0;
}

void loop_machine_seed_rng(LoopMachine *lm, uint64_t seed) { pcg_seed(&lm->rng, seed, 0x6e6e63); }
void loop_machine_set_lr(LoopMachine *lm, double lr) { lm->lr = lr; }
double loop_machine_lr(const LoopMachine *lm) { return lm->lr; }
void loop_machine_set_step(LoopMachine *lm, int64_t step) { lm->step = step; }
int64_t loop_machine_step(const LoopMachine *lm) { return lm->step; }
