# The README's commands. `make help` lists them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SHELL := /bin/bash

.PHONY: help build serve test test-rust test-python lint bench bench-quick bench-check clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.deps: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q "maturin>=1.7,<2"
	touch $@

build: $(VENV)/.deps ## build the Rust core (release) and install shortcore with its dependencies into .venv
	$(BIN)/maturin develop --release --extras dev,bench -q

serve: build ## build and run shortcore on the embedded stores
	$(BIN)/shortcore serve

test-rust: ## cargo test for the pure Rust core
	cargo test -q

test-python: build ## pytest against the release build
	$(BIN)/python -m pytest

test: test-rust test-python ## every test: cargo test and pytest

lint: build ## rustfmt, clippy, ruff, mypy, stubtest
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -q -- -D warnings
	$(BIN)/ruff check python tests bench
	$(BIN)/ruff format --check python tests bench
	$(BIN)/mypy
	$(BIN)/python -m mypy.stubtest shortcore._core

bench: build ## the full benchmark suite (release build, minutes)
	cargo bench -p shortcore
	$(BIN)/python bench/run.py --full

bench-quick: build ## a quick benchmark run (under 3 minutes)
	$(BIN)/python bench/run.py --quick

bench-check: build ## CI: a quick run must write every figure (speed is not judged)
	$(BIN)/python bench/run.py --quick --check --out $$(mktemp -d)

clean: ## remove build products and the venv
	rm -rf target $(VENV)
