/*
 * model.c: what every model needs, driven by its buffer table (NnrtModelInfo):
 * the arena layout, PyTorch-default initialization, and the weights file. The
 * generated code (C or LLVM) only describes the buffers and supplies kernels.
 * The weights file allocates a small table of tensors; the kernels never do.
 */
#include "nnrt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t buffer_bytes(const NnrtBuffer *b, int64_t max_batch)
{
	size_t n = (size_t)b->elems * (b->batched ? (size_t)max_batch : 1) * sizeof(float);
	return (n + 63) & ~(size_t)63;
}

static int planned(const NnrtModelInfo *m)
{
	return m->temps_ps > 0 || m->temps_fixed > 0;
}

/* the buffers that keep memory of their own: all but planned temporaries */
static int own_memory(const NnrtModelInfo *m, const NnrtBuffer *b)
{
	return b->elems && !(b->kind == NNRT_BUF_TEMP && planned(m));
}

size_t nnrt_arena_size(const NnrtModelInfo *m, int64_t max_batch)
{
	size_t n = 0;
	for (int i = 0; i < m->nbufs; i++)
		if (own_memory(m, &m->bufs[i]))
			n += buffer_bytes(&m->bufs[i], max_batch);
	if (planned(m))
		n += ((size_t)m->temps_ps * (size_t)max_batch + (size_t)m->temps_fixed) * sizeof(float);
	return (n + 63) & ~(size_t)63;
}

void nnrt_init(NnrtCtx *ctx, const NnrtModelInfo *m, float **bufs, void *arena, int64_t max_batch, uint64_t seed)
{
	size_t at = 0;
	memset(ctx, 0, sizeof *ctx);
	ctx->model = m;
	ctx->arena = arena;
	ctx->max_batch = max_batch;
	ctx->lr = m->lr;
	ctx->b = bufs;
	nnrt_rng_seed(&ctx->rng, seed, 0x6e6e63);
	for (int i = 0; i < m->nbufs; i++) {
		const NnrtBuffer *b = &m->bufs[i];
		bufs[i] = NULL;
		if (own_memory(m, b)) {
			bufs[i] = (float *)(ctx->arena + at);
			at += buffer_bytes(b, max_batch);
		}
	}
	/* the temporaries region follows the buffers with memory of their own */
	for (int i = 0; i < m->nbufs; i++) {
		const NnrtBuffer *b = &m->bufs[i];
		if (b->elems && !own_memory(m, b))
			bufs[i] = (float *)(ctx->arena + at) + (b->plan_ps * max_batch + b->plan_fixed);
	}
	for (int i = 0; i < m->nbufs; i++) {
		const NnrtBuffer *b = &m->bufs[i];
		/* each parameter its own stream: adding one leaves the others unchanged */
		if (b->init == NNRT_INIT_UNIFORM) {
			NnrtRng r;
			nnrt_rng_seed(&r, seed, (uint64_t)i);
			nnrt_init_uniform(&r, bufs[i], b->elems, b->init_value);
		} else if (b->init == NNRT_INIT_CONST) {
			nnrt_init_const(bufs[i], b->elems, b->init_value);
		}
	}
}

/* parameters and model state make the weights file; optimizer state and temporaries do not */
static int is_weight(const NnrtBuffer *b)
{
	return b->kind == NNRT_BUF_PARAM || b->kind == NNRT_BUF_STATE;
}

/* the weights as tensors over the context's buffers; returns their count */
static int weights(const NnrtCtx *ctx, NnrtTensor *t)
{
	const NnrtModelInfo *m = ctx->model;
	int n = 0;
	for (int i = 0; i < m->nbufs; i++) {
		const NnrtBuffer *b = &m->bufs[i];
		if (!is_weight(b))
			continue;
		t[n].name = b->name;
		t[n].rank = b->rank;
		memcpy(t[n].shape, b->shape, sizeof t[n].shape);
		t[n].data = ctx->b[i];
		n++;
	}
	return n;
}

static NnrtTensor *tensors(const NnrtCtx *ctx, NnrtError *err)
{
	NnrtTensor *t = calloc((size_t)ctx->model->nbufs + 1, sizeof *t);
	if (!t)
		snprintf(err->msg, sizeof err->msg, "out of memory");
	return t;
}

int nnrt_save_weights(const NnrtCtx *ctx, const char *path, NnrtError *err)
{
	NnrtTensor *t = tensors(ctx, err);
	if (!t)
		return -1;
	const char *meta[] = { "format", "pt", "nnc_model", ctx->model->name };
	int rc = nnrt_st_save(path, t, weights(ctx, t), meta, 2, err);
	free(t);
	return rc;
}

int nnrt_load_weights(NnrtCtx *ctx, const char *path, NnrtError *err)
{
	NnrtTensor *t = tensors(ctx, err);
	if (!t)
		return -1;
	int rc = nnrt_st_load(path, t, weights(ctx, t), err);
	free(t);
	return rc;
}
