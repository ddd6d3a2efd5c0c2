"""Study ``ner`` (with the ``regularizers`` rows and ``smoke`` runs on tagging tasks): CoNLL-2003."""
from dataclasses import dataclass, field
from typing import List, Optional

import studies

from ..common import Comparison, Section, comparison, regularizer_settings, regularizer_verdicts, sizes_line
from ..load import Data

STUDIES = ("ner", "regularizers", "smoke")


@dataclass
class Ner(Section):
    comparison: Optional[Comparison] = None  # per (task, method): runs and paired Δ to FT
    regularizer_lines: List[str] = field(default_factory=list)  # AttendOut & co against AD-DROP


def build(data: Data, rel: str, done: dict) -> Ner:
    runs = data.study(*STUDIES, family="ner")
    out = Ner()
    if not runs:
        return out
    epochs = sorted({r["epochs_planned"] for r in runs})
    p, q = studies.NER_PQ
    out.comparison = comparison(runs, rel, "ner_paired_differences.png")
    out.regularizer_lines = regularizer_verdicts(runs, "ner")
    out.lines = (["## ner: CoNLL-2003 (seqeval entity F1 on the dev set)", "",
                  f"Train / dev sentences: {sizes_line(runs)}. {'/'.join(map(str, epochs))} epochs, batch "
                  f"{studies.BATCH} sentences; AD-DROP and RD with p = {p}, q = {q} (the paper gives none for CoNLL) on "
                  "all layers, pseudo-label loss as the attribution target (Eq. 8-10); R-Drop is fairseq's "
                  "`label_smoothed_cross_entropy_with_rdrop` (alpha 1). MiniLM is uncased; the tagger is trained "
                  "from scratch." + regularizer_settings(runs, "MiniLM, ", "sentences"), ""]
                 + out.comparison.lines + out.regularizer_lines)
    out.figures = [out.comparison.figure] if out.comparison.figure else []
    return out
