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


def pseudo_labels(scores: Tensor) -> Tensor:
    """Eq. 4: the arg-max class, detached (labels are fixed, never differentiated)."""
    return scores.detach().argmax(dim=-1)


# ---------------------------------------------------------------------------- methods


class AttributionForward(Protocol):
    """What an attribution method may call.

    ``forward(None)`` runs the model once with the selected attention maps recorded and
    returns ``(target, maps)``: the scalar target (pseudo labels fixed at the first call) and
    the per-module post-softmax, pre-dropout probability maps, part of the graph.
    ``forward(replacements)`` runs the model with each selected map *replaced* by the given
    tensor (same shapes, same order) and returns ``(target, replacements)``.
    """

    def __call__(self, replacements: Optional[Sequence[Tensor]] = None) -> Tuple[Tensor, List[Tensor]]:
        ...


# A method returns one attribution per map, or None for "no attribution": the candidate
# region is then drawn at random (the RD ablation), which needs no first pass at all.
AttributionMethod = Callable[..., Optional[List[Tensor]]]

ATTRIBUTION_REGISTRY: Dict[str, AttributionMethod] = {}


def register_attribution(name: str):
    """Decorator: make ``--addrop-attribution NAME`` use this function.

    The function is called as ``fn(forward, steps=..., generator=...)`` and returns a list
    with one tensor per recorded map (same shape), or None for a random region.
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


def gradients(target: Tensor, maps: Sequence[Tensor]) -> List[Tensor]:
    """d target / d map for every map in ONE autograd call; no parameter gradients, graph freed.

    A map the target does not depend on gets zeros.
    """
    grads = torch.autograd.grad(target, list(maps), allow_unused=True)
    return [torch.zeros_like(m) if g is None else g for m, g in zip(maps, grads)]


@register_attribution("ga")
def gradient_attribution(forward: AttributionForward, **_) -> List[Tensor]:
    """Eq. 5 / Eq. 8: the plain gradient of the target at the maps."""
    with torch.enable_grad():
        target, maps = forward(None)
        return gradients(target, maps)


@register_attribution("iga")
def integrated_gradient_attribution(
    forward: AttributionForward, steps: int = 20, **_
) -> List[Tensor]:
    """Eq. 3: B = A/m * sum_k dF(k/m A)/d(k/m A), all selected maps scaled together.

    The gradient is taken w.r.t. the scaled map fed to the model (not alpha times the
    gradient at A). The maps A come from one unscaled pass without a graph; the pseudo
    labels stay those of that pass. The model's train/eval mode is left as it is.
    """
    if steps < 1:
        raise ValueError(f"integrated gradients needs steps >= 1, got {steps}")
    with torch.no_grad():
        _, maps = forward(None)
    base = [m.detach() for m in maps]
    total = [torch.zeros_like(a) for a in base]
    with torch.enable_grad():
        for k in range(1, steps + 1):
            alpha = k / steps
            scaled = [(alpha * a).requires_grad_(True) for a in base]
            target, _ = forward(scaled)
            for acc, g in zip(total, gradients(target, scaled)):
                acc.add_(g)
    return [a * t / steps for a, t in zip(base, total)]


@register_attribution("aa")
def attention_attribution(forward: AttributionForward, **_) -> List[Tensor]:
    """The AA ablation: the attention probabilities themselves (before attention dropout)."""
    with torch.no_grad():
        _, maps = forward(None)
    return [m.detach() for m in maps]


@register_attribution("rd")
def random_attribution(forward: AttributionForward, **_) -> None:
    """The RD ablation: a random candidate region; no first pass is run."""
    return None
