#!/usr/bin/env bash
# Every study in the order the issues ask for, two single-threaded jobs at a time; each run
# whose JSON exists is skipped, so this resumes wherever it stopped (another day, another
# machine). The cost study times steps and runs alone (--jobs 1). Regenerate the report after:
#   python experiments/report.py
#
#   nohup bash experiments/all.sh > experiments/work/all.log 2>&1 &
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
RUN="python experiments/run.py"
$RUN tune --tasks rte,mrpc,cola,stsb,sst2 --jobs 2
$RUN cost --jobs 1
$RUN prior --seeds 1,2,3 --jobs 2
python experiments/prior_mechanism.py   # why "high" collapses: its masks on a trained model
$RUN glue --tasks mrpc,sst2,cola,stsb,rte --seeds 1,2,3 --jobs 2
$RUN epochs --seeds 1,2,3 --jobs 2   # FT and AD-DROP trained 10 epochs (SST-2, CoLA)
$RUN epochs_confirm --jobs 2         # SST-2 at 10 epochs again, on fresh seeds 4-8
# issue 11 (sensitivity first: its p, q map says where AD-DROP can help MiniLM at all), then 12
$RUN sensitivity --jobs 2
$RUN confirm --jobs 2          # the best cell (seed 1) against FT on fresh seeds 4-8
$RUN ablation --seeds 1,2,3 --jobs 2
$RUN tune --tasks ner,ner_scratch,wmt_en_ro,wmt_tr_en --jobs 2
$RUN ner --seeds 1,2,3 --jobs 2
$RUN mt --seeds 1,2,3 --jobs 2
$RUN regularizers --tasks mrpc,sst2,cola,stsb,rte --seeds 1,2,3 --jobs 2
$RUN regularizers --tasks ner --seeds 1,2,3 --jobs 2   # the same peers in the ner table (MiniLM)
echo "all studies done; now: python experiments/report.py"
