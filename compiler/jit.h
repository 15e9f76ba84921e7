/*
 * jit.h: runs a model's LLVM code in this process (jit.c): ORC LLJIT
 * compiles it for this machine, its calls resolve to the runtime linked into
 * nnc, and the result is the model's NnrtModelInfo, ready for
 * nnrt_train_main() or any driver. The kernels compile in the background:
 * jit_new() returns as soon as the model's data is there, and a kernel's
 * first call waits for its code (train_step first). One JIT at a time.
 */
#ifndef NNC_JIT_H
#define NNC_JIT_H

#include <stddef.h>

#include "loop.h"
#include "nnrt.h"

typedef struct Jit Jit;

/* starts compiling m (optimized for this CPU); prefix is its symbols' prefix.
 * m must outlive the JIT. NULL with the reason in err when LLVM fails. */
Jit *jit_new(const LoopModule *m, const char *prefix, char *err, size_t errlen);
/* the model, PREFIX_info; valid until jit_free. A kernel whose compilation
 * failed prints the reason and exits with status 1 when called: use
 * jit_wait first to handle that instead. */
const NnrtModelInfo *jit_model(const Jit *j);
/* waits until function fn ("train_step", "eval", "forward"; NULL: every one)
 * is compiled: 0, or -1 with the reason in err */
int jit_wait(Jit *j, const char *fn, char *err, size_t errlen);
/* stops the compilation if it still runs, and frees all */
void jit_free(Jit *j);

#endif
