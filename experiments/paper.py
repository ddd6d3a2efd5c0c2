"""The paper's own figures that our verdicts stand beside (AD-DROP, NeurIPS 2022), each with the
table, model and number of seeds it comes from. Pure data."""
from dataclasses import dataclass
from typing import Dict, Optional


@dataclass(frozen=True)
class PaperGain:
    """AD-DROP's gain over plain fine-tuning as the paper reports it for one task."""

    ft: float  # the paper's FT score
    addrop: float  # the paper's AD-DROP score
    source: str  # "Table 3, BERT-base, mean of 5 seeds"
    metric: str  # the paper's metric for the task (MRPC and RTE: accuracy)
    key: str  # the same metric as our runs name it (fairseq's valid_KEY, or the test block's)

    @property
    def gain(self) -> float:
        return round(self.addrop - self.ft, 2)

    def label(self) -> str:
        return f"the paper's {self.gain:+g} {self.metric} ({self.source}: FT {self.ft:g} -> {self.addrop:g})"


_T3 = "Table 3, BERT-base, mean of 5 seeds"
_T3R = "Table 3, RoBERTa-base, mean of 5 seeds"
# BERT-base stands beside our GLUE verdicts (MiniLM is a BERT); RoBERTa-base is kept for reference.
PAPER: Dict[str, PaperGain] = {
    "cola": PaperGain(61.8, 63.4, _T3, "MCC", "mcc"),
    "stsb": PaperGain(89.4, 90.1, _T3, "Pearson", "pearson"),
    "mrpc": PaperGain(85.2, 87.4, _T3, "accuracy", "accuracy"),
    "rte": PaperGain(71.2, 73.9, _T3, "accuracy", "accuracy"),
    "hans": PaperGain(69.83, 70.49, "Table 6, RoBERTa-base, one run", "accuracy", "accuracy"),
    "paws": PaperGain(47.90, 51.25, "Table 6, RoBERTa-base, PAWS-X, one run", "accuracy", "accuracy"),
    "ner": PaperGain(91.23, 91.77, "Table 8, ELECTRA-base, test set, one run", "entity F1", "f1"),
    "wmt_en_ro": PaperGain(26.11, 26.43, "Table 9, OPUS-MT, test set, one run", "BLEU", "bleu"),
    "wmt_tr_en": PaperGain(23.88, 23.96, "Table 9, OPUS-MT, test set, one run", "BLEU", "bleu"),
}
PAPER_ROBERTA: Dict[str, PaperGain] = {
    "cola": PaperGain(64.3, 66.4, _T3R, "MCC", "mcc"),
    "stsb": PaperGain(91.0, 91.2, _T3R, "Pearson", "pearson"),
    "mrpc": PaperGain(89.8, 91.3, _T3R, "accuracy", "accuracy"),
    "rte": PaperGain(79.1, 82.5, _T3R, "accuracy", "accuracy"),
}


def paper_gain(task: str) -> Optional[PaperGain]:
    return PAPER.get(task)
