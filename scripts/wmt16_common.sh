# shellcheck shell=bash
# The WMT16 pipeline shared by scripts/wmt16_en_ro.sh and scripts/wmt16_tr_en.sh: those set
# the language pair and its defaults, source this file, and call
#     wmt16_main SRC TGT "$@"
# Steps (each is skipped, saying so, when its output exists; delete the output to redo it):
#   1 data       --local DIR checked and copied, or downloaded     OUT/data/raw/
#   2 normalise  NFC, whitespace, Romanian cedilla -> comma-below   OUT/data/norm/
#                (training pairs and test/valid *sources* only; references never)
#   3 spm        joint sentencepiece model on the normalised train   OUT/data/spm/spm.model
#   4 encode     pieces for train/valid/test                         OUT/data/spm/
#   5 binarise   fairseq-preprocess --joined-dictionary              OUT/data-bin/
#   6 train      baseline and AD-DROP, same seed and flags           OUT/checkpoints/RUN/
#   7 generate   fairseq-generate (--user-dir: safe loading only)    OUT/eval/RUN.hyp.TGT
#   8 score      sacrebleu BLEU/chrF/length ratio vs the untouched   OUT/eval/results.{json,md}
#                references in OUT/data/raw/test.TGT

WMT_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WMT_HELPER="$WMT_REPO/addrop_fairseq/mt/wmt16.py"

wmt16_usage() {
    cat <<EOF
usage: $(basename "$0") [options] [-- extra fairseq-train flags for both runs]

Trains a transformer on WMT16 $WMT_SRC-$WMT_TGT twice (baseline and AD-DROP, same seed and
flags) and prints a sacrebleu table (BLEU with signature, chrF, length ratio), also written to
OUT/eval/results.{json,md}. Steps whose output exists are skipped (a crashed run resumes).

data
  --out DIR             output folder (default: runs/wmt16_${WMT_SRC}_${WMT_TGT}, or ..._smoke)
  --local DIR           offline: DIR holds {train,valid,test}.{$WMT_SRC,$WMT_TGT}, plain text,
                        one sentence per line. Without it: training corpora are downloaded
                        ($WMT_CORPORA_TEXT), valid = sacrebleu -t wmt16/dev, test = -t wmt16.
  --train-lines N       use the first N training pairs (0 = all; --smoke: 20000)
  --vocab-size N        joint sentencepiece vocabulary (default $WMT_VOCAB; --smoke 1000)
size
  --smoke               CPU size: 1+1 layers, d=64, 2 epochs, small vocabulary, one thread,
                        no data-loader process
  --arch NAME           fairseq architecture (default transformer_wmt_en_de; --smoke transformer)
  --model-args "..."    size flags replacing the preset (e.g. "--encoder-layers 2 ...")
  --max-epoch N  --max-update N  --max-tokens N  --lr X  --warmup N  --dropout X  --seed N
  --no-eval-bleu        pick the best checkpoint by valid loss instead of in-training BLEU
AD-DROP
  --runs LIST           which runs, comma-separated (default baseline,addrop)
  --schedule S          the AD-DROP run's --addrop-schedule (default cross)
  --addrop-args "..."   criterion flags given to BOTH runs (default:
                        "$WMT_ADDROP_ARGS_DEFAULT")
  --baseline-criterion addrop|stock
                        baseline = addrop_ce --addrop-schedule never (default), or fairseq's
                        label_smoothed_cross_entropy
evaluation
  --beam N  --lenpen X  --checkpoint best|last
other
  --workers N           fairseq-preprocess workers (default: CPU count)
  --threads N           torch CPU threads (OMP_NUM_THREADS) for fairseq (default: 1 with
                        --smoke, where more threads only add overhead; else torch's default)
  --verbose             stream fairseq's output (default: only to OUT/logs/*.log)
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
        echo "$WMT_PY -m fairseq_cli.$1"
    fi
}

wmt16_main() {
    WMT_SRC=$1 WMT_TGT=$2
    shift 2
    set -euo pipefail
    WMT_PY=${PYTHON:-python3}
    : "${WMT_VOCAB:=32000}" "${WMT_CORPORA_TEXT:=see addrop_fairseq/mt/wmt16.py}"
    WMT_ADDROP_ARGS_DEFAULT="--addrop-p 0.3 --addrop-q 0.3 --addrop-layers all --addrop-attribution ga"

    # ------------------------------------------------------------------ options
    local smoke=0 a
    for a in "$@"; do
        [ "$a" = -- ] && break
        [ "$a" = --smoke ] && smoke=1
    done
    local out="" local_dir="" runs="baseline,addrop" schedule=cross baseline_crit=addrop
    local addrop_args=$WMT_ADDROP_ARGS_DEFAULT seed=1 beam=5 lenpen=1.0 which_ckpt=best
    local eval_bleu=1 workers threads=""
    workers=$(nproc 2>/dev/null || echo 1)
    WMT_VERBOSE=0
    local arch train_lines vocab max_epoch max_update=0 max_tokens lr warmup dropout model_args
    local log_interval loader_args
    if [ "$smoke" = 1 ]; then
        arch=transformer
        model_args="--encoder-layers 1 --decoder-layers 1 --encoder-embed-dim 64 --decoder-embed-dim 64 --encoder-ffn-embed-dim 128 --decoder-ffn-embed-dim 128 --encoder-attention-heads 4 --decoder-attention-heads 4"
        train_lines=20000 vocab=1000 max_epoch=2 max_tokens=2048 lr=0.001 warmup=50 dropout=0.1
        beam=2 log_interval=10 loader_args="--num-workers 0"
    else
        arch=transformer_wmt_en_de model_args=""
        train_lines=0 vocab=$WMT_VOCAB max_epoch=20 max_tokens=4096 lr=0.0005 warmup=4000
        dropout=0.3 log_interval=100 loader_args=""
    fi
    local -a extra=()
    while [ $# -gt 0 ]; do
        case $1 in
            --smoke | --verbose | --no-eval-bleu | -h | --help | --) ;;
            --*) [ $# -ge 2 ] || wmt_die "$1 needs a value" ;;
        esac
        case $1 in
            -h | --help) wmt16_usage; exit 0 ;;
            --smoke) ;;
            --out) out=$2; shift ;;
            --local) local_dir=$2; shift ;;
            --train-lines) train_lines=$2; shift ;;
            --vocab-size) vocab=$2; shift ;;
            --arch) arch=$2; shift ;;
            --model-args) model_args=$2; shift ;;
            --max-epoch) max_epoch=$2; shift ;;
            --max-update) max_update=$2; shift ;;
            --max-tokens) max_tokens=$2; shift ;;
            --lr) lr=$2; shift ;;
            --warmup) warmup=$2; shift ;;
            --dropout) dropout=$2; shift ;;
            --seed) seed=$2; shift ;;
            --no-eval-bleu) eval_bleu=0 ;;
            --runs) runs=$2; shift ;;
            --schedule) schedule=$2; shift ;;
            --addrop-args) addrop_args=$2; shift ;;
            --baseline-criterion) baseline_crit=$2; shift ;;
            --beam) beam=$2; shift ;;
            --lenpen) lenpen=$2; shift ;;
            --checkpoint) which_ckpt=$2; shift ;;
            --workers) workers=$2; shift ;;
            --threads) threads=$2; shift ;;
            --verbose) WMT_VERBOSE=1 ;;
            --) shift; extra=("$@"); break ;;
            *) wmt16_usage >&2; wmt_die "unknown option: $1" ;;
        esac
        shift
    done
    case $baseline_crit in addrop | stock) ;; *) wmt_die "--baseline-criterion: addrop or stock, not '$baseline_crit'" ;; esac
    case $which_ckpt in best | last) ;; *) wmt_die "--checkpoint: best or last, not '$which_ckpt'" ;; esac
    local run
    for run in ${runs//,/ }; do
        case $run in baseline | addrop) ;; *) wmt_die "--runs: baseline and/or addrop, not '$run'" ;; esac
    done
    [ -z "$threads" ] && [ "$smoke" = 1 ] && threads=1
    if [ -n "$threads" ]; then
        export OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads
    fi
    [ -n "$out" ] || out="runs/wmt16_${WMT_SRC}_${WMT_TGT}$([ "$smoke" = 1 ] && echo _smoke)"
    mkdir -p "$out"
    out=$(cd "$out" && pwd)
    local S=$WMT_SRC T=$WMT_TGT
    local raw=$out/data/raw norm=$out/data/norm spmdir=$out/data/spm bin=$out/data-bin
    local evaldir=$out/eval logs=$out/logs
    local -a model_args_a addrop_args_a
    read -r -a model_args_a <<<"$model_args"
    read -r -a addrop_args_a <<<"$addrop_args"
    wmt_say "output: $out ($([ "$smoke" = 1 ] && echo smoke || echo full) size; runs: $runs)"

    # ------------------------------------------------------------------ 1 data
    local split lang
    if [ -f "$raw/.done" ]; then
        wmt_skip data "$raw ($(cat "$raw/SOURCE"))"
    elif [ -n "$local_dir" ]; then
        wmt_begin 1/8 "data: checking --local $local_dir"
        wmt_helper check "$local_dir" "$S" "$T"
        rm -rf "$raw" && mkdir -p "$raw"
        for split in train valid test; do
            for lang in "$S" "$T"; do cp "$local_dir/$split.$lang" "$raw/$split.$lang"; done
        done
        echo "--local $(cd "$local_dir" && pwd)" >"$raw/SOURCE"
        touch "$raw/.done"
        wmt_end data
    else
        wmt_begin 1/8 "data: downloading WMT16 $S-$T ($WMT_CORPORA_TEXT; dev/test via sacrebleu)"
        mkdir -p "$raw"
        # training corpora from their public sources (cached in $out/downloads)
        wmt_helper download-train "$raw" "$S" "$T" --cache "$out/downloads"
        # dev = newsdev2016, test = newstest2016, through sacrebleu's test-set machinery
        local testset side
        for split in valid test; do
            testset=wmt16
            [ "$split" = valid ] && testset=wmt16/dev
            for side in src ref; do
                lang=$S
                [ "$side" = ref ] && lang=$T
                "$WMT_PY" -m sacrebleu -t "$testset" -l "$S-$T" --echo "$side" >"$raw/$split.$lang.tmp" ||
                    wmt_die "sacrebleu -t $testset -l $S-$T --echo $side failed (no internet? use --local DIR)"
            done
        done
        for split in valid test; do
            for lang in "$S" "$T"; do mv "$raw/$split.$lang.tmp" "$raw/$split.$lang"; done
        done
        wmt_helper check "$raw" "$S" "$T"
        echo "download: WMT16 $WMT_CORPORA_TEXT; valid sacrebleu wmt16/dev; test sacrebleu wmt16" >"$raw/SOURCE"
        touch "$raw/.done"
        wmt_end data
    fi

    # ------------------------------------------------------------------ 2 normalise
    if [ -f "$norm/.done" ]; then
        wmt_skip normalise "$norm"
    else
        wmt_begin 2/8 "normalise training pairs and valid/test sources (never the references)"
        rm -rf "$norm" && mkdir -p "$norm"
        wmt_helper normalise "$S" "$raw/train.$S" "$norm/train.$S" --max-lines "$train_lines"
        wmt_helper normalise "$T" "$raw/train.$T" "$norm/train.$T" --max-lines "$train_lines"
        wmt_helper normalise "$S" "$raw/valid.$S" "$norm/valid.$S"
        wmt_helper normalise "$S" "$raw/test.$S" "$norm/test.$S"
        touch "$norm/.done"
        wmt_end normalise
    fi

    # ------------------------------------------------------------------ 3 spm
    if [ -f "$spmdir/spm.model" ]; then
        wmt_skip spm "$spmdir/spm.model"
    else
        wmt_begin 3/8 "sentencepiece: joint $S+$T unigram model, vocabulary $vocab"
        wmt_helper spm-train "$spmdir/spm" "$vocab" "$norm/train.$S" "$norm/train.$T" --seed "$seed"
        wmt_end spm
    fi

    # ------------------------------------------------------------------ 4 encode
    if [ -f "$spmdir/.done" ]; then
        wmt_skip encode "$spmdir"
    else
        wmt_begin 4/8 "encode train/valid/test with $spmdir/spm.model"
        local f
        for f in "train.$S" "train.$T" "valid.$S" "test.$S"; do
            wmt_helper spm-encode "$spmdir/spm.model" "$norm/$f" "$spmdir/$f"
        done
        # valid/test targets only feed validation loss and fairseq's binary test set; the
        # scores use the untouched references in $raw
        for f in "valid.$T" "test.$T"; do
            wmt_helper spm-encode "$spmdir/spm.model" "$raw/$f" "$spmdir/$f"
        done
        touch "$spmdir/.done"
        wmt_end encode
    fi

    # ------------------------------------------------------------------ 5 binarise
    if [ -f "$bin/.done" ]; then
        wmt_skip binarise "$bin"
    else
        wmt_begin 5/8 "fairseq-preprocess --joined-dictionary"
        rm -rf "$bin"
        local -a prep
        read -r -a prep <<<"$(wmt_fairseq_cmd preprocess)"
        wmt_run "$logs/preprocess.log" "${prep[@]}" --source-lang "$S" --target-lang "$T" \
            --trainpref "$spmdir/train" --validpref "$spmdir/valid" --testpref "$spmdir/test" \
            --destdir "$bin" --joined-dictionary --workers "$workers"
        touch "$bin/.done"
        wmt_end binarise
    fi

    # ------------------------------------------------------------------ 6 train
    # --required-batch-size-multiple 1 (train and generate): with the default 8, this fairseq's
    # data_utils.batch_by_size drops the last batch when its size is not a multiple of 8, so
    # fairseq-generate silently skipped test sentences (and validation lost some too)
    local gpu
    gpu=$("$WMT_PY" -c 'import torch; print(int(torch.cuda.is_available()))')
    local -a gpu_flags=()
    [ "$gpu" = 1 ] && gpu_flags=(--fp16)
    local -a train_cmd common
    read -r -a train_cmd <<<"$(wmt_fairseq_cmd train)"
    common=(
        "$bin" --source-lang "$S" --target-lang "$T" --user-dir "$WMT_REPO/addrop_fairseq"
        --arch "$arch" "${model_args_a[@]}" --share-all-embeddings
        --optimizer adam --adam-betas "(0.9, 0.98)" --clip-norm 0.0
        --lr "$lr" --lr-scheduler inverse_sqrt --warmup-updates "$warmup" --warmup-init-lr 1e-07
        --dropout "$dropout" --weight-decay 0.0001
        --max-tokens "$max_tokens" --max-epoch "$max_epoch" --seed "$seed"
        --no-epoch-checkpoints --log-format simple --log-interval "$log_interval"
        --required-batch-size-multiple 1
    )
    # --smoke: batches are loaded in the training process (a loader process costs ~15% CPU
    # time on 2 cores for tiny models)
    [ -n "$loader_args" ] && common+=($loader_args)
    [ "$max_update" != 0 ] && common+=(--max-update "$max_update")
    if [ "$eval_bleu" = 1 ]; then
        common+=(--eval-bleu --eval-bleu-args '{"beam": 4, "max_len_a": 1.2, "max_len_b": 10}'
            --eval-bleu-remove-bpe sentencepiece
            --best-checkpoint-metric bleu --maximize-best-checkpoint-metric)
    fi
    for run in ${runs//,/ }; do
        local ckdir=$out/checkpoints/$run
        if [ -f "$ckdir/.done" ]; then
            wmt_skip "train $run" "$ckdir/.done"
            continue
        fi
        local -a crit
        if [ "$run" = baseline ] && [ "$baseline_crit" = stock ]; then
            crit=(--criterion label_smoothed_cross_entropy --label-smoothing 0.1)
        elif [ "$run" = baseline ]; then
            crit=(--criterion addrop_ce --label-smoothing 0.1 "${addrop_args_a[@]}" --addrop-schedule never)
        else
            crit=(--criterion addrop_ce --label-smoothing 0.1 "${addrop_args_a[@]}" --addrop-schedule "$schedule")
        fi
        wmt_begin "6/8 ($run)" "fairseq-train $run$([ -f "$ckdir/checkpoint_last.pt" ] && echo ', resuming from checkpoint_last.pt')$([ "$gpu" = 1 ] && echo ' (GPU, --fp16)')"
        wmt_say "  log: $logs/train.$run.log"
        wmt_run "$logs/train.$run.log" "${train_cmd[@]}" "${common[@]}" "${crit[@]}" \
            --save-dir "$ckdir" "${gpu_flags[@]}" "${extra[@]}"
        [ -f "$ckdir/checkpoint_$which_ckpt.pt" ] || wmt_die "no $ckdir/checkpoint_$which_ckpt.pt after training"
        touch "$ckdir/.done"
        wmt_end "train $run"
    done

    # ------------------------------------------------------------------ 7 generate
    # stock fairseq-generate on plain fairseq transformers. --user-dir only so that torch's
    # weights-only loading accepts fairseq's checkpoint (the plugin allowlists the config's
    # argparse.Namespace and the metrics' numpy arrays; see addrop_fairseq/safe_loading.py);
    # nothing of the plugin runs in generation
    local -a gen_cmd hyp_specs=()
    read -r -a gen_cmd <<<"$(wmt_fairseq_cmd generate)"
    mkdir -p "$evaldir"
    for run in ${runs//,/ }; do
        local hyp=$evaldir/$run.hyp.$T
        hyp_specs+=(--hyp "$run=$hyp")
        if [ -f "$hyp" ]; then
            wmt_skip "generate $run" "$hyp"
            continue
        fi
        wmt_begin "7/8 ($run)" "fairseq-generate on test with checkpoint_$which_ckpt.pt"
        local -a gen=("${gen_cmd[@]}" "$bin" --path "$out/checkpoints/$run/checkpoint_$which_ckpt.pt"
            --user-dir "$WMT_REPO/addrop_fairseq" --gen-subset test --source-lang "$S" --target-lang "$T"
            --beam "$beam" --lenpen "$lenpen" --max-len-a 1.2 --max-len-b 10
            --remove-bpe sentencepiece --max-tokens 8000 --seed "$seed" "${gpu_flags[@]}"
            --required-batch-size-multiple 1)
        echo "  \$ $(printf '%q ' "${gen[@]}") > $evaldir/$run.generate.txt"
        "${gen[@]}" >"$evaldir/$run.generate.txt" 2>"$logs/generate.$run.log" || {
            tail -n 40 "$logs/generate.$run.log" >&2
            wmt_die "fairseq-generate failed; log: $logs/generate.$run.log"
        }
        wmt_helper hyps "$evaldir/$run.generate.txt" "$hyp" --ref "$raw/test.$T"
        wmt_end "generate $run"
    done

    # ------------------------------------------------------------------ 8 score
    local title="WMT16 $S-$T test: $(head -c 200 "$raw/SOURCE")"
    if [ -f "$evaldir/results.json" ]; then
        wmt_skip score "$evaldir/results.json"
        cat "$evaldir/results.md"
    else
        wmt_begin 8/8 "sacrebleu against the untouched references $raw/test.$T"
        wmt_helper score --ref "$raw/test.$T" "${hyp_specs[@]}" \
            --json "$evaldir/results.json" --md "$evaldir/results.md" --title "$title" \
            --note "references: $raw/test.$T (untouched; no normalisation)" \
            --note "checkpoints: checkpoint_$which_ckpt.pt, beam $beam, lenpen $lenpen; seed $seed"
        wmt_end score
    fi
    wmt_say "table: $evaldir/results.md and results.json"
}
