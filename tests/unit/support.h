/*
 * support.h: what every cmocka test of the compiler needs: cmocka itself and
 * small helpers that compile a string with diagnostics captured.
 */
#ifndef NNC_TEST_SUPPORT_H
#define NNC_TEST_SUPPORT_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "compile.h"
#include "summary.h"

/* compiles src and fails the test, showing the diagnostics, unless it is clean */
static inline Compile *compile_ok(const char *src)
{
	Compile *c = compile_string(src);
	if (c->nerrors)
		fail_msg("expected no errors, got:\n%s", c->diag.text ? c->diag.text : "");
	return c;
}

/* compile_string with options (upto, inference); diagnostics are captured unless o->diag_out */
static inline Compile *compile_string_opts(const char *src, const CompileOpts *o)
{
	return compile_source("<test>", src, strlen(src), o);
}

/* compiles src to loop IR and fails the test, showing the diagnostics, unless it is clean */
static inline Compile *compile_loops_ok(const char *src)
{
	CompileOpts o = { .upto = UPTO_LOOPS };
	Compile *c = compile_string_opts(src, &o);
	if (c->nerrors || !c->loops)
		fail_msg("expected loop IR, got:\n%s", c->diag.text ? c->diag.text : "");
	return c;
}

/* the node of a layer ("conv1") that is not a parameter */
static inline IrNode *layer_node(const IrGraph *g, const char *layer)
{
	for (int i = 0; i < g->nnodes; i++) {
		IrNode *n = g->nodes[i];
		if (n->layer && !strcmp(n->layer, layer) && !ir_is_state(n))
			return n;
	}
	return NULL;
}

/* the parameter or buffer named like PyTorch's state_dict key */
static inline IrNode *state_node(const IrGraph *g, const char *name)
{
	for (int i = 0; i < g->nnodes; i++) {
		IrNode *n = g->nodes[i];
		if (ir_is_state(n) && !strcmp(n->name, name))
			return n;
	}
	return NULL;
}

/* compiles src and fails the test unless it reported at least one error */
static inline Compile *compile_err(const char *src)
{
	Compile *c = compile_string(src);
	if (!c->nerrors)
		fail_msg("expected errors, got none for:\n%s", src);
	return c;
}

/* fails the test, showing the diagnostics, unless they contain want */
#define assert_diag_has(c, want)                                                       \
	do {                                                                           \
		const char *t_ = (c)->diag.text ? (c)->diag.text : "";                 \
		if (!strstr(t_, (want)))                                               \
			fail_msg("diagnostics lack \"%s\":\n%s", (want), t_);           \
	} while (0)

/* how many times needle occurs in the diagnostics */
static inline int diag_count(const Compile *c, const char *needle)
{
	int n = 0;
	for (const char *p = c->diag.text; p && (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

#define assert_shape(node, ...)                                                        \
	do {                                                                           \
		const int64_t want_[] = { __VA_ARGS__ };                               \
		int r_ = (int)(sizeof want_ / sizeof want_[0]);                        \
		assert_non_null(node);                                                 \
		assert_int_equal((node)->shape.rank, r_);                              \
		for (int i_ = 0; i_ < r_; i_++)                                        \
			assert_int_equal((node)->shape.d[i_], want_[i_]);             \
	} while (0)

#endif
