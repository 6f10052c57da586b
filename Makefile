# One Makefile for everything: test, lint, bench, demo, test-matrix.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The binding needs an interpreter at build time; point cargo at the venv's.
export PYO3_PYTHON := $(abspath $(PY))
export CARGO_TERM_COLOR := never

.PHONY: help venv build test test-rust test-python lint fmt docs bench bench-quick demo test-matrix wheels clean

help:
	@echo "make test         build the extension (release) and run cargo + pytest"
	@echo "make lint         rustfmt, clippy, ruff, mypy, stubtest"
	@echo "make docs         the documentation site (mkdocs --strict) into site/"
	@echo "make bench        side-by-side benchmarks against peers (ratios)"
	@echo "make demo         run the demo on the in-memory store"
	@echo "make test-matrix  pytest on every CPython 3.10-3.13 found (pyenv)"
	@echo "make wheels       portable Linux wheels in dist/ (zig), audited, smoke-tested"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "maturin>=1.9,<2"
	touch $(STAMP)

venv: $(STAMP)

build: $(STAMP)
	$(VENV)/bin/maturin develop --release --quiet --extras dev,bench,docs

test-rust:
	cargo test --quiet

test-python: build
	$(PY) -m pytest -q

test: build test-rust test-python

lint: build
	cargo fmt --all -- --check
	cargo clippy --all-targets --all-features --quiet -- -D warnings
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) -m mypy.stubtest rust_py_rate_limit._native --mypy-config-file pyproject.toml --allowlist .stubtest-allowlist

fmt:
	cargo fmt --all
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The site: a broken link, anchor or reference fails the build (--strict).
docs: build
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet
	@echo "== the site is in site/ (open site/index.html)"

bench: build
	$(PY) benches/run.py --suite all

bench-quick: build
	$(PY) benches/run.py --suite all --quick

# Only what the demo needs, and not quietly: the first release build takes a
# few minutes, and cargo's progress shows it is working.
demo: $(STAMP)
	@echo "== building the extension (release; a few minutes the first time) with the demo's extras"
	$(VENV)/bin/maturin develop --release --extras demo
	@echo "== examples/demo.py: the FastAPI example under uvicorn, a burst of requests"
	$(PY) examples/demo.py

test-matrix: $(STAMP)
	bash .ci/test-matrix

# manylinux2014 x86_64 (+ aarch64, musllinux_1_2 x86_64 when the Rust targets
# can be had), built with zig from PyPI, checked with auditwheel and tested
# installed on every CPython 3.10-3.13 found; a few minutes per wheel.
wheels: $(STAMP)
	bash scripts/wheels.sh

clean:
	cargo clean
	rm -rf $(VENV) .venv-* dist
