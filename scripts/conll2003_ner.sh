#!/usr/bin/env bash
# CoNLL-2003 NER with fairseq: baseline vs AD-DROP, same seed, scored on the dev set.
#
#   bash scripts/conll2003_ner.sh [--data DIR] [--out DIR] [--epochs N] [--size tiny|mini|small|base]
#                                 [--seeds "1 2"] [--train-sentences N] [--valid-sentences N] [--smoke]
#                                 [--jobs 1|2] [--threads N]
#
# Steps: prepare (slices if asked, sentencepiece, fairseq binarized data) -> for each seed:
# train the baseline (--criterion addrop_ce --addrop-schedule never, i.e. plain CE) and AD-DROP
# (--addrop-schedule cross) -> tag the dev file with each best checkpoint
# (python -m addrop_fairseq.tag) -> one table of entity-level F1 / precision / recall (seqeval).
# --smoke: a tiny model on 300 training / 100 dev sentences for 2 epochs (a few minutes on 2 CPU cores).
# --jobs 2 (default) trains baseline and AD-DROP side by side, --threads 1 (default) torch thread
# each: on a shared 2-core machine that is several times faster than one job with 2 threads.
# Other options: --attribution ga|iga|aa|rd --p P --q Q --layers all|0,1 --schedule cross|always
#                --lr LR --max-tokens N --warmup N --dropout P --subword sentencepiece|none --spm-vocab N
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python}

DATA=$ROOT/../shared/data/conll2003
OUT=$ROOT/runs/ner
EPOCHS=10
SIZE=small
SEEDS=1
TRAIN_SENTS=0
VALID_SENTS=0
ATTRIBUTION=ga
P=0.3
Q=0.3
LAYERS=all
SCHEDULE=cross
LR=0.0005
MAX_TOKENS=4000
WARMUP=400
DROPOUT=0.1
SUBWORD=sentencepiece
SPM_VOCAB=8000
JOBS=2
THREADS=1

# --smoke sets small defaults first; explicit options below still override them
for arg in "$@"; do
    if [ "$arg" = --smoke ]; then
        SIZE=tiny; EPOCHS=2; TRAIN_SENTS=300; VALID_SENTS=100; SPM_VOCAB=1000
        WARMUP=10; LR=0.005; MAX_TOKENS=500
    fi
done

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
    case $1 in
        --data) DATA=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --epochs) EPOCHS=$2; shift 2 ;;
        --size) SIZE=$2; shift 2 ;;
        --seeds) SEEDS=$2; shift 2 ;;
        --train-sentences) TRAIN_SENTS=$2; shift 2 ;;
        --valid-sentences) VALID_SENTS=$2; shift 2 ;;
        --attribution) ATTRIBUTION=$2; shift 2 ;;
        --p) P=$2; shift 2 ;;
        --q) Q=$2; shift 2 ;;
        --layers) LAYERS=$2; shift 2 ;;
        --schedule) SCHEDULE=$2; shift 2 ;;
        --lr) LR=$2; shift 2 ;;
        --max-tokens) MAX_TOKENS=$2; shift 2 ;;
        --warmup) WARMUP=$2; shift 2 ;;
        --dropout) DROPOUT=$2; shift 2 ;;
        --subword) SUBWORD=$2; shift 2 ;;
        --spm-vocab) SPM_VOCAB=$2; shift 2 ;;
        --jobs) JOBS=$2; shift 2 ;;
        --threads) THREADS=$2; shift 2 ;;
        --smoke) shift ;;
        -h|--help) usage 0 ;;
        *) echo "unknown option: $1" >&2; usage 2 >&2 ;;
    esac
done
case $SIZE in
    tiny) ARCH=(--arch transformer_tagger_small --encoder-layers 2 --encoder-embed-dim 64
                --encoder-ffn-embed-dim 128 --encoder-attention-heads 2) ;;
    mini) ARCH=(--arch transformer_tagger_small --encoder-layers 2 --encoder-embed-dim 128
                --encoder-ffn-embed-dim 512 --encoder-attention-heads 4) ;;
    small) ARCH=(--arch transformer_tagger_small) ;;
    base) ARCH=(--arch transformer_tagger_base) ;;
    *) echo "--size must be tiny, mini, small or base" >&2; exit 2 ;;
esac
for f in train.txt valid.txt; do
    [ -f "$DATA/$f" ] || { echo "missing $DATA/$f (--data DIR: a folder with CoNLL train.txt and valid.txt)" >&2; exit 2; }
done
export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
log() { echo "[conll2003_ner] $*"; }

# ---------------------------------------------------------------- prepare
TRAIN=$DATA/train.txt
VALID=$DATA/valid.txt
if [ "$TRAIN_SENTS" != 0 ] || [ "$VALID_SENTS" != 0 ]; then
    mkdir -p "$OUT/slices"
    # the first N sentences, lines verbatim, without -DOCSTART- (what addrop_fairseq.tagging.sample does)
    first_sentences() {
        awk -v n="$1" '$1 == "-DOCSTART-" { next }
            NF == 0 { if (open) { print ""; open = 0; if (++k >= n && n > 0) exit } next }
            { print; open = 1 }
            END { if (open) print "" }' "$2" > "$3"
    }
    first_sentences "$TRAIN_SENTS" "$TRAIN" "$OUT/slices/train.txt"
    first_sentences "$VALID_SENTS" "$VALID" "$OUT/slices/valid.txt"
    TRAIN=$OUT/slices/train.txt
    VALID=$OUT/slices/valid.txt
fi
log "prepare: $TRAIN + $VALID -> $OUT/data-bin ($SUBWORD)"
$PY -m addrop_fairseq.tagging.preprocess --train "$TRAIN" --valid "$VALID" --destdir "$OUT/data-bin" \
    --subword "$SUBWORD" --sentencepiece-vocab-size "$SPM_VOCAB" > "$OUT/preprocess.log" 2>&1 \
    || { tail -20 "$OUT/preprocess.log" >&2; exit 1; }

# ---------------------------------------------------------------- train + evaluate
train() {  # train VARIANT SEED SCHEDULE
    local dir=$OUT/$1/seed$2
    rm -rf "$dir"; mkdir -p "$dir"
    log "train $1 (seed $2, --addrop-schedule $3, ${EPOCHS} epochs, size $SIZE) -> $dir"
    local start=$SECONDS
    $PY -m fairseq_cli.train "$OUT/data-bin" --user-dir "$ROOT/addrop_fairseq" \
        --task sequence_tagging "${ARCH[@]}" --dropout "$DROPOUT" --tagger-dropout "$DROPOUT" \
        --criterion addrop_ce --addrop-schedule "$3" --addrop-p "$P" --addrop-q "$Q" \
        --addrop-layers "$LAYERS" --addrop-attribution "$ATTRIBUTION" \
        --optimizer adam --adam-betas '(0.9, 0.98)' --lr "$LR" --lr-scheduler inverse_sqrt \
        --warmup-updates "$WARMUP" --warmup-init-lr 1e-07 --clip-norm 1.0 --weight-decay 0.01 \
        --max-tokens "$MAX_TOKENS" --max-epoch "$EPOCHS" --seed "$2" \
        --best-checkpoint-metric f1 --maximize-best-checkpoint-metric \
        --no-epoch-checkpoints --no-last-checkpoints --save-dir "$dir" \
        --log-format simple --log-interval 100 > "$dir/train.log" 2>&1 \
        || { tail -30 "$dir/train.log" >&2; exit 1; }
    echo $((SECONDS - start)) > "$dir/train_seconds"
    awk '/\| (train|valid) \| epoch/ { match($0, /epoch [0-9]+/); e = substr($0, RSTART + 6, RLENGTH - 6) + 0 }
         /\| valid \| epoch/ && match($0, /\| f1 [0-9.]+/) { f[e] = substr($0, RSTART + 5, RLENGTH - 5) }
         /\| train \| epoch/ && match($0, /addrop_active [0-9.]+/) { a[e] = substr($0, RSTART + 14, RLENGTH - 14); n = e }
         END { for (i = 1; i <= n; i++) printf "    %s epoch %d: %s, dev f1 %s\n", v, i, (a[i] > 0 ? "AD-DROP" : "plain"), f[i] }' \
        v="$1" "$dir/train.log"
    log "evaluate $1 seed $2 on $VALID"
    $PY -m addrop_fairseq.tag --checkpoint "$dir/checkpoint_best.pt" --data "$OUT/data-bin" \
        --input "$VALID" --output "$dir/dev.pred.txt" > "$dir/dev.report.txt" 2> "$dir/tag.log" \
        || { tail -20 "$dir/tag.log" >&2; exit 1; }
    tail -1 "$dir/dev.report.txt"
}
for seed in $SEEDS; do
    if [ "$JOBS" -ge 2 ]; then
        train baseline "$seed" never > "$OUT/baseline.seed$seed.out" 2>&1 & base_pid=$!
        train addrop "$seed" "$SCHEDULE" > "$OUT/addrop.seed$seed.out" 2>&1 & addrop_pid=$!
        status=0
        wait $base_pid || status=1
        wait $addrop_pid || status=1
        cat "$OUT/baseline.seed$seed.out" "$OUT/addrop.seed$seed.out"
        [ $status = 0 ] || exit 1
    else
        train baseline "$seed" never
        train addrop "$seed" "$SCHEDULE"
    fi
done

# ---------------------------------------------------------------- table
$PY - "$OUT" "$SEEDS" <<'PYEOF'
import re, statistics, sys
out, seeds = sys.argv[1], sys.argv[2].split()
rows = {}
print(f"\nCoNLL-2003 dev, entity-level (seqeval), best checkpoint by dev F1 -- {out}")
print(f"{'method':<10} {'seed':>5} {'F1':>7} {'P':>7} {'R':>7} {'train s':>8}")
for variant in ("baseline", "addrop"):
    for seed in seeds:
        d = f"{out}/{variant}/seed{seed}"
        line = open(f"{d}/dev.report.txt").read().strip().splitlines()[-1]
        p, r, f = (float(re.search(rf"{k} ([0-9.]+)", line).group(1)) for k in ("precision", "recall", "f1"))
        secs = open(f"{d}/train_seconds").read().strip()
        rows.setdefault(variant, []).append((f, p, r))
        print(f"{variant:<10} {seed:>5} {f:7.2f} {p:7.2f} {r:7.2f} {secs:>8}")
if len(seeds) > 1:
    for variant, vals in rows.items():
        mean = [statistics.mean(v[i] for v in vals) for i in range(3)]
        sd = statistics.stdev(v[0] for v in vals)
        print(f"{variant:<10} {'mean':>5} {mean[0]:7.2f} {mean[1]:7.2f} {mean[2]:7.2f}   (F1 sd {sd:.2f})")
base = statistics.mean(v[0] for v in rows["baseline"])
add = statistics.mean(v[0] for v in rows["addrop"])
print(f"AD-DROP - baseline F1: {add - base:+.2f}")
PYEOF
