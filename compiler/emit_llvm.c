/*
 * emit_llvm.c: loop IR -> LLVM module, through the LLVM-C API. It translates
 * what emit_c.c prints, construct for construct, with C's semantics: the
 * module holds what model.c holds (the buffer table, the static kernels
 * k_forward, k_eval and k_train_step with their outlined parallel loops
 * k_NAME_parK, PREFIX_info, the public API and, on request, main) under the
 * same symbols, so an object file from here links where model.c's would, and
 * the JIT runs the same arithmetic.
 *
 * Semantics kept from the C code, which is the reference:
 *   - float math in float, double in double, every conversion explicit as C
 *     does it; no fast-math flag, so the results equal the C backend's;
 *   - min/max as nn_minf/nn_maxf: compare, then select (a > b ? a : b);
 *   - LT_BOOL is C's int (i32): comparisons yield 0 or 1, a condition is
 *     "!= 0", casts to it truncate as (int) does;
 *   - `c ? a : b`, `&&` and `||` evaluate an operand only when C would, unless
 *     evaluating it anyway cannot fault or draw a random number;
 *   - a loop's bound is evaluated before every iteration, as C's for does;
 *   - top-level loops that store to the output run only when out != NULL.
 * Locals are allocas in the entry block (mem2reg promotes them); loop
 * counters are phis. The module is verified before it is optimized: a
 * verifier failure is nnc's bug.
 */
#include "emit_llvm.h"

#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/Analysis.h>
#include <llvm-c/Support.h>
#include <llvm-c/Target.h>
#include <llvm-c/Transforms/PassBuilder.h>

#include "diag.h"
#include "nnrt.h"	/* only to check that our struct layouts are the C compiler's */

_Static_assert((int)LOOP_GRAIN == (int)NNRT_GRAIN, "loop.h's grain is the runtime's");

typedef struct Ll {
	LLVMContextRef cx;
	LLVMModuleRef mod;
	LLVMBuilderRef b;
	LLVMTargetDataRef td;
	const LoopModule *m;
	const EmitllOpts *o;
	LLVMTypeRef i8, i32, i64, f32, f64, vd, pi8, pf32;
	LLVMTypeRef rng_t, ctx_t, pctx, buf_t, info_t, fwd_t, step_t;
	LLVMValueRef info;		/* PREFIX_info */
	LLVMValueRef buffers;		/* the NnrtBuffer table */
	/* the function being emitted */
	LLVMValueRef fn, ctx, n, x, y, out;
	LLVMValueRef *bufp;		/* by buffer id: the base pointer, when the function uses it */
	LLVMValueRef *vars;		/* by variable id: the counter's phi, or the local's alloca */
	const LoopFn *f;
	const LoopPars *pars;		/* the kernel's outlined parallel loops; NULL inside one */
	LLVMBasicBlockRef entry;	/* the kernel's entry block, where allocas go */
	/* C declares every buffer pointer restrict: each buffer (and the context)
	 * is a scope of its own, its accesses alias no other scope's */
	unsigned scope_kind, noalias_kind;
	LLVMValueRef *scope, *noalias;	/* by buffer id, then the context at nbufs */
} Ll;

/* ---- types, and the check that they are laid out as the C compiler does ---- */

static LLVMTypeRef ptr(LLVMTypeRef t)
{
	return LLVMPointerType(t, 0);
}

static LLVMTypeRef named_struct(Ll *l, const char *name, LLVMTypeRef *fields, unsigned n)
{
	LLVMTypeRef t = LLVMStructCreateNamed(l->cx, name);
	LLVMStructSetBody(t, fields, n, 0);
	return t;
}

/* our LLVM struct must place every field where nnrt.h's C struct has it */
static void check_layout(Ll *l, LLVMTypeRef t, const char *name, size_t size, const size_t *offsets, unsigned n)
{
	if (LLVMCountStructElementTypes(t) != n)
		NNC_BUG("%s: %u LLVM fields for %u C fields", name, LLVMCountStructElementTypes(t), n);
	for (unsigned i = 0; i < n; i++)
		if (LLVMOffsetOfElement(l->td, t, i) != offsets[i])
			NNC_BUG("%s: field %u at offset %llu in LLVM, %zu in C", name, i,
				LLVMOffsetOfElement(l->td, t, i), offsets[i]);
	if (LLVMABISizeOfType(l->td, t) != size)
		NNC_BUG("%s: %llu bytes in LLVM, %zu in C", name, LLVMABISizeOfType(l->td, t), size);
}

static void scalar_types(Ll *l)
{
	l->i8 = LLVMInt8TypeInContext(l->cx);
	l->i32 = LLVMInt32TypeInContext(l->cx);
	l->i64 = LLVMInt64TypeInContext(l->cx);
	l->f32 = LLVMFloatTypeInContext(l->cx);
	l->f64 = LLVMDoubleTypeInContext(l->cx);
	l->vd = LLVMVoidTypeInContext(l->cx);
	l->pi8 = ptr(l->i8);
	l->pf32 = ptr(l->f32);
}

/* NnrtCtx, NnrtBuffer and the kernels' signatures */
static void ctx_types(Ll *l)
{
	LLVMTypeRef rng[] = { l->i64, l->i64 };
	l->rng_t = named_struct(l, "struct.NnrtRng", rng, 2);
	/* model, arena, max_batch, lr, step, rng, b */
	LLVMTypeRef ctx[] = { l->pi8, l->pi8, l->i64, l->f64, l->i64, l->rng_t, ptr(l->pf32) };
	l->ctx_t = named_struct(l, "struct.NnrtCtx", ctx, 7);
	l->pctx = ptr(l->ctx_t);
	static const size_t ctx_off[] = { offsetof(NnrtCtx, model), offsetof(NnrtCtx, arena), offsetof(NnrtCtx, max_batch),
					  offsetof(NnrtCtx, lr), offsetof(NnrtCtx, step), offsetof(NnrtCtx, rng),
					  offsetof(NnrtCtx, b) };
	check_layout(l, l->ctx_t, "NnrtCtx", sizeof(NnrtCtx), ctx_off, 7);

	/* name, kind, elems, batched, init, init_value, rank, shape, plan_ps, plan_fixed */
	LLVMTypeRef buf[] = { l->pi8, l->i32, l->i64, l->i32, l->i32, l->f32, l->i32, LLVMArrayType(l->i64, NNRT_MAX_RANK),
			      l->i64, l->i64 };
	l->buf_t = named_struct(l, "struct.NnrtBuffer", buf, 10);
	static const size_t buf_off[] = { offsetof(NnrtBuffer, name), offsetof(NnrtBuffer, kind),
					  offsetof(NnrtBuffer, elems), offsetof(NnrtBuffer, batched),
					  offsetof(NnrtBuffer, init), offsetof(NnrtBuffer, init_value),
					  offsetof(NnrtBuffer, rank), offsetof(NnrtBuffer, shape),
					  offsetof(NnrtBuffer, plan_ps), offsetof(NnrtBuffer, plan_fixed) };
	check_layout(l, l->buf_t, "NnrtBuffer", sizeof(NnrtBuffer), buf_off, 10);

	LLVMTypeRef fwd[] = { l->pctx, l->i64, l->pf32, l->pf32 };
	l->fwd_t = LLVMFunctionType(l->vd, fwd, 4, 0);
	LLVMTypeRef step[] = { l->pctx, l->i64, l->pf32, l->pi8, l->pf32 };
	l->step_t = LLVMFunctionType(l->f32, step, 5, 0);
}

#define INFO(f) offsetof(NnrtModelInfo, f)

/* NnrtModelInfo, in nnrt.h's field order */
static void info_type(Ll *l)
{
	LLVMTypeRef info[] = {
		l->pi8,						/* name */
		l->i64, l->i32, LLVMArrayType(l->i64, 3),	/* in_elems, in_rank, in_shape */
		l->i64,						/* out_elems */
		l->i32, l->i64, l->i64,				/* target, target_elems, classes */
		l->i64, l->i64, l->i64,				/* batch, epochs, seed */
		l->f64, l->i32, l->i64, l->f64,			/* lr, schedule, step_every, step_gamma */
		l->pi8, l->pi8, l->pi8,				/* optimizer, data, test */
		l->i32, ptr(l->buf_t),				/* nbufs, bufs */
		ptr(l->fwd_t), ptr(l->step_t), ptr(l->step_t),	/* forward, eval, train_step */
		l->i32,						/* metric */
		l->i64, l->i64,					/* temps_ps, temps_fixed */
	};
	enum { NINFO = sizeof info / sizeof info[0] };
	l->info_t = named_struct(l, "struct.NnrtModelInfo", info, NINFO);
	static const size_t info_off[NINFO] = {
		INFO(name), INFO(in_elems), INFO(in_rank), INFO(in_shape), INFO(out_elems), INFO(target),
		INFO(target_elems), INFO(classes), INFO(batch), INFO(epochs), INFO(seed), INFO(lr), INFO(schedule),
		INFO(step_every), INFO(step_gamma), INFO(optimizer), INFO(data), INFO(test), INFO(nbufs), INFO(bufs),
		INFO(forward), INFO(eval), INFO(train_step), INFO(metric), INFO(temps_ps), INFO(temps_fixed),
	};
	check_layout(l, l->info_t, "NnrtModelInfo", sizeof(NnrtModelInfo), info_off, NINFO);
}

static void runtime_types(Ll *l)
{
	scalar_types(l);
	ctx_types(l);
	info_type(l);
}

static LLVMTypeRef ltype(Ll *l, LoopType t)
{
	switch (t) {
	case LT_BOOL: return l->i32;	/* C's int */
	case LT_I64: return l->i64;
	case LT_F32: return l->f32;
	case LT_F64: return l->f64;
	}
	return l->f32;
}

static bool is_float(LoopType t)
{
	return t == LT_F32 || t == LT_F64;
}

/* ---- declarations of what the code calls ---- */

static LLVMValueRef declare(Ll *l, const char *name, LLVMTypeRef ret, LLVMTypeRef *params, unsigned n)
{
	LLVMValueRef f = LLVMGetNamedFunction(l->mod, name);
	return f ? f : LLVMAddFunction(l->mod, name, LLVMFunctionType(ret, params, n, 0));
}

static LLVMValueRef call(Ll *l, LLVMValueRef fn, LLVMValueRef *args, unsigned n)
{
	return LLVMBuildCall2(l->b, LLVMGlobalGetValueType(fn), fn, args, n, "");
}

/* llvm.NAME.f32 or .f64 */
static LLVMValueRef intrinsic(Ll *l, const char *name, LLVMTypeRef t)
{
	unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
	if (!id)
		NNC_BUG("no LLVM intrinsic %s", name);
	return LLVMGetIntrinsicDeclaration(l->mod, id, &t, 1);
}

static LLVMValueRef call1(Ll *l, LLVMValueRef fn, LLVMValueRef a)
{
	return call(l, fn, &a, 1);
}

static LLVMValueRef i64c(Ll *l, int64_t v)
{
	return LLVMConstInt(l->i64, (unsigned long long)v, 1);
}

static LLVMValueRef i32c(Ll *l, int v)
{
	return LLVMConstInt(l->i32, (unsigned long long)(long long)v, 1);
}

static LLVMBasicBlockRef block(Ll *l, const char *name)
{
	return LLVMAppendBasicBlockInContext(l->cx, l->fn, name);
}

/* ---- expressions ---- */

static LLVMValueRef expr(Ll *l, const LoopExpr *x);

/* C's (t)v */
static LLVMValueRef convert(Ll *l, LLVMValueRef v, LoopType from, LoopType to)
{
	LLVMTypeRef t = ltype(l, to);
	if (from == to)
		return v;
	if (is_float(from) && is_float(to))
		return to == LT_F64 ? LLVMBuildFPExt(l->b, v, t, "") : LLVMBuildFPTrunc(l->b, v, t, "");
	if (is_float(from))
		return LLVMBuildFPToSI(l->b, v, t, "");
	if (is_float(to))
		return LLVMBuildSIToFP(l->b, v, t, "");
	return to == LT_I64 ? LLVMBuildSExt(l->b, v, t, "") : LLVMBuildTrunc(l->b, v, t, "");
}

/* C's test of a condition: v != 0 */
static LLVMValueRef truth(Ll *l, LLVMValueRef v, LoopType t)
{
	if (is_float(t))
		return LLVMBuildFCmp(l->b, LLVMRealUNE, v, LLVMConstNull(ltype(l, t)), "");
	return LLVMBuildICmp(l->b, LLVMIntNE, v, LLVMConstNull(ltype(l, t)), "");
}

/* c ? a : b where C evaluates only one of a and b: branches and a phi */
static LLVMValueRef lazy_select(Ll *l, LLVMValueRef c, const LoopExpr *a, const LoopExpr *b, LLVMTypeRef t)
{
	LLVMBasicBlockRef ba = block(l, "then"), bb = block(l, "else"), join = block(l, "join");
	LLVMBuildCondBr(l->b, c, ba, bb);
	LLVMPositionBuilderAtEnd(l->b, ba);
	LLVMValueRef va = expr(l, a);
	LLVMBasicBlockRef ea = LLVMGetInsertBlock(l->b);
	LLVMBuildBr(l->b, join);
	LLVMPositionBuilderAtEnd(l->b, bb);
	LLVMValueRef vb = expr(l, b);
	LLVMBasicBlockRef eb = LLVMGetInsertBlock(l->b);
	LLVMBuildBr(l->b, join);
	LLVMPositionBuilderAtEnd(l->b, join);
	LLVMValueRef phi = LLVMBuildPhi(l->b, t, "");
	LLVMValueRef vals[] = { va, vb };
	LLVMBasicBlockRef from[] = { ea, eb };
	LLVMAddIncoming(phi, vals, from, 2);
	return phi;
}

/* && and ||: 0 or 1, the right operand evaluated only when C would */
static LLVMValueRef logic(Ll *l, const LoopExpr *x)
{
	bool and = x->op == LO_AND;
	LLVMTypeRef i1 = LLVMInt1TypeInContext(l->cx);
	LLVMValueRef a = truth(l, expr(l, x->a), x->a->type), r;
	if (loop_speculable(x->b, x->a)) {
		LLVMValueRef b = truth(l, expr(l, x->b), x->b->type);
		r = and ? LLVMBuildAnd(l->b, a, b, "") : LLVMBuildOr(l->b, a, b, "");
	} else {
		/* a && b evaluates b only when a holds, a || b only when it does not */
		LLVMBasicBlockRef from = LLVMGetInsertBlock(l->b), rhs = block(l, "rhs"), join = block(l, "join");
		LLVMBuildCondBr(l->b, a, and ? rhs : join, and ? join : rhs);
		LLVMPositionBuilderAtEnd(l->b, rhs);
		LLVMValueRef b = truth(l, expr(l, x->b), x->b->type);
		LLVMBasicBlockRef end = LLVMGetInsertBlock(l->b);
		LLVMBuildBr(l->b, join);
		LLVMPositionBuilderAtEnd(l->b, join);
		r = LLVMBuildPhi(l->b, i1, "");
		LLVMValueRef vals[] = { LLVMConstInt(i1, !and, 0), b };
		LLVMBasicBlockRef blocks[] = { from, end };
		LLVMAddIncoming(r, vals, blocks, 2);
	}
	return LLVMBuildZExt(l->b, r, l->i32, "");
}

static LLVMValueRef compare(Ll *l, int op, LLVMValueRef a, LLVMValueRef b, LoopType t)
{
	static const LLVMRealPredicate fp[] = { LLVMRealOLT, LLVMRealOLE, LLVMRealOGT, LLVMRealOGE, LLVMRealOEQ, LLVMRealUNE };
	static const LLVMIntPredicate ip[] = { LLVMIntSLT, LLVMIntSLE, LLVMIntSGT, LLVMIntSGE, LLVMIntEQ, LLVMIntNE };
	int k = op - LO_LT;
	return is_float(t) ? LLVMBuildFCmp(l->b, fp[k], a, b, "") : LLVMBuildICmp(l->b, ip[k], a, b, "");
}

static LLVMValueRef binary(Ll *l, const LoopExpr *x)
{
	if (x->op == LO_AND || x->op == LO_OR)
		return logic(l, x);
	LoopType t = x->a->type;	/* the operands' type (the builder made them one) */
	LLVMValueRef a = expr(l, x->a), b = expr(l, x->b);
	bool f = is_float(t);
	switch ((LoopBinOp)x->op) {
	case LO_ADD: return f ? LLVMBuildFAdd(l->b, a, b, "") : LLVMBuildNSWAdd(l->b, a, b, "");
	case LO_SUB: return f ? LLVMBuildFSub(l->b, a, b, "") : LLVMBuildNSWSub(l->b, a, b, "");
	case LO_MUL: return f ? LLVMBuildFMul(l->b, a, b, "") : LLVMBuildNSWMul(l->b, a, b, "");
	case LO_DIV: return f ? LLVMBuildFDiv(l->b, a, b, "") : LLVMBuildSDiv(l->b, a, b, "");
	case LO_MIN:	/* nn_min: a < b ? a : b */
	case LO_MAX:	/* nn_max: a > b ? a : b */
		return LLVMBuildSelect(l->b, compare(l, x->op == LO_MIN ? LO_LT : LO_GT, a, b, t), a, b, "");
	case LO_POW: {
		LLVMValueRef args[] = { a, b };
		return call(l, intrinsic(l, "llvm.pow", ltype(l, t)), args, 2);
	}
	case LO_LT: case LO_LE: case LO_GT: case LO_GE: case LO_EQ: case LO_NE:
		return LLVMBuildZExt(l->b, compare(l, x->op, a, b, t), l->i32, "");
	case LO_AND: case LO_OR: break;
	}
	NNC_BUG("binary op %d", x->op);
}

/* expm1f, log1pf, tanhf, erff (and the double ones): libm, as the C code calls them */
static LLVMValueRef libm(Ll *l, const char *name, LoopType t, LLVMValueRef a)
{
	char buf[16];
	snprintf(buf, sizeof buf, "%s%s", name, t == LT_F32 ? "f" : "");
	LLVMTypeRef ft = ltype(l, t);
	return call1(l, declare(l, buf, ft, &ft, 1), a);
}

static LLVMValueRef unary(Ll *l, const LoopExpr *x)
{
	LLVMValueRef a = expr(l, x->a);
	LoopType t = x->a->type;
	LLVMTypeRef ft = ltype(l, t);
	switch ((LoopUnOp)x->op) {
	case LO_NEG: return is_float(t) ? LLVMBuildFNeg(l->b, a, "") : LLVMBuildNSWSub(l->b, LLVMConstNull(ft), a, "");
	case LO_ABS:
		if (is_float(t))
			return call1(l, intrinsic(l, "llvm.fabs", ft), a);
		/* C prints fabs(x) for an integer too: through double and back */
		return convert(l, call1(l, intrinsic(l, "llvm.fabs", l->f64), convert(l, a, t, LT_F64)), LT_F64, x->type);
	case LO_EXP: return call1(l, intrinsic(l, "llvm.exp", ft), a);
	case LO_LOG: return call1(l, intrinsic(l, "llvm.log", ft), a);
	case LO_SQRT: return call1(l, intrinsic(l, "llvm.sqrt", ft), a);
	case LO_EXPM1: return libm(l, "expm1", t, a);
	case LO_LOG1P: return libm(l, "log1p", t, a);
	case LO_TANH: return libm(l, "tanh", t, a);
	case LO_ERF: return libm(l, "erf", t, a);
	case LO_CVT: return convert(l, a, t, x->type);
	}
	NNC_BUG("unary op %d", x->op);
}

static LLVMValueRef ctx_field(Ll *l, unsigned field)
{
	return LLVMBuildStructGEP2(l->b, l->ctx_t, l->ctx, field, "");
}

/* marks a load or store of buffer id (nbufs: the context) with its scope */
static LLVMValueRef tag(Ll *l, LLVMValueRef access, int id)
{
	if (l->scope && l->scope[id]) {
		LLVMSetMetadata(access, l->scope_kind, l->scope[id]);
		LLVMSetMetadata(access, l->noalias_kind, l->noalias[id]);
	}
	return access;
}

static LLVMValueRef load_ctx(Ll *l, LLVMTypeRef t, unsigned field, const char *name)
{
	return tag(l, LLVMBuildLoad2(l->b, t, ctx_field(l, field), name), l->m->nbufs);
}

static LLVMValueRef elem_ptr(Ll *l, const LoopBuf *b, LLVMValueRef idx)
{
	LLVMValueRef base = l->bufp[b->id];
	if (!base)
		NNC_BUG("b%d used but not loaded", b->id);
	return LLVMBuildInBoundsGEP2(l->b, ltype(l, b->type), base, &idx, 1, "");
}

static LLVMValueRef expr(Ll *l, const LoopExpr *x)
{
	switch (x->kind) {
	case LE_CONST:
		if (is_float(x->type))
			return LLVMConstReal(ltype(l, x->type), x->type == LT_F32 ? (double)(float)x->f : x->f);
		return LLVMConstInt(ltype(l, x->type), (unsigned long long)x->i, 1);
	case LE_VAR:
		if (x->var->is_index)
			return l->vars[x->var->id];
		return LLVMBuildLoad2(l->b, ltype(l, x->type), l->vars[x->var->id], "");
	case LE_N: return l->n;
	case LE_CTX:
		if (x->field == LC_LR)
			return load_ctx(l, l->f64, 3, "lr");
		return LLVMBuildSIToFP(l->b, load_ctx(l, l->i64, 4, "step"), l->f64, "");
	case LE_RAND: {
		LLVMTypeRef prng = ptr(l->rng_t);
		return call1(l, declare(l, "nnrt_rng_uniform", l->f32, &prng, 1), ctx_field(l, 5));
	}
	case LE_LOAD:
		return tag(l, LLVMBuildLoad2(l->b, ltype(l, x->type), elem_ptr(l, x->buf, expr(l, x->a)), ""), x->buf->id);
	case LE_BIN: return binary(l, x);
	case LE_UN: return unary(l, x);
	case LE_SELECT: {
		LLVMValueRef c = truth(l, expr(l, x->c), x->c->type);
		if (loop_speculable(x->a, x->c) && loop_speculable(x->b, x->c)) {
			LLVMValueRef a = expr(l, x->a);
			return LLVMBuildSelect(l->b, c, a, expr(l, x->b), "");
		}
		return lazy_select(l, c, x->a, x->b, ltype(l, x->type));
	}
	}
	NNC_BUG("expression kind %d", x->kind);
}

/* ---- statements ---- */

static void stmts(Ll *l, const LoopStmt *s, bool top);

static bool stores_out(const LoopStmt *s)
{
	for (; s; s = s->next)
		if ((s->kind == LS_STORE && s->buf->kind == LB_ARG_OUT) || (s->kind == LS_FOR && stores_out(s->body)))
			return true;
	return false;
}

/* for (int64_t i = first; i < last; i++) { s's body }, with s's counter; last NULL:
 * s->hi, evaluated before every iteration. The serial loop and an outlined chunk. */
static void counted_loop(Ll *l, const LoopStmt *s, LLVMValueRef first, LLVMValueRef last)
{
	LLVMBasicBlockRef pre = LLVMGetInsertBlock(l->b);
	LLVMBasicBlockRef head = block(l, "for"), body = block(l, "body"), done = block(l, "done");
	LLVMBuildBr(l->b, head);
	LLVMPositionBuilderAtEnd(l->b, head);
	LLVMValueRef i = LLVMBuildPhi(l->b, l->i64, "i");
	LLVMAddIncoming(i, &first, &pre, 1);
	l->vars[s->var->id] = i;
	LLVMValueRef more = LLVMBuildICmp(l->b, LLVMIntSLT, i, last ? last : expr(l, s->hi), "");
	LLVMBuildCondBr(l->b, more, body, done);
	LLVMPositionBuilderAtEnd(l->b, body);
	stmts(l, s->body, false);
	LLVMValueRef next = LLVMBuildNSWAdd(l->b, i, i64c(l, 1), "");
	LLVMBasicBlockRef latch = LLVMGetInsertBlock(l->b);
	LLVMBuildBr(l->b, head);
	LLVMAddIncoming(i, &next, &latch, 1);
	LLVMPositionBuilderAtEnd(l->b, done);
}

static void for_loop(Ll *l, const LoopStmt *s)
{
	counted_loop(l, s, expr(l, s->lo), NULL);
}

_Static_assert((int)LOOP_CONV_FIELDS == (int)NNRT_CONV_GEOM, "loop.h's LoopConv is nnrt_sgemm_conv's geometry");

static LLVMValueRef private_array(Ll *l, LLVMValueRef init, const char *name);

/* a convolution's geometry (loop.h's LoopConv) as a private constant i64 array */
static LLVMValueRef geom_array(Ll *l, const LoopConv *c)
{
	int64_t f[LOOP_CONV_FIELDS];
	loop_conv_fields(c, f);
	LLVMValueRef v[LOOP_CONV_FIELDS];
	for (int i = 0; i < LOOP_CONV_FIELDS; i++)
		v[i] = i64c(l, f[i]);
	return private_array(l, LLVMConstArray(l->i64, v, LOOP_CONV_FIELDS), ".conv");
}

/* a GEMM whose B is an image's implicit column matrix */
static void gemm_conv(Ll *l, const LoopGemm *g)
{
	LLVMTypeRef pi64 = LLVMPointerType(l->i64, 0);
	LLVMTypeRef p[] = { l->i32, l->i64, l->i64, l->i64, l->f32, l->pf32, l->i64,
			    l->pf32, pi64, l->f32, l->pf32, l->i64 };
	LLVMValueRef fn = declare(l, "nnrt_sgemm_conv", l->vd, p, 12);
	LLVMValueRef a[] = {
		i32c(l, g->tb), expr(l, g->m), expr(l, g->n), expr(l, g->k),
		LLVMConstReal(l->f32, (double)(float)g->alpha), elem_ptr(l, g->a, expr(l, g->aoff)), expr(l, g->lda),
		elem_ptr(l, g->b, expr(l, g->boff)), geom_array(l, g->conv),
		LLVMConstReal(l->f32, (double)(float)g->beta), elem_ptr(l, g->c, expr(l, g->coff)), expr(l, g->ldc),
	};
	call(l, fn, a, 12);
}

/* C = beta C + alpha col2im(op(A) B): the image C after the geometry, no ldc */
static void gemm_col2im(Ll *l, const LoopGemm *g)
{
	LLVMTypeRef pi64 = LLVMPointerType(l->i64, 0);
	LLVMTypeRef p[] = { l->i32, l->i64, l->i64, l->i64, l->f32, l->pf32, l->i64,
			    l->pf32, l->i64, pi64, l->f32, l->pf32 };
	LLVMValueRef fn = declare(l, "nnrt_sgemm_col2im", l->vd, p, 12);
	LLVMValueRef a[] = {
		i32c(l, g->ta), expr(l, g->m), expr(l, g->n), expr(l, g->k),
		LLVMConstReal(l->f32, (double)(float)g->alpha), elem_ptr(l, g->a, expr(l, g->aoff)), expr(l, g->lda),
		elem_ptr(l, g->b, expr(l, g->boff)), expr(l, g->ldb), geom_array(l, g->conv),
		LLVMConstReal(l->f32, (double)(float)g->beta), elem_ptr(l, g->c, expr(l, g->coff)),
	};
	call(l, fn, a, 12);
}

static void gemm(Ll *l, const LoopGemm *g)
{
	if (g->col2im) {
		gemm_col2im(l, g);
		return;
	}
	if (g->conv) {
		gemm_conv(l, g);
		return;
	}
	LLVMTypeRef p[] = { l->i32, l->i32, l->i64, l->i64, l->i64, l->f32, l->pf32, l->i64,
			    l->pf32, l->i64, l->f32, l->pf32, l->i64 };
	LLVMValueRef fn = declare(l, "nnrt_sgemm", l->vd, p, 13);
	LLVMValueRef a[] = {
		i32c(l, g->ta), i32c(l, g->tb), expr(l, g->m), expr(l, g->n), expr(l, g->k),
		LLVMConstReal(l->f32, (double)(float)g->alpha), elem_ptr(l, g->a, expr(l, g->aoff)), expr(l, g->lda),
		elem_ptr(l, g->b, expr(l, g->boff)), expr(l, g->ldb), LLVMConstReal(l->f32, (double)(float)g->beta),
		elem_ptr(l, g->c, expr(l, g->coff)), expr(l, g->ldc),
	};
	call(l, fn, a, 13);
}

/* ---- outlined parallel loops (loop.h), as emit_c.c writes them: the
 * body over [begin, end) of the iterations in a function of its own, which
 * takes a struct of what it reads (the context, n, buffers, captured
 * counters and locals), and a call of nnrt_parallel_for_grain ---- */

static void add_attr(Ll *l, LLVMValueRef fn, const char *name);

static LLVMTypeRef par_struct(Ll *l, const LoopPar *lp)
{
	int nb = l->m->nbufs, nv = l->f->nvars, k = 0;
	LLVMTypeRef *fields = calloc((size_t)(nb + nv + 2), sizeof *fields);
	if (!fields)
		NNC_BUG("out of memory");
	fields[k++] = l->pctx;
	fields[k++] = l->i64;
	for (int i = 0; i < nb; i++)
		if (lp->bufs[i])
			fields[k++] = LLVMTypeOf(l->bufp[i]);
	for (int i = 0; i < nv; i++)
		if (lp->captured[i])
			fields[k++] = ltype(l, l->f->vars[i]->type);
	LLVMTypeRef t = LLVMStructTypeInContext(l->cx, fields, (unsigned)k, 0);
	free(fields);
	return t;
}

static LLVMTypeRef par_fn_type(Ll *l)
{
	LLVMTypeRef p[] = { l->pi8, l->i64, l->i64 };
	return LLVMFunctionType(l->vd, p, 3, 0);
}

/* k_NAME_parK(void *arg, int64_t begin, int64_t end); the kernel's state is
 * swapped out while it is built, and back in after */
static LLVMValueRef par_fn(Ll *l, const LoopPar *lp, int k, LLVMTypeRef st)
{
	const LoopStmt *s = lp->loop;
	char name[160];
	snprintf(name, sizeof name, "k_%s_par%d", l->f->name, k);
	LLVMValueRef fn = LLVMAddFunction(l->mod, name, par_fn_type(l));
	LLVMSetLinkage(fn, LLVMInternalLinkage);
	add_attr(l, fn, "nounwind");
	LLVMValueRef saved_fn = l->fn, saved_ctx = l->ctx, saved_n = l->n, *saved_bufp = l->bufp, *saved_vars = l->vars;
	LLVMBasicBlockRef saved_at = LLVMGetInsertBlock(l->b);
	const LoopPars *saved_pars = l->pars;
	l->fn = fn;
	l->pars = NULL;	/* nested parallel loops run serially here */
	l->bufp = calloc((size_t)l->m->nbufs + 1, sizeof *l->bufp);
	l->vars = calloc((size_t)l->f->nvars + 1, sizeof *l->vars);
	if (!l->bufp || !l->vars)
		NNC_BUG("out of memory");
	LLVMPositionBuilderAtEnd(l->b, block(l, "entry"));
	LLVMValueRef arg = LLVMBuildBitCast(l->b, LLVMGetParam(fn, 0), ptr(st), "arg");
	unsigned f = 0;
	LLVMValueRef field;
#define FIELD(t) (field = LLVMBuildStructGEP2(l->b, st, arg, f++, ""), LLVMBuildLoad2(l->b, (t), field, ""))
	l->ctx = FIELD(l->pctx);
	l->n = FIELD(l->i64);
	for (int i = 0; i < l->m->nbufs; i++)
		if (lp->bufs[i])
			l->bufp[i] = FIELD(LLVMTypeOf(saved_bufp[i]));
	for (int i = 0; i < l->f->nvars; i++) {
		LLVMTypeRef t = ltype(l, l->f->vars[i]->type);
		if (lp->captured[i] && l->f->vars[i]->is_index) {
			l->vars[i] = FIELD(t);
		} else if (lp->captured[i]) {
			LLVMValueRef v = FIELD(t);
			l->vars[i] = LLVMBuildAlloca(l->b, t, "");
			LLVMBuildStore(l->b, v, l->vars[i]);
		} else if (lp->locals[i]) {
			l->vars[i] = LLVMBuildAlloca(l->b, t, "");
		}
	}
#undef FIELD
	/* for (i = lo + begin; i < lo + end; i++) */
	LLVMValueRef lo = expr(l, s->lo);
	LLVMValueRef first = LLVMBuildNSWAdd(l->b, lo, LLVMGetParam(fn, 1), "");
	LLVMValueRef last = LLVMBuildNSWAdd(l->b, lo, LLVMGetParam(fn, 2), "");
	counted_loop(l, s, first, last);
	LLVMBuildRetVoid(l->b);
	free(l->bufp);
	free(l->vars);
	l->fn = saved_fn;
	l->ctx = saved_ctx;
	l->n = saved_n;
	l->bufp = saved_bufp;
	l->vars = saved_vars;
	l->pars = saved_pars;
	LLVMPositionBuilderAtEnd(l->b, saved_at);
	return fn;
}

static void par_call(Ll *l, const LoopPar *lp, int k)
{
	const LoopStmt *s = lp->loop;
	LLVMTypeRef st = par_struct(l, lp);
	LLVMValueRef fn = par_fn(l, lp, k, st);
	/* the struct in the entry block, so a loop around the call reuses it */
	LLVMBuilderRef eb = LLVMCreateBuilderInContext(l->cx);
	LLVMPositionBuilderBefore(eb, LLVMGetBasicBlockTerminator(l->entry));
	LLVMValueRef arg = LLVMBuildAlloca(eb, st, "par");
	LLVMDisposeBuilder(eb);
	unsigned f = 0;
#define STORE(v) LLVMBuildStore(l->b, (v), LLVMBuildStructGEP2(l->b, st, arg, f++, ""))
	STORE(l->ctx);
	STORE(l->n);
	for (int i = 0; i < l->m->nbufs; i++)
		if (lp->bufs[i])
			STORE(l->bufp[i]);
	for (int i = 0; i < l->f->nvars; i++) {
		if (!lp->captured[i])
			continue;
		const LoopVar *v = l->f->vars[i];
		STORE(v->is_index ? l->vars[i] : LLVMBuildLoad2(l->b, ltype(l, v->type), l->vars[i], ""));
	}
#undef STORE
	LLVMValueRef hi = expr(l, s->hi), lo = expr(l, s->lo);
	LLVMTypeRef p[] = { l->i64, l->i64, ptr(par_fn_type(l)), l->pi8 };
	LLVMValueRef run = declare(l, "nnrt_parallel_for_grain", l->vd, p, 4);
	LLVMValueRef a[] = { LLVMBuildNSWSub(l->b, hi, lo, ""), i64c(l, lp->work), fn,
			     LLVMBuildBitCast(l->b, arg, l->pi8, "") };
	call(l, run, a, 4);
}

static void stmt(Ll *l, const LoopStmt *s)
{
	int par = s->kind == LS_FOR && l->pars ? loop_par_index(l->pars, s) : -1;
	switch (s->kind) {
	case LS_FOR:
		if (par >= 0)
			par_call(l, &l->pars->par[par], par);
		else
			for_loop(l, s);
		return;
	case LS_STORE: {
		LLVMValueRef idx = expr(l, s->idx);
		LLVMValueRef v = expr(l, s->val);
		tag(l, LLVMBuildStore(l->b, v, elem_ptr(l, s->buf, idx)), s->buf->id);
		return;
	}
	case LS_SET: LLVMBuildStore(l->b, expr(l, s->val), l->vars[s->var->id]); return;
	case LS_GEMM: gemm(l, s->gemm); return;
	}
	NNC_BUG("statement kind %d", s->kind);
}

static void stmts(Ll *l, const LoopStmt *s, bool top)
{
	for (; s; s = s->next) {
		if (!(top && s->kind == LS_FOR && stores_out(s->body))) {
			stmt(l, s);
			continue;
		}
		/* the output argument is optional */
		LLVMBasicBlockRef then = block(l, "out"), join = block(l, "after_out");
		LLVMBuildCondBr(l->b, LLVMBuildIsNotNull(l->b, l->out, ""), then, join);
		LLVMPositionBuilderAtEnd(l->b, then);
		stmt(l, s);
		LLVMBuildBr(l->b, join);
		LLVMPositionBuilderAtEnd(l->b, join);
	}
}

/* ---- functions ---- */

static bool in_arena(const LoopBuf *b)
{
	return b->kind != LB_ARG_X && b->kind != LB_ARG_Y && b->kind != LB_ARG_OUT;
}

static bool is_forward(const LoopFn *f)
{
	return !strcmp(f->name, "forward");
}

static void add_attr(Ll *l, LLVMValueRef fn, const char *name)
{
	unsigned kind = LLVMGetEnumAttributeKindForName(name, strlen(name));
	LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(l->cx, kind, 0));
}

static LLVMValueRef kernel_decl(Ll *l, const LoopFn *f)
{
	char name[128];
	snprintf(name, sizeof name, "k_%s", f->name);
	LLVMValueRef fn = LLVMAddFunction(l->mod, name, is_forward(f) ? l->fwd_t : l->step_t);
	LLVMSetLinkage(fn, LLVMInternalLinkage);
	add_attr(l, fn, "nounwind");
	add_attr(l, fn, "noinline");	/* the API wrappers call it: one copy of each kernel */
	return fn;
}

/* buffer i's scope: its own, or its memory group's (nbufs: the context's) */
static int scope_of(const Ll *l, int i)
{
	return i < l->m->nbufs && l->m->bufs[i]->alias_of ? l->m->bufs[i]->alias_of - 1 : i;
}

/* a scope per buffer used (per memory group), and the context's, in a domain per kernel */
static void scopes(Ll *l, const LoopFn *f, const bool *used)
{
	int nb = l->m->nbufs, n = 0;
	LLVMMetadataRef *sc = calloc((size_t)nb + 1, sizeof *sc), *others = calloc((size_t)nb + 1, sizeof *others);
	l->scope = calloc((size_t)nb + 1, sizeof *l->scope);
	l->noalias = calloc((size_t)nb + 1, sizeof *l->noalias);
	if (!sc || !others || !l->scope || !l->noalias)
		NNC_BUG("out of memory");
	char name[160];
	snprintf(name, sizeof name, "k_%s", f->name);
	LLVMMetadataRef domain = LLVMMDStringInContext2(l->cx, name, strlen(name));
	domain = LLVMMDNodeInContext2(l->cx, &domain, 1);
	/* buffers that may share memory (the memory plan's alias_of) share a scope */
	for (int i = 0; i <= nb; i++) {
		if (i < nb && !used[i])
			continue;
		int r = scope_of(l, i);
		if (!sc[r]) {
			if (i < nb)
				snprintf(name, sizeof name, "k_%s b%d", f->name, r);
			else
				snprintf(name, sizeof name, "k_%s ctx", f->name);
			LLVMMetadataRef ops[] = { LLVMMDStringInContext2(l->cx, name, strlen(name)), domain };
			sc[r] = LLVMMDNodeInContext2(l->cx, ops, 2);
		}
		l->scope[i] = LLVMMetadataAsValue(l->cx, LLVMMDNodeInContext2(l->cx, &sc[r], 1));
	}
	for (int i = 0; i <= nb; i++) {
		if (!l->scope[i])
			continue;
		int r = scope_of(l, i);
		n = 0;
		for (int k = 0; k <= nb; k++)
			if (sc[k] && k != r)
				others[n++] = sc[k];
		l->noalias[i] = LLVMMetadataAsValue(l->cx, LLVMMDNodeInContext2(l->cx, others, (size_t)n));
	}
	free(sc);
	free(others);
}

/* the entry block: base pointers of the buffers used, as the C code declares
 * them, and the locals' allocas */
static void prologue(Ll *l, const LoopFn *f)
{
	bool *used = calloc((size_t)l->m->nbufs + 1, 1);
	if (!used)
		NNC_BUG("out of memory");
	loop_bufs_used(f->body, used);
	if (f->result)
		used[f->result->id] = true;
	LLVMValueRef table = LLVMBuildLoad2(l->b, ptr(l->pf32), ctx_field(l, 6), "b");
	for (int i = 0; i < l->m->nbufs; i++) {
		const LoopBuf *b = l->m->bufs[i];
		l->bufp[i] = NULL;
		if (!used[i])
			continue;
		char name[32];
		snprintf(name, sizeof name, "b%d", i);
		if (in_arena(b)) {
			if (b->type != LT_F32)
				NNC_BUG("arena buffer b%d is not F32", i);
			LLVMValueRef at = LLVMBuildInBoundsGEP2(l->b, l->pf32, table, (LLVMValueRef[]){ i64c(l, i) }, 1, "");
			l->bufp[i] = LLVMBuildLoad2(l->b, l->pf32, at, name);
		} else if (b->kind == LB_ARG_X) {
			l->bufp[i] = l->x;
		} else if (b->kind == LB_ARG_Y) {
			if (!l->y)
				NNC_BUG("forward reads the target b%d", i);
			l->bufp[i] = LLVMBuildBitCast(l->b, l->y, ptr(ltype(l, b->type)), name);
		} else {
			l->bufp[i] = l->out;
		}
	}
	scopes(l, f, used);
	free(used);
	for (int i = 0; i < f->nvars; i++) {
		l->vars[i] = NULL;
		if (!f->vars[i]->is_index) {
			char name[32];
			snprintf(name, sizeof name, "v%d", i);
			l->vars[i] = LLVMBuildAlloca(l->b, ltype(l, f->vars[i]->type), name);
		}
	}
}

static void kernel(Ll *l, const LoopFn *f, LLVMValueRef fn)
{
	l->fn = fn;
	l->ctx = LLVMGetParam(fn, 0);
	l->n = LLVMGetParam(fn, 1);
	l->x = LLVMGetParam(fn, 2);
	l->y = is_forward(f) ? NULL : LLVMGetParam(fn, 3);
	l->out = LLVMGetParam(fn, is_forward(f) ? 3 : 4);
	LLVMSetValueName2(l->ctx, "ctx", 3);
	LLVMSetValueName2(l->n, "n", 1);
	LLVMSetValueName2(l->x, "x", 1);
	LLVMSetValueName2(l->out, "out", 3);
	if (l->y)
		LLVMSetValueName2(l->y, "y", 1);
	l->vars = calloc((size_t)f->nvars + 1, sizeof *l->vars);
	if (!l->vars)
		NNC_BUG("out of memory");
	LLVMBasicBlockRef entry = block(l, "entry"), start = block(l, "start");
	LLVMPositionBuilderAtEnd(l->b, entry);
	prologue(l, f);
	LLVMBuildBr(l->b, start);
	LLVMPositionBuilderAtEnd(l->b, start);
	LoopPars pars = loop_pars(l->m, f);
	l->f = f;
	l->pars = &pars;
	l->entry = entry;
	if (f->counts_step) {
		LLVMValueRef at = ctx_field(l, 4);
		LLVMValueRef s = tag(l, LLVMBuildLoad2(l->b, l->i64, at, "step"), l->m->nbufs);
		tag(l, LLVMBuildStore(l->b, LLVMBuildNSWAdd(l->b, s, i64c(l, 1), ""), at), l->m->nbufs);
	}
	stmts(l, f->body, true);
	l->pars = NULL;
	if (f->result)
		LLVMBuildRet(l->b, tag(l, LLVMBuildLoad2(l->b, l->f32, l->bufp[f->result->id], "loss"), f->result->id));
	else if (!is_forward(f))
		LLVMBuildRet(l->b, LLVMConstReal(l->f32, 0));
	else
		LLVMBuildRetVoid(l->b);
	free(l->vars);
	free(l->scope);
	free(l->noalias);
	l->vars = l->scope = l->noalias = NULL;
}

/* ---- data: the buffer table and PREFIX_info ---- */

/* a private constant array, as a pointer to its first element */
static LLVMValueRef private_array(Ll *l, LLVMValueRef init, const char *name)
{
	LLVMValueRef g = LLVMAddGlobal(l->mod, LLVMTypeOf(init), name);
	LLVMSetInitializer(g, init);
	LLVMSetGlobalConstant(g, 1);
	LLVMSetLinkage(g, LLVMPrivateLinkage);
	LLVMSetUnnamedAddress(g, LLVMGlobalUnnamedAddr);
	LLVMValueRef zero[] = { i64c(l, 0), i64c(l, 0) };
	return LLVMConstInBoundsGEP2(LLVMTypeOf(init), g, zero, 2);
}

/* a private constant C string, as i8* */
static LLVMValueRef cstring(Ll *l, const char *s)
{
	if (!s)
		return LLVMConstNull(l->pi8);
	return private_array(l, LLVMConstStringInContext(l->cx, s, (unsigned)strlen(s), 0), ".str");
}

static LLVMValueRef buffer_entry(Ll *l, const LoopBuf *b)
{
	static const int kinds[] = { [LB_PARAM] = NNRT_BUF_PARAM, [LB_STATE] = NNRT_BUF_STATE, [LB_OPT] = NNRT_BUF_OPT,
				     [LB_TEMP] = NNRT_BUF_TEMP, [LB_ARG_X] = NNRT_BUF_ARG_X, [LB_ARG_Y] = NNRT_BUF_ARG_Y,
				     [LB_ARG_OUT] = NNRT_BUF_ARG_OUT };
	static const int inits[] = { [LI_NONE] = NNRT_INIT_NONE, [LI_UNIFORM] = NNRT_INIT_UNIFORM, [LI_CONST] = NNRT_INIT_CONST };
	bool named = b->kind == LB_PARAM || b->kind == LB_STATE || b->kind == LB_OPT;
	LLVMValueRef shape[NNRT_MAX_RANK];
	for (int k = 0; k < NNRT_MAX_RANK; k++)
		shape[k] = i64c(l, k < b->rank ? b->shape[k] : 0);
	LLVMValueRef f[] = {
		cstring(l, named ? b->name : NULL),
		i32c(l, kinds[b->kind]),
		i64c(l, in_arena(b) ? b->elems : 0),
		i32c(l, b->batched),
		i32c(l, inits[b->init]),
		LLVMConstReal(l->f32, (double)(float)b->init_value),
		i32c(l, b->rank),
		LLVMConstArray(l->i64, shape, NNRT_MAX_RANK),
		i64c(l, b->kind == LB_TEMP ? b->plan_ps : 0),
		i64c(l, b->kind == LB_TEMP ? b->plan_fixed : 0),
	};
	return LLVMConstNamedStruct(l->buf_t, f, 10);
}

static void buffer_table(Ll *l)
{
	int n = l->m->nbufs;
	LLVMValueRef *rows = calloc((size_t)n + 1, sizeof *rows);
	if (!rows)
		NNC_BUG("out of memory");
	for (int i = 0; i < n; i++)
		rows[i] = buffer_entry(l, l->m->bufs[i]);
	LLVMValueRef init = LLVMConstArray(l->buf_t, rows, (unsigned)n);
	free(rows);
	l->buffers = LLVMAddGlobal(l->mod, LLVMTypeOf(init), "buffers");
	LLVMSetInitializer(l->buffers, init);
	LLVMSetGlobalConstant(l->buffers, 1);
	LLVMSetLinkage(l->buffers, LLVMInternalLinkage);
}

static LLVMValueRef global_name(Ll *l, const char *suffix, LLVMTypeRef t)
{
	char name[160];
	snprintf(name, sizeof name, "%s_%s", l->o->prefix, suffix);
	return LLVMAddGlobal(l->mod, t, name);
}

static void model_info(Ll *l, LLVMValueRef fwd, LLVMValueRef eval, LLVMValueRef train)
{
	static const int metrics[] = { NNRT_METRIC_NONE, NNRT_METRIC_ACCURACY, NNRT_METRIC_IOU };
	const LoopMeta *mm = &l->m->meta;
	LLVMValueRef shape[] = { i64c(l, mm->in_shape[0]), i64c(l, mm->in_shape[1]), i64c(l, mm->in_shape[2]) };
	LLVMValueRef zero[] = { i64c(l, 0), i64c(l, 0) };
	LLVMValueRef f[] = {
		cstring(l, mm->name),
		i64c(l, mm->in_elems), i32c(l, mm->in_rank), LLVMConstArray(l->i64, shape, 3),
		i64c(l, mm->out_elems),
		i32c(l, mm->class_target ? NNRT_TARGET_CLASS : NNRT_TARGET_FLOAT), i64c(l, mm->target_elems),
		i64c(l, mm->classes),
		i64c(l, mm->batch), i64c(l, mm->epochs), i64c(l, mm->seed),
		LLVMConstReal(l->f64, mm->lr), i32c(l, mm->schedule), i64c(l, mm->step_every), LLVMConstReal(l->f64, mm->step_gamma),
		cstring(l, mm->optimizer), cstring(l, mm->data), cstring(l, mm->test),
		i32c(l, l->m->nbufs), LLVMConstInBoundsGEP2(LLVMGlobalGetValueType(l->buffers), l->buffers, zero, 2),
		fwd ? fwd : LLVMConstNull(ptr(l->fwd_t)),
		eval ? eval : LLVMConstNull(ptr(l->step_t)),
		train ? train : LLVMConstNull(ptr(l->step_t)),
		i32c(l, metrics[mm->metric]),
		i64c(l, l->m->planned ? l->m->temps_ps : 0), i64c(l, l->m->planned ? l->m->temps_fixed : 0),
	};
	LLVMSetInitializer(l->info, LLVMConstNamedStruct(l->info_t, f, sizeof f / sizeof f[0]));
	LLVMSetGlobalConstant(l->info, 1);
}

/* ---- the public API of model.h: thin wrappers, as emit_c.c writes them ---- */

static LLVMValueRef api_fn(Ll *l, const char *suffix, LLVMTypeRef ret, LLVMTypeRef *params, unsigned n)
{
	char name[160];
	snprintf(name, sizeof name, "%s_%s", l->o->prefix, suffix);
	LLVMValueRef fn = LLVMAddFunction(l->mod, name, LLVMFunctionType(ret, params, n, 0));
	add_attr(l, fn, "nounwind");
	LLVMPositionBuilderAtEnd(l->b, LLVMAppendBasicBlockInContext(l->cx, fn, "entry"));
	return fn;
}

/* PREFIX_arena_size and PREFIX_init, over the runtime's */
static void api_setup(Ll *l, LLVMTypeRef mctx)
{
	LLVMValueRef fn = api_fn(l, "arena_size", l->i64, &l->i64, 1);
	LLVMTypeRef sp[] = { ptr(l->info_t), l->i64 };
	LLVMValueRef sa[] = { l->info, LLVMGetParam(fn, 0) };
	LLVMBuildRet(l->b, call(l, declare(l, "nnrt_arena_size", l->i64, sp, 2), sa, 2));

	LLVMTypeRef ip[] = { ptr(mctx), l->pi8, l->i64, l->i64 };
	fn = api_fn(l, "init", l->vd, ip, 4);
	LLVMValueRef c = LLVMGetParam(fn, 0);
	LLVMValueRef zero[] = { i64c(l, 0), i64c(l, 0) };
	LLVMValueRef bufs = LLVMBuildInBoundsGEP2(l->b, LLVMStructGetTypeAtIndex(mctx, 1),
						  LLVMBuildStructGEP2(l->b, mctx, c, 1, ""), zero, 2, "");
	LLVMTypeRef np[] = { l->pctx, ptr(l->info_t), ptr(l->pf32), l->pi8, l->i64, l->i64 };
	LLVMValueRef na[] = { LLVMBuildBitCast(l->b, c, l->pctx, ""), l->info, bufs, LLVMGetParam(fn, 1),
			      LLVMGetParam(fn, 2), LLVMGetParam(fn, 3) };
	call(l, declare(l, "nnrt_init", l->vd, np, 6), na, 6);
	LLVMBuildRetVoid(l->b);
}

/* PREFIX_forward, PREFIX_eval, PREFIX_train_step: the kernels on &ctx->rt */
static void api_kernels(Ll *l, LLVMTypeRef pctx, LLVMValueRef *kernels)
{
	for (int i = 0; i < l->m->nfns; i++) {
		const LoopFn *f = l->m->fns[i];
		bool fw = is_forward(f);
		unsigned np = fw ? 4 : 5;
		LLVMTypeRef kp[] = { pctx, l->i64, l->pf32, fw ? l->pf32 : l->pi8, l->pf32 };
		LLVMValueRef fn = api_fn(l, f->name, fw ? l->vd : l->f32, kp, np);
		LLVMValueRef a[5];
		a[0] = LLVMBuildBitCast(l->b, LLVMGetParam(fn, 0), l->pctx, "");
		for (unsigned k = 1; k < np; k++)
			a[k] = LLVMGetParam(fn, k);
		LLVMValueRef r = call(l, kernels[i], a, np);
		if (fw)
			LLVMBuildRetVoid(l->b);
		else
			LLVMBuildRet(l->b, r);
	}
}

/* PREFIX_set_lr, PREFIX_save, PREFIX_load */
static void api_state(Ll *l, LLVMTypeRef pctx)
{
	LLVMTypeRef lp[] = { pctx, l->f64 };
	LLVMValueRef fn = api_fn(l, "set_lr", l->vd, lp, 2);
	l->ctx = LLVMBuildBitCast(l->b, LLVMGetParam(fn, 0), l->pctx, "");
	LLVMBuildStore(l->b, LLVMGetParam(fn, 1), ctx_field(l, 3));
	LLVMBuildRetVoid(l->b);

	static const char *const io[][2] = { { "save", "nnrt_save_weights" }, { "load", "nnrt_load_weights" } };
	for (int k = 0; k < 2; k++) {
		LLVMTypeRef sp[] = { pctx, l->pi8, l->pi8 }, np[] = { l->pctx, l->pi8, l->pi8 };
		fn = api_fn(l, io[k][0], l->i32, sp, 3);
		LLVMValueRef a[] = { LLVMBuildBitCast(l->b, LLVMGetParam(fn, 0), l->pctx, ""), LLVMGetParam(fn, 1),
				     LLVMGetParam(fn, 2) };
		LLVMBuildRet(l->b, call(l, declare(l, io[k][1], l->i32, np, 3), a, 3));
	}
}

/* model.h's PREFIX_ctx is { NnrtCtx rt; float *bufs[N]; }: &ctx->rt is ctx itself */
static void api(Ll *l, LLVMValueRef *kernels)
{
	LLVMTypeRef fields[] = { l->ctx_t, LLVMArrayType(l->pf32, (unsigned)l->m->nbufs) };
	char name[160];
	snprintf(name, sizeof name, "%s_ctx", l->o->prefix);
	LLVMTypeRef mctx = named_struct(l, name, fields, 2);
	api_setup(l, mctx);
	api_kernels(l, ptr(mctx), kernels);
	api_state(l, ptr(mctx));
}

static void main_fn(Ll *l)
{
	LLVMTypeRef p[] = { l->i32, ptr(l->pi8) };
	LLVMValueRef fn = LLVMAddFunction(l->mod, "main", LLVMFunctionType(l->i32, p, 2, 0));
	LLVMPositionBuilderAtEnd(l->b, LLVMAppendBasicBlockInContext(l->cx, fn, "entry"));
	LLVMTypeRef tp[] = { ptr(l->info_t), l->i32, ptr(l->pi8) };
	LLVMValueRef a[] = { l->info, LLVMGetParam(fn, 0), LLVMGetParam(fn, 1) };
	LLVMBuildRet(l->b, call(l, declare(l, "nnrt_train_main", l->i32, tp, 3), a, 3));
}

/* ---- the module ---- */

/* the kernels, each from its loop function: into kernels[], by function */
static void kernels_of(Ll *l, LLVMValueRef *kernels, LLVMValueRef *fwd, LLVMValueRef *eval, LLVMValueRef *train)
{
	for (int i = 0; i < l->m->nfns; i++) {
		const LoopFn *f = l->m->fns[i];
		kernels[i] = kernel_decl(l, f);
		kernel(l, f, kernels[i]);
		if (is_forward(f))
			*fwd = kernels[i];
		else if (!strcmp(f->name, "eval"))
			*eval = kernels[i];
		else if (!strcmp(f->name, "train_step"))
			*train = kernels[i];
	}
	if (!*fwd)
		NNC_BUG("the loop module has no forward function");
}

static void build(Ll *l)
{
	const char *only = l->o->only;
	runtime_types(l);
	l->bufp = calloc((size_t)l->m->nbufs + 1, sizeof *l->bufp);
	LLVMValueRef *kernels = calloc((size_t)l->m->nfns + 1, sizeof *kernels);
	if (!l->bufp || !kernels)
		NNC_BUG("out of memory");
	if (only && *only) {
		const LoopFn *f = loop_find_fn(l->m, only);
		if (!f)
			NNC_BUG("the loop module has no function '%s'", only);
		LLVMValueRef k = kernel_decl(l, f);
		LLVMSetLinkage(k, LLVMExternalLinkage);
		kernel(l, f, k);
	} else {
		buffer_table(l);
		l->info = global_name(l, "info", l->info_t);
		LLVMValueRef fwd = NULL, eval = NULL, train = NULL;
		if (!only)
			kernels_of(l, kernels, &fwd, &eval, &train);
		model_info(l, fwd, eval, train);
		if (!only)
			api(l, kernels);
		if (!only && l->o->with_main)
			main_fn(l);
	}
	free(kernels);
	free(l->bufp);
	l->bufp = NULL;
}

/*
 * Once per process (the JIT's thread may be the first to ask). One option of
 * LLVM's: a loop of a constant trip count under 16 is vectorized only with
 * its tail folded into masked loads and stores, by default. The convolutions'
 * short rows (lenet's col2im: 10) then add into memory through masked stores
 * that the next loads cannot forward from, and stall; with a scalar epilogue
 * allowed from 4 iterations on, lenet's JIT kernels took 45% less time
 * relative to the GEMM (perf), unet_tiny's 10% less, resnet_mini's the same.
 */
static void init_once(void)
{
	LLVMInitializeNativeTarget();
	LLVMInitializeNativeAsmPrinter();
	const char *const args[] = { "nnc", "-vectorizer-min-trip-count=4" };
	LLVMParseCommandLineOptions(2, args, NULL);
}

static void init_llvm(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, init_once);
}

LLVMTargetMachineRef emitll_host_machine(char *err, size_t errlen)
{
	init_llvm();
	char *triple = LLVMGetDefaultTargetTriple(), *msg = NULL;
	LLVMTargetRef target;
	if (LLVMGetTargetFromTriple(triple, &target, &msg)) {
		snprintf(err, errlen, "LLVM has no target for this machine (%s): %s", triple, msg ? msg : "");
		LLVMDisposeMessage(msg);
		LLVMDisposeMessage(triple);
		return NULL;
	}
	char *cpu = LLVMGetHostCPUName(), *features = LLVMGetHostCPUFeatures();
	LLVMTargetMachineRef tm = LLVMCreateTargetMachine(target, triple, cpu, features, LLVMCodeGenLevelDefault,
							  LLVMRelocPIC, LLVMCodeModelDefault);
	if (!tm)
		snprintf(err, errlen, "LLVM cannot make a target machine for %s (%s)", triple, cpu);
	LLVMDisposeMessage(cpu);
	LLVMDisposeMessage(features);
	LLVMDisposeMessage(triple);
	return tm;
}

static void optimize(LLVMModuleRef mod, LLVMTargetMachineRef tm, int level)
{
	LLVMPassBuilderOptionsRef po = LLVMCreatePassBuilderOptions();
	LLVMPassBuilderOptionsSetLoopVectorization(po, 1);
	LLVMPassBuilderOptionsSetSLPVectorization(po, 1);
	/* unrolling and interleaving would multiply the code (and the JIT's
	 * compile time) by 5 for a few percent: the heavy products are GEMM calls */
	LLVMPassBuilderOptionsSetLoopInterleaving(po, 0);
	LLVMPassBuilderOptionsSetLoopUnrolling(po, 0);
	/* the JIT's: what the kernels' loops need (promoted locals, invariants
	 * hoisted, inner loops vectorized); measured, its lenet trains as fast as
	 * default<O2>'s, and it takes 30-40% of default<O2>'s time. The SLP
	 * vectorizer puts the lanes of the channel sums (lower.c) in vectors;
	 * without it, they stayed scalar and resnet_mini trained 20% slower. */
	static const char lean[] = "function(sroa,early-cse,simplifycfg,instcombine,loop-mssa(licm),loop(loop-rotate),"
				   "loop-mssa(licm),loop(indvars),loop-vectorize<interleave-forced-only>,slp-vectorizer,"
				   "instcombine,simplifycfg)";
	const char *passes = level == 1 ? lean : level >= 3 ? "default<O3>" : "default<O2>";
	LLVMErrorRef e = LLVMRunPasses(mod, passes, tm, po);
	LLVMDisposePassBuilderOptions(po);
	if (e) {
		char *msg = LLVMGetErrorMessage(e);
		char copy[512];
		snprintf(copy, sizeof copy, "%s", msg);
		LLVMDisposeErrorMessage(msg);
		NNC_BUG("LLVM's optimizer failed: %s", copy);
	}
}

/* the CPU and its features on every function defined, as clang puts them:
 * the .ll text then compiles to the same code anywhere (llc) */
static void target_attrs(LLVMModuleRef mod, LLVMTargetMachineRef tm)
{
	char *cpu = LLVMGetTargetMachineCPU(tm), *features = LLVMGetTargetMachineFeatureString(tm);
	for (LLVMValueRef f = LLVMGetFirstFunction(mod); f; f = LLVMGetNextFunction(f))
		if (LLVMCountBasicBlocks(f)) {
			LLVMAddTargetDependentFunctionAttr(f, "target-cpu", cpu);
			LLVMAddTargetDependentFunctionAttr(f, "target-features", features);
		}
	LLVMDisposeMessage(cpu);
	LLVMDisposeMessage(features);
}

LLVMModuleRef emitll_module(LLVMContextRef cx, LLVMTargetMachineRef tm, const LoopModule *m, const EmitllOpts *o)
{
	Ll l = { .cx = cx, .m = m, .o = o };
	l.mod = LLVMModuleCreateWithNameInContext(m->meta.name, cx);
	char *triple = LLVMGetTargetMachineTriple(tm);
	LLVMSetTarget(l.mod, triple);
	LLVMDisposeMessage(triple);
	l.td = LLVMCreateTargetDataLayout(tm);
	LLVMSetModuleDataLayout(l.mod, l.td);
	l.b = LLVMCreateBuilderInContext(cx);
	l.scope_kind = LLVMGetMDKindIDInContext(cx, "alias.scope", 11);
	l.noalias_kind = LLVMGetMDKindIDInContext(cx, "noalias", 7);
	build(&l);
	target_attrs(l.mod, tm);
	LLVMDisposeBuilder(l.b);
	LLVMDisposeTargetData(l.td);
	char *msg = NULL;
	if (LLVMVerifyModule(l.mod, LLVMReturnStatusAction, &msg)) {
		fprintf(stderr, "%s\n", msg ? msg : "");	/* all of it: NNC_BUG shows its start */
		NNC_BUG("the LLVM module of '%s' fails verification: %.400s", m->meta.name, msg ? msg : "");
	}
	LLVMDisposeMessage(msg);
	if (o->opt > 0)
		optimize(l.mod, tm, o->opt);
	return l.mod;
}

int emitll_render(const LoopModule *m, const EmitllOpts *o, EmitllKind kind, char **data, size_t *len, char *err,
		  size_t errlen)
{
	*data = NULL;
	*len = 0;
	LLVMTargetMachineRef tm = emitll_host_machine(err, errlen);
	if (!tm)
		return -1;
	LLVMContextRef cx = LLVMContextCreate();
	LLVMModuleRef mod = emitll_module(cx, tm, m, o);
	int rc = 0;
	if (kind == EMITLL_IR) {
		char *s = LLVMPrintModuleToString(mod);
		*len = strlen(s);
		*data = malloc(*len + 1);
		if (*data)
			memcpy(*data, s, *len + 1);
		LLVMDisposeMessage(s);
	} else {
		char *msg = NULL;
		LLVMMemoryBufferRef buf = NULL;
		if (LLVMTargetMachineEmitToMemoryBuffer(tm, mod, LLVMObjectFile, &msg, &buf)) {
			snprintf(err, errlen, "LLVM cannot write the object file: %s", msg ? msg : "");
			rc = -1;
		} else {
			*len = LLVMGetBufferSize(buf);
			*data = malloc(*len + 1);
			if (*data)
				memcpy(*data, LLVMGetBufferStart(buf), *len);
			LLVMDisposeMemoryBuffer(buf);
		}
		LLVMDisposeMessage(msg);
	}
	if (!rc && !*data) {
		snprintf(err, errlen, "out of memory");
		rc = -1;
	}
	LLVMDisposeModule(mod);
	LLVMContextDispose(cx);
	LLVMDisposeTargetMachine(tm);
	return rc;
}
