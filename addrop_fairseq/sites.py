"""Where AD-DROP acts: attention *sites*, and the record / mask protocol every seam drives.

Pure torch (no fairseq, no transformers). A site is one attention module of a model; a
*seam* is the code that makes that module's attention maps reachable: the fairseq
``MultiheadAttention`` override (:mod:`addrop_fairseq.fairseq_seam`) or the HuggingFace
attention function (:mod:`addrop_fairseq.hf.seam`). Both call the same hooks:

* ``hook.scores(module, scores[B,H,T,S], valid[B,1|H,T,S])`` before softmax, when
  ``hook.needs_scores`` (masking: :class:`Masker`);
* ``hook.probs(module, probs[B,H,T,S])`` before attention dropout, when ``hook.needs_probs``
  (recording the attention weights: AA);
* ``hook.attended(module, probs[B,H,T,S])`` after attention dropout, on the tensor that
  multiplies V, when ``hook.needs_attended`` (recording for GA and IGA);

continuing with what each returns.

Pass 2 through fused attention: a hook whose only effect is a drop mask on the pre-softmax
scores (:class:`Masker`, AD-DROP's masking pass) says so with ``fused = True`` and offers
``drop(module, valid, shape)``. A seam then computes that pass with
:func:`masked_attention` (``torch.nn.functional.scaled_dot_product_attention`` with the
padding and drop masks as one additive mask): the same result, in less time and memory on a
GPU, since no [B, H, T, S] probability tensor is kept for the backward pass. Recording
(pass 1: its attribution is the gradient at the probabilities) and score editing stay eager.
``ADDROP_PASS2_ATTENTION=eager`` in the environment, or :func:`pass2_attention`, forces
eager for pass 2 too (debugging, or comparing the two).

The only thing AD-DROP keeps on a foreign module is one attribute, ``module._addrop``, a
:class:`SiteState` (set by :func:`install`): the site's index and the hook while a
:func:`recording` / :func:`masking` context is open (None otherwise: the module is idle), plus
what a seam needs to remember about the module.
"""
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
from torch import Tensor, nn

from .masks import drop_fill_value

ATTENTION_KINDS = ("encoder-self", "decoder-self", "encoder-decoder")

STATE = "_addrop"  # the one attribute AD-DROP sets on an attention module

PASS2_MODES = ("auto", "eager")
PASS2_ENV = "ADDROP_PASS2_ATTENTION"


def _checked_mode(mode: str, where: str) -> str:
    if mode not in PASS2_MODES:
        raise ValueError(f"{where} must be one of {PASS2_MODES}, got {mode!r}")
    return mode


_pass2_mode = _checked_mode(os.environ.get(PASS2_ENV, "auto"), PASS2_ENV)


def set_pass2_attention(mode: str) -> str:
    """Pass 2's attention for masking contexts opened from now on: ``"auto"`` (fused where the
    seam can, see the module docstring) or ``"eager"``. Returns the previous mode."""
    global _pass2_mode
    previous, _pass2_mode = _pass2_mode, _checked_mode(mode, "pass 2 attention")
    return previous


@contextmanager
def pass2_attention(mode: str):
    """Within the block, masking contexts use ``mode`` (``"auto"`` or ``"eager"``)."""
    previous = set_pass2_attention(mode)
    try:
        yield
    finally:
        set_pass2_attention(previous)


def fusable(hook) -> bool:
    """Does ``hook`` only drop keys before softmax (so a seam may compute fused attention)?"""
    return bool(getattr(hook, "fused", False))


def masked_attention(query: Tensor, key: Tensor, value: Tensor, bias: Optional[Tensor], drop: Tensor,
                     dropout_p: float = 0.0, scale: Optional[float] = None) -> Tensor:
    """Fused attention [B, H, T, D] with ``bias`` (additive [B|1, H|1, T, S] in ``query``'s
    dtype, or None) plus the drop mask ``drop`` (bool [B, H, T, S], True = dropped).

    Blocked and dropped entries get the dtype's most negative finite number, as the eager
    path's fill: never -inf (NaN). A row with no key left (a sequence of padding only) is
    uniform in the eager path; SDPA's forward agrees but its backward does not (torch 2.13's
    CPU kernel: the row's log-sum-exp is lost at that magnitude), so a call with such a row is computed eagerly,
    exactly as the eager seams do (one host sync per call to find out). The mask's last
    dimension is allocated padded to a multiple of 16 (then sliced), the alignment the
    memory-efficient CUDA kernel wants.
    """
    device = query.device.type
    dtype = query.dtype
    if torch.is_autocast_enabled(device) and dtype in (torch.float32, torch.float64):
        # autocast would cast an fp32 mask's minimum to -inf in bf16/fp16: build it in that dtype
        dtype = torch.get_autocast_dtype(device)
        query, key, value = query.to(dtype), key.to(dtype), value.to(dtype)
    bsz, heads, tgt_len, src_len = drop.shape
    padded = -(-src_len // 16) * 16
    mask = query.new_zeros(bsz, heads, tgt_len, padded, dtype=dtype)[..., :src_len]
    if bias is not None:
        mask += bias if bias.dtype == dtype else finite_bias(bias, dtype)
    neg = torch.finfo(dtype).min
    mask.masked_fill_(drop, neg)
    if bool((mask == neg).all(-1).any()):
        scores = torch.matmul(query, key.transpose(-1, -2)) * (query.size(-1) ** -0.5 if scale is None else scale)
        probs = nn.functional.softmax(scores + mask, dim=-1)
        return torch.matmul(nn.functional.dropout(probs, dropout_p, training=dropout_p > 0), value)
    return nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=mask,
                                                      dropout_p=dropout_p, scale=scale)


def finite_bias(mask: Tensor, dtype: torch.dtype, blocked: Optional[Tensor] = None) -> Tensor:
    """An additive mask in ``dtype`` with no -inf: entries at or below ``dtype``'s minimum
    (-inf, or another dtype's minimum) and those ``blocked`` (bool) become that minimum."""
    neg = torch.finfo(dtype).min
    if mask.dtype == torch.bool:
        out = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, neg)
    else:
        out = mask.float().clamp(min=neg).to(dtype)
    if blocked is not None:
        out = out.masked_fill(blocked, neg)
    return out


@dataclass
class SiteState:
    """What AD-DROP keeps on an attention module (``module._addrop``)."""

    index: int = -1  # position in the sites of the open context
    hook: Any = None  # the open context's Recorder / Masker; None = idle
    self_attention: bool = True  # HF seam: padded query rows are invalid (no cache)
    fallback: str = "sdpa"  # HF seam: the implementation used while idle
    masks: Any = None  # fairseq seam: (key_padding_mask, attn_mask) of the running forward


def state(module: nn.Module) -> Optional[SiteState]:
    return getattr(module, STATE, None)


class Seam:
    """How a kind of attention module is switched on for a context (default: nothing to do,
    the module's attention code reads ``module._addrop.hook`` itself)."""

    def attach(self, module: nn.Module) -> Any:
        return None

    def detach(self, module: nn.Module, undo: Any) -> None:
        pass


@dataclass
class AttentionSite:
    """One attention module AD-DROP may act on."""

    name: str
    kind: str
    layer: int
    module: nn.Module
    seam: Seam = field(default_factory=Seam, repr=False)


def default_kinds(found: Sequence[AttentionSite]) -> List[str]:
    """``--addrop-attention auto``: encoder self-attention, as the reference code does.

    Its translation code masks the encoder's self-attention only (the decoder masking is
    commented out); classification and tagging models have nothing else. A model without an
    encoder stack gets its decoder self-attention.
    """
    present = {s.kind for s in found}
    if "encoder-self" in present or "decoder-self" not in present:
        return ["encoder-self"]
    return ["decoder-self"]


def select_from(
    found: Sequence[AttentionSite], kinds: Optional[Sequence[str]], layers: Optional[Sequence[int]], model_name: str
) -> List[AttentionSite]:
    """The sites of ``kinds`` (None: :func:`default_kinds`) at ``layers`` (None: all) among
    ``found``; a ValueError says what the model lacks."""
    if not found:
        raise ValueError(f"{model_name} has no attention module AD-DROP can reach")
    kinds = default_kinds(found) if kinds is None else kinds
    have = sorted({s.kind for s in found}, key=ATTENTION_KINDS.index)
    selected = []
    for kind in kinds:
        if kind not in ATTENTION_KINDS:
            raise ValueError(f"unknown attention kind {kind!r}; choose from {ATTENTION_KINDS}")
        of_kind = [s for s in found if s.kind == kind]
        if not of_kind:
            raise ValueError(f"{model_name} has no {kind} attention (it has {', '.join(have)})")
        n_layers = max(s.layer for s in of_kind) + 1
        if layers is not None:
            bad = [i for i in layers if i >= n_layers or i < 0]
            if bad:
                raise ValueError(
                    f"layer(s) {bad} out of range for {kind} attention with {n_layers} layers (0-{n_layers - 1})"
                )
        selected += [s for s in of_kind if layers is None or s.layer in layers]
    return selected


def install(sites: Sequence[AttentionSite]) -> None:
    """Give each site's module its idle :class:`SiteState`; the modules stay stock.

    Refuses a module that serves several sites (one attention module shared by layers, as
    in ALBERT): its maps would overwrite each other.
    """
    seen: Dict[int, str] = {}
    for site in sites:
        if id(site.module) in seen:
            raise ValueError(
                f"{site.name} and {seen[id(site.module)]} are one shared attention module; "
                "models that reuse an attention module across layers are not supported"
            )
        seen[id(site.module)] = site.name
        if state(site.module) is None:
            setattr(site.module, STATE, SiteState(self_attention=site.kind != "encoder-decoder"))


# ---------------------------------------------------------------------------- hooks


class Recorder:
    """Recording mode: keeps each site's probability map [B, H, T, S] (or substitutes one).

    ``point="attended"`` records the probabilities after attention dropout (the tensor that
    multiplies V: what GA and IGA differentiate); ``point="softmax"`` the ones before it (AA).
    ``replacements[i]`` (a tensor, or None to run normally) replaces site i's map at that
    point. A site that did not run (e.g. skipped by LayerDrop) records None.
    """

    needs_scores = False
    POINTS = ("attended", "softmax")

    def __init__(self, n_sites: int, replacements: Optional[Sequence[Optional[Tensor]]] = None,
                 point: str = "attended"):
        if point not in self.POINTS:
            raise ValueError(f"point must be one of {self.POINTS}, got {point!r}")
        self.maps: List[Optional[Tensor]] = [None] * n_sites
        self.replacements = replacements
        self.needs_probs = point == "softmax"
        self.needs_attended = point == "attended"

    def _take(self, module, probs: Tensor) -> Tensor:
        idx = state(module).index
        if self.maps[idx] is not None:
            raise RuntimeError(
                f"attention site {idx} ran twice in one forward pass; models that call one "
                "attention module several times (shared layers) are not supported"
            )
        if self.replacements is not None and self.replacements[idx] is not None:
            probs = self.replacements[idx].to(probs.dtype)
        self.maps[idx] = probs
        return probs

    probs = _take
    attended = _take

    def result(self) -> List[Optional[Tensor]]:
        """One map per site, None for a site that did not run."""
        return list(self.maps)


# make_drop(site_index, valid[B, H, T, S]) -> bool drop mask [B, H, T, S]; see masks.DropMasks
DropMaker = Callable[[int, Tensor], Tensor]


class Masker:
    """Masking mode: fills the keys ``make_drop`` picks with a large finite negative score.

    Attention code calls ``scores(module, scores[B, H, T, S], valid[B, 1 or H, T, S])`` with
    the pre-softmax scores and the keys each query may attend, and continues with the result.
    ``query_valid[i]`` ([B, T] or None) marks site i's real query rows where the module
    cannot tell them itself (encoder-decoder attention does not see the decoder's padding).

    ``fused`` (from :func:`pass2_attention` when the context opens): seams may skip
    ``scores`` and compute fused attention with :meth:`drop`'s mask instead; the mask is the
    same tensor either way.
    """

    needs_scores = True
    needs_probs = False
    needs_attended = False

    def __init__(self, make_drop: DropMaker, query_valid: Optional[Sequence[Optional[Tensor]]] = None,
                 fused: Optional[bool] = None):
        self.make_drop = make_drop
        self.query_valid = query_valid
        self.fused = _pass2_mode == "auto" if fused is None else bool(fused)

    def drop(self, module, valid: Tensor, shape) -> Tensor:
        """The bool drop mask [B, H, T, S] (``shape``) of ``module``'s site, given its valid keys."""
        idx = state(module).index
        rows = self.query_valid[idx] if self.query_valid is not None else None
        if rows is not None:
            valid = valid & rows.to(valid.device)[:, None, :, None]
        return self.make_drop(idx, valid.expand(shape))

    def scores(self, module, scores: Tensor, valid: Tensor) -> Tensor:
        return scores.masked_fill(self.drop(module, valid, scores.shape), drop_fill_value(scores.dtype))


class ScoreEditor:
    """Editing mode: ``edit(site_index, scores[B, H, T, S], valid[B, H, T, S])`` returns the
    pre-softmax scores the attention continues with (the attention regularizers)."""

    needs_scores = True
    needs_probs = False
    needs_attended = False

    def __init__(self, edit: Callable[[int, Tensor, Tensor], Tensor]):
        self.edit = edit

    def scores(self, module, scores: Tensor, valid: Tensor) -> Tensor:
        return self.edit(state(module).index, scores, valid.expand(scores.shape))


@contextmanager
def _driving(sites: Sequence[AttentionSite], hook):
    for site in sites:
        if state(site.module) is None:
            raise RuntimeError(f"AD-DROP is not installed on {site.name}; call install() first")
    undo = []
    try:
        for i, site in enumerate(sites):
            st = state(site.module)
            st.index, st.hook = i, hook
            undo.append(site.seam.attach(site.module))
        yield hook
    finally:
        for site, u in zip(sites, undo):
            state(site.module).hook = None
            site.seam.detach(site.module, u)


@contextmanager
def recording(sites: Sequence[AttentionSite], replacements: Optional[Sequence[Optional[Tensor]]] = None,
              point: str = "attended"):
    """Within the block, forward passes record (or substitute) the sites' probability maps
    at ``point`` (see :class:`Recorder`)."""
    with _driving(sites, Recorder(len(sites), replacements, point)) as rec:
        yield rec


@contextmanager
def masking(sites: Sequence[AttentionSite], make_drop: DropMaker,
            query_valid: Optional[Sequence[Optional[Tensor]]] = None, fused: Optional[bool] = None):
    """Within the block, forward passes drop the keys ``make_drop`` picks at each site
    (``fused``: None follows :func:`pass2_attention`)."""
    with _driving(sites, Masker(make_drop, query_valid, fused)) as masker:
        yield masker


@contextmanager
def editing(sites: Sequence[AttentionSite], edit: Callable[[int, Tensor, Tensor], Tensor]):
    """Within the block, forward passes replace each site's pre-softmax scores by
    ``edit(site_index, scores, valid)`` (see :class:`ScoreEditor`)."""
    with _driving(sites, ScoreEditor(edit)) as editor:
        yield editor

