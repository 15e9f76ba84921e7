/*
 * ast.c: builders for the nodes the parser makes, and their names in
 * messages. Nodes live in the compilation's arena.
 */
#include "ast.h"

const char *const ast_keywords[] = {
	"model", "block", "input", "target", "output", "loss", "return", "repeat", "train",
	"true", "false",
};
const int ast_nkeywords = sizeof ast_keywords / sizeof ast_keywords[0];

void ast_vec_push(Arena *a, AstVec *v, void *item)
{
	if (v->n == v->cap) {
		int cap = v->cap ? v->cap * 2 : 4;
		v->v = arena_grow(a, v->v, (size_t)v->n, (size_t)cap, sizeof(void *));
		v->cap = cap;
	}
	v->v[v->n++] = item;
}

AstExpr *ast_new_expr(Arena *a, AstExprKind k, SrcLoc loc)
{
	AstExpr *e = arena_alloc(a, sizeof *e);
	e->kind = k;
	e->loc = loc;
	e->depth = 1;
	return e;
}

AstExpr *ast_new_binop(Arena *a, int op, AstExpr *l, AstExpr *r, SrcLoc loc)
{
	AstExpr *e = ast_new_expr(a, AST_BINOP, loc);
	e->op = op;
	e->lhs = l;
	e->rhs = r;
	e->is_int = l->is_int && r->is_int;
	e->depth = 1 + (l->depth > r->depth ? l->depth : r->depth);
	return e;
}

AstStmt *ast_new_stmt(Arena *a, AstStmtKind k, SrcLoc loc)
{
	AstStmt *s = arena_alloc(a, sizeof *s);
	s->kind = k;
	s->loc = loc;
	return s;
}

const char *ast_kind_name(const AstExpr *e)
{
	switch (e->kind) {
	case AST_NUM: return e->is_int ? "a whole number" : "a number";
	case AST_STR: return "a string";
	case AST_BOOL: return "a boolean";
	case AST_LIST: return "a list";
	case AST_IDENT: return "a name";
	case AST_CALL: return "a call";
	case AST_BINOP:
	case AST_NEG: return "an expression";
	}
	return "an expression";
}
