/*
 * emit_c.c: loop IR -> C99 source, model.c and model.h. Translates loops,
 * stores and expressions one to one and knows nothing about layers. The
 * output is deterministic (same input, same bytes): constants print as hex
 * floats, so they are exact, and names come from buffer and variable ids.
 *
 * The generated code keeps every buffer in one arena the caller provides:
 * init() lays the buffers out for a maximum batch, and the functions take
 * the batch size n <= that maximum. It calls into libnnrt for GEMM, random
 * numbers, initializers and weight files; it never calls malloc.
 * Outermost parallel loops (the ones loop_par.c picks) become static
 * functions over a chunk of their iterations, which the kernel runs through
 * nnrt_parallel_for_grain (docs/threads.md).
 */
#include "emit_c.h"

#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "memplan.h"

typedef struct Emit {
	FILE *o;
	const LoopModule *m;
	const char *p;		/* symbol prefix */
	const char *P;		/* the same, upper case, for macros */
	const bool *kernel_scope;	/* by buffer id: declared by each kernel that uses it (memplan.c) */
	const LoopFn *fn;		/* the function being emitted */
	const LoopPars *pars;		/* its outlined parallel loops; NULL inside one */
} Emit;

static const char *ctype(LoopType t)
{
	switch (t) {
	case LT_BOOL: return "int";
	case LT_I64: return "int64_t";
	case LT_F32: return "float";
	case LT_F64: return "double";
	}
	return "float";
}

static void fconst(FILE *o, double v, LoopType t)
{
	if (isinf(v))
		fprintf(o, "%s%s", v < 0 ? "-" : "", t == LT_F32 ? "INFINITY" : "(double)INFINITY");
	else if (t == LT_F32)
		fprintf(o, "%af", (double)(float)v);
	else
		fprintf(o, "%a", v);
}

static const char *mathfn(LoopUnOp op, LoopType t)
{
	static const char *const names[] = { "-", "exp", "expm1", "log", "log1p", "tanh", "sqrt", "fabs", "erf" };
	static char buf[16];
	snprintf(buf, sizeof buf, "%s%s", names[op], t == LT_F32 ? "f" : "");
	return buf;
}

static void expr(Emit *e, const LoopExpr *x);

/* a comparison or a logic operation: C's int 0 or 1 */
static bool zero_one(const LoopExpr *x)
{
	return x->kind == LE_BIN && x->op >= LO_LT && x->op <= LO_OR;
}

static void bin(Emit *e, const LoopExpr *x)
{
	static const char *const ops[] = { "+", "-", "*", "/", NULL, NULL, NULL, "<", "<=", ">", ">=", "==", "!=",
					   "&&", "||" };
	if (x->op == LO_MIN || x->op == LO_MAX || x->op == LO_POW) {
		const char *t = x->type == LT_F32 ? "f" : x->type == LT_F64 ? "d" : "i";
		if (x->op == LO_POW)
			fprintf(e->o, "pow%s(", x->type == LT_F32 ? "f" : "");
		else
			fprintf(e->o, "nn_%s%s(", x->op == LO_MIN ? "min" : "max", t);
		expr(e, x->a);
		fprintf(e->o, ", ");
		expr(e, x->b);
		fprintf(e->o, ")");
		return;
	}
	/* & and | where the right operand may be evaluated first (loop_speculable) and both are
	 * 0 or 1: gcc branched on each || of maxpool's "above or NaN" test, one unpredictable
	 * branch a cell (lenet's step 1.026x with |) */
	const char *op = ops[x->op];
	if ((x->op == LO_AND || x->op == LO_OR) && zero_one(x->a) && zero_one(x->b) && loop_speculable(x->b, x->a))
		op = x->op == LO_AND ? "&" : "|";
	fprintf(e->o, "(");
	expr(e, x->a);
	fprintf(e->o, " %s ", op);
	expr(e, x->b);
	fprintf(e->o, ")");
}

static void expr(Emit *e, const LoopExpr *x)
{
	FILE *o = e->o;
	switch (x->kind) {
	case LE_CONST:
		if (x->type == LT_I64 || x->type == LT_BOOL)
			fprintf(o, x->i < 0 ? "(%" PRId64 ")" : "%" PRId64, x->i);
		else
			fconst(o, x->f, x->type);
		return;
	case LE_VAR: fprintf(o, "%c%d", x->var->is_index ? 'i' : 'v', x->var->id); return;
	case LE_N: fprintf(o, "n"); return;
	case LE_CTX: fprintf(o, x->field == LC_LR ? "ctx->lr" : "(double)ctx->step"); return;
	case LE_RAND: fprintf(o, "nnrt_rng_uniform(&ctx->rng)"); return;
	case LE_LOAD:
		fprintf(o, "b%d[", x->buf->id);
		expr(e, x->a);
		fprintf(o, "]");
		return;
	case LE_BIN: bin(e, x); return;
	case LE_UN:
		if (x->op == LO_CVT)
			fprintf(o, "((%s)", ctype(x->type));
		else if (x->op == LO_NEG)
			fprintf(o, "(-");
		else
			fprintf(o, "%s(", mathfn((LoopUnOp)x->op, x->type));
		expr(e, x->a);
		fprintf(o, ")");
		return;
	case LE_SELECT:
		fprintf(o, "(");
		expr(e, x->c);
		fprintf(o, " ? ");
		expr(e, x->a);
		fprintf(o, " : ");
		expr(e, x->b);
		fprintf(o, ")");
		return;
	}
}

static bool stores_out(const LoopStmt *s)
{
	for (; s; s = s->next)
		if ((s->kind == LS_STORE && s->buf->kind == LB_ARG_OUT) || (s->kind == LS_FOR && stores_out(s->body)))
			return true;
	return false;
}


/* a kernel (top-level statement) declares the buffers that may share memory
 * with others of the function: within one kernel they never do, so they stay
 * restrict. Returns whether it opened a block. */
static bool kernel_decls(Emit *e, const LoopStmt *s, int ind)
{
	if (!e->kernel_scope)
		return false;
	LoopStmt one = *s;
	one.next = NULL;
	bool *used = arena_alloc(e->m->arena, (size_t)e->m->nbufs + 1), open = false;
	loop_bufs_used(&one, used);
	for (int i = 0; i < e->m->nbufs; i++) {
		if (!used[i] || !e->kernel_scope[i])
			continue;
		if (!open)
			fprintf(e->o, "%*s{\n", ind, "");
		open = true;
		fprintf(e->o, "%*sfloat *restrict b%d = ctx->b[%d];\n", ind + 8, "", i, i);
	}
	return open;
}

static void body(Emit *e, const LoopStmt *s, int ind, bool top);
static const char *buf_ctype(const LoopBuf *b);

/* ---- outlined parallel loops (loop.h): a struct of what the body reads,
 * the body over a chunk [begin, end) of the iterations, and the call ---- */

static void par_struct(Emit *e, const LoopPar *lp, int k)
{
	FILE *o = e->o;
	fprintf(o, "/* k_%s's parallel loop over i%d, outlined: nnrt_parallel_for_grain runs chunks of it */\n",
		e->fn->name, lp->loop->var->id);
	fprintf(o, "struct k_%s_par%d_args {\n        NnrtCtx *ctx;\n        int64_t n;\n", e->fn->name, k);
	for (int i = 0; i < e->m->nbufs; i++)
		if (lp->bufs[i])
			fprintf(o, "        %s *b%d;\n", buf_ctype(e->m->bufs[i]), i);
	for (int i = 0; i < e->fn->nvars; i++)
		if (lp->captured[i])
			fprintf(o, "        %s %c%d;\n", ctype(e->fn->vars[i]->type), e->fn->vars[i]->is_index ? 'i' : 'v', i);
	fprintf(o, "};\n\n");
}

static void par_fn(Emit *e, const LoopPar *lp, int k)
{
	FILE *o = e->o;
	const LoopStmt *s = lp->loop;
	const LoopFn *f = e->fn;
	par_struct(e, lp, k);
	/* the body takes the buffers as restrict parameters: gcc trusts restrict on
	 * parameters, not on local pointers (with locals, it checked for overlap at
	 * run time before 100 loops of unet_tiny, and vectorized fewer of them) */
	fprintf(o, "static void k_%s_par%d_body(", f->name, k);
	if (lp->uses_ctx)
		fprintf(o, "NnrtCtx *ctx, ");
	if (lp->uses_n)
		fprintf(o, "const int64_t n, ");
	for (int i = 0; i < e->m->nbufs; i++)
		if (lp->bufs[i])
			fprintf(o, "%s *restrict b%d, ", buf_ctype(e->m->bufs[i]), i);
	for (int i = 0; i < f->nvars; i++)
		if (lp->captured[i])
			fprintf(o, "const %s %c%d, ", ctype(f->vars[i]->type), f->vars[i]->is_index ? 'i' : 'v', i);
	fprintf(o, "int64_t begin, int64_t end)\n{\n");
	for (int i = 0; i < f->nvars; i++)
		if (!lp->captured[i] && lp->locals[i])
			fprintf(o, "        %s v%d;\n", ctype(f->vars[i]->type), i);
	bool zero = s->lo->kind == LE_CONST && s->lo->i == 0;
	for (int k2 = 0; k2 < 2; k2++) {
		fprintf(o, k2 ? "; i%d < " : "        for (int64_t i%d = ", s->var->id);
		if (!zero) {
			expr(e, s->lo);
			fprintf(o, " + ");
		}
		fprintf(o, k2 ? "end" : "begin");
	}
	fprintf(o, "; i%d++) {\n", s->var->id);
	const LoopPars *pars = e->pars;
	e->pars = NULL;	/* nested parallel loops run serially here */
	body(e, s->body, 16, false);
	e->pars = pars;
	fprintf(o, "        }\n}\n\n");
	fprintf(o, "static void k_%s_par%d(void *arg, int64_t begin, int64_t end)\n{\n", f->name, k);
	fprintf(o, "        const struct k_%s_par%d_args *a = arg;\n        k_%s_par%d_body(", f->name, k, f->name, k);
	if (lp->uses_ctx)
		fprintf(o, "a->ctx, ");
	if (lp->uses_n)
		fprintf(o, "a->n, ");
	for (int i = 0; i < e->m->nbufs; i++)
		if (lp->bufs[i])
			fprintf(o, "a->b%d, ", i);
	for (int i = 0; i < f->nvars; i++)
		if (lp->captured[i])
			fprintf(o, "a->%c%d, ", f->vars[i]->is_index ? 'i' : 'v', i);
	fprintf(o, "begin, end);\n}\n\n");
}

/* the loop as a call of the runtime; the caller indented the first line */
static void par_call(Emit *e, const LoopPar *lp, int k, int ind)
{
	FILE *o = e->o;
	const LoopStmt *s = lp->loop;
	const LoopFn *f = e->fn;
	fprintf(o, "{\n%*sstruct k_%s_par%d_args a = { ctx, n", ind + 8, "", f->name, k);
	for (int i = 0; i < e->m->nbufs; i++)
		if (lp->bufs[i])
			fprintf(o, ", b%d", i);
	for (int i = 0; i < f->nvars; i++)
		if (lp->captured[i])
			fprintf(o, ", %c%d", f->vars[i]->is_index ? 'i' : 'v', i);
	fprintf(o, " };\n%*snnrt_parallel_for_grain(", ind + 8, "");
	expr(e, s->hi);
	if (!(s->lo->kind == LE_CONST && s->lo->i == 0)) {
		fprintf(o, " - ");
		expr(e, s->lo);
	}
	fprintf(o, ", %" PRId64 ", k_%s_par%d, &a);\n%*s}\n", lp->work, f->name, k, ind, "");
}

/* ", bN + off, " of a GEMM's operand */
static void operand(Emit *e, const LoopBuf *b, const LoopExpr *off)
{
	fprintf(e->o, ", b%d + ", b->id);
	expr(e, off);
	fprintf(e->o, ", ");
}

/* nnrt_sgemm(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc), or, when
 * B is an image's implicit column matrix, nnrt_sgemm_conv with the image and
 * its geometry (a compound literal) in the place of B and ldb; when C is an
 * image the product adds into, nnrt_sgemm_col2im with the geometry after ldb
 * and no ldc */
static void gemm_call(Emit *e, const LoopGemm *g)
{
	FILE *o = e->o;
	if (g->col2im)
		fprintf(o, "nnrt_sgemm_col2im(%d, ", g->ta);
	else if (g->conv)
		fprintf(o, "nnrt_sgemm_conv(%d, ", g->tb);
	else
		fprintf(o, "nnrt_sgemm(%d, %d, ", g->ta, g->tb);
	const LoopExpr *ints[] = { g->m, g->n, g->k };
	for (int i = 0; i < 3; i++) {
		expr(e, ints[i]);
		fprintf(o, ", ");
	}
	fconst(o, g->alpha, LT_F32);
	operand(e, g->a, g->aoff);
	expr(e, g->lda);
	operand(e, g->b, g->boff);
	if (g->col2im) {
		expr(e, g->ldb);
		fprintf(o, ", ");
	}
	if (g->conv) {
		int64_t f[LOOP_CONV_FIELDS];
		loop_conv_fields(g->conv, f);
		fprintf(o, "(const int64_t[]){ ");
		for (int i = 0; i < LOOP_CONV_FIELDS; i++)
			fprintf(o, "%s%" PRId64, i ? ", " : "", f[i]);
		fprintf(o, " }");
	} else
		expr(e, g->ldb);
	fprintf(o, ", ");
	fconst(o, g->beta, LT_F32);
	if (g->col2im) {	/* the image, without ldc */
		fprintf(o, ", b%d + ", g->c->id);
		expr(e, g->coff);
	} else {
		operand(e, g->c, g->coff);
		expr(e, g->ldc);
	}
	fprintf(o, ");\n");
}

static void body(Emit *e, const LoopStmt *s, int ind, bool top)
{
	FILE *o = e->o;
	for (; s; s = s->next) {
		bool block = top && kernel_decls(e, s, ind);
		if (block)
			ind += 8;
		bool guard = top && s->kind == LS_FOR && stores_out(s->body);
		if (guard)	/* the output argument is optional */
			fprintf(o, "%*sif (out) {\n", ind, ""), ind += 8;
		fprintf(o, "%*s", ind, "");
		int par = e->pars ? loop_par_index(e->pars, s) : -1;
		switch (s->kind) {
		case LS_FOR:
			if (par >= 0) {
				par_call(e, &e->pars->par[par], par, ind);
				break;
			}
			fprintf(o, "for (int64_t i%d = ", s->var->id);
			expr(e, s->lo);
			fprintf(o, "; i%d < ", s->var->id);
			expr(e, s->hi);
			fprintf(o, "; i%d++) {\n", s->var->id);
			body(e, s->body, ind + 8, false);
			fprintf(o, "%*s}\n", ind, "");
			break;
		case LS_STORE:
			fprintf(o, "b%d[", s->buf->id);
			expr(e, s->idx);
			fprintf(o, "] = ");
			expr(e, s->val);
			fprintf(o, ";\n");
			break;
		case LS_SET:
			fprintf(o, "v%d = ", s->var->id);
			expr(e, s->val);
			fprintf(o, ";\n");
			break;
		case LS_GEMM:
			gemm_call(e, s->gemm);
			break;
		}
		if (guard)
			ind -= 8, fprintf(o, "%*s}\n", ind, "");
		if (block)
			ind -= 8, fprintf(o, "%*s}\n", ind, "");
	}
}


static bool in_arena(const LoopBuf *b)
{
	return b->kind != LB_ARG_X && b->kind != LB_ARG_Y && b->kind != LB_ARG_OUT && b->kind != LB_CONST;
}

/* the element type a kernel's pointer to b has: arguments x and y, and compiled-in weights, are read only */
static const char *buf_ctype(const LoopBuf *b)
{
	static char t[32];
	if (b->kind == LB_ARG_X || b->kind == LB_ARG_Y || b->kind == LB_CONST)
		snprintf(t, sizeof t, "const %s", ctype(b->type));
	else
		snprintf(t, sizeof t, "float");
	return t;
}

/* the memory plan lets temporaries of disjoint lifetimes share memory: such
 * a buffer, when another buffer the function uses may share its memory, is
 * declared restrict by each kernel that uses it rather than by the function */
static bool shares_memory(const Emit *e, const bool *used, const LoopBuf *b)
{
	if (!b->alias_of)
		return false;
	for (int j = 0; j < e->m->nbufs; j++)
		if (used[j] && j != b->id && e->m->bufs[j]->alias_of == b->alias_of)
			return true;
	return false;
}

/* the public signature; the kernel itself is static and takes the runtime's context */
static void signature(Emit *e, const LoopFn *f, bool decl)
{
	const LoopMeta *mm = &e->m->meta;
	const char *yt = mm->class_target ? "const int64_t" : "const float";
	FILE *o = e->o;
	if (!strcmp(f->name, "forward"))
		fprintf(o, "void %s_forward(%s_ctx *ctx, int64_t n, const float *x, float *out)", e->p, e->p);
	else
		fprintf(o, "float %s_%s(%s_ctx *ctx, int64_t n, const float *x, %s *y, float *out)", e->p, f->name, e->p, yt);
	fprintf(o, "%s", decl ? ";\n" : "\n");
}

static void kernel_signature(Emit *e, const LoopFn *f)
{
	fprintf(e->o, "static %s k_%s(NnrtCtx *ctx, int64_t n, const float *x, %sfloat *out)\n",
		strcmp(f->name, "forward") ? "float" : "void", f->name, strcmp(f->name, "forward") ? "const void *y, " : "");
}

static void function(Emit *e, const LoopFn *f)
{
	FILE *o = e->o;
	LoopPars pars = loop_pars(e->m, f);
	e->fn = f;
	for (int k = 0; k < pars.npar; k++)
		par_fn(e, &pars.par[k], k);
	e->pars = &pars;
	kernel_signature(e, f);
	fprintf(o, "{\n");
	bool *used = arena_alloc(e->m->arena, (size_t)e->m->nbufs + 1);
	bool *kernel_scope = arena_alloc(e->m->arena, (size_t)e->m->nbufs + 1);
	loop_bufs_used(f->body, used);
	for (int i = 0; i < e->m->nbufs; i++) {
		const LoopBuf *b = e->m->bufs[i];
		if (!used[i])
			continue;
		if (in_arena(b) && shares_memory(e, used, b))
			kernel_scope[i] = true;
		else if (in_arena(b))
			fprintf(o, "        float *restrict b%d = ctx->b[%d];\n", i, i);
		else if (b->kind == LB_CONST)
			fprintf(o, "        const float *restrict b%d = w%d;\n", i, i);
		else if (b->kind == LB_ARG_X)
			fprintf(o, "        const float *restrict b%d = x;\n", i);
		else if (b->kind == LB_ARG_Y)
			fprintf(o, "        const %s *restrict b%d = y;\n", ctype(b->type), i);
		else
			fprintf(o, "        float *restrict b%d = out;\n", i);
	}
	for (int i = 0; i < f->nvars; i++)
		if (pars.outer_locals[i])
			fprintf(o, "        %s v%d;\n", ctype(f->vars[i]->type), i);
	fprintf(o, "        (void)n;\n        (void)x;\n        (void)out;\n");
	if (strcmp(f->name, "forward"))
		fprintf(o, "        (void)y;\n");
	if (f->counts_step)
		fprintf(o, "        ctx->step++;\n");
	e->kernel_scope = kernel_scope;
	body(e, f->body, 8, true);
	e->kernel_scope = NULL;
	e->pars = NULL;
	if (f->result && kernel_scope[f->result->id])
		fprintf(o, "        return ctx->b[%d][0];\n", f->result->id);
	else if (f->result)
		fprintf(o, "        return b%d[0];\n", f->result->id);
	else if (strcmp(f->name, "forward"))
		fprintf(o, "        return 0;\n");
	fprintf(o, "}\n\n");
}

/* ---- model.h ---- */

static void header(Emit *e, const char *hname)
{
	const LoopMeta *mm = &e->m->meta;
	FILE *o = e->o;
	fprintf(o, "/*\n * %s: generated by nnc from %s (model \"%s\"). Do not edit; recompile the model.\n *\n", hname,
		mm->source, mm->name);
	fprintf(o, " * Train and run the model from C. Link with libnnrt.a (nnc's runtime) and -lz -lm.\n"
		   " * For speed compile with -O3 -fno-math-errno (gcc vectorizes the loops that\n"
		   " * call sqrtf only then; results are the same with any flags).\n"
		   " * The caller owns all memory: %s_arena_size(max_batch) bytes, handed to\n"
		   " * %s_init(); the functions below never allocate. Arrays are row-major\n"
		   " * float32 with the batch first: x is [n, %" PRId64 "]",
		e->p, e->p, mm->in_elems);
	if (mm->in_rank == 3)
		fprintf(o, " (each sample [%" PRId64 ", %" PRId64 ", %" PRId64 "], channels first)", mm->in_shape[0],
			mm->in_shape[1], mm->in_shape[2]);
	if (mm->out_elems)
		fprintf(o, ",\n * out is [n, %" PRId64 "] (\"%s\")", mm->out_elems, mm->out_name);
	if (mm->class_target)
		fprintf(o, ", y holds n class indices in [0, %" PRId64 ").\n", mm->classes);
	else
		fprintf(o, ", y is [n, %" PRId64 "].\n", mm->target_elems);
	fprintf(o, " *\n"
		   " *   %s_ctx ctx;\n"
		   " *   void *mem = aligned_alloc(64, %s_arena_size(64));\n"
		   " *   %s_init(&ctx, mem, 64, 1);                  (or %s_load(&ctx, \"w.safetensors\", &err))\n"
		   " *   float loss = %s_train_step(&ctx, n, x, y, NULL);   (forward, backward, update)\n"
		   " *   %s_forward(&ctx, n, x, out);                 (inference: dropout off, running statistics)\n"
		   " */\n",
		e->p, e->p, e->p, e->p, e->p, e->p);
	MemPlanStats ms = memplan_stats(e->m, mm->batch);
	fprintf(o, "/*\n * Memory: %s_arena_size(%" PRId64 ") = %" PRId64 " bytes (the train section's batch), by nnc's\n"
		   " * static plan: temporaries that are never live at once share memory.\n",
		e->p, ms.batch, ms.total);
	memplan_print(o, &ms, " * ");
	int64_t consts = 0;
	for (int i = 0; i < e->m->nbufs; i++)
		consts += e->m->bufs[i]->data ? e->m->bufs[i]->elems : 0;
	if (mm->embedded)
		fprintf(o, " *\n * The weights are compiled in, from %s (nnc --embed-weights): %" PRId64 " floats\n"
			   " * of constants outside the arena. The code needs no weights file and has no\n"
			   " * %s_load or %s_save; %s_init's seed is unused.\n",
			mm->embedded, consts, e->p, e->p, e->p);
	fprintf(o, " */\n");
	fprintf(o, "#ifndef %s_H\n#define %s_H\n\n#include <stddef.h>\n#include <stdint.h>\n\n#include \"nnrt.h\"\n\n", e->P, e->P);
	fprintf(o, "#define %s_IN_ELEMS %" PRId64 "\n", e->P, mm->in_elems);
	fprintf(o, "#define %s_OUT_ELEMS %" PRId64 "\n", e->P, mm->out_elems);
	if (mm->class_target)
		fprintf(o, "#define %s_CLASSES %" PRId64 "\n", e->P, mm->classes);
	else
		fprintf(o, "#define %s_TARGET_ELEMS %" PRId64 "\n", e->P, mm->target_elems);
	fprintf(o, "#define %s_NUM_BUFFERS %d\n\n", e->P, e->m->nbufs);
	fprintf(o, "/* the model's state: the runtime's context and the buffer pointers it uses */\n"
		   "typedef struct %s_ctx {\n        NnrtCtx rt;              /* lr, step, rng, arena: see nnrt.h */\n"
		   "        float *bufs[%s_NUM_BUFFERS];\n} %s_ctx;\n\n",
		e->p, e->P, e->p);
	fprintf(o, "/* bytes of arena needed for batches of up to max_batch samples */\n"
		   "size_t %s_arena_size(int64_t max_batch);\n", e->p);
	fprintf(o, "/* lays out the arena (64-byte aligned, %s_arena_size(max_batch) bytes) and\n"
		   " * initializes the weights as PyTorch does by default, from seed */\n"
		   "void %s_init(%s_ctx *ctx, void *arena, int64_t max_batch, uint64_t seed);\n", e->p, e->p, e->p);
	fprintf(o, "/* inference for n <= max_batch samples: out = model(x) */\n");
	for (int i = 0; i < e->m->nfns; i++) {
		const LoopFn *f = e->m->fns[i];
		if (!strcmp(f->name, "prepare"))
			continue;	/* init and load run it */
		if (!strcmp(f->name, "eval"))
			fprintf(o, "/* the loss in inference mode; fills out unless it is NULL */\n");
		if (!strcmp(f->name, "train_step"))
			fprintf(o, "/* one step of training on n samples: returns the loss before the update;\n"
				   " * fills out with the training-mode outputs unless it is NULL */\n");
		signature(e, f, true);
	}
	fprintf(o, "/* the learning rate for the next steps (schedules set it per epoch) */\n"
		   "void %s_set_lr(%s_ctx *ctx, double lr);\n", e->p, e->p);
	if (!mm->embedded)
		fprintf(o, "/* weights (parameters and running statistics) as safetensors, with PyTorch's state_dict names;\n"
			   " * save writes atomically. Both return 0, or -1 with err->msg set */\n"
			   "int %s_save(const %s_ctx *ctx, const char *path, NnrtError *err);\n"
			   "int %s_load(%s_ctx *ctx, const char *path, NnrtError *err);\n",
			e->p, e->p, e->p, e->p);
	fprintf(o, "/* the model for nnrt_train_main() and other generic drivers */\nextern const NnrtModelInfo %s_info;\n\n", e->p);
	fprintf(o, "#endif\n");
}

/* ---- model.c ---- */

/* min and max helpers by type (f, d, i), only those the kernels use */
static void find_minmax(const LoopExpr *x, bool used[2][3])
{
	if (!x)
		return;
	if (x->kind == LE_BIN && (x->op == LO_MIN || x->op == LO_MAX))
		used[x->op == LO_MAX][x->type == LT_F32 ? 0 : x->type == LT_F64 ? 1 : 2] = true;
	find_minmax(x->a, used);
	find_minmax(x->b, used);
	find_minmax(x->c, used);
}

static void find_minmax_body(const LoopStmt *s, bool used[2][3])
{
	for (; s; s = s->next) {
		find_minmax(s->val, used);
		find_minmax(s->idx, used);
		find_minmax(s->lo, used);
		find_minmax(s->hi, used);
		find_minmax_body(s->body, used);
	}
}

static void helpers(Emit *e)
{
	static const char *const types[] = { "float", "double", "int64_t" }, *const suffix = "fdi";
	bool used[2][3] = { { false } };
	for (int i = 0; i < e->m->nfns; i++)
		find_minmax_body(e->m->fns[i]->body, used);
	for (int mx = 0; mx < 2; mx++)
		for (int t = 0; t < 3; t++)
			if (used[mx][t])
				fprintf(e->o, "static inline %s nn_%s%c(%s a, %s b) { return a %c b ? a : b; }\n", types[t],
					mx ? "max" : "min", suffix[t], types[t], types[t], mx ? '>' : '<');
	fprintf(e->o, "\n");
}

static void buffer_table(Emit *e)
{
	FILE *o = e->o;
	static const char *const kinds[] = { "NNRT_BUF_PARAM", "NNRT_BUF_STATE", "NNRT_BUF_OPT", "NNRT_BUF_TEMP",
					     "NNRT_BUF_ARG_X", "NNRT_BUF_ARG_Y", "NNRT_BUF_ARG_OUT", "NNRT_BUF_FOLDED",
					     "NNRT_BUF_CONST" };
	static const char *const inits[] = { "NNRT_INIT_NONE", "NNRT_INIT_UNIFORM", "NNRT_INIT_CONST" };
	fprintf(o, "/* every buffer: elements per sample when batched, else in all; arguments live outside the arena */\n");
	fprintf(o, "static const NnrtBuffer buffers[%s_NUM_BUFFERS] = {\n", e->P);
	for (int i = 0; i < e->m->nbufs; i++) {
		const LoopBuf *b = e->m->bufs[i];
		bool named = b->kind == LB_PARAM || b->kind == LB_STATE || b->kind == LB_OPT;
		fprintf(o, "        { %s%s%s, %s, %" PRId64 ", %d, %s, %af, %d, { ", named ? "\"" : "", named ? b->name : "NULL",
			named ? "\"" : "", kinds[b->kind], in_arena(b) ? b->elems : 0, b->batched, inits[b->init],
			(double)(float)b->init_value, b->rank);
		for (int k = 0; k < 4; k++)
			fprintf(o, "%s%" PRId64, k ? ", " : "", k < b->rank ? b->shape[k] : 0);
		fprintf(o, " }, %" PRId64 ", %" PRId64 " },\t/* b%d%s%s */\n", b->kind == LB_TEMP ? b->plan_ps : 0,
			b->kind == LB_TEMP ? b->plan_fixed : 0, i, named ? "" : ": ", named ? "" : b->name ? b->name : "");
	}
	fprintf(o, "};\n\n");
}

/* --embed-weights: the weights the kernels read, exact as hex floats, 8 to a line */
static void const_arrays(Emit *e)
{
	for (int i = 0; i < e->m->nbufs; i++) {
		const LoopBuf *b = e->m->bufs[i];
		if (b->kind != LB_CONST || !b->data)
			continue;
		fprintf(e->o, "static const float w%d[%" PRId64 "] = {\t/* %s */", i, b->elems, b->name);
		for (int64_t k = 0; k < b->elems; k++) {
			fprintf(e->o, "%s", k % 8 ? ", " : k ? ",\n        " : "\n        ");
			fconst(e->o, b->data[k], LT_F32);
		}
		fprintf(e->o, "\n};\n\n");
	}
}

static void info(Emit *e)
{
	FILE *o = e->o;
	const LoopMeta *mm = &e->m->meta;
	bool train = loop_find_fn(e->m, "train_step"), eval = loop_find_fn(e->m, "eval");
	fprintf(o, "const NnrtModelInfo %s_info = {\n", e->p);
	fprintf(o, "        .name = \"%s\",\n", mm->name);
	fprintf(o, "        .in_elems = %" PRId64 ",\n        .in_rank = %d,\n        .in_shape = { %" PRId64 ", %" PRId64 ", %" PRId64 " },\n",
		mm->in_elems, mm->in_rank, mm->in_shape[0], mm->in_shape[1], mm->in_shape[2]);
	fprintf(o, "        .out_elems = %" PRId64 ",\n", mm->out_elems);
	fprintf(o, "        .target = %s,\n        .target_elems = %" PRId64 ",\n        .classes = %" PRId64 ",\n",
		mm->class_target ? "NNRT_TARGET_CLASS" : "NNRT_TARGET_FLOAT", mm->target_elems, mm->classes);
	fprintf(o, "        .batch = %" PRId64 ",\n        .epochs = %" PRId64 ",\n        .seed = %" PRId64 ",\n", mm->batch,
		mm->epochs, mm->seed);
	fprintf(o, "        .lr = %a,\n        .schedule = %d,\n        .step_every = %" PRId64 ",\n        .step_gamma = %a,\n",
		mm->lr, mm->schedule, mm->step_every, mm->step_gamma);
	fprintf(o, "        .optimizer = \"%s\",\n", mm->optimizer);
	if (mm->data)
		fprintf(o, "        .data = \"%s\",\n", mm->data);
	if (mm->test)
		fprintf(o, "        .test = \"%s\",\n", mm->test);
	fprintf(o, "        .nbufs = %s_NUM_BUFFERS,\n        .bufs = buffers,\n        .forward = k_forward,\n", e->P);
	if (eval)
		fprintf(o, "        .eval = k_eval,\n");
	if (train)
		fprintf(o, "        .train_step = k_train_step,\n");
	static const char *const metrics[] = { "NNRT_METRIC_NONE", "NNRT_METRIC_ACCURACY", "NNRT_METRIC_IOU" };
	fprintf(o, "        .metric = %s,\n", metrics[mm->metric]);
	if (e->m->planned)
		fprintf(o, "        .temps_ps = %" PRId64 ",\n        .temps_fixed = %" PRId64 ",\n", e->m->temps_ps,
			e->m->temps_fixed);
	fprintf(o, "};\n\n");
}

/* the public API: thin wrappers over the kernels and the runtime */
static void api(Emit *e)
{
	FILE *o = e->o;
	const char *p = e->p;
	fprintf(o, "size_t %s_arena_size(int64_t max_batch)\n{\n        return nnrt_arena_size(&%s_info, max_batch);\n}\n\n", p, p);
	/* prepare (lower.c): what the kernels compute from the weights, after each change of them */
	const char *prep = loop_find_fn(e->m, "prepare") ? "        k_prepare(&ctx->rt, 1, NULL, NULL, NULL);\n" : "";
	fprintf(o, "void %s_init(%s_ctx *ctx, void *arena, int64_t max_batch, uint64_t seed)\n{\n"
		   "        nnrt_init(&ctx->rt, &%s_info, ctx->bufs, arena, max_batch, seed);\n%s}\n\n", p, p, p, prep);
	for (int i = 0; i < e->m->nfns; i++) {
		const LoopFn *f = e->m->fns[i];
		if (!strcmp(f->name, "prepare"))
			continue;
		signature(e, f, false);
		if (!strcmp(f->name, "forward"))
			fprintf(o, "{\n        k_forward(&ctx->rt, n, x, out);\n}\n\n");
		else
			fprintf(o, "{\n        return k_%s(&ctx->rt, n, x, y, out);\n}\n\n", f->name);
	}
	fprintf(o, "void %s_set_lr(%s_ctx *ctx, double lr)\n{\n        ctx->rt.lr = lr;\n}\n", p, p);
	if (e->m->meta.embedded)
		return;
	fprintf(o, "\nint %s_save(const %s_ctx *ctx, const char *path, NnrtError *err)\n{\n"
		   "        return nnrt_save_weights(&ctx->rt, path, err);\n}\n\n", p, p);
	fprintf(o, "int %s_load(%s_ctx *ctx, const char *path, NnrtError *err)\n{\n"
		   "        if (nnrt_load_weights(&ctx->rt, path, err))\n                return -1;\n%s"
		   "        return 0;\n}\n", p, p, prep);
}

static void source(Emit *e, const char *hname, bool with_main)
{
	FILE *o = e->o;
	fprintf(o, "/*\n * generated by nnc from %s (model \"%s\"). Do not edit; recompile the model.\n"
		   " * Every kernel below comes from nnc's loop IR; see %s for the API.\n */\n",
		e->m->meta.source, e->m->meta.name, hname);
	fprintf(o, "#include <math.h>\n#include <stddef.h>\n#include <stdint.h>\n\n#include \"%s\"\n\n", hname);
	helpers(e);
	buffer_table(e);
	const_arrays(e);
	for (int i = 0; i < e->m->nfns; i++)
		function(e, e->m->fns[i]);
	info(e);
	api(e);
	if (with_main)
		fprintf(o, "\nint main(int argc, char **argv)\n{\n        return nnrt_train_main(&%s_info, argc, argv);\n}\n", e->p);
}

void emitc_header(FILE *o, const LoopModule *m, const char *prefix, const char *hname)
{
	char up[256];
	size_t k = 0;
	for (; prefix[k] && k < sizeof up - 1; k++)
		up[k] = (char)toupper((unsigned char)prefix[k]);
	up[k] = 0;
	Emit e = { o, m, prefix, up, NULL, NULL, NULL };
	header(&e, hname);
}

void emitc_source(FILE *o, const LoopModule *m, const char *prefix, const char *hname, bool with_main)
{
	char up[256];
	size_t k = 0;
	for (; prefix[k] && k < sizeof up - 1; k++)
		up[k] = (char)toupper((unsigned char)prefix[k]);
	up[k] = 0;
	Emit e = { o, m, prefix, up, NULL, NULL, NULL };
	source(&e, hname, with_main);
}
