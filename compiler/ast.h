/*
 * ast.h: what the user wrote, with source spans. The parser builds it and
 * elab.c reads it; nothing rewrites it. A chain `a -> f -> g` is a CALL of g
 * whose `piped` is the CALL of f: elab.c walks chains iteratively, so a
 * 10,000-layer chain costs no stack.
 */
#ifndef NNC_AST_H
#define NNC_AST_H

#include "arena.h"
#include "diag.h"

typedef enum {
	AST_NUM,
	AST_STR,
	AST_BOOL,
	AST_IDENT,
	AST_LIST,	/* [a, b, ...] */
	AST_CALL,	/* name(args), name alone after '->', or piped -> name(args) */
	AST_BINOP,	/* lhs op rhs, op one of + - * / */
	AST_NEG,	/* -lhs */
} AstExprKind;

typedef struct AstExpr AstExpr;

typedef struct AstArg {
	const char *key;	/* NULL for a positional argument */
	SrcLoc key_loc;
	AstExpr *val;
} AstArg;

struct AstExpr {
	AstExprKind kind;
	SrcLoc loc;		/* the whole expression; for a call, its name */
	double num;
	int is_int;		/* a literal without '.' or exponent, or arithmetic on such */
	int b;
	const char *str;	/* string literal, identifier, or callee name */
	AstExpr **items;
	int nitems;
	AstExpr *piped;		/* CALL: the value that '->' feeds in as first argument */
	AstArg *args;
	int nargs;
	int op;
	AstExpr *lhs, *rhs;
	int depth;		/* nesting depth, not counting chains */
};

typedef enum {
	ST_INPUT,	/* input name: type */
	ST_TARGET,	/* target name: type */
	ST_ASSIGN,	/* name = expr */
	ST_OUTPUT,	/* output a, b */
	ST_LOSS,	/* loss expr */
	ST_RETURN,	/* return expr */
	ST_REPEAT,	/* repeat N { body } */
} AstStmtKind;

typedef struct AstStmt AstStmt;

struct AstStmt {
	AstStmtKind kind;
	SrcLoc loc;		/* the keyword, or the name for an assignment */
	const char *name;
	SrcLoc name_loc;
	AstExpr *expr;
	const char **names;	/* output */
	SrcLoc *name_locs;
	int nnames;
	AstStmt **body;		/* repeat */
	int nbody;
};

typedef struct AstParam {
	const char *name;
	SrcLoc loc;
	AstExpr *def;		/* default value, or NULL */
} AstParam;

typedef enum { ITEM_MODEL, ITEM_BLOCK, ITEM_TRAIN } AstItemKind;

typedef struct AstItem {
	AstItemKind kind;
	SrcLoc loc;		/* the keyword */
	const char *name;	/* NULL for `train { }` */
	SrcLoc name_loc;
	AstParam *params;	/* block */
	int nparams;
	AstStmt **body;
	int nbody;
	SrcLoc end_loc;		/* the closing brace */
} AstItem;

typedef struct AstFile {
	const SrcFile *src;
	AstItem **items;
	int nitems;
} AstFile;

/* a growable array of pointers in the arena, for the parser's lists */
typedef struct AstVec {
	void **v;
	int n, cap;
} AstVec;

void ast_vec_push(Arena *a, AstVec *v, void *item);

AstExpr *ast_new_expr(Arena *a, AstExprKind k, SrcLoc loc);
AstExpr *ast_new_binop(Arena *a, int op, AstExpr *l, AstExpr *r, SrcLoc loc);
AstStmt *ast_new_stmt(Arena *a, AstStmtKind k, SrcLoc loc);

const char *ast_kind_name(const AstExpr *e);	/* "a number", "a list", ... for messages */

/* lexes and parses; syntax errors go to the current diag sink */
AstFile *ast_parse(Arena *a, const SrcFile *src);

/* keywords, for "did you mean" */
extern const char *const ast_keywords[];
extern const int ast_nkeywords;

#endif
