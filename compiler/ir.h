/*
 * ir.h: the graph IR. A graph is a list of SSA nodes in topological order:
 * each node is one tensor op whose inputs come earlier in the list. Values
 * that carry the batch (inputs, activations) have a static per-sample shape
 * and `batched` set; parameters and buffers have their full shape, in
 * PyTorch's layout, and their state_dict name; a loss is an unbatched scalar.
 *
 * Elaboration appends nodes with attributes; shape.c fills in every shape
 * (parameter shapes included, from the layer that uses them). Autodiff and
 * the optimizer append more nodes; passes rewrite; lowering reads.
 */
#ifndef NNC_IR_H
#define NNC_IR_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "arena.h"
#include "diag.h"

typedef enum {
#define OP(id, lo, hi, fam, name) IR_##id,
#include "ops.def"
#undef OP
	IR_NOPS
} IrOp;

typedef enum {
	FAM_SOURCE, FAM_CONTRACT, FAM_POOL, FAM_NORM, FAM_SHAPE, FAM_ELEMWISE, FAM_AXIS, FAM_LOSS,
	FAM_RANDOM,	/* draws from the context's generator: training only */
	FAM_REDUCE,	/* sums to a smaller shape */
	FAM_GRAD,	/* a backward rule's kernel */
	FAM_UPDATE,	/* writes its parameter and state in place; its value is not used */
} IrFamily;

typedef enum { DT_F32, DT_I64 } IrDType;

enum { IR_MAX_RANK = 4 };

typedef struct Shape {
	int rank;		/* -1: poisoned by an earlier error, checks stay quiet */
	int64_t d[IR_MAX_RANK];
} Shape;

typedef enum { UP_NEAREST, UP_BILINEAR } IrUpMode;

typedef struct IrAttrs {
	int64_t units;		/* dense: outputs; conv: filters */
	int kernel[2];		/* (h, w) for conv and pooling */
	int stride[2];
	int dilation[2];
	int pad[4];		/* top, bottom, left, right */
	int out_pad[2];		/* conv_transpose2d */
	int groups;
	int bias;		/* the op has a bias input */
	int pad_same;		/* the user wrote pad="same" */
	int up[2];		/* upsample factor (h, w) */
	IrUpMode mode;
	double alpha;		/* leaky_relu slope, elu alpha */
	double p;		/* dropout probability */
	double momentum, eps;	/* batchnorm */
	double scale;		/* scale, scale_by, const */
	int64_t classes;	/* target class(K) */
	double beta1, beta2, wd;	/* optimizers; alpha, eps and momentum above serve too */
	int nesterov;
} IrAttrs;

typedef struct IrNode IrNode;

struct IrNode {
	int id;			/* index in the graph's node list */
	IrOp op;
	int nin;
	IrNode **in;
	IrAttrs a;
	Shape shape;		/* per sample when batched, else the whole tensor */
	IrDType dtype;
	bool batched;
	const char *name;	/* parameters and buffers: "conv1.weight"; inputs: "x" */
	const char *layer;	/* the layer the node belongs to: "conv1", "bottleneck2.bn1" */
	SrcLoc loc;		/* what the user wrote that made the node */
	int group;		/* passes/fuse.c: > 0 when lowered in one loop nest with the nodes of the same group */
	int cgroup;		/* passes/fuse.c: > 0 (its first member's id + 1) in a channel group of batchnorm kernels */
	int host;		/* passes/fuse.c: run by the kernel of node host - 1 (an update, by its gradient's) */
	int tail;		/* passes/fuse.c: a batch_sum or channel_sum summed in the loop of node tail - 1 */
};

typedef struct IrGraph {
	Arena *arena;
	const char *name;
	SrcLoc loc;
	IrNode **nodes;
	int nnodes, cap;
	IrNode **outputs;
	const char **output_names;
	int noutputs;
	IrNode *loss;
} IrGraph;

IrGraph *ir_new_graph(Arena *a, const char *name, SrcLoc loc);
IrNode *ir_new_node(IrGraph *g, IrOp op, int nin, IrNode *const *in, SrcLoc loc);
IrNode *ir_new_source(IrGraph *g, IrOp op, const char *name, SrcLoc loc);

const char *ir_op_name(IrOp op);
IrFamily ir_op_family(IrOp op);
int ir_op_min_arity(IrOp op);
int ir_op_max_arity(IrOp op);	/* -1: any */

/* a parameter (trainable) or a buffer (state, not trained) */
static inline bool ir_is_state(const IrNode *n)
{
	return n->op == IR_PARAM || n->op == IR_BUFFER;
}

int64_t ir_numel(const IrNode *n);	/* elements per sample, or in the whole tensor */
bool shape_poisoned(Shape s);
Shape shape_poison(void);
Shape shape_make(int rank, const int64_t *d);
bool shape_eq(Shape a, Shape b);
/* "[16, 5, 5]"; rotates through a few static buffers, fine for one message */
const char *shape_str(Shape s);

void ir_print(FILE *f, const IrGraph *g);
void ir_print_dot(FILE *f, const IrGraph *g);
/* checks the IR's invariants; NULL when they hold, else what broke */
const char *ir_verify(const IrGraph *g, char *buf, size_t n);

#endif
