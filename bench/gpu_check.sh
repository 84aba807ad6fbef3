#!/usr/bin/env bash
# The GPU checks in one short script (issue #5): the gpu-marked tests (Unsloth SFT, transformers on CUDA, vLLM
# when installed), then the GPU benchmark rows (generation and fine-tuning on real architectures with random
# weights). Each step has its own time limit (T_TESTS, T_GEN, T_SFT seconds), so one that hangs or fails does not
# cost the others. On the H200 (2026-11-29) the benchmark steps took 111 s and 215 s; the tests need more than
# the 150 s they had there (each Unsloth/TRL pair now trains in two fresh processes).
#
#   bash bench/gpu_check.sh OUTDIR          # on a CUDA machine after `make setup-gpu` (PY=.venv/bin/python)
#
# Without network (the lent device machine), packages that are missing there travel unpacked in .gpu/site and
# the offline model's tokenizer in .gpu/cache; the script puts them on the path when they exist.
set -u
OUT=${1:?usage: bash bench/gpu_check.sh OUTDIR}
mkdir -p "$OUT"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
[ -d .gpu/site ] && export PYTHONPATH="$ROOT/.gpu/site:$ROOT/lib${PYTHONPATH:+:$PYTHONPATH}"
[ -d .gpu/cache ] && export SOT_CACHE="$ROOT/.gpu/cache"
export PYTHONPATH="$ROOT/lib${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
PY=${PY:-python3}
step() {  # step NAME SECONDS CMD...: run, log to OUTDIR/NAME.log, report its exit status and time
  local name=$1 limit=$2; shift 2
  local t0=$(date +%s)
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name rc=$rc $(( $(date +%s) - t0 ))s" | tee -a "$OUT/steps.txt"
  tail -n 25 "$OUT/$name.log"
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  $PY -c "import torch, transformers, peft, trl, datasets; print('torch', torch.__version__, 'cuda', torch.version.cuda,
'transformers', transformers.__version__, 'peft', peft.__version__, 'trl', trl.__version__, 'datasets', datasets.__version__)"
} >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

step gpu_tests "${T_TESTS:-300}" $PY -m pytest -q -p no:cacheprovider -m gpu -ra tests/test_llm_gpu.py tests/test_sft_gpu.py
step bench_generation "${T_GEN:-120}" $PY bench/bench_generation.py --devices cuda --arch qwen2.5-1.5b \
  --prompts 4 --max-new-tokens 32 --repeats 2 --batch-size 32 --out "$OUT/generation.json"
step bench_sft "${T_SFT:-270}" $PY bench/bench_sft.py --only cuda --archs "${SFT_ARCHS:-qwen2.5-1.5b}" \
  --steps 4 --warmup 2 --timeout 120 --out "$OUT/sft.json"
