"""``--criterion attention_regularizer``: the cheap attention regularizers of AttendOut
(Sections 3.2 and 7), peers of AD-DROP in the studies, on the same sites and models.

* ``--attn-reg scores-dropout``: each valid key's pre-softmax score is removed with
  probability ``--attn-reg-p`` (Eq. 3), a fully removed row attending uniformly (Eq. 4).
  (Weights dropout, Eq. 2, is fairseq's own ``--attention-dropout``.)
* ``--attn-reg layerdrop``: attention LayerDrop (Eq. 4): each selected attention layer is
  skipped with probability ``--attn-reg-p`` in a forward pass, its attention becoming
  uniform 1/n over each row's valid keys (padding and future positions stay masked).
* ``--attn-reg scheduled``: scheduled Bernoulli scores dropout (Section 7.2): the rate of
  the i-th selected layer at update u is ``p + slope_i * u / 1000`` clipped to [0, 1],
  ``--attn-reg-slopes`` one value for every layer or one per layer (write
  ``--attn-reg-slopes=-0.1,-0.2`` when the first is negative, or argparse takes it for a flag).

Training updates only; validation and inference are the stock loss. Logged:
``attn_reg_drop_frac`` (removed / valid keys) and, for the schedule, ``attn_reg_rate``.
"""
from dataclasses import dataclass, field
from typing import List

import torch

from fairseq import utils
from fairseq.criterions import register_criterion
from fairseq.dataclass import ChoiceEnum
from fairseq.logging import metrics

from .. import attendout_maths, sites, task_kinds
from .. import options as opts
from .site_criterion import SiteCriterion, StockLossConfig

MODES = ["scores-dropout", "layerdrop", "scheduled"]


@dataclass
class AttentionRegularizerConfig(StockLossConfig):
    attn_reg: ChoiceEnum(MODES) = field(
        default="scores-dropout",
        metadata={"help": "scores-dropout (Eq. 3), layerdrop (attention LayerDrop, Eq. 4), scheduled "
                          "(Bernoulli scores dropout with per-layer linear rates)"},
    )
    attn_reg_p: float = field(
        default=0.1, metadata={"help": "scores dropout rate, layer skip probability, or the schedule's start rate"}
    )
    attn_reg_slopes: str = field(
        default="0",
        metadata={"help": "scheduled: change of each layer's rate per 1000 updates, one value or one per layer"},
    )
    attn_reg_attention: str = field(
        default="auto", metadata={"help": "attention kinds, as --addrop-attention ('auto': encoder self-attention)"}
    )
    attn_reg_layers: str = field(default="all", metadata={"help": "layers: 'all' or e.g. '0,2,5'"})


def parse_slopes(spec: str) -> List[float]:
    try:
        slopes = [float(x) for x in str(spec).split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--attn-reg-slopes: comma-separated numbers, got {spec!r}") from None
    if not slopes:
        raise ValueError(f"--attn-reg-slopes: comma-separated numbers, got {spec!r}")
    return slopes


@register_criterion("attention_regularizer", dataclass=AttentionRegularizerConfig)
class AttentionRegularizerCriterion(SiteCriterion):
    OPTION_CHECKS = {
        "attn_reg_p": opts.check_rate,
        "attn_reg_slopes": lambda flag, value: parse_slopes(value),
        "attn_reg_attention": opts.check_kinds,
        "attn_reg_layers": opts.check_layers,
    }

    def __init__(self, cfg: AttentionRegularizerConfig, task):
        super().__init__(task, cfg, cfg.attn_reg_attention, cfg.attn_reg_layers,
                         "--attn-reg-attention / --attn-reg-layers", "attention_regularizer")
        self.mode = cfg.attn_reg
        self.p = float(cfg.attn_reg_p)
        self.slopes = parse_slopes(cfg.attn_reg_slopes)

    def prepare(self, model):
        selected = super().prepare(model)
        if self.mode == "scheduled" and len(self.slopes) not in (1, len(selected)):
            raise ValueError(f"--attn-reg-slopes: {len(self.slopes)} values for {len(selected)} attention "
                             "layers; give one value or one per layer")
        return selected

    def rates(self, n_sites: int) -> List[float]:
        """Each site's removal rate at the current update."""
        if self.mode != "scheduled":
            return [self.p] * n_sites
        slopes = self.slopes * n_sites if len(self.slopes) == 1 else self.slopes
        return [attendout_maths.scheduled_rate(self.p, slopes[i], self.num_updates) for i in range(n_sites)]

    def forward(self, model, sample, reduce=True):
        if not model.training:
            return self.plain_loss(model, sample, reduce)
        selected = self.prepare(model)
        rates = self.rates(len(selected))
        if self.mode == "layerdrop":
            skip = (torch.rand(len(selected)) < self.p).tolist()
        counts = {"dropped": 0, "valid": 0}

        def edit(i, scores, valid):
            counts["valid"] = counts["valid"] + valid.sum()
            if self.mode == "layerdrop":
                if not skip[i]:
                    return scores
                counts["dropped"] = counts["dropped"] + valid.sum()
                return attendout_maths.uniform_rows(scores, valid, torch.ones_like(valid[..., :1]))
            out, drop = attendout_maths.scores_dropout(scores, valid, rates[i])
            counts["dropped"] = counts["dropped"] + drop.sum()
            return out

        with sites.editing(selected, edit):
            loss, sample_size, log = self.task_kind.loss(model, sample, reduce=reduce)
        log.update(attn_reg_steps=1, attn_reg_dropped=counts["dropped"], attn_reg_valid=counts["valid"],
                   attn_reg_rate=sum(rates) / max(1, len(rates)))
        return loss, sample_size, log

    @classmethod
    def reduce_metrics(cls, logging_outputs) -> None:
        task_kinds.reduce_metrics(logging_outputs)
        steps = sum(log.get("attn_reg_steps", 0) for log in logging_outputs)
        if steps > 0:
            dropped = utils.item(sum(log.get("attn_reg_dropped", 0) for log in logging_outputs))
            valid = utils.item(sum(log.get("attn_reg_valid", 0) for log in logging_outputs))
            metrics.log_scalar("attn_reg_drop_frac", dropped / valid if valid else 0.0, valid, round=4)
            rate = sum(log.get("attn_reg_rate", 0.0) for log in logging_outputs) / steps
            metrics.log_scalar("attn_reg_rate", rate, steps, round=4)
