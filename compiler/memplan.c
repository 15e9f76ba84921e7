/*
 * memplan.c: the static memory planner (DESIGN.md, "Static memory").
 *
 * Liveness: the top-level statements of a function run in list order, so a
 * temporary is live from the first top-level statement that touches it to
 * the last (a temporary written and read inside one kernel lives for that
 * kernel only); a function's result is read after its last statement.
 * Functions run one at a time and keep nothing in temporaries between calls,
 * so their statements are numbered on one time line and all temporaries
 * share one region. Placement: largest first, each at the lowest offset
 * (16-float aligned) that overlaps no placed temporary whose interval meets
 * its own. Batched temporaries are placed in per-sample floats (the region
 * is scaled by the batch at run time), unbatched ones in floats after them.
 * Parameters, model state and optimizer state are not planned: the runtime
 * gives each its own memory ahead of the temporaries.
 */
#include "memplan.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "diag.h"

typedef struct Live {
	LoopBuf *b;
	int64_t lo, hi;		/* inclusive times; lo > hi: never touched */
	int64_t size;		/* floats (per sample when batched), aligned */
} Live;

static int64_t align16(int64_t n)
{
	return (n + MEMPLAN_ALIGN - 1) / MEMPLAN_ALIGN * MEMPLAN_ALIGN;
}

static void touch(Live *lv, const LoopBuf *b, int64_t t)
{
	if (!b || b->kind != LB_TEMP)
		return;
	Live *l = &lv[b->id];
	if (t < l->lo)
		l->lo = t;
	if (t > l->hi)
		l->hi = t;
}

static void touch_expr(Live *lv, const LoopExpr *x, int64_t t)
{
	for (; x; x = x->b) {
		if (x->kind == LE_LOAD)
			touch(lv, x->buf, t);
		touch_expr(lv, x->a, t);
		touch_expr(lv, x->c, t);
	}
}

static void touch_stmts(Live *lv, const LoopStmt *s, int64_t t)
{
	for (; s; s = s->next) {
		touch(lv, s->buf, t);
		touch_expr(lv, s->lo, t);
		touch_expr(lv, s->hi, t);
		touch_expr(lv, s->idx, t);
		touch_expr(lv, s->val, t);
		touch_stmts(lv, s->body, t);
		const LoopGemm *g = s->gemm;
		if (g) {
			touch(lv, g->a, t);
			touch(lv, g->b, t);
			touch(lv, g->c, t);
			const LoopExpr *xs[] = { g->m, g->n, g->k, g->aoff, g->boff, g->coff, g->lda, g->ldb, g->ldc };
			for (size_t i = 0; i < sizeof xs / sizeof xs[0]; i++)
				touch_expr(lv, xs[i], t);
		}
	}
}

static int by_size(const void *pa, const void *pb)
{
	const Live *a = *(Live *const *)pa, *b = *(Live *const *)pb;
	if (a->size != b->size)
		return a->size > b->size ? -1 : 1;
	return (a->b->id > b->b->id) - (a->b->id < b->b->id);
}

static int by_offset(const void *pa, const void *pb)
{
	const int64_t *a = pa, *b = pb;
	return (a[0] > b[0]) - (a[0] < b[0]);
}

/* first fit of the temporaries in `order` (largest first); returns the region's size */
static int64_t place(Live **order, int n, bool batched)
{
	int64_t top = 0;
	int64_t (*busy)[2] = malloc(((size_t)n + 1) * sizeof *busy);
	if (!busy)
		NNC_BUG("out of memory");
	for (int i = 0; i < n; i++) {
		Live *l = order[i];
		int nb = 0;
		for (int j = 0; j < i; j++) {
			const Live *p = order[j];
			if (p->lo <= l->hi && l->lo <= p->hi) {
				busy[nb][0] = batched ? p->b->plan_ps : p->b->plan_fixed;
				busy[nb][1] = busy[nb][0] + p->size;
				nb++;
			}
		}
		qsort(busy, (size_t)nb, sizeof *busy, by_offset);
		int64_t at = 0;
		for (int j = 0; j < nb; j++) {
			if (busy[j][0] >= at + l->size)
				break;
			if (busy[j][1] > at)
				at = busy[j][1];
		}
		if (batched)
			l->b->plan_ps = at;
		else
			l->b->plan_fixed = at;
		if (at + l->size > top)
			top = at + l->size;
	}
	free(busy);
	return top;
}

static int find(int *up, int i)
{
	while (up[i] != i)
		i = up[i] = up[up[i]];
	return i;
}

/* alias_of: temporaries whose memory ranges meet (in any function) form a group */
static void groups(LoopModule *m, const Live *lv)
{
	int n = m->nbufs;
	int *up = malloc(((size_t)n + 1) * sizeof *up);
	bool *shared = calloc((size_t)n + 1, sizeof *shared);
	if (!up || !shared)
		NNC_BUG("out of memory");
	for (int i = 0; i < n; i++)
		up[i] = i;
	for (int i = 0; i < n; i++) {
		const LoopBuf *a = m->bufs[i];
		if (a->kind != LB_TEMP || !lv[i].size)
			continue;
		for (int j = i + 1; j < n; j++) {
			const LoopBuf *b = m->bufs[j];
			/* batched and unbatched temporaries live in separate sub-regions; batched
			 * ranges meet at any batch size iff their per-sample ranges meet */
			if (b->kind != LB_TEMP || b->batched != a->batched || !lv[j].size)
				continue;
			int64_t alo = a->batched ? a->plan_ps : a->plan_fixed, blo = b->batched ? b->plan_ps : b->plan_fixed;
			if (alo < blo + lv[j].size && blo < alo + lv[i].size) {
				up[find(up, i)] = find(up, j);
				shared[i] = shared[j] = true;
			}
		}
	}
	for (int i = 0; i < n; i++)
		m->bufs[i]->alias_of = shared[i] ? find(up, i) + 1 : 0;
	free(shared);
	free(up);
}

void pass_memplan(LoopModule *m)
{
	Live *lv = calloc((size_t)m->nbufs + 1, sizeof *lv);
	Live **order = calloc((size_t)m->nbufs + 1, sizeof *order);
	if (!lv || !order)
		NNC_BUG("out of memory");
	for (int i = 0; i < m->nbufs; i++)
		lv[i] = (Live){ m->bufs[i], INT64_MAX, -1, align16(m->bufs[i]->elems) };
	int64_t t0 = 0;
	for (int f = 0; f < m->nfns; f++) {
		const LoopFn *fn = m->fns[f];
		int64_t t = t0;
		for (const LoopStmt *s = fn->body; s; s = s->next, t++) {
			LoopStmt one = *s;
			one.next = NULL;
			touch_stmts(lv, &one, t);
		}
		touch(lv, fn->result, t);	/* returned after the last statement */
		t0 = t + 1;
	}
	/* the batched region first: unbatched offsets follow it */
	m->temps_ps = m->temps_fixed = 0;
	for (int pass = 0; pass < 2; pass++) {
		int n = 0;
		for (int i = 0; i < m->nbufs; i++) {
			LoopBuf *b = m->bufs[i];
			if (b->kind != LB_TEMP || b->batched != (pass == 0))
				continue;
			b->plan_ps = b->plan_fixed = 0;
			if (lv[i].lo > lv[i].hi)	/* never touched: apart from the others */
				lv[i].lo = lv[i].hi = -1;
			order[n++] = &lv[i];
		}
		qsort(order, (size_t)n, sizeof *order, by_size);
		if (pass == 0)
			m->temps_ps = place(order, n, true);
		else
			m->temps_fixed = place(order, n, false);
	}
	for (int i = 0; i < m->nbufs; i++) {
		LoopBuf *b = m->bufs[i];
		if (b->kind == LB_TEMP && !b->batched)
			b->plan_ps = m->temps_ps;
	}
	groups(m, lv);
	m->planned = true;
	free(order);
	free(lv);
}

static int64_t bytes64(int64_t floats)
{
	return (floats * 4 + 63) / 64 * 64;
}

MemPlanStats memplan_stats(const LoopModule *m, int64_t batch)
{
	MemPlanStats s = { .batch = batch, .training = loop_find_fn(m, "train_step") != NULL };
	for (int i = 0; i < m->nbufs; i++) {
		const LoopBuf *b = m->bufs[i];
		int64_t n = bytes64(b->elems * (b->batched ? batch : 1));
		switch (b->kind) {
		case LB_PARAM:
		case LB_FOLDED: s.params += n; break;	/* weights as prepare folded them: beside the others */
		case LB_STATE: s.state += n; break;
		case LB_OPT: s.opt += n; break;
		case LB_TEMP: s.temps_unplanned += n; break;
		default: break;
		}
	}
	s.temps = m->planned ? (m->temps_ps * batch + m->temps_fixed) * 4 : s.temps_unplanned;
	int64_t keep = s.params + s.state + s.opt;
	s.total = keep + s.temps;
	s.unplanned = keep + s.temps_unplanned;
	return s;
}

static const char *human(int64_t v, char *buf, size_t cap)
{
	if (v < 10 * 1024)
		snprintf(buf, cap, "%" PRId64 " B", v);
	else if (v < 10 * 1024 * 1024)
		snprintf(buf, cap, "%.1f KiB", v / 1024.0);
	else
		snprintf(buf, cap, "%.1f MiB", v / (1024.0 * 1024.0));
	return buf;
}

void memplan_print(FILE *f, const MemPlanStats *s, const char *prefix)
{
	char a[32], b[32];
	fprintf(f, "%sArena:           %s for %s at batch %" PRId64 " (%" PRId64 " bytes; %s at one buffer per tensor)\n",
		prefix, human(s->total, a, sizeof a), s->training ? "training" : "inference", s->batch, s->total,
		human(s->unplanned, b, sizeof b));
	fprintf(f, "%s  parameters                 %s\n", prefix, human(s->params, a, sizeof a));
	if (s->state)
		fprintf(f, "%s  model state                %s\n", prefix, human(s->state, a, sizeof a));
	if (s->opt)
		fprintf(f, "%s  optimizer state            %s\n", prefix, human(s->opt, a, sizeof a));
	fprintf(f, "%s  activations, temporaries   %s planned (%s at one buffer each)\n", prefix,
		human(s->temps, a, sizeof a), human(s->temps_unplanned, b, sizeof b));
}

int64_t memplan_parse_bytes(const char *s)
{
	if (!s || *s < '0' || *s > '9')
		return -1;
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	int shift = 0;
	if (*end == 'K' || *end == 'k')
		shift = 10;
	else if (*end == 'M' || *end == 'm')
		shift = 20;
	else if (*end == 'G' || *end == 'g')
		shift = 30;
	if (shift)
		end++;
	if (*end == 'B' || *end == 'b')
		end++;
	if (*end || v > (unsigned long long)(INT64_MAX >> shift))
		return -1;
	return (int64_t)(v << shift);
}
