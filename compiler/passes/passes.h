/*
 * passes.h: the graph passes and the pass manager. Each pass is a file in
 * compiler/passes/ that rewrites one graph and returns how many rewrites it
 * made; the manager (manager.c) runs them in the order of its table, skips
 * those above the -O level or disabled, verifies the graph after each one and
 * prints it when asked. A pass reaches the rest of the compiler only through
 * the graph it is handed.
 */
#ifndef NNC_PASSES_H
#define NNC_PASSES_H

#include <stdbool.h>
#include <stdio.h>

#include "ir.h"

enum { PASS_MAX = 16, PASS_MAX_DISABLED = 16 };

typedef struct PassOpts {
	int olevel;			/* 0, 1 or 2 */
	const char *disabled[PASS_MAX_DISABLED];	/* --disable-pass NAME */
	int ndisabled;
	const char *print_after;	/* --print-ir-after=PASS, or NULL */
	bool print_all;			/* --print-ir-after-all */
	FILE *print_to;			/* where those go (stderr when NULL) */
	/* the graph's weights stay as init or load left them (a forward-only build
	 * whose back end runs the prepare function after both): passes that compute
	 * from the weights (bnfold) run only then */
	bool frozen;
} PassOpts;

typedef struct PassStats {
	int fired[PASS_MAX];		/* rewrites per pass, by table index */
	bool ran[PASS_MAX];
} PassStats;

/* runs the table on g; stats (may be NULL) adds up the rewrites. The
 * forward passes (poolrelu) run instead on the model's forward graph before
 * autodiff (modes.c), so that the backward graph follows them: pass_run_forward. */
void pass_run_all(IrGraph *g, const PassOpts *o, PassStats *stats);
void pass_run_forward(IrGraph *g, const PassOpts *o, PassStats *stats);
int pass_count(void);
const char *pass_name(int i);
int pass_min_level(int i);
int pass_lookup(const char *name);	/* table index, or -1 */

/* the passes: each returns its number of rewrites */
int pass_dce(IrGraph *g);
int pass_cse(IrGraph *g);
int pass_fold(IrGraph *g);
int pass_simplify(IrGraph *g);
int pass_fuse(IrGraph *g);
int pass_pool_relu(IrGraph *g);
int pass_bnfold(IrGraph *g);

/* -fbottleneck=R (bottleneck.c): not in the table, since it changes the model;
 * runs on the model graph before training and inference graphs are made */
typedef struct PassBottleneck {
	const IrNode *orig;	/* the KxK convolution as written, no longer in the graph */
	IrNode *reduce, *conv, *expand;	/* what stands for it, in order */
} PassBottleneck;
typedef struct PassBottleneckLog {
	int r;			/* the factor; 0 when the rewrite did not run */
	int n;			/* convolutions rewritten */
	PassBottleneck *convs;
	IrGraph before;		/* the graph's node list as written (nodes shared), for totals */
} PassBottleneckLog;
int pass_bottleneck(IrGraph *g, int r, PassBottleneckLog *log);

/* helpers for passes (util.c) */
/* replacement in one sweep: walk the nodes in order, call pass_remap(n, repl)
 * before looking at n, set repl[id] to what stands for a node from now on, and
 * finish with pass_remap_roots (outputs and loss); replaced nodes stay in the
 * list until dce drops them */
IrNode **pass_repl_new(const IrGraph *g);
void pass_remap(IrNode *n, IrNode *const *repl);
void pass_remap_roots(IrGraph *g, IrNode *const *repl);
/* drops the nodes whose keep[id] is false and renumbers the rest in order */
int pass_compact(IrGraph *g, const bool *keep);
/* users of every node, as CSR: users of node i are use[off[i] .. off[i+1]) */
typedef struct PassUses {
	int *off;
	IrNode **use;
} PassUses;
PassUses pass_uses(const IrGraph *g);
/* the node is a scalar CONST with value v */
bool pass_is_const(const IrNode *n, double v);

#endif
