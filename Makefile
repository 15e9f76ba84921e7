# nnc: one Makefile. `make` builds ./nnc, `make test` installs what is missing,
# then runs the whole suite twice: plain and under ASan+UBSan with leak checks.
# Objects go to build/ (build-san/ for the sanitized run); flex and bison
# outputs are build products there, never committed.

CC      ?= cc
BUILD   ?= build
SAN     ?= 0
CFLAGS  ?= -O2 -g
WARN    := -std=c11 -Wall -Wextra -Wno-unused-function
LLVM_CONFIG ?= $(shell command -v llvm-config-14 || command -v llvm-config)

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
                loop.c lower.c loop_interp.c emit_c.c compile.c
COMPILER_OBJ := $(addprefix $(BUILD)/compiler/,$(COMPILER_SRC:.c=.o)) \
                $(BUILD)/compiler/parser.o $(BUILD)/compiler/lexer.o
MAIN_OBJ     := $(BUILD)/compiler/main.o

UNIT_TESTS := $(patsubst tests/unit/%.c,%,$(wildcard tests/unit/test_*.c))

RUNTIME_SRC := $(wildcard runtime/*.c)
RUNTIME_OBJ := $(patsubst runtime/%.c,$(BUILD)/runtime/%.o,$(RUNTIME_SRC))
RUNTIME_LIB := $(BUILD)/libnnrt.a
RUNTIME_TESTS := $(patsubst tests/runtime/%.c,%,$(wildcard tests/runtime/test_*.c))

.PHONY: all deps test test-plain test-san unit runtime-tests golden torch robust suite e2e demo clean bench-frontend
all: nnc runtime/libnnrt.a

ifeq ($(SAN),1)
all: $(BUILD)/nnc
endif

nnc: $(BUILD)/nnc
	@if [ "$(SAN)" != 1 ]; then cp $< $@; fi

$(BUILD)/nnc: $(COMPILER_OBJ) $(MAIN_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ -lm

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

$(BUILD)/tests/%: tests/unit/%.c tests/unit/support.h $(COMPILER_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Itests/unit $(WARN) $(CFLAGS) $(LDFLAGS) -o $@ $< $(COMPILER_OBJ) -lcmocka -lm

$(BUILD)/runtime/%.o: runtime/%.c runtime/nnrt.h
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(WARN) $(CFLAGS) -MMD -MP -c -o $@ $<

$(RUNTIME_LIB): $(RUNTIME_OBJ)
	rm -f $@
	ar rcs $@ $^

runtime/libnnrt.a: $(RUNTIME_LIB)
	cp $< $@

$(BUILD)/tests/runtime/%: tests/runtime/%.c $(RUNTIME_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Itests/unit $(WARN) $(CFLAGS) $(LDFLAGS) -o $@ $< $(RUNTIME_LIB) -lcmocka -lz -lm

-include $(wildcard $(BUILD)/compiler/*.d $(BUILD)/runtime/*.d)

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

# real training on Fashion-MNIST through the emitted C (plain build only: it is long)
e2e: $(BUILD)/nnc $(RUNTIME_LIB)
	@sh tests/e2e/codegen.sh $(BUILD)/nnc $(RUNTIME_LIB)
	@sh tests/e2e/resume.sh $(BUILD)/nnc $(RUNTIME_LIB)
	@sh tests/e2e/train_mlp.sh $(BUILD)/nnc $(RUNTIME_LIB)

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

# the main job a new user runs first: check every example, then compile the
# MLP to C with a main(), build it against the runtime, and train it on
# Fashion-MNIST with the settings of its train section
demo: deps nnc runtime/libnnrt.a
	@for f in examples/*.nn; do ./nnc check $$f || exit 1; echo; done
	@mkdir -p build/demo
	./nnc examples/mlp.nn -o build/demo/mlp.c --main
	$(CC) -std=c99 -O2 -Wall -Wextra -Wpedantic -Iruntime build/demo/mlp.c runtime/libnnrt.a -lz -lm -o build/demo/mlp
	build/demo/mlp --save build/demo/mlp.safetensors

bench-frontend: nnc
	@python3 bench/frontend.py ./nnc 200

clean:
	rm -rf build build-san nnc runtime/libnnrt.a
