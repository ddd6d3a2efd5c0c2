"""Per task kind: the loss fairseq would use, and the attribution target of a forward pass.

The kind is what the criterion can handle:

* ``token``: translation (and any task whose class says ``addrop_task_kind = "token"``,
  e.g. ``sequence_tagging``); loss = fairseq's label-smoothed cross-entropy;
* ``classification`` / ``regression``: ``sentence_prediction``; loss = fairseq's
  sentence_prediction criterion.
"""
from typing import Optional, Tuple

from torch import Tensor

from fairseq.criterions.label_smoothed_cross_entropy import LabelSmoothedCrossEntropyCriterion
from fairseq.criterions.sentence_prediction import (
    SentencePredictionConfig,
    SentencePredictionCriterion,
)
from fairseq.tasks.sentence_prediction import SentencePredictionTask
from fairseq.tasks.translation import TranslationTask

from . import attribution

KINDS = ("token", "classification", "regression")


def task_kind(task) -> str:
    declared = getattr(task, "addrop_task_kind", None)
    if declared is not None:
        if declared not in KINDS:
            raise ValueError(f"{type(task).__name__}.addrop_task_kind must be one of {KINDS}")
        return declared
    if isinstance(task, SentencePredictionTask):
        return "regression" if task.cfg.regression_target else "classification"
    if isinstance(task, TranslationTask):
        return "token"
    raise ValueError(
        f"--criterion addrop_ce cannot handle task {type(task).__name__}: it supports "
        "translation, sentence_prediction and sequence_tagging (or a task class with "
        "addrop_task_kind = 'token' | 'classification' | 'regression')"
    )


class TokenOutputs:
    """Translation / tagging: per-position log-probabilities, pad positions excluded."""

    def __init__(self, task, cfg):
        self.loss = LabelSmoothedCrossEntropyCriterion(
            task,
            cfg.sentence_avg,
            cfg.label_smoothing,
            ignore_prefix_size=cfg.ignore_prefix_size,
            report_accuracy=cfg.report_accuracy,
        )
        self.ignore_prefix_size = cfg.ignore_prefix_size
        self.pad = self.loss.padding_idx
        # classes prediction never outputs, declared by the task (sequence_tagging: the tag
        # dictionary's specials); translation keeps the full vocabulary, as the reference code
        self.excluded = list(getattr(task, "addrop_unpredictable_labels", ()))

    def pseudo_labels(self, lprobs: Tensor) -> Tensor:
        return attribution.pseudo_labels(lprobs, self.excluded)

    def scores(self, model, sample) -> Tuple[Tensor, Tensor, Tensor]:
        """(log-probs [B, T, V], gold [B, T], real positions [B, T])."""
        net_output = model(**sample["net_input"])
        lprobs = model.get_normalized_probs(net_output, log_probs=True)
        gold = model.get_targets(sample, net_output)
        if self.ignore_prefix_size > 0:
            lprobs = lprobs[:, self.ignore_prefix_size :, :]
            gold = gold[:, self.ignore_prefix_size :]
        return lprobs, gold, gold.ne(self.pad)

    def target(self, lprobs: Tensor, labels: Tensor, real: Tensor, gold: Tensor) -> Tensor:
        return attribution.token_target(lprobs, labels.masked_fill(~real, 0), real)


class SentenceOutputs:
    """sentence_prediction: one logit vector (or one regression value) per example."""

    def __init__(self, task, cfg, regression: bool):
        self.loss = SentencePredictionCriterion(
            SentencePredictionConfig(
                classification_head_name=cfg.classification_head_name,
                regression_target=regression,
            ),
            task,
        )
        self.head = cfg.classification_head_name
        self.regression = regression

    def pseudo_labels(self, logits: Tensor) -> Tensor:
        return attribution.pseudo_labels(logits)

    def scores(self, model, sample) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
        logits, _ = model(
            **sample["net_input"], features_only=True, classification_head_name=self.head
        )
        gold = model.get_targets(sample, [logits]).view(-1)
        return logits, gold, None

    def target(self, logits: Tensor, labels: Tensor, real, gold: Tensor) -> Tensor:
        if self.regression:
            return attribution.regression_target(logits, gold)
        return attribution.classification_target(logits, labels)


def build_outputs(task, cfg):
    kind = task_kind(task)
    if kind == "token":
        return kind, TokenOutputs(task, cfg)
    return kind, SentenceOutputs(task, cfg, regression=(kind == "regression"))


def reduce_metrics(logging_outputs) -> None:
    """The stock criterion's metrics: label-smoothed CE logs nll_loss, sentence_prediction not."""
    if any("nll_loss" in log for log in logging_outputs):
        LabelSmoothedCrossEntropyCriterion.reduce_metrics(logging_outputs)
    else:
        SentencePredictionCriterion.reduce_metrics(logging_outputs)


__all__ = ["task_kind", "build_outputs", "reduce_metrics", "TokenOutputs", "SentenceOutputs"]
