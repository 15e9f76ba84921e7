/*
 * test_lexer.c: the tokens of the nn language (compiler/lexer.l and the
 * newline filter in parser.y), observed through the AST the parser builds:
 * numbers, strings, booleans, comments, identifiers, source positions,
 * statements continued on the next line, and lexical errors.
 */
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

/* the expression of statement `stmt` in item `item` */
static const AstExpr *expr_at(const Compile *c, int item, int stmt)
{
	assert_true(item < c->ast->nitems);
	const AstItem *it = c->ast->items[item];
	assert_true(stmt < it->nbody);
	assert_non_null(it->body[stmt]->expr);
	return it->body[stmt]->expr;
}

/* the arguments of `a = f(...)`, the only statement of the only model */
static const AstExpr *args_of_f(const Compile *c)
{
	const AstExpr *e = expr_at(c, 0, 0);
	assert_int_equal(e->kind, AST_CALL);
	assert_string_equal(e->str, "f");
	return e;
}

static void test_integer_and_float_numbers(void **state)
{
	(void)state;
	Compile *c = parse_ok("model m {\n a = f(3, 0.5, 1e-3, 2.5E+2, 1E3, 42, 007)\n}\n");
	const AstExpr *f = args_of_f(c);
	assert_int_equal(f->nargs, 7);
	static const double want[] = { 3, 0.5, 1e-3, 250, 1000, 42, 7 };
	static const int is_int[] = { 1, 0, 0, 0, 0, 1, 1 };
	for (int i = 0; i < 7; i++) {
		const AstExpr *v = f->args[i].val;
		assert_int_equal(v->kind, AST_NUM);
		assert_null(f->args[i].key);
		assert_float_equal(v->num, want[i], 1e-12);
		assert_int_equal(v->is_int, is_int[i]);
	}
	compile_free(c);
}

static void test_negative_number_is_negation(void **state)
{
	(void)state;
	Compile *c = parse_ok("model m {\n a = f(-2, -0.25)\n}\n");
	const AstExpr *f = args_of_f(c);
	assert_int_equal(f->args[0].val->kind, AST_NEG);
	assert_int_equal(f->args[0].val->lhs->kind, AST_NUM);
	assert_float_equal(f->args[0].val->lhs->num, 2, 0);
	assert_true(f->args[0].val->is_int);
	assert_false(f->args[1].val->is_int);
	compile_free(c);
}

static void test_strings_and_escapes(void **state)
{
	(void)state;
	Compile *c = parse_ok("model m {\n a = f(\"same\", \"\", \"a\\\"b\\\\c\\nd\", \"# not a comment\")\n}\n");
	const AstExpr *f = args_of_f(c);
	assert_int_equal(f->nargs, 4);
	for (int i = 0; i < 4; i++)
		assert_int_equal(f->args[i].val->kind, AST_STR);
	assert_string_equal(f->args[0].val->str, "same");
	assert_string_equal(f->args[1].val->str, "");
	assert_string_equal(f->args[2].val->str, "a\"b\\c\nd");
	assert_string_equal(f->args[3].val->str, "# not a comment");
	compile_free(c);
}

static void test_booleans_and_identifiers(void **state)
{
	(void)state;
	Compile *c = parse_ok("model m {\n a = f(true, false, trueish, _x1, A_b9, inputs, model_2)\n}\n");
	const AstExpr *f = args_of_f(c);
	assert_int_equal(f->args[0].val->kind, AST_BOOL);
	assert_int_equal(f->args[0].val->b, 1);
	assert_int_equal(f->args[1].val->kind, AST_BOOL);
	assert_int_equal(f->args[1].val->b, 0);
	/* the longest match wins: a keyword followed by more letters is a name */
	static const char *const names[] = { "trueish", "_x1", "A_b9", "inputs", "model_2" };
	for (int i = 0; i < 5; i++) {
		assert_int_equal(f->args[2 + i].val->kind, AST_IDENT);
		assert_string_equal(f->args[2 + i].val->str, names[i]);
	}
	compile_free(c);
}

static void test_comments_are_skipped(void **state)
{
	(void)state;
	Compile *c = compile_ok("# a file comment { model -> (\n"
				"model m {   # after the brace\n"
				"  # a whole line: output nothing ]\n"
				"  input x: [4]  # trailing\n"
				"  y = x -> relu # -> dense(3)\n"
				"  output y\n"
				"}\n"
				"# the end, no newline after it");
	assert_int_equal(c->ast->nitems, 1);
	assert_int_equal(c->ast->items[0]->nbody, 3);
	/* the comment after relu did not add a dense layer */
	const AstExpr *e = expr_at(c, 0, 1);
	assert_int_equal(e->kind, AST_CALL);
	assert_string_equal(e->str, "relu");
	assert_null(layer_node(c->model->graph, "dense1"));
	compile_free(c);
}

static void test_token_positions(void **state)
{
	(void)state;
	Compile *c = parse_ok("model m {\n  h = xx -> dense(4)\n\tk = 2.5\n}\n");
	const AstStmt *s = c->ast->items[0]->body[0];
	assert_int_equal(s->name_loc.line, 2);
	assert_int_equal(s->name_loc.col, 3);
	const AstExpr *call = s->expr;
	assert_int_equal(call->loc.line, 2);
	assert_int_equal(call->loc.col, 13);
	assert_int_equal(call->loc.len, 8);	/* dense(4): from the name to ')' */
	assert_int_equal(call->piped->loc.col, 7);
	assert_int_equal(call->piped->loc.len, 2);
	const AstExpr *k = expr_at(c, 0, 1);
	assert_int_equal(k->loc.line, 3);
	assert_int_equal(k->loc.col, 6);	/* a tab counts as one column */
	assert_int_equal(k->loc.len, 3);
	compile_free(c);
}

static void test_columns_count_characters_not_bytes(void **state)
{
	(void)state;
	/* "é" is two bytes but one column */
	Compile *c = parse_ok("model m {\n a = f(\"\xc3\xa9\", b)\n}\n");
	const AstExpr *f = args_of_f(c);
	assert_string_equal(f->args[0].val->str, "\xc3\xa9");
	assert_int_equal(f->args[1].val->loc.col, 13);
	compile_free(c);
}

static void test_crlf_line_ends(void **state)
{
	(void)state;
	Compile *c = compile_ok("model m {\r\n  input x: [4]\r\n  y = x -> relu\r\n  output y\r\n}\r\n");
	assert_int_equal(c->ast->items[0]->nbody, 3);
	assert_non_null(layer_node(c->model->graph, "relu1"));
	compile_free(c);
}

static void test_chain_continued_with_leading_arrow(void **state)
{
	(void)state;
	Compile *c = compile_ok("model m {\n"
				"  input x: [8]\n"
				"  h = x\n"
				"      -> dense(4)\n"
				"\n"
				"      # a comment between the lines\n"
				"      -> relu\n"
				"  output h\n"
				"}\n");
	assert_int_equal(c->ast->items[0]->nbody, 3);
	const AstExpr *e = expr_at(c, 0, 1);
	assert_int_equal(e->kind, AST_CALL);
	assert_string_equal(e->str, "relu");
	assert_int_equal(e->loc.line, 7);
	assert_int_equal(e->piped->kind, AST_CALL);
	assert_string_equal(e->piped->str, "dense");
	assert_int_equal(e->piped->loc.line, 4);
	assert_int_equal(e->piped->piped->kind, AST_IDENT);
	assert_string_equal(e->piped->piped->str, "x");
	assert_shape(layer_node(c->model->graph, "relu1"), 4);
	compile_free(c);
}

static void test_continuations_after_operators_and_inside_brackets(void **state)
{
	(void)state;
	Compile *c = compile_ok("model m {\n"
				"  input x: [1, 6, 6]\n"
				"  h = x ->\n"
				"      conv2d(\n"
				"          2,\n"
				"          kernel=[3,\n"
				"                  1]\n"
				"      )\n"
				"  s = h\n"
				"      + h\n"
				"  p = s *\n"
				"      s\n"
				"  output p\n"
				"}\n");
	assert_int_equal(c->ast->items[0]->nbody, 5);
	const AstExpr *s = expr_at(c, 0, 2);
	assert_int_equal(s->kind, AST_BINOP);
	assert_int_equal(s->op, '+');
	const AstExpr *p = expr_at(c, 0, 3);
	assert_int_equal(p->kind, AST_BINOP);
	assert_int_equal(p->op, '*');
	assert_shape(layer_node(c->model->graph, "conv1"), 2, 4, 6);
	compile_free(c);
}

static void test_braces_on_one_line(void **state)
{
	(void)state;
	Compile *c = compile_string("block ident(x) { return x }\n"
				"model m { input x: [4] }\n"
				"model n {\n  input x: [4]\n  h = x\n  repeat 2 { h = h -> ident -> relu }\n  output h\n}\n"
				"train n { epochs = 3 }\n");
	/* it all parses; the only complaint is that model m has no output (at its '}') */
	assert_int_equal(c->nerrors, 1);
	assert_diag_has(c, "<test>:2:24: error:");
	assert_string_equal(c->failed_stage, "elaborate");
	assert_int_equal(c->ast->nitems, 4);
	const AstItem *blk = c->ast->items[0];
	assert_int_equal(blk->kind, ITEM_BLOCK);
	assert_int_equal(blk->nbody, 1);
	assert_int_equal(blk->body[0]->kind, ST_RETURN);
	assert_int_equal(c->ast->items[1]->nbody, 1);
	assert_int_equal(c->ast->items[1]->body[0]->kind, ST_INPUT);
	const AstStmt *rep = c->ast->items[2]->body[2];
	assert_int_equal(rep->kind, ST_REPEAT);
	assert_int_equal(rep->nbody, 1);
	const AstItem *tr = c->ast->items[3];
	assert_int_equal(tr->kind, ITEM_TRAIN);
	assert_int_equal(tr->nbody, 1);
	assert_string_equal(tr->body[0]->name, "epochs");
	compile_free(c);
}

static void test_unexpected_characters_are_each_reported(void **state)
{
	(void)state;
	/* the scanner skips a bad character and goes on: one error per bad spot */
	Compile *c = compile_string("model m {\n  input x: [4]\n  y = x $ -> relu\n  z = y -> relu;\n  output z\n}\n");
	assert_int_equal(c->nerrors, 2);
	assert_string_equal(c->failed_stage, "parse");
	assert_diag_has(c, "<test>:3:9: error:");
	assert_diag_has(c, "'$'");
	assert_diag_has(c, "<test>:4:16: error:");
	assert_diag_has(c, "';'");
	compile_free(c);
}

static void test_unclosed_string(void **state)
{
	(void)state;
	Compile *c = compile_string("model m {\n  input x: [4]\n  y = x -> upsample(mode=\"nearest)\n  output y\n}\n");
	assert_true(c->nerrors >= 1);
	/* the first message is the string's, at its opening quote */
	assert_int_equal(strncmp(c->diag.text, "<test>:3:26: error:", 19), 0);
	assert_string_equal(c->failed_stage, "parse");
	compile_free(c);
}

static void test_number_needs_digit_after_dot(void **state)
{
	(void)state;
	Compile *c = compile_string("model m {\n  input x: [4]\n  y = x -> dropout(1.)\n  output y\n}\n");
	assert_int_equal(c->nerrors, 1);
	assert_diag_has(c, "<test>:3:20: error:");
	compile_free(c);
}

static void test_huge_number(void **state)
{
	(void)state;
	Compile *c = compile_string("model m {\n  input x: [4]\n  y = x -> dropout(1e999)\n  output y\n}\n");
	assert_int_equal(c->nerrors, 1);
	assert_diag_has(c, "<test>:3:20: error:");
	assert_diag_has(c, "1e999");
	compile_free(c);
}

static void test_keyword_is_not_a_name(void **state)
{
	(void)state;
	Compile *c = compile_string("model m {\n  input x: [4]\n  loss = x -> relu\n  output x\n}\n");
	assert_int_equal(c->nerrors, 1);
	assert_string_equal(c->failed_stage, "parse");
	assert_diag_has(c, "<test>:3:");
	compile_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_integer_and_float_numbers),
		cmocka_unit_test(test_negative_number_is_negation),
		cmocka_unit_test(test_strings_and_escapes),
		cmocka_unit_test(test_booleans_and_identifiers),
		cmocka_unit_test(test_comments_are_skipped),
		cmocka_unit_test(test_token_positions),
		cmocka_unit_test(test_columns_count_characters_not_bytes),
		cmocka_unit_test(test_crlf_line_ends),
		cmocka_unit_test(test_chain_continued_with_leading_arrow),
		cmocka_unit_test(test_continuations_after_operators_and_inside_brackets),
		cmocka_unit_test(test_braces_on_one_line),
		cmocka_unit_test(test_unexpected_characters_are_each_reported),
		cmocka_unit_test(test_unclosed_string),
		cmocka_unit_test(test_number_needs_digit_after_dot),
		cmocka_unit_test(test_huge_number),
		cmocka_unit_test(test_keyword_is_not_a_name),
	};
	return cmocka_run_group_tests_name("lexer", tests, NULL, NULL);
}
