/*
 * loop.h: the loop IR. Kernels as loop nests over buffers, typed scalar
 * expressions, and calls into the runtime (GEMM). lower.c writes it, the C
 * and LLVM emitters translate it, loop_interp.c runs it (in double, for the
 * gradient checks). Nothing here knows what a layer is.
 *
 * A module holds buffers and functions. A buffer is a flat array: its
 * elements are `elems` per sample times the batch when `batched`, else
 * `elems`. Functions take the batch size n (n <= the context's maximum) and
 * the argument buffers; every other buffer lives in the context's arena.
 */
#ifndef NNC_LOOP_H
#define NNC_LOOP_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "arena.h"

typedef enum { LT_BOOL, LT_I64, LT_F32, LT_F64 } LoopType;

typedef enum {
	LB_PARAM,	/* a trained parameter: initialized, saved, loaded */
	LB_STATE,	/* model state kept across steps and saved with the weights: running statistics */
	LB_OPT,		/* optimizer state: kept across steps, saved in checkpoints only */
	LB_TEMP,	/* lives during one call */
	LB_ARG_X,	/* the function's input argument (read only) */
	LB_ARG_Y,	/* the function's target argument (read only) */
	LB_ARG_OUT,	/* the function's output argument (written) */
	LB_FOLDED,	/* computed from the weights by the prepare function (lower.c), kept; not saved */
	LB_CONST,	/* values known at compile time (--embed-weights): `data`, not in the arena */
} LoopBufKind;

typedef enum { LI_NONE, LI_UNIFORM, LI_CONST } LoopInit;

typedef struct LoopBuf {
	int id;
	const char *name;	/* parameters: the state_dict key; else a description */
	LoopType type;		/* LT_F32, or LT_I64 for class labels */
	int64_t elems;		/* per sample when batched */
	bool batched;
	LoopBufKind kind;
	int rank;		/* parameters and state: their shape, for weight files */
	int64_t shape[4];
	LoopInit init;		/* how init() fills a parameter or state */
	const float *data;	/* LB_CONST: the elems values; NULL when no function reads them */
	double init_value;	/* the bound of LI_UNIFORM, the value of LI_CONST */
	/* temporaries, set by memplan.c: the offset in floats into the temporaries
	 * region is plan_ps * max_batch + plan_fixed */
	int64_t plan_ps, plan_fixed;
	/* set by memplan.c: 0 when the buffer shares memory with no other; else
	 * 1 + the id of one buffer of the group it may share memory with (the
	 * emitters do not declare such buffers independent of each other) */
	int alias_of;
} LoopBuf;

typedef struct LoopVar {
	int id;
	LoopType type;
	bool is_index;		/* a loop counter (I64) */
} LoopVar;

typedef enum {
	LE_CONST,
	LE_VAR,
	LE_N,		/* the batch size argument, I64 */
	LE_CTX,		/* a scalar of the context, see LoopCtxField */
	LE_LOAD,	/* buf[idx] */
	LE_BIN,
	LE_UN,
	LE_SELECT,	/* cond ? a : b */
	LE_RAND,	/* F32 uniform in [0, 1) from the context's generator */
} LoopExprKind;

typedef enum { LC_LR, LC_STEP } LoopCtxField;	/* F64: the learning rate; the 1-based step count */

typedef enum {
	LO_ADD, LO_SUB, LO_MUL, LO_DIV, LO_MIN, LO_MAX, LO_POW,
	LO_LT, LO_LE, LO_GT, LO_GE, LO_EQ, LO_NE,
	LO_AND, LO_OR,
} LoopBinOp;

typedef enum {
	LO_NEG, LO_EXP, LO_EXPM1, LO_LOG, LO_LOG1P, LO_TANH, LO_SQRT, LO_ABS, LO_ERF,
	LO_CVT,		/* to the expression's type */
} LoopUnOp;

typedef struct LoopExpr LoopExpr;
struct LoopExpr {
	LoopExprKind kind;
	LoopType type;
	double f;		/* LE_CONST of a float type */
	int64_t i;		/* LE_CONST of LT_I64 or LT_BOOL */
	LoopVar *var;
	LoopCtxField field;
	LoopBuf *buf;
	int op;
	LoopExpr *a, *b, *c;	/* operands; LE_LOAD: a is the index */
};

typedef enum { LS_FOR, LS_STORE, LS_SET, LS_GEMM } LoopStmtKind;

typedef struct LoopStmt LoopStmt;

/*
 * An implicit column matrix: B of a GEMM as the im2col of one image (c planes
 * of h x w at b + boff), never stored. Row (ci, ky, kx), column (oy, ox) is the
 * pixel at (oy sh - ph + ky dh, ox sw - pw + kx dw), 0 outside the image: c kh
 * kw rows (k, or n when tb) of oh ow. The fields go to nnrt_sgemm_conv in this
 * order.
 */
typedef struct LoopConv {
	int64_t c, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow;
} LoopConv;

enum { LOOP_CONV_FIELDS = 13 };

typedef struct LoopGemm {
	int ta, tb;
	const LoopConv *conv;	/* non-NULL: B is this image's implicit column matrix (ta 0; ldb unused) */
	/* with conv, instead: C is the image (conv's c planes of h x w at c + coff) and op(A) B
	 * (B not transposed, ldb apart) the column matrix, which adds into it: C = beta C +
	 * alpha col2im(op(A) B), m = c kh kw, n = oh ow; ldc unused (nnrt_sgemm_col2im) */
	bool col2im;
	LoopExpr *m, *n, *k;
	double alpha, beta;
	LoopBuf *a, *b, *c;
	LoopExpr *aoff, *boff, *coff;	/* element offsets into the buffers */
	LoopExpr *lda, *ldb, *ldc;
} LoopGemm;

struct LoopStmt {
	LoopStmtKind kind;
	LoopStmt *next;
	LoopVar *var;		/* FOR: the counter; SET: the local */
	LoopExpr *lo, *hi;	/* FOR: lo <= var < hi */
	LoopStmt *body;		/* FOR */
	bool parallel;		/* FOR: iterations are independent */
	LoopBuf *buf;		/* STORE */
	LoopExpr *idx, *val;	/* STORE, SET */
	LoopGemm *gemm;
};

enum { LOOP_MAX_NEST = 16 };

typedef struct LoopFn {
	Arena *arena;		/* the module's */
	const char *name;	/* "forward", "eval", "train_step" */
	LoopStmt *body;
	LoopStmt **tail;	/* where the next statement goes */
	LoopStmt **stack[LOOP_MAX_NEST];	/* tails of the enclosing bodies */
	int depth;
	LoopVar **vars;
	int nvars, capvars;
	LoopBuf *result;	/* a scalar buffer whose value the function returns, or NULL */
	bool counts_step;	/* adds 1 to the context's step count on entry (training) */
	int kernels;		/* top-level loop nests and calls: one per kernel */
} LoopFn;

/* what the emitters need to know about the model around the functions */
typedef struct LoopMeta {
	const char *name;		/* the model's */
	const char *source;		/* the .nn file */
	int64_t in_elems;		/* per sample */
	int in_rank;
	int64_t in_shape[3];
	int64_t out_elems;		/* the first output's, per sample; 0 without outputs */
	const char *out_name;
	bool class_target;		/* labels (int64) rather than floats */
	int64_t target_elems, classes;
	/* the train section's settings, the defaults of the generated program */
	int64_t batch, epochs, seed;
	double lr;
	int schedule;			/* 0 constant, 1 step, 2 cosine */
	int64_t step_every;
	double step_gamma;
	const char *data, *test;
	const char *optimizer;		/* for messages: "adam(lr=0.001, ...)" */
	int metric;			/* 0 none, 1 accuracy, 2 IoU (nnrt.h's NNRT_METRIC_*) */
	const char *embedded;		/* --embed-weights: the file the LB_CONST weights came from; else NULL */
} LoopMeta;

typedef struct LoopModule {
	LoopMeta meta;
	Arena *arena;
	LoopBuf **bufs;
	int nbufs, capbufs;
	LoopFn **fns;
	int nfns, capfns;
	/* memplan.c: the temporaries region is temps_ps * max_batch + temps_fixed floats */
	bool planned;
	int64_t temps_ps, temps_fixed;
} LoopModule;

LoopModule *loop_new_module(Arena *a);
LoopBuf *loop_new_buf(LoopModule *m, const char *name, LoopType t, int64_t elems, bool batched, LoopBufKind k);
LoopBuf *loop_find_buf(const LoopModule *m, const char *name);
LoopFn *loop_new_fn(LoopModule *m, const char *name);
LoopFn *loop_find_fn(const LoopModule *m, const char *name);

/* statements, appended to the innermost open loop (or the function) */
LoopVar *loop_for(LoopFn *f, LoopExpr *lo, LoopExpr *hi);
LoopVar *loop_for_n(LoopFn *f, int64_t hi);	/* 0 <= i < hi */
void loop_parallel(LoopFn *f);			/* marks the innermost open loop */
void loop_end(LoopFn *f);
void loop_store(LoopFn *f, LoopBuf *b, LoopExpr *idx, LoopExpr *v);
LoopVar *loop_local(LoopFn *f, LoopType t, LoopExpr *init);
void loop_set(LoopFn *f, LoopVar *v, LoopExpr *val);
void loop_gemm(LoopFn *f, const LoopGemm *g);
/* c's fields in nnrt_sgemm_conv's order */
void loop_conv_fields(const LoopConv *c, int64_t out[LOOP_CONV_FIELDS]);

/* expressions */
LoopExpr *loop_f32(LoopFn *f, double v);
LoopExpr *loop_f64(LoopFn *f, double v);
LoopExpr *loop_i64(LoopFn *f, int64_t v);
LoopExpr *loop_var(LoopFn *f, LoopVar *v);
LoopExpr *loop_n(LoopFn *f);
LoopExpr *loop_ctx(LoopFn *f, LoopCtxField field);
LoopExpr *loop_load(LoopFn *f, LoopBuf *b, LoopExpr *idx);
/* converts the narrower operand (I64 < F32 < F64) so both have one type */
LoopExpr *loop_bin(LoopFn *f, LoopBinOp op, LoopExpr *a, LoopExpr *b);
LoopExpr *loop_un(LoopFn *f, LoopUnOp op, LoopExpr *a);
LoopExpr *loop_cvt(LoopFn *f, LoopType t, LoopExpr *a);
LoopExpr *loop_select(LoopFn *f, LoopExpr *c, LoopExpr *a, LoopExpr *b);
LoopExpr *loop_rand(LoopFn *f);

/* shorthands */
LoopExpr *loop_add(LoopFn *f, LoopExpr *a, LoopExpr *b);
LoopExpr *loop_sub(LoopFn *f, LoopExpr *a, LoopExpr *b);
LoopExpr *loop_mul(LoopFn *f, LoopExpr *a, LoopExpr *b);
LoopExpr *loop_div(LoopFn *f, LoopExpr *a, LoopExpr *b);
LoopExpr *loop_max(LoopFn *f, LoopExpr *a, LoopExpr *b);

/* Can x be evaluated although C would skip it (the right operand of && or
 * ||, an arm of ?:), once `done` has been evaluated? Not if it draws a
 * random number, divides integers by what may be 0, or loads an element
 * that `done` did not load already (it might lie outside the buffer: a
 * padded convolution guards its loads so). */
bool loop_speculable(const LoopExpr *x, const LoopExpr *done);

/* marks used[b->id] for every buffer the statements (and their nested bodies) read or write */
void loop_bufs_used(const LoopStmt *s, bool *used);

/* ---- parallel loops: the ones both emitters outline (loop_par.c) ----
 * An outermost parallel loop worth threads becomes a function of a chunk
 * [begin, end) of its iterations, run by the runtime's
 * nnrt_parallel_for_grain; what its body reads from outside (buffers, n, the
 * context, enclosing counters, earlier locals) travels in a struct. A loop
 * stays serial when it draws random numbers (the draws keep their serial
 * order), when a local it sets is used outside it, or when its work is known
 * at compile time to be under one grain; parallel loops inside an outlined
 * body run serially in it. */
enum { LOOP_GRAIN = 1 << 20 };	/* nnrt.h's NNRT_GRAIN: work (~operations) below which a chunk is not worth a thread */

typedef struct LoopPar {
	const LoopStmt *loop;
	bool *bufs;		/* by buffer id: used inside */
	bool *captured;		/* by variable id: read inside, set outside */
	bool *locals;		/* by variable id: locals set inside (declared by the outlined body) */
	bool uses_n, uses_ctx;
	int64_t work;		/* estimated work of one iteration, for the runtime's grain */
} LoopPar;

typedef struct LoopPars {
	LoopPar *par;		/* in the order the statements come */
	int npar;
	bool *outer_locals;	/* by variable id: locals used outside the outlined loops */
} LoopPars;

LoopPars loop_pars(const LoopModule *m, const LoopFn *f);
/* s's outline (its index K in p->par), or -1 when s is not outlined */
int loop_par_index(const LoopPars *p, const LoopStmt *s);

const char *loop_type_name(LoopType t);
void loop_print(FILE *out, const LoopModule *m);

#endif
