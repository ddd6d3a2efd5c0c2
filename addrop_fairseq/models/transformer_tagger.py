"""``--arch transformer_tagger[_small|_base]``: a fairseq TransformerEncoder + per-token head.

The encoder is fairseq's own ``TransformerEncoderBase`` stored as ``self.encoder``, so
AD-DROP finds its self-attention at ``encoder.layers.N.self_attn``. ``forward`` returns
``(logits [B, T, num_tags], extra)``; the tag set is the task's target dictionary.
"""
import argparse
from dataclasses import dataclass, field

import torch.nn as nn
import torch.nn.functional as F
from omegaconf import OmegaConf

from fairseq import utils
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.models import FairseqEncoderModel, register_model, register_model_architecture
from fairseq.models.transformer import TransformerConfig, TransformerEncoderBase
from fairseq.utils import safe_getattr

from ..tagging.head import TaggingHead


@dataclass
class TransformerTaggerConfig(FairseqDataclass):
    activation_fn: ChoiceEnum(utils.get_available_activation_fns()) = field(
        default="gelu", metadata={"help": "activation function"}
    )
    dropout: float = field(default=0.1, metadata={"help": "dropout probability"})
    attention_dropout: float = field(default=0.1, metadata={"help": "attention-weight dropout"})
    activation_dropout: float = field(default=0.0, metadata={"help": "dropout after the FFN activation"})
    encoder_embed_dim: int = field(default=512, metadata={"help": "embedding dimension"})
    encoder_ffn_embed_dim: int = field(default=2048, metadata={"help": "FFN dimension"})
    encoder_layers: int = field(default=6, metadata={"help": "number of layers"})
    encoder_attention_heads: int = field(default=8, metadata={"help": "number of attention heads"})
    encoder_normalize_before: bool = field(default=True, metadata={"help": "pre-norm layers"})
    encoder_learned_pos: bool = field(default=False, metadata={"help": "learned positional embeddings"})
    no_token_positional_embeddings: bool = field(default=False, metadata={"help": "no positional embeddings"})
    layernorm_embedding: bool = field(default=False, metadata={"help": "layer norm after the embeddings"})
    no_scale_embedding: bool = field(default=False, metadata={"help": "do not scale embeddings by sqrt(dim)"})
    encoder_layerdrop: float = field(default=0.0, metadata={"help": "LayerDrop probability"})
    max_source_positions: int = field(default=512, metadata={"help": "max input length"})
    tagger_dropout: float = field(default=0.1, metadata={"help": "dropout before the tagging head"})


def _plain(cfg) -> argparse.Namespace:
    """A flat namespace (fairseq's TransformerConfig.from_namespace wants attributes)."""
    if OmegaConf.is_config(cfg):
        return argparse.Namespace(**OmegaConf.to_container(cfg, resolve=True))
    return argparse.Namespace(**vars(cfg))


@register_model("transformer_tagger", dataclass=TransformerTaggerConfig)
class TransformerTaggerModel(FairseqEncoderModel):
    def __init__(self, cfg, encoder, head):
        super().__init__(encoder)
        self.cfg = cfg
        self.head = head

    @classmethod
    def build_model(cls, cfg, task):
        tcfg = TransformerConfig.from_namespace(_plain(cfg))
        dictionary = task.source_dictionary
        dim = cfg.encoder_embed_dim
        embed = nn.Embedding(len(dictionary), dim, padding_idx=dictionary.pad())
        nn.init.normal_(embed.weight, mean=0, std=dim ** -0.5)
        nn.init.constant_(embed.weight[dictionary.pad()], 0)
        encoder = TransformerEncoderBase(tcfg, dictionary, embed)
        head = TaggingHead(dim, len(task.target_dictionary), cfg.tagger_dropout)
        return cls(cfg, encoder, head)

    def forward(self, src_tokens, src_lengths=None, return_all_hiddens=False, **kwargs):
        out = self.encoder(src_tokens, src_lengths=src_lengths, return_all_hiddens=return_all_hiddens)
        features = out["encoder_out"][0].transpose(0, 1)  # T x B x C -> B x T x C
        extra = {"encoder_padding_mask": out["encoder_padding_mask"], "inner_states": out["encoder_states"]}
        return self.head(features), extra

    def get_normalized_probs(self, net_output, log_probs, sample=None):
        logits = net_output[0].float()
        return F.log_softmax(logits, dim=-1) if log_probs else F.softmax(logits, dim=-1)

    def max_positions(self):
        return self.encoder.max_positions()


# --arch transformer_tagger (registered by register_model) takes the dataclass defaults:
# 6 layers, 512 dim, 2048 FFN, 8 heads, the same as transformer_tagger_base.


def _set(args, **defaults):
    for key, value in defaults.items():
        setattr(args, key, safe_getattr(args, key, value))


@register_model_architecture("transformer_tagger", "transformer_tagger_base")
def transformer_tagger_base(args):
    _set(args, encoder_layers=6, encoder_embed_dim=512, encoder_ffn_embed_dim=2048, encoder_attention_heads=8)


@register_model_architecture("transformer_tagger", "transformer_tagger_small")
def transformer_tagger_small(args):
    _set(args, encoder_layers=4, encoder_embed_dim=256, encoder_ffn_embed_dim=1024, encoder_attention_heads=4)
