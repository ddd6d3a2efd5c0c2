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
from dataclasses import dataclass, field

import torch

from fairseq import utils
from fairseq.criterions import register_criterion
from fairseq.dataclass import ChoiceEnum
from fairseq.logging import metrics

from .. import attribution, masks, schedule, sites, task_kinds
from . import attention_sites as opts
from .attention_sites import SiteCriterion, StockLossConfig, unwrap


@dataclass
class ADDropCriterionConfig(StockLossConfig):
    addrop_p: float = field(
        default=0.3, metadata={"help": "candidate region size: about p*n keys per attention row"}
    )
    addrop_q: float = field(
        default=0.3, metadata={"help": "probability of dropping each candidate key"}
    )
    addrop_layers: str = field(
        default="all", metadata={"help": "layers to apply AD-DROP to: 'all' or e.g. '0' or '0,2,5'"}
    )
    addrop_attention: str = field(
        default="auto",
        metadata={
            "help": "comma-separated attention kinds among encoder-self, decoder-self, "
            "encoder-decoder; 'auto' = encoder self-attention (the reference code's choice, for translation too)"
        },
    )
    addrop_attribution: str = field(
        default="ga",
        metadata={
            "help": "ga (gradient), iga (integrated gradients), aa (attention weights), "
            "rd (random region), or a method registered with register_attribution"
        },
    )
    addrop_ig_steps: int = field(default=20, metadata={"help": "integrated-gradient steps (iga)"})
    addrop_ig_batch: int = field(
        default=1,
        metadata={"help": "iga: alpha steps run together in one pass, the batch tiled that many "
                  "times (faster on GPU, that many times the memory of a forward)"},
    )
    addrop_labels: ChoiceEnum(["pseudo", "gold"]) = field(
        default="pseudo", metadata={"help": "labels the attribution is taken for"}
    )
    addrop_drop: ChoiceEnum(["high", "low"]) = field(
        default="high", metadata={"help": "drop high-attribution keys (AD-DROP) or low ones"}
    )
    addrop_schedule: ChoiceEnum(list(schedule.SCHEDULES)) = field(
        default="cross",
        metadata={"help": "cross: plain odd epochs, AD-DROP even epochs; always; never"},
    )
    addrop_cross_period: int = field(
        default=0,
        metadata={"help": "if > 0, cross-tuning alternates every N updates instead of epochs"},
    )


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
    OPTION_CHECKS = {
        "addrop_p": opts.check_rate,
        "addrop_q": opts.check_rate,
        "addrop_attribution": opts.check_attribution,
        "addrop_attention": opts.check_kinds,
        "addrop_layers": opts.check_layers,
        "addrop_ig_steps": opts.at_least(1),
        "addrop_ig_batch": opts.at_least(1),
        "addrop_schedule": lambda flag, value: schedule.check_schedule(value, 0),
        "addrop_cross_period": lambda flag, value: schedule.check_schedule("cross", value),
    }

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
        pass 1), or None for a random region (RD)."""
        labels = None
        use_gold = self.cfg.addrop_labels == "gold"

        def forward(replacements=None, point="attended", repeat=1):
            nonlocal labels
            batch = sample if repeat == 1 else tile_sample(sample, repeat)
            with sites.recording(selected, replacements, point) as rec:
                prediction = self.task_kind.predict(model, batch)
            if labels is None:  # the first (unscaled, untiled) pass fixes the labels
                labels = self.task_kind.labels(prediction, gold=use_gold)
            tiled = labels if repeat == 1 else labels.repeat(repeat, *[1] * (labels.dim() - 1))
            return self.task_kind.target(prediction, tiled), rec.result()

        result = self.method(forward, steps=self.cfg.addrop_ig_steps, grad=self.grad,
                             batch=self.cfg.addrop_ig_batch)
        if result is None:
            return None
        result = list(result)
        if len(result) != len(selected):
            raise RuntimeError(
                f"attribution method {self.cfg.addrop_attribution!r} returned {len(result)} "
                f"tensors for {len(selected)} attention maps"
            )
        return result

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
