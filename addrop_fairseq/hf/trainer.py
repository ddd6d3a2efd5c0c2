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

A training step is the criterion's (:class:`addrop_fairseq.engine.ADDropEngine`, which this
Trainer and ``--criterion addrop_ce`` both adapt): on AD-DROP updates pass 1
runs in train mode on the unwrapped, uncompiled model (``accelerator.unwrap_model(...,
keep_torch_compile=False)``: no DDP reducer armed; a ``torch.compile``'d graph would give the
recorded maps zero gradients) with the selected attention maps recorded, the attribution method (GA: one
``autograd.grad`` over all maps, loss-scaled for fp16/bf16 maps), the drop masks
(``DropMasks``, Eq. 6-7), then pass 2 is the Trainer's own ``compute_loss`` with the masks
applied (compiled if the model is: the masks apply there alike), and its loss is what the
Trainer back-propagates; an update whose attributions are all zero is refused
(:func:`addrop_fairseq.engine.check_attributed`). Plain updates, evaluation,
``predict`` and ``generate`` are the stock Trainer's (the model's attention runs its stock
implementation while AD-DROP is idle).

Cross-tuning follows the Trainer's epoch (``state.epoch``: epoch 1 plain, 2 AD-DROP, ...;
with ``addrop_cross_period`` > 0 its ``global_step``), so resuming from a checkpoint
continues the schedule, and every micro-batch of a gradient-accumulation step gets the masks
of its own pass 1. The logs carry ``addrop_active`` (share of the interval's micro-batches
that ran AD-DROP), ``addrop_drop_frac`` (dropped / valid keys of the masked maps) and
``addrop_drop_frac_attributed`` (the same over the query rows whose attribution is not all
zero: the drop that can reach the output), summed over processes. Cross-tuning planned to
stop (``num_train_epochs`` / ``max_steps``) before its first AD-DROP update is warned about when
training begins, and again when it ends without one.

Importing this module imports transformers, not fairseq.
"""
import logging
import math
from typing import Optional

import torch

from .. import schedule
from ..engine import DROP_COUNTS, ADDropEngine, refuse_checkpointing
from ..options import ADDropOptions
from . import _compat, heads

_tf = _compat.transformers()
Trainer = _tf.Trainer
Seq2SeqTrainer = _tf.Seq2SeqTrainer

logger = logging.getLogger(__name__)

ADDropArguments = ADDropOptions  # the name a Trainer user reads; fields and defaults in one place


CHECKPOINTING_REMEDY = "Set activation_checkpointing (gradient_checkpointing) to False."


def refuse_checkpointing_of(args, model) -> None:
    """Gradient checkpointing asked for in the Trainer's arguments (applied by ``train()``), under
    transformers 5's name or the old one, or already on ``model``: refused."""
    asked = any(vars(args).get(name) for name in ("activation_checkpointing", "gradient_checkpointing"))
    refuse_checkpointing(model, "AD-DROP", CHECKPOINTING_REMEDY, asked=asked)


class _PlanWatch(_tf.TrainerCallback):
    """Cross-tuning that never reaches an AD-DROP update: a warning when training begins (from
    the planned ``max_steps`` and the epoch's updates) and when it ends without one."""

    def __init__(self, trainer):
        self.trainer = trainer

    def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
        t = self.trainer
        t.addrop.runs = 0
        if not t._addrop_may_never_drop():
            return
        per_epoch = None
        try:
            batches = len(train_dataloader) if train_dataloader is not None else None
        except TypeError:  # an iterable dataset: no epoch length
            batches = None
        if batches:
            ga = args.gradient_accumulation_steps
            per_epoch = max(batches // ga + int(batches % ga > 0), 1)
        step = state.global_step
        planned = schedule.addrop_planned(
            "cross", t.addrop_args.addrop_cross_period, (step // per_epoch + 1) if per_epoch else t.addrop_epoch(),
            step, max_update=state.max_steps, left_in_epoch=per_epoch - step % per_epoch if per_epoch else None,
            updates_per_epoch=per_epoch)
        if planned is False and t.accelerator.is_main_process:
            logger.warning("AD-DROP will not run in this training: %s (%d optimizer steps planned%s). Set "
                           "addrop_cross_period=N (alternate every N steps) or addrop_schedule='always'.",
                           t._addrop_plan_words(), state.max_steps,
                           f", {per_epoch} per epoch" if per_epoch else "")

    def on_train_end(self, args, state, control, **kwargs):
        t = self.trainer
        if t._addrop_may_never_drop() and t.addrop.runs == 0 and t.accelerator.is_main_process:
            logger.warning("training ended after %d optimizer steps without a single AD-DROP update: %s. Set "
                           "addrop_cross_period=N or addrop_schedule='always'.", state.global_step,
                           t._addrop_plan_words())


class ADDropTrainerMixin:
    """AD-DROP for a ``Trainer`` subclass: a thin adapter over the engine (see the module docstring)."""

    def __init__(self, *args, addrop_args: Optional[ADDropOptions] = None, **kwargs):
        self.addrop_args = addrop_args if addrop_args is not None else ADDropOptions()
        self.addrop = ADDropEngine(self.addrop_args, "ADDropTrainer")  # checks the options
        super().__init__(*args, **kwargs)
        if self.model is None:
            raise ValueError("ADDropTrainer needs a model (model_init is not supported)")
        # sites and head on the uncompiled model (a user's torch.compile(model) included)
        model = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        self.addrop_kind = heads.kind_of(model)
        self.addrop.check_kind(self.addrop_kind)
        refuse_checkpointing_of(self.args, model)
        self.addrop_sites = None
        if self.addrop_args.addrop_schedule != "never":
            try:
                self.addrop_sites = heads.find_sites(model, self.addrop_args.kinds, self.addrop_args.layers)
            except ValueError as e:
                raise ValueError(f"--addrop-attention / --addrop-layers: {e}") from None
        # micro-batches, AD-DROP ones, then DROP_COUNTS' sums
        self._addrop_counts = [0] * (2 + len(DROP_COUNTS))
        self.add_callback(_PlanWatch(self))

    def _addrop_may_never_drop(self) -> bool:
        return self.addrop_sites is not None and self.addrop.may_never_drop()

    def _addrop_plan_words(self) -> str:
        period = self.addrop_args.addrop_cross_period
        runs = (f"AD-DROP runs in steps [{period}, {2 * period}), ..." if period
                else "AD-DROP runs from epoch 2 (odd epochs are plain fine-tuning)")
        stop = (f"max_steps={self.args.max_steps}" if self.args.max_steps > 0
                else f"num_train_epochs={self.args.num_train_epochs:g}")
        return f"cross-tuning (addrop_schedule='cross') trains plain first: {runs}, and training stops at {stop}"

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
        """One AD-DROP micro-batch (the engine's): pass 1 on the unwrapped, uncompiled model, the
        masks, the Trainer's ``compute_loss`` under them. Returns what ``compute_loss`` returns
        and the ``DropMasks`` (``keep``: with each site's attribution and mask)."""
        unwrapped = self.accelerator.unwrap_model(model, keep_torch_compile=False)
        refuse_checkpointing_of(self.args, unwrapped)  # switched on after __init__ (train() itself, or by hand)
        result, drop = self.addrop.run(
            self.addrop_kind, unwrapped, inputs, self.addrop_sites,
            lambda: super(ADDropTrainerMixin, self).compute_loss(model, inputs, return_outputs=return_outputs,
                                                                 num_items_in_batch=num_items_in_batch),
            keep=keep)
        c = self._addrop_counts
        c[0] += 1
        c[1] += 1
        for i, name in enumerate(DROP_COUNTS):
            c[2 + i] = c[2 + i] + getattr(drop, name)
        return result, drop

    # ------------------------------------------------------------------ metrics

    def log(self, logs, *args, **kwargs):
        steps = self._addrop_counts[0]
        if "loss" in logs and "eval_loss" not in logs and steps > 0:
            counts = torch.tensor([float(x) for x in self._addrop_counts], dtype=torch.float64,
                                  device=self.args.device)
            if self.accelerator.num_processes > 1:
                counts = self.accelerator.reduce(counts, reduction="sum")
            steps, active, dropped, valid, dropped_attr, valid_attr = counts.tolist()
            logs["addrop_active"] = round(active / steps, 3)
            logs["addrop_drop_frac"] = round(dropped / valid, 4) if valid else 0.0
            logs["addrop_drop_frac_attributed"] = round(dropped_attr / valid_attr, 4) if valid_attr else 0.0
            self._addrop_counts = [0] * (2 + len(DROP_COUNTS))
        return super().log(logs, *args, **kwargs)


class ADDropTrainer(ADDropTrainerMixin, Trainer):
    """``transformers.Trainer`` with AD-DROP (``addrop_args=ADDropArguments(...)``)."""


class ADDropSeq2SeqTrainer(ADDropTrainerMixin, Seq2SeqTrainer):
    """``transformers.Seq2SeqTrainer`` with AD-DROP; generation stays plain."""


__all__ = ["ADDropArguments", "ADDropTrainer", "ADDropSeq2SeqTrainer", "ADDropTrainerMixin"]
