/*
 * modes.h: the graphs a model compiles to. The elaborated graph describes the
 * model once; training and inference differ in a few ops, so each gets its
 * own copy: training draws dropout masks, inference passes values through
 * dropout unchanged. Parameters keep their names, which is how the lowered
 * functions share them.
 */
#ifndef NNC_MODES_H
#define NNC_MODES_H

#include "elab.h"
#include "ir.h"
#include "passes/passes.h"

/* Both run the forward passes (pass_run_forward) on their copy before
 * anything else when po is not NULL, adding to stats (may be NULL). */
/* a copy of g for inference: dropout is the identity */
IrGraph *mode_inference(const IrGraph *g, const PassOpts *po, PassStats *stats);
/* the whole training step: forward in training mode, regularization, backward,
 * and the optimizer's updates; errors (an op without a gradient) go to diag */
IrGraph *mode_training(const IrGraph *g, const TrainConfig *t, const PassOpts *po, PassStats *stats);

#endif
