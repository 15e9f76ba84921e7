/*
 * summary.h: what `nnc check` prints about a model: one row per layer with
 * its output shape, parameters and forward FLOPs, then totals. The counts
 * are functions of the IR so tests and other stages can use them.
 */
#ifndef NNC_SUMMARY_H
#define NNC_SUMMARY_H

#include "elab.h"
#include "ir.h"
#include "passes/passes.h"

typedef struct ModelStats {
	int64_t params;		/* trainable parameter elements */
	int64_t buffers;	/* state that is not trained (batchnorm running statistics) */
	int64_t flops;		/* forward FLOPs per sample, a multiply-add counting 2 */
	int64_t act_bytes;	/* bytes of every activation of one sample, float32 */
	int layers;		/* rows of the table */
} ModelStats;

int64_t summary_node_flops(const IrNode *n);
int64_t summary_node_params(const IrNode *n);	/* trainable elements owned by a layer node */
ModelStats summary_stats(const IrGraph *g);
void summary_print(FILE *f, const Model *m, const char *file);
/* one line per parameter and buffer: name, shape, kind (what PyTorch's state_dict holds) */
void summary_print_params(FILE *f, const IrGraph *g);
/* -fbottleneck: each rewritten convolution's parameters and FLOPs before and
 * after, and the model's totals, from the nodes of both graphs */
void summary_print_bottleneck(FILE *f, const PassBottleneckLog *log, const IrGraph *after);

#endif
