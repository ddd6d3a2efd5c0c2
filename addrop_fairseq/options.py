"""AD-DROP's options without fairseq: names, defaults, help, and their checks.

:class:`ADDropOptions` holds the ``--addrop-*`` options of ``--criterion addrop_ce`` under
the same field names, defaults and help (``tests/test_hf_trainer.py`` compares it field by
field with ``criterions.addrop_ce.ADDropCriterionConfig``), for front ends that run without
fairseq: the HuggingFace ``Trainer`` (:mod:`addrop_fairseq.hf.trainer`, which reads it with
``HfArgumentParser`` as ``ADDropArguments``).

:func:`parse_kinds` / :func:`parse_layers` are the fairseq-free copies of the criterion's
parsers in ``criterions/attention_sites.py`` (same results and messages); that module can
import them from here instead.
"""
from dataclasses import dataclass, field
from typing import List, Literal, Optional

from . import attribution, masks, schedule, sites


def parse_kinds(spec: str, flag: str = "--addrop-attention") -> Optional[List[str]]:
    """"auto" -> None, "encoder-self,decoder-self" -> the list."""
    if spec.strip() == "auto":
        return None
    kinds = [k.strip() for k in spec.split(",") if k.strip()]
    bad = [k for k in kinds if k not in sites.KINDS]
    if bad or not kinds:
        raise ValueError(f"{flag}: unknown kind(s) {bad or spec!r}; choose from auto or {sites.KINDS}")
    return kinds


def parse_layers(spec: str, flag: str = "--addrop-layers") -> Optional[List[int]]:
    """"all" -> None, "0,2,5" -> [0, 2, 5]."""
    spec = str(spec).strip()
    if spec == "all":
        return None
    try:
        layers = sorted({int(x) for x in spec.split(",") if x.strip() != ""})
    except ValueError:
        raise ValueError(f"{flag} must be 'all' or comma-separated integers, got {spec!r}") from None
    if not layers or layers[0] < 0:
        raise ValueError(f"{flag} must be 'all' or non-negative integers, got {spec!r}")
    return layers


@dataclass
class ADDropOptions:
    """AD-DROP's options (the criterion's ``--addrop-*``; HfArgumentParser: ``--addrop_p`` or
    ``--addrop-p``, ...)."""

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
    addrop_labels: Literal["pseudo", "gold"] = field(
        default="pseudo", metadata={"help": "labels the attribution is taken for"}
    )
    addrop_drop: Literal["high", "low"] = field(
        default="high", metadata={"help": "drop high-attribution keys (AD-DROP) or low ones"}
    )
    addrop_schedule: Literal[schedule.SCHEDULES] = field(
        default="cross",
        metadata={"help": "cross: plain odd epochs, AD-DROP even epochs; always; never"},
    )
    addrop_cross_period: int = field(
        default=0,
        metadata={"help": "if > 0, cross-tuning alternates every N updates instead of epochs"},
    )

    def check(self):
        """The options' checks (messages name the flags); returns the attribution method."""
        masks.check_rate("--addrop-p", self.addrop_p)
        masks.check_rate("--addrop-q", self.addrop_q)
        try:
            method = attribution.get_attribution(self.addrop_attribution)
        except ValueError as e:
            raise ValueError(f"--addrop-attribution: {e}") from None
        try:
            schedule.check_schedule(self.addrop_schedule, self.addrop_cross_period)
        except ValueError as e:
            raise ValueError(f"--addrop-schedule / --addrop-cross-period: {e}") from None
        if self.addrop_ig_steps < 1:
            raise ValueError(f"--addrop-ig-steps must be >= 1, got {self.addrop_ig_steps}")
        if self.addrop_ig_batch < 1:
            raise ValueError(f"--addrop-ig-batch must be >= 1, got {self.addrop_ig_batch}")
        if self.addrop_labels not in ("pseudo", "gold"):
            raise ValueError(f"--addrop-labels must be pseudo or gold, got {self.addrop_labels!r}")
        if self.addrop_drop not in masks.STRATEGIES:
            raise ValueError(f"--addrop-drop must be one of {masks.STRATEGIES}, got {self.addrop_drop!r}")
        parse_kinds(self.addrop_attention)
        parse_layers(self.addrop_layers)
        return method

    @property
    def kinds(self) -> Optional[List[str]]:
        return parse_kinds(self.addrop_attention)

    @property
    def layers(self) -> Optional[List[int]]:
        return parse_layers(self.addrop_layers)


__all__ = ["ADDropOptions", "parse_kinds", "parse_layers"]
