/*
 * embed.h: --embed-weights (embed.c): the weights of a forward-only module
 * compiled into the code.
 */
#ifndef NNC_EMBED_H
#define NNC_EMBED_H

#include <stdbool.h>

#include "loop.h"

/*
 * Reads the safetensors file at path (the model's state_dict names and
 * shapes, as P_load), runs the module's prepare function on it at compile
 * time, and turns every parameter, state and prepared buffer into LB_CONST
 * with the values the kernels read; prepare leaves the module. Reports a
 * missing, damaged or mismatched file, or weights that are not finite, with
 * diag_error and returns false. The module must have no train_step.
 */
bool embed_weights(LoopModule *m, const char *path);

#endif
