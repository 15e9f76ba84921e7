/*
 * parser.y: the grammar of the nn language, as a pure bison parser with
 * locations. Actions only build AST nodes (ast.h). Newlines end statements;
 * the token filter at the end of this file drops the ones that cannot end
 * one (inside brackets, after '->', before a line that starts with '->' or
 * '{'),
 * and adds one before '}' and at the end of the file, so `{ a = b }` on one
 * line parses. A syntax error skips to the end of its line, so one run
 * reports every broken line.
 */
%code requires {
#include "ast.h"
#include "lexer_extra.h"
typedef struct Parser Parser;
}

%code provides {
int lex_raw(YYSTYPE *lval, YYLTYPE *lloc, void *scanner);
}

%code {
#include <stdlib.h>
#include <string.h>

enum { MAX_DEPTH = 200, MAX_OPEN = 64, MAX_EXPECTED = 32 };

typedef struct TokInfo {
	int tok;
	const char *str;
	YYLTYPE loc;
	int stmt_start;	/* first token of a statement */
} TokInfo;

struct Parser {
	Arena *arena;
	const SrcFile *src;
	void *scanner;
	LexExtra extra;
	AstVec items;
	TokInfo last, prev;	/* the last two tokens handed to the parser */
	int held;		/* a token read ahead, to hand out next */
	YYSTYPE held_val;
	YYLTYPE held_loc;
	int depth;		/* open '(' and '[' */
	YYLTYPE open[MAX_OPEN];
	char open_ch[MAX_OPEN];
	int braces;		/* open '{' */
	YYLTYPE brace[MAX_OPEN];
	int too_deep;		/* reported once */
	int recovering;		/* after a syntax error, until the next end of line */
	int skip_item;		/* 1 or 2 (its '{' already read): skip a broken section or body to its '}' */
	int stmt_line;		/* the line where the current statement starts */
	int stmt_tok;		/* and its first token */
	int stray_close;	/* the last token was a ')' or ']' with no bracket open */
};

static int yylex(YYSTYPE *lval, YYLTYPE *lloc, Parser *p);
static void yyerror(YYLTYPE *lloc, Parser *p, const char *msg);

static SrcLoc L(Parser *p, YYLTYPE l)
{
	SrcLoc s = { p->src, l.first_line, l.first_column,
		     l.last_line == l.first_line ? l.last_column - l.first_column : 1 };
	if (s.len < 1)
		s.len = 1;
	return s;
}

/* a call's span runs from its name to its ')' when both are on one line */
static SrcLoc span(Parser *p, YYLTYPE from, YYLTYPE to)
{
	YYLTYPE l = from;
	if (to.last_line == from.first_line)
		l.last_column = to.last_column;
	return L(p, l);
}

static AstExpr *depth_check(Parser *p, AstExpr *e)
{
	if (e->depth > MAX_DEPTH && !p->too_deep) {
		p->too_deep = 1;
		diag_error(e->loc, "this expression is nested more than %d levels deep", MAX_DEPTH);
		diag_hint("split it into several statements with names");
	}
	return e;
}

static AstExpr *call(Parser *p, const char *name, YYLTYPE nl, YYLTYPE end, AstVec *args)
{
	AstExpr *e = ast_new_expr(p->arena, AST_CALL, span(p, nl, end));
	e->str = name;
	if (args) {
		e->nargs = args->n;
		e->args = arena_alloc(p->arena, sizeof(AstArg) * (size_t)(args->n ? args->n : 1));
		for (int i = 0; i < args->n; i++) {
			e->args[i] = *(AstArg *)args->v[i];
			if (e->args[i].val->depth + 1 > e->depth)
				e->depth = e->args[i].val->depth + 1;
		}
	}
	return depth_check(p, e);
}

static AstStmt **stmts(Parser *p, AstVec *v, int *n)
{
	(void)p;
	*n = v->n;
	return (AstStmt **)v->v;
}
}

%define api.pure full
%define parse.error custom
%define parse.lac full
%locations
%param { Parser *p }

%union {
	struct { double v; int is_int; } number;
	int boolean;
	const char *str;
	AstExpr *expr;
	AstStmt *stmt;
	AstItem *item;
	AstArg *arg;
	AstParam *param;
	AstVec vec;
}

%token MODEL "'model'" BLOCK "'block'" INPUT "'input'" TARGET "'target'"
%token OUTPUT "'output'" LOSS "'loss'" RETURN "'return'" REPEAT "'repeat'" TRAIN "'train'"
%token <boolean> BOOL "'true' or 'false'"
%token <str> IDENT "name" STRING "string"
%token <number> NUMBER "number"
%token ARROW "'->'" NL "end of line"

%type <expr> expr primary callee
%type <stmt> stmt
%type <item> item
%type <arg> arg
%type <param> param
%type <vec> stmts args args_opt exprs list_opt params params_opt names

%precedence ARROW
%left '+' '-'
%left '*' '/'
%precedence NEG

%%

file
	: items
	;

items
	: %empty
	| items NL
	| items item NL	{ ast_vec_push(p->arena, &p->items, $2); }
	| items error NL	{ yyerrok; }
	;

item
	: MODEL IDENT '{' stmts '}' {
		$$ = arena_alloc(p->arena, sizeof *$$);
		$$->kind = ITEM_MODEL; $$->loc = L(p, @1); $$->name = $2; $$->name_loc = L(p, @2);
		$$->body = stmts(p, &$4, &$$->nbody); $$->end_loc = L(p, @5);
	}
	| BLOCK IDENT '(' params_opt ')' '{' stmts '}' {
		$$ = arena_alloc(p->arena, sizeof *$$);
		$$->kind = ITEM_BLOCK; $$->loc = L(p, @1); $$->name = $2; $$->name_loc = L(p, @2);
		$$->nparams = $4.n;
		$$->params = arena_alloc(p->arena, sizeof(AstParam) * (size_t)($4.n ? $4.n : 1));
		for (int i = 0; i < $4.n; i++)
			$$->params[i] = *(AstParam *)$4.v[i];
		$$->body = stmts(p, &$7, &$$->nbody); $$->end_loc = L(p, @8);
	}
	| TRAIN '{' stmts '}' {
		$$ = arena_alloc(p->arena, sizeof *$$);
		$$->kind = ITEM_TRAIN; $$->loc = L(p, @1);
		$$->body = stmts(p, &$3, &$$->nbody); $$->end_loc = L(p, @4);
	}
	| TRAIN IDENT '{' stmts '}' {
		$$ = arena_alloc(p->arena, sizeof *$$);
		$$->kind = ITEM_TRAIN; $$->loc = L(p, @1); $$->name = $2; $$->name_loc = L(p, @2);
		$$->body = stmts(p, &$4, &$$->nbody); $$->end_loc = L(p, @5);
	}
	;

params_opt
	: %empty	{ $$ = (AstVec){0}; }
	| params
	| params ','
	;

params
	: param	{ $$ = (AstVec){0}; ast_vec_push(p->arena, &$$, $1); }
	| params ',' param	{ $$ = $1; ast_vec_push(p->arena, &$$, $3); }
	;

param
	: IDENT	{ $$ = arena_alloc(p->arena, sizeof *$$); $$->name = $1; $$->loc = L(p, @1); }
	| IDENT '=' expr {
		$$ = arena_alloc(p->arena, sizeof *$$); $$->name = $1; $$->loc = L(p, @1); $$->def = $3;
	}
	;

stmts
	: %empty	{ $$ = (AstVec){0}; }
	| stmts NL
	| stmts stmt NL	{ $$ = $1; ast_vec_push(p->arena, &$$, $2); }
	| stmts error NL	{ $$ = $1; yyerrok; }
	;

stmt
	: INPUT IDENT ':' expr {
		$$ = ast_new_stmt(p->arena, ST_INPUT, L(p, @1)); $$->name = $2; $$->name_loc = L(p, @2); $$->expr = $4;
	}
	| TARGET IDENT ':' expr {
		$$ = ast_new_stmt(p->arena, ST_TARGET, L(p, @1)); $$->name = $2; $$->name_loc = L(p, @2); $$->expr = $4;
	}
	| IDENT '=' expr {
		$$ = ast_new_stmt(p->arena, ST_ASSIGN, L(p, @1)); $$->name = $1; $$->name_loc = L(p, @1); $$->expr = $3;
	}
	| OUTPUT names {
		$$ = ast_new_stmt(p->arena, ST_OUTPUT, L(p, @1));
		$$->nnames = $2.n / 2;
		$$->names = arena_alloc(p->arena, sizeof(char *) * (size_t)$$->nnames);
		$$->name_locs = arena_alloc(p->arena, sizeof(SrcLoc) * (size_t)$$->nnames);
		for (int i = 0; i < $$->nnames; i++) {
			$$->names[i] = $2.v[2 * i];
			$$->name_locs[i] = *(SrcLoc *)$2.v[2 * i + 1];
		}
	}
	| LOSS expr	{ $$ = ast_new_stmt(p->arena, ST_LOSS, L(p, @1)); $$->expr = $2; }
	| RETURN expr	{ $$ = ast_new_stmt(p->arena, ST_RETURN, L(p, @1)); $$->expr = $2; }
	| REPEAT expr '{' stmts '}' {
		$$ = ast_new_stmt(p->arena, ST_REPEAT, L(p, @1)); $$->expr = $2;
		$$->body = stmts(p, &$4, &$$->nbody);
	}
	;

names
	: IDENT {
		$$ = (AstVec){0};
		SrcLoc *l = arena_alloc(p->arena, sizeof *l); *l = L(p, @1);
		ast_vec_push(p->arena, &$$, (void *)$1); ast_vec_push(p->arena, &$$, l);
	}
	| names ',' IDENT {
		$$ = $1;
		SrcLoc *l = arena_alloc(p->arena, sizeof *l); *l = L(p, @3);
		ast_vec_push(p->arena, &$$, (void *)$3); ast_vec_push(p->arena, &$$, l);
	}
	;

expr
	: expr ARROW callee {
		$$ = $3; $$->piped = $1;
		if ($1->depth > $$->depth)
			$$->depth = $1->depth;
	}
	| expr '+' expr	{ $$ = depth_check(p, ast_new_binop(p->arena, '+', $1, $3, L(p, @2))); }
	| expr '-' expr	{ $$ = depth_check(p, ast_new_binop(p->arena, '-', $1, $3, L(p, @2))); }
	| expr '*' expr	{ $$ = depth_check(p, ast_new_binop(p->arena, '*', $1, $3, L(p, @2))); }
	| expr '/' expr	{ $$ = depth_check(p, ast_new_binop(p->arena, '/', $1, $3, L(p, @2))); }
	| '-' expr %prec NEG {
		$$ = ast_new_expr(p->arena, AST_NEG, L(p, @1)); $$->lhs = $2;
		$$->is_int = $2->is_int; $$->depth = $2->depth + 1;
		depth_check(p, $$);
	}
	| primary
	;

callee
	: IDENT	{ $$ = call(p, $1, @1, @1, NULL); }
	| IDENT '(' args_opt ')'	{ $$ = call(p, $1, @1, @4, &$3); }
	;

primary
	: NUMBER	{ $$ = ast_new_expr(p->arena, AST_NUM, L(p, @1)); $$->num = $1.v; $$->is_int = $1.is_int; }
	| STRING	{ $$ = ast_new_expr(p->arena, AST_STR, L(p, @1)); $$->str = $1; }
	| BOOL	{ $$ = ast_new_expr(p->arena, AST_BOOL, L(p, @1)); $$->b = $1; }
	| IDENT	{ $$ = ast_new_expr(p->arena, AST_IDENT, L(p, @1)); $$->str = $1; }
	| IDENT '(' args_opt ')'	{ $$ = call(p, $1, @1, @4, &$3); }
	| '[' list_opt ']' {
		$$ = ast_new_expr(p->arena, AST_LIST, span(p, @1, @3));
		$$->nitems = $2.n; $$->items = (AstExpr **)$2.v;
		for (int i = 0; i < $2.n; i++)
			if ($$->items[i]->depth + 1 > $$->depth)
				$$->depth = $$->items[i]->depth + 1;
		depth_check(p, $$);
	}
	| '(' expr ')'	{ $$ = $2; }
	;

list_opt
	: %empty	{ $$ = (AstVec){0}; }
	| exprs
	| exprs ','
	;

exprs
	: expr	{ $$ = (AstVec){0}; ast_vec_push(p->arena, &$$, $1); }
	| exprs ',' expr	{ $$ = $1; ast_vec_push(p->arena, &$$, $3); }
	;

args_opt
	: %empty	{ $$ = (AstVec){0}; }
	| args
	| args ','
	;

args
	: arg	{ $$ = (AstVec){0}; ast_vec_push(p->arena, &$$, $1); }
	| args ',' arg	{ $$ = $1; ast_vec_push(p->arena, &$$, $3); }
	;

arg
	: expr	{ $$ = arena_alloc(p->arena, sizeof *$$); $$->val = $1; }
	| IDENT '=' expr {
		$$ = arena_alloc(p->arena, sizeof *$$); $$->key = $1; $$->key_loc = L(p, @1); $$->val = $3;
	}
	;

%%

#include "lexer.h"

/* tokens after which a newline cannot end the statement */
static int continues(int tok)
{
	return tok == 0 || tok == NL || tok == ARROW || tok == '+' || tok == '-' || tok == '*' ||
	       tok == '/' || tok == ',' || tok == '=' || tok == ':' || tok == '{' || tok == '(' ||
	       tok == '[';
}

static int next_raw(Parser *p, YYSTYPE *lval, YYLTYPE *lloc)
{
	if (p->held >= 0) {
		int t = p->held;
		*lval = p->held_val;
		*lloc = p->held_loc;
		p->held = -1;
		return t;
	}
	return lex_raw(lval, lloc, p->scanner);
}

static void hold(Parser *p, int tok, YYSTYPE *lval, YYLTYPE *lloc)
{
	p->held = tok;
	p->held_val = *lval;
	p->held_loc = *lloc;
}

static int give(Parser *p, int tok, YYSTYPE *lval, YYLTYPE *lloc)
{
	p->prev = p->last;
	p->last.tok = tok;
	p->last.loc = *lloc;
	p->last.str = tok == IDENT ? lval->str : NULL;
	p->last.stmt_start = p->prev.tok == 0 || p->prev.tok == NL || p->prev.tok == '{';
	if (p->last.stmt_start) {
		p->stmt_line = lloc->first_line;
		p->stmt_tok = tok;
	}
	if (tok == NL)
		p->recovering = 0;
	switch (tok) {
	case '(':
	case '[':
		if (p->recovering)
			break;	/* the broken line's brackets must not swallow the next lines */
		if (p->depth < MAX_OPEN) {
			p->open[p->depth] = *lloc;
			p->open_ch[p->depth] = (char)tok;
		}
		p->depth++;
		break;
	case ')':
	case ']':
		p->stray_close = p->depth == 0;
		if (p->depth > 0)
			p->depth--;
		break;
	case '{':
		if (p->braces < MAX_OPEN)
			p->brace[p->braces] = *lloc;
		p->braces++;
		break;
	case '}':
		if (p->braces > 0)
			p->braces--;
		break;
	}
	return tok;
}

/*
 * After a misspelled item keyword (`modle m {`) or a broken line that opens a
 * body, the body would only give more errors: drop its tokens up to the '}'
 * that closes it (the section's '}' when its '{' is missing), or up to the
 * next model, block or train. Returns the token to go on with.
 */
static int skip_item(Parser *p, YYSTYPE *lval, YYLTYPE *lloc)
{
	int open = p->skip_item - 1;	/* 2: the item's '{' was already read */
	p->skip_item = 0;
	for (int prev = 0;; ) {
		int tok = next_raw(p, lval, lloc);
		if (tok == 0)
			return tok;
		if (open == 0 && prev == NL && (tok == MODEL || tok == BLOCK || tok == TRAIN)) {
			hold(p, tok, lval, lloc);	/* the next item: its '{' was missing here */
			return NL;
		}
		if (tok == '{')
			open++;
		else if (tok == '}' && --open <= 0)
			return NL;	/* its '}', even when its '{' was missing */
		prev = tok;
	}
}

/* newline handling: see the comment at the top of this file */
static int yylex(YYSTYPE *lval, YYLTYPE *lloc, Parser *p)
{
	for (;;) {
		int tok = p->skip_item ? skip_item(p, lval, lloc) : next_raw(p, lval, lloc);
		if (tok == '{' && p->recovering) {
			p->skip_item = 2;	/* a body opened on a broken line: skip it whole */
			tok = skip_item(p, lval, lloc);
		}
		if (tok == 0) {
			/* the end of the file is where the scanner stopped */
			lloc->first_line = lloc->last_line = p->extra.line;
			lloc->first_column = p->extra.col;
			lloc->last_column = p->extra.col + 1;
		}
		if (tok == NL) {
			if (p->depth > 0 || continues(p->last.tok))
				continue;
			YYSTYPE v;
			YYLTYPE l;
			int t;
			do
				t = next_raw(p, &v, &l);
			while (t == NL);
			hold(p, t, &v, &l);
			if (t == ARROW || t == '+' || t == '*' || t == '{')
				continue;	/* the statement goes on; '{' on its own line opens the body */
			return give(p, NL, lval, lloc);
		}
		if ((tok == '}' || tok == 0) && p->last.tok != NL && p->last.tok != '{' &&
		    p->last.tok != 0) {
			hold(p, tok, lval, lloc);
			lloc->last_line = lloc->first_line;
			lloc->last_column = lloc->first_column;
			return give(p, NL, lval, lloc);
		}
		return give(p, tok, lval, lloc);
	}
}

static void describe(Parser *p, char *buf, size_t n, int tok)
{
	switch (tok) {
	case IDENT: snprintf(buf, n, "name '%.60s'", p->last.str); break;
	case NUMBER: snprintf(buf, n, "number"); break;
	case STRING: snprintf(buf, n, "string"); break;
	case NL: snprintf(buf, n, "end of line"); break;
	case 0: snprintf(buf, n, "end of file"); break;
	default: snprintf(buf, n, "%s", yysymbol_name(YYTRANSLATE(tok)));
	}
}

static const char *const stmt_keywords[] = { "input", "target", "output", "loss", "return", "repeat" };

/* an identifier that opens a statement but is not followed by '=': a mistyped keyword */
static int report_bad_statement(Parser *p, int expects_assign)
{
	if (!expects_assign || p->prev.tok != IDENT || !p->prev.stmt_start || p->last.tok == '=')
		return 0;
	SrcLoc at = L(p, p->prev.loc);
	const char *kw = diag_closest(p->prev.str, stmt_keywords, 6);
	if (kw) {
		diag_error(at, "unknown statement '%s'", p->prev.str);
		diag_hint("did you mean '%s'?", kw);
	} else {
		diag_error(at, "expected '=' after '%s'", p->prev.str);
		diag_hint("a statement is 'name = expression' or starts with input, target, output, loss, return or repeat");
	}
	return 1;
}

static int is_stmt_keyword(int tok)
{
	return tok == INPUT || tok == TARGET || tok == OUTPUT || tok == LOSS || tok == RETURN || tok == REPEAT;
}

/* `h = x ->` at the end of a line: the operator waits for something that never comes */
static int report_dangling(Parser *p)
{
	int t = p->prev.tok;
	if (p->last.loc.first_line <= p->prev.loc.last_line)
		return 0;
	SrcLoc at = L(p, p->prev.loc);
	if (t == ARROW) {
		diag_error(at, "'->' at the end of the line needs a layer after it");
		diag_hint("add the layer, like '-> relu', or remove the '->'");
	} else if (t == '+' || t == '-' || t == '*' || t == '/' || t == '=') {
		diag_error(at, "'%c' at the end of the line needs a value after it", t);
	} else if (t == ':') {
		diag_error(at, "':' at the end of the line needs a shape or class(K) after it");
	} else if (t == ',') {
		diag_error(at, "',' at the end of the line needs another item after it");
		diag_hint("remove the ','");
	} else {
		return 0;
	}
	return 1;
}

/* `loss = ...`, `input = 3`: a keyword where a name should be */
static int report_keyword_as_name(Parser *p)
{
	int t = p->prev.tok;
	if (p->last.tok != '=' || !(is_stmt_keyword(t) || t == MODEL || t == BLOCK || t == TRAIN))
		return 0;
	char kw[128];
	describe(p, kw, sizeof kw, t);
	diag_error(L(p, p->prev.loc), "%s is a keyword, so it cannot be a name", kw);
	if (t == LOSS)
		diag_hint("to give the model's loss, drop the '=': 'loss cross_entropy(logits, y)'");
	else
		diag_hint("choose another name");
	return 1;
}

/* `x -> (f)`, `x -> 3`: what follows '->' must name a layer or a block */
static int report_after_arrow(Parser *p)
{
	if (p->prev.tok != ARROW)
		return 0;
	char got[128];
	describe(p, got, sizeof got, p->last.tok);
	diag_error(L(p, p->last.loc), "'->' must be followed by the name of a layer or block, not %s", got);
	diag_hint("for example 'x -> dense(10)' or 'x -> relu'");
	return 1;
}

/* `model m { ... train { } }`: sections do not nest */
static int report_nested_item(Parser *p)
{
	int t = p->last.tok;
	if (p->braces < 1 || !(t == MODEL || t == BLOCK || t == TRAIN))
		return 0;
	char kw[128];
	describe(p, kw, sizeof kw, t);
	diag_error(L(p, p->last.loc), "%s cannot be inside another model, block or train section", kw);
	diag_hint("put it at the top level, after the '}' that closes the section above; or is a '}' missing?");
	return 1;
}

/* `output` alone on its line */
static int report_empty_statement(Parser *p)
{
	if (!is_stmt_keyword(p->prev.tok) || p->last.tok != NL)
		return 0;
	static const char *const what[][2] = {
		{ "input", "a name and a shape: 'input x: [784]'" },
		{ "target", "a name and a type: 'target y: class(10)'" },
		{ "output", "the names of the results: 'output logits'" },
		{ "loss", "what to minimise: 'loss cross_entropy(logits, y)'" },
		{ "return", "the value the block gives back: 'return h'" },
		{ "repeat", "a count and statements: 'repeat 3 { h = h -> relu }'" },
	};
	int k = p->prev.tok == INPUT ? 0 : p->prev.tok == TARGET ? 1 : p->prev.tok == OUTPUT ? 2 :
		p->prev.tok == LOSS ? 3 : p->prev.tok == RETURN ? 4 : 5;
	diag_error(L(p, p->prev.loc), "'%s' needs %s", what[k][0], what[k][1]);
	return 1;
}

/* where a model, block or train section should start */
static int report_bad_item(Parser *p, int expects_item)
{
	if (!expects_item || p->prev.tok == IDENT || p->prev.tok == '}' || p->prev.tok == ')')
		return 0;	/* an item ended, then something more on its line: not this case */
	SrcLoc at = L(p, p->last.loc);
	static const char *const items[] = { "model", "block", "train" };
	if (p->last.tok == IDENT) {
		const char *kw = diag_closest(p->last.str, items, 3);
		diag_error(at, "expected 'model', 'block' or 'train' but got '%.60s'", p->last.str);
		if (kw) {
			diag_hint("did you mean '%s'?", kw);
			p->skip_item = 1;
		} else {
			diag_hint("a file holds models, blocks and train sections; statements go inside 'model NAME { ... }'");
		}
	} else if (is_stmt_keyword(p->last.tok)) {
		char got[128];
		describe(p, got, sizeof got, p->last.tok);
		diag_error(at, "%s is a statement, but it is outside any model or block", got);
		diag_hint("statements go inside 'model NAME { ... }' or 'block NAME(x) { ... }'; is a '}' too early?");
	} else if (p->last.tok == '}') {
		diag_error(at, "this '}' closes nothing");
		diag_hint("remove it, or look for an extra '}' above");
	} else {
		return 0;
	}
	return 1;
}

/*
 * A token on a line after an open '(' or '[': most likely the bracket was
 * never closed, and newlines inside brackets do not end the statement.
 */
static int report_unclosed(Parser *p, SrcLoc at)
{
	if (p->depth < 1 || p->depth > MAX_OPEN)
		return 0;
	YYLTYPE o = p->open[p->depth - 1];
	char ch = p->open_ch[p->depth - 1];
	if (p->last.tok == NL) {
		/* inside brackets only the end added before a '}' or the end of the file */
		diag_error(L(p, o), "this '%c' is not closed", ch);
	} else if (o.first_line < at.line) {
		char got[128];
		describe(p, got, sizeof got, p->last.tok);
		diag_error(at, "unexpected %s: the '%c' on line %d is not closed", got, ch, o.first_line);
		diag_note(L(p, o), "this '%c' is not closed", ch);
	} else {
		return 0;
	}
	diag_hint("add the missing '%c'", ch == '(' ? ')' : ']');
	return 1;
}

/* the tokens that may start an expression, which messages call "an expression" */
static int starts_expr(yysymbol_kind_t k)
{
	return k == YYSYMBOL_NUMBER || k == YYSYMBOL_STRING || k == YYSYMBOL_BOOL || k == YYSYMBOL_IDENT ||
	       k == YYTRANSLATE('-') || k == YYTRANSLATE('[') || k == YYTRANSLATE('(');
}

static const char *sym_desc(yysymbol_kind_t k)
{
	switch (k) {
	case YYSYMBOL_IDENT: return "a name";
	case YYSYMBOL_NUMBER: return "a number";
	case YYSYMBOL_STRING: return "a string";
	case YYSYMBOL_NL: return "the end of the line";
	case YYSYMBOL_YYEOF: return "the end of the file";
	default: return yysymbol_name(k);
	}
}

/* "a name or '('": what the parser could have taken; 0 when the list is too long to help */
static int expected(const yysymbol_kind_t *exp, int n, char *buf, size_t size)
{
	const char *w[MAX_EXPECTED + 1];
	int m = 0, nexpr = 0, end = 0, item = 0;
	for (int i = 0; i < n; i++) {
		nexpr += starts_expr(exp[i]);
		end |= exp[i] == YYSYMBOL_NL;
		item |= exp[i] == YYSYMBOL_MODEL;
	}
	int as_expr = nexpr >= 5;	/* every way to start one: say "an expression" */
	if (as_expr)
		w[m++] = "an expression";
	for (int i = 0; i < n; i++) {
		yysymbol_kind_t k = exp[i];
		int op = k == YYSYMBOL_ARROW || k == YYTRANSLATE('+') || k == YYTRANSLATE('-') ||
			 k == YYTRANSLATE('*') || k == YYTRANSLATE('/');
		if (item && (k == YYSYMBOL_NL || k == YYSYMBOL_YYEOF))
			continue;	/* between sections, blank lines and the end go without saying */
		if (!(as_expr && starts_expr(k)) && !(end && op))	/* "the end of the line" says enough */
			w[m++] = sym_desc(k);
	}
	if (n == 0 || m > 5)
		return 0;
	size_t k = 0;
	buf[0] = 0;
	for (int i = 0; i < m && k < size; i++)
		k += (size_t)snprintf(buf + k, size - k, "%s%s", i == 0 ? "" : i == m - 1 ? " or " : ", ", w[i]);
	return 1;
}

/* hints for a syntax error in the line that opens a model or block */
static void header_hint(Parser *p)
{
	int item = p->stmt_tok == MODEL || p->stmt_tok == BLOCK || p->stmt_tok == TRAIN;
	if (!item || p->braces != (p->last.tok == '{'))
		return;
	if (p->prev.tok == MODEL)
		diag_hint("a model needs a name: 'model NAME { ... }'");
	else if (p->prev.tok == BLOCK)
		diag_hint("a block needs a name and parameters: 'block NAME(x, ...) { ... }'");
	else if (p->last.tok == NL)
		diag_hint("open its body with '{' at the end of this line");
}

/*
 * What to skip after a syntax error. A broken line that opens a body (`model
 * {`, `block f(x y) {`, `repeat {`) takes the body with it: its statements
 * would only be reported again as out of place, and its '}' would close the
 * wrong thing. A broken model or block header without its '{' skips to the
 * section's '}'. Anything else skips to the end of the line.
 */
static void skip_after_error(Parser *p)
{
	int item = p->stmt_tok == MODEL || p->stmt_tok == BLOCK || p->stmt_tok == TRAIN;
	if (p->skip_item)
		return;	/* decided already */
	if (p->last.tok == '{') {
		p->braces--;	/* given, but the parser will not see its '}' */
		p->skip_item = 2;
	} else if (item && p->braces == 0) {
		p->skip_item = 1;
	}
}

static int yyreport_syntax_error(const yypcontext_t *ctx, Parser *p)
{
	yysymbol_kind_t exp[MAX_EXPECTED];
	int n = yypcontext_expected_tokens(ctx, exp, MAX_EXPECTED);	/* 0 when there are more */
	int expects_assign = 0, expects_item = 0, expects_brace = 0;
	for (int i = 0; i < n; i++) {
		expects_assign |= exp[i] == YYTRANSLATE('=');
		expects_item |= exp[i] == YYSYMBOL_MODEL;
		expects_brace |= exp[i] == YYTRANSLATE('{');
	}
	SrcLoc at = L(p, *yypcontext_location(ctx));
	p->recovering = 1;
	if (p->extra.bad_line > 0 && p->extra.bad_line >= p->stmt_line && p->extra.bad_line <= at.line) {
		/* the lexical error reported on this statement explains this one */
	} else if (p->last.tok == 0 && p->braces > 0 && p->braces <= MAX_OPEN) {
		diag_error(at, "the file ends before a '{' is closed");
		diag_note(L(p, p->brace[p->braces - 1]), "this '{' is not closed");
		diag_hint("add the missing '}'");
	} else if ((p->last.tok == ')' || p->last.tok == ']') && p->stray_close) {
		diag_error(at, "this '%c' closes nothing", p->last.tok);
		diag_hint("remove it, or look for a missing '%c' before it", p->last.tok == ')' ? '(' : '[');
	} else if (!report_bad_statement(p, expects_assign) && !report_bad_item(p, expects_item) &&
		   !report_keyword_as_name(p) && !report_nested_item(p) && !report_empty_statement(p) &&
		   !report_dangling(p) && !report_after_arrow(p) && !report_unclosed(p, at)) {
		char got[128], want[512];
		describe(p, got, sizeof got, p->last.tok);
		if (p->stmt_tok == REPEAT && expects_brace && p->last.tok != NL)
			diag_error(at, "unexpected %s; the statements to repeat go in braces: 'repeat 3 { h = h -> relu }'", got);
		else if (expected(exp, n, want, sizeof want))
			diag_error(at, "unexpected %s; expected %s", got, want);
		else
			diag_error(at, "unexpected %s", got);
		header_hint(p);
	}
	skip_after_error(p);
	p->depth = 0;	/* let newlines end lines again, so recovery finds the next one */
	return 0;
}

static void yyerror(YYLTYPE *lloc, Parser *p, const char *msg)
{
	/* reached only when bison's stack is exhausted: the nesting is absurd */
	(void)msg;
	diag_error(L(p, *lloc), "the file is nested too deeply to parse");
	diag_hint("split deep expressions into several statements");
}

static int valid_text(const SrcFile *f, SrcLoc *bad)
{
	const unsigned char *s = (const unsigned char *)f->text;
	int line = 1, col = 1;
	for (size_t i = 0; i < f->len; col++) {
		unsigned c = s[i];
		int extra = c < 0x80 ? 0 : (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2 :
			    (c & 0xf8) == 0xf0 ? 3 : -1;
		int ok = c != 0 && extra >= 0 && i + (size_t)extra < f->len;
		for (int k = 1; ok && k <= extra; k++)
			ok = (s[i + (size_t)k] & 0xc0) == 0x80;
		if (!ok) {
			*bad = (SrcLoc){ f, line, col, 1 };
			return c;
		}
		if (c == '\n') {
			line++;
			col = 0;
		}
		i += (size_t)extra + 1;
	}
	return -1;
}

AstFile *ast_parse(Arena *a, const SrcFile *src)
{
	AstFile *file = arena_alloc(a, sizeof *file);
	file->src = src;
	SrcLoc bad;
	int c = valid_text(src, &bad);
	if (c >= 0) {
		if (c == 0)
			diag_error(bad, "%s is not a text file: it holds a NUL byte here", src->name);
		else
			diag_error(bad, "%s is not UTF-8 text: the byte 0x%02x here is not valid", src->name, c);
		diag_hint("nnc reads models written in the nn language, as UTF-8 text; is this the right file?");
		return file;
	}
	Parser p = { .arena = a, .src = src, .held = -1 };
	p.extra = (LexExtra){ .arena = a, .src = src, .line = 1, .col = 1 };
	nnllex_init_extra(&p.extra, (yyscan_t *)&p.scanner);
	YY_BUFFER_STATE b = nnl_scan_bytes(src->text, (int)src->len, p.scanner);
	yyparse(&p);
	nnl_delete_buffer(b, p.scanner);
	nnllex_destroy(p.scanner);
	file->items = (AstItem **)p.items.v;
	file->nitems = p.items.n;
	return file;
}
