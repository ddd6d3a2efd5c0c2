"""One AD-DROP update's steps without fairseq: pass 1's attribution, the drop masks, and
the masking context of pass 2, for any front end that supplies a *task kind*.

A task kind (``task_kinds.py`` for fairseq tasks, ``hf/heads.py`` for HuggingFace heads)
gives ``predict(model, batch)`` (pass 1's forward), ``labels(prediction, gold)`` (pseudo
labels, Eq. 4, or the gold ones) and ``target(prediction, labels)`` (the scalar whose
gradient at the maps is the attribution, ``attribution.py``'s formulas).

:func:`attribute` is pass 1 for every front end (``ADDropCriterion.attribute`` in
criterions/addrop_ce.py, the HF Trainer): the first (unscaled, untiled) pass fixes the labels, a tiled
pass (``repeat`` > 1, integrated gradients' ``--addrop-ig-batch``) tiles them alike, the
method comes from the registry.
:class:`ADDropStep` holds what one front end keeps across updates (the checked options, the
method, the loss-scaled gradients for fp16/bf16 maps).
"""
from typing import Callable, List, Optional, Sequence

from torch import Tensor

from . import attribution, masks, schedule, sites
from .options import ADDropOptions


class ZeroAttributionError(RuntimeError):
    """An AD-DROP update whose attributions are all zero (see :func:`check_attributed`)."""


def check_attributed(drop: masks.DropMasks, where: str = "") -> None:
    """Refuse an AD-DROP update whose attributions were zero at every valid key of every site.

    Eq. 6 then ties every key, all are candidates, and Eq. 7 drops each with probability q:
    random attention dropout under AD-DROP's name, which is never what was asked for. Called
    by both front ends after pass 2's forward (the masks are drawn there) and before its
    backward, so the update is not applied. One host sync per AD-DROP update (both front
    ends already sync every step for their loss logging / NaN filter).
    """
    if drop.all_zero():
        raise ZeroAttributionError(
            f"AD-DROP{(' (' + where + ')') if where else ''}: every attribution of this update is zero, so every "
            "key would be a candidate and AD-DROP would be random attention dropout. Pass 1's gradient "
            "did not reach the attention maps: a torch.compile'd module run for pass 1, a classifier "
            "head whose output does not depend on the maps (e.g. zero-initialised weights), or an "
            "attribution method that returns zeros."
        )


def attribute(method, kind, model, batch, selected: Sequence[sites.AttentionSite], *,
              tile: Callable, gold: bool = False, steps: int = 20, ig_batch: int = 1,
              grad=attribution.gradients, name: str = "") -> Optional[List[Optional[Tensor]]]:
    """Pass 1: one attribution tensor [B, H, T, S] per site (None where the site did not run),
    or None for a random region (RD). ``model`` runs as it is (train mode, unwrapped);
    ``tile(batch, r)`` is ``batch`` repeated r times along dim 0."""
    labels = None

    def run_pass1(replacements=None, point="attended", repeat=1):
        nonlocal labels
        tiled_batch = batch if repeat == 1 else tile(batch, repeat)
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


class ADDropStep:
    """The checked options of one front end and what it keeps across updates."""

    def __init__(self, options: ADDropOptions):
        self.method = options.check()
        self.options = options
        self.p, self.q = float(options.addrop_p), float(options.addrop_q)
        self.grad = attribution.ScaledGradients()  # fp16/bf16 maps: a scaled target, no underflow

    def active(self, epoch: int, num_updates: int) -> bool:
        """Is this update (1-based ``epoch``, ``num_updates`` done before it) an AD-DROP update?"""
        o = self.options
        return (schedule.addrop_active(o.addrop_schedule, epoch, num_updates, o.addrop_cross_period)
                and self.p > 0.0 and self.q > 0.0)

    def attribute(self, kind, model, batch, selected, tile) -> Optional[List[Optional[Tensor]]]:
        o = self.options
        return attribute(self.method, kind, model, batch, selected, tile=tile, gold=o.addrop_labels == "gold",
                         steps=o.addrop_ig_steps, ig_batch=o.addrop_ig_batch, grad=self.grad,
                         name=o.addrop_attribution)

    def masks(self, attributions, keep: bool = False) -> masks.DropMasks:
        """Pass 2's masks (Eq. 6-7 per site) from pass 1's attributions."""
        return masks.DropMasks(attributions, self.p, self.q, self.options.addrop_drop, keep=keep)


__all__ = ["attribute", "ADDropStep", "ZeroAttributionError", "check_attributed"]
