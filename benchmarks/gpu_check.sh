#!/usr/bin/env bash
# The prepared GPU check (benchmarks/gpu_check.py): (a) AD-DROP / plain per-update ratio and peak
# memory at the BERT-base shape in bf16, eager vs fused pass 2; (b) masks on the GPU = on the CPU;
# (c) no NaN/inf over 50 bf16 updates; (d) with the time left, full-CoLA FT vs AD-DROP pairs.
# Needs benchmarks/gpu_inputs/ (benchmarks/gpu_prepare.sh); torch, transformers, accelerate; no
# fairseq, no network. Writes check.json and cola_full.json under $OUT (default ./gpu_check_out).
# Wall clock: BUDGET seconds (default 400) + 40 s for (d)'s runs to close + start-up: under 8 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu_check_out}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/nvidia_smi.csv" 2>&1 || true
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" timeout 470 python benchmarks/gpu_check.py check \
    --out "$OUT" --budget "${BUDGET:-400}" "$@" 2>&1 | tee "$OUT/check.log"
