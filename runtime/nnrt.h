/*
 * nnrt.h: the nnc runtime, libnnrt. Generated code (C or LLVM) and the
 * training driver link against it. It is small, has no global state beyond
 * its thread pool, and reports every failure as a message in a caller-provided
 * buffer: nothing in it prints, exits or aborts on bad input.
 *
 * Areas, one .c file each: rng.c (random numbers, initializers), gemm.c
 * (matrix products), pool.c (the thread pool), data.c (IDX, CSV, NumPy
 * loaders; batching), weights.c (safetensors files), train.c (the training
 * driver).
 */
#ifndef NNRT_H
#define NNRT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- errors: every fallible call fills one of these and returns -1 ---- */

enum { NNRT_ERR_LEN = 512 };

typedef struct NnrtError {
	char msg[NNRT_ERR_LEN];	/* "FILE: what is wrong; what to do" */
} NnrtError;

/* ---- random numbers: PCG32 (O'Neill 2014), XSH-RR output, 64-bit LCG state ----
 * state' = state * 6364136223846793005 + inc (inc odd); output = rotr32(
 * ((state ^ (state >> 18)) >> 27), state >> 59). Seeding as the reference
 * pcg32_srandom_r: state = 0, inc = (stream << 1) | 1, step, state += seed, step. */
typedef struct NnrtRng {
	uint64_t state, inc;
} NnrtRng;

void nnrt_rng_seed(NnrtRng *r, uint64_t seed, uint64_t stream);
uint32_t nnrt_rng_u32(NnrtRng *r);
float nnrt_rng_uniform(NnrtRng *r);		/* [0, 1), 24 random bits */
uint32_t nnrt_rng_below(NnrtRng *r, uint32_t n);	/* [0, n), unbiased (rejection) */

/* w[i] ~ U(-bound, bound) */
void nnrt_init_uniform(NnrtRng *r, float *w, int64_t n, float bound);
void nnrt_init_const(float *w, int64_t n, float v);
/* PyTorch's default for dense and conv weights and biases: kaiming_uniform
 * with a = sqrt(5), which reduces to bound = 1 / sqrt(fan_in) */
float nnrt_fan_in_bound(int64_t fan_in);

/* ---- GEMM, row-major: C = alpha * op(A) * op(B) + beta * C ----
 * op(A) is m x k (A is k x m when transa), op(B) is k x n (B is n x k when
 * transb). beta = 0 writes C without reading it (C may hold NaN). Large
 * products run on the thread pool; C is bitwise the same for every thread
 * count. */
void nnrt_sgemm(int transa, int transb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
		int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc);
/* the geometry of an implicit column matrix (nnrt_sgemm_conv), in this order */
enum { NNRT_CONV_C, NNRT_CONV_H, NNRT_CONV_W, NNRT_CONV_KH, NNRT_CONV_KW, NNRT_CONV_SH, NNRT_CONV_SW,
       NNRT_CONV_PH, NNRT_CONV_PW, NNRT_CONV_DH, NNRT_CONV_DW, NNRT_CONV_OH, NNRT_CONV_OW, NNRT_CONV_GEOM };
/* A convolution without its im2col buffer: nnrt_sgemm(0, transb, m, n, k,
 * alpha, a, lda, B, ldb, beta, c, ldc) for B the column matrix of the image
 * x (C planes of H x W), read straight from x: B[(ci * KH + ky) * KW + kx]
 * [oy * OW + ox] = x[ci][oy * SH - PH + ky * DH][ox * SW - PW + kx * DW], 0
 * outside the image, C * KH * KW rows of OH * OW. Without transb (a
 * convolution, or the gather of its input gradient) B is k x n; with it (a
 * weight gradient) B is n x k. C is bitwise nnrt_sgemm's on the built B, for
 * every thread count, except where a 3x3 product goes to nnrt_winograd_3x3
 * or a 3x3 weight gradient to nnrt_winograd_3x3_dw (below): then it is that
 * function's, the same for every thread count. */
void nnrt_sgemm_conv(int transb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
		     const float *x, const int64_t *geom, float beta, float *c, int64_t ldc);
/* The adjoint of the column matrix: x = beta * x + alpha * col2im(op(A) *
 * B), with x the image of the geometry (C planes of H x W) and op(A) * B a
 * column matrix as above, m = C * KH * KW rows of n = OH * OW, k deep (B not
 * transposed, ldb apart). col2im adds each element of the column matrix into
 * its pixel, dropping those outside the image; beta 0 writes x without
 * reading it. A convolution's input gradient, a transposed convolution. x is
 * bitwise what nnrt_sgemm into a built column matrix, then adding it into
 * beta * x tap by tap, gives (runtime/col2im.c). An m or n other than the
 * geometry's computes nothing. */
void nnrt_sgemm_col2im(int transa, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
		       const float *b, int64_t ldb, const int64_t *geom, float beta, float *x);
/* nnrt_sgemm_conv(0, m, OH * OW, 9 C, ...) for a 3x3 convolution of stride
 * and dilation 1 by Winograd's F(2x2, 3x3) (runtime/winograd.c): the same
 * product up to rounding, not bitwise. Returns 0, computing nothing, for
 * other geometries, without AVX2 or without memory. nnrt_sgemm_conv takes
 * this path where nnrt_winograd_pays. */
int nnrt_winograd_3x3(int64_t m, float alpha, const float *a, int64_t lda, const float *x, const int64_t *geom,
		      float beta, float *c, int64_t ldc);
int nnrt_winograd_pays(int64_t m, int64_t lda, const int64_t *geom);
/* nnrt_sgemm_conv(1, m, 9 C, OH * OW, ...), a 3x3 convolution's weight
 * gradient (a: m x OH * OW, lda apart), by the same algorithm; the same
 * returns, and nnrt_sgemm_conv takes it where nnrt_winograd_pays_dw */
int nnrt_winograd_3x3_dw(int64_t m, float alpha, const float *a, int64_t lda, const float *x,
			 const int64_t *geom, float beta, float *c, int64_t ldc);
int nnrt_winograd_pays_dw(int64_t m, const int64_t *geom);
/* nnrt_sgemm_conv(0, m, OH * OW, 25 C, ...) for a 5x5 convolution of stride
 * and dilation 1 by F(2x2, 5x5); the same returns, and nnrt_sgemm_conv takes
 * it where nnrt_winograd_pays_5x5 */
int nnrt_winograd_5x5(int64_t m, float alpha, const float *a, int64_t lda, const float *x, const int64_t *geom,
		      float beta, float *c, int64_t ldc);
int nnrt_winograd_pays_5x5(int64_t m, int64_t lda, const int64_t *geom);
/* nnrt_sgemm_conv(1, m, 25 C, OH * OW, ...), a 5x5 convolution's weight
 * gradient (stride and dilation 1), by F(2x2, 5x5); the same returns, and
 * nnrt_sgemm_conv takes it where nnrt_winograd_pays_5x5_dw */
int nnrt_winograd_5x5_dw(int64_t m, float alpha, const float *a, int64_t lda, const float *x,
			 const int64_t *geom, float beta, float *c, int64_t ldc);
int nnrt_winograd_pays_5x5_dw(int64_t m, const int64_t *geom);

/* nnrt_sgemm_conv(0, m, OH * OW, C * KH * KW, ...) for a convolution of at
 * most 32 taps (C * KH * KW) and 16 filters (m), stride and dilation 1, the
 * output at least 8 wide, summed tap by tap from
 * a padded copy of the image (runtime/direct.c): bitwise nnrt_sgemm's on
 * the built column matrix. Returns 0, computing nothing, for other
 * geometries, without AVX2 or without memory; nnrt_sgemm_conv takes it
 * where nnrt_conv_direct_pays. */
int nnrt_conv_direct(int64_t m, float alpha, const float *a, int64_t lda, const float *x, const int64_t *geom,
		     float beta, float *c, int64_t ldc);
int nnrt_conv_direct_pays(int64_t m, int64_t lda, const int64_t *geom);

/* ---- data sets ----
 * A data set is held in memory as float inputs [count, in_elems] and targets:
 * class labels (int64, [count]) or floats [count, target_elems]. Pixels of
 * uint8 files are scaled to [0, 1] (divided by 255), as torchvision's ToTensor. */
typedef enum {
	NNRT_TARGET_CLASS,
	NNRT_TARGET_FLOAT,
	NNRT_TARGET_NONE,	/* inputs only (predictions): one .npy, an IDX images file, or a CSV of inputs */
} NnrtTargetKind;

typedef struct NnrtDataSpec {
	int64_t in_elems;		/* per-sample input elements the model expects */
	NnrtTargetKind target;
	int64_t target_elems;		/* NNRT_TARGET_FLOAT: per-sample target elements */
	int64_t classes;		/* NNRT_TARGET_CLASS: labels must lie in [0, classes) */
	int csv_label_column;		/* CSV: the column holding the label/target (0-based; -1: last) */
	int csv_header;			/* CSV: 1 skips the first line, -1 detects it (a non-numeric first field) */
} NnrtDataSpec;

typedef struct NnrtDataset {
	int64_t count;
	int64_t in_elems;
	float *x;			/* [count, in_elems] */
	NnrtTargetKind target;
	int64_t target_elems;		/* 1 for class labels */
	int64_t *labels;		/* NNRT_TARGET_CLASS: [count] */
	float *t;			/* NNRT_TARGET_FLOAT: [count, target_elems] */
} NnrtDataset;

typedef enum { NNRT_SPLIT_TRAIN, NNRT_SPLIT_TEST } NnrtSplit;

/* Loads PATH, which is one of:
 *   - a folder of MNIST-style IDX files: train-images-idx3-ubyte[.gz] and
 *     train-labels-idx1-ubyte[.gz] (t10k-* for NNRT_SPLIT_TEST);
 *   - an IDX images file (raw or .gz); its labels file is found beside it by
 *     replacing "images-idx3" with "labels-idx1";
 *   - a .csv file: one sample per line, numbers separated by commas, the
 *     label/target in spec->csv_label_column and the inputs in the others;
 *   - "inputs.npy,targets.npy": NumPy arrays, inputs float32 or uint8 with
 *     count rows; targets int64 or uint8 class labels, or float32 of the
 *     target's shape.
 * Checks magic numbers, dtypes, sizes and exact file lengths, label ranges
 * and that the per-sample size matches the model. On failure returns -1 with
 * the file and the problem in err, and holds no memory. */
int nnrt_data_load(const char *path, NnrtSplit split, const NnrtDataSpec *spec, NnrtDataset *out,
		   NnrtError *err);
void nnrt_data_free(NnrtDataset *d);

/* order[0..n) = a uniformly random permutation (Fisher-Yates with nnrt_rng_below) */
void nnrt_shuffle(NnrtRng *r, int64_t *order, int64_t n);
/* copies samples order[first .. first+n) into x [n, in_elems] and y (int64 [n] or float [n, target_elems]) */
void nnrt_gather(const NnrtDataset *d, const int64_t *order, int64_t first, int64_t n, float *x, void *y);

/* ---- weights: safetensors ----
 * The format: an 8-byte little-endian header length, a JSON header mapping
 * each name to {"dtype", "shape", "data_offsets": [begin, end]} (plus an
 * optional "__metadata__" of strings), then the raw little-endian data. */
enum { NNRT_MAX_RANK = 4 };

typedef struct NnrtTensor {
	const char *name;
	int rank;
	int64_t shape[NNRT_MAX_RANK];
	float *data;			/* F32, product(shape) elements */
} NnrtTensor;

/* Writes the tensors as F32 atomically: a temporary beside path, fsync,
 * rename, fsync of the folder; on failure nothing is left behind. metadata
 * is NULL or n_meta pairs of strings. */
int nnrt_st_save(const char *path, const NnrtTensor *t, int n, const char *const *metadata, int n_meta,
		 NnrtError *err);

/* Fills every t[i].data from the file, which must hold each name with the
 * same shape, as F32 (or F64/F16/BF16, converted). Names in the file that are
 * not asked for are ignored when they end in ".num_batches_tracked" (PyTorch's
 * batchnorm counter) and are an error otherwise, as is a missing name, a
 * shape mismatch, a header that is not valid JSON, offsets out of the file,
 * or overlapping data. */
int nnrt_st_load(const char *path, NnrtTensor *t, int n, NnrtError *err);

/* the value of key in the file's "__metadata__", copied into out (cap bytes):
 * returns 1 when found, 0 when absent, -1 when the file is bad (err set) */
int nnrt_st_metadata(const char *path, const char *key, char *out, size_t cap, NnrtError *err);


/* ---- models ----
 * Generated code, C or LLVM, describes its model with an NnrtModelInfo: a
 * table of its buffers and three kernels. The runtime does the rest from the
 * table: arena layout, initialization, weight files, the training driver. */

/* FOLDED: computed from the weights by the model's prepare kernel (own memory, not
 * saved); CONST: compiled into the code, no arena memory (elems 0) */
enum { NNRT_BUF_PARAM, NNRT_BUF_STATE, NNRT_BUF_OPT, NNRT_BUF_TEMP, NNRT_BUF_ARG_X, NNRT_BUF_ARG_Y, NNRT_BUF_ARG_OUT,
       NNRT_BUF_FOLDED, NNRT_BUF_CONST };
enum { NNRT_INIT_NONE, NNRT_INIT_UNIFORM, NNRT_INIT_CONST };

typedef struct NnrtBuffer {
	const char *name;		/* parameters and state: the state_dict key ("dense1.weight") */
	int kind;			/* NNRT_BUF_*: PARAM and STATE are the weights file */
	int64_t elems;			/* per sample when batched; 0 for arguments (not in the arena) */
	int batched;
	int init;			/* NNRT_INIT_*: how nnrt_init fills a parameter or state */
	float init_value;		/* the bound of UNIFORM, the value of CONST */
	int rank;
	int64_t shape[NNRT_MAX_RANK];
	/* temporaries: the offset in floats into the temporaries region is
	 * plan_ps * max_batch + plan_fixed (nnc's memory plan: temporaries that are
	 * never live at once share memory) */
	int64_t plan_ps, plan_fixed;
} NnrtBuffer;

typedef struct NnrtModelInfo NnrtModelInfo;

/* a model's state; generated code reads its buffers through b */
typedef struct NnrtCtx {
	const NnrtModelInfo *model;
	unsigned char *arena;
	int64_t max_batch;
	double lr;			/* learning rate of the next train_step */
	int64_t step;			/* train_steps taken */
	NnrtRng rng;			/* dropout masks */
	float **b;			/* model->nbufs pointers into the arena (NULL for arguments) */
} NnrtCtx;

struct NnrtModelInfo {
	const char *name;
	int64_t in_elems;			/* per sample */
	int in_rank;
	int64_t in_shape[3];
	int64_t out_elems;
	NnrtTargetKind target;
	int64_t target_elems, classes;
	/* the train section's settings: the defaults of the command line */
	int64_t batch, epochs, seed;
	double lr;
	int schedule;				/* 0 constant, 1 step, 2 cosine */
	int64_t step_every;
	double step_gamma;
	const char *optimizer;
	const char *data, *test;		/* NULL when the model names none */
	int nbufs;
	const NnrtBuffer *bufs;
	void (*forward)(NnrtCtx *ctx, int64_t n, const float *x, float *out);
	float (*eval)(NnrtCtx *ctx, int64_t n, const float *x, const void *y, float *out);	/* NULL without a loss */
	float (*train_step)(NnrtCtx *ctx, int64_t n, const float *x, const void *y, float *out);	/* NULL without a loss */
	int metric;				/* NNRT_METRIC_*: what the driver reports beside the loss */
	/* the temporaries region: temps_ps * max_batch + temps_fixed floats. Both 0
	 * (a table without a plan): every temporary gets memory of its own */
	int64_t temps_ps, temps_fixed;
};

enum {
	NNRT_METRIC_NONE,
	NNRT_METRIC_ACCURACY,	/* class targets: argmax of the output against the label */
	NNRT_METRIC_IOU,	/* binary masks (bce on logits): intersection over union of output > 0 and target > 0.5 */
};

/* bytes of arena for batches of up to max_batch samples: parameters, state and
 * optimizer state one after another, then the temporaries region (every buffer
 * and the region 64-byte aligned) */
size_t nnrt_arena_size(const NnrtModelInfo *m, int64_t max_batch);
/* lays out the arena (64-byte aligned, nnrt_arena_size bytes) into bufs (m->nbufs
 * pointers), sets ctx to use them, and initializes parameters and state: each
 * parameter i from its own PCG32 stream (seed, i); the dropout generator from (seed, 0x6e6e63) */
void nnrt_init(NnrtCtx *ctx, const NnrtModelInfo *m, float **bufs, void *arena, int64_t max_batch, uint64_t seed);
/* the weights (parameters and state) as safetensors with their state_dict names */
int nnrt_save_weights(const NnrtCtx *ctx, const char *path, NnrtError *err);
int nnrt_load_weights(NnrtCtx *ctx, const char *path, NnrtError *err);

/* the learning rate of epoch e (0-based) under the model's schedule, as
 * torch.optim.lr_scheduler: StepLR(every, gamma), CosineAnnealingLR(T_max = epochs) */
double nnrt_schedule_lr(const NnrtModelInfo *m, double lr, int64_t epoch, int64_t epochs);

/* parses the training flags (docs/training.md), trains, evaluates, saves;
 * returns the process exit status: 0, or 1 after printing an error */
int nnrt_train_main(const NnrtModelInfo *m, int argc, char **argv);

/* `--weights W [--data PATH] [--batch N]`: prints the loss, the accuracy and
 * the confusion matrix of class targets; returns the exit status */
int nnrt_eval_main(const NnrtModelInfo *m, int argc, char **argv);

/* `--weights W --input FILE [--top K] [--output FILE.csv] [--batch N]`: the
 * outputs for inputs without labels, one CSV row per sample (all outputs, or
 * the top K classes with their scores); returns the exit status */
int nnrt_predict_main(const NnrtModelInfo *m, int argc, char **argv);

/* ---- threads: a pool on pthreads, the runtime's one piece of global state ----
 * nnrt_parallel_for calls body(ctx, begin, end) on contiguous chunks that
 * cover [0, n) once: t = min(threads, n) chunks whose sizes differ by at most
 * one (the first n % t one longer), the same chunks for the same thread
 * count. The calling thread runs chunks too, and returns when all are done.
 * Workers are created on first use and sleep between calls. A call made from
 * inside a body runs body(ctx, 0, n) serially; calls from several threads at
 * once take turns. */
void nnrt_pool_set_threads(int n);	/* n <= 0: one per online core, the default */
int nnrt_pool_threads(void);
void nnrt_parallel_for(int64_t n, void (*body)(void *ctx, int64_t begin, int64_t end), void *ctx);
/* the same for loops whose iterations each do about `work` operations (an
 * estimate; generated code passes the compiler's): every chunk gets at least
 * NNRT_GRAIN of work, so a small loop runs inline in the calling thread
 * without waking the pool, and a middling one on fewer threads; a large one
 * is cut into up to 4 chunks per thread, claimed as threads come free. The
 * chunks depend only on n, work and the thread count. */
enum { NNRT_GRAIN = 1 << 20 };
void nnrt_parallel_for_grain(int64_t n, int64_t work, void (*body)(void *ctx, int64_t begin, int64_t end), void *ctx);

#ifdef __cplusplus
}
#endif

#endif
