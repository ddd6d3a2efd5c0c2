#!/usr/bin/env bash
# WMT16 Turkish -> English, baseline vs AD-DROP, scored with sacrebleu (options: --help).
#   bash scripts/wmt16_tr_en.sh --out runs/tr_en                      # downloads SETIMES2,
#                                                                      # newsdev/newstest2016
#   bash scripts/wmt16_tr_en.sh --local DIR --out runs/x [--smoke]    # offline: DIR/{train,valid,test}.{tr,en}
# fairseq settings: the preset addrop_fairseq/config/wmt16/tr_en.yaml (tr_en_smoke.yaml with --smoke),
# trained with fairseq-hydra-train; --preset NAME|FILE picks another.
set -euo pipefail
WMT_VOCAB=16000
WMT_CORPORA_TEXT="SETIMES2"
# shellcheck source=scripts/wmt16_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/wmt16_common.sh"
wmt16_main tr en "$@"
