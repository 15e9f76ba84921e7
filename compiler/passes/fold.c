/*
 * fold.c: constant folding of scale chains: scale by 1 is its input, a scale
 * of a scale is one scale, a scale of a scalar const is a const, scale_by a
 * const is a scale. The chains come from autodiff (the loss gradient's 1, the
 * regularization terms' factors).
 * Needs: shapes. Sets: ops and attributes of folded nodes, inputs of users
 * of removed ones. Keeps: every value's shape (dce drops what became dead).
 */
#include "passes.h"

static bool scalar(const IrNode *n)
{
	return !n->batched && n->shape.rank == 0;
}

/* 1: n rewritten in place; 0: nothing to do; *out set when n is replaced by another node */
static int fold(IrNode *n, IrNode **out)
{
	if (n->op == IR_SCALE && n->a.scale == 1 && n->in[0]->batched == n->batched && shape_eq(n->in[0]->shape, n->shape)) {
		*out = n->in[0];
		return 1;
	}
	if (n->op == IR_SCALE && n->in[0]->op == IR_SCALE) {
		n->a.scale *= n->in[0]->a.scale;
		n->in[0] = n->in[0]->in[0];
		return 1;
	}
	if (n->op == IR_SCALE && n->in[0]->op == IR_CONST && scalar(n) && scalar(n->in[0])) {
		n->a.scale *= n->in[0]->a.scale;
		n->op = IR_CONST;
		n->nin = 0;
		return 1;
	}
	if (n->op == IR_SCALE_BY && n->in[1]->op == IR_CONST && scalar(n->in[1])) {
		n->a.scale *= n->in[1]->a.scale;
		n->op = IR_SCALE;
		n->nin = 1;
		return 1;
	}
	return 0;
}

int pass_fold(IrGraph *g)
{
	IrNode **repl = pass_repl_new(g);
	int fired = 0;
	for (int i = 0; i < g->nnodes; i++) {
		IrNode *n = g->nodes[i];
		pass_remap(n, repl);
		IrNode *to = NULL;
		int k;
		while ((k = fold(n, &to)) && !to)	/* scale of scale of const: fold again */
			fired += k;
		fired += k;
		if (to)
			repl[n->id] = to;
	}
	pass_remap_roots(g, repl);
	return fired;
}
