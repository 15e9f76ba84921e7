/*
 * compile.h: one compilation, front to back as far as the request goes:
 * read, parse, elaborate, infer shapes, verify. The driver (main.c) and the
 * tests both start here; tests capture the diagnostics instead of printing.
 */
#ifndef NNC_COMPILE_H
#define NNC_COMPILE_H

#include "ast.h"
#include "elab.h"
#include "ir.h"
#include "passes/passes.h"

typedef enum {
	UPTO_CHECK,		/* the front end: parse, elaborate, shapes */
	UPTO_GRAPHS,		/* also the training and inference graphs */
	UPTO_LOOPS,		/* also the loop IR of forward, eval and train_step */
} CompileUpto;

typedef struct CompileOpts {
	const char *model;	/* --model NAME, or NULL for the first */
	FILE *diag_out;		/* where diagnostics go; NULL captures them only */
	CompileUpto upto;
	bool inference;		/* forward only: no training graph, no train_step */
	const char *optimizer;	/* --optimizer SPEC: replaces the train section's, e.g. "sgd(lr=0.1, momentum=0.9)" */
	const PassOpts *passes;	/* -O level, --disable-pass, --print-ir-after; NULL: -O2 */
	int64_t mem_budget;	/* --mem-budget BYTES: fail when the planned training arena is larger; 0: none */
	const char *embed_weights;	/* --embed-weights FILE (with inference): weights compiled in (embed.h) */
	int bottleneck;		/* -fbottleneck=R: the bottleneck rewrite of the model (passes/bottleneck.c); 0: off */
} CompileOpts;

typedef struct Compile {
	Arena *arena;
	Diag diag;
	SrcFile src;
	AstFile *ast;
	Program *prog;
	Model *model;		/* the selected model, when everything went well */
	IrGraph *infer;		/* UPTO_GRAPHS: the model for inference (dropout off) */
	IrGraph *train;		/* UPTO_GRAPHS: forward, backward and updates; NULL without a loss */
	struct LoopModule *loops;	/* UPTO_LOOPS */
	PassStats stats_infer, stats_train;	/* rewrites of each pass on each graph */
	PassBottleneckLog bottleneck;	/* -fbottleneck: what the rewrite changed in the model */
	int nerrors;
	const char *first_error;	/* message of the first error, no location */
	const char *failed_stage;	/* "read", "parse", "elaborate", "shape" or NULL */
} Compile;

enum { COMPILE_MAX_FILE = 64 << 20 };

Compile *compile_file(const char *path, const CompileOpts *o);
Compile *compile_source(const char *name, const char *text, size_t len, const CompileOpts *o);
/* for tests: the text is named "<test>" and diagnostics are captured */
Compile *compile_string(const char *text);
void compile_free(Compile *c);

#endif
