"""``--arch roberta_tagger[_base|_large]``: fairseq RoBERTa with a per-token tagging head.

Fine-tune a pretrained fairseq RoBERTa checkpoint with ``--restore-file model.pt
--reset-optimizer --reset-dataloader --reset-meters --reset-lr-scheduler``: the encoder
weights load as they are, the MLM head (unused) is dropped, and the tagging head starts
fresh unless the checkpoint has one of the same shape. AD-DROP finds the self-attention at
``encoder.sentence_encoder.layers.N.self_attn``.
"""
import logging

from fairseq.models import register_model, register_model_architecture
from fairseq.models.roberta.model import RobertaModel, base_architecture, roberta_large_architecture
from fairseq.utils import safe_getattr

from ..tagging.head import TaggingHead

logger = logging.getLogger(__name__)


@register_model("roberta_tagger")
class RobertaTaggerModel(RobertaModel):
    @staticmethod
    def add_args(parser):
        RobertaModel.add_args(parser)
        parser.add_argument("--tagger-dropout", type=float, metavar="D", help="dropout before the tagging head")

    @classmethod
    def build_model(cls, args, task):
        model = super().build_model(args, task)
        model.encoder.lm_head = None  # tagging never uses the MLM head
        model.tagging_head = TaggingHead(
            args.encoder_embed_dim, len(task.target_dictionary), safe_getattr(args, "tagger_dropout", 0.1)
        )
        return model

    def forward(self, src_tokens, src_lengths=None, return_all_hiddens=False, **kwargs):
        x, extra = self.encoder(src_tokens, features_only=True, return_all_hiddens=return_all_hiddens)
        return self.tagging_head(x), extra

    def upgrade_state_dict_named(self, state_dict, name):
        super().upgrade_state_dict_named(state_dict, name)  # also renames decoder.* -> encoder.*
        prefix = name + "." if name != "" else ""
        for k in list(state_dict):
            if k.startswith(prefix + "encoder.lm_head."):
                del state_dict[k]
        for k, v in self.tagging_head.state_dict().items():
            key = prefix + "tagging_head." + k
            if key not in state_dict or state_dict[key].shape != v.shape:
                if key in state_dict:
                    logger.warning("tagging head in the checkpoint has another shape: starting a fresh one")
                state_dict[key] = v


@register_model_architecture("roberta_tagger", "roberta_tagger")
def roberta_tagger(args):
    args.tagger_dropout = safe_getattr(args, "tagger_dropout", 0.1)
    base_architecture(args)


@register_model_architecture("roberta_tagger", "roberta_tagger_base")
def roberta_tagger_base(args):
    roberta_tagger(args)


@register_model_architecture("roberta_tagger", "roberta_tagger_large")
def roberta_tagger_large(args):
    args.tagger_dropout = safe_getattr(args, "tagger_dropout", 0.1)
    roberta_large_architecture(args)
