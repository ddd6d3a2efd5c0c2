"""The fairseq seam: AD-DROP's hooks on ``MultiheadAttention``, on while a context is open.

fairseq's ``MultiheadAttention`` takes ``F.multi_head_attention_forward`` in training, which
hides the per-head probabilities. While a :func:`addrop_fairseq.sites.recording` or
:func:`~addrop_fairseq.sites.masking` context is open, :class:`FairseqSeam` gives each selected
module a subclass with three seams on fairseq's explicit path:

* ``apply_sparse_mask`` sees the pre-softmax scores ``[B*H, T, S]``: ``hook.scores`` (masks
  go there, before fairseq's own padding fill), with the valid keys of :func:`valid_keys`;
* a forward pre-hook on ``dropout_module`` sees the softmax probabilities before attention
  dropout: ``hook.probs`` (AA's attention weights);
* a forward hook on ``dropout_module`` sees its output, the probabilities *after* attention
  dropout, the tensor that multiplies V: ``hook.attended``. GA and IGA differentiate this
  one, as the reference code does (its BERT returned ``attention_probs`` after
  ``self.dropout``); the gradient w.r.t. the pre-dropout map is the dropout mask times this
  one, so every entry attention dropout removed would get attribution exactly 0.

When the context closes the stock class comes back and the hooks are removed: outside
AD-DROP's passes the modules are stock fairseq (fast path, incremental decoding,
TorchScript). No parameter or buffer is added: state_dict keys and checkpoints stay stock.

fairseq internals assumed here (pinned: fairseq-fixed==0.12.3.1, ``MultiheadAttention``):
``skip_embed_dim_check`` in the fast-path condition of ``forward`` (set, it takes the explicit
path), ``forward``'s and ``apply_sparse_mask``'s parameters, ``dropout_module`` applied to the
``[B*H, T, S]`` probabilities, and a ``__class__`` that can be swapped for a subclass.
``tests/test_fairseq_assumptions.py`` fails, naming the assumption, if a version bump changes one.
"""
from typing import Dict, List

import torch
from torch import Tensor, nn

from fairseq.modules.multihead_attention import MultiheadAttention

from .sites import AttentionSite, Seam, select_from, state

# an additive attn_mask at or below this is a "cannot attend" entry (fairseq uses -inf, and
# TransformerEncoderLayer turns binary masks into -1e8)
MASKED_SCORE = -1e4


class _ADDropMixin:
    """The seams of a MultiheadAttention class, on while a recording/masking context is open."""

    # fairseq 0.12.3.1's MultiheadAttention.forward parameters, passed on positionally
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
        st = state(self)
        if st is None or st.hook is None or incremental_state is not None or before_softmax:
            return super().forward(
                query, key, value, key_padding_mask, incremental_state, need_weights,
                static_kv, attn_mask, before_softmax, need_head_weights,
            )
        st.masks = (key_padding_mask, attn_mask)
        saved = self.skip_embed_dim_check
        # the explicit path, where the seams are: fairseq 0.12.3.1 takes F.multi_head_attention_forward
        # (or xformers) unless skip_embed_dim_check, among other conditions, is set
        self.skip_embed_dim_check = True
        try:
            return super().forward(
                query, key, value, key_padding_mask, incremental_state, need_weights,
                static_kv, attn_mask, before_softmax, need_head_weights,
            )
        finally:
            self.skip_embed_dim_check = saved
            st.masks = None

    def apply_sparse_mask(self, attn_weights, tgt_len: int, src_len: int, bsz: int):
        attn_weights = super().apply_sparse_mask(attn_weights, tgt_len, src_len, bsz)
        hook = state(self).hook
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
        active = state(attention).hook
        if active is None or not active.needs_probs:
            return None
        probs = args[0]
        return (active.probs(attention, _per_head(attention, probs)).reshape(probs.shape),) + tuple(args[1:])

    return hook


def _attended_hook(attention: MultiheadAttention):
    """After attention dropout: ``hook.attended`` (the tensor that multiplies V; GA, IGA)."""

    def hook(_dropout, _args, output):
        active = state(attention).hook
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
        sites.append(AttentionSite(name, kind, int(layer), module, SEAM))
    return sites


def select_sites(model: nn.Module, kinds, layers) -> List[AttentionSite]:
    """The fairseq sites of ``kinds`` (None: auto) at ``layers`` (None: all), or a ValueError."""
    found = find_attention(model)
    if not found:
        raise ValueError(
            f"{type(model).__name__} has no fairseq MultiheadAttention in encoder/decoder layers to override"
        )
    return select_from(found, kinds, layers, type(model).__name__)


class FairseqSeam(Seam):
    """Swaps in the seams' subclass and hooks the attention dropout for one context."""

    def attach(self, module: MultiheadAttention):
        stock_class = type(module)
        # a subclass with the stock layout (fairseq 0.12.3.1's MultiheadAttention has no __slots__)
        module.__class__ = _addrop_class(stock_class)
        handles = [
            module.dropout_module.register_forward_pre_hook(_probs_pre_hook(module)),
            module.dropout_module.register_forward_hook(_attended_hook(module)),
        ]
        return stock_class, handles

    def detach(self, module: MultiheadAttention, undo) -> None:
        stock_class, handles = undo
        for handle in handles:
            handle.remove()
        module.__class__ = stock_class


SEAM = FairseqSeam()


def valid_keys(module, tgt_len: int, src_len: int, bsz: int, device) -> Tensor:
    """[B, 1, T, S] True where a query may attend a key (padding and attn_mask applied).

    Queries that are themselves padding (self-attention) get no valid key: nothing there
    matters, so nothing there is dropped or counted.
    """
    key_padding_mask, attn_mask = state(module).masks or (None, None)
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
