# shellcheck shell=bash
# The WMT16 pipeline shared by scripts/wmt16_en_ro.sh and scripts/wmt16_tr_en.sh: those set
# the language pair and its defaults, source this file, and call
#     wmt16_main SRC TGT "$@"
# The fairseq settings live in the presets addrop_fairseq/config/wmt16/*.yaml (hydra configs);
# training is `fairseq-hydra-train --config-dir ... --config-name PRESET task.data=... key=value`.
# Steps, one function each (each is skipped, saying so, when its output exists; delete the
# output to redo it):
#   1 data       wmt_get_data    --local DIR checked and copied, or downloaded  OUT/data/raw/
#   2 normalise  wmt_normalise   NFC, whitespace, Romanian cedilla -> comma-below OUT/data/norm/
#                                (training pairs and test/valid *sources* only; references never)
#   3 spm        wmt_spm         joint sentencepiece model on the normalised train  OUT/data/spm/spm.model
#   4 encode     wmt_encode      pieces for train/valid/test                   OUT/data/spm/
#   5 binarise   wmt_preprocess  fairseq-preprocess --joined-dictionary        OUT/data-bin/
#   6 train      wmt_train RUN   fairseq-hydra-train, baseline and AD-DROP, same preset and seed
#                                                                              OUT/checkpoints/RUN/
#   7 generate   wmt_generate RUN  fairseq-generate (--user-dir: safe loading only) OUT/eval/RUN.hyp.TGT
#   8 score      wmt_score       sacrebleu BLEU/chrF/length ratio vs the untouched  OUT/eval/results.{json,md}
#                                references in OUT/data/raw/test.TGT

WMT_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WMT_HELPER="$WMT_REPO/addrop_fairseq/mt/wmt16.py"
WMT_PRESETS="$WMT_REPO/addrop_fairseq/config/wmt16"

wmt16_usage() {
    cat <<EOF
usage: $(basename "$0") [options] [-- extra fairseq-train flags or hydra overrides for both runs]

Trains a transformer on WMT16 $WMT_SRC-$WMT_TGT twice (baseline and AD-DROP, same preset and
seed) with fairseq-hydra-train and prints a sacrebleu table (BLEU with signature, chrF, length
ratio), also written to OUT/eval/results.{json,md}. Steps whose output exists are skipped (a
crashed run resumes).

data
  --out DIR             output folder (default: runs/wmt16_${WMT_SRC}_${WMT_TGT}, or ..._smoke)
  --local DIR           offline: DIR holds {train,valid,test}.{$WMT_SRC,$WMT_TGT}, plain text,
                        one sentence per line. Without it: training corpora are downloaded
                        ($WMT_CORPORA_TEXT), valid = sacrebleu -t wmt16/dev, test = -t wmt16.
  --train-lines N       use the first N training pairs (0 = all; --smoke: 20000)
  --vocab-size N        joint sentencepiece vocabulary (default $WMT_VOCAB; --smoke 1000)
size (fairseq settings: the preset; these options override it)
  --preset NAME|FILE    the fairseq hydra config: a .yaml file or a NAME in addrop_fairseq/config/wmt16:
                        $(cd "$WMT_PRESETS" && echo *.yaml | sed 's/\.yaml//g')
                        (default ${WMT_SRC}_${WMT_TGT}; --smoke ${WMT_SRC}_${WMT_TGT}_smoke)
  --smoke               CPU size: the _smoke preset (1+1 layers, d=64, 2 epochs), small
                        vocabulary, one thread
  --arch NAME           model._name (the preset's: transformer_wmt_en_de; --smoke transformer)
  --model-args "..."    model flags on top of the preset's (e.g. "--encoder-layers 2 ...")
  --max-epoch N  --max-update N  --max-tokens N  --lr X  --warmup N  --dropout X  --seed N
  --no-eval-bleu        pick the best checkpoint by valid loss instead of in-training BLEU
AD-DROP
  --runs LIST           which runs, comma-separated (default baseline,addrop)
  --schedule S          the AD-DROP run's criterion.addrop_schedule (default cross)
  --addrop-args "..."   criterion flags given to BOTH runs, on top of the preset's
                        (--addrop-p 0.3 --addrop-q 0.3 --addrop-layers all --addrop-attribution ga)
  --baseline-criterion addrop|stock
                        baseline = addrop_ce with addrop_schedule never (default), or fairseq's
                        label_smoothed_cross_entropy
evaluation
  --beam N  --lenpen X  --checkpoint best|last
other
  --workers N           fairseq-preprocess workers (default: CPU count)
  --threads N           torch CPU threads (OMP_NUM_THREADS) for fairseq (default: 1 with
                        --smoke, where more threads only add overhead; else torch's default)
  --verbose             stream fairseq's output (default: only to OUT/logs/*.log)
After --: fairseq-train flags (--update-freq 4, --fp16), turned into hydra overrides by
python -m addrop_fairseq.config.overrides, or hydra overrides as they are (optimization.update_freq=[4]).
EOF
}

wmt_say() { echo "[wmt16 $WMT_SRC-$WMT_TGT] $*"; }
wmt_die() { echo "[wmt16 $WMT_SRC-$WMT_TGT] ERROR: $*" >&2; exit 2; }
wmt_skip() { wmt_say "skip $1: $2 exists"; }
wmt_begin() { WMT_T0=$SECONDS; wmt_say "step $1: $2"; }
wmt_end() { wmt_say "done $1 ($((SECONDS - WMT_T0)) s)"; }

# wmt_run LOG CMD...: run a command, output to LOG (and the terminal with --verbose); on
# failure show the end of the log and stop.
wmt_run() {
    local log=$1 rc=0
    shift
    mkdir -p "$(dirname "$log")"
    echo "  \$ $(printf '%q ' "$@")"
    echo "\$ $(printf '%q ' "$@")" >>"$log"
    if [ "$WMT_VERBOSE" = 1 ]; then
        "$@" 2>&1 | tee -a "$log" || rc=$?
    else
        "$@" >>"$log" 2>&1 || rc=$?
    fi
    if [ "$rc" != 0 ]; then
        echo "---- last lines of $log ----" >&2
        tail -n 40 "$log" >&2
        wmt_die "command failed (exit $rc); full log: $log"
    fi
}

wmt_helper() { "$WMT_PY" "$WMT_HELPER" "$@" || wmt_die "$1 failed (see the message above)"; }

# the fairseq console scripts when they belong to this Python, else python -m fairseq_cli.X
wmt_fairseq_cmd() {
    if [ -z "${PYTHON:-}" ] && command -v "fairseq-$1" >/dev/null 2>&1; then
        echo "fairseq-$1"
    else
        echo "$WMT_PY -m fairseq_cli.${1//-/_}"
    fi
}

# ------------------------------------------------------------------ options

# wmt_defaults: the option defaults of the size (--smoke or full)
wmt_defaults() {
    WMT_OUT="" WMT_LOCAL="" WMT_RUNS="baseline,addrop" WMT_SCHEDULE=cross WMT_BASELINE_CRIT=addrop
    WMT_SEED=1 WMT_LENPEN=1.0 WMT_CKPT=best WMT_THREADS="" WMT_VERBOSE=0
    WMT_WORKERS=$(nproc 2>/dev/null || echo 1)
    WMT_OPT_OVR=() WMT_FLAGS=() WMT_ADDROP_FLAGS=() WMT_EXTRA=()
    if [ "$WMT_SMOKE" = 1 ]; then
        WMT_PRESET=${WMT_SRC}_${WMT_TGT}_smoke WMT_TRAIN_LINES=20000 WMT_VOCAB_SIZE=1000 WMT_BEAM=2
    else
        WMT_PRESET=${WMT_SRC}_${WMT_TGT} WMT_TRAIN_LINES=0 WMT_VOCAB_SIZE=$WMT_VOCAB WMT_BEAM=5
    fi
}

# wmt_options "$@": parse the command line; fairseq settings become hydra overrides (WMT_OPT_OVR;
# ++key=value adds a key that a --preset FILE may not set) or flags for
# addrop_fairseq.config.overrides (WMT_FLAGS, WMT_ADDROP_FLAGS, WMT_EXTRA)
wmt_options() {
    local a
    WMT_SMOKE=0
    for a in "$@"; do
        [ "$a" = -- ] && break
        [ "$a" = --smoke ] && WMT_SMOKE=1
    done
    wmt_defaults
    while [ $# -gt 0 ]; do
        case $1 in
            --smoke | --verbose | --no-eval-bleu | -h | --help | --) ;;
            --*) [ $# -ge 2 ] || wmt_die "$1 needs a value" ;;
        esac
        case $1 in
            -h | --help) wmt16_usage; exit 0 ;;
            --smoke) ;;
            --out) WMT_OUT=$2; shift ;;
            --local) WMT_LOCAL=$2; shift ;;
            --train-lines) WMT_TRAIN_LINES=$2; shift ;;
            --vocab-size) WMT_VOCAB_SIZE=$2; shift ;;
            --preset) WMT_PRESET=$2; shift ;;
            --arch) WMT_OPT_OVR+=("model._name=$2"); shift ;;
            --model-args) read -r -a a <<<"$2"; WMT_FLAGS+=("${a[@]}"); shift ;;
            --max-epoch) WMT_OPT_OVR+=("optimization.max_epoch=$2"); shift ;;
            --max-update) WMT_OPT_OVR+=("optimization.max_update=$2"); shift ;;
            --max-tokens) WMT_OPT_OVR+=("dataset.max_tokens=$2"); shift ;;
            --lr) WMT_OPT_OVR+=("optimization.lr=[$2]"); shift ;;
            --warmup) WMT_OPT_OVR+=("++lr_scheduler.warmup_updates=$2"); shift ;;
            --dropout) WMT_OPT_OVR+=("++model.dropout=$2"); shift ;;
            --seed) WMT_SEED=$2; shift ;;
            --no-eval-bleu) WMT_OPT_OVR+=(++task.eval_bleu=false checkpoint.best_checkpoint_metric=loss
                checkpoint.maximize_best_checkpoint_metric=false) ;;
            --runs) WMT_RUNS=$2; shift ;;
            --schedule) WMT_SCHEDULE=$2; shift ;;
            --addrop-args) read -r -a a <<<"$2"; WMT_ADDROP_FLAGS+=("${a[@]}"); shift ;;
            --baseline-criterion) WMT_BASELINE_CRIT=$2; shift ;;
            --beam) WMT_BEAM=$2; shift ;;
            --lenpen) WMT_LENPEN=$2; shift ;;
            --checkpoint) WMT_CKPT=$2; shift ;;
            --workers) WMT_WORKERS=$2; shift ;;
            --threads) WMT_THREADS=$2; shift ;;
            --verbose) WMT_VERBOSE=1 ;;
            --) shift; WMT_EXTRA=("$@"); break ;;
            *) wmt16_usage >&2; wmt_die "unknown option: $1" ;;
        esac
        shift
    done
}

# wmt_check_options: values, the preset file, GPU, threads, output folders
wmt_check_options() {
    local run
    case $WMT_BASELINE_CRIT in addrop | stock) ;; *) wmt_die "--baseline-criterion: addrop or stock, not '$WMT_BASELINE_CRIT'" ;; esac
    case $WMT_CKPT in best | last) ;; *) wmt_die "--checkpoint: best or last, not '$WMT_CKPT'" ;; esac
    for run in ${WMT_RUNS//,/ }; do
        case $run in baseline | addrop) ;; *) wmt_die "--runs: baseline and/or addrop, not '$run'" ;; esac
    done
    if [[ $WMT_PRESET == *.yaml ]]; then
        WMT_PRESET_FILE=$(cd "$(dirname "$WMT_PRESET")" 2>/dev/null && pwd)/$(basename "$WMT_PRESET")
    else
        WMT_PRESET_FILE=$WMT_PRESETS/$WMT_PRESET.yaml
    fi
    [ -f "$WMT_PRESET_FILE" ] || wmt_die "--preset: no $WMT_PRESET_FILE"
    WMT_GPU=$("$WMT_PY" -c 'import torch; print(int(torch.cuda.is_available()))')
    [ -z "$WMT_THREADS" ] && [ "$WMT_SMOKE" = 1 ] && WMT_THREADS=1
    if [ -n "$WMT_THREADS" ]; then
        export OMP_NUM_THREADS=$WMT_THREADS MKL_NUM_THREADS=$WMT_THREADS
    fi
    [ -n "$WMT_OUT" ] || WMT_OUT="runs/wmt16_${WMT_SRC}_${WMT_TGT}$([ "$WMT_SMOKE" = 1 ] && echo _smoke)"
    mkdir -p "$WMT_OUT"
    WMT_OUT=$(cd "$WMT_OUT" && pwd)
    WMT_RAW=$WMT_OUT/data/raw WMT_NORM=$WMT_OUT/data/norm WMT_SPM=$WMT_OUT/data/spm
    WMT_BIN=$WMT_OUT/data-bin WMT_EVAL=$WMT_OUT/eval WMT_LOGS=$WMT_OUT/logs
}

# wmt_run_overrides RUN: the hydra overrides of one run, one per line; flags, extra items and a
# criterion switch go through addrop_fairseq.config.overrides (run only when there are any)
wmt_run_overrides() {
    local run=$1
    local -a items=(common.seed="$WMT_SEED" "${WMT_OPT_OVR[@]}" "${WMT_FLAGS[@]}")
    if [ "$run" = baseline ] && [ "$WMT_BASELINE_CRIT" = stock ]; then
        items+=(criterion._name=label_smoothed_cross_entropy)
    elif [ "$run" = baseline ]; then
        items+=("${WMT_ADDROP_FLAGS[@]}" ++criterion.addrop_schedule=never)
    else
        items+=("${WMT_ADDROP_FLAGS[@]}" ++criterion.addrop_schedule="$WMT_SCHEDULE")
    fi
    [ "$WMT_GPU" = 1 ] && items+=(common.fp16=true)
    items+=("${WMT_EXTRA[@]}")
    if [ ${#WMT_FLAGS[@]} != 0 ] || [ ${#WMT_ADDROP_FLAGS[@]} != 0 ] || [ ${#WMT_EXTRA[@]} != 0 ] ||
        [ "$run/$WMT_BASELINE_CRIT" = baseline/stock ]; then
        PYTHONPATH=$WMT_REPO${PYTHONPATH:+:$PYTHONPATH} \
            "$WMT_PY" -m addrop_fairseq.config.overrides "$WMT_PRESET_FILE" "${items[@]}" ||
            wmt_die "fairseq flags of $run (see the message above)"
    else
        printf '%s\n' "${items[@]}"
    fi
}

# ------------------------------------------------------------------ 1 data

wmt_get_data() {
    local split lang
    if [ -f "$WMT_RAW/.done" ]; then
        wmt_skip data "$WMT_RAW ($(cat "$WMT_RAW/SOURCE"))"
    elif [ -n "$WMT_LOCAL" ]; then
        wmt_begin 1/8 "data: checking --local $WMT_LOCAL"
        wmt_helper check "$WMT_LOCAL" "$WMT_SRC" "$WMT_TGT"
        rm -rf "$WMT_RAW" && mkdir -p "$WMT_RAW"
        for split in train valid test; do
            for lang in "$WMT_SRC" "$WMT_TGT"; do cp "$WMT_LOCAL/$split.$lang" "$WMT_RAW/$split.$lang"; done
        done
        echo "--local $(cd "$WMT_LOCAL" && pwd)" >"$WMT_RAW/SOURCE"
        touch "$WMT_RAW/.done"
        wmt_end data
    else
        wmt_download
    fi
}

# training corpora from their public sources (cached in OUT/downloads); dev = newsdev2016,
# test = newstest2016, through sacrebleu's test-set machinery
wmt_download() {
    local S=$WMT_SRC T=$WMT_TGT split lang side testset
    wmt_begin 1/8 "data: downloading WMT16 $S-$T ($WMT_CORPORA_TEXT; dev/test via sacrebleu)"
    mkdir -p "$WMT_RAW"
    wmt_helper download-train "$WMT_RAW" "$S" "$T" --cache "$WMT_OUT/downloads"
    for split in valid test; do
        testset=wmt16
        [ "$split" = valid ] && testset=wmt16/dev
        for side in src ref; do
            lang=$S
            [ "$side" = ref ] && lang=$T
            "$WMT_PY" -m sacrebleu -t "$testset" -l "$S-$T" --echo "$side" >"$WMT_RAW/$split.$lang.tmp" ||
                wmt_die "sacrebleu -t $testset -l $S-$T --echo $side failed (no internet? use --local DIR)"
        done
    done
    for split in valid test; do
        for lang in "$S" "$T"; do mv "$WMT_RAW/$split.$lang.tmp" "$WMT_RAW/$split.$lang"; done
    done
    wmt_helper check "$WMT_RAW" "$S" "$T"
    echo "download: WMT16 $WMT_CORPORA_TEXT; valid sacrebleu wmt16/dev; test sacrebleu wmt16" >"$WMT_RAW/SOURCE"
    touch "$WMT_RAW/.done"
    wmt_end data
}

# ------------------------------------------------------------------ 2 normalise

wmt_normalise() {
    local S=$WMT_SRC T=$WMT_TGT raw=$WMT_RAW norm=$WMT_NORM
    if [ -f "$norm/.done" ]; then
        wmt_skip normalise "$norm"
        return
    fi
    wmt_begin 2/8 "normalise training pairs and valid/test sources (never the references)"
    rm -rf "$norm" && mkdir -p "$norm"
    wmt_helper normalise "$S" "$raw/train.$S" "$norm/train.$S" --max-lines "$WMT_TRAIN_LINES"
    wmt_helper normalise "$T" "$raw/train.$T" "$norm/train.$T" --max-lines "$WMT_TRAIN_LINES"
    wmt_helper normalise "$S" "$raw/valid.$S" "$norm/valid.$S"
    wmt_helper normalise "$S" "$raw/test.$S" "$norm/test.$S"
    touch "$norm/.done"
    wmt_end normalise
}

# ------------------------------------------------------------------ 3 spm, 4 encode

wmt_spm() {
    if [ -f "$WMT_SPM/spm.model" ]; then
        wmt_skip spm "$WMT_SPM/spm.model"
        return
    fi
    wmt_begin 3/8 "sentencepiece: joint $WMT_SRC+$WMT_TGT unigram model, vocabulary $WMT_VOCAB_SIZE"
    wmt_helper spm-train "$WMT_SPM/spm" "$WMT_VOCAB_SIZE" "$WMT_NORM/train.$WMT_SRC" "$WMT_NORM/train.$WMT_TGT" --seed "$WMT_SEED"
    wmt_end spm
}

wmt_encode() {
    local S=$WMT_SRC T=$WMT_TGT f
    if [ -f "$WMT_SPM/.done" ]; then
        wmt_skip encode "$WMT_SPM"
        return
    fi
    wmt_begin 4/8 "encode train/valid/test with $WMT_SPM/spm.model"
    for f in "train.$S" "train.$T" "valid.$S" "test.$S"; do
        wmt_helper spm-encode "$WMT_SPM/spm.model" "$WMT_NORM/$f" "$WMT_SPM/$f"
    done
    # valid/test targets only feed validation loss and fairseq's binary test set; the scores
    # use the untouched references in OUT/data/raw
    for f in "valid.$T" "test.$T"; do
        wmt_helper spm-encode "$WMT_SPM/spm.model" "$WMT_RAW/$f" "$WMT_SPM/$f"
    done
    touch "$WMT_SPM/.done"
    wmt_end encode
}

# ------------------------------------------------------------------ 5 binarise

wmt_preprocess() {
    local -a prep
    if [ -f "$WMT_BIN/.done" ]; then
        wmt_skip binarise "$WMT_BIN"
        return
    fi
    wmt_begin 5/8 "fairseq-preprocess --joined-dictionary"
    rm -rf "$WMT_BIN"
    read -r -a prep <<<"$(wmt_fairseq_cmd preprocess)"
    wmt_run "$WMT_LOGS/preprocess.log" "${prep[@]}" --source-lang "$WMT_SRC" --target-lang "$WMT_TGT" \
        --trainpref "$WMT_SPM/train" --validpref "$WMT_SPM/valid" --testpref "$WMT_SPM/test" \
        --destdir "$WMT_BIN" --joined-dictionary --workers "$WMT_WORKERS"
    touch "$WMT_BIN/.done"
    wmt_end binarise
}

# ------------------------------------------------------------------ 6 train

# wmt_train RUN OVERRIDES: fairseq-hydra-train with the preset, the data, the plugin, the run's
# save dir and OVERRIDES (newline-separated); output to OUT/logs/train.RUN.log only
# (hydra/job_logging=stdout: no second copy in the save dir, whose .hydra/ keeps the config)
wmt_train() {
    local run=$1 ckdir=$WMT_OUT/checkpoints/$1
    local -a cmd ovr
    if [ -f "$ckdir/.done" ]; then
        wmt_skip "train $run" "$ckdir/.done"
        return
    fi
    read -r -a cmd <<<"$(wmt_fairseq_cmd hydra-train)"
    mapfile -t ovr <<<"$2"
    wmt_begin "6/8 ($run)" "fairseq-hydra-train $run, preset $(basename "$WMT_PRESET_FILE" .yaml)$([ -f "$ckdir/checkpoint_last.pt" ] && echo ', resuming from checkpoint_last.pt')$([ "$WMT_GPU" = 1 ] && echo ' (GPU, common.fp16=true)')"
    wmt_say "  log: $WMT_LOGS/train.$run.log"
    wmt_run "$WMT_LOGS/train.$run.log" "${cmd[@]}" --config-dir "$(dirname "$WMT_PRESET_FILE")" \
        --config-name "$(basename "$WMT_PRESET_FILE" .yaml)" task.data="$WMT_BIN" \
        common.user_dir="$WMT_REPO/addrop_fairseq" checkpoint.save_dir="$ckdir" hydra/job_logging=stdout \
        "${ovr[@]}"
    [ -f "$ckdir/checkpoint_$WMT_CKPT.pt" ] || wmt_die "no $ckdir/checkpoint_$WMT_CKPT.pt after training"
    touch "$ckdir/.done"
    wmt_end "train $run"
}

# ------------------------------------------------------------------ 7 generate

# stock fairseq-generate on plain fairseq transformers. --user-dir only so that torch's
# weights-only loading accepts fairseq's checkpoint (the plugin allowlists the config's
# argparse.Namespace and the metrics' numpy arrays; see addrop_fairseq/safe_loading.py);
# nothing of the plugin runs in generation. --required-batch-size-multiple 1: with the default
# 8, this fairseq's batch_by_size drops the last batch unless its size is a multiple of 8
wmt_generate() {
    local run=$1 hyp=$WMT_EVAL/$1.hyp.$WMT_TGT log=$WMT_LOGS/generate.$1.log
    local -a gen fp16=()
    if [ -f "$hyp" ]; then
        wmt_skip "generate $run" "$hyp"
        return
    fi
    mkdir -p "$WMT_EVAL" "$WMT_LOGS"
    [ "$WMT_GPU" = 1 ] && fp16=(--fp16)
    read -r -a gen <<<"$(wmt_fairseq_cmd generate)"
    gen+=("$WMT_BIN" --path "$WMT_OUT/checkpoints/$run/checkpoint_$WMT_CKPT.pt"
        --user-dir "$WMT_REPO/addrop_fairseq" --gen-subset test --source-lang "$WMT_SRC" --target-lang "$WMT_TGT"
        --beam "$WMT_BEAM" --lenpen "$WMT_LENPEN" --max-len-a 1.2 --max-len-b 10
        --remove-bpe sentencepiece --max-tokens 8000 --seed "$WMT_SEED" "${fp16[@]}"
        --required-batch-size-multiple 1)
    wmt_begin "7/8 ($run)" "fairseq-generate on test with checkpoint_$WMT_CKPT.pt"
    echo "  \$ $(printf '%q ' "${gen[@]}") > $WMT_EVAL/$run.generate.txt"
    "${gen[@]}" >"$WMT_EVAL/$run.generate.txt" 2>"$log" || {
        tail -n 40 "$log" >&2
        wmt_die "fairseq-generate failed; log: $log"
    }
    wmt_helper hyps "$WMT_EVAL/$run.generate.txt" "$hyp" --ref "$WMT_RAW/test.$WMT_TGT"
    wmt_end "generate $run"
}

# ------------------------------------------------------------------ 8 score

wmt_score() {
    local ref=$WMT_RAW/test.$WMT_TGT run
    local -a hyps=()
    if [ -f "$WMT_EVAL/results.json" ]; then
        wmt_skip score "$WMT_EVAL/results.json"
        cat "$WMT_EVAL/results.md"
        return
    fi
    for run in ${WMT_RUNS//,/ }; do hyps+=(--hyp "$run=$WMT_EVAL/$run.hyp.$WMT_TGT"); done
    wmt_begin 8/8 "sacrebleu against the untouched references $ref"
    wmt_helper score --ref "$ref" "${hyps[@]}" \
        --json "$WMT_EVAL/results.json" --md "$WMT_EVAL/results.md" \
        --title "WMT16 $WMT_SRC-$WMT_TGT test: $(head -c 200 "$WMT_RAW/SOURCE")" \
        --note "references: $ref (untouched; no normalisation)" \
        --note "checkpoints: checkpoint_$WMT_CKPT.pt, beam $WMT_BEAM, lenpen $WMT_LENPEN; seed $WMT_SEED"
    wmt_end score
}

# ------------------------------------------------------------------ main

wmt16_main() {
    WMT_SRC=$1 WMT_TGT=$2
    shift 2
    set -euo pipefail
    WMT_PY=${PYTHON:-python3}
    : "${WMT_VOCAB:=32000}" "${WMT_CORPORA_TEXT:=see addrop_fairseq/mt/wmt16.py}"
    wmt_options "$@"
    wmt_check_options
    local run
    declare -A ovr
    for run in ${WMT_RUNS//,/ }; do  # before any step, so that a bad flag stops at once
        ovr[$run]=$(wmt_run_overrides "$run")
    done
    wmt_say "output: $WMT_OUT (preset $WMT_PRESET_FILE; runs: $WMT_RUNS)"
    wmt_get_data
    wmt_normalise
    wmt_spm
    wmt_encode
    wmt_preprocess
    for run in ${WMT_RUNS//,/ }; do wmt_train "$run" "${ovr[$run]}"; done
    for run in ${WMT_RUNS//,/ }; do wmt_generate "$run"; done
    wmt_score
    wmt_say "table: $WMT_EVAL/results.md and results.json"
}
