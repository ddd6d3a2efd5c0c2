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

Pass 2 fused: when the hook only drops keys (:func:`~addrop_fairseq.sites.fusable`: AD-DROP's
masking pass), ``forward`` projects q, k, v as fairseq does and computes
``scaled_dot_product_attention`` with ``attn_mask`` + key padding + the drop mask as one
additive mask (:func:`~addrop_fairseq.sites.masked_attention`; finite, where fairseq's
padding fill is -inf: equal wherever a row has a key left), attention dropout in the kernel.
Calls that need more take the explicit path: ``need_weights`` (fairseq's decoder asks it of
its last layer's encoder-decoder attention, for alignment), ``add_bias_kv``,
``add_zero_attn``, incremental decoding, ``before_softmax``; so do recording passes, score
editors and ``ADDROP_PASS2_ATTENTION=eager``.

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

from .sites import AttentionSite, Seam, finite_bias, fusable, masked_attention, select_from, state

# an additive attn_mask at or below this is a "cannot attend" entry (fairseq uses -inf, and
# TransformerEncoderLayer turns binary masks into -1e8)
MASKED_SCORE = -1e4


class _AttentionSeamMixin:
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
        if fusable(st.hook) and self._fusable_call(query, key, need_weights or need_head_weights):
            try:
                return self._fused_forward(query, key, value, key_padding_mask, attn_mask), None
            finally:
                st.masks = None
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

    def _fusable_call(self, query, key, need_weights) -> bool:
        # a subclass's own apply_sparse_mask (sparse attention) needs the explicit path's scores
        stock_sparse = type(self).apply_sparse_mask is _AttentionSeamMixin.apply_sparse_mask and all(
            "apply_sparse_mask" not in vars(c) for c in type(self).__mro__[2:] if c is not MultiheadAttention)
        return (not need_weights and stock_sparse and self.bias_k is None and not self.add_zero_attn
                and not self.onnx_trace and query.device.type != "xla"
                and (self.self_attention or (key is not None and key.size(1) == query.size(1))))

    def _fused_forward(self, query, key, value, key_padding_mask, attn_mask) -> Tensor:
        """fairseq's explicit path with softmax, dropout and the product with V fused."""
        tgt_len, bsz, embed_dim = query.size()
        if self.self_attention:
            key = value = query
        elif self.encoder_decoder_attention:
            value = key
        q = self.q_proj(query) * self.scaling
        k, v = self.k_proj(key), self.v_proj(value)
        src_len = k.size(0)

        def heads(x, length):  # [L, B, E] -> [B, H, L, D]
            return x.contiguous().view(length, bsz, self.num_heads, self.head_dim).permute(1, 2, 0, 3)

        q, k, v = heads(q, tgt_len), heads(k, src_len), heads(v, src_len)
        shape = (bsz, self.num_heads, tgt_len, src_len)
        drop = state(self).hook.drop(self, valid_keys(self, tgt_len, src_len, bsz, q.device), shape)
        bias = None
        if attn_mask is not None:
            mask = attn_mask.view(1, 1, tgt_len, src_len) if attn_mask.dim() == 2 else attn_mask.view(shape)
            bias = finite_bias(mask, q.dtype)
        if key_padding_mask is not None:
            pad = key_padding_mask.to(torch.bool)[:, None, None, :]
            bias = finite_bias(torch.zeros(pad.shape, dtype=q.dtype, device=q.device) if bias is None else bias,
                               q.dtype, pad)
        dropout = self.dropout_module
        p = dropout.p if (self.training or dropout.apply_during_inference) else 0.0
        out = masked_attention(q, k, v, bias, drop, p, scale=1.0)  # q already scaled, as fairseq does
        return self.out_proj(out.permute(2, 0, 1, 3).reshape(tgt_len, bsz, embed_dim))

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
    if issubclass(cls, _AttentionSeamMixin):
        return cls
    if cls not in _CLASSES:
        _CLASSES[cls] = type(f"ADDrop{cls.__name__}", (_AttentionSeamMixin, cls), {})
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
