"""``hf_token_classifier`` and ``hf_sequence_classifier``: HuggingFace encoders with a
classification head as fairseq models (see :mod:`.loading` for what all wrappers share).

* ``hf_token_classifier`` (``--task sequence_tagging --prepend-bos --append-eos``;
  AutoModelForTokenClassification): one logit per piece over the task's tag dictionary.
* ``hf_sequence_classifier`` (``--task sentence_prediction``, regression included;
  AutoModelForSequenceClassification): the number of labels comes from ``--num-classes``;
  ``classification_heads`` holds the head under the registered name.

BERT-like models (``type_vocab_size`` > 1) get ``token_type_ids`` 1 after the first
``</s>`` ([SEP]) and 0 elsewhere, as HF tokenizers give sentence pairs.
"""
import logging
from typing import Dict, List

import torch
from torch import Tensor, nn

from fairseq import utils
from fairseq.models import BaseFairseqModel, register_model

from .loading import (
    HFSequenceClassifierConfig,
    HFTokenClassifierConfig,
    load_hf_model,
    load_hf_tokenizer,
    max_positions_of,
    right_align,
    segment_ids,
)
from .seam import HFSitesMixin

logger = logging.getLogger(__name__)


class _HFClassifier(HFSitesMixin, BaseFairseqModel):
    """What both classifiers share: the HF model, its inputs from fairseq tokens, the probe."""

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
        # transformers' report of the weights --hf-model-dir lacks (the new head): printed at the
        # first training forward, unless a fairseq checkpoint's state replaced them first
        self._load_report = getattr(hf, "addrop_load_report", None)
        self._fresh_keys = ["hf." + k for k in getattr(hf, "addrop_fresh_keys", [])]

    def load_state_dict(self, state_dict, strict=True, model_cfg=None, args=None):
        out = super().load_state_dict(state_dict, strict=strict, model_cfg=model_cfg, args=args)
        if all(k in state_dict for k in self._fresh_keys):
            self._load_report = None  # the checkpoint's weights, not newly initialized ones
        return out

    def _report_fresh_weights(self) -> None:
        if self._load_report is not None and self.training:
            logger.warning("%s: weights not in --hf-model-dir, newly initialized for training:\n%s",
                           type(self).__name__, self._load_report)
            self._load_report = None

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
        ids = self._probe_source()
        self.hf(input_ids=ids, attention_mask=torch.ones_like(ids))

    def max_positions(self):
        return self._max_positions

    @classmethod
    def _load(cls, cfg, task, auto_class, dictionary, **config_kwargs):
        tokenizer, (vmap,) = load_hf_tokenizer(cfg, [(dictionary, "source dictionary")])
        hf = load_hf_model(cfg, auto_class, hold_report=True, **config_kwargs)
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
        self._report_fresh_weights()
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
        doubled = [flag for flag, field in (("--init-token", "init_token"), ("--separator-token", "separator_token"))
                   if getattr(tcfg, field, None) is not None]
        if doubled:
            raise ValueError(
                f"hf_sequence_classifier: drop {' and '.join(doubled)} (fairseq RoBERTa's flags): addrop-hf-preprocess "
                "already wrote the tokenizer's own [CLS]/<s> and [SEP]/</s>, and the task would add them again"
            )
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
        if classification_head_name is not None and self._head_names and \
                classification_head_name not in self._head_names:
            raise ValueError(f"hf_sequence_classifier: no classification head {classification_head_name!r}")
        self._report_fresh_weights()
        tokens, _ = right_align(src_tokens, self.pad)
        logits = self.hf(**self.hf_inputs(tokens), return_dict=True).logits
        return logits, {}

    def get_normalized_probs(self, net_output, log_probs, sample=None):
        logits = net_output[0].float()
        return utils.log_softmax(logits, dim=-1) if log_probs else utils.softmax(logits, dim=-1)
