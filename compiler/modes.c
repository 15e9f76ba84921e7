/*
 * modes.c: copies of the model graph for training and for inference (see
 * modes.h). The copy keeps node order, so node ids stay topological.
 */
#include "modes.h"

#include "autodiff.h"
#include "optim.h"

/* copies n into g with its inputs remapped through map (by old id) */
static IrNode *copy(IrGraph *g, const IrNode *n, IrNode **map)
{
	IrNode *in[64];
	for (int k = 0; k < n->nin && k < 64; k++)
		in[k] = map[n->in[k]->id];
	IrNode *c = ir_new_node(g, n->op, n->nin, in, n->loc);
	c->a = n->a;
	c->shape = n->shape;
	c->dtype = n->dtype;
	c->batched = n->batched;
	c->name = n->name;
	c->layer = n->layer;
	return c;
}

/* training batchnorm: batch statistics, and the running ones updated beside it */
static IrNode *batchnorm_train(IrGraph *g, const IrNode *n, IrNode **map)
{
	IrNode *y = copy(g, n, map);
	y->op = IR_BATCHNORM_TRAIN;
	IrNode *in[3] = { y->in[0], y->in[3], y->in[4] };
	IrNode *u = ir_new_node(g, IR_BN_UPDATE, 3, in, n->loc);
	u->a = n->a;
	u->shape = in[1]->shape;
	u->batched = false;
	u->layer = n->layer;
	return y;
}

/* copies every node; dropout becomes its input (inference) or x * mask (training) */
static IrGraph *clone(const IrGraph *src, bool training)
{
	IrGraph *g = ir_new_graph(src->arena, src->name, src->loc);
	IrNode **map = arena_alloc(src->arena, sizeof(IrNode *) * (size_t)(src->nnodes + 1));
	for (int i = 0; i < src->nnodes; i++) {
		const IrNode *n = src->nodes[i];
		if (n->op == IR_BATCHNORM && training) {
			map[i] = batchnorm_train(g, n, map);
			continue;
		}
		if (n->op != IR_DROPOUT) {
			map[i] = copy(g, n, map);
			continue;
		}
		IrNode *x = map[n->in[0]->id];
		if (!training || n->a.p == 0) {
			map[i] = x;
			continue;
		}
		IrNode *mask = copy(g, n, map);
		mask->op = IR_DROPOUT_MASK;
		IrNode *in[2] = { x, mask };
		IrNode *y = ir_new_node(g, IR_MUL, 2, in, n->loc);
		y->shape = n->shape;
		y->layer = n->layer;
		map[i] = y;
	}
	g->noutputs = src->noutputs;
	g->outputs = arena_alloc(src->arena, sizeof(IrNode *) * (size_t)(src->noutputs + 1));
	g->output_names = src->output_names;
	for (int i = 0; i < src->noutputs; i++)
		g->outputs[i] = map[src->outputs[i]->id];
	g->loss = src->loss ? map[src->loss->id] : NULL;
	return g;
}

IrGraph *mode_inference(const IrGraph *src, const PassOpts *po, PassStats *stats)
{
	IrGraph *g = clone(src, false);
	if (po)
		pass_run_forward(g, po, stats);
	return g;
}

IrGraph *mode_training(const IrGraph *src, const TrainConfig *t, const PassOpts *po, PassStats *stats)
{
	IrGraph *g = clone(src, true);
	if (po)
		pass_run_forward(g, po, stats);
	optim_regularize(g, t);
	int before = g->nnodes;
	IrNode **grads = ad_backward(g);
	optim_append(g, grads, before, t);
	return g;
}
