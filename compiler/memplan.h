/*
 * memplan.h: the static memory plan. Temporaries whose lifetimes do not
 * intersect share arena memory; parameters, model state and optimizer state
 * keep a region of their own.
 */
#ifndef NNC_MEMPLAN_H
#define NNC_MEMPLAN_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "loop.h"

enum { MEMPLAN_ALIGN = 16 };	/* floats: 64 bytes */

/* the arena of one batch size, in bytes, split by kind; every figure that
 * check, the header and --mem-budget print comes from here */
typedef struct MemPlanStats {
	int64_t batch;		/* the batch size the bytes are for */
	bool training;		/* the module has train_step (else forward and eval only) */
	int64_t params, state, opt;	/* persistent: each buffer 64-byte aligned */
	int64_t temps;		/* activations and temporaries, as planned */
	int64_t temps_unplanned;	/* the same temporaries at one buffer each */
	int64_t total;		/* the planned arena: nnrt_arena_size(batch) */
	int64_t unplanned;	/* one buffer per tensor */
} MemPlanStats;

/*
 * memplan.c: give every temporary an offset in one shared temporaries region
 * by first-fit over its liveness (a function's top-level statements run in
 * order; functions never overlap), batched temporaries in per-sample units
 * and unbatched ones in elements.
 * Needs: the lowered module. Sets: LoopBuf plan_ps, plan_fixed (temporaries), alias_of,
 * LoopModule temps_ps, temps_fixed, planned. Keeps: the functions and buffers.
 */
void pass_memplan(LoopModule *m);

/* the arena for batches of up to batch samples, as the runtime lays it out */
MemPlanStats memplan_stats(const LoopModule *m, int64_t batch);
/* "Memory: ..." lines for nnc check, each starting with prefix */
void memplan_print(FILE *f, const MemPlanStats *s, const char *prefix);
/* "12345", "64K", "2M", "1G" (powers of 1024): bytes, or -1 when malformed */
int64_t memplan_parse_bytes(const char *s);

#endif
