"""AD-DROP on HuggingFace attention, through transformers' own extension point.

transformers (>= 4.48, 5.x) routes the attention of BERT, RoBERTa, ELECTRA, Marian (and
most current architectures) through ``ALL_ATTENTION_FUNCTIONS[config._attn_implementation]``.
:func:`register` adds one implementation named ``"addrop"``:

* ``AttentionInterface.register("addrop", addrop_attention_forward)``;
* ``AttentionMaskInterface.register("addrop", ALL_MASK_ATTENTION_FUNCTIONS["eager"])``: the
  mask function under the same name, so the model builds the usual additive float mask
  (``0`` = may attend, dtype minimum = may not) for it. Without it transformers builds *no*
  mask for an unknown implementation and padding is silently attended.

The function receives the attention module first. While the module is idle (no hook in
its :class:`~addrop_fairseq.sites.SiteState`) it hands the call to the implementation the
model used before (``sdpa`` or ``eager``), so outputs are the stock ones. With a hook (set
by the criterion's :func:`addrop_fairseq.sites.recording` / ``masking`` contexts on the
sites :func:`discover` returns) it computes eager attention with the seams of the fairseq
override:

* ``scores = hook.scores(module, scores[B,H,T,S], valid[B,1,T,S])`` on the masked
  pre-softmax scores (``needs_scores``), ``valid`` being the keys the mask allows (and, for
  self-attention, no key at all for a padded query);
* ``probs = hook.probs(module, probs[B,H,T,S])`` on the post-softmax, pre-dropout
  probabilities (``needs_probs``), continuing with what it returns;
* ``dropped = hook.attended(module, dropped[B,H,T,S])`` on the probabilities after attention
  dropout, the tensor that multiplies V (``needs_attended``; what GA and IGA differentiate).

Pass 2 fused: when the hook only drops keys (:func:`~addrop_fairseq.sites.fusable`: AD-DROP's
masking pass) the function computes ``scaled_dot_product_attention`` with the model's mask
and the drop mask as one additive mask (:func:`~addrop_fairseq.sites.masked_attention`),
attention dropout included: the same output as the eager seams up to rounding, without the
[B, H, T, S] probabilities kept for backward. Recording passes, probability hooks, score
editors, ``output_attentions=True`` and ``ADDROP_PASS2_ATTENTION=eager`` take the eager path.

A model is switched with ``model.set_attn_implementation("addrop")`` only when AD-DROP
asks for its sites; until then (and in ``fairseq-generate``) it is untouched. The fairseq
wrappers ask through :class:`HFSitesMixin`, which gives them the ``addrop_attention_sites``
``--criterion addrop_ce`` calls.
"""
import logging
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor, nn

from ..sites import (ATTENTION_KINDS, STATE, AttentionSite, SiteState, finite_bias, fusable, masked_attention,
                     select_from, state)
from . import _compat

NAME = "addrop"

logger = logging.getLogger(__name__)

_registered = False

# keyword arguments of attention variants our eager path does not implement
_UNSUPPORTED = ("sliding_window", "softcap", "s_aux", "sinks", "position_bias")


def register() -> None:
    """Register ``"addrop"`` as an attention and an attention-mask implementation (idempotent)."""
    global _registered
    if _registered:
        return
    tf = _compat.transformers()
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

    tf.AttentionInterface.register(NAME, addrop_attention_forward)
    tf.AttentionMaskInterface.register(NAME, ALL_MASK_ATTENTION_FUNCTIONS["eager"])
    _registered = True


def valid_from_mask(attention_mask: Optional[Tensor], query: Tensor, key: Tensor, self_attention: bool) -> Tensor:
    """[B, 1, T, S] True where a query may attend a key under ``attention_mask``.

    ``attention_mask`` is what transformers passes to an attention function: None (no
    restriction), a bool mask (True = attend) or an additive float mask whose blocked
    entries are at (or near) the dtype's minimum. For self-attention without a cache
    (T == S), a query that may not attend itself is padding: its whole row is invalid.
    """
    bsz, tgt_len, src_len = query.size(0), query.size(2), key.size(2)
    if attention_mask is None:
        return torch.ones(bsz, 1, tgt_len, src_len, dtype=torch.bool, device=query.device)
    mask = attention_mask[:, :, :, :src_len]
    if mask.dtype == torch.bool:
        valid = mask
    else:
        valid = mask > torch.finfo(mask.dtype).min / 2
    valid = valid.expand(bsz, -1, tgt_len, src_len)
    if valid.size(1) != 1:  # a per-head mask [B, H, T, S] is handed on as it is
        return valid
    if self_attention and tgt_len == src_len:
        real_query = valid.diagonal(dim1=-2, dim2=-1)  # [B, 1, T]
        valid = valid & real_query.unsqueeze(-1)
    return valid


def _repeat_kv(x: Tensor, n_rep: int) -> Tensor:
    if n_rep == 1:
        return x
    b, h, s, d = x.shape
    return x[:, :, None, :, :].expand(b, h, n_rep, s, d).reshape(b, h * n_rep, s, d)


def eager_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, hook=None):
    """Eager attention ([B, H, T, D] inputs, output [B, T, H, D]) with the AD-DROP seams."""
    n_rep = query.size(1) // key.size(1)
    key, value = _repeat_kv(key, n_rep), _repeat_kv(value, n_rep)
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        mask = attention_mask[:, :, :, : key.size(2)]
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + mask
    if hook is not None and hook.needs_scores:
        valid = valid_from_mask(attention_mask, query, key, state(module).self_attention)
        scores = hook.scores(module, scores, valid)
    probs = nn.functional.softmax(scores, dim=-1)
    if hook is not None and hook.needs_probs:
        probs = hook.probs(module, probs)
    dropped = nn.functional.dropout(probs, p=dropout, training=module.training)
    if hook is not None and hook.needs_attended:
        dropped = hook.attended(module, dropped)
    out = torch.matmul(dropped, value).transpose(1, 2).contiguous()
    return out, probs


def addrop_attention_forward(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """The ``"addrop"`` attention implementation (see the module docstring)."""
    st = state(module)
    hook = st.hook if st is not None else None
    if isinstance(hook, Probe):  # site discovery: note the call, run stock
        hook.calls.append((module, query.size(2), key.size(2)))
        hook = None
    if hook is None:
        stock = st.fallback if st is not None else "sdpa"
        if stock == "eager":
            return eager_attention(module, query, key, value, attention_mask, scaling, dropout)
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

        return ALL_ATTENTION_FUNCTIONS[stock](
            module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
        )
    used = [k for k in _UNSUPPORTED if kwargs.get(k) is not None]
    if used:
        raise NotImplementedError(
            f"AD-DROP's attention on {type(module).__name__} got {used}: attention variants with "
            "these arguments are not implemented by the addrop attention function"
        )
    if fusable(hook) and not kwargs.get("output_attentions"):
        return fused_attention(module, query, key, value, attention_mask, scaling, dropout, hook)
    return eager_attention(module, query, key, value, attention_mask, scaling, dropout, hook=hook)


def fused_attention(module, query, key, value, attention_mask, scaling, dropout, hook):
    """Pass 2 through ``scaled_dot_product_attention``: the model's mask plus ``hook.drop``'s
    mask (built from the same valid keys as the eager path's), attention dropout in the kernel.
    Returns (output [B, T, H, D], None) as transformers' sdpa implementation does."""
    n_rep = query.size(1) // key.size(1)
    key, value = _repeat_kv(key, n_rep), _repeat_kv(value, n_rep)
    shape = (query.size(0), query.size(1), query.size(2), key.size(2))
    valid = valid_from_mask(attention_mask, query, key, state(module).self_attention)
    drop = hook.drop(module, valid, shape)
    bias = None
    if attention_mask is not None:
        bias = finite_bias(attention_mask[:, :, :, : key.size(2)], query.dtype)
    out = masked_attention(query, key, value, bias, drop, dropout if module.training else 0.0,
                           scaling if scaling is not None else query.size(-1) ** -0.5)
    return out.transpose(1, 2).contiguous(), None


# ------------------------------------------------------------------------------ sites


def switch(hf_model: nn.Module) -> None:
    """Make ``hf_model`` use the ``"addrop"`` implementation, or raise a ValueError saying why not."""
    register()
    current = hf_model.config._attn_implementation
    if current == NAME:
        return
    try:
        hf_model.set_attn_implementation(NAME)
    except Exception as e:  # transformers' own refusal, e.g. an unknown implementation
        raise ValueError(
            f"{type(hf_model).__name__} cannot switch to the '{NAME}' attention implementation ({e}); "
            "AD-DROP needs an architecture whose attention goes through transformers' AttentionInterface"
        ) from e
    if hf_model.config._attn_implementation != NAME:
        raise ValueError(
            f"{type(hf_model).__name__} ({hf_model.config.model_type}) does not route its attention "
            "through transformers' AttentionInterface (set_attn_implementation is not supported), "
            "so AD-DROP cannot reach its attention maps"
        )
    setattr(hf_model, STATE, SiteState(fallback=current))  # the implementation it had


def stock_implementation(hf_model: nn.Module) -> str:
    """The attention implementation ``hf_model`` used before :func:`switch` (sdpa if unknown)."""
    st = state(hf_model)
    return st.fallback if st is not None else "sdpa"


class Probe:
    """Site discovery's hook: every attention call while :func:`probe` runs, as
    (module, query length, key length). It lives in the probed model's own modules'
    :class:`SiteState` (nothing module-global), so probing one model never sees another's
    calls; the attention function runs stock while it is the hook."""

    needs_scores = needs_probs = needs_attended = False

    def __init__(self):
        self.calls: List[tuple] = []


def probe(hf_model: nn.Module, run) -> List[tuple]:
    """(module, query length, key length) of every attention call of ``hf_model`` while
    ``run()`` runs (in eval mode, without gradients).

    Every submodule of ``hf_model`` carries the probe as its ``SiteState`` hook for the
    duration (a transient state where it had none); states are restored afterwards.
    """
    hook, fallback = Probe(), stock_implementation(hf_model)
    saved = []
    for module in hf_model.modules():
        if module is hf_model:
            continue
        st = state(module)
        saved.append((module, st, None if st is None else st.hook))
        if st is None:
            setattr(module, STATE, SiteState(hook=hook, fallback=fallback))
        else:
            st.hook = hook
    was_training = hf_model.training
    hf_model.eval()
    try:
        with torch.no_grad():
            run()
        return hook.calls
    finally:
        for module, st, old in saved:
            if st is None:
                delattr(module, STATE)
            else:
                st.hook = old
        hf_model.train(was_training)


def discover(hf_model: nn.Module, run, encoder: Optional[nn.Module] = None, src_len: int = 0,
             prefix: str = "hf.") -> List[AttentionSite]:
    """Every attention module the forward ``run()`` calls, as AD-DROP sites (in call order).

    ``encoder``: the encoder stack of an encoder-decoder model (its calls are encoder-self;
    a decoder call whose keys number ``src_len`` is encoder-decoder, any other
    decoder-self). Without ``encoder`` every call is encoder-self. Layers are numbered in
    call order within a kind. Each module gets its idle :class:`SiteState` (whether it is
    self-attention, and the implementation it falls back to while idle).
    """
    switch(hf_model)
    calls = probe(hf_model, run)
    if not calls:
        raise ValueError(
            f"{type(hf_model).__name__} ({hf_model.config.model_type}): no attention call went through "
            f"transformers' AttentionInterface with the '{NAME}' implementation, so AD-DROP cannot "
            "reach its attention maps (this architecture computes attention in its own code)"
        )
    names = {id(m): n for n, m in hf_model.named_modules()}
    in_encoder = {id(m) for m in encoder.modules()} if encoder is not None else None
    stock = stock_implementation(hf_model)
    sites, seen, count = [], set(), {k: 0 for k in ATTENTION_KINDS}
    for module, q_len, kv_len in calls:
        if id(module) in seen:
            raise ValueError(
                f"{type(hf_model).__name__} ({hf_model.config.model_type}) calls the attention module "
                f"{names.get(id(module), type(module).__name__)} several times in one forward pass "
                "(layers sharing parameters, as in ALBERT): AD-DROP needs one attention map per module"
            )
        seen.add(id(module))
        if in_encoder is None or id(module) in in_encoder:
            kind = "encoder-self"
        elif kv_len == src_len and q_len != src_len:
            kind = "encoder-decoder"
        else:
            kind = "decoder-self"
        setattr(module, STATE, SiteState(self_attention=kind != "encoder-decoder", fallback=stock))
        sites.append(AttentionSite(prefix + names.get(id(module), type(module).__name__), kind, count[kind], module))
        count[kind] += 1
    return sites


def kinds_of(sites: Sequence[AttentionSite]) -> Dict[str, int]:
    out: Dict[str, int] = {}
    for s in sites:
        out[s.kind] = out.get(s.kind, 0) + 1
    return out


# ---------------------------------------------------------------------- the wrappers' sites

PROBE_SOURCE_LENGTH = 3
PROBE_TARGET_LENGTH = 2
"""Lengths of the probe forward pass that discovers a wrapper's sites: its source, and the
decoder input of an encoder-decoder model. :func:`discover` (``src_len=PROBE_SOURCE_LENGTH``)
tells a decoder module's attention by lengths alone: keys as many as the source and queries
not, encoder-decoder; otherwise decoder-self. So the two must differ: were they equal,
encoder-decoder attention would be taken for decoder self-attention."""


class HFSitesMixin:
    """AD-DROP sites of the HF model a fairseq wrapper holds: ``addrop_attention_sites``,
    what ``--criterion addrop_ce`` asks a model for.

    The wrapper provides ``hf`` (the HF model), ``vocab_map`` (:class:`.vocab.VocabMap`),
    ``device_anchor`` (a tensor on the model's device) and ``_probe_run()``: one forward pass
    of ``hf`` on :meth:`_probe_source` (and, encoder-decoder, a decoder input of
    :data:`PROBE_TARGET_LENGTH`). Sites are discovered on first use and kept.
    """

    _discovered_sites: Optional[List[AttentionSite]] = None  # every site of ``hf``, in call order

    def _probe_run(self) -> None:  # pragma: no cover - each wrapper has its own
        raise NotImplementedError

    def _probe_source(self) -> Tensor:
        """[1, PROBE_SOURCE_LENGTH] unknown-token ids: which modules run matters, not the text."""
        unk = self.vocab_map.roles["<unk>"]
        return torch.full((1, PROBE_SOURCE_LENGTH), unk, dtype=torch.long, device=self.device_anchor.device)

    def addrop_attention_sites(self, kinds=None, layers=None) -> List[AttentionSite]:
        """The sites of ``kinds`` (None: :func:`~addrop_fairseq.sites.default_kinds`) at
        ``layers`` (None: all).

        Switches the HF model to the ``addrop`` attention implementation on first use.
        """
        if self._discovered_sites is None:
            encoder = self.hf.get_encoder() if self.hf.config.is_encoder_decoder else None
            self._discovered_sites = discover(self.hf, self._probe_run, encoder=encoder, src_len=PROBE_SOURCE_LENGTH)
            logger.info("AD-DROP sites of %s: %s", type(self.hf).__name__, kinds_of(self._discovered_sites))
        return select_from(self._discovered_sites, kinds, layers, type(self.hf).__name__)
