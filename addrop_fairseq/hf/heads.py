"""Task kinds of HuggingFace models, from their head as transformers defines it (no fairseq).

What :mod:`addrop_fairseq.task_kinds` is for fairseq tasks, for a plain HF model fed a
Trainer batch (``input_ids``, ``attention_mask``, ..., ``labels``):

* sequence classification (``MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES``): the logit
  of the pseudo label (Eq. 4-5); with ``num_labels == 1`` (regression) minus the real loss
  (the squared error summed over the batch, Appendix A);
* token classification (``..._TOKEN_CLASSIFICATION_...``): Eq. 8 over the labelled
  positions (``labels != -100``);
* seq2seq LM (``..._SEQ_TO_SEQ_CAUSAL_LM_...``): Eq. 8 over the non-pad target tokens
  (``labels`` neither ``-100`` nor the pad id); encoder-decoder sites get the decoder's
  padded query rows from the same positions.

The targets' formulas are :mod:`addrop_fairseq.attribution`'s. :func:`kind_of` refuses any
other head with a message; :func:`find_sites` discovers and selects the model's attention
sites with :mod:`.seam` (refusing architectures whose attention does not go through
transformers' ``AttentionInterface``).
"""
from typing import List, Optional, Sequence

import torch
from torch import Tensor, nn

from .. import attribution, sites
from ..engine import Prediction
from . import _compat, seam

IGNORE = -100  # transformers' label for "no loss here"


class SequenceClassification:
    name = "classification"

    def predict(self, model, batch) -> Prediction:
        return Prediction(model(**batch).logits, batch.get("labels"))

    def labels(self, prediction: Prediction, gold: bool = False) -> Tensor:
        if gold:
            if prediction.gold is None:
                raise ValueError("--addrop-labels gold needs the batch's 'labels'")
            return prediction.gold.view(-1)
        return attribution.pseudo_labels(prediction.output)

    def target(self, prediction: Prediction, labels: Tensor) -> Tensor:
        return attribution.classification_target(prediction.output, labels)

    def query_valid(self, batch, selected):
        return None


class Regression(SequenceClassification):
    """``num_labels == 1``: no pseudo labels; the target is minus the real loss."""

    name = "regression"

    def labels(self, prediction: Prediction, gold: bool = False) -> Tensor:
        if prediction.gold is None:
            raise ValueError("AD-DROP on a regression head needs the batch's 'labels' (the target is minus the loss)")
        return prediction.gold

    def target(self, prediction: Prediction, labels: Tensor) -> Tensor:
        return attribution.regression_target(prediction.output, labels)


class TokenClassification:
    """Per-position log-probabilities; positions labelled -100 do not count (Eq. 8-10)."""

    name = "token"

    def __init__(self, pad: Optional[int] = None):
        self.pad = pad  # seq2seq: pad ids in labels do not count either

    def real(self, labels: Tensor) -> Tensor:
        real = labels.ne(IGNORE)
        if self.pad is not None:
            real &= labels.ne(self.pad)
        return real

    def predict(self, model, batch) -> Prediction:
        logits = model(**batch).logits
        labels = batch.get("labels")
        if labels is None:
            raise ValueError(f"AD-DROP on a {self.name} head needs the batch's 'labels' (they mark the positions that count)")
        return Prediction(torch.log_softmax(logits.float(), dim=-1), labels, self.real(labels))

    def labels(self, prediction: Prediction, gold: bool = False) -> Tensor:
        if gold:
            return prediction.gold.masked_fill(~prediction.real, 0)
        return attribution.pseudo_labels(prediction.output)

    def target(self, prediction: Prediction, labels: Tensor) -> Tensor:
        return attribution.token_target(prediction.output, labels, prediction.real)

    def query_valid(self, batch, selected):
        return None


class Seq2SeqLM(TokenClassification):
    """Target tokens: Eq. 8 over the non-pad ones. Encoder-decoder attention does not see the
    decoder's padding: its real query rows are the real target positions (the decoder input
    at t is the label at t-1, shifted right)."""

    name = "seq2seq"

    def query_valid(self, batch, selected):
        if not any(s.kind == "encoder-decoder" for s in selected) or batch.get("labels") is None:
            return None
        real = self.real(batch["labels"])
        return [real if s.kind == "encoder-decoder" else None for s in selected]


def _mapped(name: str) -> set:
    from transformers.models.auto import modeling_auto

    out = set()
    for v in getattr(modeling_auto, name).values():
        out.update(v if isinstance(v, (tuple, list)) else [v])
    return out


def kind_of(model: nn.Module):
    """The task kind of ``model``'s head, or a ValueError saying which heads AD-DROP handles."""
    _compat.transformers()
    classes = {c.__name__ for c in type(model).__mro__}
    config = getattr(model, "config", None)
    if classes & _mapped("MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES"):
        problem = getattr(config, "problem_type", None)
        if problem == "multi_label_classification":
            raise ValueError(
                f"{type(model).__name__} with problem_type='multi_label_classification': AD-DROP's "
                "pseudo label (the arg-max class) is not defined for multi-label heads"
            )
        if problem == "regression" or (problem is None and config.num_labels == 1):
            return Regression()
        return SequenceClassification()
    if classes & _mapped("MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES"):
        return TokenClassification()
    if classes & _mapped("MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES"):
        return Seq2SeqLM(pad=getattr(config, "pad_token_id", None))
    raise ValueError(
        f"AD-DROP cannot train {type(model).__name__}: it handles transformers' sequence classification "
        "(AutoModelForSequenceClassification, regression included), token classification "
        "(AutoModelForTokenClassification) and seq2seq LM (AutoModelForSeq2SeqLM) heads"
    )


def _probe_run(model: nn.Module):
    """One tiny forward pass of ``model`` (which modules run matters, not the text)."""
    config = model.config
    device = next(model.parameters()).device
    pad = getattr(config, "pad_token_id", None)
    token = 0 if pad is None else (pad + 1) % config.vocab_size
    ids = torch.full((1, seam.PROBE_SOURCE_LENGTH), token, dtype=torch.long, device=device)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if config.is_encoder_decoder:
        start = getattr(config, "decoder_start_token_id", None)
        start = pad if start is None else start
        inputs["decoder_input_ids"] = torch.full((1, seam.PROBE_TARGET_LENGTH), 0 if start is None else start,
                                                 dtype=torch.long, device=device)
    return lambda: model(**inputs)


def find_sites(model: nn.Module, kinds: Optional[Sequence[str]], layers: Optional[Sequence[int]]) -> List[sites.AttentionSite]:
    """``model``'s attention sites of ``kinds`` at ``layers``, installed (switches the model to
    the ``addrop`` attention implementation); a ValueError says what is missing."""
    encoder = model.get_encoder() if model.config.is_encoder_decoder else None
    found = seam.discover(model, _probe_run(model), encoder=encoder, src_len=seam.PROBE_SOURCE_LENGTH, prefix="")
    selected = sites.select_from(found, kinds, layers, type(model).__name__)
    sites.install(selected)
    return selected


__all__ = ["kind_of", "find_sites", "SequenceClassification", "Regression", "TokenClassification",
           "Seq2SeqLM", "IGNORE"]
