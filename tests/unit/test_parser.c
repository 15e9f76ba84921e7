/*
 * test_parser.c: the grammar (compiler/parser.y): the AST of chains and
 * operators, calls, lists, items and statements, and error recovery that
 * reports every broken line of a file in one run.
 */
#include <stdlib.h>

#include "support.h"

/* compiles src and fails unless the parse itself was clean (elaboration may fail) */
static Compile *parse_ok(const char *src)
{
	Compile *c = compile_string(src);
	if (c->failed_stage && !strcmp(c->failed_stage, "parse"))
		fail_msg("expected a clean parse, got:\n%s", c->diag.text ? c->diag.text : "");
	assert_non_null(c->ast);
	return c;
}

/* `r = EXPR` as the only statement of a model */
static Compile *parse_expr(const char *expr, const AstExpr **out)
{
	char src[512];
	snprintf(src, sizeof src, "model m {\n r = %s\n}\n", expr);
	Compile *c = parse_ok(src);
	assert_int_equal(c->ast->nitems, 1);
	assert_int_equal(c->ast->items[0]->nbody, 1);
	*out = c->ast->items[0]->body[0]->expr;
	return c;
}

static void assert_ident(const AstExpr *e, const char *name)
{
	assert_non_null(e);
	assert_int_equal(e->kind, AST_IDENT);
	assert_string_equal(e->str, name);
}

static void assert_call(const AstExpr *e, const char *name, int nargs)
{
	assert_non_null(e);
	assert_int_equal(e->kind, AST_CALL);
	assert_string_equal(e->str, name);
	assert_int_equal(e->nargs, nargs);
}

static void assert_binop(const AstExpr *e, int op)
{
	assert_non_null(e);
	assert_int_equal(e->kind, AST_BINOP);
	assert_int_equal(e->op, op);
}

static void test_chain_nests_leftmost_deepest(void **state)
{
	(void)state;
	const AstExpr *e;
	Compile *c = parse_expr("a -> f -> g(2) -> h", &e);
	assert_call(e, "h", 0);
	assert_call(e->piped, "g", 1);
	assert_float_equal(e->piped->args[0].val->num, 2, 0);
	assert_call(e->piped->piped, "f", 0);
	assert_ident(e->piped->piped->piped, "a");
	compile_free(c);
}

static void test_chain_may_start_with_a_call(void **state)
{
	(void)state;
	const AstExpr *e;
	Compile *c = parse_expr("concat(a, b) -> relu", &e);
	assert_call(e, "relu", 0);
	assert_call(e->piped, "concat", 2);
	assert_null(e->piped->piped);
	assert_ident(e->piped->args[0].val, "a");
	assert_ident(e->piped->args[1].val, "b");
	compile_free(c);
}

static void test_arrow_binds_looser_than_plus(void **state)
{
	(void)state;
	const AstExpr *e;
	/* `a + b -> f` pipes the sum: f(a + b) */
	Compile *c = parse_expr("a + b -> f", &e);
	assert_call(e, "f", 0);
	assert_binop(e->piped, '+');
	assert_ident(e->piped->lhs, "a");
	assert_ident(e->piped->rhs, "b");
	compile_free(c);

	/* `a -> f + b` adds b to f(a), and a later '->' pipes the sum */
	c = parse_expr("a -> f + b -> g", &e);
	assert_call(e, "g", 0);
	assert_binop(e->piped, '+');
	assert_call(e->piped->lhs, "f", 0);
	assert_ident(e->piped->lhs->piped, "a");
	assert_ident(e->piped->rhs, "b");
	compile_free(c);

	c = parse_expr("2 * a -> f", &e);
	assert_call(e, "f", 0);
	assert_binop(e->piped, '*');
	compile_free(c);
}

static void test_times_binds_tighter_than_plus(void **state)
{
	(void)state;
	const AstExpr *e;
	Compile *c = parse_expr("a + b * c", &e);
	assert_binop(e, '+');
	assert_ident(e->lhs, "a");
	assert_binop(e->rhs, '*');
	assert_ident(e->rhs->lhs, "b");
	assert_ident(e->rhs->rhs, "c");
	compile_free(c);

	c = parse_expr("a * b + c", &e);
	assert_binop(e, '+');
	assert_binop(e->lhs, '*');
	assert_ident(e->rhs, "c");
	compile_free(c);

	c = parse_expr("(a + b) * c", &e);
	assert_binop(e, '*');
	assert_binop(e->lhs, '+');
	compile_free(c);
}

static void test_operators_associate_left_and_negation_binds_tightest(void **state)
{
	(void)state;
	const AstExpr *e;
	Compile *c = parse_expr("a - b - c", &e);
	assert_binop(e, '-');
	assert_binop(e->lhs, '-');
	assert_ident(e->lhs->lhs, "a");
	assert_ident(e->rhs, "c");
	compile_free(c);

	c = parse_expr("8 / 4 / 2", &e);
	assert_binop(e, '/');
	assert_binop(e->lhs, '/');
	assert_float_equal(e->rhs->num, 2, 0);
	compile_free(c);

	c = parse_expr("-a * b", &e);
	assert_binop(e, '*');
	assert_int_equal(e->lhs->kind, AST_NEG);
	assert_ident(e->lhs->lhs, "a");
	compile_free(c);
}

static void test_call_arguments_positional_and_keyword(void **state)
{
	(void)state;
	const AstExpr *e;
	Compile *c = parse_expr("conv2d(8, 3, kernel=[3, 1], pad=\"same\", bias=false,)", &e);
	assert_call(e, "conv2d", 5);
	assert_null(e->args[0].key);
	assert_float_equal(e->args[0].val->num, 8, 0);
	assert_null(e->args[1].key);
	assert_string_equal(e->args[2].key, "kernel");
	assert_int_equal(e->args[2].key_loc.col, 19);
	assert_int_equal(e->args[2].val->kind, AST_LIST);
	assert_int_equal(e->args[2].val->nitems, 2);
	assert_string_equal(e->args[3].key, "pad");
	assert_string_equal(e->args[3].val->str, "same");
	assert_string_equal(e->args[4].key, "bias");
	assert_int_equal(e->args[4].val->kind, AST_BOOL);
	assert_int_equal(e->args[4].val->b, 0);
	compile_free(c);

	c = parse_expr("f()", &e);
	assert_call(e, "f", 0);
	assert_null(e->piped);
	compile_free(c);

	/* a keyword argument's value may be any expression, a chain included */
	c = parse_expr("f(units=2 * 3, x -> g)", &e);
	assert_call(e, "f", 2);
	assert_binop(e->args[0].val, '*');
	assert_call(e->args[1].val, "g", 0);
	assert_ident(e->args[1].val->piped, "x");
	compile_free(c);
}

static void test_lists(void **state)
{
	(void)state;
	const AstExpr *e;
	Compile *c = parse_expr("[1, 2, 3]", &e);
	assert_int_equal(e->kind, AST_LIST);
	assert_int_equal(e->nitems, 3);
	for (int i = 0; i < 3; i++)
		assert_float_equal(e->items[i]->num, i + 1, 0);
	compile_free(c);

	c = parse_expr("[]", &e);
	assert_int_equal(e->kind, AST_LIST);
	assert_int_equal(e->nitems, 0);
	compile_free(c);

	c = parse_expr("[[1, 2], [3], x, \"s\",]", &e);
	assert_int_equal(e->nitems, 4);
	assert_int_equal(e->items[0]->kind, AST_LIST);
	assert_int_equal(e->items[0]->nitems, 2);
	assert_int_equal(e->items[1]->nitems, 1);
	assert_ident(e->items[2], "x");
	assert_int_equal(e->items[3]->kind, AST_STR);
	compile_free(c);
}

static void test_statement_kinds(void **state)
{
	(void)state;
	Compile *c = parse_ok("model m {\n"
			      "  input x: [1, 28, 28]\n"
			      "  target y: class(10)\n"
			      "  h = x -> flatten -> dense(10)\n"
			      "  output h, x\n"
			      "  loss cross_entropy(h, y) + 0.5 * mse(h, h)\n"
			      "}\n");
	const AstItem *m = c->ast->items[0];
	assert_int_equal(m->kind, ITEM_MODEL);
	assert_string_equal(m->name, "m");
	assert_int_equal(m->name_loc.col, 7);
	assert_int_equal(m->end_loc.line, 7);
	assert_int_equal(m->nbody, 5);
	assert_int_equal(m->body[0]->kind, ST_INPUT);
	assert_string_equal(m->body[0]->name, "x");
	assert_int_equal(m->body[0]->expr->kind, AST_LIST);
	assert_int_equal(m->body[1]->kind, ST_TARGET);
	assert_call(m->body[1]->expr, "class", 1);
	assert_int_equal(m->body[2]->kind, ST_ASSIGN);
	assert_string_equal(m->body[2]->name, "h");
	assert_int_equal(m->body[3]->kind, ST_OUTPUT);
	assert_int_equal(m->body[3]->nnames, 2);
	assert_string_equal(m->body[3]->names[0], "h");
	assert_string_equal(m->body[3]->names[1], "x");
	assert_int_equal(m->body[3]->name_locs[1].col, 13);
	assert_int_equal(m->body[4]->kind, ST_LOSS);
	assert_binop(m->body[4]->expr, '+');
	assert_binop(m->body[4]->expr->rhs, '*');
	compile_free(c);
}

static void test_block_with_defaults(void **state)
{
	(void)state;
	Compile *c = parse_ok("block b(x, mid, out=mid * 2, stride=1,) {\n"
			      "  h = x -> conv2d(out, kernel=3, stride=stride)\n"
			      "  return h\n"
			      "}\n"
			      "block none() { return 1 }\n");
	assert_int_equal(c->ast->nitems, 2);
	const AstItem *b = c->ast->items[0];
	assert_int_equal(b->kind, ITEM_BLOCK);
	assert_string_equal(b->name, "b");
	assert_int_equal(b->nparams, 4);
	assert_string_equal(b->params[0].name, "x");
	assert_null(b->params[0].def);
	assert_null(b->params[1].def);
	assert_string_equal(b->params[2].name, "out");
	assert_binop(b->params[2].def, '*');
	assert_ident(b->params[2].def->lhs, "mid");
	assert_float_equal(b->params[3].def->num, 1, 0);
	assert_int_equal(b->nbody, 2);
	assert_int_equal(b->body[1]->kind, ST_RETURN);
	assert_ident(b->body[1]->expr, "h");
	assert_int_equal(c->ast->items[1]->nparams, 0);
	compile_free(c);
}

static void test_repeat(void **state)
{
	(void)state;
	Compile *c = parse_ok("model m {\n"
			      "  input x: [4]\n"
			      "  h = x\n"
			      "  repeat 2 + 1 {\n"
			      "    h = h -> dense(4)\n"
			      "\n"
			      "    h = h -> relu\n"
			      "    repeat 2 { h = h -> relu }\n"
			      "  }\n"
			      "  output h\n"
			      "}\n");
	const AstItem *m = c->ast->items[0];
	assert_int_equal(m->nbody, 4);
	const AstStmt *r = m->body[2];
	assert_int_equal(r->kind, ST_REPEAT);
	assert_int_equal(r->loc.line, 4);
	assert_binop(r->expr, '+');
	assert_int_equal(r->nbody, 3);
	assert_int_equal(r->body[2]->kind, ST_REPEAT);
	assert_int_equal(r->body[2]->nbody, 1);
	compile_free(c);
}

static void test_train_sections_and_several_models(void **state)
{
	(void)state;
	Compile *c = parse_ok("model a {\n input x: [2]\n output x\n}\n"
			      "train {\n optimizer = sgd(lr=0.1, momentum=0.9)\n epochs = 2\n}\n"
			      "model b {\n input x: [3]\n output x\n}\n"
			      "train b {\n batch = 8\n}\n");
	assert_int_equal(c->ast->nitems, 4);
	static const AstItemKind kinds[] = { ITEM_MODEL, ITEM_TRAIN, ITEM_MODEL, ITEM_TRAIN };
	for (int i = 0; i < 4; i++)
		assert_int_equal(c->ast->items[i]->kind, kinds[i]);
	const AstItem *t = c->ast->items[1];
	assert_null(t->name);
	assert_int_equal(t->nbody, 2);
	assert_string_equal(t->body[0]->name, "optimizer");
	assert_call(t->body[0]->expr, "sgd", 2);
	assert_string_equal(t->body[0]->expr->args[1].key, "momentum");
	assert_string_equal(c->ast->items[2]->name, "b");
	assert_string_equal(c->ast->items[3]->name, "b");
	assert_int_equal(c->ast->items[3]->name_loc.line, 13);
	compile_free(c);
}

static void test_empty_file_and_blank_lines(void **state)
{
	(void)state;
	Compile *c = compile_string("\n\n# nothing\n\n");
	assert_int_equal(c->ast->nitems, 0);
	/* parsing is fine; the file just has no model */
	assert_int_equal(c->nerrors, 1);
	assert_string_equal(c->failed_stage, "select");
	compile_free(c);
}

static void test_recovery_reports_every_broken_line(void **state)
{
	(void)state;
	Compile *c = compile_string("model m {\n"
				    "  input x: [4]\n"
				    "  a = x )\n"
				    "  b = x x\n"
				    "  ouput x\n"
				    "  c = (x -> relu\n"
				    "  d = x -> relu\n"
				    "  output d\n"
				    "}\n"
				    "\n"
				    "model n {\n"
				    "  input x: [4]\n"
				    "  output x\n"
				    "}\n");
	assert_int_equal(c->nerrors, 4);
	assert_string_equal(c->failed_stage, "parse");
	assert_diag_has(c, "<test>:3:9: error:");
	assert_diag_has(c, "<test>:4:9: error:");
	assert_diag_has(c, "<test>:5:3: error:");
	assert_diag_has(c, "did you mean 'output'?");
	assert_diag_has(c, "<test>:7:3: error:");
	assert_diag_has(c, "<test>:6:7: note:");	/* the '(' left open */
	/* the good statements and the model after the errors are still in the AST */
	assert_int_equal(c->ast->nitems, 2);
	assert_string_equal(c->ast->items[1]->name, "n");
	assert_int_equal(c->ast->items[1]->nbody, 2);
	const AstItem *m = c->ast->items[0];
	assert_int_equal(m->body[0]->kind, ST_INPUT);
	assert_int_equal(m->body[m->nbody - 1]->kind, ST_OUTPUT);
	compile_free(c);
}

static void test_recovery_across_items(void **state)
{
	(void)state;
	Compile *c = compile_string("model m {\n"
				    "  input x: [4]\n"
				    "  y = x -> dense(4\n"
				    "}\n"
				    "model n {\n"
				    "  input x: [4]\n"
				    "  y = = x\n"
				    "  output x\n"
				    "}\n");
	assert_true(c->nerrors >= 2);
	assert_diag_has(c, "<test>:7:7: error:");
	assert_int_equal(diag_count(c, "error:"), c->nerrors);
	compile_free(c);
}

static void test_unclosed_brace_at_end_of_file(void **state)
{
	(void)state;
	Compile *c = compile_string("model m {\n  input x: [4]\n  output x\n");
	assert_int_equal(c->nerrors, 1);
	assert_diag_has(c, "<test>:1:9: note:");
	compile_free(c);
}

static void test_misspelled_item_keyword(void **state)
{
	(void)state;
	Compile *c = compile_string("modle m {\n  input x: [4]\n  output x\n}\n");
	assert_true(c->nerrors >= 1);
	assert_int_equal(strncmp(c->diag.text, "<test>:1:1: error:", 18), 0);
	assert_diag_has(c, "did you mean 'model'?");
	compile_free(c);
}

static void test_deep_nesting_is_an_error_not_a_crash(void **state)
{
	(void)state;
	enum { N = 300 };
	char src[2 * N + 64];
	size_t k = (size_t)snprintf(src, sizeof src, "model m {\n a = ");
	for (int i = 0; i < N; i++)
		src[k++] = '[';
	for (int i = 0; i < N; i++)
		src[k++] = ']';
	snprintf(src + k, sizeof src - k, "\n}\n");
	Compile *c = compile_string(src);
	assert_true(c->nerrors >= 1);
	assert_string_equal(c->failed_stage, "parse");
	compile_free(c);
}

static void test_long_chain_parses(void **state)
{
	(void)state;
	/* chains nest through `piped`, not through depth: a long one is fine */
	enum { N = 2000 };
	size_t cap = (size_t)N * 10 + 128;
	char *src = malloc(cap);
	assert_non_null(src);
	size_t k = (size_t)snprintf(src, cap, "model m {\n input x: [4]\n h = x");
	for (int i = 0; i < N; i++)
		k += (size_t)snprintf(src + k, cap - k, " -> relu");
	snprintf(src + k, cap - k, "\n output h\n}\n");
	Compile *c = compile_ok(src);
	free(src);
	const AstExpr *e = c->ast->items[0]->body[1]->expr;
	int n = 0;
	for (; e->kind == AST_CALL; e = e->piped)
		n++;
	assert_int_equal(n, N);
	assert_ident(e, "x");
	assert_non_null(layer_node(c->model->graph, "relu2000"));
	compile_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_chain_nests_leftmost_deepest),
		cmocka_unit_test(test_chain_may_start_with_a_call),
		cmocka_unit_test(test_arrow_binds_looser_than_plus),
		cmocka_unit_test(test_times_binds_tighter_than_plus),
		cmocka_unit_test(test_operators_associate_left_and_negation_binds_tightest),
		cmocka_unit_test(test_call_arguments_positional_and_keyword),
		cmocka_unit_test(test_lists),
		cmocka_unit_test(test_statement_kinds),
		cmocka_unit_test(test_block_with_defaults),
		cmocka_unit_test(test_repeat),
		cmocka_unit_test(test_train_sections_and_several_models),
		cmocka_unit_test(test_empty_file_and_blank_lines),
		cmocka_unit_test(test_recovery_reports_every_broken_line),
		cmocka_unit_test(test_recovery_across_items),
		cmocka_unit_test(test_unclosed_brace_at_end_of_file),
		cmocka_unit_test(test_misspelled_item_keyword),
		cmocka_unit_test(test_deep_nesting_is_an_error_not_a_crash),
		cmocka_unit_test(test_long_chain_parses),
	};
	return cmocka_run_group_tests_name("parser", tests, NULL, NULL);
}
