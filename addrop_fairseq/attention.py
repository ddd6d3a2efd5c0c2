"""The MultiheadAttention override: record probability maps, or apply drop masks, on demand.

fairseq's ``MultiheadAttention`` takes ``F.multi_head_attention_forward`` in training, which
hides the per-head probabilities. :func:`install` swaps the class of the selected modules
for a subclass with two seams, both idle unless a :func:`recording` or :func:`masking`
context is open:

* ``apply_sparse_mask`` sees the pre-softmax scores ``[B*H, T, S]``: masking mode fills the
  dropped keys there (before fairseq's own padding fill);
* a forward pre-hook on ``dropout_module`` sees the post-softmax, pre-dropout probabilities:
  recording mode keeps them (in the graph) or substitutes given maps (integrated gradients).

While a context is open the module takes fairseq's explicit path (``skip_embed_dim_check``),
otherwise it runs the stock code unchanged: bit-identical outputs, fast path, incremental
decoding and static kv untouched. No parameter or buffer is added, so state_dict keys and
checkpoints stay stock fairseq.

The hooks (:class:`Recorder`, :class:`Masker`) see only ``[B, H, T, S]`` tensors and a
``module`` carrying ``_addrop_index``, so any attention implementation (e.g. a HuggingFace
attention function) can drive them: a module is a *site* once it has an ``_addrop_hook``
attribute, and its attention code calls ``hook.scores(module, scores, valid)`` before softmax
(when ``hook.needs_scores``) and ``hook.probs(module, probs)`` before attention dropout (when
``hook.needs_probs``).
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
    """Adds the two seams to a MultiheadAttention class; idle while ``_addrop_hook`` is None."""

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


def _probs_pre_hook(attention: MultiheadAttention):
    def hook(_dropout, args):
        active = attention._addrop_hook
        if active is None or not active.needs_probs:
            return None
        probs = args[0]
        bh, tgt_len, src_len = probs.shape
        shape = (bh // attention.num_heads, attention.num_heads, tgt_len, src_len)
        return (active.probs(attention, probs.view(shape)).reshape(probs.shape),) + tuple(args[1:])

    return hook


def find_attention(model: nn.Module) -> List[AttentionSite]:
    """Every fairseq MultiheadAttention under ``model.encoder`` / ``model.decoder`` stacks.

    The kind comes from the stack (first path component) and the module's own flags; the
    layer is the index after ``layers`` in its path (``encoder.layers.3.self_attn``,
    ``encoder.sentence_encoder.layers.3.self_attn`` for RoBERTa).
    """
    sites = []
    for name, module in model.named_modules():
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


def default_kinds(model: nn.Module) -> List[str]:
    """Every self-attention kind the model has (encoder-self, and decoder-self if any)."""
    present = {s.kind for s in find_attention(model)}
    return [k for k in ("encoder-self", "decoder-self") if k in present] or ["encoder-self"]


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
    """Give each site's module the AD-DROP seams (idempotent; the modules stay idle)."""
    for site in sites:
        module = site.module
        if isinstance(module, _ADDropMixin):
            continue
        module.__class__ = _addrop_class(type(module))
        module._addrop_hook = None
        module._addrop_masks = None
        module.dropout_module.register_forward_pre_hook(_probs_pre_hook(module))


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

    Attention code calls ``probs(module, probs[B, H, T, S])`` with the post-softmax,
    pre-dropout probabilities and continues with what it returns.
    """

    needs_scores = False
    needs_probs = True

    def __init__(self, n_sites: int, replacements: Optional[Sequence[Tensor]] = None):
        self.maps: List[Optional[Tensor]] = [None] * n_sites
        self.replacements = replacements

    def probs(self, module, probs: Tensor) -> Tensor:
        idx = module._addrop_index
        if self.replacements is not None:
            probs = self.replacements[idx].to(probs.dtype)
        self.maps[idx] = probs
        return probs

    def result(self) -> List[Tensor]:
        missing = [i for i, m in enumerate(self.maps) if m is None]
        if missing:
            raise RuntimeError(f"AD-DROP: attention sites {missing} did not run in the forward pass")
        return self.maps


# make_drop(site_index, valid[B, H, T, S]) -> bool drop mask [B, H, T, S]
DropMaker = Callable[[int, Tensor], Tensor]


class Masker:
    """Masking mode: fills the keys ``make_drop`` picks with a large finite negative score.

    Attention code calls ``scores(module, scores[B, H, T, S], valid[B, 1 or H, T, S])`` with
    the pre-softmax scores and the keys each query may attend, and continues with the result.
    """

    needs_scores = True
    needs_probs = False

    def __init__(self, make_drop: DropMaker):
        self.make_drop = make_drop

    def scores(self, module, scores: Tensor, valid: Tensor) -> Tensor:
        drop = self.make_drop(module._addrop_index, valid.expand(scores.shape))
        return scores.masked_fill(drop, drop_fill_value(scores.dtype))


@contextmanager
def _driving(sites: Sequence[AttentionSite], hook):
    for i, site in enumerate(sites):
        if not hasattr(site.module, "_addrop_hook"):
            raise RuntimeError(f"AD-DROP seams not installed on {site.name}; call install() first")
        site.module._addrop_index = i
        site.module._addrop_hook = hook
    try:
        yield hook
    finally:
        for site in sites:
            site.module._addrop_hook = None


@contextmanager
def recording(sites: Sequence[AttentionSite], replacements: Optional[Sequence[Tensor]] = None):
    """Within the block, forward passes record (or substitute) the sites' probability maps."""
    with _driving(sites, Recorder(len(sites), replacements)) as rec:
        yield rec


@contextmanager
def masking(sites: Sequence[AttentionSite], make_drop: DropMaker):
    """Within the block, forward passes drop the keys ``make_drop`` picks at each site."""
    with _driving(sites, Masker(make_drop)) as masker:
        yield masker
