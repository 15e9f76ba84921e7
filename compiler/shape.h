/*
 * shape.h: shape inference and checking (shape.c).
 */
#ifndef NNC_SHAPE_H
#define NNC_SHAPE_H

#include "ir.h"

/* infers every node's shape; returns the number of errors it reported */
int shape_infer(IrGraph *g);

#endif
