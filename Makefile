# nnc: one Makefile. `make` builds ./nnc, `make test` installs what is missing,
# then runs the whole suite twice: plain and under ASan+UBSan with leak checks.
# Objects go to build/ (build-san/ for the sanitized run); flex and bison
# outputs are build products there, never committed.

CC      ?= cc
BUILD   ?= build
SAN     ?= 0
CFLAGS  ?= -O2 -g
# the runtime (runtime/*.c only) is built for this machine's ISA: gemm.c picks
# its AVX2+FMA kernel when the flags allow it. `make RUNTIME_ARCH=` builds the
# portable runtime; a change of RUNTIME_ARCH rebuilds the runtime's objects.
RUNTIME_ARCH ?= -march=native
# `make BLAS=openblas`: the runtime's GEMM calls OpenBLAS (libopenblas-dev,
# installed when missing) instead of its own kernels, and everything that
# links the runtime links -lopenblas. The default build needs no BLAS.
BLAS ?=
ifeq ($(BLAS),openblas)
RUNTIME_DEFS := -DNNRT_BLAS_OPENBLAS
BLAS_LIBS := -lopenblas
BLAS_DEPS := openblas-dev
else ifneq ($(BLAS),)
$(error BLAS=$(BLAS): the choices are openblas, or nothing for the built-in GEMM)
endif
WARN    := -std=c11 -Wall -Wextra -Wno-unused-function
LLVM_CONFIG ?= $(shell command -v llvm-config-14 || command -v llvm-config)
# LLVM-C for emit_llvm.c and jit.c: the headers (as system headers, so their
# warnings stay theirs) and the shared library, which links fast
LLVM_INC  := -isystem $(shell $(LLVM_CONFIG) --includedir)
LLVM_LIBS := $(shell $(LLVM_CONFIG) --ldflags) -lLLVM-$(shell $(LLVM_CONFIG) --version | cut -d. -f1)

ifeq ($(SAN),1)
BUILD   := build-san
CFLAGS  := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
LDFLAGS += -fsanitize=address,undefined
PARITY_CFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all
endif

CPPFLAGS += -Icompiler -I$(BUILD)/compiler -Iruntime -D_POSIX_C_SOURCE=200809L
VERSION := $(shell cat VERSION 2>/dev/null || echo 0.0.0)
CPPFLAGS += -DNNC_VERSION='"$(VERSION)"'

COMPILER_SRC := arena.c diag.c ast.c elab.c ir.c shape.c summary.c autodiff.c optim.c modes.c \
                loop.c loop_par.c lower.c memplan.c loop_interp.c emit_c.c emit_llvm.c jit.c compile.c \
                passes/util.c passes/manager.c passes/dce.c passes/cse.c passes/fold.c passes/simplify.c passes/fuse.c \
                passes/bottleneck.c passes/bnfold.c passes/poolrelu.c embed.c
COMPILER_OBJ := $(addprefix $(BUILD)/compiler/,$(COMPILER_SRC:.c=.o)) \
                $(BUILD)/compiler/parser.o $(BUILD)/compiler/lexer.o
MAIN_OBJ     := $(BUILD)/compiler/main.o

UNIT_TESTS := $(patsubst tests/unit/%.c,%,$(wildcard tests/unit/test_*.c))

RUNTIME_SRC := $(wildcard runtime/*.c)
RUNTIME_OBJ := $(patsubst runtime/%.c,$(BUILD)/runtime/%.o,$(RUNTIME_SRC))
RUNTIME_LIB := $(BUILD)/libnnrt.a
RUNTIME_TESTS := $(patsubst tests/runtime/%.c,%,$(wildcard tests/runtime/test_*.c))
# test_gemm runs twice: against the runtime's kernel and against the portable one
RUNTIME_TESTS += test_gemm_portable
# on x86-64, test_winograd runs twice too: with the runtime's ISA and with
# winograd.c built for AVX2 (it skips itself on a CPU without AVX2 and FMA)
ifeq ($(shell uname -m),x86_64)
RUNTIME_TESTS += test_winograd_avx2
endif
# test_direct: the runtime's ISA, portable (it takes nothing) and (x86-64) AVX2
RUNTIME_TESTS += test_direct_portable
ifeq ($(shell uname -m),x86_64)
RUNTIME_TESTS += test_direct_avx2
endif
# test_col2im: against the runtime's ISA, portable, and (x86-64) AVX2; its link
# wraps malloc and aligned_alloc so that a case can run without memory
RUNTIME_TESTS += test_col2im_portable
ifeq ($(shell uname -m),x86_64)
RUNTIME_TESTS += test_col2im_avx2
endif
TEST_LINK_test_col2im := -Wl,--wrap=malloc,--wrap=aligned_alloc

.PHONY: all deps test test-plain test-san unit runtime-tests golden torch robust suite e2e demo clean bench-frontend \
        bench-gemm bench test-blas openblas-dev FORCE \
        shapes
all: nnc runtime/libnnrt.a

ifeq ($(SAN),1)
all: $(BUILD)/nnc
endif

nnc: $(BUILD)/nnc
	@if [ "$(SAN)" != 1 ]; then cp $< $@; fi

# the compiler sees the LLVM-C headers; the runtime does not
$(COMPILER_OBJ) $(MAIN_OBJ) $(addprefix $(BUILD)/tests/,$(UNIT_TESTS)): CPPFLAGS += $(LLVM_INC)

# nnc holds the runtime for the JIT (nnc train); -rdynamic lets JIT-compiled
# code find nnc's own symbols
$(BUILD)/nnc: $(COMPILER_OBJ) $(MAIN_OBJ) $(RUNTIME_LIB)
	$(CC) $(LDFLAGS) -rdynamic -pthread -o $@ $(COMPILER_OBJ) $(MAIN_OBJ) $(RUNTIME_LIB) $(BLAS_LIBS) $(LLVM_LIBS) -lz -lm

$(BUILD)/compiler/parser.c $(BUILD)/compiler/parser.h &: compiler/parser.y
	@mkdir -p $(dir $@)
	bison -Wall -Werror -o $(BUILD)/compiler/parser.c --header=$(BUILD)/compiler/parser.h $<

$(BUILD)/compiler/lexer.c $(BUILD)/compiler/lexer.h &: compiler/lexer.l
	@mkdir -p $(dir $@)
	flex -o $(BUILD)/compiler/lexer.c --header-file=$(BUILD)/compiler/lexer.h $<

$(BUILD)/compiler/parser.o: $(BUILD)/compiler/parser.c $(BUILD)/compiler/lexer.h
	$(CC) $(CPPFLAGS) $(WARN) -Wno-sign-compare $(CFLAGS) -c -o $@ $<

$(BUILD)/compiler/lexer.o: $(BUILD)/compiler/lexer.c $(BUILD)/compiler/parser.h
	$(CC) $(CPPFLAGS) $(WARN) -Wno-sign-compare -Wno-unused-parameter $(CFLAGS) -c -o $@ $<

$(BUILD)/compiler/%.o: compiler/%.c $(BUILD)/compiler/parser.h
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(WARN) $(CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/tests/%: tests/unit/%.c tests/unit/support.h tests/unit/gradcheck.h $(COMPILER_OBJ) $(RUNTIME_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Itests/unit $(WARN) $(CFLAGS) $(LDFLAGS) -rdynamic -pthread -o $@ $< $(COMPILER_OBJ) \
		$(RUNTIME_LIB) $(BLAS_LIBS) $(LLVM_LIBS) -lcmocka -lz -lm

$(BUILD)/runtime/%.o: runtime/%.c runtime/nnrt.h $(BUILD)/runtime/arch
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(RUNTIME_DEFS) $(WARN) $(CFLAGS) $(RUNTIME_ARCH) -MMD -MP -c -o $@ $<

# the RUNTIME_ARCH (and BLAS) the objects were built with, rewritten only when it changes
$(BUILD)/runtime/arch: FORCE
	@mkdir -p $(dir $@)
	@echo '$(RUNTIME_ARCH) $(RUNTIME_DEFS)' | cmp -s - $@ || echo '$(RUNTIME_ARCH) $(RUNTIME_DEFS)' > $@

# a runtime file built portable, or for AVX2, for the tests that run it that way
# (kept: make would delete them as intermediates after each build)
.PRECIOUS: $(BUILD)/runtime/%_portable.o $(BUILD)/runtime/%_avx2.o
$(BUILD)/runtime/%_portable.o: runtime/%.c runtime/nnrt.h $(BUILD)/runtime/arch
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -DNNRT_GEMM_PORTABLE $(WARN) $(CFLAGS) $(RUNTIME_ARCH) -c -o $@ $<

$(BUILD)/runtime/%_avx2.o: runtime/%.c runtime/nnrt.h
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(WARN) $(CFLAGS) -mavx2 -mfma -c -o $@ $<

$(RUNTIME_LIB): $(RUNTIME_OBJ) | $(BLAS_DEPS)
	rm -f $@
	ar rcs $@ $^

runtime/libnnrt.a: $(RUNTIME_LIB)
	cp $< $@

$(BUILD)/tests/runtime/%: tests/runtime/%.c $(RUNTIME_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Itests/unit $(WARN) $(CFLAGS) $(LDFLAGS) $(TEST_LINK_$*) -pthread -o $@ $< $(RUNTIME_LIB) \
		$(BLAS_LIBS) -lcmocka -lz -lm

# test_X_portable and test_X_avx2: test_X against X.c built that way, whose
# object comes first, so the library's X.o is not linked
$(BUILD)/tests/runtime/test_%_portable: tests/runtime/test_%.c $(BUILD)/runtime/%_portable.o $(RUNTIME_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -DNNRT_GEMM_PORTABLE -Itests/unit $(WARN) $(CFLAGS) $(LDFLAGS) $(TEST_LINK_test_$*) \
		-pthread -o $@ $< $(BUILD)/runtime/$*_portable.o $(RUNTIME_LIB) -lcmocka -lz -lm

$(BUILD)/tests/runtime/test_%_avx2: tests/runtime/test_%.c $(BUILD)/runtime/%_avx2.o $(RUNTIME_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -DNNRT_TEST_AVX2 -Itests/unit $(WARN) $(CFLAGS) $(LDFLAGS) $(TEST_LINK_test_$*) \
		-pthread -o $@ $< $(BUILD)/runtime/$*_avx2.o $(RUNTIME_LIB) -lcmocka -lz -lm

-include $(wildcard $(BUILD)/compiler/*.d $(BUILD)/compiler/passes/*.d $(BUILD)/runtime/*.d)

# the synthetic segmentation set of examples/unet_tiny.nn: generated when
# missing, never committed. The generator is plain C99 and always built
# without sanitizers (in build/), so the data is the same in every build.
SHAPES_DATA := $(addprefix examples/shapes/,train-x.npy train-y.npy test-x.npy test-y.npy)

build/shapes: examples/shapes.c
	@mkdir -p build
	$(CC) -std=c99 -O2 -Wall -Wextra -Wpedantic -o $@ $<

$(SHAPES_DATA) &: build/shapes
	build/shapes --out examples/shapes

shapes: $(SHAPES_DATA)

deps:
	@sh scripts/deps.sh

# the suite, once with the current flags (SAN=1 for the sanitized build)
unit: $(addprefix $(BUILD)/tests/,$(UNIT_TESTS))
	@for t in $(UNIT_TESTS); do $(BUILD)/tests/$$t || exit 1; done

# runtime tests run from the repository root, with a scratch folder of their own
runtime-tests: $(addprefix $(BUILD)/tests/runtime/,$(RUNTIME_TESTS))
	@for t in $(RUNTIME_TESTS); do $(BUILD)/tests/runtime/$$t || exit 1; done

golden: $(BUILD)/nnc
	@sh tests/golden/run.sh $(BUILD)/nnc

torch: $(BUILD)/nnc $(RUNTIME_LIB)
	@/usr/bin/python3 tests/torch/param_counts.py $(BUILD)/nnc
	@for t in tests/torch/parity*.py; do \
		PARITY_CFLAGS="$(PARITY_CFLAGS)" /usr/bin/python3 $$t $(BUILD)/nnc $(RUNTIME_LIB) || exit 1; done

# real training on Fashion-MNIST and the shapes set through the emitted C
# (plain build only: it is long); asan_examples.sh builds each example's C
# with the sanitizers against the sanitized runtime for a few steps; llvm.sh checks
# the JIT and --emit=obj against the emitted C on every example; threads.sh that
# 1 and 2 threads train to the same bits; bnfold.sh checks batchnorm folding and
# --embed-weights against the unfolded code
e2e: $(BUILD)/nnc $(RUNTIME_LIB) $(SHAPES_DATA)
	@$(MAKE) --no-print-directory SAN=1 build-san/libnnrt.a
	@sh tests/e2e/codegen.sh $(BUILD)/nnc $(RUNTIME_LIB)
	@sh tests/e2e/llvm.sh $(BUILD)/nnc $(RUNTIME_LIB)
	@sh tests/e2e/threads.sh $(BUILD)/nnc $(RUNTIME_LIB)
	@sh tests/e2e/resume.sh $(BUILD)/nnc $(RUNTIME_LIB)
	@sh tests/e2e/commands.sh $(BUILD)/nnc
	@sh tests/e2e/bottleneck.sh $(BUILD)/nnc $(RUNTIME_LIB)
	@sh tests/e2e/bnfold.sh $(BUILD)/nnc $(RUNTIME_LIB)
	@sh tests/e2e/asan_examples.sh $(BUILD)/nnc build-san/libnnrt.a
	@sh tests/e2e/train_mlp.sh $(BUILD)/nnc $(RUNTIME_LIB)
	@sh tests/e2e/train_cnn.sh $(BUILD)/nnc $(RUNTIME_LIB)

robust: $(BUILD)/nnc
	@/usr/bin/python3 tests/robust.py $(BUILD)/nnc

suite: unit runtime-tests golden torch robust

test-plain:
	@$(MAKE) --no-print-directory suite e2e
test-san:
	@ASAN_OPTIONS=detect_leaks=1:exitcode=86 UBSAN_OPTIONS=print_stacktrace=1 \
		$(MAKE) --no-print-directory SAN=1 suite

test: deps
	@$(MAKE) --no-print-directory test-plain
	@$(MAKE) --no-print-directory test-san
	@echo "make test: all suites passed (plain and sanitized)"

# the main job a new user runs first: check every example, then train LeNet-5
# on Fashion-MNIST through the JIT, with the settings of its train section
demo: deps nnc
	@for f in examples/*.nn; do ./nnc check $$f >/dev/null || exit 1; done
	@echo "all examples check; training examples/lenet.nn:"
	./nnc train examples/lenet.nn --save build/lenet.safetensors --checkpoint build/lenet.ckpt

bench-frontend: nnc
	@python3 bench/frontend.py ./nnc 200

# OpenBLAS, for the benches and BLAS=openblas alone (never a test's): installed when missing
openblas-dev:
	@dpkg-query -W -f='$${Status}' libopenblas-dev 2>/dev/null | grep -q 'install ok installed' || { \
		echo "installing libopenblas-dev"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO="sudo -n"; fi; \
		$$SUDO apt-get update -q >/dev/null && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends libopenblas-dev >/dev/null; }

# nnrt_sgemm against OpenBLAS at 1 and 2 threads, as a markdown table
$(BUILD)/bench/gemm: bench/gemm.c $(RUNTIME_LIB) | openblas-dev
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(WARN) -O2 $(RUNTIME_ARCH) -o $@ bench/gemm.c $(RUNTIME_LIB) -lopenblas -lm -pthread

bench-gemm: $(BUILD)/bench/gemm
	@$(BUILD)/bench/gemm

# training speed of the examples, nnc against PyTorch at 1 and 2 threads, -O0
# against -O2, and the GEMM against OpenBLAS: bench/train.py writes
# bench/results.md (about 10 minutes on 2 cores; BENCH_REPS, BENCH_SCALE)
bench: nnc runtime/libnnrt.a $(SHAPES_DATA) $(BUILD)/bench/gemm
	@python3 bench/train.py ./nnc runtime/libnnrt.a $(BUILD)/bench/gemm

# the runtime's GEMM test against the OpenBLAS build, in build-blas/
# (installs libopenblas-dev when missing; not part of make test)
test-blas:
	@$(MAKE) --no-print-directory BLAS=openblas BUILD=build-blas build-blas/tests/runtime/test_gemm
	@nm build-blas/libnnrt.a | grep -q ' U cblas_sgemm' || { echo "test-blas: the runtime does not call OpenBLAS"; exit 1; }
	build-blas/tests/runtime/test_gemm

clean:
	rm -rf build build-san build-blas nnc runtime/libnnrt.a examples/shapes
