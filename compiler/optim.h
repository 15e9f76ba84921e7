/*
 * optim.h: training additions to the graph: regularization terms before
 * autodiff, the optimizer's update ops after it.
 */
#ifndef NNC_OPTIM_H
#define NNC_OPTIM_H

#include "elab.h"
#include "ir.h"

/* loss += l2/2 * sum(w^2) + l1 * sum(|w|) over the weights of dense and convolution layers */
void optim_regularize(IrGraph *g, const TrainConfig *t);
/* one update op per parameter that has a gradient, with the optimizer's state as OPT_STATE nodes */
void optim_append(IrGraph *g, IrNode **grads, int nparams_before, const TrainConfig *t);

#endif
