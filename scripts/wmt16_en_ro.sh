#!/usr/bin/env bash
# WMT16 English -> Romanian, baseline vs AD-DROP, scored with sacrebleu (options: --help).
#   bash scripts/wmt16_en_ro.sh --out runs/en_ro                      # downloads Europarl v8 +
#                                                                      # SETIMES2, newsdev/newstest2016
#   bash scripts/wmt16_en_ro.sh --local DIR --out runs/x [--smoke]    # offline: DIR/{train,valid,test}.{en,ro}
# Romanian training text is normalised to comma-below s/t (the references are not touched):
# see docs/translation.md.
# fairseq settings: the preset addrop_fairseq/config/wmt16/en_ro.yaml (en_ro_smoke.yaml with --smoke),
# trained with fairseq-hydra-train; --preset NAME|FILE picks another.
set -euo pipefail
WMT_VOCAB=32000
WMT_CORPORA_TEXT="Europarl v8 + SETIMES2"
# shellcheck source=scripts/wmt16_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/wmt16_common.sh"
wmt16_main en ro "$@"
