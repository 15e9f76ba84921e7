/*
 * emit_llvm.h: loop IR -> LLVM module through the LLVM-C API (emit_llvm.c),
 * for the host machine: JIT-run (jit.c) or written as .ll text or an object.
 */
#ifndef NNC_EMIT_LLVM_H
#define NNC_EMIT_LLVM_H

#include <stdbool.h>
#include <stddef.h>

#include <llvm-c/Core.h>
#include <llvm-c/TargetMachine.h>

#include "loop.h"

typedef struct EmitllOpts {
	const char *prefix;	/* starts every public symbol: PREFIX_info, PREFIX_init, ... */
	bool with_main;		/* adds main() running the runtime's training driver */
	/* 0: no optimization; 1: the JIT's short pipeline (what the loops need,
	 * vectorized); 2 or 3: LLVM's default<O2> or default<O3> */
	int opt;
	/* NULL: all of the above. For the JIT, parts: "" the data alone (the
	 * buffer table and PREFIX_info with NULL kernels), or a function's name
	 * ("train_step"): its kernel alone, k_NAME with external linkage */
	const char *only;
} EmitllOpts;

typedef enum { EMITLL_IR, EMITLL_OBJ } EmitllKind;

/* this machine: its triple, CPU and features, PIC code. NULL with the reason
 * in err when LLVM has no target for it; dispose with LLVMDisposeTargetMachine */
LLVMTargetMachineRef emitll_host_machine(char *err, size_t errlen);

/* the module of m in cx for tm: what model.c holds (buffer table, kernels,
 * PREFIX_info, the API, main with o->with_main), with tm's triple and data
 * layout, verified, then optimized. The caller owns it. */
LLVMModuleRef emitll_module(LLVMContextRef cx, LLVMTargetMachineRef tm, const LoopModule *m, const EmitllOpts *o);

/* the whole job of --emit=llvm (.ll text) and --emit=obj (an object file for
 * this machine): the bytes in *data (malloc'd, *len of them). Returns 0, or -1
 * with the reason in err. */
int emitll_render(const LoopModule *m, const EmitllOpts *o, EmitllKind kind, char **data, size_t *len, char *err,
		  size_t errlen);

#endif
