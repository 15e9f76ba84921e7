/*
 * dce.c: drops the nodes that no output, the loss or an update depends on
 * (dead branches, and nodes other passes replaced). Parameters, buffers,
 * inputs and targets always stay.
 * Needs: a verified graph. Sets: ids (renumbered in order). Keeps: the
 * topological order, outputs, loss, every update and what they read.
 */
#include "passes.h"

/* updates are effects; inputs, targets, parameters and buffers stay so the
 * model's signature and its state_dict do not depend on the -O level */
static bool root(const IrNode *n)
{
	return ir_op_family(n->op) == FAM_UPDATE || n->op == IR_INPUT || n->op == IR_TARGET || ir_is_state(n);
}

int pass_dce(IrGraph *g)
{
	bool *live = arena_alloc(g->arena, (size_t)g->nnodes + 1);
	for (int i = 0; i < g->noutputs; i++)
		live[g->outputs[i]->id] = true;
	if (g->loss)
		live[g->loss->id] = true;
	for (int i = g->nnodes - 1; i >= 0; i--) {
		IrNode *n = g->nodes[i];
		live[i] |= root(n);
		for (int k = 0; live[i] && k < n->nin; k++)
			live[n->in[k]->id] = true;
	}
	return pass_compact(g, live);
}
