"""The AD-DROP engine: one update's two passes for any front end, without fairseq.

Both front ends are thin adapters over :class:`ADDropEngine`: ``--criterion addrop_ce``
(criterions/addrop_ce.py) and the HuggingFace ``ADDropTrainer`` (hf/trainer.py). The engine
holds the checked options (p, q, the attribution method, the schedule), decides whether an
update is an AD-DROP one, and runs it: pass 1 and its attribution (:func:`attribute`), the drop
masks (``DropMasks``, Eq. 6-7 per site), pass 2 under them (the front end's stock loss),
and the refusal of an update whose attributions are all zero (:func:`check_attributed`).

A front end supplies a *task kind* (``task_kinds.py`` for fairseq tasks, ``hf/heads.py`` for
HuggingFace heads): ``predict(model, batch)`` (pass 1's forward, a :class:`Prediction`),
``labels(prediction, gold)`` (pseudo labels, Eq. 4, or the gold ones), ``target(prediction,
labels)`` (the scalar whose gradient at the maps is the attribution, ``attribution.py``'s
formulas) and ``query_valid(batch, selected)`` (the real query rows a site cannot see itself).
"""
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from . import attribution, schedule, sites
from .masks import DropMasks
from .options import ADDropOptions


@dataclass
class Prediction:
    """Pass 1's forward: the model's output, the gold labels, the positions that count."""

    output: Tensor  # classification: logits [B, C]; regression: [B, 1]; token / seq2seq: log-probs [B, T, V]
    gold: Optional[Tensor]  # [B, T] or [B]; None where a HuggingFace batch has no labels
    real: Optional[Tensor] = None  # token / seq2seq: [B, T] True where a label counts


def tile_batch(batch, repeat: int, size: Optional[int] = None):
    """``batch`` (a dict of tensors, nested dicts included: a fairseq sample's ``net_input``)
    with every tensor whose dim 0 is the batch size repeated ``repeat`` times along it.
    ``size`` defaults to the first such tensor's dim 0 (integrated gradients'
    ``--addrop-ig-batch``; R-Drop's duplicated batch)."""
    if size is None:
        size = _batch_size(batch)

    def tile(x):
        if isinstance(x, dict):
            return {k: tile(v) for k, v in x.items()}
        if torch.is_tensor(x) and x.dim() > 0 and x.size(0) == size:
            return x.repeat(repeat, *[1] * (x.dim() - 1))
        return x

    return tile(batch)


def _batch_size(batch) -> int:
    for value in batch.values():
        if isinstance(value, dict):
            return _batch_size(value)
        if torch.is_tensor(value) and value.dim() > 0:
            return value.size(0)
    raise ValueError("tile_batch: the batch holds no batch-first tensor")


class ZeroAttributionError(RuntimeError):
    """An AD-DROP update whose attributions are all zero (see :func:`check_attributed`)."""


def check_attributed(drop: DropMasks, where: str = "") -> None:
    """Refuse an AD-DROP update whose attributions were zero at every valid key of every site.

    Eq. 6 then ties every key, all are candidates, and Eq. 7 drops each with probability q:
    random attention dropout under AD-DROP's name, which is never what was asked for. Run
    after pass 2's forward (the masks are drawn there) and before its backward, so the update
    is not applied. One host sync per AD-DROP update (both front ends already sync every step
    for their loss logging / NaN filter).
    """
    if drop.all_zero():
        raise ZeroAttributionError(
            f"AD-DROP{(' (' + where + ')') if where else ''}: every attribution of this update is zero, so every "
            "key would be a candidate and AD-DROP would be random attention dropout. Pass 1's gradient "
            "did not reach the attention maps: a torch.compile'd module run for pass 1, a classifier "
            "head whose output does not depend on the maps (e.g. zero-initialised weights), or an "
            "attribution method that returns zeros."
        )


def refuse_checkpointing(model: torch.nn.Module, where: str, remedy: str, asked: bool = False) -> None:
    """Refuse activation (gradient) checkpointing, asked for (``asked``) or found on a module of
    ``model`` (fairseq's ``checkpoint_wrapper``; HuggingFace's, under transformers 5's name or
    the old one): checkpointed layers are recomputed in the backward, after the masks are gone
    (and recorded maps would have no graph). ``remedy`` says what to change, in the front
    end's words."""
    found = any(hasattr(m, "precheckpoint_forward") or getattr(m, "gradient_checkpointing", None) is True
                or (hasattr(m, "supports_gradient_checkpointing") and getattr(m, "is_activation_checkpointing", None) is True)
                for m in model.modules())
    if asked or found:
        raise ValueError(f"{where} cannot be combined with gradient checkpointing: checkpointed layers are "
                         f"recomputed in the backward pass without the attention masks. {remedy}")


def attribute(method, kind, model, batch, selected: Sequence[sites.AttentionSite], *,
              gold: bool = False, steps: int = 20, ig_batch: int = 1,
              grad=attribution.gradients, name: str = "") -> Optional[List[Optional[Tensor]]]:
    """Pass 1: one attribution tensor [B, H, T, S] per site (None where the site did not run),
    or None for a random region (RD). ``model`` runs as it is (train mode, unwrapped)."""
    labels = None

    def run_pass1(replacements=None, point="attended", repeat=1):
        nonlocal labels
        tiled_batch = batch if repeat == 1 else tile_batch(batch, repeat)
        with sites.recording(selected, replacements, point) as rec:
            prediction = kind.predict(model, tiled_batch)
        if labels is None:  # the first (unscaled, untiled) pass fixes the labels
            labels = kind.labels(prediction, gold=gold)
        tiled = labels if repeat == 1 else labels.repeat(repeat, *[1] * (labels.dim() - 1))
        return kind.target(prediction, tiled), rec.result()

    result = method(run_pass1, steps=steps, grad=grad, batch=ig_batch)
    if result is None:
        return None
    result = list(result)
    if len(result) != len(selected):
        raise RuntimeError(
            f"attribution method {name!r} returned {len(result)} tensors for {len(selected)} attention maps"
        )
    return result


class ADDropEngine:
    """AD-DROP for one front end: its options (checked here, once), the schedule, and the
    update (:meth:`run`). ``where`` names the front end in errors."""

    def __init__(self, options: ADDropOptions, where: str):
        self.method = options.check()
        self.options, self.where = options, where
        self.p, self.q = float(options.addrop_p), float(options.addrop_q)
        self.grad = attribution.ScaledGradients()  # fp16/bf16 maps: a scaled target, no underflow
        self.runs = 0  # AD-DROP micro-batches run

    @property
    def drops(self) -> bool:
        """p > 0 and q > 0: an AD-DROP update can drop something."""
        return self.p > 0.0 and self.q > 0.0

    def active(self, epoch: int, num_updates: int) -> bool:
        """Is this update (1-based ``epoch``, ``num_updates`` done before it) an AD-DROP update?"""
        o = self.options
        return self.drops and schedule.addrop_active(o.addrop_schedule, epoch, num_updates, o.addrop_cross_period)

    def may_never_drop(self) -> bool:
        """Cross-tuning with AD-DROP on: the only schedule whose training can end before its
        first AD-DROP update (the front ends warn about that plan)."""
        return self.options.addrop_schedule == "cross" and self.drops

    def check_kind(self, kind) -> None:
        """Refuse a task kind these options cannot train (before the first update)."""
        if self.options.addrop_labels == "gold" and kind.name == "regression":
            raise ValueError("--addrop-labels gold needs class labels; a regression target has none")

    def attribute(self, kind, model, batch, selected) -> Optional[List[Optional[Tensor]]]:
        """Pass 1 (:func:`attribute`) with these options."""
        o = self.options
        return attribute(self.method, kind, model, batch, selected, gold=o.addrop_labels == "gold",
                         steps=o.addrop_ig_steps, ig_batch=o.addrop_ig_batch, grad=self.grad,
                         name=o.addrop_attribution)

    def masks(self, attributions, keep: bool = False) -> DropMasks:
        """Pass 2's masks (Eq. 6-7 per site, drawn as pass 2 reaches each site) from pass 1's attributions."""
        return DropMasks(attributions, self.p, self.q, self.options.addrop_drop, keep=keep)

    def run(self, kind, model, batch, selected, pass2: Callable, keep: bool = False) -> Tuple[object, DropMasks]:
        """One AD-DROP micro-batch: pass 1 on ``model`` (unwrapped, uncompiled), the masks,
        and ``pass2()`` (the front end's stock loss) with the masks applied. Returns what
        ``pass2`` returns and the :class:`DropMasks` (``keep``: with each site's
        attribution and mask, what ``addrop-explain`` draws)."""
        drop = self.masks(self.attribute(kind, model, batch, selected), keep=keep)
        with sites.masking(selected, drop, kind.query_valid(batch, selected)):
            result = pass2()
        check_attributed(drop, self.where)
        self.runs += 1
        return result, drop


#: what an AD-DROP micro-batch adds to the logged counts (DropMasks' attributes)
DROP_COUNTS = ("dropped", "valid", "dropped_attributed", "valid_attributed")

__all__ = ["ADDropEngine", "Prediction", "tile_batch", "attribute", "check_attributed", "ZeroAttributionError",
           "refuse_checkpointing", "DROP_COUNTS"]
