"""Per task kind: the loss fairseq would use, and the attribution target (Eq. 5, 8-10).

The kind is what the criterion can handle:

* ``token``: translation (and any task whose class says ``addrop_task_kind = "token"``,
  e.g. ``sequence_tagging``); loss = fairseq's label-smoothed cross-entropy;
* ``classification`` / ``regression``: ``sentence_prediction``; loss = fairseq's
  sentence_prediction criterion.

A kind object gives the criterion ``loss(model, sample)`` (the stock criterion: plain updates
and pass 2) and what the engine (:mod:`addrop_fairseq.engine`) asks of every task kind:
``predict``, ``labels``, ``target`` and ``query_valid``.
"""

import torch
from torch import Tensor

from fairseq.criterions.label_smoothed_cross_entropy import LabelSmoothedCrossEntropyCriterion
from fairseq.criterions.sentence_prediction import (
    SentencePredictionConfig,
    SentencePredictionCriterion,
)
from fairseq.tasks.sentence_prediction import SentencePredictionTask
from fairseq.tasks.translation import TranslationTask

from . import attribution
from .engine import Prediction

TASK_KINDS = ("token", "classification", "regression")


def task_kind(task) -> str:
    declared = getattr(task, "addrop_task_kind", None)
    if declared is not None:
        if declared not in TASK_KINDS:
            raise ValueError(f"{type(task).__name__}.addrop_task_kind must be one of {TASK_KINDS}")
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


class TokenKind:
    """Translation / tagging: per-position log-probabilities, pad positions excluded (Eq. 8-10)."""

    name = "token"

    def __init__(self, task, cfg):
        self.criterion = LabelSmoothedCrossEntropyCriterion(
            task,
            cfg.sentence_avg,
            cfg.label_smoothing,
            ignore_prefix_size=cfg.ignore_prefix_size,
            report_accuracy=cfg.report_accuracy,
        )
        self.ignore_prefix_size = cfg.ignore_prefix_size
        self.pad = self.criterion.padding_idx
        # classes prediction never outputs, declared by the task (sequence_tagging: the tag
        # dictionary's specials); translation keeps the full vocabulary, as the reference code
        self.excluded = list(getattr(task, "addrop_unpredictable_labels", ()))

    def loss(self, model, sample, reduce=True):
        return self.criterion(model, sample, reduce=reduce)

    def predict(self, model, sample) -> Prediction:
        net_output = model(**sample["net_input"])
        lprobs = model.get_normalized_probs(net_output, log_probs=True)
        gold = model.get_targets(sample, net_output)
        if self.ignore_prefix_size > 0:
            lprobs = lprobs[:, self.ignore_prefix_size :, :]
            gold = gold[:, self.ignore_prefix_size :]
        return Prediction(lprobs, gold, gold.ne(self.pad))

    def labels(self, prediction: Prediction, gold: bool = False) -> Tensor:
        if gold:
            return prediction.gold.masked_fill(~prediction.real, 0)
        return attribution.pseudo_labels(prediction.output, self.excluded)

    def target(self, prediction: Prediction, labels: Tensor) -> Tensor:
        return attribution.token_target(prediction.output, labels, prediction.real)

    def query_valid(self, sample, selected):
        """Per site, the real query rows it cannot see itself: encoder-decoder attention gets
        the decoder's padding from ``prev_output_tokens``; other sites None."""
        prev = sample["net_input"].get("prev_output_tokens")
        if prev is None or not any(s.kind == "encoder-decoder" for s in selected):
            return None
        real = prev.ne(self.pad)
        return [real if s.kind == "encoder-decoder" else None for s in selected]

    def example_losses(self, prediction: Prediction) -> Tensor:
        """[B]: each example's mean NLL over its real target positions (AttendOut's scores)."""
        nll = -prediction.output.gather(-1, prediction.gold.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        real = prediction.real.to(nll.dtype)
        return (nll * real).sum(-1) / real.sum(-1).clamp(min=1.0)


class ClassificationKind:
    """sentence_prediction with classes: one logit vector per example (Eq. 5)."""

    name = "classification"
    regression = False

    def __init__(self, task, cfg):
        self.criterion = SentencePredictionCriterion(
            SentencePredictionConfig(
                classification_head_name=cfg.classification_head_name,
                regression_target=self.regression,
                report_mcc=cfg.report_mcc,
                report_acc_and_f1=cfg.report_acc_and_f1,
                report_pearson_and_spearman=cfg.report_pearson_and_spearman,
            ),
            task,
        )
        self.head = cfg.classification_head_name

    def loss(self, model, sample, reduce=True):
        return self.criterion(model, sample, reduce=reduce)

    def predict(self, model, sample) -> Prediction:
        logits, _ = model(**sample["net_input"], features_only=True, classification_head_name=self.head)
        return Prediction(logits, model.get_targets(sample, [logits]).view(-1))

    def labels(self, prediction: Prediction, gold: bool = False) -> Tensor:
        return prediction.gold if gold else attribution.pseudo_labels(prediction.output)

    def target(self, prediction: Prediction, labels: Tensor) -> Tensor:
        return attribution.classification_target(prediction.output, labels)

    def query_valid(self, sample, selected):
        return None

    def example_losses(self, prediction: Prediction) -> Tensor:
        """[B]: each example's cross-entropy (AttendOut's scores)."""
        return torch.nn.functional.cross_entropy(prediction.output.float(), prediction.gold.long(), reduction="none")


class RegressionKind(ClassificationKind):
    """sentence_prediction with a real-valued target: no pseudo labels, the target is minus
    the real loss (Appendix A)."""

    name = "regression"
    regression = True

    def labels(self, prediction: Prediction, gold: bool = False) -> Tensor:
        return prediction.gold

    def target(self, prediction: Prediction, labels: Tensor) -> Tensor:
        return attribution.regression_target(prediction.output, labels)

    def example_losses(self, prediction: Prediction) -> Tensor:
        """[B]: each example's squared error (AttendOut's scores)."""
        return (prediction.output.view(-1).float() - prediction.gold.view(-1).float()) ** 2


def build_kind(task, cfg):
    """The kind object for ``task`` (a ValueError for a task the criterion cannot handle)."""
    return {"token": TokenKind, "classification": ClassificationKind, "regression": RegressionKind}[
        task_kind(task)
    ](task, cfg)


def reduce_metrics(logging_outputs) -> None:
    """The stock criterion's metrics: label-smoothed CE logs nll_loss, sentence_prediction not."""
    if any("nll_loss" in log for log in logging_outputs):
        LabelSmoothedCrossEntropyCriterion.reduce_metrics(logging_outputs)
    else:
        SentencePredictionCriterion.reduce_metrics(logging_outputs)


__all__ = ["task_kind", "build_kind", "reduce_metrics", "TokenKind", "ClassificationKind", "RegressionKind"]
