/*
 * loop_interp.h: runs the functions of a loop module (loop.h) in double
 * precision, with the semantics of the C emitter, for the gradient checks
 * (DESIGN.md, "Three oracles"). Every F32 value is held as a double and
 * conversions to F32 do not round: the interpreter checks the math, not the
 * float rounding. It also checks the IR as it runs: indices within the
 * buffers, no store to the x and y arguments, no parallel loop whose
 * iterations touch one another's elements or share a local, no read of a
 * temporary the call has not written (temporaries start each call as NaN).
 * A broken check is nnc's bug: NNC_BUG.
 */
#ifndef NNC_LOOP_INTERP_H
#define NNC_LOOP_INTERP_H

#include <stdint.h>

#include "loop.h"

typedef struct LoopMachine LoopMachine;

/*
 * A machine for m with room for batches of up to max_batch samples. The
 * parameters and state are initialized as the generated init() does from
 * seed (each LI_UNIFORM buffer from the PCG32 stream (seed, buffer index), the
 * same float values), then prepare runs when the module has one (as init()
 * does), the learning rate is m->meta.lr, the step count 0.
 * The module must outlive the machine.
 */
LoopMachine *loop_machine_new(const LoopModule *m, int64_t max_batch, uint64_t seed);
void loop_machine_free(LoopMachine *lm);

/*
 * Runs the function fn ("forward", "eval", "train_step") on n <= max_batch
 * samples: x is [n, in_elems]; y is int64_t [n] class labels or double
 * [n, target_elems], as the module's y buffer is I64 or F32 (NULL when fn
 * reads no target); out is [n, out_elems] or NULL. Returns the function's
 * result (the loss), or 0 when it has none.
 */
double loop_machine_run(LoopMachine *lm, const char *fn, int64_t n, const double *x, const void *y, double *out);

/* a persistent F32 buffer (parameter, state, optimizer state, folded) by name, and its
 * element count; NULL and 0 when there is none */
double *loop_machine_buf(LoopMachine *lm, const char *name);
int64_t loop_machine_buf_len(const LoopMachine *lm, const char *name);

/* restarts the context's generator (dropout masks) as init() seeds it: runs
 * that reseed draw the same masks */
void loop_machine_seed_rng(LoopMachine *lm, uint64_t seed);
void loop_machine_set_lr(LoopMachine *lm, double lr);
double loop_machine_lr(const LoopMachine *lm);
void loop_machine_set_step(LoopMachine *lm, int64_t step);
int64_t loop_machine_step(const LoopMachine *lm);

#endif
