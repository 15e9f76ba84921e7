/*
 * lower.h: graph IR -> loop IR (lower.c).
 */
#ifndef NNC_LOWER_H
#define NNC_LOWER_H

#include "elab.h"
#include "ir.h"
#include "loop.h"

/*
 * Lowers a model's inference graph (functions forward and eval) and, when
 * given, its training graph (train_step) into one module. Returns NULL after
 * reporting (diag) an op that has no lowering yet.
 */
LoopModule *lower_model(Arena *a, const Model *m, const IrGraph *infer, const IrGraph *train, const char *source);

#endif
