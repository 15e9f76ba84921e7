/*
 * optim.c: regularization and optimizer updates, appended to the training
 * graph as IR. The update ops follow torch.optim exactly (docs/training.md
 * gives the formulas); the learning rate and the step count are read from the
 * context at run time, so schedules need no recompilation. State tensors are
 * OPT_STATE nodes named like PyTorch's optimizer state: `W.exp_avg`,
 * `W.exp_avg_sq`, `W.momentum_buffer`, `W.sum`, `W.square_avg`.
 */
#include "optim.h"

#include <string.h>

static IrNode *scalar(IrGraph *g, IrOp op, int nin, IrNode *const *in, SrcLoc loc)
{
	IrNode *n = ir_new_node(g, op, nin, in, loc);
	n->batched = false;
	n->shape.rank = 0;
	return n;
}

static IrNode *add_term(IrGraph *g, IrNode *loss, IrOp reduce, IrNode *w, double k)
{
	IrNode *r = scalar(g, reduce, 1, &w, w->loc);
	r->layer = w->layer;
	IrNode *s = scalar(g, IR_SCALE, 1, &r, w->loc);
	s->a.scale = k;
	s->layer = w->layer;
	IrNode *in[2] = { loss, s };
	IrNode *sum = scalar(g, IR_ADD, 2, in, loss->loc);
	sum->layer = "regularization";
	return sum;
}

void optim_regularize(IrGraph *g, const TrainConfig *t)
{
	if (!g->loss || (t->l1 <= 0 && t->l2 <= 0))
		return;
	int n = g->nnodes;
	IrNode *loss = g->loss;
	for (int i = 0; i < n; i++) {
		IrNode *op = g->nodes[i];
		if (op->op != IR_DENSE && op->op != IR_CONV2D && op->op != IR_CONV_T2D)
			continue;
		IrNode *w = op->in[1];
		if (t->l2 > 0)
			loss = add_term(g, loss, IR_SUMSQ, w, t->l2 / 2);
		if (t->l1 > 0)
			loss = add_term(g, loss, IR_SUMABS, w, t->l1);
	}
	g->loss = loss;
}

static IrNode *state(IrGraph *g, IrNode *p, const char *what)
{
	IrNode *s = ir_new_source(g, IR_OPT_STATE, arena_printf(g->arena, "%s.%s", p->name, what), p->loc);
	s->shape = p->shape;
	s->layer = p->layer;
	return s;
}

static void update(IrGraph *g, IrNode *p, IrNode *grad, const TrainConfig *t)
{
	IrNode *in[4] = { p, grad, NULL, NULL };
	int nin = 2;
	IrOp op = IR_SGD_STEP;
	switch (t->opt) {
	case OPT_SGD:
		if (t->momentum > 0)
			in[nin++] = state(g, p, "momentum_buffer");
		break;
	case OPT_ADAGRAD:
		op = IR_ADAGRAD_STEP;
		in[nin++] = state(g, p, "sum");
		break;
	case OPT_RMSPROP:
		op = IR_RMSPROP_STEP;
		in[nin++] = state(g, p, "square_avg");
		if (t->momentum > 0)
			in[nin++] = state(g, p, "momentum_buffer");
		break;
	case OPT_ADAM:
	case OPT_ADAMW:
		op = IR_ADAM_STEP;
		in[nin++] = state(g, p, "exp_avg");
		in[nin++] = state(g, p, "exp_avg_sq");
		break;
	}
	IrNode *u = ir_new_node(g, op, nin, in, p->loc);
	u->batched = false;
	u->shape = p->shape;
	u->layer = p->layer;
	u->a.momentum = t->momentum;
	u->a.nesterov = t->nesterov;
	u->a.eps = t->eps;
	u->a.alpha = t->alpha;
	u->a.beta1 = t->beta1;
	u->a.beta2 = t->beta2;
	u->a.wd = t->opt == OPT_ADAMW ? t->weight_decay : 0;
}

void optim_append(IrGraph *g, IrNode **grads, int nbefore, const TrainConfig *t)
{
	for (int i = 0; i < nbefore; i++) {
		IrNode *p = g->nodes[i];
		if (p->op == IR_PARAM && grads[i])
			update(g, p, grads[i], t);
	}
}
