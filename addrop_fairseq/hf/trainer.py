"""AD-DROP for HuggingFace ``Trainer`` users: :class:`ADDropTrainer`, :class:`ADDropSeq2SeqTrainer`.

::

    from addrop_fairseq.hf.trainer import ADDropArguments, ADDropTrainer
    trainer = ADDropTrainer(model=model, args=training_args, train_dataset=train, ...,
                            addrop_args=ADDropArguments(addrop_p=0.3, addrop_q=0.3))
    trainer.train()

``ADDropArguments`` is :class:`addrop_fairseq.options.ADDropOptions`: the options of
``--criterion addrop_ce`` under the same names and defaults, read by ``HfArgumentParser``
(``HfArgumentParser((TrainingArguments, ADDropArguments))``: ``--addrop_p 0.3`` or
``--addrop-p 0.3``).

A training step is the criterion's (:mod:`addrop_fairseq.step`): on AD-DROP updates pass 1
runs in train mode on the unwrapped model (``accelerator.unwrap_model``: no DDP reducer
armed) with the selected attention maps recorded, the attribution method (GA: one
``autograd.grad`` over all maps, loss-scaled for fp16/bf16 maps), the drop masks
(``DropMasks``, Eq. 6-7), then pass 2 is the Trainer's own ``compute_loss`` with the masks
applied, and its loss is what the Trainer back-propagates. Plain updates, evaluation,
``predict`` and ``generate`` are the stock Trainer's (the model's attention runs its stock
implementation while AD-DROP is idle).

Cross-tuning follows the Trainer's epoch (``state.epoch``: epoch 1 plain, 2 AD-DROP, ...;
with ``addrop_cross_period`` > 0 its ``global_step``), so resuming from a checkpoint
continues the schedule, and every micro-batch of a gradient-accumulation step gets the masks
of its own pass 1. The logs carry ``addrop_active`` (share of the interval's micro-batches
that ran AD-DROP) and ``addrop_drop_frac`` (dropped / valid keys of the masked maps), summed
over processes.

Importing this module imports transformers, not fairseq.
"""
import math
from typing import Optional

import torch

from .. import sites
from ..options import ADDropOptions
from ..step import ADDropStep
from . import _compat, heads

_tf = _compat.transformers()
Trainer = _tf.Trainer
Seq2SeqTrainer = _tf.Seq2SeqTrainer

ADDropArguments = ADDropOptions  # the name a Trainer user reads; fields and defaults in one place


def tile_batch(batch, repeat: int):
    """``batch`` (a Trainer batch: a dict of tensors) with every tensor of the batch's size
    along dim 0 repeated ``repeat`` times (integrated gradients' ``--addrop-ig-batch``)."""
    bsz = next(v.size(0) for v in batch.values() if torch.is_tensor(v) and v.dim() > 0)
    return {k: v.repeat(repeat, *[1] * (v.dim() - 1)) if torch.is_tensor(v) and v.dim() > 0 and v.size(0) == bsz
            else v for k, v in batch.items()}


def _checkpointing(args, model) -> bool:
    """Activation (gradient) checkpointing asked for, under transformers 5's names or the old ones."""
    for name in ("activation_checkpointing", "gradient_checkpointing"):
        if name in vars(args) and vars(args)[name]:
            return True
    for name in ("is_activation_checkpointing", "is_gradient_checkpointing"):
        if name in dir(type(model)):
            return bool(getattr(model, name))
    return False


CHECKPOINTING_REFUSED = (
    "AD-DROP cannot be combined with gradient checkpointing: checkpointed layers are recomputed "
    "in the backward pass without the attention masks. Set activation_checkpointing (gradient_checkpointing) to False."
)


class ADDropMixin:
    """AD-DROP's step, schedule and metrics for a ``Trainer`` subclass (see the module docstring)."""

    def __init__(self, *args, addrop_args: Optional[ADDropOptions] = None, **kwargs):
        self.addrop_args = addrop_args if addrop_args is not None else ADDropOptions()
        self.addrop = ADDropStep(self.addrop_args)  # checks the options
        super().__init__(*args, **kwargs)
        model = self.model
        if model is None:
            raise ValueError("ADDropTrainer needs a model (model_init is not supported)")
        self.addrop_kind = heads.kind_of(model)
        if self.addrop_kind.name == "regression" and self.addrop_args.addrop_labels == "gold":
            raise ValueError("--addrop-labels gold needs class labels; a regression target has none")
        if _checkpointing(self.args, model):
            raise ValueError(CHECKPOINTING_REFUSED)
        self.addrop_sites = None
        if self.addrop_args.addrop_schedule != "never":
            try:
                self.addrop_sites = heads.find_sites(model, self.addrop_args.kinds, self.addrop_args.layers)
            except ValueError as e:
                raise ValueError(f"--addrop-attention / --addrop-layers: {e}") from None
        self._addrop_counts = [0, 0, 0, 0]  # micro-batches, AD-DROP ones, dropped keys, valid keys

    # ------------------------------------------------------------------ the schedule

    def addrop_epoch(self) -> int:
        """The 1-based epoch the Trainer is in (``state.epoch`` is e + fraction done)."""
        return int(math.floor(self.state.epoch or 0.0)) + 1

    def addrop_now(self) -> bool:
        return self.addrop_sites is not None and self.addrop.active(self.addrop_epoch(), self.state.global_step)

    # ------------------------------------------------------------------ the step

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not model.training:  # evaluation, predict
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)
        if not self.addrop_now():
            self._addrop_counts[0] += 1
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)
        result, _ = self.addrop_step(model, inputs, return_outputs, num_items_in_batch)
        return result

    def addrop_step(self, model, inputs, return_outputs=False, num_items_in_batch=None, keep=False):
        """One AD-DROP micro-batch: pass 1 on the unwrapped model and its attribution, the
        masks, pass 2 (the Trainer's ``compute_loss`` under the masks). Returns what
        ``compute_loss`` returns and the :class:`~addrop_fairseq.masks.DropMasks` (``keep``:
        with each site's attribution and mask)."""
        selected = self.addrop_sites
        unwrapped = self.accelerator.unwrap_model(model)
        if _checkpointing(self.args, unwrapped):  # switched on after __init__ (train() itself, or by hand)
            raise ValueError(CHECKPOINTING_REFUSED)
        attributions = self.addrop.attribute(self.addrop_kind, unwrapped, inputs, selected, tile_batch)
        drop = self.addrop.masks(attributions, keep=keep)
        query_valid = self.addrop_kind.query_valid(inputs, selected)
        with sites.masking(selected, drop, query_valid):
            result = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                          num_items_in_batch=num_items_in_batch)
        c = self._addrop_counts
        c[0] += 1
        c[1] += 1
        c[2] = c[2] + drop.dropped
        c[3] = c[3] + drop.valid
        return result, drop

    # ------------------------------------------------------------------ metrics

    def log(self, logs, *args, **kwargs):
        steps = self._addrop_counts[0]
        if "loss" in logs and "eval_loss" not in logs and steps > 0:
            counts = torch.tensor([float(x) for x in self._addrop_counts], dtype=torch.float64,
                                  device=self.args.device)
            if self.accelerator.num_processes > 1:
                counts = self.accelerator.reduce(counts, reduction="sum")
            steps, active, dropped, valid = counts.tolist()
            logs["addrop_active"] = round(active / steps, 3)
            logs["addrop_drop_frac"] = round(dropped / valid, 4) if valid else 0.0
            self._addrop_counts = [0, 0, 0, 0]
        return super().log(logs, *args, **kwargs)


class ADDropTrainer(ADDropMixin, Trainer):
    """``transformers.Trainer`` with AD-DROP (``addrop_args=ADDropArguments(...)``)."""


class ADDropSeq2SeqTrainer(ADDropMixin, Seq2SeqTrainer):
    """``transformers.Seq2SeqTrainer`` with AD-DROP; generation stays plain."""


__all__ = ["ADDropArguments", "ADDropTrainer", "ADDropSeq2SeqTrainer", "ADDropMixin", "tile_batch"]
