"""fairseq models wrapping HuggingFace pretrained models: hf_seq2seq, hf_token_classifier,
hf_sequence_classifier.

Each loads config, weights and tokenizer from a local ``--hf-model-dir`` (what
``save_pretrained`` writes; no hub access), keeps fairseq's interfaces and hands AD-DROP its
attention sites (:meth:`addrop_attention_sites`, called by ``--criterion addrop_ce``).
The HF model is the ``hf`` submodule, unchanged: state_dict keys are ``hf.<HF keys>``, and a
fairseq checkpoint reloads by rebuilding from ``--hf-model-dir`` and loading the state.

Data must come from ``python -m addrop_fairseq.hf_preprocess`` with the same directory:
its dictionaries map one-to-one onto the tokenizer's ids (:mod:`.vocab`); a dictionary
from another tokenizer is refused at build time.

* ``hf_seq2seq`` (``--task translation``; AutoModelForSeq2SeqLM, Marian tested): a fairseq
  encoder-decoder model with incremental decoding (HF's key/value cache kept in fairseq's
  incremental state and reordered with the beams), so ``fairseq-generate`` beam search works.
  fairseq's leading ``</s>`` of ``prev_output_tokens`` becomes the HF
  ``decoder_start_token_id``; left-padded sources are right-aligned first (positions).
* ``hf_token_classifier`` (``--task sequence_tagging --prepend-bos --append-eos``;
  AutoModelForTokenClassification): one logit per piece over the task's tag dictionary.
* ``hf_sequence_classifier`` (``--task sentence_prediction``, regression included;
  AutoModelForSequenceClassification): the number of labels comes from ``--num-classes``;
  ``classification_heads`` holds the head under the registered name.

BERT-like models (``type_vocab_size`` > 1) get ``token_type_ids`` 1 after the first
``</s>`` ([SEP]) and 0 elsewhere, as HF tokenizers give sentence pairs.
"""
import json
import logging
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch
from torch import Tensor, nn

from fairseq import utils
from fairseq.dataclass import FairseqDataclass
from fairseq.models import (
    BaseFairseqModel,
    FairseqEncoder,
    FairseqEncoderDecoderModel,
    FairseqIncrementalDecoder,
    register_model,
)

from . import _compat
from . import attention as hf_attention
from . import vocab as hf_vocab

logger = logging.getLogger(__name__)

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


@dataclass
class HFSeq2SeqConfig(HFModelConfig):
    pass


@dataclass
class HFTokenClassifierConfig(HFModelConfig):
    pass


@dataclass
class HFSequenceClassifierConfig(HFModelConfig):
    pass


# ------------------------------------------------------------------------------ helpers


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


def load_hf_model(cfg, auto_class: str, **config_kwargs):
    """The HF model of ``cfg.hf_model_dir`` (fp32, local files only), or a ValueError naming the mismatch."""
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
    return auto.from_pretrained(model_dir, ignore_mismatched_sizes=True, **kwargs)


def max_positions_of(config) -> int:
    n = getattr(config, "max_position_embeddings", None) or 1_000_000
    if config.model_type in _POSITION_OFFSET_TYPES:
        n -= (config.pad_token_id or 0) + 1
    return n


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


class _HFSites:
    """AD-DROP sites of the wrapped HF model (see :mod:`addrop_fairseq.hf.attention`)."""

    _addrop_all_sites = None

    def _probe_run(self):  # pragma: no cover - overridden
        raise NotImplementedError

    def addrop_attention_sites(self, kinds=None, layers=None):
        """The sites of ``kinds`` (None: every self-attention) at ``layers`` (None: all).

        Switches the HF model to the ``addrop`` attention implementation on first use.
        """
        if self._addrop_all_sites is None:
            encoder = self.hf.get_encoder() if self.hf.config.is_encoder_decoder else None
            self._addrop_all_sites = hf_attention.discover(
                self.hf, self._probe_run, encoder=encoder, src_len=3
            )
            logger.info(
                "AD-DROP sites of %s: %s", type(self.hf).__name__, hf_attention.kinds_of(self._addrop_all_sites)
            )
        return hf_attention.select(self._addrop_all_sites, kinds, layers, type(self.hf).__name__)


def _probe_ids(model, n: int) -> Tensor:
    return torch.full((1, n), model.vocab_map.roles["<unk>"], dtype=torch.long, device=model.device_anchor.device)


# ------------------------------------------------------------------------------ hf_seq2seq


class HFEncoder(FairseqEncoder):
    def __init__(self, dictionary, vocab_map: hf_vocab.VocabMap, hf, max_positions: int):
        super().__init__(dictionary)
        self.register_buffer("to_hf", vocab_map.to_hf, persistent=False)
        self.__dict__["hf"] = hf  # owned (and registered) by the fairseq model, not here
        self.pad = dictionary.pad()
        self._max_positions = max_positions

    def forward(self, src_tokens, src_lengths=None, **kwargs):
        tokens, _ = right_align(src_tokens, self.pad)
        mask = tokens.ne(self.pad)
        out = self.hf.get_encoder()(input_ids=self.to_hf[tokens], attention_mask=mask.long(), return_dict=True)
        return {"encoder_out": [out.last_hidden_state], "encoder_padding_mask": [~mask], "src_tokens": [tokens]}

    def reorder_encoder_out(self, encoder_out: Dict[str, List[Tensor]], new_order):
        return {k: [t.index_select(0, new_order) for t in v] for k, v in encoder_out.items()}

    def max_positions(self):
        return self._max_positions


class HFDecoder(FairseqIncrementalDecoder):
    def __init__(self, dictionary, vocab_map: hf_vocab.VocabMap, hf, decoder_start: int, max_positions: int):
        super().__init__(dictionary)
        self.register_buffer("to_hf", vocab_map.to_hf, persistent=False)
        self.register_buffer("out_index", vocab_map.out_index, persistent=False)
        self.register_buffer("extra", torch.tensor(vocab_map.extra, dtype=torch.long), persistent=False)
        self.identity = vocab_map.identity
        self.__dict__["hf"] = hf
        self.pad, self.eos = dictionary.pad(), dictionary.eos()
        self.decoder_start = decoder_start
        self._max_positions = max_positions

    def _hf_ids(self, tokens: Tensor, first: bool) -> Tensor:
        ids = self.to_hf[tokens]
        if first:
            if not bool(tokens[:, 0].eq(self.eos).all()):
                raise ValueError(
                    "hf_seq2seq: prev_output_tokens must start with </s> in every row (fairseq's "
                    "default; --left-pad-target is not supported)"
                )
            ids[:, 0] = self.decoder_start
        return ids

    def forward(self, prev_output_tokens, encoder_out=None, incremental_state=None, features_only=False, **kwargs):
        from transformers.modeling_outputs import BaseModelOutput

        enc = encoder_out["encoder_out"][0]
        enc_mask = (~encoder_out["encoder_padding_mask"][0]).long()
        cache = None
        if incremental_state is not None:
            state = self.get_incremental_state(incremental_state, "hf")
            cache = state["past"] if state is not None else None
        first = cache is None
        tokens = prev_output_tokens if first else prev_output_tokens[:, -1:]
        dec_mask = tokens.ne(self.pad).long() if incremental_state is None else None
        out = self.hf(
            encoder_outputs=BaseModelOutput(last_hidden_state=enc),
            attention_mask=enc_mask,
            decoder_input_ids=self._hf_ids(tokens, first),
            decoder_attention_mask=dec_mask,
            past_key_values=cache,
            use_cache=incremental_state is not None,
            return_dict=True,
        )
        if incremental_state is not None:
            self.set_incremental_state(incremental_state, "hf", {"past": out.past_key_values})
        logits = out.logits
        if not self.identity:
            logits = hf_vocab.to_fairseq_logits(logits, self.out_index, self.extra)
        return logits, {"attn": [None], "inner_states": None}

    def reorder_incremental_state(self, incremental_state, new_order):
        state = self.get_incremental_state(incremental_state, "hf")
        if state is not None and state["past"] is not None:
            state["past"].reorder_cache(new_order)

    def max_positions(self):
        return self._max_positions


@register_model("hf_seq2seq", dataclass=HFSeq2SeqConfig)
class HFSeq2SeqModel(_HFSites, FairseqEncoderDecoderModel):
    def __init__(self, hf, tokenizer, encoder, decoder, vocab_map):
        super().__init__(encoder, decoder)
        self.hf = hf
        self.tokenizer = tokenizer
        self.__dict__["vocab_map"] = vocab_map

    @property
    def device_anchor(self):
        return self.encoder.to_hf

    @classmethod
    def build_model(cls, cfg, task):
        tokenizer, (src_map, tgt_map) = load_hf_tokenizer(
            cfg, [(task.source_dictionary, "source dictionary"), (task.target_dictionary, "target dictionary")]
        )
        hf = load_hf_model(cfg, "AutoModelForSeq2SeqLM")
        if not hf.config.is_encoder_decoder:
            raise ValueError(f"hf_seq2seq: {cfg.hf_model_dir} is not an encoder-decoder model")
        src_map.check_model_size(hf.get_input_embeddings().num_embeddings)
        tgt_map.check_model_size(hf.get_output_embeddings().out_features)
        start = hf.config.decoder_start_token_id
        if start is None:
            start = getattr(hf.generation_config, "decoder_start_token_id", None)
        if start is None:
            raise ValueError(f"hf_seq2seq: {cfg.hf_model_dir} has no decoder_start_token_id in its config")
        max_pos = max_positions_of(hf.config)
        encoder = HFEncoder(task.source_dictionary, src_map, hf, max_pos)
        decoder = HFDecoder(task.target_dictionary, tgt_map, hf, start, max_pos)
        return cls(hf, tokenizer, encoder, decoder, src_map)

    def _probe_run(self):
        ids = _probe_ids(self, 3)
        self.hf(input_ids=ids, attention_mask=torch.ones_like(ids),
                decoder_input_ids=torch.full((1, 2), self.decoder.decoder_start, dtype=torch.long, device=ids.device))

    def max_decoder_positions(self):
        return self.decoder.max_positions()


# ------------------------------------------------------------------------------ classifiers


class _HFClassifier(_HFSites, BaseFairseqModel):
    def __init__(self, hf, tokenizer, dictionary, vocab_map, max_positions: int):
        super().__init__()
        self.hf = hf
        self.tokenizer = tokenizer
        self.dictionary = dictionary
        self.__dict__["vocab_map"] = vocab_map
        self.register_buffer("to_hf", vocab_map.to_hf, persistent=False)
        self.pad, self.eos = dictionary.pad(), dictionary.eos()
        self.segments = (getattr(hf.config, "type_vocab_size", 0) or 0) > 1
        self._max_positions = max_positions

    @property
    def device_anchor(self):
        return self.to_hf

    def hf_inputs(self, tokens: Tensor) -> Dict[str, Tensor]:
        mask = tokens.ne(self.pad)
        inputs = {"input_ids": self.to_hf[tokens], "attention_mask": mask.long()}
        if self.segments:
            inputs["token_type_ids"] = segment_ids(tokens, self.eos, self.pad)
        return inputs

    def _probe_run(self):
        ids = _probe_ids(self, 3)
        self.hf(input_ids=ids, attention_mask=torch.ones_like(ids))

    def max_positions(self):
        return self._max_positions

    @classmethod
    def _load(cls, cfg, task, auto_class, dictionary, **config_kwargs):
        tokenizer, (vmap,) = load_hf_tokenizer(cfg, [(dictionary, "source dictionary")])
        hf = load_hf_model(cfg, auto_class, **config_kwargs)
        vmap.check_model_size(hf.get_input_embeddings().num_embeddings)
        return hf, tokenizer, vmap


@register_model("hf_token_classifier", dataclass=HFTokenClassifierConfig)
class HFTokenClassifier(_HFClassifier):
    """Per-piece tag logits ``[B, T, len(tag dictionary)]`` (specials included, as the task decodes)."""

    @classmethod
    def build_model(cls, cfg, task):
        tags = task.target_dictionary
        labels = {i: tags[i] for i in range(len(tags))}
        hf, tokenizer, vmap = cls._load(
            cfg, task, "AutoModelForTokenClassification", task.source_dictionary,
            num_labels=len(tags), id2label=labels, label2id={v: k for k, v in labels.items()},
        )
        if not getattr(task.cfg, "prepend_bos", True) or not getattr(task.cfg, "append_eos", True):
            logger.warning(
                "hf_token_classifier: without --prepend-bos --append-eos the pieces lack the "
                "tokenizer's [CLS]/<s> ... [SEP]/</s> the model was pretrained with"
            )
        return cls(hf, tokenizer, task.source_dictionary, vmap, max_positions_of(hf.config))

    def forward(self, src_tokens, src_lengths=None, **kwargs):
        tokens, back = right_align(src_tokens, self.pad)
        logits = self.hf(**self.hf_inputs(tokens), return_dict=True).logits
        if back is not None:
            logits = logits.gather(1, back.unsqueeze(-1).expand_as(logits))
        return logits, {"attn": None}

    def get_normalized_probs(self, net_output, log_probs, sample=None):
        logits = net_output[0].float()
        return utils.log_softmax(logits, dim=-1) if log_probs else utils.softmax(logits, dim=-1)

    def get_targets(self, sample, net_output):
        return sample["target"]


@register_model("hf_sequence_classifier", dataclass=HFSequenceClassifierConfig)
class HFSequenceClassifier(_HFClassifier):
    """One logit vector (or regression value) per sentence, as fairseq's sentence_prediction wants."""

    def __init__(self, *args, num_labels: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.num_labels = num_labels
        self._head_names: List[str] = []

    @classmethod
    def build_model(cls, cfg, task):
        tcfg = task.cfg
        regression = bool(getattr(tcfg, "regression_target", False))
        num_labels = getattr(tcfg, "num_classes", None)
        if num_labels is None or num_labels < 1:
            raise ValueError("hf_sequence_classifier needs --num-classes (sentence_prediction)")
        extra = {"num_labels": num_labels}
        if regression:
            extra["problem_type"] = "regression"
        label_dict = getattr(task, "label_dictionary", None)
        if label_dict is not None and not regression:
            names = label_dict.symbols[label_dict.nspecial: label_dict.nspecial + num_labels]
            if len(names) == num_labels:
                extra["id2label"] = dict(enumerate(names))
                extra["label2id"] = {n: i for i, n in enumerate(names)}
        hf, tokenizer, vmap = cls._load(
            cfg, task, "AutoModelForSequenceClassification", task.source_dictionary, **extra
        )
        return cls(hf, tokenizer, task.source_dictionary, vmap, max_positions_of(hf.config), num_labels=num_labels)

    def register_classification_head(self, name, num_classes=None, inner_dim=None, **kwargs):
        if num_classes is not None and num_classes != self.num_labels:
            raise ValueError(
                f"hf_sequence_classifier: head {name!r} wants {num_classes} classes but the model "
                f"was built with {self.num_labels}"
            )
        if name not in self._head_names:
            self._head_names.append(name)

    @property
    def classification_heads(self) -> Dict[str, nn.Module]:
        head = getattr(self.hf, "classifier", None) or getattr(self.hf, "score", None) or self.hf
        return {name: head for name in self._head_names}

    def forward(self, src_tokens, src_lengths=None, features_only=False, classification_head_name=None, **kwargs):
        if classification_head_name is not None and self._head_names and classification_head_name not in self._head_names:
            raise ValueError(f"hf_sequence_classifier: no classification head {classification_head_name!r}")
        tokens, _ = right_align(src_tokens, self.pad)
        logits = self.hf(**self.hf_inputs(tokens), return_dict=True).logits
        return logits, {}

    def get_normalized_probs(self, net_output, log_probs, sample=None):
        logits = net_output[0].float()
        return utils.log_softmax(logits, dim=-1) if log_probs else utils.softmax(logits, dim=-1)
