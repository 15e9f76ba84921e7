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
endif

CPPFLAGS += -Icompiler -I$(BUILD)/compiler -Iruntime -D_POSIX_C_SOURCE=200809L
VERSION := $(shell cat VERSION 2>/dev/null || echo 0.0.0)
CPPFLAGS += -DNNC_VERSION='"$(VERSION)"'

COMPILER_SRC := arena.c diag.c ast.c elab.c ir.c shape.c summary.c compile.c
COMPILER_OBJ := $(addprefix $(BUILD)/compiler/,$(COMPILER_SRC:.c=.o)) \
                $(BUILD)/compiler/parser.o $(BUILD)/compiler/lexer.o
MAIN_OBJ     := $(BUILD)/compiler/main.o

UNIT_TESTS := $(patsubst tests/unit/%.c,%,$(wildcard tests/unit/test_*.c))

.PHONY: all deps test test-plain test-san unit golden torch demo clean bench-frontend
all: nnc

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

-include $(wildcard $(BUILD)/compiler/*.d)

deps:
	@sh scripts/deps.sh

# the suite, once with the current flags (SAN=1 for the sanitized build)
unit: $(addprefix $(BUILD)/tests/,$(UNIT_TESTS))
	@for t in $(UNIT_TESTS); do $(BUILD)/tests/$$t || exit 1; done

golden: $(BUILD)/nnc
	@sh tests/golden/run.sh $(BUILD)/nnc

torch: $(BUILD)/nnc
	@/usr/bin/python3 tests/torch/param_counts.py $(BUILD)/nnc

robust: $(BUILD)/nnc
	@/usr/bin/python3 tests/robust.py $(BUILD)/nnc

suite: unit golden torch robust

test-plain:
	@$(MAKE) --no-print-directory suite
test-san:
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
		$(MAKE) --no-print-directory SAN=1 suite

test: deps
	@$(MAKE) --no-print-directory test-plain
	@$(MAKE) --no-print-directory test-san
	@echo "make test: all suites passed (plain and sanitized)"

# the main job a new user runs first
demo: deps nnc
	@for f in examples/*.nn; do ./nnc check $$f || exit 1; echo; done

bench-frontend: nnc
	@sh bench/frontend.sh

clean:
	rm -rf build build-san nnc
