/*
 * jit.c: the model's LLVM code (emit_llvm.c) compiled and linked in this
 * process by ORC's LLJIT, optimized for this CPU (the JIT generates code with
 * the target machine emit_llvm.c optimized for), so what runs is what an
 * object file from --emit=obj holds.
 *
 * The JIT answers at once and compiles in the background: jit_new() JITs the
 * model's data alone (the buffer table and PREFIX_info: no code, a few
 * milliseconds) and starts a thread that compiles the kernels, one module
 * each, train_step first, as the training driver calls them. The driver
 * loads its data meanwhile; a kernel's first call waits for its compilation.
 * jit_model() is PREFIX_info with the kernels replaced by trampolines to the
 * compiled ones. The trampolines find their JIT in a static: one JIT per
 * process at a time, which is what nnc needs.
 *
 * Symbols: the runtime functions the kernels call are defined in the JIT's
 * main library at their addresses in nnc (taking their addresses here also
 * makes the linker keep them out of libnnrt.a); everything else (libm, and
 * memset or memcpy that the optimizer may introduce) resolves by a search of
 * the process's own symbols, which is why nnc is linked with -rdynamic.
 * Every LLVM error becomes a message, never a crash.
 */
#include "jit.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/Error.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>

#include "emit_llvm.h"

/* in the order they compile: the training driver calls train_step first,
 * eval at the end of an epoch, forward not at all */
enum { K_TRAIN, K_EVAL, K_FORWARD, NKERNELS };
static const char *const kernel_names[NKERNELS] = { "train_step", "eval", "forward" };

enum { ERR_LEN = 512 };

struct Jit {
	NnrtModelInfo info;		/* PREFIX_info, the kernels replaced by trampolines */
	const LoopModule *m;
	LLVMOrcLLJITRef data;		/* the data module's JIT */
	LLVMOrcLLJITRef code;		/* the kernels' JIT: the thread's until it is done */
	pthread_t thread;
	pthread_mutex_t mu;		/* guards what follows */
	pthread_cond_t cv;		/* signalled as each kernel is ready, and when the thread ends */
	LLVMOrcExecutorAddress fn[NKERNELS];	/* 0 until compiled */
	bool want[NKERNELS];		/* the model has this function */
	bool asked;			/* some caller wants a kernel */
	bool done, cancel;
	char err[ERR_LEN];		/* why the thread stopped early; "" if it did not */
};

static Jit *current;	/* the JIT the trampolines call */

/* true when e is an error, which it consumes, with its message in err */
static bool failed(LLVMErrorRef e, const char *what, char *err, size_t errlen)
{
	if (!e)
		return false;
	char *msg = LLVMGetErrorMessage(e);
	snprintf(err, errlen, "the JIT cannot %s: %s", what, msg ? msg : "unknown LLVM error");
	LLVMDisposeErrorMessage(msg);
	return true;
}

#define RT(f) { #f, (LLVMOrcExecutorAddress)(uintptr_t)&f }

/* what the kernels call in libnnrt (emit_llvm.c declares these) */
static LLVMErrorRef define_runtime(LLVMOrcLLJITRef jit, LLVMOrcJITDylibRef jd)
{
	static const struct {
		const char *name;
		LLVMOrcExecutorAddress addr;
	} fns[] = { RT(nnrt_sgemm), RT(nnrt_sgemm_conv), RT(nnrt_sgemm_col2im), RT(nnrt_rng_uniform), RT(nnrt_parallel_for_grain) };
	enum { N = sizeof fns / sizeof fns[0] };
	LLVMJITCSymbolMapPair syms[N];
	for (int i = 0; i < N; i++) {
		syms[i].Name = LLVMOrcLLJITMangleAndIntern(jit, fns[i].name);	/* the unit takes this reference */
		syms[i].Sym.Address = fns[i].addr;
		syms[i].Sym.Flags.GenericFlags = LLVMJITSymbolGenericFlagsExported | LLVMJITSymbolGenericFlagsCallable;
		syms[i].Sym.Flags.TargetFlags = 0;
	}
	LLVMOrcMaterializationUnitRef mu = LLVMOrcAbsoluteSymbols(syms, N);
	LLVMErrorRef e = LLVMOrcJITDylibDefine(jd, mu);
	if (e)
		LLVMOrcDisposeMaterializationUnit(mu);
	return e;
}

static void dispose(LLVMOrcLLJITRef jit)
{
	if (jit)
		LLVMConsumeError(LLVMOrcDisposeLLJIT(jit));
}

/* an LLJIT generating code for tm (which it takes); with_symbols: the
 * runtime's and the process's symbols are visible to its code */
static LLVMOrcLLJITRef make_jit(LLVMTargetMachineRef tm, bool with_symbols, char *err, size_t errlen)
{
	LLVMOrcLLJITBuilderRef builder = LLVMOrcCreateLLJITBuilder();
	LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(builder, LLVMOrcJITTargetMachineBuilderCreateFromTargetMachine(tm));
	LLVMOrcLLJITRef jit = NULL;
	if (failed(LLVMOrcCreateLLJIT(&jit, builder), "start", err, errlen))
		return NULL;
	if (!with_symbols)
		return jit;
	LLVMOrcJITDylibRef jd = LLVMOrcLLJITGetMainJITDylib(jit);
	LLVMOrcDefinitionGeneratorRef gen = NULL;
	if (failed(define_runtime(jit, jd), "define the runtime's symbols", err, errlen) ||
	    failed(LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(&gen, LLVMOrcLLJITGetGlobalPrefix(jit), NULL, NULL),
		   "search nnc's own symbols", err, errlen)) {
		dispose(jit);
		return NULL;
	}
	LLVMOrcJITDylibAddGenerator(jd, gen);
	return jit;
}

/* emits o's part of m, adds it to jit and returns the address of symbol (0 on failure, with err) */
static LLVMOrcExecutorAddress add_and_find(LLVMOrcLLJITRef jit, LLVMTargetMachineRef tm, const LoopModule *m,
					   const EmitllOpts *o, const char *symbol, char *err, size_t errlen)
{
	LLVMOrcThreadSafeContextRef tsc = LLVMOrcCreateNewThreadSafeContext();
	LLVMModuleRef mod = emitll_module(LLVMOrcThreadSafeContextGetContext(tsc), tm, m, o);
	LLVMOrcThreadSafeModuleRef tsm = LLVMOrcCreateNewThreadSafeModule(mod, tsc);
	LLVMOrcDisposeThreadSafeContext(tsc);	/* the module holds the context now */
	LLVMOrcExecutorAddress addr = 0;
	char what[192];
	snprintf(what, sizeof what, "compile %s", symbol);
	if (failed(LLVMOrcLLJITAddLLVMIRModule(jit, LLVMOrcLLJITGetMainJITDylib(jit), tsm), "add a module", err, errlen) ||
	    failed(LLVMOrcLLJITLookup(jit, &addr, symbol), what, err, errlen))
		return 0;
	if (!addr)
		snprintf(err, errlen, "the JIT found %s at address 0", symbol);
	return addr;
}

/* the compiler thread: each kernel in its own module, in kernel_names order;
 * after the first, it waits until a kernel is asked for, so that it leaves
 * the CPU to the loading of the data meanwhile */
static void *compile_kernels(void *arg)
{
	Jit *j = arg;
	char err[ERR_LEN] = "";
	LLVMTargetMachineRef opt_tm = emitll_host_machine(err, sizeof err);
	LLVMTargetMachineRef gen_tm = opt_tm ? emitll_host_machine(err, sizeof err) : NULL;
	LLVMOrcLLJITRef jit = gen_tm ? make_jit(gen_tm, true, err, sizeof err) : NULL;
	for (int k = 0, compiled = 0; jit && k < NKERNELS; k++) {
		pthread_mutex_lock(&j->mu);
		while (compiled && !j->asked && !j->cancel)
			pthread_cond_wait(&j->cv, &j->mu);
		bool skip = !j->want[k], stop = j->cancel;
		pthread_mutex_unlock(&j->mu);
		if (stop)
			break;
		if (skip)
			continue;
		char sym[64];
		snprintf(sym, sizeof sym, "k_%s", kernel_names[k]);
		EmitllOpts o = { .prefix = "", .opt = 1, .only = kernel_names[k] };
		LLVMOrcExecutorAddress a = add_and_find(jit, opt_tm, j->m, &o, sym, err, sizeof err);
		if (!a)
			break;
		compiled++;
		pthread_mutex_lock(&j->mu);
		j->fn[k] = a;
		pthread_cond_broadcast(&j->cv);
		pthread_mutex_unlock(&j->mu);
	}
	if (opt_tm)
		LLVMDisposeTargetMachine(opt_tm);
	pthread_mutex_lock(&j->mu);
	j->code = jit;
	j->done = true;
	snprintf(j->err, sizeof j->err, "%s", err);
	pthread_cond_broadcast(&j->cv);
	pthread_mutex_unlock(&j->mu);
	return NULL;
}

/* waits for kernel k (or, k < 0, the whole thread); its address, or 0 with the reason in j->err */
static LLVMOrcExecutorAddress wait_for(Jit *j, int k)
{
	pthread_mutex_lock(&j->mu);
	if (!j->asked) {
		j->asked = true;
		pthread_cond_broadcast(&j->cv);
	}
	while (!j->done && (k < 0 || !j->fn[k]))
		pthread_cond_wait(&j->cv, &j->mu);
	LLVMOrcExecutorAddress a = k < 0 ? !j->err[0] : j->fn[k];
	if (!a && !j->err[0])
		snprintf(j->err, sizeof j->err, "the JIT stopped before compiling %s", kernel_names[k]);
	pthread_mutex_unlock(&j->mu);
	return a;
}

/* a kernel's address for its trampoline: a failed compilation has no
 * caller to return an error to, so it ends the process with the reason */
static LLVMOrcExecutorAddress kernel(int k)
{
	LLVMOrcExecutorAddress a = wait_for(current, k);
	if (!a) {
		fprintf(stderr, "nnc: error: %s\n", current->err);
		exit(1);
	}
	return a;
}

typedef void (*ForwardFn)(NnrtCtx *, int64_t, const float *, float *);
typedef float (*StepFn)(NnrtCtx *, int64_t, const float *, const void *, float *);

static void call_forward(NnrtCtx *ctx, int64_t n, const float *x, float *out)
{
	((ForwardFn)kernel(K_FORWARD))(ctx, n, x, out);
}

static float call_eval(NnrtCtx *ctx, int64_t n, const float *x, const void *y, float *out)
{
	return ((StepFn)kernel(K_EVAL))(ctx, n, x, y, out);
}

static float call_train_step(NnrtCtx *ctx, int64_t n, const float *x, const void *y, float *out)
{
	return ((StepFn)kernel(K_TRAIN))(ctx, n, x, y, out);
}

/* PREFIX_info from the data module: a copy, its strings and table stay in the JIT */
static bool load_data(Jit *j, const char *prefix, char *err, size_t errlen)
{
	LLVMTargetMachineRef tm = emitll_host_machine(err, errlen);
	if (!tm)
		return false;
	EmitllOpts o = { .prefix = prefix, .opt = 0, .only = "" };
	char sym[160];
	snprintf(sym, sizeof sym, "%s_info", prefix);
	LLVMOrcExecutorAddress a = 0;
	LLVMTargetMachineRef gen_tm = emitll_host_machine(err, errlen);
	j->data = gen_tm ? make_jit(gen_tm, false, err, errlen) : NULL;
	if (j->data)
		a = add_and_find(j->data, tm, j->m, &o, sym, err, errlen);
	LLVMDisposeTargetMachine(tm);
	if (!a)
		return false;
	memcpy(&j->info, (const void *)(uintptr_t)a, sizeof j->info);
	return true;
}

static void destroy(Jit *j)
{
	dispose(j->code);
	dispose(j->data);
	pthread_cond_destroy(&j->cv);
	pthread_mutex_destroy(&j->mu);
	if (current == j)
		current = NULL;
	free(j);
}

Jit *jit_new(const LoopModule *m, const char *prefix, char *err, size_t errlen)
{
	if (current) {
		snprintf(err, errlen, "one JIT at a time: free the other first");
		return NULL;
	}
	Jit *j = calloc(1, sizeof *j);
	if (!j) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	j->m = m;
	pthread_mutex_init(&j->mu, NULL);
	pthread_cond_init(&j->cv, NULL);
	current = j;
	if (!load_data(j, prefix, err, errlen)) {
		destroy(j);
		return NULL;
	}
	for (int k = 0; k < NKERNELS; k++)
		j->want[k] = loop_find_fn(m, kernel_names[k]) != NULL;
	j->info.forward = call_forward;
	j->info.eval = j->want[K_EVAL] ? call_eval : NULL;
	j->info.train_step = j->want[K_TRAIN] ? call_train_step : NULL;
	int rc = pthread_create(&j->thread, NULL, compile_kernels, j);
	if (rc) {
		snprintf(err, errlen, "cannot start the JIT's thread: %s", strerror(rc));
		destroy(j);
		return NULL;
	}
	return j;
}

const NnrtModelInfo *jit_model(const Jit *j)
{
	return &j->info;
}

int jit_wait(Jit *j, const char *fn, char *err, size_t errlen)
{
	int k = -1;
	for (int i = 0; fn && i < NKERNELS; i++)
		if (!strcmp(fn, kernel_names[i]))
			k = i;
	if (fn && (k < 0 || !j->want[k])) {
		snprintf(err, errlen, "the model has no function '%s'", fn);
		return -1;
	}
	if (wait_for(j, k))
		return 0;
	pthread_mutex_lock(&j->mu);
	snprintf(err, errlen, "%s", j->err);
	pthread_mutex_unlock(&j->mu);
	return -1;
}

void jit_free(Jit *j)
{
	if (!j)
		return;
	pthread_mutex_lock(&j->mu);
	j->cancel = true;	/* no point compiling more */
	pthread_cond_broadcast(&j->cv);
	pthread_mutex_unlock(&j->mu);
	pthread_join(j->thread, NULL);
	destroy(j);
}
