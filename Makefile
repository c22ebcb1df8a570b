# Asya in C - top-level build.  `make help` lists the targets.

VERSION    := 0.1.0
PREFIX     ?= /usr/local
BUILD      ?= build
CC         ?= cc
CXX        ?= c++
PYTHON     ?= /usr/bin/python3

OPT        ?= -O2 -g
SAN        ?=
# --coverage for `make coverage`: the programs and unit tests only, not handler libraries.
COVERAGE_FLAGS ?=
WARN       := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
              -Wformat=2 -Wvla -Wno-format-nonliteral
CPPFLAGS   += -Iinclude -Isrc/common -D_GNU_SOURCE -DASYA_BUILD_VERSION='"$(VERSION)"'
CFLAGS     := -std=c11 $(WARN) $(OPT) $(SAN) -MMD -MP $(EXTRA_CFLAGS)
LDFLAGS    += $(SAN)
HANDLER_CFLAGS := -fPIC -fvisibility=hidden

LIBS_COMMON  := -ljansson
LIBS_RUNTIME := -ljansson -lev -ldl
LIBS_SIDECAR := -lrabbitmq -lmicrohttpd -lcurl -ljansson -lev -lm
LIBS_GATEWAY := -lmicrohttpd -lpq -lyaml -lrabbitmq -ljansson -lev -lm

COMMON_SRC   := $(wildcard src/common/*.c)
RUNTIME_SRC  := $(filter-out src/runtime/main.c,$(wildcard src/runtime/*.c))
SIDECAR_SRC  := $(filter-out src/sidecar/main.c,$(wildcard src/sidecar/*.c))
GATEWAY_SRC  := $(filter-out src/gateway/main.c,$(wildcard src/gateway/*.c))
COMMON_OBJ   := $(COMMON_SRC:%.c=$(BUILD)/obj/%.o)
RUNTIME_OBJ  := $(RUNTIME_SRC:%.c=$(BUILD)/obj/%.o)
SIDECAR_OBJ  := $(SIDECAR_SRC:%.c=$(BUILD)/obj/%.o)
GATEWAY_OBJ  := $(GATEWAY_SRC:%.c=$(BUILD)/obj/%.o)

LIB_COMMON   := $(BUILD)/lib/libasyacommon.a
LIB_RUNTIME  := $(BUILD)/lib/libasyaruntime.a
LIB_SIDECAR  := $(BUILD)/lib/libasyasidecar.a
LIB_GATEWAY  := $(BUILD)/lib/libasyagateway.a

RUNTIME_BIN  := $(BUILD)/bin/asya-runtime
SIDECAR_BIN  := $(BUILD)/bin/asya-sidecar
INVOKE_BIN   := $(BUILD)/bin/asya-invoke
GATEWAY_BIN  := $(BUILD)/bin/asya-gateway

# Seed-scenario handlers: every .c under the suite's handlers/ makes one library.
SEED_HANDLER_SRC := $(wildcard tests/integration/sidecar-vs-runtime/handlers/*.c)
SEED_HANDLERS    := $(BUILD)/lib/asya/test_handlers.so
# Example handlers for newcomers: handlers/<name>.c -> build/lib/asya/<name>.so
EXAMPLE_SRC      := $(wildcard handlers/*.c)
EXAMPLE_HANDLERS := $(EXAMPLE_SRC:handlers/%.c=$(BUILD)/lib/asya/%.so)
# handlers/examples/: C (*.c), C++ (*.cpp) and Rust (rust/) examples -> build/lib/asya/examples/
EXAMPLES_DIR  := $(BUILD)/lib/asya/examples
EXAMPLES_C    := $(patsubst handlers/examples/%.c,$(EXAMPLES_DIR)/%.so,$(wildcard handlers/examples/*.c))
EXAMPLES_CXX  := $(patsubst handlers/examples/%.cpp,$(EXAMPLES_DIR)/%.so,$(wildcard handlers/examples/*.cpp))
EXAMPLES_DATA := $(EXAMPLES_DIR)/stopwords.txt
EXAMPLES_RUST := $(EXAMPLES_DIR)/rust_shout.so
CXXFLAGS_EXAMPLES := -std=c++17 -Wall -Wextra -Werror -Wshadow $(OPT) $(SAN) \
                     -fvisibility-inlines-hidden $(EXTRA_CXXFLAGS)
# Fixture libraries for the runtime tests (bad ABI stamp, no stamp, crashers).
FIXTURE_SRC      := $(wildcard tests/runtime/fixtures/*.c)
FIXTURES         := $(FIXTURE_SRC:tests/runtime/fixtures/%.c=$(BUILD)/lib/asya-test/%.so)

UNIT_SRC   := $(wildcard tests/unit/test_*.c)
UNIT_BINS  := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: examples examples-rust
.PHONY: all help demo test test-unit test-runtime test-sidecar test-gateway test-integration-sidecar asan \
        test-integration test-integration-gateway \
        test-asan valgrind install clean format format-check lint

all: $(RUNTIME_BIN) $(SIDECAR_BIN) $(INVOKE_BIN) $(GATEWAY_BIN) $(SEED_HANDLERS) $(EXAMPLE_HANDLERS) $(FIXTURES) $(UNIT_BINS) \
     examples

help:
	@echo "make                          build everything into $(BUILD)/"
	@echo "make test                     format-check, lint, clang build, then every suite below"
	@echo "make test-unit                cmocka unit tests"
	@echo "make test-runtime             asya-runtime against real handler libraries"
	@echo "make test-sidecar             asya-sidecar against a private RabbitMQ"
	@echo "make test-gateway             asya-gateway against a private RabbitMQ and PostgreSQL"
	@echo "make test-integration-sidecar the seed suite: 13 scenarios on a private RabbitMQ"
	@echo "  ... DOCKER=1                the seed suite through docker compose"
	@echo "make test-integration-gateway the seed suite: gateway, PostgreSQL, six actors, end actors"
	@echo "  ... DOCKER=1                the gateway suite through docker compose"
	@echo "make test-integration         both seed suites"
	@echo "make test-chaos               SIGKILLs and broker restarts under load; every id accounted for"
	@echo "make asan / test-asan         ASan+UBSan build in build/asan and its tests"
	@echo "make valgrind                 unit tests under valgrind memcheck"
	@echo "make format-check / lint      clang-format, cppcheck and clang-tidy"
	@echo "make coverage                 line/branch coverage of src/ from all suites (lcov)"
	@echo "make clang                    build with clang (-Werror) into build/clang, run unit tests"
	@echo "make test-handlers            asya-invoke, example handlers, packaging, tutorial"
	@echo "make install PREFIX=/usr/local"
	@echo "make deb                      build/asya_<version>_<arch>.deb"

# ---- objects and libraries ------------------------------------------------

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(COVERAGE_FLAGS) -c -o $@ $<

$(LIB_COMMON): $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(LIB_RUNTIME): $(RUNTIME_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(LIB_SIDECAR): $(SIDECAR_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(LIB_GATEWAY): $(GATEWAY_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(GATEWAY_BIN): $(BUILD)/obj/src/gateway/main.o $(LIB_GATEWAY) $(LIB_COMMON)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $(COVERAGE_FLAGS) -o $@ $^ $(LIBS_GATEWAY)

$(RUNTIME_BIN): $(BUILD)/obj/src/runtime/main.o $(LIB_RUNTIME) $(LIB_COMMON)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $(COVERAGE_FLAGS) -o $@ $^ $(LIBS_RUNTIME)

$(SIDECAR_BIN): $(BUILD)/obj/src/sidecar/main.o $(LIB_SIDECAR) $(LIB_COMMON)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $(COVERAGE_FLAGS) -o $@ $^ $(LIBS_SIDECAR)

# asya-invoke: one request through a handler, via a private asya-runtime child.
$(INVOKE_BIN): $(BUILD)/obj/src/invoke/main.o $(LIB_COMMON)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $(COVERAGE_FLAGS) -o $@ $^ $(LIBS_COMMON)

# ---- handler libraries ----------------------------------------------------

$(SEED_HANDLERS): $(SEED_HANDLER_SRC) include/asya/asya.h include/asya/asya_json.h
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(HANDLER_CFLAGS) -shared -o $@ $(SEED_HANDLER_SRC) -ljansson

$(BUILD)/lib/asya/%.so: handlers/%.c include/asya/asya.h include/asya/asya_json.h
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(HANDLER_CFLAGS) -shared -o $@ $< -ljansson

# Examples: no -MMD here, so the examples directory holds only what gets installed.
$(EXAMPLES_DIR)/%.so: handlers/examples/%.c include/asya/asya.h include/asya/asya_json.h
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(filter-out -MMD -MP,$(CFLAGS)) $(HANDLER_CFLAGS) -shared -o $@ $< -ljansson

$(EXAMPLES_DIR)/%.so: handlers/examples/%.cpp handlers/examples/%.map include/asya/asya.h \
                      include/asya/asya_json.h
	@mkdir -p $(dir $@)
	$(CXX) $(CPPFLAGS) $(CXXFLAGS_EXAMPLES) $(HANDLER_CFLAGS) -shared \
	    -Wl,--version-script=handlers/examples/$*.map -o $@ $< -ljansson

$(EXAMPLES_DIR)/stopwords.txt: handlers/examples/stopwords.txt
	@mkdir -p $(dir $@)
	cp $< $@

# The Rust example: cargo decides what to rebuild; skipped when cargo is absent or has no
# toolchain (a rustup proxy without a default).
examples-rust:
	@if cargo --version >/dev/null 2>&1; then \
	    RUSTFLAGS="-D warnings" cargo build -q --release --offline \
	        --manifest-path handlers/examples/rust/Cargo.toml --target-dir $(BUILD)/cargo && \
	    mkdir -p $(EXAMPLES_DIR) && \
	    { cmp -s $(BUILD)/cargo/release/libasya_example_rust.so $(EXAMPLES_RUST) || \
	      cp $(BUILD)/cargo/release/libasya_example_rust.so $(EXAMPLES_RUST); }; \
	else \
	    echo "cargo not found (or no Rust toolchain): skipping the Rust example handler" \
	         "($(EXAMPLES_RUST))"; \
	fi

examples: $(EXAMPLES_C) $(EXAMPLES_CXX) $(EXAMPLES_DATA) examples-rust

$(BUILD)/lib/asya-test/%.so: tests/runtime/fixtures/%.c include/asya/asya.h include/asya/asya_json.h
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(HANDLER_CFLAGS) -shared -o $@ $< -ljansson

# ---- tests ----------------------------------------------------------------

$(BUILD)/tests/%: tests/unit/%.c $(LIB_SIDECAR) $(LIB_RUNTIME) $(LIB_GATEWAY) $(LIB_COMMON)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Isrc/sidecar -Isrc/runtime -Isrc/gateway $(CFLAGS) $(LDFLAGS) $(COVERAGE_FLAGS) \
	    -o $@ $< $(LIB_SIDECAR) $(LIB_RUNTIME) $(LIB_GATEWAY) $(LIB_COMMON) -lcmocka $(LIBS_SIDECAR) \
	    $(LIBS_GATEWAY) -ldl

test-unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

test-runtime: all
	ASYA_BUILD_DIR=$(abspath $(BUILD)) $(PYTHON) -m pytest -q tests/runtime

test-sidecar: all
	ASYA_BUILD_DIR=$(abspath $(BUILD)) tests/sidecar/run.sh

test-gateway: all
	ASYA_BUILD_DIR=$(abspath $(BUILD)) tests/gateway/run.sh

# asya-invoke, handlers/examples, make install/deb and the tutorial (docs/writing-a-handler.md).
test-handlers: all
	ASYA_BUILD_DIR=$(abspath $(BUILD)) $(PYTHON) -m pytest -q tests/invoke

# DOCKER=1: the same suite through docker compose (images built from source).
ifeq ($(DOCKER),1)
test-integration-sidecar:
	tests/integration/sidecar-vs-runtime/run-compose.sh
else
test-integration-sidecar: all
	ASYA_BUILD_DIR=$(abspath $(BUILD)) tests/integration/sidecar-vs-runtime/run.sh
endif

# The gateway-vs-actors seed suite: PostgreSQL, RabbitMQ, asya-gateway, six actors and
# the end actors as local processes (ASYA_LOG_LEVEL=DEBUG passes through).
# DOCKER=1: the same suite through docker compose (images built from source).
ifeq ($(DOCKER),1)
test-integration-gateway:
	tests/integration/gateway-vs-actors/run-compose.sh
else
test-integration-gateway: all
	ASYA_BUILD_DIR=$(abspath $(BUILD)) tests/integration/gateway-vs-actors/run.sh
endif

# Both seed suites, one after the other.
test-integration:
	$(MAKE) test-integration-sidecar
	$(MAKE) test-integration-gateway

# CHAOS_ARGS: e.g. --seed 7 --count 5000 (tests/chaos/chaos.py --help)
.PHONY: test-chaos
test-chaos: all
	ASYA_BUILD_DIR=$(abspath $(BUILD)) tests/chaos/run.sh $(CHAOS_ARGS)

ASAN_MAKE = $(MAKE) BUILD=build/asan OPT="-O1 -g" \
	    SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all"

asan:
	$(ASAN_MAKE) all

# Line and branch coverage of src/ from every functional suite (gcc --coverage,
# lcov): one summary line per program and build/coverage/coverage/html/.  The
# suites run one after the other, as in `make test`.
COV_MAKE = $(MAKE) BUILD=build/coverage OPT="-O1 -g" COVERAGE_FLAGS=--coverage
COVERAGE_MIN ?= 85
.PHONY: coverage
coverage:
	$(COV_MAKE) all
	find build/coverage -name '*.gcda' -delete
	$(COV_MAKE) test-unit
	$(COV_MAKE) test-runtime
	$(COV_MAKE) test-handlers
	$(COV_MAKE) test-sidecar
	$(COV_MAKE) test-gateway
	$(COV_MAKE) test-integration-sidecar
	$(COV_MAKE) test-chaos
	COVERAGE_MIN=$(COVERAGE_MIN) scripts/coverage-report.sh build/coverage

# The same code through clang at -Werror: everything built, unit tests run.
.PHONY: clang
clang:
	$(MAKE) BUILD=build/clang CC=clang CXX=clang++ all
	$(MAKE) BUILD=build/clang CC=clang CXX=clang++ test-unit

# The sanitizer build's tests, one suite after the other (never in parallel:
# they start brokers and time-sensitive processes).
test-asan: asan
	$(ASAN_MAKE) test-unit
	$(ASAN_MAKE) test-runtime
	$(ASAN_MAKE) test-sidecar
	$(ASAN_MAKE) test-integration-sidecar

valgrind: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== valgrind $$t"; \
	    valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect \
	        --error-exitcode=1 $$t; done

# Sequential on purpose: the suites start brokers and time-sensitive processes.
test: all
	$(MAKE) format-check
	$(MAKE) lint
	$(MAKE) clang
	$(MAKE) test-unit
	$(MAKE) valgrind
	$(MAKE) test-runtime
	$(MAKE) test-handlers
	$(MAKE) test-sidecar
	$(MAKE) test-gateway
	$(MAKE) test-integration-sidecar
	$(MAKE) test-integration-gateway
	$(MAKE) test-chaos
	$(MAKE) test-asan
	@echo "== make test: all suites passed"

# The main job: a three-actor pipeline on a private local RabbitMQ.
demo: all
	ASYA_BUILD_DIR=$(abspath $(BUILD)) demo/run.sh

# ---- install --------------------------------------------------------------

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/include/asya \
	    $(DESTDIR)$(PREFIX)/lib/asya $(DESTDIR)$(PREFIX)/lib/pkgconfig \
	    $(DESTDIR)$(PREFIX)/lib/asya/examples $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 0755 $(RUNTIME_BIN) $(SIDECAR_BIN) $(INVOKE_BIN) $(GATEWAY_BIN) $(DESTDIR)$(PREFIX)/bin/
	install -d $(DESTDIR)$(PREFIX)/share/asya/db
	install -m 0644 db/*.sql $(DESTDIR)$(PREFIX)/share/asya/db/
	install -m 0644 include/asya/*.h $(DESTDIR)$(PREFIX)/include/asya/
	install -m 0755 $(EXAMPLE_HANDLERS) $(DESTDIR)$(PREFIX)/lib/asya/
	install -m 0755 $(EXAMPLES_C) $(EXAMPLES_CXX) $(DESTDIR)$(PREFIX)/lib/asya/examples/
	install -m 0644 $(EXAMPLES_DATA) $(DESTDIR)$(PREFIX)/lib/asya/examples/
	if [ -f $(EXAMPLES_RUST) ]; then \
	    install -m 0755 $(EXAMPLES_RUST) $(DESTDIR)$(PREFIX)/lib/asya/examples/; fi
	set -e; for p in $(RUNTIME_BIN) $(SIDECAR_BIN) $(INVOKE_BIN) $(GATEWAY_BIN); do \
	    packaging/mkman.sh $$p $(VERSION) | gzip -9n \
	        > $(DESTDIR)$(PREFIX)/share/man/man1/$$(basename $$p).1.gz; done
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' asya-handler.pc.in \
	    > $(DESTDIR)$(PREFIX)/lib/pkgconfig/asya-handler.pc

# Debian package: build/asya_<version>_<arch>.deb from an install into /usr.
DEB_ARCH := $(shell dpkg --print-architecture 2>/dev/null || uname -m)
DEB      := $(BUILD)/asya_$(VERSION)_$(DEB_ARCH).deb
.PHONY: deb test-handlers
deb: all
	rm -rf $(BUILD)/deb-root
	$(MAKE) install DESTDIR=$(abspath $(BUILD)/deb-root) PREFIX=/usr
	packaging/mkdeb.sh $(BUILD)/deb-root $(VERSION) $(DEB_ARCH) $(DEB)

clean:
	rm -rf build

# .clang-format holds STYLE.md's settings; format-check fails on any file that differs.
FORMAT_FILES = $$(find include src handlers tests \( -name '*.c' -o -name '*.h' -o -name '*.cpp' \) \
                 -not -path '*/target/*' | sort)

format:
	clang-format -i $(FORMAT_FILES)

format-check:
	clang-format --dry-run --Werror $(FORMAT_FILES)
	@echo "format-check: clean"

# ---- lint -----------------------------------------------------------------
# cppcheck and clang-tidy (.clang-tidy: bugprone-*, clang-analyzer-*) over src/
# and include/ (headers through the files that include them); any finding fails.
LINT_SRC   := $(wildcard src/*/*.c)
LINT_FLAGS := -std=c11 -Iinclude -Isrc/common -Isrc/sidecar -Isrc/runtime -Isrc/gateway -D_GNU_SOURCE \
              -DASYA_BUILD_VERSION='"$(VERSION)"'
.PHONY: lint
lint:
	cppcheck --enable=warning,portability --error-exitcode=1 --inline-suppr -q \
	    -Iinclude -Isrc/common -D_GNU_SOURCE src include
	@# Findings go to stdout; stderr only has clang-tidy's "N warnings generated" counts.
	printf '%s\n' $(LINT_SRC) | xargs -P$$(nproc) -I{} clang-tidy -quiet {} -- $(LINT_FLAGS) 2>/dev/null
	@echo "lint: clean"

# ---- fuzzing (libFuzzer) --------------------------------------------------
# `make fuzz FUZZ_SECONDS=N` builds each parser's target with clang into
# build/fuzz/ and runs it N seconds on a scratch corpus seeded from
# tests/fuzz/corpus/<target>/; a crash, leak or timeout fails the target and
# leaves the input in build/fuzz/artifacts/<target>/.

FUZZ_SECONDS ?= 30
FUZZ_CC      ?= clang
FUZZ_TARGETS := frame envelope response jscan splice
FUZZ_SRC     := src/common/frame.c src/common/envelope.c src/common/protocol.c src/common/jscan.c \
                src/common/textbuf.c
FUZZ_CFLAGS  := -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
                -fno-omit-frame-pointer -Iinclude -Isrc/common -D_GNU_SOURCE

.PHONY: fuzz
build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_SRC) $(FUZZ_SRC:.c=.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< $(FUZZ_SRC) -ljansson

# fuzz_splice checks the sidecar's splice path against its tree path, so it
# also links the two from src/sidecar/ (the other targets do not need them).
FUZZ_SPLICE_SRC := src/sidecar/routing.c src/sidecar/splice.c
build/fuzz/fuzz_splice: tests/fuzz/fuzz_splice.c $(FUZZ_SRC) $(FUZZ_SRC:.c=.h) \
                        $(FUZZ_SPLICE_SRC) $(FUZZ_SPLICE_SRC:.c=.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Isrc/sidecar -o $@ $< $(FUZZ_SRC) $(FUZZ_SPLICE_SRC) -ljansson

fuzz: $(FUZZ_TARGETS:%=build/fuzz/fuzz_%)
	@set -e; for t in $(FUZZ_TARGETS); do \
	    echo "== fuzz_$$t for $(FUZZ_SECONDS)s"; \
	    mkdir -p build/fuzz/corpus/$$t build/fuzz/artifacts/$$t; \
	    build/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -timeout=10 -print_final_stats=1 \
	        -artifact_prefix=build/fuzz/artifacts/$$t/ build/fuzz/corpus/$$t tests/fuzz/corpus/$$t; \
	done

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

# ---- benchmark (issue 7) --------------------------------------------------
# `make bench`: a private RabbitMQ on 5699/15699, a bare C relay baseline
# against echo actors; one table (tests/bench/run.py says how it measures).
BENCH_BIN := $(BUILD)/bench/asya-bench

.PHONY: bench
$(BENCH_BIN): tests/bench/asya-bench.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 $(WARN) $(OPT) -o $@ $< -lrabbitmq

bench: $(RUNTIME_BIN) $(SIDECAR_BIN) $(SEED_HANDLERS) $(BENCH_BIN)
	ASYA_BUILD_DIR=$(abspath $(BUILD)) $(PYTHON) tests/bench/run.py

# `make bench-gateway`: asya-gateway's tool calls/s and p50/p99 against pgbench's
# single-row INSERT rate on the same private PostgreSQL, and KiB per open SSE stream;
# one table (tests/bench/bench_gateway.py says how it measures).
.PHONY: bench-gateway
bench-gateway: $(GATEWAY_BIN)
	ASYA_BUILD_DIR=$(abspath $(BUILD)) $(PYTHON) tests/bench/bench_gateway.py
