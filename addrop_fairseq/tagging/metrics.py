"""Entity-level counts whose sums give seqeval's exact micro P/R/F1.

seqeval's default (non-strict) mode scores the entities of ``get_entities`` over all
sentences; entities never cross a sentence boundary, so counting true positives,
predicted and gold entities per sentence and summing (across batches, across workers)
reproduces ``seqeval.metrics.{precision,recall,f1}_score`` exactly.
"""
from typing import Dict, Sequence

from seqeval.metrics.sequence_labeling import get_entities

COUNT_KEYS = ("ner_tp", "ner_pred", "ner_gold", "ner_correct", "ner_words")


def entity_counts(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> Dict[str, int]:
    """Counts over sentences of word-level tags (any mix of IOB1/IOB2, as seqeval reads them)."""
    counts = dict.fromkeys(COUNT_KEYS, 0)
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold sentences but {len(pred)} predicted")
    for g, p in zip(gold, pred):
        if len(g) != len(p):
            raise ValueError(f"sentence of {len(g)} gold tags has {len(p)} predicted tags")
        ge, pe = set(get_entities(list(g))), set(get_entities(list(p)))
        counts["ner_tp"] += len(ge & pe)
        counts["ner_pred"] += len(pe)
        counts["ner_gold"] += len(ge)
        counts["ner_correct"] += sum(a == b for a, b in zip(g, p))
        counts["ner_words"] += len(g)
    return counts


def prf(tp: float, n_pred: float, n_gold: float):
    """(precision, recall, f1) as fractions, 0 where undefined (seqeval's zero_division)."""
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_gold if n_gold else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f
