"""``--criterion addrop_ce``: cross-entropy with AD-DROP on the self-attention maps.

Plain updates (odd epochs under cross-tuning, validation, inference) run the stock fairseq
criterion and nothing else. AD-DROP updates run:

1. pass 1 on the unwrapped model (no DDP reducer armed) with the selected attention maps
   recorded, and the attribution method (GA: one ``autograd.grad`` over all maps);
2. the drop masks (:class:`addrop_fairseq.masks.DropMasks`, Eq. 6-7 per site);
3. pass 2, the stock criterion with each map's drop mask applied before softmax; its loss
   is what fairseq back-propagates.

The options are checked here, once, when the criterion is built (and the sites when the
first epoch begins), with messages that name the flags.
"""
import typing
from dataclasses import field, fields, make_dataclass

import torch

from fairseq import utils
from fairseq.criterions import register_criterion
from fairseq.dataclass import ChoiceEnum
from fairseq.logging import metrics

from .. import attribution, masks, schedule, sites, step, task_kinds
from ..options import ADDROP_CHECKS, ADDropOptions
from .site_criterion import SiteCriterion, StockLossConfig, unwrap


def fairseq_fields(options) -> list:
    """The fields of a fairseq-free options dataclass for a FairseqDataclass: same names,
    defaults and help; a ``Literal`` of choices becomes fairseq's ``ChoiceEnum``."""
    out = []
    for f in fields(options):
        kind = ChoiceEnum(list(typing.get_args(f.type))) if typing.get_origin(f.type) is typing.Literal else f.type
        out.append((f.name, kind, field(default=f.default, metadata=dict(f.metadata))))
    return out


#: ``--criterion addrop_ce``'s options: the stock loss's (fairseq's own) and AD-DROP's, made
#: from :class:`addrop_fairseq.options.ADDropOptions` (one place for names, defaults and help)
ADDropCriterionConfig = make_dataclass("ADDropCriterionConfig", fairseq_fields(ADDropOptions), bases=(StockLossConfig,))
ADDropCriterionConfig.__module__ = __name__


def tile_sample(sample, repeat: int):
    """``sample`` with its batch repeated ``repeat`` times along dim 0 (net_input and target)."""
    bsz = sample["net_input"]["src_tokens"].size(0)

    def tile(x):
        if torch.is_tensor(x) and x.dim() > 0 and x.size(0) == bsz:
            return x.repeat(repeat, *[1] * (x.dim() - 1))
        return x

    out = dict(sample)
    out["net_input"] = {k: tile(v) for k, v in sample["net_input"].items()}
    if "target" in sample:
        out["target"] = tile(sample["target"])
    return out


@register_criterion("addrop_ce", dataclass=ADDropCriterionConfig)
class ADDropCriterion(SiteCriterion):
    OPTION_CHECKS = ADDROP_CHECKS

    def __init__(self, cfg: ADDropCriterionConfig, task):
        super().__init__(task, cfg, cfg.addrop_attention, cfg.addrop_layers,
                         "--addrop-attention / --addrop-layers", "addrop_ce")  # checks OPTION_CHECKS
        self.p, self.q = float(cfg.addrop_p), float(cfg.addrop_q)
        self.method = attribution.get_attribution(cfg.addrop_attribution)
        if cfg.addrop_labels == "gold" and self.task_kind.name == "regression":
            raise ValueError("--addrop-labels gold needs class labels; a regression target has none")
        self.cfg = cfg
        self.grad = attribution.ScaledGradients()  # fp16/bf16 maps: a scaled target, no underflow

    def addrop_now(self) -> bool:
        return schedule.addrop_active(
            self.cfg.addrop_schedule, self.epoch, self.num_updates, self.cfg.addrop_cross_period
        )

    # ------------------------------------------------------------------ the step

    def forward(self, model, sample, reduce=True):
        if not model.training or not self.addrop_now() or self.p == 0.0 or self.q == 0.0:
            return self.plain_loss(model, sample, reduce, addrop_steps=1, addrop_active=0, addrop_dropped=0,
                                   addrop_valid=0)

        loss, sample_size, log, _ = self.addrop_step(model, sample, reduce)
        return loss, sample_size, log

    def addrop_step(self, model, sample, reduce=True, keep=False):
        """One AD-DROP update: pass 1 and its attribution, the masks, pass 2's loss. Returns
        the loss, sample size, log and the :class:`masks.DropMasks` (``keep=True``: with each
        site's attribution and mask, what ``addrop-explain`` draws)."""
        selected = self.prepare(model)
        attributions = self.attribute(unwrap(model), sample, selected)
        drop = masks.DropMasks(attributions, self.p, self.q, self.cfg.addrop_drop, keep=keep)
        with sites.masking(selected, drop, self.query_valid(sample, selected)):
            loss, sample_size, log = self.task_kind.loss(model, sample, reduce=reduce)
        log.update(addrop_steps=1, addrop_active=1, addrop_dropped=drop.dropped, addrop_valid=drop.valid)
        return loss, sample_size, log, drop

    def query_valid(self, sample, selected):
        """Per site, the real query rows it cannot see itself: encoder-decoder attention gets
        the decoder's padding from ``prev_output_tokens``; other sites None."""
        if not any(s.kind == "encoder-decoder" for s in selected):
            return None
        prev = sample["net_input"].get("prev_output_tokens")
        if prev is None:
            return None
        real = prev.ne(self.task.target_dictionary.pad())
        return [real if s.kind == "encoder-decoder" else None for s in selected]

    def attribute(self, model, sample, selected):
        """One attribution tensor [B, H, T, S] per site (None where the site did not run in
        pass 1), or None for a random region (RD): :func:`addrop_fairseq.step.attribute`."""
        cfg = self.cfg
        return step.attribute(self.method, self.task_kind, model, sample, selected, tile=tile_sample,
                              gold=cfg.addrop_labels == "gold", steps=cfg.addrop_ig_steps,
                              ig_batch=cfg.addrop_ig_batch, grad=self.grad, name=cfg.addrop_attribution)

    # ------------------------------------------------------------------ metrics

    @classmethod
    def reduce_metrics(cls, logging_outputs) -> None:
        task_kinds.reduce_metrics(logging_outputs)
        steps = sum(log.get("addrop_steps", 0) for log in logging_outputs)
        if steps > 0:
            active = sum(log.get("addrop_active", 0) for log in logging_outputs)
            dropped = utils.item(sum(log.get("addrop_dropped", 0) for log in logging_outputs))
            valid = utils.item(sum(log.get("addrop_valid", 0) for log in logging_outputs))
            metrics.log_scalar("addrop_active", active / steps, steps, round=3)
            # weighted by the valid positions, so an epoch's value is sum(dropped) / sum(valid)
            frac = dropped / valid if valid else 0.0
            metrics.log_scalar("addrop_drop_frac", frac, valid, round=4)
