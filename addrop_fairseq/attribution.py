"""Attribution of attention maps (paper Eq. 2-5, 8-10), pure torch.

An attribution *target* is a scalar the model should make larger; the attribution of a map
is the gradient of the target w.r.t. that map:

* classification: the logit of the pseudo label, summed over the batch (Eq. 5);
* token-level (translation, tagging): minus the pseudo-label NLL over real positions, i.e.
  the summed log-probability of each position's pseudo label (Eq. 8-10);
* regression: minus the real loss (Appendix A).

An attribution *method* turns a model into one attribution tensor per recorded map. It gets
a ``forward`` callable (see :class:`AttributionForward`) so that it never needs to know the
model, the task or fairseq. Methods are registered by name, and a ``--user-dir`` can add its
own with :func:`register_attribution`.
"""
from typing import Callable, Dict, List, Optional, Protocol, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


# ---------------------------------------------------------------------------- targets


def classification_target(logits: Tensor, labels: Tensor) -> Tensor:
    """Eq. 5: sum over the batch of the logit of each example's label ([B, C], [B])."""
    return logits.gather(-1, labels.view(-1, 1)).sum()


def token_target(lprobs: Tensor, labels: Tensor, real: Tensor) -> Tensor:
    """Eq. 8-9: -L = sum over real positions of log P(label); ``real`` excludes padding."""
    picked = lprobs.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    return picked.masked_fill(~real, 0.0).sum()


def token_pseudo_target(lprobs: Tensor, target: Tensor, pad_idx: int) -> Tensor:
    """Eq. 8 with pseudo labels: positions whose gold target is ``pad_idx`` do not count."""
    real = target.ne(pad_idx)
    return token_target(lprobs, pseudo_labels(lprobs), real)


def regression_target(predictions: Tensor, gold: Tensor) -> Tensor:
    """Minus the summed squared error (the real loss, as in fairseq's sentence_prediction)."""
    return -F.mse_loss(predictions.view(-1).float(), gold.view(-1).float(), reduction="sum")


def pseudo_labels(scores: Tensor, excluded: Sequence[int] = ()) -> Tensor:
    """Eq. 4: the arg-max class, detached (labels are fixed, never differentiated).

    ``excluded``: classes the model's prediction never outputs (e.g. a tag dictionary's
    special symbols), so pseudo labels are labels the model can predict.
    """
    scores = scores.detach()
    if len(excluded):
        scores = scores.clone()
        scores[..., list(excluded)] = float("-inf")
    return scores.argmax(dim=-1)


# ---------------------------------------------------------------------------- methods


class AttributionForward(Protocol):
    """What an attribution method may call.

    ``forward(None)`` runs the model once with the selected attention maps recorded and
    returns ``(target, maps)``: the scalar target (pseudo labels fixed at the first call) and
    one map per site, part of the graph: the probabilities *after* attention dropout (the
    tensor that multiplies V), or, with ``point="softmax"``, the ones before it. A site that
    did not run (LayerDrop) has None.
    ``forward(replacements)`` runs the model with site i's map *replaced* by
    ``replacements[i]`` (same shape; None = run that site normally) and returns
    ``(target, maps)`` with the replacements in place. ``repeat=r`` runs the batch tiled r
    times along dim 0 (replacements then have r times the batch), the labels tiled alike.
    """

    def __call__(
        self, replacements: Optional[Sequence[Optional[Tensor]]] = None, point: str = "attended",
        repeat: int = 1,
    ) -> Tuple[Tensor, List[Optional[Tensor]]]:
        ...


# A method returns one attribution per map (None for a site that did not run), or None for
# "no attribution": the candidate region is then drawn at random (the RD ablation), which
# needs no first pass at all.
AttributionMethod = Callable[..., Optional[List[Optional[Tensor]]]]

ATTRIBUTION_REGISTRY: Dict[str, AttributionMethod] = {}


def register_attribution(name: str):
    """Decorator: make ``--addrop-attribution NAME`` use this function.

    The function is called as ``fn(forward, steps=..., grad=..., batch=...)`` (``grad(target, maps)`` is
    :func:`gradients` or a loss-scaled equivalent for low-precision models) and returns a
    list with one tensor per recorded map (same shape), or None for a random region.
    """

    def wrap(fn: AttributionMethod) -> AttributionMethod:
        if name in ATTRIBUTION_REGISTRY and ATTRIBUTION_REGISTRY[name] is not fn:
            raise ValueError(f"attribution method {name!r} is already registered")
        ATTRIBUTION_REGISTRY[name] = fn
        return fn

    return wrap


def get_attribution(name: str) -> AttributionMethod:
    try:
        return ATTRIBUTION_REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown attribution method {name!r}; known: {sorted(ATTRIBUTION_REGISTRY)}"
        ) from None


def gradients(target: Tensor, maps: Sequence[Optional[Tensor]], retain_graph: bool = False) -> List[Optional[Tensor]]:
    """d target / d map for every map in ONE autograd call; no parameter gradients, graph freed.

    A map the target does not depend on gets zeros; a None map (a site that did not run)
    gets None.
    """
    live = [m for m in maps if m is not None]
    if not live:  # no site ran (LayerDrop skipped them all)
        return [None] * len(maps)
    grads = iter(torch.autograd.grad(target, live, allow_unused=True, retain_graph=retain_graph))
    out: List[Optional[Tensor]] = []
    for m in maps:
        if m is None:
            out.append(None)
        else:
            g = next(grads)
            out.append(torch.zeros_like(m) if g is None else g)
    return out


LOW_PRECISION = (torch.float16, torch.bfloat16)


class ScaledGradients:
    """:func:`gradients` for half-precision models: the target is scaled before the backward.

    In fp16 the small gradients at the attention maps underflow to exact zeros, and tied
    zeros are all candidates, which silently turns AD-DROP into random dropout. The ranking
    per row is scale-invariant, so the target is multiplied by a dynamic scale (as a loss
    scaler does): halved and retried while any gradient overflows, doubled after
    ``growth_interval`` clean calls. Results come back in float32, divided by the scale.
    float32 maps are differentiated unscaled (bit-identical to :func:`gradients`).
    """

    def __init__(self, init_scale: float = 2.0 ** 15, growth_interval: int = 100, min_scale: float = 2.0 ** -24):
        self.scale = float(init_scale)
        self.growth_interval = growth_interval
        self.min_scale = min_scale
        self.clean = 0

    def __call__(self, target: Tensor, maps: Sequence[Optional[Tensor]]) -> List[Optional[Tensor]]:
        if not any(m is not None and m.dtype in LOW_PRECISION for m in maps):
            return gradients(target, maps)
        target = target.float()
        while True:
            grads = gradients(target * self.scale, maps, retain_graph=True)
            if all(g is None or bool(torch.isfinite(g).all()) for g in grads):
                break
            if self.scale / 2 < self.min_scale:
                raise FloatingPointError("AD-DROP: attribution gradients are not finite at any scale")
            self.scale /= 2
            self.clean = 0
        scale = self.scale
        self.clean += 1
        if self.clean >= self.growth_interval:
            self.scale *= 2
            self.clean = 0
        return [None if g is None else g.float() / scale for g in grads]


@register_attribution("ga")
def gradient_attribution(forward: AttributionForward, grad=gradients, **_) -> List[Optional[Tensor]]:
    """Eq. 5 / Eq. 8: the plain gradient of the target at the maps (after attention dropout)."""
    with torch.enable_grad():
        target, maps = forward(None)
        return grad(target, maps)


@register_attribution("ga_per_layer")
def per_layer_gradient_attribution(forward: AttributionForward, grad=gradients, **_) -> List[Optional[Tensor]]:
    """GA as the reference code computes it: one forward, then one autograd call per map
    (``retain_graph`` between them). Same values as ``ga``, k backward passes instead of
    one: the baseline of the step benchmark and a reference for tests, not a training choice.
    """
    with torch.enable_grad():
        target, maps = forward(None)
        live = [i for i, m in enumerate(maps) if m is not None]
        out: List[Optional[Tensor]] = [None] * len(maps)
        for n, i in enumerate(live):
            (g,) = torch.autograd.grad(target, [maps[i]], allow_unused=True, retain_graph=n < len(live) - 1)
            out[i] = torch.zeros_like(maps[i]) if g is None else g
        return out


@register_attribution("iga")
def integrated_gradient_attribution(
    forward: AttributionForward, steps: int = 20, grad=gradients, batch: int = 1, **_
) -> List[Optional[Tensor]]:
    """Eq. 3, per layer: B_l = A_l/m * sum_k dF(k/m A_l)/d(k/m A_l).

    For each site l, m passes replace l's map by k/m A_l while every other site runs
    normally (Hao et al.'s self-attention attribution); the gradient is taken w.r.t. the
    scaled map fed to the model (not alpha times the gradient at A). The maps A come from
    one unscaled pass without a graph; the pseudo labels stay those of that pass. The
    model's train/eval mode is left as it is. Cost: 1 + (number of sites) x m passes; with
    ``batch`` > 1 that many alpha steps share one pass over a tiled batch
    (``forward(..., repeat=r)``), the same number of examples in fewer, larger passes.
    """
    if steps < 1:
        raise ValueError(f"integrated gradients needs steps >= 1, got {steps}")
    with torch.no_grad():
        _, maps = forward(None)
    base = [None if m is None else m.detach() for m in maps]
    out: List[Optional[Tensor]] = [None] * len(base)
    with torch.enable_grad():
        for i, a in enumerate(base):
            if a is None:
                continue
            total = torch.zeros_like(a, dtype=torch.float32)
            for first in range(1, steps + 1, max(1, batch)):
                ks = range(first, min(first + max(1, batch), steps + 1))
                replacements: List[Optional[Tensor]] = [None] * len(base)
                replacements[i] = torch.cat([a * (k / steps) for k in ks]).requires_grad_(True)
                if len(ks) == 1:
                    target, _ = forward(replacements)
                else:
                    target, _ = forward(replacements, repeat=len(ks))
                g = grad(target, [replacements[i]])[0]
                total.add_(g.view(len(ks), *a.shape).sum(0))
            out[i] = a.float() * total / steps
    return out


@register_attribution("aa")
def attention_attribution(forward: AttributionForward, **_) -> List[Optional[Tensor]]:
    """The AA ablation: the attention weights themselves (before attention dropout)."""
    with torch.no_grad():
        _, maps = forward(None, point="softmax")
    return [None if m is None else m.detach() for m in maps]


@register_attribution("rd")
def random_attribution(forward: AttributionForward, **_) -> None:
    """The RD ablation: a random candidate region; no first pass is run."""
    return None
