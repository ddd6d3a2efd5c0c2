"""``--criterion sentence_prediction_rdrop``: R-Drop (Liang et al., NeurIPS 2021) for
sentence_prediction, a peer of AD-DROP in the same tables.

fairseq ships R-Drop only for translation (``label_smoothed_cross_entropy_with_rdrop``). In
training each batch runs twice through the model (one forward over the batch concatenated
with itself, so the two copies get independent dropout), and the loss is

    CE(copy 1) + CE(copy 2) + alpha * (KL(P1 || P2) + KL(P2 || P1)) / 2

for classification, and MSE(copy 1) + MSE(copy 2) + alpha * ||y1 - y2||^2 for regression,
over 2B examples (``sample_size``); the paper's GLUE alpha is 1.0. Validation and inference
are the stock sentence_prediction criterion.
"""
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from fairseq.criterions import register_criterion
from fairseq.criterions.sentence_prediction import SentencePredictionConfig, SentencePredictionCriterion
from fairseq.logging import metrics

from ..engine import tile_batch


@dataclass
class SentencePredictionRDropConfig(SentencePredictionConfig):
    rdrop_alpha: float = field(default=1.0, metadata={"help": "weight of the symmetric KL between the two passes"})


def symmetric_kl(logits_1, logits_2):
    """(KL(P1 || P2) + KL(P2 || P1)) / 2, summed over the batch."""
    lp1 = F.log_softmax(logits_1, dim=-1, dtype=torch.float32)
    lp2 = F.log_softmax(logits_2, dim=-1, dtype=torch.float32)
    kl_12 = F.kl_div(lp2, lp1, log_target=True, reduction="sum")  # KL(P1 || P2)
    kl_21 = F.kl_div(lp1, lp2, log_target=True, reduction="sum")
    return (kl_12 + kl_21) / 2


@register_criterion("sentence_prediction_rdrop", dataclass=SentencePredictionRDropConfig)
class SentencePredictionRDropCriterion(SentencePredictionCriterion):
    def __init__(self, cfg: SentencePredictionRDropConfig, task):
        super().__init__(cfg, task)
        if cfg.rdrop_alpha < 0:
            raise ValueError(f"--rdrop-alpha must be >= 0, got {cfg.rdrop_alpha}")
        self.alpha = cfg.rdrop_alpha

    def forward(self, model, sample, reduce=True):
        if not model.training:
            return super().forward(model, sample, reduce=reduce)
        doubled = tile_batch(sample, 2, size=sample["target"].size(0))  # the batch, then itself again
        logits, _ = model(
            **doubled["net_input"], features_only=True, classification_head_name=self.classification_head_name
        )
        targets = model.get_targets(doubled, [logits]).view(-1)
        first, second = logits.chunk(2, dim=0)
        if self.regression_target:
            preds = logits.view(-1).float()
            task_loss = F.mse_loss(preds, targets.float(), reduction="sum")
            consistency = F.mse_loss(first.view(-1).float(), second.view(-1).float(), reduction="sum")
        else:
            task_loss = F.nll_loss(F.log_softmax(logits, dim=-1, dtype=torch.float32), targets, reduction="sum")
            consistency = symmetric_kl(first, second)
        loss = task_loss + self.alpha * consistency
        sample_size = targets.numel()
        log = {
            "loss": loss.data,
            "rdrop_kl": consistency.data,
            "ntokens": 2 * sample["ntokens"],
            "nsentences": sample_size,
            "sample_size": sample_size,
        }
        if not self.regression_target:
            log["ncorrect"] = (logits.argmax(dim=1) == targets).sum()
        return loss, sample_size, log

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        SentencePredictionCriterion.reduce_metrics(logging_outputs)
        kl = sum(log.get("rdrop_kl", 0) for log in logging_outputs)
        pairs = sum(log.get("sample_size", 0) for log in logging_outputs if "rdrop_kl" in log) / 2
        if pairs:
            metrics.log_scalar("rdrop_kl", float(kl) / pairs, pairs, round=4)
