# Simularity — a plain Makefile.
#
#   make            build ./simularity (optimized, runs on any x86-64; SIMD
#                   kernels are picked at run time from CPUID)
#   make test       build and run the whole test suite (last line: N passed, N failed)
#   make debug      the same suite built with ASan + UBSan
#   make bench      benchmarks on generated models (see bench/README.md)
#   make fuzz       libFuzzer targets (needs clang)
#   make deps       install the Debian packages the project needs
#   make clean

CC       ?= cc
BUILD    ?= build/release
OPT      ?= -O2
SAN      ?=
# Sanitizers for the SIMD kernel files (the fuzz build leaves them out).
KSAN     ?= $(SAN)
PKGS     := libpcre2-8 jansson libmicrohttpd libzip sqlite3 zlib
DEPS_DEB := build-essential pkg-config libpcre2-dev libjansson-dev libmicrohttpd-dev libzip-dev libsqlite3-dev zlib1g-dev python3 python3-jinja2 python3-jsonschema chromium

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CFLAGS_ALL = -std=c11 -Wall -Wextra -Wshadow -Wno-unused-parameter -D_GNU_SOURCE \
             -Iinclude -Isrc $(PKG_CFLAGS) -g -pthread -MMD -MP $(OPT) $(SAN) $(CFLAGS)
LDLIBS_ALL = $(PKG_LIBS) -lm -pthread $(SAN) $(LDFLAGS)

# Kernel files compiled for one instruction set each; used only after a CPUID check.
AVX2_FLAGS   := -mavx2 -mfma -mf16c
AVX512_FLAGS := -mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512vl -mavx512dq \
                -mavx512vnni -mavx512bf16

LIB_SRC  := $(sort $(wildcard src/base/*.c src/tensor/*.c src/image/*.c src/model/*.c src/infer/*.c src/story/*.c src/server/*.c src/api/*.c))
CLI_SRC  := $(sort $(wildcard src/cli/*.c))
TEST_SRC := $(sort $(wildcard tests/test_*.c))
TOOL_SRC := $(sort $(wildcard tools/*.c))

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o) $(BUILD)/gen/web_files.o
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
LIB      := $(BUILD)/libsimularity.a
TESTS    := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
TOOLS    := $(TOOL_SRC:tools/%.c=$(BUILD)/tools/%)
BIN      := $(BUILD)/simularity

.PHONY: all test debug bench fuzz deps clean tests-build e2e
all: simularity

simularity: $(BIN)
	cp $(BIN) simularity

KFLAGS = $(filter-out $(SAN),$(CFLAGS_ALL)) $(KSAN)

$(BUILD)/%_avx2.o: %_avx2.c
	@mkdir -p $(dir $@)
	$(CC) $(KFLAGS) $(AVX2_FLAGS) -c $< -o $@

$(BUILD)/%_avx512.o: %_avx512.c
	@mkdir -p $(dir $@)
	$(CC) $(KFLAGS) $(AVX512_FLAGS) -c $< -o $@

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

# The web player's files, compiled in (see src/server/web.h).
WEB_FILES := $(shell find web -type f 2>/dev/null | sort)
$(BUILD)/gen/web_files.c: $(WEB_FILES) tools/embed.py
	@mkdir -p $(dir $@)
	python3 tools/embed.py web $@

$(BUILD)/gen/web_files.o: $(BUILD)/gen/web_files.c
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BIN): $(CLI_OBJ) $(LIB)
	$(CC) $(CLI_OBJ) $(LIB) $(LDLIBS_ALL) -o $@

$(BUILD)/tests/%: tests/%.c $(BUILD)/tests/test.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -MF $@.d $< $(BUILD)/tests/test.o $(LIB) $(LDLIBS_ALL) -o $@

$(BUILD)/tools/%: tools/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $< $(LIB) $(LDLIBS_ALL) -o $@

tests-build: $(BIN) $(TESTS) $(TOOLS)

test: tests-build
	@SIM_BIN=$(BIN) SIM_BUILD=$(BUILD) sh tests/run.sh $(TESTS)

# The browser player end to end (tests/e2e/player.mjs): simularity serve on
# the demo scenario with stories260K, driven through playwright-core and
# Debian's chromium; screenshots in build/e2e/. Skips without the model.
e2e: $(BIN)
	@if command -v node >/dev/null; then SIM_BIN=$(BIN) node tests/e2e/player.mjs && SIM_BIN=$(BIN) node tests/e2e/loom.mjs; \
	else echo "e2e: SKIPPED — node not found"; fi

debug:
	$(MAKE) BUILD=build/debug OPT="-O1 -fno-omit-frame-pointer" \
	        SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined" test

bench: simularity
	sh bench/run.sh

# libFuzzer targets (clang): the library built with coverage and sanitizers
# (the SIMD kernel files without: they parse nothing, and clang takes many
# minutes to instrument them), one binary per tests/fuzz/*.c.
# Run e.g. build/fuzz/fuzz_gguf -max_total_time=60 DIR.
FUZZ_SRC := $(sort $(wildcard tests/fuzz/*.c))
fuzz:
	$(MAKE) BUILD=build/fuzz CC=clang OPT="-O1 -fno-omit-frame-pointer" KSAN= \
	        SAN="-fsanitize=address,undefined -fsanitize=fuzzer-no-link" build/fuzz/libsimularity.a
	for f in $(FUZZ_SRC); do \
	    clang -std=c11 -D_GNU_SOURCE -Iinclude -Isrc -g -O1 -fsanitize=address,undefined,fuzzer \
	        $$f build/fuzz/libsimularity.a $(PKG_LIBS) -lm -pthread -o build/fuzz/$$(basename $$f .c) || exit 1; \
	done

deps:
	apt-get update && apt-get install -y $(DEPS_DEB)
	if command -v npm >/dev/null; then npm ci --no-audit --no-fund; \
	else echo "npm not found: the openai npm client test will be skipped"; fi

clean:
	rm -rf build simularity

# Keep the harness object between runs; rebuild tests when a header changes.
.SECONDARY: $(BUILD)/tests/test.o
-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(BUILD)/tests/test.d $(TESTS:=.d)
