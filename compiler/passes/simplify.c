/*
 * simplify.c: algebraic identities: x * 1 and x + 0 (a scalar const of 1 or
 * 0 beside an operand of the result's shape) are x; a reshape of a reshape or
 * flatten reads the first one's input; a reshape to the input's own shape is
 * the input.
 * Needs: shapes. Sets: inputs. Keeps: every value's shape (dce drops what
 * became dead).
 */
#include "passes.h"

static bool like(const IrNode *x, const IrNode *n)
{
	return x->batched == n->batched && x->dtype == n->dtype && shape_eq(x->shape, n->shape);
}

static bool view(const IrNode *n)
{
	return n->op == IR_RESHAPE || n->op == IR_FLATTEN;
}

/* what n equals, or NULL; may rewrite n's inputs (then *changed) */
static IrNode *simplify(IrNode *n, bool *changed)
{
	if (n->op == IR_MUL || n->op == IR_ADD) {
		double unit = n->op == IR_MUL ? 1 : 0;
		for (int k = 0; k < 2; k++)
			if (pass_is_const(n->in[k], unit) && like(n->in[1 - k], n))
				return n->in[1 - k];
		return NULL;
	}
	if (!view(n))
		return NULL;
	if (view(n->in[0])) {
		n->in[0] = n->in[0]->in[0];
		*changed = true;
	}
	return like(n->in[0], n) ? n->in[0] : NULL;
}

int pass_simplify(IrGraph *g)
{
	IrNode **repl = pass_repl_new(g);
	int fired = 0;
	for (int i = 0; i < g->nnodes; i++) {
		IrNode *n = g->nodes[i];
		pass_remap(n, repl);
		bool changed = false;
		IrNode *to = simplify(n, &changed);
		fired += changed || to;
		if (to)
			repl[n->id] = to;
	}
	pass_remap_roots(g, repl);
	return fired;
}
