"""AD-DROP's options without fairseq, in one place: names, defaults, help and checks.

:class:`ADDropOptions` holds the ``--addrop-*`` options; ``--criterion addrop_ce``'s config
(``criterions/addrop_ce.py``) is made from its fields, and the HuggingFace ``Trainer``
(:mod:`addrop_fairseq.hf.trainer`) reads it with ``HfArgumentParser`` as ``ADDropArguments``.
The checks (``check(flag, value)``: a ValueError whose message names the flag) and the
``--*-attention`` / ``--*-layers`` parsers serve every site criterion's options too.
"""
import math
from dataclasses import dataclass, field, fields
from typing import Callable, Dict, List, Literal, Optional

from . import attribution, masks, schedule, sites


def parse_kinds(spec: str, flag: str = "--addrop-attention") -> Optional[List[str]]:
    """"auto" -> None, "encoder-self,decoder-self" -> the list."""
    if spec.strip() == "auto":
        return None
    kinds = [k.strip() for k in spec.split(",") if k.strip()]
    bad = [k for k in kinds if k not in sites.ATTENTION_KINDS]
    if bad or not kinds:
        raise ValueError(f"{flag}: unknown kind(s) {bad or spec!r}; choose from auto or {sites.ATTENTION_KINDS}")
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


# ---------------------------------------------------------------------------- option checks
# check(flag, value): a ValueError whose message names the flag, or nothing


def flag_of(name: str) -> str:
    """The command-line flag of a config field, as fairseq spells it (addrop_p -> --addrop-p)."""
    return "--" + name.replace("_", "-")


def check_rate(flag, value):
    """A probability in [0, 1] (NaN refused): checked here, where a rate enters; the maths trust it."""
    value = float(value)
    if not (0.0 <= value <= 1.0) or math.isnan(value):
        raise ValueError(f"{flag} must be in [0, 1], got {value}")


def at_least(minimum):
    def check(flag, value):
        if value < minimum:
            raise ValueError(f"{flag} must be >= {minimum}, got {value}")
    return check


def positive(flag, value):
    if not value > 0:
        raise ValueError(f"{flag} must be > 0, got {value}")


def one_of(choices):
    def check(flag, value):
        if value not in choices:
            raise ValueError(f"{flag} must be one of {tuple(choices)}, got {value!r}")
    return check


def check_kinds(flag, value):
    parse_kinds(value, flag)


def check_layers(flag, value):
    parse_layers(value, flag)


def check_attribution(flag, value):
    try:
        attribution.get_attribution(value)
    except ValueError as e:
        raise ValueError(f"{flag}: {e}") from None


LABELS = ("pseudo", "gold")


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
    addrop_labels: Literal[LABELS] = field(
        default="pseudo", metadata={"help": "labels the attribution is taken for"}
    )
    addrop_drop: Literal[masks.STRATEGIES] = field(
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
        """Every option's check (:data:`ADDROP_CHECKS`); returns the attribution method."""
        for name, check in ADDROP_CHECKS.items():
            check(flag_of(name), getattr(self, name))
        return attribution.get_attribution(self.addrop_attribution)

    @property
    def kinds(self) -> Optional[List[str]]:
        return parse_kinds(self.addrop_attention)

    @property
    def layers(self) -> Optional[List[int]]:
        return parse_layers(self.addrop_layers)


#: ADDropOptions field -> its check; fairseq-train runs them while parsing its arguments (a bad
#: value is a usage error) and the criterion again when it is built (hydra configs, code)
ADDROP_CHECKS: Dict[str, Callable] = {
    "addrop_p": check_rate,
    "addrop_q": check_rate,
    "addrop_attribution": check_attribution,
    "addrop_attention": check_kinds,
    "addrop_layers": check_layers,
    "addrop_ig_steps": at_least(1),
    "addrop_ig_batch": at_least(1),
    "addrop_labels": one_of(LABELS),
    "addrop_drop": one_of(masks.STRATEGIES),
    "addrop_schedule": one_of(schedule.SCHEDULES),
    "addrop_cross_period": at_least(0),
}
assert set(ADDROP_CHECKS) == {f.name for f in fields(ADDropOptions)}

__all__ = ["ADDropOptions", "ADDROP_CHECKS", "parse_kinds", "parse_layers", "flag_of", "check_rate", "at_least",
           "positive", "one_of", "check_kinds", "check_layers", "check_attribution"]
