# Developer entry points. `make test` is what CI runs (with `make test-integration`).
SHELL := /bin/bash
CARGO ?= cargo
PYTHON ?= python3
SHARED ?= ../shared
BIN_DEBUG = $${CARGO_TARGET_DIR:-target}/debug/summarize
BIN_RELEASE = $${CARGO_TARGET_DIR:-target}/release/summarize

.PHONY: all build release run test lint unit extract-gate test-integration model bench-extract bench-venv eval bench-rouge fuzz clean

all: build

build:
	$(CARGO) build

release:
	$(CARGO) build --release

# The main job on the embedded default: summarize the sample documents.
run: release
	$(BIN_RELEASE) samples/

# Everything a change must pass: formatting, lints, unit and integration tests, and the
# extraction quality gate on the benchmark's dev pages (skipped where ../shared is absent).
test: lint unit extract-gate

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

unit:
	$(CARGO) test

extract-gate:
	@if [ -d "$(SHARED)/data/article-extraction-benchmark" ]; then \
		$(CARGO) build --quiet && \
		$(PYTHON) scripts/bench_extract.py --bin $(BIN_DEBUG) --ids dev --no-python-trafilatura --min-f1 0.955 --data $(SHARED)/data/article-extraction-benchmark; \
	else \
		echo "extract-gate: skipped, $(SHARED)/data/article-extraction-benchmark is absent (a clone outside the workplace)"; \
	fi

# Against a real OpenAI-compatible server: llama.cpp (llama-cpp-python) serving SmolLM2.
test-integration:
	scripts/test-integration.sh

# The default model for the local backend and the integration tests.
model:
	scripts/fetch-model.sh

# F1/precision/recall and pages/s on the benchmark's dev pages; beside Python trafilatura when
# .venv-bench has it (`make bench-venv` installs it).
BENCH_PYTHON = $(if $(wildcard .venv-bench/bin/python),.venv-bench/bin/python,$(PYTHON))
bench-extract: release
	$(BENCH_PYTHON) scripts/bench_extract.py --bin $(BIN_RELEASE) --ids dev --data $(SHARED)/data/article-extraction-benchmark

bench-venv:
	$(PYTHON) -m venv .venv-bench
	.venv-bench/bin/pip install --quiet trafilatura lxml_html_clean

clean:
	$(CARGO) clean

# ROUGE of a backend on the CNN/DM and QMSum dev sets beside the baselines (BACKEND=extractive|openai|ollama).
eval: release
	scripts/eval.sh

# summarize eval vs Python rouge-score on the same 150 CNN/DM pairs.
bench-rouge: release
	scripts/bench-rouge.sh

# Fuzz the extractor, chunker, input-list parser and sanitizer for FUZZ_SECONDS each (cargo-fuzz).
fuzz:
	scripts/fuzz.sh
