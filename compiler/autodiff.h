/*
 * autodiff.h: reverse-mode differentiation as a pass on the graph IR.
 */
#ifndef NNC_AUTODIFF_H
#define NNC_AUTODIFF_H

#include "ir.h"

/*
 * Appends to g the nodes that compute d(g->loss)/d(p) for every parameter p
 * the loss depends on. Returns an array indexed by the id of each node that
 * existed before the call, holding its gradient node or NULL; parameters the
 * loss does not reach get NULL. An op without a gradient rule is reported at
 * its source (diag) and yields NULL for what lies before it.
 */
IrNode **ad_backward(IrGraph *g);

#endif
