#!/usr/bin/env bash
# CoNLL-2003 NER with fairseq: baseline vs AD-DROP, same seed, scored on the dev set.
#
#   bash scripts/conll2003_ner.sh [--data DIR] [--out DIR] [--epochs N] [--size tiny|mini|small|base]
#                                 [--seeds "1 2"] [--train-sentences N] [--valid-sentences N] [--smoke]
#                                 [--jobs 1|2] [--threads N] [--preset NAME|FILE]
#
# Steps: prepare (slices if asked, sentencepiece, fairseq binarized data) -> for each seed:
# fairseq-hydra-train the baseline (addrop_ce with addrop_schedule never, i.e. plain CE) and
# AD-DROP (cross) -> tag the dev file with each best checkpoint
# (python -m addrop_fairseq.tagging.cli) -> one table of entity-level F1 / precision / recall (seqeval).
# fairseq settings: the preset addrop_fairseq/config/conll2003/ner.yaml (--preset: another name
# there or a .yaml file); the options below override it. --smoke: the ner_smoke preset (a tiny
# model, 2 epochs) on 300 training / 100 dev sentences (a few minutes on 2 CPU cores).
# --jobs 2 (default) trains baseline and AD-DROP side by side, --threads 1 (default) torch thread
# each: on a shared 2-core machine that is several times faster than one job with 2 threads.
# Other options: --attribution ga|iga|aa|rd --p P --q Q --layers all|0,1 --schedule cross|always
#                --lr LR --max-tokens N --warmup N --dropout P --subword sentencepiece|none --spm-vocab N
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python}

DATA=$ROOT/../shared/data/conll2003
OUT=$ROOT/runs/ner
PRESET=ner
SEEDS=1
TRAIN_SENTS=0
VALID_SENTS=0
SCHEDULE=cross
OVR=()  # hydra overrides of the preset from the options (defaults: the preset's values;
        # ++key=value: added if a --preset FILE does not set the key)
SUBWORD=sentencepiece
SPM_VOCAB=8000
JOBS=2
THREADS=1

# --smoke sets small defaults first; explicit options below still override them
for arg in "$@"; do
    if [ "$arg" = --smoke ]; then
        PRESET=ner_smoke; TRAIN_SENTS=300; VALID_SENTS=100; SPM_VOCAB=1000
    fi
done

# --size: transformer_tagger's sizes (small = transformer_tagger_small, base = _base), as overrides
size() {
    local -a d
    case $1 in
        tiny) d=(2 64 128 2) ;;
        mini) d=(2 128 512 4) ;;
        small) d=(4 256 1024 4) ;;
        base) d=(6 512 2048 8) ;;
        *) echo "--size must be tiny, mini, small or base" >&2; exit 2 ;;
    esac
    OVR+=("++model.encoder_layers=${d[0]}" "++model.encoder_embed_dim=${d[1]}"
        "++model.encoder_ffn_embed_dim=${d[2]}" "++model.encoder_attention_heads=${d[3]}")
}
usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
    case $1 in
        --data) DATA=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --preset) PRESET=$2; shift 2 ;;
        --epochs) OVR+=("optimization.max_epoch=$2"); shift 2 ;;
        --size) size "$2"; shift 2 ;;
        --seeds) SEEDS=$2; shift 2 ;;
        --train-sentences) TRAIN_SENTS=$2; shift 2 ;;
        --valid-sentences) VALID_SENTS=$2; shift 2 ;;
        --attribution) OVR+=("++criterion.addrop_attribution=$2"); shift 2 ;;
        --p) OVR+=("++criterion.addrop_p=$2"); shift 2 ;;
        --q) OVR+=("++criterion.addrop_q=$2"); shift 2 ;;
        --layers) OVR+=("++criterion.addrop_layers='$2'"); shift 2 ;;
        --schedule) SCHEDULE=$2; shift 2 ;;
        --lr) OVR+=("optimization.lr=[$2]"); shift 2 ;;
        --max-tokens) OVR+=("dataset.max_tokens=$2"); shift 2 ;;
        --warmup) OVR+=("++lr_scheduler.warmup_updates=$2"); shift 2 ;;
        --dropout) OVR+=("++model.dropout=$2" "++model.tagger_dropout=$2"); shift 2 ;;
        --subword) SUBWORD=$2; shift 2 ;;
        --spm-vocab) SPM_VOCAB=$2; shift 2 ;;
        --jobs) JOBS=$2; shift 2 ;;
        --threads) THREADS=$2; shift 2 ;;
        --smoke) shift ;;
        -h|--help) usage 0 ;;
        *) echo "unknown option: $1" >&2; usage 2 >&2 ;;
    esac
done
if [[ $PRESET == *.yaml ]]; then
    PRESET_FILE=$(cd "$(dirname "$PRESET")" 2>/dev/null && pwd)/$(basename "$PRESET")
else
    PRESET_FILE=$ROOT/addrop_fairseq/config/conll2003/$PRESET.yaml
fi
[ -f "$PRESET_FILE" ] || { echo "--preset: no $PRESET_FILE" >&2; exit 2; }
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
# fairseq-hydra-train (the console script of this Python, else python -m fairseq_cli.hydra_train)
if [ -z "${PYTHON:-}" ] && command -v fairseq-hydra-train >/dev/null 2>&1; then
    HYDRA_TRAIN=(fairseq-hydra-train)
else
    HYDRA_TRAIN=("$PY" -m fairseq_cli.hydra_train)
fi
train() {  # train VARIANT SEED SCHEDULE: the preset with the options' overrides; log to train.log only
    local dir=$OUT/$1/seed$2
    rm -rf "$dir"; mkdir -p "$dir"
    log "train $1 (seed $2, addrop_schedule $3, preset $(basename "$PRESET_FILE" .yaml)${OVR[*]+ + ${OVR[*]}}) -> $dir"
    local start=$SECONDS
    local -a cmd=("${HYDRA_TRAIN[@]}" --config-dir "$(dirname "$PRESET_FILE")" --config-name "$(basename "$PRESET_FILE" .yaml)"
        task.data="$OUT/data-bin" common.user_dir="$ROOT/addrop_fairseq" checkpoint.save_dir="$dir"
        checkpoint.no_last_checkpoints=true hydra/job_logging=stdout common.seed="$2"
        ${OVR[@]+"${OVR[@]}"} ++criterion.addrop_schedule="$3")
    echo "\$ $(printf '%q ' "${cmd[@]}")" > "$dir/train.log"
    "${cmd[@]}" >> "$dir/train.log" 2>&1 || { tail -30 "$dir/train.log" >&2; exit 1; }
    echo $((SECONDS - start)) > "$dir/train_seconds"
    awk '/\| (train|valid) \| epoch/ { match($0, /epoch [0-9]+/); e = substr($0, RSTART + 6, RLENGTH - 6) + 0 }
         /\| valid \| epoch/ && match($0, /\| f1 [0-9.]+/) { f[e] = substr($0, RSTART + 5, RLENGTH - 5) }
         /\| train \| epoch/ && match($0, /addrop_active [0-9.]+/) { a[e] = substr($0, RSTART + 14, RLENGTH - 14); n = e }
         END { for (i = 1; i <= n; i++) printf "    %s epoch %d: %s, dev f1 %s\n", v, i, (a[i] > 0 ? "AD-DROP" : "plain"), f[i] }' \
        v="$1" "$dir/train.log"
    log "evaluate $1 seed $2 on $VALID"
    $PY -m addrop_fairseq.tagging.cli --checkpoint "$dir/checkpoint_best.pt" --data "$OUT/data-bin" \
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
