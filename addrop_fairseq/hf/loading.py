"""What the HuggingFace wrappers share: their options, and loading a local HF checkpoint.

Every wrapper (:mod:`.seq2seq`, :mod:`.classifiers`) loads config, weights and tokenizer from
a local ``--hf-model-dir`` (what ``save_pretrained`` writes; no hub access) and keeps the HF
model as its ``hf`` submodule, unchanged: state_dict keys are ``hf.<HF keys>``, and a fairseq
checkpoint reloads by rebuilding from ``--hf-model-dir`` and loading the state.

Data must come from ``addrop-hf-preprocess`` with the same directory: its
dictionaries map one-to-one onto the tokenizer's ids (:mod:`.vocab`); a dictionary from
another tokenizer is refused at build time (:func:`load_hf_tokenizer`).

The tensor helpers turn fairseq batches into what HF models expect: :func:`right_align`
(fairseq left-pads sources, HF positions count from the first token) and :func:`segment_ids`
(BERT-like sentence pairs).
"""
import json
import logging
from dataclasses import dataclass, field
from typing import List, Optional

import torch
from torch import Tensor

from fairseq.dataclass import FairseqDataclass

from . import _compat
from . import vocab as hf_vocab

# architectures whose learned positions start after the padding index (RoBERTa's offset)
_POSITION_OFFSET_TYPES = ("roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "data2vec-text", "longformer")


@dataclass
class HFModelConfig(FairseqDataclass):
    hf_model_dir: str = field(
        default="",
        metadata={"help": "local directory with the HF model's config.json, weights and tokenizer "
                          "(what save_pretrained writes)"},
    )
    hf_attn_implementation: Optional[str] = field(
        default=None,
        metadata={"help": "transformers attention implementation while AD-DROP is idle "
                          "(sdpa, eager; default: transformers' choice)"},
    )
    hf_config_overrides: Optional[str] = field(
        default=None,
        metadata={"help": "JSON object of HF config attributes to override at load, e.g. "
                          "'{\"attention_probs_dropout_prob\": 0.1}'"},
    )
    # sentence_prediction's build_model writes cfg.max_positions into the model config; the
    # limit itself comes from the HF config (max_positions())
    max_positions: Optional[int] = field(default=None, metadata={"help": "(set by the task; unused)"})


# one config class per registered model, all with the same options


@dataclass
class HFSeq2SeqConfig(HFModelConfig):
    pass


@dataclass
class HFTokenClassifierConfig(HFModelConfig):
    pass


@dataclass
class HFSequenceClassifierConfig(HFModelConfig):
    pass


# ------------------------------------------------------------------------------ loading


def load_hf_tokenizer(cfg, dictionaries):
    """(tokenizer, [VocabMap per (dictionary, name)]): the data's dictionaries checked first."""
    model_dir = cfg.hf_model_dir
    hf_vocab.check_model_dir(model_dir)
    tokenizer = hf_vocab.load_tokenizer(model_dir)
    if getattr(tokenizer, "separate_vocabs", False):
        raise NotImplementedError(
            f"{model_dir}: a tokenizer with separate source and target vocabularies is not supported"
        )
    maps = [hf_vocab.VocabMap(d, tokenizer, None, what, model_dir) for d, what in dictionaries]
    return tokenizer, maps


class HeldLoadReport(logging.Filter):
    """Holds back transformers' load report (weights MISSING / MISMATCHED "newly initialized") while
    :func:`load_hf_model` runs, for the wrapper to print only if it is still true: a fairseq
    checkpoint's state, loaded right after the build, replaces those weights."""

    def __init__(self):
        super().__init__()
        self.messages: List[str] = []

    def filter(self, record) -> bool:
        message = record.getMessage()
        if "LOAD REPORT" in message or "newly initialized" in message:
            self.messages.append(message)
            return False
        return True


def load_hf_model(cfg, auto_class: str, hold_report: bool = False, **config_kwargs):
    """The HF model of ``cfg.hf_model_dir`` (fp32, local files only), or a ValueError naming the mismatch.

    ``hold_report``: transformers' report of the weights the folder lacks is not logged but kept
    on the model as ``addrop_load_report`` (text, or None) with their names ``addrop_fresh_keys``.
    """
    tf = _compat.transformers()
    model_dir = cfg.hf_model_dir
    overrides = json.loads(cfg.hf_config_overrides) if cfg.hf_config_overrides else {}
    if not isinstance(overrides, dict):
        raise ValueError(f"--hf-config-overrides must be a JSON object, got {cfg.hf_config_overrides!r}")
    config = tf.AutoConfig.from_pretrained(model_dir, local_files_only=True, **overrides, **config_kwargs)
    auto = getattr(tf, auto_class)
    if type(config) not in auto._model_mapping:
        raise ValueError(
            f"--hf-model-dir {model_dir} holds a {config.model_type} model, which {auto_class} cannot "
            f"load (pick the wrapper for its kind: hf_seq2seq, hf_token_classifier, hf_sequence_classifier)"
        )
    kwargs = {"config": config, "local_files_only": True, "dtype": torch.float32}
    if cfg.hf_attn_implementation:
        kwargs["attn_implementation"] = cfg.hf_attn_implementation
    if not hold_report:
        return auto.from_pretrained(model_dir, ignore_mismatched_sizes=True, **kwargs)
    held = HeldLoadReport()
    hf_logger = logging.getLogger("transformers.modeling_utils")
    hf_logger.addFilter(held)
    try:
        hf, info = auto.from_pretrained(model_dir, ignore_mismatched_sizes=True, output_loading_info=True, **kwargs)
    finally:
        hf_logger.removeFilter(held)
    keys = (*info.get("missing_keys", ()), *info.get("mismatched_keys", ()))  # mismatched: (name, shapes)
    fresh = {k if isinstance(k, str) else k[0] for k in keys}
    hf.__dict__["addrop_fresh_keys"] = sorted(fresh)
    hf.__dict__["addrop_load_report"] = "\n".join(held.messages) or None
    return hf


def max_positions_of(config) -> int:
    """The longest input the HF config allows, in tokens (RoBERTa-style position offsets removed)."""
    n = getattr(config, "max_position_embeddings", None) or 1_000_000
    if config.model_type in _POSITION_OFFSET_TYPES:
        n -= (config.pad_token_id or 0) + 1
    return n


# ------------------------------------------------------------------------------ batches


def right_align(tokens: Tensor, pad: int):
    """(right-padded tokens, gather index to undo it along dim 1, or None if already right-padded)."""
    pad_mask = tokens.eq(pad)
    if not pad_mask[:, 0].any():
        return tokens, None
    length = tokens.size(1)
    pos = torch.arange(length, device=tokens.device).expand_as(tokens)
    num_pads = pad_mask.long().sum(dim=1, keepdim=True)
    forward = torch.remainder(pos + num_pads, length)
    back = torch.remainder(pos - num_pads, length)
    return tokens.gather(1, forward), back


def segment_ids(tokens: Tensor, eos: int, pad: int) -> Tensor:
    """1 after the first eos ([SEP]), 0 before it and on padding."""
    is_eos = tokens.eq(eos).long()
    after = (is_eos.cumsum(dim=1) - is_eos) > 0
    return (after & tokens.ne(pad)).long()
