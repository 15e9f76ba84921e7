/*
 * elab.c: AST -> graph IR, one graph per model. Reads the AST only; writes
 * IR nodes with attributes and names, not shapes (shape.c infers those).
 *
 * Values: an expression evaluates to a number, string, boolean, list or
 * tensor (an IR node). A failed evaluation yields V_NONE, which every later
 * use accepts silently, so one mistake gives one message.
 *
 * Scopes: a model's statements bind names in its scope; a block instance gets
 * a fresh scope holding only its parameters (blocks are lexically closed).
 * `repeat` runs its body in the enclosing scope, so rebindings persist.
 *
 * Naming: every layer gets `prefix + kind + counter` (dense1, conv2, bn1,
 * relu3) or `prefix + name=`; the prefix is the chain of block instances
 * (`bottleneck2.`), with a counter per block name in the calling scope.
 *
 * Limits: unrolling is bounded (layers, statements run, nesting of blocks and
 * of expressions through blocks), so no input makes elaboration run for
 * hours or overflow the C stack; the first limit hit is reported once and
 * elaboration stops. An error in a block's body gets a note at the use that
 * expanded it, since the arguments may be what is wrong.
 */
#include "elab.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* MAX_LAYERS counts layers and operators; MAX_STEPS the statements run after
 * unrolling, so nested repeats and blocks that fan out cannot run for hours */
enum { MAX_BLOCK_NEST = 32, MAX_REPEAT = 100000, MAX_LAYERS = 1000000, MAX_STEPS = 5000000, MAX_EVAL_DEPTH = 1000 };
#define MAX_DIM 2147483647.0

typedef enum { V_NONE, V_NUM, V_STR, V_BOOL, V_LIST, V_TENSOR } VKind;

typedef struct Value Value;
struct Value {
	VKind k;
	double num;
	int is_int;
	const char *str;
	int b;
	Value *items;
	int n;
	IrNode *t;
	SrcLoc loc;
};

typedef struct Binding {
	const char *name;
	Value v;
	SrcLoc loc;
} Binding;

typedef struct Counter {
	const char *kind;
	int n;
} Counter;

typedef struct Scope {
	Binding *b;
	int n, cap;
	Counter *c;
	int nc, capc;
	const char *prefix;	/* "" or "bottleneck2." */
	bool in_block;
	const Value *ret;	/* set by `return` */
	SrcLoc ret_loc;
} Scope;

typedef struct Elab {
	Arena *arena;
	const AstFile *file;
	IrGraph *g;
	const AstItem *stack[MAX_BLOCK_NEST + 1];	/* blocks being expanded */
	SrcLoc stack_call[MAX_BLOCK_NEST + 1];
	int nstack;
	/* layer names used in the current model: open addressing on the string */
	const char **names;
	SrcLoc *name_locs;
	int nnames, capnames;
	int nlayers;
	long steps;
	bool too_many;		/* a limit was hit: reported once, then elaboration stops */
	int noted;		/* diag_errors() when a block call was last noted */
	int depth;		/* of eval() calls, across block expansions */
	struct Args *spare;	/* Args are big (64 tensors): reused, not one per call */
} Elab;

/* ---- argument signatures of the built-in layers ---- */

typedef enum { A_INT, A_PAIR, A_PAD, A_NUM, A_BOOL, A_STR } ArgKind;

typedef struct ArgSpec {
	const char *name;
	ArgKind kind;
	const char *def;	/* default as written in LANGUAGE.md; NULL: required */
	double lo, hi;		/* allowed range for numbers */
} ArgSpec;

enum { MAX_ARGS = 8 };

typedef struct Builtin {
	const char *name;
	IrOp op;
	int ntensors;		/* tensor inputs; -1: one or more (concat) */
	const char *kind;	/* naming counter: dense, conv, deconv, bn, or the name */
	ArgSpec args[MAX_ARGS];
} Builtin;

#define NAME_ARG { "name", A_STR, "", 0, 0 }
#define BIG MAX_DIM

static const Builtin builtins[] = {
	{ "dense", IR_DENSE, 1, "dense",
	  { { "units", A_INT, NULL, 1, BIG }, { "bias", A_BOOL, "true", 0, 0 }, NAME_ARG } },
	{ "conv2d", IR_CONV2D, 1, "conv",
	  { { "filters", A_INT, NULL, 1, BIG }, { "kernel", A_PAIR, NULL, 1, BIG },
	    { "stride", A_PAIR, "1", 1, BIG }, { "pad", A_PAD, "0", 0, BIG },
	    { "dilation", A_PAIR, "1", 1, BIG }, { "groups", A_INT, "1", 1, BIG },
	    { "bias", A_BOOL, "true", 0, 0 }, NAME_ARG } },
	{ "conv_transpose2d", IR_CONV_T2D, 1, "deconv",
	  { { "filters", A_INT, NULL, 1, BIG }, { "kernel", A_PAIR, NULL, 1, BIG },
	    { "stride", A_PAIR, "1", 1, BIG }, { "pad", A_PAIR, "0", 0, BIG },
	    { "output_pad", A_PAIR, "0", 0, BIG }, { "bias", A_BOOL, "true", 0, 0 }, NAME_ARG } },
	{ "maxpool", IR_MAXPOOL, 1, "maxpool",
	  { { "kernel", A_PAIR, NULL, 1, BIG }, { "stride", A_PAIR, "kernel", 1, BIG },
	    { "pad", A_PAIR, "0", 0, BIG }, NAME_ARG } },
	{ "avgpool", IR_AVGPOOL, 1, "avgpool",
	  { { "kernel", A_PAIR, NULL, 1, BIG }, { "stride", A_PAIR, "kernel", 1, BIG },
	    { "pad", A_PAIR, "0", 0, BIG }, NAME_ARG } },
	{ "global_avgpool", IR_GLOBAL_AVGPOOL, 1, "global_avgpool", { NAME_ARG } },
	{ "batchnorm", IR_BATCHNORM, 1, "bn",
	  { { "momentum", A_NUM, "0.1", 0, 1 }, { "eps", A_NUM, "1e-5", 1e-30, 1 }, NAME_ARG } },
	{ "dropout", IR_DROPOUT, 1, "dropout", { { "p", A_NUM, "0.5", 0, 0.999999 }, NAME_ARG } },
	{ "flatten", IR_FLATTEN, 1, "flatten", { NAME_ARG } },
	{ "upsample", IR_UPSAMPLE, 1, "upsample",
	  { { "scale", A_PAIR, "2", 1, 4096 }, { "mode", A_STR, "nearest", 0, 0 }, NAME_ARG } },
	{ "concat", IR_CONCAT, -1, "concat", { NAME_ARG } },
	{ "relu", IR_RELU, 1, "relu", { NAME_ARG } },
	{ "leaky_relu", IR_LEAKY_RELU, 1, "leaky_relu", { { "slope", A_NUM, "0.01", -1e30, 1e30 }, NAME_ARG } },
	{ "elu", IR_ELU, 1, "elu", { { "alpha", A_NUM, "1.0", -1e30, 1e30 }, NAME_ARG } },
	{ "sigmoid", IR_SIGMOID, 1, "sigmoid", { NAME_ARG } },
	{ "tanh", IR_TANH, 1, "tanh", { NAME_ARG } },
	{ "softplus", IR_SOFTPLUS, 1, "softplus", { NAME_ARG } },
	{ "gelu", IR_GELU, 1, "gelu", { NAME_ARG } },
	{ "softmax", IR_SOFTMAX, 1, "softmax", { NAME_ARG } },
	{ "log_softmax", IR_LOG_SOFTMAX, 1, "log_softmax", { NAME_ARG } },
	{ "cross_entropy", IR_CROSS_ENTROPY, 2, "cross_entropy", { NAME_ARG } },
	{ "bce", IR_BCE, 2, "bce", { NAME_ARG } },
	{ "mse", IR_MSE, 2, "mse", { NAME_ARG } },
	{ "mae", IR_MAE, 2, "mae", { NAME_ARG } },
	{ "rmse", IR_RMSE, 2, "rmse", { NAME_ARG } },
};
enum { NBUILTINS = sizeof builtins / sizeof builtins[0] };

static const Builtin *find_builtin(const char *name)
{
	for (int i = 0; i < NBUILTINS; i++)
		if (!strcmp(builtins[i].name, name))
			return &builtins[i];
	return NULL;
}

static int nspecs(const Builtin *b)
{
	int n = 0;
	while (n < MAX_ARGS && b->args[n].name)
		n++;
	return n;
}

/* ---- values ---- */

static Value none(SrcLoc loc)
{
	return (Value){ .k = V_NONE, .loc = loc };
}

static Value tensor(IrNode *t, SrcLoc loc)
{
	return (Value){ .k = V_TENSOR, .t = t, .loc = loc };
}

static const char *vkind(const Value *v)
{
	switch (v->k) {
	case V_NUM: return v->is_int ? "a whole number" : "a number";
	case V_STR: return "a string";
	case V_BOOL: return "a boolean";
	case V_LIST: return "a list";
	case V_TENSOR: return "a tensor";
	case V_NONE: break;
	}
	return "nothing";
}

/* a number for a message: whole numbers in full up to 1e15, else short */
static const char *num_str(double v)
{
	static char buf[4][48];
	static int k;
	char *b = buf[k++ & 3];
	if (v > -1e15 && v < 1e15 && v == (double)(int64_t)v)
		snprintf(b, sizeof buf[0], "%" PRId64, (int64_t)v);
	else
		snprintf(b, sizeof buf[0], "%g", v);
	return b;
}

/* what a message says it got: "2.5", "the string \"ten\"", "a list of 3", "a tensor" */
static const char *got(const Value *v)
{
	static char buf[4][96];
	static int k;
	char *b = buf[k++ & 3];
	switch (v->k) {
	case V_NUM: return num_str(v->num);
	case V_STR: snprintf(b, sizeof buf[0], "the string \"%.40s%s\"", v->str, strlen(v->str) > 40 ? "..." : ""); return b;
	case V_BOOL: return v->b ? "true" : "false";
	case V_LIST: snprintf(b, sizeof buf[0], "a list of %d", v->n); return b;
	default: return vkind(v);
	}
}

/* ---- scopes ---- */

static Binding *lookup(Scope *s, const char *name)
{
	for (int i = s->n - 1; i >= 0; i--)
		if (!strcmp(s->b[i].name, name))
			return &s->b[i];
	return NULL;
}

static void bind(Elab *e, Scope *s, const char *name, Value v, SrcLoc loc)
{
	Binding *b = lookup(s, name);
	if (!b) {
		if (s->n == s->cap) {
			int cap = s->cap ? s->cap * 2 : 4;
			s->b = arena_grow(e->arena, s->b, (size_t)s->n, (size_t)cap, sizeof *s->b);
			s->cap = cap;
		}
		b = &s->b[s->n++];
		b->name = name;
	}
	b->v = v;
	b->loc = loc;
}

static int count(Elab *e, Scope *s, const char *kind)
{
	for (int i = 0; i < s->nc; i++)
		if (!strcmp(s->c[i].kind, kind))
			return ++s->c[i].n;
	if (s->nc == s->capc) {
		int cap = s->capc ? s->capc * 2 : 8;
		s->c = arena_grow(e->arena, s->c, (size_t)s->nc, (size_t)cap, sizeof *s->c);
		s->capc = cap;
	}
	s->c[s->nc++] = (Counter){ kind, 1 };
	return 1;
}

static const char *closest_name(Scope *s, const char *word)
{
	const char *cands[256];
	int n = 0;
	for (int i = s->n - 1; i >= 0 && n < 256; i--)
		cands[n++] = s->b[i].name;
	return diag_closest(word, cands, n);
}

/* ---- layer names: unique per model ---- */

static uint64_t hash(const char *s)
{
	uint64_t h = 1469598103934665603u;
	while (*s)
		h = (h ^ (unsigned char)*s++) * 1099511628211u;
	return h;
}

/* index of name in the table, or of the empty slot where it would go */
static int name_slot(Elab *e, const char *name)
{
	int mask = e->capnames - 1;
	int i = (int)(hash(name) & (uint64_t)mask);
	while (e->names[i] && strcmp(e->names[i], name))
		i = (i + 1) & mask;
	return i;
}

static void names_grow(Elab *e)
{
	const char **old = e->names;
	SrcLoc *oldl = e->name_locs;
	int oldcap = e->capnames;
	e->capnames = oldcap ? oldcap * 2 : 256;
	e->names = arena_alloc(e->arena, sizeof(char *) * (size_t)e->capnames);
	e->name_locs = arena_alloc(e->arena, sizeof(SrcLoc) * (size_t)e->capnames);
	for (int i = 0; i < oldcap; i++)
		if (old[i]) {
			int k = name_slot(e, old[i]);
			e->names[k] = old[i];
			e->name_locs[k] = oldl[i];
		}
}

/* false when the name was taken: the error is reported here */
static bool claim_name(Elab *e, const char *name, SrcLoc loc)
{
	if (2 * (e->nnames + 1) > e->capnames)
		names_grow(e);
	int k = name_slot(e, name);
	if (e->names[k]) {
		diag_error(loc, "the layer name '%s' is already used in this model", name);
		diag_note(e->name_locs[k], "'%s' is named here", name);
		return false;
	}
	e->names[k] = name;
	e->name_locs[k] = loc;
	e->nnames++;
	return true;
}

/* ---- limits ---- */

/* false once the model is past MAX_LAYERS layers and operators */
static bool layer_budget(Elab *e, SrcLoc loc)
{
	if (e->too_many)
		return false;
	if (++e->nlayers <= MAX_LAYERS)
		return true;
	diag_error(loc, "this model has more than %d layers and operators", MAX_LAYERS);
	diag_hint("lower the repeat counts, or look for blocks that call each other many times");
	e->too_many = true;
	return false;
}

/* false once the model has run MAX_STEPS statements, repeats and blocks unrolled */
static bool step_budget(Elab *e, SrcLoc loc)
{
	if (e->too_many)
		return false;
	if (++e->steps <= MAX_STEPS)
		return true;
	diag_error(loc, "this model has more than %d statements once repeats and blocks are unrolled", MAX_STEPS);
	diag_hint("lower the repeat counts, or look for blocks that call each other many times");
	e->too_many = true;
	return false;
}

/* ---- expressions ---- */

static Value eval(Elab *e, Scope *s, const AstExpr *x);
static Value eval_expr(Elab *e, Scope *s, const AstExpr *x);
static Value apply(Elab *e, Scope *s, const AstExpr *call, Value *piped);

static Value eval_ident(Elab *e, Scope *s, const AstExpr *x)
{
	Binding *b = lookup(s, x->str);
	if (b)
		return b->v;
	const Builtin *bi = find_builtin(x->str);
	if (bi) {
		/* `relu` alone where a value is expected */
		diag_error(x->loc, "'%s' is a layer, not a value", x->str);
		diag_hint("apply it to a tensor: 'h -> %s' or '%s(h)'", x->str, x->str);
		return none(x->loc);
	}
	(void)e;
	diag_error(x->loc, "unknown name '%s'", x->str);
	const char *near = closest_name(s, x->str);
	if (near)
		diag_hint("did you mean '%s'?", near);
	else if (s->in_block)
		diag_hint("a block sees only its parameters and the names it binds itself");
	else
		diag_hint("bind it first: '%s = ...', or declare it with 'input %s: [...]'", x->str, x->str);
	return none(x->loc);
}

static Value arith(const AstExpr *x, Value a, Value b)
{
	Value r = { .k = V_NUM, .loc = x->loc, .is_int = a.is_int && b.is_int };
	switch (x->op) {
	case '+': r.num = a.num + b.num; break;
	case '-': r.num = a.num - b.num; break;
	case '*': r.num = a.num * b.num; break;
	default:
		if (b.num == 0) {
			diag_error(x->loc, "division by zero");
			return none(x->loc);
		}
		r.num = a.num / b.num;
		r.is_int = r.is_int && fmod(a.num, b.num) == 0;
		break;
	}
	if (!isfinite(r.num)) {
		diag_error(x->loc, "this arithmetic overflows");
		return none(x->loc);
	}
	return r;
}

static IrNode *node(Elab *e, IrOp op, int nin, IrNode *const *in, SrcLoc loc)
{
	return ir_new_node(e->g, op, nin, in, loc);
}

/* names the operator nodes (add1, mul2) so summaries can show them */
static IrNode *op_node(Elab *e, Scope *s, IrOp op, int nin, IrNode *const *in, SrcLoc loc)
{
	IrNode *n = node(e, op, nin, in, loc);
	const char *kind = ir_op_name(op);
	n->layer = arena_printf(e->arena, "%s%s%d", s->prefix, kind, count(e, s, kind));
	return n;
}

static Value eval_binop(Elab *e, Scope *s, const AstExpr *x)
{
	Value a = eval(e, s, x->lhs), b = eval(e, s, x->rhs);
	if (a.k == V_NONE || b.k == V_NONE)
		return none(x->loc);
	if (a.k == V_NUM && b.k == V_NUM)
		return arith(x, a, b);
	if (((a.k == V_TENSOR && b.k != V_STR) || (b.k == V_TENSOR && a.k != V_STR)) && !layer_budget(e, x->loc))
		return none(x->loc);
	if (a.k == V_TENSOR && b.k == V_TENSOR && (x->op == '+' || x->op == '*')) {
		IrNode *in[2] = { a.t, b.t };
		return tensor(op_node(e, s, x->op == '+' ? IR_ADD : IR_MUL, 2, in, x->loc), x->loc);
	}
	if (x->op == '*' && (a.k == V_NUM || b.k == V_NUM) && (a.k == V_TENSOR || b.k == V_TENSOR)) {
		Value *num = a.k == V_NUM ? &a : &b, *t = a.k == V_TENSOR ? &a : &b;
		IrNode *n = op_node(e, s, IR_SCALE, 1, &t->t, x->loc);
		n->a.scale = num->num;
		return tensor(n, x->loc);
	}
	if (a.k == V_TENSOR && b.k == V_TENSOR) {
		diag_error(x->loc, "tensors combine with '+' and '*' only, not '%c'", x->op);
		if (x->op == '-')
			diag_hint("write 'a + -1 * b'");
		return none(x->loc);
	}
	diag_error(x->loc, "cannot apply '%c' to %s and %s", x->op, vkind(&a), vkind(&b));
	if ((a.k == V_TENSOR || b.k == V_TENSOR) && (a.k == V_NUM || b.k == V_NUM))
		diag_hint("a number can only scale a tensor: 'number * tensor'");
	return none(x->loc);
}

/*
 * Nesting is bounded per expression by the parser, but blocks nest it further:
 * a block's return nested 200 deep that calls a block nested 200 deep...
 * MAX_EVAL_DEPTH bounds the whole, so the C stack cannot overflow.
 */
static Value eval(Elab *e, Scope *s, const AstExpr *x)
{
	if (e->depth >= MAX_EVAL_DEPTH) {
		if (!e->too_many) {
			diag_error(x->loc, "expressions are nested more than %d levels deep once blocks are expanded",
				   MAX_EVAL_DEPTH);
			diag_hint("split deep expressions into several statements with names");
		}
		e->too_many = true;
		return none(x->loc);
	}
	e->depth++;
	Value v = eval_expr(e, s, x);
	e->depth--;
	return v;
}

static Value eval_expr(Elab *e, Scope *s, const AstExpr *x)
{
	Value v = { .loc = x->loc };
	switch (x->kind) {
	case AST_NUM:
		v.k = V_NUM;
		v.num = x->num;
		v.is_int = x->is_int;
		return v;
	case AST_STR:
		v.k = V_STR;
		v.str = x->str;
		return v;
	case AST_BOOL:
		v.k = V_BOOL;
		v.b = x->b;
		return v;
	case AST_IDENT:
		return eval_ident(e, s, x);
	case AST_LIST:
		v.k = V_LIST;
		v.n = x->nitems;
		v.items = arena_alloc(e->arena, sizeof(Value) * (size_t)(x->nitems ? x->nitems : 1));
		for (int i = 0; i < x->nitems; i++) {
			v.items[i] = eval(e, s, x->items[i]);
			if (v.items[i].k == V_NONE)
				return none(x->loc);
		}
		return v;
	case AST_NEG:
		v = eval(e, s, x->lhs);
		if (v.k == V_NUM) {
			v.num = -v.num;
			v.loc = x->loc;
			return v;
		}
		if (v.k != V_NONE) {
			diag_error(x->loc, "cannot negate %s", vkind(&v));
			if (v.k == V_TENSOR)
				diag_hint("write '-1 * x'");
		}
		return none(x->loc);
	case AST_BINOP:
		return eval_binop(e, s, x);
	case AST_CALL: {
		/* a chain a -> f -> g is g(piped=f(piped=a)): walk it without recursion */
		int n = 0;
		const AstExpr *c = x;
		for (; c->kind == AST_CALL && c->piped; c = c->piped)
			n++;
		const AstExpr **calls = arena_alloc(e->arena, sizeof(*calls) * (size_t)(n + 1));
		int k = 0;
		for (const AstExpr *d = x; d != c; d = d->piped)
			calls[k++] = d;
		v = c->kind == AST_CALL ? apply(e, s, c, NULL) : eval(e, s, c);
		for (int i = n - 1; i >= 0; i--) {
			if (v.k == V_NONE)
				return v;
			v = apply(e, s, calls[i], &v);
		}
		return v;
	}
	}
	return none(x->loc);
}

/* ---- checking arguments against a signature ---- */

static bool numeric_str(const Value *v)
{
	if (v->k != V_STR || !v->str[0] || strlen(v->str) > 40)
		return false;
	char *end;
	strtod(v->str, &end);
	return !*end;
}

/* 3.0 or 1e2 where a whole number is wanted: the value is right, the spelling is not */
static void hint_whole(const Value *v)
{
	if (v->k == V_NUM && v->num > -1e15 && v->num < 1e15 && v->num == (double)(int64_t)v->num)
		diag_hint("write it without a '.' or an exponent: %s", num_str(v->num));
}

/* kernel="3": the value is right but quoted */
static void hint_quoted_number(const Value *v)
{
	if (numeric_str(v))
		diag_hint("remove the quotes: %s", v->str);
}

static bool want_int(const Value *v, const char *what, const char *layer, double lo, double hi, int *out)
{
	if (v->k != V_NUM || !v->is_int) {
		diag_error(v->loc, "%s of %s must be a whole number, but got %s", what, layer, got(v));
		hint_whole(v);
		hint_quoted_number(v);
		return false;
	}
	if (v->num < lo || v->num > hi) {
		diag_error(v->loc, "%s of %s must be between %s and %s, but got %s", what, layer, num_str(lo), num_str(hi),
			   num_str(v->num));
		return false;
	}
	*out = (int)v->num;
	return true;
}

/* an int, or a list of two ints (height, width) */
static bool want_pair(const Value *v, const char *what, const char *layer, double lo, double hi, int out[2])
{
	if (v->k == V_LIST) {
		if (v->n != 2) {
			diag_error(v->loc, "%s of %s takes one number or a list of two (height, width), but the list has %d",
				   what, layer, v->n);
			return false;
		}
		return want_int(&v->items[0], what, layer, lo, hi, &out[0]) &&
		       want_int(&v->items[1], what, layer, lo, hi, &out[1]);
	}
	if (v->k == V_NUM && v->is_int) {
		if (!want_int(v, what, layer, lo, hi, &out[0]))
			return false;
		out[1] = out[0];
		return true;
	}
	diag_error(v->loc, "%s of %s must be a whole number or a list of two, but got %s", what, layer, got(v));
	hint_whole(v);
	hint_quoted_number(v);
	return false;
}

static bool want_num(const Value *v, const char *what, const char *layer, double lo, double hi, double *out)
{
	if (v->k != V_NUM) {
		diag_error(v->loc, "%s of %s must be a number, but got %s", what, layer, got(v));
		hint_quoted_number(v);
		return false;
	}
	if (v->num < lo || v->num > hi) {
		if (hi < 1)
			diag_error(v->loc, "%s of %s must be at least %g and below 1, but got %g", what, layer, lo, v->num);
		else
			diag_error(v->loc, "%s of %s must be between %g and %g, but got %g", what, layer, lo, hi, v->num);
		return false;
	}
	*out = v->num;
	return true;
}

static bool want_bool(const Value *v, const char *what, const char *layer, int *out)
{
	if (v->k != V_BOOL) {
		diag_error(v->loc, "%s of %s must be true or false, but got %s", what, layer, got(v));
		if (v->k == V_NUM && (v->num == 0 || v->num == 1))
			diag_hint("write %s=%s", what, v->num ? "true" : "false");
		else if (v->k == V_STR && (!strcmp(v->str, "true") || !strcmp(v->str, "false")))
			diag_hint("remove the quotes: %s=%s", what, v->str);
		return false;
	}
	*out = v->b;
	return true;
}

static bool want_str(const Value *v, const char *what, const char *layer, const char **out)
{
	if (v->k != V_STR) {
		diag_error(v->loc, "%s of %s must be a string in double quotes, but got %s", what, layer, got(v));
		return false;
	}
	*out = v->str;
	return true;
}

/* a default as LANGUAGE.md writes it, turned into a value */
static Value default_value(const ArgSpec *a, SrcLoc loc)
{
	Value v = { .loc = loc };
	if (!strcmp(a->def, "true") || !strcmp(a->def, "false")) {
		v.k = V_BOOL;
		v.b = a->def[0] == 't';
	} else if (a->kind == A_STR) {
		v.k = V_STR;
		v.str = a->def;
	} else {
		v.k = V_NUM;
		v.num = strtod(a->def, NULL);
		v.is_int = !strpbrk(a->def, ".e");
	}
	return v;
}

typedef struct Args {
	Value tensors[64];
	int ntensors;
	Value vals[MAX_ARGS];
	bool given[MAX_ARGS];
	bool ok;
	struct Args *next;	/* on Elab's list of spares */
} Args;

static void usage_hint(const Builtin *b)
{
	char buf[256];
	size_t k = 0;
	for (int i = 0; i < nspecs(b) && k < sizeof buf; i++)
		k += (size_t)snprintf(buf + k, sizeof buf - k, "%s%s%s%s", i ? ", " : "", b->args[i].name,
				      b->args[i].def ? "=" : "",
				      b->args[i].def ? (b->args[i].def[0] ? b->args[i].def : "\"\"") : "");
	diag_hint("%s takes %s%s%s", b->name,
		  b->ntensors == 2 ? "two tensors" : b->ntensors < 0 ? "tensors" : "a tensor",
		  k ? ", then " : "", buf);
}

static Args *args_take(Elab *e)
{
	Args *r = e->spare;
	if (r)
		e->spare = r->next;
	else
		r = arena_alloc(e->arena, sizeof *r);
	memset(r, 0, sizeof *r);
	return r;
}

static void args_give(Elab *e, Args *r)
{
	r->next = e->spare;
	e->spare = r;
}

/* sorts a call's arguments into tensor inputs and the signature's slots; the
 * caller gives r back with args_give when done with it */
static Args *bind_args(Elab *e, Scope *s, const Builtin *b, const AstExpr *call, Value *piped)
{
	Args *r = args_take(e);
	r->ok = true;
	int ns = nspecs(b), maxt = b->ntensors < 0 ? 64 : b->ntensors, slot = 0;
	if (piped)
		r->tensors[r->ntensors++] = *piped;
	for (int i = 0; i < call->nargs; i++) {
		const AstArg *a = &call->args[i];
		Value v = eval(e, s, a->val);
		if (v.k == V_NONE) {
			r->ok = false;
			continue;
		}
		if (a->key) {
			int k = 0;
			while (k < ns && strcmp(b->args[k].name, a->key))
				k++;
			if (k == ns) {
				const char *cands[MAX_ARGS];
				for (int j = 0; j < ns; j++)
					cands[j] = b->args[j].name;
				diag_error(a->key_loc, "%s has no parameter '%s'", b->name, a->key);
				const char *near = diag_closest(a->key, cands, ns);
				if (near)
					diag_hint("did you mean '%s'?", near);
				else
					usage_hint(b);
				r->ok = false;
			} else if (r->given[k]) {
				diag_error(a->key_loc, "'%s' is given twice", a->key);
				r->ok = false;
			} else {
				r->vals[k] = v;
				r->given[k] = true;
			}
		} else if (r->ntensors < maxt && (v.k == V_TENSOR || b->ntensors != 1 || !piped)) {
			if (v.k != V_TENSOR) {
				diag_error(v.loc, "%s expects a tensor here, but got %s", b->name, vkind(&v));
				if (!piped && b->ntensors == 1 && ns > 1)
					diag_hint("pipe the input in: 'x -> %s(...)'", b->name);
				r->ok = false;
				continue;
			}
			r->tensors[r->ntensors++] = v;
		} else {
			while (slot < ns && r->given[slot])
				slot++;
			if (slot >= ns || !strcmp(b->args[slot].name, "name")) {
				diag_error(v.loc, "too many arguments to %s", b->name);
				usage_hint(b);
				r->ok = false;
				continue;
			}
			r->vals[slot] = v;
			r->given[slot++] = true;
		}
	}
	return r;
}

/* checks the tensor inputs' count and kinds */
static bool check_tensors(const Builtin *b, const AstExpr *call, Args *r)
{
	int want = b->ntensors;
	if ((want > 0 && r->ntensors != want) || (want < 0 && r->ntensors < 1)) {
		if (want == 1)
			diag_error(call->loc, "%s needs an input tensor", b->name);
		else if (want == 2)
			diag_error(call->loc, "%s needs two tensors, a prediction and a target, but got %d",
				   b->name, r->ntensors);
		else
			diag_error(call->loc, "%s needs at least one tensor", b->name);
		if (want == 1)
			diag_hint("write 'x -> %s' or '%s(x)'", b->name, b->name);
		else if (want == 2)
			diag_hint("write '%s(prediction, target)'", b->name);
		else
			diag_hint("write '%s(a, b)'", b->name);
		return false;
	}
	for (int i = 0; i < r->ntensors; i++)
		if (r->tensors[i].k != V_TENSOR) {
			diag_error(r->tensors[i].loc, "%s expects a tensor, but got %s", b->name, vkind(&r->tensors[i]));
			return false;
		}
	return true;
}

/* fills the node's attributes from the checked arguments */
static bool set_attrs(const Builtin *b, Args *r, IrAttrs *a, const char **name, const AstExpr *call)
{
	bool ok = true;
	int kernel[2] = { 0, 0 };
	for (int i = 0; i < nspecs(b); i++) {
		const ArgSpec *sp = &b->args[i];
		if (!r->given[i] && !sp->def) {
			diag_error(call->loc, "%s needs '%s'", b->name, sp->name);
			usage_hint(b);
			ok = false;
			continue;
		}
		if (!r->given[i] && !strcmp(sp->def, "kernel")) {
			a->stride[0] = kernel[0];
			a->stride[1] = kernel[1];
			continue;
		}
		Value v = r->given[i] ? r->vals[i] : default_value(sp, call->loc);
		const char *key = sp->name;
		int iv = 0, pair[2] = { 0, 0 };
		double dv = 0;
		const char *sv = NULL;
		switch (sp->kind) {
		case A_INT:
			ok &= want_int(&v, key, b->name, sp->lo, sp->hi, &iv);
			if (!strcmp(key, "units") || !strcmp(key, "filters"))
				a->units = iv;
			else if (!strcmp(key, "groups"))
				a->groups = iv;
			break;
		case A_PAD:
			if (v.k == V_STR) {
				if (strcmp(v.str, "same")) {
					diag_error(v.loc, "pad of %s must be a whole number, a list of two, or \"same\", but got \"%s\"",
						   b->name, v.str);
					ok = false;
				}
				a->pad_same = 1;
				break;
			}
			/* fall through */
		case A_PAIR:
			if (!want_pair(&v, key, b->name, sp->lo, sp->hi, pair)) {
				ok = false;
				break;
			}
			if (!strcmp(key, "kernel"))
				memcpy(a->kernel, pair, sizeof pair), memcpy(kernel, pair, sizeof pair);
			else if (!strcmp(key, "stride"))
				memcpy(a->stride, pair, sizeof pair);
			else if (!strcmp(key, "dilation"))
				memcpy(a->dilation, pair, sizeof pair);
			else if (!strcmp(key, "output_pad"))
				memcpy(a->out_pad, pair, sizeof pair);
			else if (!strcmp(key, "scale"))
				memcpy(a->up, pair, sizeof pair);
			else if (!strcmp(key, "pad")) {
				a->pad[0] = a->pad[1] = pair[0];
				a->pad[2] = a->pad[3] = pair[1];
			}
			break;
		case A_NUM:
			if (!want_num(&v, key, b->name, sp->lo, sp->hi, &dv)) {
				ok = false;
				if (v.k != V_NUM && !numeric_str(&v))
					usage_hint(b);
			}
			if (!strcmp(key, "momentum"))
				a->momentum = dv;
			else if (!strcmp(key, "eps"))
				a->eps = dv;
			else if (!strcmp(key, "p"))
				a->p = dv;
			else
				a->alpha = dv;
			break;
		case A_BOOL:
			ok &= want_bool(&v, key, b->name, &iv);
			a->bias = iv;
			break;
		case A_STR:
			if (!want_str(&v, key, b->name, &sv)) {
				ok = false;
			} else if (!strcmp(key, "name")) {
				*name = sv;
			} else if (!strcmp(key, "mode")) {
				if (!strcmp(sv, "nearest")) {
					a->mode = UP_NEAREST;
				} else if (!strcmp(sv, "bilinear")) {
					a->mode = UP_BILINEAR;
				} else {
					static const char *const modes[] = { "nearest", "bilinear" };
					diag_error(v.loc, "mode of upsample must be \"nearest\" or \"bilinear\", but got \"%s\"", sv);
					const char *near = diag_closest(sv, modes, 2);
					if (near)
						diag_hint("did you mean \"%s\"?", near);
					ok = false;
				}
			}
			break;
		}
	}
	return ok;
}

static bool valid_layer_name(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!(*s == '_' || (*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
			return false;
	return true;
}

static IrNode *param(Elab *e, IrOp op, const char *layer, const char *what, SrcLoc loc)
{
	IrNode *p = ir_new_source(e->g, op, arena_printf(e->arena, "%s.%s", layer, what), loc);
	p->layer = layer;
	return p;
}

static Value build_builtin(Elab *e, Scope *s, const Builtin *b, const AstExpr *call, Args *r);

static Value apply_builtin(Elab *e, Scope *s, const Builtin *b, const AstExpr *call, Value *piped)
{
	Args *r = bind_args(e, s, b, call, piped);
	Value v = build_builtin(e, s, b, call, r);
	args_give(e, r);
	return v;
}

/* noinline: its locals stay out of the frames of the eval -> apply recursion */
__attribute__((noinline)) static Value build_builtin(Elab *e, Scope *s, const Builtin *b, const AstExpr *call,
						     Args *r)
{
	if (!r->ok || !check_tensors(b, call, r))
		return none(call->loc);
	IrAttrs a = { .groups = 1, .bias = 1 };
	const char *given = "";
	if (!set_attrs(b, r, &a, &given, call))
		return none(call->loc);
	if (given[0] && !valid_layer_name(given)) {
		diag_error(call->loc, "the layer name \"%s\" may hold only letters, digits and '_'", given);
		return none(call->loc);
	}
	if (!layer_budget(e, call->loc))
		return none(call->loc);
	const char *layer = given[0] ? arena_printf(e->arena, "%s%s", s->prefix, given)
				     : arena_printf(e->arena, "%s%s%d", s->prefix, b->kind, count(e, s, b->kind));
	if (!claim_name(e, layer, call->loc)) {
		diag_hint("give each layer its own name=");
		return none(call->loc);
	}
	IrNode *in[64];
	int nin = 0;
	for (int i = 0; i < r->ntensors; i++)
		in[nin++] = r->tensors[i].t;
	bool has_w = b->op == IR_DENSE || b->op == IR_CONV2D || b->op == IR_CONV_T2D || b->op == IR_BATCHNORM;
	if (has_w) {
		in[nin++] = param(e, IR_PARAM, layer, "weight", call->loc);
		if (a.bias || b->op == IR_BATCHNORM)
			in[nin++] = param(e, IR_PARAM, layer, "bias", call->loc);
		if (b->op == IR_BATCHNORM) {
			in[nin++] = param(e, IR_BUFFER, layer, "running_mean", call->loc);
			in[nin++] = param(e, IR_BUFFER, layer, "running_var", call->loc);
		}
	}
	if (b->op != IR_CONV2D && b->op != IR_CONV_T2D && b->op != IR_DENSE)
		a.bias = 0;
	if (b->op == IR_CONV2D || b->op == IR_CONV_T2D)
		for (int i = 0; i < 2; i++)
			if (!a.dilation[i])
				a.dilation[i] = 1;
	IrNode *n = node(e, b->op, nin, in, call->loc);
	n->a = a;
	n->layer = layer;
	return tensor(n, call->loc);
}

/* ---- blocks ---- */

static const AstItem *find_block(Elab *e, const char *name)
{
	for (int i = 0; i < e->file->nitems; i++) {
		const AstItem *it = e->file->items[i];
		if (it->kind == ITEM_BLOCK && !strcmp(it->name, name))
			return it;
	}
	return NULL;
}

static void exec_body(Elab *e, Scope *s, AstStmt **body, int n);

static bool recursion(Elab *e, const AstItem *blk, const AstExpr *call)
{
	for (int i = 0; i < e->nstack; i++)
		if (e->stack[i] == blk) {
			char path[512];
			size_t k = 0;
			for (int j = i; j < e->nstack && k < sizeof path; j++)
				k += (size_t)snprintf(path + k, sizeof path - k, "%s -> ", e->stack[j]->name);
			if (k < sizeof path)
				snprintf(path + k, sizeof path - k, "%s", blk->name);
			diag_error(call->loc, "block '%s' calls itself (%s)", blk->name, path);
			diag_hint("blocks cannot be recursive; to stack a block several times, use 'repeat N { ... }'");
			e->noted = diag_errors();	/* the path says where; no note per call */
			return true;
		}
	if (e->nstack >= MAX_BLOCK_NEST) {
		const AstItem *const *st = e->stack;
		int n = e->nstack;
		diag_error(call->loc, "blocks are nested more than %d deep: %s -> %s -> ... -> %s -> %s", MAX_BLOCK_NEST,
			   st[0]->name, st[1]->name, st[n - 1]->name, blk->name);
		diag_note(e->stack_call[0], "the outermost block is used here");
		diag_hint("a block may use blocks up to %d deep; flatten some of them into their callers", MAX_BLOCK_NEST);
		e->noted = diag_errors();
		return true;
	}
	return false;
}

/* binds a block's parameters: piped value first, then positional, then keywords */
static bool bind_block_args(Elab *e, Scope *outer, Scope *in, const AstItem *blk, const AstExpr *call, Value *piped)
{
	Value *vals = arena_alloc(e->arena, sizeof(Value) * (size_t)(blk->nparams + 1));
	bool *given = arena_alloc(e->arena, sizeof(bool) * (size_t)(blk->nparams + 1));
	bool ok = true;
	int slot = 0;
	if (piped) {
		if (blk->nparams == 0) {
			diag_error(call->loc, "block '%s' takes no parameters, so nothing can be piped into it", blk->name);
			return false;
		}
		vals[0] = *piped;
		given[slot++] = true;
	}
	for (int i = 0; i < call->nargs; i++) {
		const AstArg *a = &call->args[i];
		Value v = eval(e, outer, a->val);
		ok &= v.k != V_NONE;
		int k = slot;
		if (a->key) {
			for (k = 0; k < blk->nparams && strcmp(blk->params[k].name, a->key); k++)
				;
			if (k == blk->nparams) {
				const char *cands[64];
				int nc = blk->nparams < 64 ? blk->nparams : 64;
				for (int j = 0; j < nc; j++)
					cands[j] = blk->params[j].name;
				diag_error(a->key_loc, "block '%s' has no parameter '%s'", blk->name, a->key);
				const char *near = diag_closest(a->key, cands, nc);
				if (near)
					diag_hint("did you mean '%s'?", near);
				ok = false;
				continue;
			}
			if (given[k]) {
				diag_error(a->key_loc, "'%s' is given twice", a->key);
				ok = false;
				continue;
			}
		} else {
			while (slot < blk->nparams && given[slot])
				slot++;
			k = slot;
			if (k >= blk->nparams) {
				diag_error(v.loc, "too many arguments to block '%s': it takes %d", blk->name, blk->nparams);
				diag_note(blk->name_loc, "'%s' is defined here", blk->name);
				ok = false;
				continue;
			}
		}
		vals[k] = v;
		given[k] = true;
	}
	for (int k = 0; k < blk->nparams && ok; k++) {
		if (!given[k] && !blk->params[k].def) {
			diag_error(call->loc, "block '%s' needs '%s'", blk->name, blk->params[k].name);
			diag_note(blk->params[k].loc, "the parameter '%s' has no default", blk->params[k].name);
			ok = false;
			break;
		}
		/* defaults see the parameters before them: block b(x, c, out=c) */
		Value v = given[k] ? vals[k] : eval(e, in, blk->params[k].def);
		ok &= v.k != V_NONE;
		bind(e, in, blk->params[k].name, v, blk->params[k].loc);
	}
	return ok;
}

static Value apply_block(Elab *e, Scope *s, const AstItem *blk, const AstExpr *call, Value *piped)
{
	if (e->too_many || recursion(e, blk, call))
		return none(call->loc);
	Scope in = { .in_block = true };
	int nerr = diag_errors();
	/* a block named like a layer kind (conv, bn) shares that kind's counter, so an
	 * instance never takes a layer's name: PyTorch could not hold both */
	in.prefix = arena_printf(e->arena, "%s%s%d.", s->prefix, blk->name, count(e, s, blk->name));
	if (!bind_block_args(e, s, &in, blk, call, piped))
		return none(call->loc);
	e->stack_call[e->nstack] = call->loc;
	e->stack[e->nstack++] = blk;
	exec_body(e, &in, blk->body, blk->nbody);
	e->nstack--;
	if (diag_errors() > nerr) {
		/* the innermost call only: the body's errors may depend on its arguments */
		SrcLoc last = diag_last_error();
		if (e->noted < diag_errors() && !e->too_many && (last.file != call->loc.file || last.line != call->loc.line))
			diag_note(call->loc, "in this use of block '%s'", blk->name);
		e->noted = diag_errors();
		return none(call->loc);
	}
	if (!in.ret) {
		const char *last = NULL;
		for (int i = 0; i < blk->nbody; i++)
			if (blk->body[i]->kind == ST_ASSIGN)
				last = blk->body[i]->name;
		diag_error(blk->name_loc, "block '%s' has no 'return'", blk->name);
		diag_hint("end the block with 'return %s'", last ? last : "VALUE");
		return none(call->loc);
	}
	Value v = *in.ret;
	v.loc = call->loc;
	return v;
}

static Value unknown_layer(Elab *e, const AstExpr *call);

static Value apply(Elab *e, Scope *s, const AstExpr *call, Value *piped)
{
	const Builtin *b = find_builtin(call->str);
	if (b)
		return apply_builtin(e, s, b, call, piped);
	const AstItem *blk = find_block(e, call->str);
	if (blk)
		return apply_block(e, s, blk, call, piped);
	if (!strcmp(call->str, "class")) {
		diag_error(call->loc, "class(K) declares a target's type: 'target y: class(K)'");
		return none(call->loc);
	}
	Binding *bd = lookup(s, call->str);
	if (bd) {
		diag_error(call->loc, "'%s' is %s, not a layer or block", call->str, vkind(&bd->v));
		return none(call->loc);
	}
	return unknown_layer(e, call);
}

/* apart from apply(), which is on the recursion's path: its frame stays small */
__attribute__((noinline)) static Value unknown_layer(Elab *e, const AstExpr *call)
{
	const char *cands[NBUILTINS + 64];
	int n = 0;
	for (int i = 0; i < NBUILTINS; i++)
		cands[n++] = builtins[i].name;
	for (int i = 0; i < e->file->nitems && n < NBUILTINS + 64; i++)
		if (e->file->items[i]->kind == ITEM_BLOCK)
			cands[n++] = e->file->items[i]->name;
	diag_error(call->loc, "unknown layer '%s'", call->str);
	const char *near = diag_closest(call->str, cands, n);
	if (near)
		diag_hint("did you mean '%s'?", near);
	else
		diag_hint("the layers are listed in docs/language.md; a block must be defined with 'block %s(x, ...) { ... }'",
			  call->str);
	return none(call->loc);
}

/* ---- statements ---- */

static void declare(Elab *e, Scope *s, const AstStmt *st, Value v)
{
	Binding *b = lookup(s, st->name);
	if (b && b->v.k == V_TENSOR && (b->v.t->op == IR_INPUT || b->v.t->op == IR_TARGET)) {
		diag_error(st->name_loc, "'%s' is already declared", st->name);
		diag_note(b->loc, "'%s' is declared here", st->name);
		return;
	}
	bind(e, s, st->name, v, st->name_loc);
}

/* `input x` twice, even with `x` rebound in between: said as such, not as a layer name */
static bool declared_twice(Elab *e, const AstStmt *st)
{
	for (int i = 0; i < e->g->nnodes; i++) {
		const IrNode *n = e->g->nodes[i];
		if ((n->op == IR_INPUT || n->op == IR_TARGET) && !strcmp(n->name, st->name)) {
			diag_error(st->name_loc, "'%s' is already declared", st->name);
			diag_note(n->loc, "'%s' is declared here", st->name);
			diag_hint("give each input and target its own name");
			return true;
		}
	}
	return false;
}

/* `[d1, d2, ...]` as a per-sample shape */
static bool shape_of(const Value *v, int lo, int hi, const char *what, Shape *out)
{
	if (v->k != V_LIST) {
		diag_error(v->loc, "the shape of %s must be a list of sizes like [1, 28, 28], but got %s", what, vkind(v));
		return false;
	}
	if (v->n < lo || v->n > hi) {
		if (!strcmp(what, "an input"))
			diag_error(v->loc, "an input has rank 1 (features) or 3 (channels, height, width), but this shape has rank %d",
				   v->n);
		else
			diag_error(v->loc, "the shape of %s must have %d to %d sizes, but has %d", what, lo, hi, v->n);
		return false;
	}
	out->rank = v->n;
	for (int i = 0; i < v->n; i++) {
		const Value *d = &v->items[i];
		if (d->k != V_NUM || !d->is_int || d->num < 1 || d->num > MAX_DIM) {
			diag_error(d->loc, "a size must be a whole number from 1 to 2147483647, but got %s", got(d));
			return false;
		}
		out->d[i] = (int64_t)d->num;
	}
	return true;
}

static void exec_input(Elab *e, Scope *s, const AstStmt *st)
{
	if (declared_twice(e, st))
		return;
	Value v = eval(e, s, st->expr);
	Shape sh;
	/* a broken declaration still declares the name, so its uses stay quiet */
	if (v.k == V_NONE || !shape_of(&v, 1, 4, "an input", &sh)) {
		declare(e, s, st, none(st->name_loc));
		return;
	}
	if (sh.rank == 2 || sh.rank == 4) {
		diag_error(v.loc, "an input has rank 1 (features) or 3 (channels, height, width), but this shape has rank %d",
			   sh.rank);
		if (sh.rank == 2)
			diag_hint("for a one-channel image write [1, %" PRId64 ", %" PRId64 "]", sh.d[0], sh.d[1]);
		else
			diag_hint("the shape is per sample, the batch is implicit: write [%" PRId64 ", %" PRId64 ", %" PRId64 "]",
				  sh.d[1], sh.d[2], sh.d[3]);
		declare(e, s, st, none(st->name_loc));
		return;
	}
	IrNode *n = ir_new_source(e->g, IR_INPUT, st->name, st->name_loc);
	n->shape = sh;
	n->layer = st->name;
	claim_name(e, st->name, st->name_loc);
	declare(e, s, st, tensor(n, st->name_loc));
}

static void exec_target(Elab *e, Scope *s, const AstStmt *st)
{
	if (declared_twice(e, st))
		return;
	const AstExpr *x = st->expr;
	IrNode *n;
	if (x->kind == AST_CALL && !strcmp(x->str, "class") && !x->piped) {
		Value k = none(x->loc);
		if (x->nargs == 1 && !x->args[0].key)
			k = eval(e, s, x->args[0].val);
		else {
			diag_error(x->loc, "class takes one number, the count of classes: class(10)");
			declare(e, s, st, none(st->name_loc));
			return;
		}
		int classes;
		if (k.k == V_NUM && k.is_int && k.num < 2) {
			diag_error(k.loc, "a class target needs at least 2 classes, but got class(%s)", num_str(k.num));
			diag_hint("for a yes/no label use class(2), or 'target %s: [1]' with bce", st->name);
			declare(e, s, st, none(st->name_loc));
			return;
		}
		if (k.k == V_NONE || !want_int(&k, "the class count", "class", 2, MAX_DIM, &classes)) {
			declare(e, s, st, none(st->name_loc));
			return;
		}
		n = ir_new_source(e->g, IR_TARGET, st->name, st->name_loc);
		n->dtype = DT_I64;
		n->shape.rank = 0;
		n->a.classes = classes;
	} else {
		Value v = eval(e, s, x);
		Shape sh;
		if (v.k != V_NONE && v.k != V_LIST)
			diag_error(v.loc, "a target is class(K) for labels or a shape like [1, 32, 32], but got %s",
				   vkind(&v));
		if (v.k != V_LIST || !shape_of(&v, 1, 3, "a target", &sh)) {
			declare(e, s, st, none(st->name_loc));
			return;
		}
		n = ir_new_source(e->g, IR_TARGET, st->name, st->name_loc);
		n->shape = sh;
	}
	n->layer = st->name;
	claim_name(e, st->name, st->name_loc);
	declare(e, s, st, tensor(n, st->name_loc));
}

static void exec_output(Elab *e, Scope *s, const AstStmt *st)
{
	IrGraph *g = e->g;
	for (int i = 0; i < st->nnames; i++) {
		const char *name = st->names[i];
		Binding *b = lookup(s, name);
		if (!b) {
			diag_error(st->name_locs[i], "unknown name '%s'", name);
			const char *near = closest_name(s, name);
			if (near)
				diag_hint("did you mean '%s'?", near);
			else
				diag_hint("bind it before this line: '%s = ...'", name);
			continue;
		}
		if (b->v.k != V_TENSOR) {
			if (b->v.k != V_NONE)
				diag_error(st->name_locs[i], "an output must be a tensor, but '%s' is %s", name, vkind(&b->v));
			continue;
		}
		if (b->v.t->op == IR_TARGET) {
			diag_error(st->name_locs[i], "the target '%s' cannot be an output", name);
			diag_hint("outputs are what the model computes from its inputs");
			continue;
		}
		bool dup = false;
		for (int j = 0; j < g->noutputs; j++)
			dup |= !strcmp(g->output_names[j], name);
		if (dup) {
			diag_error(st->name_locs[i], "'%s' is already an output", name);
			diag_hint("list each output once");
			continue;
		}
		g->outputs = arena_grow(e->arena, g->outputs, (size_t)g->noutputs, (size_t)g->noutputs + 1, sizeof(IrNode *));
		g->output_names = arena_grow(e->arena, g->output_names, (size_t)g->noutputs, (size_t)g->noutputs + 1,
					     sizeof(char *));
		g->outputs[g->noutputs] = b->v.t;
		g->output_names[g->noutputs++] = name;
	}
}

static void exec_loss(Elab *e, Scope *s, const AstStmt *st, SrcLoc *seen)
{
	Value v = eval(e, s, st->expr);
	if (seen->file) {
		diag_error(st->loc, "a model has one loss");
		diag_note(*seen, "the loss is already given here");
		diag_hint("add losses into one: 'loss a + 0.5 * b'");
		return;
	}
	*seen = st->loc;
	if (v.k == V_NONE)
		return;
	if (v.k != V_TENSOR) {
		diag_error(st->expr->loc, "the loss must be a loss like cross_entropy(logits, y), but got %s", vkind(&v));
		return;
	}
	IrOp op = v.t->op;
	if (ir_op_family(op) != FAM_LOSS && op != IR_ADD && op != IR_MUL && op != IR_SCALE) {
		/* a layer's output: say so here, where the statement is, not at the layer */
		diag_error(st->expr->loc, "the loss must come from a loss function, but this is the output of %s",
			   ir_op_name(op));
		diag_hint("compute it with a loss such as cross_entropy(logits, y) or mse(p, t)");
		return;
	}
	e->g->loss = v.t;
}

static void exec_repeat(Elab *e, Scope *s, const AstStmt *st)
{
	Value v = eval(e, s, st->expr);
	int n;
	if (v.k == V_NONE || !want_int(&v, "the count", "repeat", 0, MAX_REPEAT, &n))
		return;
	for (int i = 0; i < n; i++) {
		int before = diag_errors();
		if (!step_budget(e, st->loc))	/* an iteration is a step, even of an empty body */
			return;
		exec_body(e, s, st->body, st->nbody);
		if (diag_errors() > before)
			return;	/* the same mistake would repeat n times */
	}
}

static void exec_body(Elab *e, Scope *s, AstStmt **body, int n)
{
	SrcLoc loss = { 0 };
	for (int i = 0; i < n; i++) {
		const AstStmt *st = body[i];
		if (!step_budget(e, st->loc))
			return;
		if (s->ret) {
			diag_error(st->loc, "this statement comes after 'return' and would never run");
			diag_note(s->ret_loc, "the block returns here");
			e->noted = diag_errors();	/* a mistake in the block itself, whatever the call */
			return;
		}
		const char *where = NULL;
		switch (st->kind) {
		case ST_INPUT:
		case ST_TARGET:
		case ST_OUTPUT:
		case ST_LOSS:
			if (s->in_block)
				where = st->kind == ST_INPUT ? "input" : st->kind == ST_TARGET ? "target" :
					st->kind == ST_OUTPUT ? "output" : "loss";
			break;
		case ST_RETURN:
			if (!s->in_block)
				where = "return";
			break;
		default:
			break;
		}
		if (where) {
			diag_error(st->loc, "'%s' is not allowed in a %s", where, s->in_block ? "block" : "model");
			diag_hint(s->in_block ? "a block gets its inputs as parameters and gives back one value with 'return'"
					      : "'return' ends a block; a model names its results with 'output'");
			e->noted = diag_errors();
			continue;
		}
		switch (st->kind) {
		case ST_INPUT: exec_input(e, s, st); break;
		case ST_TARGET: exec_target(e, s, st); break;
		case ST_ASSIGN: bind(e, s, st->name, eval(e, s, st->expr), st->name_loc); break;
		case ST_OUTPUT: exec_output(e, s, st); break;
		case ST_LOSS: exec_loss(e, s, st, &loss); break;
		case ST_REPEAT: exec_repeat(e, s, st); break;
		case ST_RETURN: {
			Value *v = arena_alloc(e->arena, sizeof *v);
			*v = eval(e, s, st->expr);
			s->ret = v;
			s->ret_loc = st->loc;
			break;
		}
		}
	}
}

static IrGraph *elab_model(Arena *a, const AstFile *f, const AstItem *m)
{
	Elab e = { .arena = a, .file = f };
	e.g = ir_new_graph(a, m->name, m->name_loc);
	Scope s = { .prefix = "" };
	int before = diag_errors();
	exec_body(&e, &s, m->body, m->nbody);
	if (diag_errors() > before)
		return e.g;
	bool has_input = false;
	for (int i = 0; i < e.g->nnodes; i++)
		has_input |= e.g->nodes[i]->op == IR_INPUT;
	if (!has_input) {
		diag_error(m->name_loc, "model '%s' has no input", m->name);
		diag_hint("declare one: 'input x: [784]' or 'input x: [1, 28, 28]'");
	} else if (!e.g->noutputs && !e.g->loss) {
		diag_error(m->end_loc, "model '%s' has neither an output nor a loss", m->name);
		diag_hint("name what inference returns with 'output NAME', and what training minimises with 'loss ...'");
	}
	return e.g;
}

/* ---- train settings ---- */

static const char *const train_keys[] = { "optimizer", "l1", "l2", "batch", "epochs", "seed", "data", "test",
					  "schedule" };
enum { NTRAIN_KEYS = sizeof train_keys / sizeof train_keys[0] };

const char *elab_opt_name(OptKind k)
{
	static const char *const n[] = { "sgd", "adagrad", "rmsprop", "adam", "adamw" };
	return n[k];
}

const char *elab_sched_name(SchedKind k)
{
	static const char *const n[] = { "constant", "step", "cosine" };
	return n[k];
}

typedef struct OptSpec {
	const char *name;
	OptKind kind;
	ArgSpec args[6];
} OptSpec;

static const OptSpec optspecs[] = {
	{ "sgd", OPT_SGD, { { "lr", A_NUM, NULL, 0, 1e6 }, { "momentum", A_NUM, "0", 0, 1 },
			    { "nesterov", A_BOOL, "false", 0, 0 } } },
	{ "adagrad", OPT_ADAGRAD, { { "lr", A_NUM, "0.01", 0, 1e6 }, { "eps", A_NUM, "1e-10", 1e-38, 1 } } },
	{ "rmsprop", OPT_RMSPROP, { { "lr", A_NUM, "0.01", 0, 1e6 }, { "alpha", A_NUM, "0.99", 0, 1 },
				    { "eps", A_NUM, "1e-8", 1e-38, 1 }, { "momentum", A_NUM, "0", 0, 1 } } },
	{ "adam", OPT_ADAM, { { "lr", A_NUM, "0.001", 0, 1e6 }, { "beta1", A_NUM, "0.9", 0, 1 },
			      { "beta2", A_NUM, "0.999", 0, 1 }, { "eps", A_NUM, "1e-8", 1e-38, 1 } } },
	{ "adamw", OPT_ADAMW, { { "lr", A_NUM, "0.001", 0, 1e6 }, { "beta1", A_NUM, "0.9", 0, 1 },
				{ "beta2", A_NUM, "0.999", 0, 1 }, { "eps", A_NUM, "1e-8", 1e-38, 1 },
				{ "weight_decay", A_NUM, "0.01", 0, 1e6 } } },
};
enum { NOPTS = sizeof optspecs / sizeof optspecs[0] };

static void set_opt_field(TrainConfig *t, const char *key, double v)
{
	if (!strcmp(key, "lr")) t->lr = v;
	else if (!strcmp(key, "momentum")) t->momentum = v;
	else if (!strcmp(key, "nesterov")) t->nesterov = v != 0;
	else if (!strcmp(key, "eps")) t->eps = v;
	else if (!strcmp(key, "alpha")) t->alpha = v;
	else if (!strcmp(key, "beta1")) t->beta1 = v;
	else if (!strcmp(key, "beta2")) t->beta2 = v;
	else if (!strcmp(key, "weight_decay")) t->weight_decay = v;
}

/* `adam(lr=0.001)`: the arguments are constants, checked like a layer's */
static void train_optimizer(Elab *e, TrainConfig *t, const AstExpr *x)
{
	const char *cands[NOPTS];
	const OptSpec *o = NULL;
	for (int i = 0; i < NOPTS; i++) {
		cands[i] = optspecs[i].name;
		if ((x->kind == AST_CALL || x->kind == AST_IDENT) && !strcmp(x->str, optspecs[i].name))
			o = &optspecs[i];
	}
	if (!o || (x->kind == AST_CALL && x->piped)) {
		if (x->kind == AST_CALL || x->kind == AST_IDENT) {
			diag_error(x->loc, "unknown optimizer '%s'", x->str);
			const char *near = diag_closest(x->str, cands, NOPTS);
			if (near)
				diag_hint("did you mean '%s'?", near);
			else
				diag_hint("the optimizers are sgd, adagrad, rmsprop, adam and adamw");
		} else {
			diag_error(x->loc, "the optimizer must be like adam(lr=0.001), but got %s", ast_kind_name(x));
		}
		return;
	}
	Builtin b = { .name = o->name, .ntensors = 0 };
	memcpy(b.args, o->args, sizeof o->args);
	Scope none_scope = { .prefix = "" };
	AstExpr call = *x;
	if (x->kind == AST_IDENT)
		call.nargs = 0;
	Args *r = bind_args(e, &none_scope, &b, &call, NULL);
	if (!r->ok)
		return;
	t->opt = o->kind;
	for (int i = 0; i < nspecs(&b); i++) {
		const ArgSpec *sp = &b.args[i];
		if (!r->given[i] && !sp->def) {
			diag_error(x->loc, "%s needs '%s'", o->name, sp->name);
			diag_hint("for example %s(%s=0.01)", o->name, sp->name);
			return;
		}
		Value v = r->given[i] ? r->vals[i] : default_value(sp, x->loc);
		double d = 0;
		int bv = 0;
		if (sp->kind == A_BOOL) {
			if (!want_bool(&v, sp->name, o->name, &bv))
				return;
			d = bv;
		} else if (!want_num(&v, sp->name, o->name, sp->lo, sp->hi, &d)) {
			return;
		}
		if (!strcmp(sp->name, "lr") && d <= 0) {
			diag_error(v.loc, "lr of %s must be above 0, but got %g", o->name, d);
			return;
		}
		set_opt_field(t, sp->name, d);
	}
	if (t->nesterov && t->momentum <= 0) {
		diag_error(x->loc, "nesterov needs a momentum above 0");
		diag_hint("for example sgd(lr=0.01, momentum=0.9, nesterov=true)");
	}
}

static void train_schedule(Elab *e, TrainConfig *t, const AstExpr *x)
{
	static const char *const names[] = { "constant", "step", "cosine" };
	const char *name = x->kind == AST_CALL || x->kind == AST_IDENT ? x->str : NULL;
	int k = -1;
	for (int i = 0; name && i < 3; i++)
		if (!strcmp(name, names[i]))
			k = i;
	if (k < 0) {
		diag_error(x->loc, "the schedule must be constant, step(every, gamma) or cosine");
		const char *near = name ? diag_closest(name, names, 3) : NULL;
		if (near)
			diag_hint("did you mean '%s'?", near);
		return;
	}
	t->sched = (SchedKind)k;
	if (k != SCHED_STEP) {
		if (x->kind == AST_CALL && x->nargs) {
			diag_error(x->loc, "%s takes no arguments", names[k]);
		}
		return;
	}
	Builtin b = { .name = "step", .ntensors = 0,
		      .args = { { "every", A_INT, NULL, 1, MAX_DIM }, { "gamma", A_NUM, "0.1", 0, 1e6 } } };
	Scope none_scope = { .prefix = "" };
	AstExpr call = *x;
	if (x->kind == AST_IDENT)
		call.nargs = 0;
	Args *r = bind_args(e, &none_scope, &b, &call, NULL);
	if (!r->ok)
		return;
	if (!r->given[0]) {
		diag_error(x->loc, "step needs 'every', the number of epochs between decays");
		diag_hint("for example step(every=10, gamma=0.5)");
		return;
	}
	int every;
	Value g = r->given[1] ? r->vals[1] : default_value(&b.args[1], x->loc);
	if (want_int(&r->vals[0], "every", "step", 1, MAX_DIM, &every) &&
	    want_num(&g, "gamma", "step", 0, 1e6, &t->step_gamma))
		t->step_every = every;
}

/* A relative path names a file beside the .nn file: it is joined with the
 * file's folder. "inputs.npy,targets.npy" (the runtime's NumPy pair) is two
 * paths, so each comma-separated part is joined on its own. */
static const char *resolve_path(Arena *a, const SrcFile *src, const char *p)
{
	const char *slash = strrchr(src->name, '/');
	if (!slash)
		return p;
	int dir = (int)(slash - src->name);
	const char *out = "";
	for (const char *part = p;;) {
		const char *comma = strchr(part, ',');
		int n = comma ? (int)(comma - part) : (int)strlen(part);
		if (part[0] == '/' || n == 0)
			out = arena_printf(a, "%s%.*s", out, n, part);
		else
			out = arena_printf(a, "%s%.*s/%.*s", out, dir, src->name, n, part);
		if (!comma)
			return out;
		out = arena_printf(a, "%s,", out);
		part = comma + 1;
	}
}

static void train_setting(Elab *e, TrainConfig *t, const AstStmt *st)
{
	const char *key = st->name;
	const AstExpr *x = st->expr;
	if (!strcmp(key, "optimizer")) {
		train_optimizer(e, t, x);
		return;
	}
	if (!strcmp(key, "schedule")) {
		train_schedule(e, t, x);
		return;
	}
	int known = 0;
	for (int k = 0; k < NTRAIN_KEYS; k++)
		known |= !strcmp(train_keys[k], key);
	if (!known) {
		/* before evaluating: `optimiser = sgd(...)` is a misspelled key, not a layer call */
		diag_error(st->name_loc, "unknown train setting '%s'", key);
		const char *near = diag_closest(key, train_keys, NTRAIN_KEYS);
		static const int order[NOPTS] = { OPT_ADAM, OPT_SGD, OPT_RMSPROP, OPT_ADAGRAD, OPT_ADAMW };
		const char *opt = NULL;	/* `lr = 0.1`: an optimizer's argument, adam's if it has it */
		for (int i = 0; i < NOPTS && !opt; i++)
			for (int j = 0; j < 6 && optspecs[order[i]].args[j].name; j++)
				if (!strcmp(optspecs[order[i]].args[j].name, key))
					opt = optspecs[order[i]].name;
		if (opt)
			diag_hint("'%s' is an argument of the optimizer: 'optimizer = %s(%s=...)'", key, opt, key);
		else if (near)
			diag_hint("did you mean '%s'?", near);
		else
			diag_hint("the settings are optimizer, l1, l2, batch, epochs, seed, data, test and schedule");
		return;
	}
	Scope none_scope = { .prefix = "" };
	Value v = eval(e, &none_scope, x);
	if (v.k == V_NONE)
		return;
	int iv;
	if (!strcmp(key, "l1") || !strcmp(key, "l2")) {
		want_num(&v, key, "train", 0, 1e6, key[1] == '1' ? &t->l1 : &t->l2);
	} else if (!strcmp(key, "batch")) {
		if (want_int(&v, key, "train", 1, 1 << 24, &iv))
			t->batch = iv;
	} else if (!strcmp(key, "epochs")) {
		if (want_int(&v, key, "train", 1, 1000000, &iv))
			t->epochs = iv;
	} else if (!strcmp(key, "seed")) {
		if (want_int(&v, key, "train", 0, MAX_DIM, &iv))
			t->seed = iv;
	} else if (!strcmp(key, "data") || !strcmp(key, "test")) {
		const char *p;
		if (want_str(&v, key, "train", &p)) {
			if (!p[0])
				diag_error(v.loc, "the %s path is empty", key);
			else if (key[0] == 'd')
				t->data = resolve_path(e->arena, e->file->src, p);
			else
				t->test = resolve_path(e->arena, e->file->src, p);
		}
	}
}

static void train_defaults(TrainConfig *t)
{
	*t = (TrainConfig){ .opt = OPT_ADAM, .lr = 0.001, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
			    .batch = 64, .epochs = 1, .seed = 1, .sched = SCHED_CONSTANT, .step_gamma = 0.1 };
}

static void elab_train(Elab *e, TrainConfig *t, const AstItem *it)
{
	SrcLoc seen[NTRAIN_KEYS] = { { 0 } };
	t->given = true;
	t->loc = it->loc;
	for (int i = 0; i < it->nbody; i++) {
		const AstStmt *st = it->body[i];
		if (st->kind != ST_ASSIGN) {
			diag_error(st->loc, "a train section holds only settings like 'epochs = 5'");
			continue;
		}
		for (int k = 0; k < NTRAIN_KEYS; k++)
			if (!strcmp(train_keys[k], st->name)) {
				if (seen[k].file) {
					diag_error(st->name_loc, "'%s' is set twice", st->name);
					diag_note(seen[k], "first set here");
				}
				seen[k] = st->name_loc;
			}
		train_setting(e, t, st);
	}
}

/* ---- the file ---- */

static void check_names(const AstFile *f)
{
	for (int i = 0; i < f->nitems; i++) {
		const AstItem *a = f->items[i];
		if (a->kind == ITEM_TRAIN)
			continue;
		if (a->kind == ITEM_BLOCK && find_builtin(a->name)) {
			diag_error(a->name_loc, "'%s' is a built-in layer; a block cannot take its name", a->name);
			continue;
		}
		for (int j = 0; j < i; j++) {
			const AstItem *b = f->items[j];
			if (b->kind == a->kind && !strcmp(a->name, b->name)) {
				diag_error(a->name_loc, "%s '%s' is defined twice", a->kind == ITEM_MODEL ? "model" : "block",
					   a->name);
				diag_note(b->name_loc, "first defined here");
				break;
			}
		}
		for (int p = 0; a->kind == ITEM_BLOCK && p < a->nparams; p++)
			for (int q = 0; q < p; q++)
				if (!strcmp(a->params[p].name, a->params[q].name))
					diag_error(a->params[p].loc, "block '%s' has two parameters named '%s'", a->name,
						   a->params[p].name);
	}
}

/* which model a train section configures: its name, or the model before it */
static Model *train_target(Program *p, const AstFile *f, int item)
{
	const AstItem *it = f->items[item];
	if (it->name) {
		const char *cands[64];
		int n = 0;
		for (int i = 0; i < p->nmodels; i++) {
			if (!strcmp(p->models[i]->name, it->name))
				return p->models[i];
			if (n < 64)
				cands[n++] = p->models[i]->name;
		}
		diag_error(it->name_loc, "there is no model '%s' to train", it->name);
		const char *near = diag_closest(it->name, cands, n);
		if (near)
			diag_hint("did you mean '%s'?", near);
		return NULL;
	}
	const char *prev = NULL;
	for (int i = item - 1; i >= 0 && !prev; i--)
		if (f->items[i]->kind == ITEM_MODEL)
			prev = f->items[i]->name;
	for (int i = 0; prev && i < p->nmodels; i++)
		if (!strcmp(p->models[i]->name, prev))
			return p->models[i];
	diag_error(it->loc, "this train section comes before any model");
	diag_hint("put it after the model, or name the model: 'train NAME { ... }'");
	return NULL;
}

Program *elab_program(Arena *a, const AstFile *f)
{
	Program *p = arena_alloc(a, sizeof *p);
	check_names(f);
	p->models = arena_alloc(a, sizeof(Model *) * (size_t)(f->nitems + 1));
	for (int i = 0; i < f->nitems; i++) {
		const AstItem *it = f->items[i];
		if (it->kind != ITEM_MODEL)
			continue;
		Model *m = arena_alloc(a, sizeof *m);
		m->name = it->name;
		m->loc = it->name_loc;
		train_defaults(&m->train);
		m->graph = elab_model(a, f, it);
		p->models[p->nmodels++] = m;
	}
	for (int i = 0; i < f->nitems; i++) {
		if (f->items[i]->kind != ITEM_TRAIN)
			continue;
		Model *m = train_target(p, f, i);
		if (!m)
			continue;
		if (m->train.given) {
			diag_error(f->items[i]->loc, "model '%s' already has a train section", m->name);
			diag_note(m->train.loc, "the first one is here");
			continue;
		}
		Elab e = { .arena = a, .file = f };
		elab_train(&e, &m->train, f->items[i]);
	}
	return p;
}
