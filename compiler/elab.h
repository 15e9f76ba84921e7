/*
 * elab.h: elaboration turns the AST into one graph IR per model: blocks are
 * expanded, `repeat` unrolled, names resolved, layers and their parameters
 * named as LANGUAGE.md says, arguments checked against each layer's
 * signature, and the train settings checked and resolved.
 */
#ifndef NNC_ELAB_H
#define NNC_ELAB_H

#include "ast.h"
#include "ir.h"

typedef enum { OPT_SGD, OPT_ADAGRAD, OPT_RMSPROP, OPT_ADAM, OPT_ADAMW } OptKind;
typedef enum { SCHED_CONSTANT, SCHED_STEP, SCHED_COSINE } SchedKind;

/* a model's train settings, defaults filled in (docs/language.md lists them) */
typedef struct TrainConfig {
	bool given;		/* a train section named this model */
	SrcLoc loc;
	OptKind opt;
	double lr, momentum, beta1, beta2, eps, weight_decay, alpha;
	int nesterov;
	double l1, l2;
	int64_t batch, epochs, seed;
	const char *data, *test;	/* resolved against the .nn file's folder; NULL if unset */
	SchedKind sched;
	int64_t step_every;
	double step_gamma;
} TrainConfig;

typedef struct Model {
	const char *name;
	SrcLoc loc;
	IrGraph *graph;
	TrainConfig train;
} Model;

typedef struct Program {
	Model **models;
	int nmodels;
} Program;

/* every model of the file; errors go to the current diag sink */
Program *elab_program(Arena *a, const AstFile *f);

const char *elab_opt_name(OptKind k);
const char *elab_sched_name(SchedKind k);

#endif
