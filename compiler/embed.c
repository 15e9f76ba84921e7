/*
 * embed.c: --embed-weights. Loads the weights with the runtime's strict
 * safetensors reader (the same checks as the generated load: names, shapes,
 * offsets), runs the module's prepare function on them in the loop
 * interpreter, so the folded weights come from the same loop IR the
 * load-time code runs (in double, rounded to float once), and marks the
 * buffers the kernels read LB_CONST with their values; the C emitter prints
 * them as exact hex floats. Reads and writes loop IR only.
 */
#include "embed.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "diag.h"
#include "loop_interp.h"
#include "nnrt.h"

static bool weight(const LoopBuf *b)
{
	return b->kind == LB_PARAM || b->kind == LB_STATE;
}

/* the file's tensors into float arrays of the module's weights (by buffer id) */
static bool load(const LoopModule *m, const char *path, float **vals)
{
	NnrtTensor *t = arena_alloc(m->arena, sizeof *t * (size_t)(m->nbufs + 1));
	int n = 0;
	for (int i = 0; i < m->nbufs; i++) {
		const LoopBuf *b = m->bufs[i];
		if (!weight(b))
			continue;
		vals[i] = arena_alloc(m->arena, sizeof(float) * (size_t)(b->elems + 1));
		t[n] = (NnrtTensor){ .name = b->name, .rank = b->rank, .data = vals[i] };
		memcpy(t[n].shape, b->shape, sizeof t[n].shape);
		n++;
	}
	NnrtError err;
	SrcLoc none = { 0 };
	if (nnrt_st_load(path, t, n, &err) == 0)
		return true;
	diag_error(none, "--embed-weights: %s", err.msg);
	return false;
}

/* b's values from the machine, rounded to float once; false after a message when one is
 * not finite (the C has no literal for NaN, and such weights compute nothing useful) */
static bool freeze(LoopModule *m, LoopBuf *b, const double *v, const char *path)
{
	float *d = arena_alloc(m->arena, sizeof(float) * (size_t)(b->elems + 1));
	for (int64_t k = 0; k < b->elems; k++) {
		d[k] = (float)v[k];
		if (!isfinite(d[k])) {
			SrcLoc none = { 0 };
			if (b->kind == LB_FOLDED)
				diag_error(none, "--embed-weights: %s: the folded weights (%s) hold %s at element %lld",
					   path, b->name, isnan(d[k]) ? "a NaN" : "an infinity", (long long)k);
			else
				diag_error(none, "--embed-weights: %s: %s holds %s at element %lld", path, b->name,
					   isnan(d[k]) ? "a NaN" : "an infinity", (long long)k);
			diag_hint("%s", b->kind == LB_FOLDED ? "is a running_var negative? check the training run"
							     : "the training run that saved it diverged; use an earlier checkpoint");
			return false;
		}
	}
	b->data = d;
	return true;
}

static bool used_by_kernels(const LoopModule *m, bool *used)
{
	for (int i = 0; i < m->nfns; i++) {
		if (!strcmp(m->fns[i]->name, "train_step"))
			return false;
		if (strcmp(m->fns[i]->name, "prepare"))
			loop_bufs_used(m->fns[i]->body, used);
	}
	return true;
}

bool embed_weights(LoopModule *m, const char *path)
{
	bool *used = arena_alloc(m->arena, (size_t)m->nbufs + 1);
	if (!used_by_kernels(m, used))
		NNC_BUG("--embed-weights on a module that trains");
	float **vals = arena_alloc(m->arena, sizeof(float *) * (size_t)(m->nbufs + 1));
	if (!load(m, path, vals))
		return false;
	LoopMachine *lm = loop_machine_new(m, 1, 0);
	for (int i = 0; i < m->nbufs; i++) {
		double *v = vals[i] ? loop_machine_buf(lm, m->bufs[i]->name) : NULL;
		for (int64_t k = 0; v && k < m->bufs[i]->elems; k++)
			v[k] = vals[i][k];
	}
	if (loop_find_fn(m, "prepare"))
		loop_machine_run(lm, "prepare", 1, NULL, NULL, NULL);
	bool ok = true;
	for (int i = 0; i < m->nbufs && ok; i++) {
		LoopBuf *b = m->bufs[i];
		if (!weight(b) && b->kind != LB_FOLDED)
			continue;
		if (used[i])
			ok = freeze(m, b, loop_machine_buf(lm, b->name), path);
		b->kind = LB_CONST;
		b->init = LI_NONE;
	}
	loop_machine_free(lm);
	if (!ok)
		return false;
	int k = 0;	/* everything prepare computes is in the constants now */
	for (int i = 0; i < m->nfns; i++)
		if (strcmp(m->fns[i]->name, "prepare"))
			m->fns[k++] = m->fns[i];
	m->nfns = k;
	m->meta.embedded = path;
	return true;
}
