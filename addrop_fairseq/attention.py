"""The MultiheadAttention override: record probability maps, or apply drop masks, on demand.

fairseq's ``MultiheadAttention`` takes ``F.multi_head_attention_forward`` in training, which
hides the per-head probabilities. While a :func:`recording` or :func:`masking` context is
open, the selected modules get a subclass with three seams on fairseq's explicit path:

* ``apply_sparse_mask`` sees the pre-softmax scores ``[B*H, T, S]``: masking mode fills the
  dropped keys there (before fairseq's own padding fill);
* a forward pre-hook on ``dropout_module`` sees the post-softmax probabilities *before*
  attention dropout (what AA attributes);
* a forward hook on ``dropout_module`` sees its output, the probabilities *after* attention
  dropout: the tensor that multiplies V. GA and IGA differentiate this one, as the
  reference code does (its BERT returned ``attention_probs`` after ``self.dropout``); the
  gradient w.r.t. the pre-dropout map is the dropout mask times this one, so every entry
  attention dropout removed would get attribution exactly 0.

Outside a context the modules are stock: the class is swapped back and the hooks removed
when the context closes, so fairseq's code runs unchanged (fast path, incremental decoding,
TorchScript). No parameter or buffer is added: state_dict keys and checkpoints stay stock.

The hooks (:class:`Recorder`, :class:`Masker`) see only ``[B, H, T, S]`` tensors and a
``module`` carrying ``_addrop_index``, so any attention implementation (e.g. a HuggingFace
attention function) can drive them: a module is a *site* once it has an ``_addrop_hook``
attribute, and its attention code calls ``hook.scores(module, scores, valid)`` before softmax
(when ``hook.needs_scores``), ``hook.probs(module, probs)`` before attention dropout (when
``hook.needs_probs``) and ``hook.attended(module, probs)`` after it (when
``hook.needs_attended``), continuing with what each returns.
"""
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from fairseq.modules.multihead_attention import MultiheadAttention

from .masks import drop_fill_value

KINDS = ("encoder-self", "decoder-self", "encoder-decoder")

# an additive attn_mask at or below this is a "cannot attend" entry (fairseq uses -inf, and
# TransformerEncoderLayer turns binary masks into -1e8)
MASKED_SCORE = -1e4


@dataclass
class AttentionSite:
    """One attention module AD-DROP may act on."""

    name: str
    kind: str
    layer: int
    module: MultiheadAttention


class _ADDropMixin:
    """The seams of a MultiheadAttention class, on while a recording/masking context is open."""

    _addrop_hook = None

    def forward(
        self,
        query,
        key,
        value,
        key_padding_mask=None,
        incremental_state=None,
        need_weights=True,
        static_kv=False,
        attn_mask=None,
        before_softmax=False,
        need_head_weights=False,
    ):
        hook = self._addrop_hook
        if hook is None or incremental_state is not None or before_softmax:
            return super().forward(
                query, key, value, key_padding_mask, incremental_state, need_weights,
                static_kv, attn_mask, before_softmax, need_head_weights,
            )
        self._addrop_masks = (key_padding_mask, attn_mask)
        saved = self.skip_embed_dim_check
        self.skip_embed_dim_check = True  # the explicit path, where the seams are
        try:
            return super().forward(
                query, key, value, key_padding_mask, incremental_state, need_weights,
                static_kv, attn_mask, before_softmax, need_head_weights,
            )
        finally:
            self.skip_embed_dim_check = saved
            self._addrop_masks = None

    def apply_sparse_mask(self, attn_weights, tgt_len: int, src_len: int, bsz: int):
        attn_weights = super().apply_sparse_mask(attn_weights, tgt_len, src_len, bsz)
        hook = self._addrop_hook
        if hook is not None and hook.needs_scores:
            valid = valid_keys(self, tgt_len, src_len, bsz, attn_weights.device)
            shape = (bsz, self.num_heads, tgt_len, src_len)
            attn_weights = hook.scores(self, attn_weights.view(shape), valid).view(attn_weights.shape)
        return attn_weights


_CLASSES: Dict[type, type] = {}


def _addrop_class(cls: type) -> type:
    if issubclass(cls, _ADDropMixin):
        return cls
    if cls not in _CLASSES:
        _CLASSES[cls] = type(f"ADDrop{cls.__name__}", (_ADDropMixin, cls), {})
    return _CLASSES[cls]


def _per_head(attention: MultiheadAttention, probs: Tensor) -> Tensor:
    bh, tgt_len, src_len = probs.shape
    return probs.view(bh // attention.num_heads, attention.num_heads, tgt_len, src_len)


def _probs_pre_hook(attention: MultiheadAttention):
    """Before attention dropout: ``hook.probs`` (AA's attention weights)."""

    def hook(_dropout, args):
        active = attention._addrop_hook
        if active is None or not active.needs_probs:
            return None
        probs = args[0]
        return (active.probs(attention, _per_head(attention, probs)).reshape(probs.shape),) + tuple(args[1:])

    return hook


def _attended_hook(attention: MultiheadAttention):
    """After attention dropout: ``hook.attended`` (the tensor that multiplies V; GA, IGA)."""

    def hook(_dropout, _args, output):
        active = attention._addrop_hook
        if active is None or not active.needs_attended:
            return None
        return active.attended(attention, _per_head(attention, output)).reshape(output.shape)

    return hook


def find_attention(model: nn.Module) -> List[AttentionSite]:
    """Every fairseq MultiheadAttention under ``model.encoder`` / ``model.decoder`` stacks.

    The kind comes from the stack (first path component) and the module's own flags; the
    layer is the index after ``layers`` in its path (``encoder.layers.3.self_attn``,
    ``encoder.sentence_encoder.layers.3.self_attn`` for RoBERTa).
    """
    sites = []
    # remove_duplicate=False: a module shared by layers shows up at each of its places
    for name, module in model.named_modules(remove_duplicate=False):
        if not isinstance(module, MultiheadAttention):
            continue
        parts = name.split(".")
        if "layers" not in parts[:-1]:
            continue
        layer = parts[parts.index("layers") + 1]
        if not layer.isdigit():
            continue
        if module.encoder_decoder_attention:
            kind = "encoder-decoder"
        elif parts[0] == "encoder" and module.self_attention:
            kind = "encoder-self"
        elif parts[0] == "decoder" and module.self_attention:
            kind = "decoder-self"
        else:
            continue
        sites.append(AttentionSite(name, kind, int(layer), module))
    return sites


def default_kinds(model_or_sites) -> List[str]:
    """``--addrop-attention auto``: encoder self-attention, as the reference code does.

    Its translation code masks the encoder's self-attention only (the decoder masking is
    commented out); classification and tagging models have nothing else. A model without an
    encoder stack gets its decoder self-attention.
    """
    found = model_or_sites if isinstance(model_or_sites, (list, tuple)) else find_attention(model_or_sites)
    present = {s.kind for s in found}
    if "encoder-self" in present or "decoder-self" not in present:
        return ["encoder-self"]
    return ["decoder-self"]


def parse_kinds(spec: Union[str, Sequence[str]]) -> List[str]:
    kinds = [k.strip() for k in spec.split(",")] if isinstance(spec, str) else list(spec)
    kinds = [k for k in kinds if k]
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise ValueError(f"--addrop-attention: unknown kind(s) {bad or spec!r}; choose from {KINDS}")
    return kinds


def parse_layers(spec: str) -> Optional[List[int]]:
    """"all" -> None, "0,2,5" -> [0, 2, 5]."""
    spec = str(spec).strip()
    if spec == "all":
        return None
    try:
        layers = sorted({int(x) for x in spec.split(",") if x.strip() != ""})
    except ValueError:
        raise ValueError(f"--addrop-layers must be 'all' or comma-separated integers, got {spec!r}") from None
    if not layers or layers[0] < 0:
        raise ValueError(f"--addrop-layers must be 'all' or non-negative integers, got {spec!r}")
    return layers


def select_sites(
    model: nn.Module, kinds: Sequence[str], layers: Optional[Sequence[int]]
) -> List[AttentionSite]:
    """The sites AD-DROP will act on, or a ValueError naming what is missing."""
    found = find_attention(model)
    if not found:
        raise ValueError(
            f"{type(model).__name__} has no fairseq MultiheadAttention in encoder/decoder "
            "layers for AD-DROP to override"
        )
    return select_from(found, kinds, layers, type(model).__name__)


def select_from(
    found: Sequence[AttentionSite], kinds: Sequence[str], layers: Optional[Sequence[int]], model_name: str
) -> List[AttentionSite]:
    """The sites of ``kinds`` at ``layers`` (None: all) among ``found``; ValueErrors name the problem.

    Shared by every attention implementation (fairseq here, HuggingFace in ``hf``).
    """
    have = sorted({s.kind for s in found})
    selected = []
    for kind in kinds:
        of_kind = [s for s in found if s.kind == kind]
        if not of_kind:
            raise ValueError(
                f"--addrop-attention {kind}: {model_name} has no {kind} attention "
                f"(it has {', '.join(have)})"
            )
        n_layers = max(s.layer for s in of_kind) + 1
        if layers is not None:
            bad = [i for i in layers if i >= n_layers or i < 0]
            if bad:
                raise ValueError(
                    f"--addrop-layers {','.join(map(str, layers))}: layer(s) {bad} out of range "
                    f"for {kind} attention with {n_layers} layers (0-{n_layers - 1})"
                )
        selected += [s for s in of_kind if layers is None or s.layer in layers]
    return selected


def install(sites: Sequence[AttentionSite]) -> None:
    """Make the sites drivable by :func:`recording` / :func:`masking`; the modules stay stock.

    Refuses a module that serves several sites or is called at several places (one attention
    module shared by layers, as in ALBERT): its maps would overwrite each other.
    """
    seen: Dict[int, str] = {}
    for site in sites:
        if id(site.module) in seen:
            raise ValueError(
                f"AD-DROP: {site.name} and {seen[id(site.module)]} are one shared attention module; "
                "models that reuse an attention module across layers are not supported"
            )
        seen[id(site.module)] = site.name
        if not hasattr(site.module, "_addrop_hook"):
            site.module._addrop_hook = None


def _attach(site: AttentionSite, index: int, hook) -> list:
    """Turn a site's seams on for ``hook``; returns what :func:`_detach` needs to undo it."""
    module = site.module
    module._addrop_index = index
    module._addrop_hook = hook
    if not isinstance(module, MultiheadAttention):  # e.g. HuggingFace: its code calls the hook
        return []
    stock_class = type(module)
    module.__class__ = _addrop_class(stock_class)
    module._addrop_masks = None
    handles = [
        module.dropout_module.register_forward_pre_hook(_probs_pre_hook(module)),
        module.dropout_module.register_forward_hook(_attended_hook(module)),
    ]
    return [stock_class] + handles


def _detach(site: AttentionSite, undo: list) -> None:
    module = site.module
    module._addrop_hook = None
    if undo:
        stock_class, *handles = undo
        for handle in handles:
            handle.remove()
        module.__class__ = stock_class


def valid_keys(module, tgt_len: int, src_len: int, bsz: int, device) -> Tensor:
    """[B, 1, T, S] True where a query may attend a key (padding and attn_mask applied).

    Queries that are themselves padding (self-attention) get no valid key: nothing there
    matters, so nothing there is dropped or counted.
    """
    key_padding_mask, attn_mask = module._addrop_masks or (None, None)
    valid = torch.ones(bsz, 1, tgt_len, src_len, dtype=torch.bool, device=device)
    if key_padding_mask is not None and key_padding_mask.dim() == 2:
        pad = key_padding_mask.to(device=device, dtype=torch.bool)
        if pad.size(1) < src_len:  # keys appended by add_bias_kv / add_zero_attn are real
            pad = torch.cat([pad, pad.new_zeros(bsz, src_len - pad.size(1))], dim=1)
        valid &= ~pad[:, None, None, :]
        if module.self_attention and tgt_len == pad.size(1):
            valid &= ~pad[:, None, :, None]
    if attn_mask is not None:
        blocked = attn_mask if attn_mask.dtype == torch.bool else attn_mask <= MASKED_SCORE
        blocked = blocked.to(device)
        if blocked.size(-1) < src_len:
            blocked = torch.cat(
                [blocked, blocked.new_zeros(blocked.shape[:-1] + (src_len - blocked.size(-1),))], -1
            )
        if blocked.dim() == 2:
            valid &= ~blocked[None, None]
        else:  # [B*H, T, S]
            valid = valid & ~blocked.view(bsz, -1, tgt_len, src_len)
    return valid


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
        idx = module._addrop_index
        if self.maps[idx] is not None:
            raise RuntimeError(
                f"AD-DROP: attention site {idx} ran twice in one forward pass; models that call "
                "one attention module several times (shared layers) are not supported"
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


# make_drop(site_index, valid[B, H, T, S]) -> bool drop mask [B, H, T, S]
DropMaker = Callable[[int, Tensor], Tensor]


class Masker:
    """Masking mode: fills the keys ``make_drop`` picks with a large finite negative score.

    Attention code calls ``scores(module, scores[B, H, T, S], valid[B, 1 or H, T, S])`` with
    the pre-softmax scores and the keys each query may attend, and continues with the result.
    ``query_valid[i]`` ([B, T] or None) marks site i's real query rows where the module
    cannot tell them itself (encoder-decoder attention does not see the decoder's padding).
    """

    needs_scores = True
    needs_probs = False
    needs_attended = False

    def __init__(self, make_drop: DropMaker, query_valid: Optional[Sequence[Optional[Tensor]]] = None):
        self.make_drop = make_drop
        self.query_valid = query_valid

    def scores(self, module, scores: Tensor, valid: Tensor) -> Tensor:
        idx = module._addrop_index
        rows = self.query_valid[idx] if self.query_valid is not None else None
        if rows is not None:
            valid = valid & rows.to(valid.device)[:, None, :, None]
        drop = self.make_drop(idx, valid.expand(scores.shape))
        return scores.masked_fill(drop, drop_fill_value(scores.dtype))


@contextmanager
def _driving(sites: Sequence[AttentionSite], hook):
    for site in sites:
        if not hasattr(site.module, "_addrop_hook"):
            raise RuntimeError(f"AD-DROP seams not installed on {site.name}; call install() first")
    undo = []
    try:
        for i, site in enumerate(sites):
            undo.append(_attach(site, i, hook))
        yield hook
    finally:
        for site, u in zip(sites, undo):
            _detach(site, u)


@contextmanager
def recording(sites: Sequence[AttentionSite], replacements: Optional[Sequence[Optional[Tensor]]] = None,
              point: str = "attended"):
    """Within the block, forward passes record (or substitute) the sites' probability maps
    at ``point`` (see :class:`Recorder`)."""
    with _driving(sites, Recorder(len(sites), replacements, point)) as rec:
        yield rec


@contextmanager
def masking(sites: Sequence[AttentionSite], make_drop: DropMaker,
            query_valid: Optional[Sequence[Optional[Tensor]]] = None):
    """Within the block, forward passes drop the keys ``make_drop`` picks at each site."""
    with _driving(sites, Masker(make_drop, query_valid)) as masker:
        yield masker
