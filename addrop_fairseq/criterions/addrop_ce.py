"""``--criterion addrop_ce``: cross-entropy with AD-DROP on the self-attention maps.

A thin fairseq adapter over :class:`addrop_fairseq.engine.ADDropEngine` (the HF Trainer is the
other): plain updates (odd epochs under cross-tuning, validation, inference) run the stock
fairseq criterion and nothing else; an AD-DROP update is the engine's ``run``: pass 1 on the
unwrapped model (no DDP reducer armed) with the selected maps recorded and the attribution
method, the drop masks (Eq. 6-7 per site), then the stock criterion under the masks, whose
loss fairseq back-propagates. An update whose attributions are all zero is refused.

The options are checked when the criterion is built (by the engine; fairseq-train's parser
checks them too), the sites when the first epoch begins, with messages that name the flags.
Under cross-tuning, a training planned to stop (``--max-epoch`` / ``--max-update``) before its
first AD-DROP update is warned about before the first update, and again when it ends without one.

Metrics: ``addrop_active`` (share of AD-DROP micro-batches), ``addrop_drop_frac`` (dropped /
valid keys of the masked maps) and ``addrop_drop_frac_attributed`` (the same over the query
rows whose attribution is not all zero: the drop that can reach the output).
"""
import logging
import math
import typing
from dataclasses import field, fields, make_dataclass

import torch

from fairseq import utils
from fairseq.criterions import register_criterion
from fairseq.dataclass import ChoiceEnum
from fairseq.logging import metrics

from .. import schedule, task_kinds
from ..engine import DROP_COUNTS, ADDropEngine
from ..options import ADDROP_CHECKS, ADDropOptions
from .site_criterion import SiteCriterion, StockLossConfig, unwrap

logger = logging.getLogger(__name__)


def fairseq_fields(options) -> list:
    """The fields of a fairseq-free options dataclass for a FairseqDataclass: same names,
    defaults and help; a ``Literal`` of choices becomes fairseq's ``ChoiceEnum``."""
    out = []
    for f in fields(options):
        kind = ChoiceEnum(list(typing.get_args(f.type))) if typing.get_origin(f.type) is typing.Literal else f.type
        out.append((f.name, kind, field(default=f.default, metadata=dict(f.metadata))))
    return out


#: ``--criterion addrop_ce``'s options: the stock loss's (fairseq's own) and AD-DROP's, made
#: from :class:`addrop_fairseq.options.ADDropOptions` (one place for names, defaults and help)
ADDropCriterionConfig = make_dataclass("ADDropCriterionConfig", fairseq_fields(ADDropOptions), bases=(StockLossConfig,))
ADDropCriterionConfig.__module__ = __name__


@register_criterion("addrop_ce", dataclass=ADDropCriterionConfig)
class ADDropCriterion(SiteCriterion):
    OPTION_CHECKS = ADDROP_CHECKS

    def __init__(self, cfg: ADDropCriterionConfig, task):
        # the engine checks the --addrop-* options (hydra configs and code skip fairseq-train's parser)
        engine = ADDropEngine(ADDropOptions(**{f.name: getattr(cfg, f.name) for f in fields(ADDropOptions)}),
                              "--criterion addrop_ce")
        super().__init__(task, cfg, cfg.addrop_attention, cfg.addrop_layers,
                         "--addrop-attention / --addrop-layers", "addrop_ce")
        self.addrop = engine
        engine.check_kind(self.task_kind)
        self.cfg = cfg
        # fairseq keeps the training config as the parent of the criterion's (merge_with_parent)
        parent = getattr(cfg, "_get_parent", None)
        self._root = parent() if parent is not None else None
        self._train_itr = None  # the training split's EpochBatchIterator (made_batch_iterator)
        self._plan_told = self._end_told = False
        self._stops = None  # (max_epoch, max_update), read once

    def addrop_now(self) -> bool:
        return self.addrop.active(self.epoch, self.num_updates)

    # ------------------------------------------------------------------ the plan

    def _setting(self, path: str, default):
        from omegaconf import OmegaConf

        if self._root is None:
            return default
        value = OmegaConf.select(self._root, path, default=default)
        return default if value is None else value

    def _epoch_updates(self):
        """(updates left in this epoch counting the running one, updates per epoch), from the
        training iterator; (None, None) when fairseq made none through the task."""
        itr = self._train_itr
        if itr is None:
            return None, None
        freqs = list(self._setting("optimization.update_freq", [1])) or [1]
        freq = int(freqs[min(self.epoch, len(freqs)) - 1])
        batches = len(itr)
        left = math.ceil(max(batches - itr.iterations_in_epoch, 0) / freq) + 1
        return left, math.ceil(batches / freq)

    def _limits(self):
        """(--max-epoch, --max-update) of the training config (0: no limit)."""
        if self._stops is None:
            self._stops = (int(self._setting("optimization.max_epoch", 0)), int(self._setting("optimization.max_update", 0)))
        return self._stops

    def _flags(self) -> str:
        max_epoch, max_update = self._limits()
        stops = [f"--max-epoch {max_epoch}"] if max_epoch else []
        stops += [f"--max-update {max_update}"] if max_update else []
        period = self.addrop.options.addrop_cross_period
        runs = (f"AD-DROP runs in updates [{period}, {2 * period}), ..." if period
                else "AD-DROP runs from epoch 2 (odd epochs are plain fine-tuning)")
        return f"cross-tuning (--addrop-schedule cross) trains plain first: {runs}, and training stops at {' / '.join(stops)}"

    @staticmethod
    def _master() -> bool:
        return not (torch.distributed.is_available() and torch.distributed.is_initialized()
                    and torch.distributed.get_rank() != 0)

    def made_batch_iterator(self, dataset, iterator):
        if dataset is not None and dataset is self.task.datasets.get(self._setting("dataset.train_subset", "train")):
            self._train_itr = iterator

    def begin_train_step(self, update_num, ignore_grad):
        super().begin_train_step(update_num, ignore_grad)
        if not self._plan_told:
            self._plan_told = True
            self._warn_if_planned_plain()

    def _warn_if_planned_plain(self) -> None:
        """Before the first update: warn when the planned training never reaches AD-DROP."""
        if not self.addrop.may_never_drop() or self._root is None:
            return
        left, per_epoch = self._epoch_updates()
        max_epoch, max_update = self._limits()
        planned = schedule.addrop_planned("cross", self.addrop.options.addrop_cross_period, self.epoch, self.num_updates,
                                          max_epoch=max_epoch, max_update=max_update, left_in_epoch=left,
                                          updates_per_epoch=per_epoch)
        if planned is False and self._master():
            logger.warning(
                "AD-DROP will not run in this training: %s%s. Set --addrop-cross-period N (alternate every N updates) "
                "or --addrop-schedule always.", self._flags(),
                f" (an epoch has {per_epoch} updates)" if per_epoch else "")

    def end_update(self, optimizer, update_num):
        """After the last planned update (``--max-update``, or the end of ``--max-epoch``'s
        epoch): say so when no AD-DROP update ran."""
        if self._end_told or not self.addrop.may_never_drop() or self._root is None:
            return
        done = update_num + 1
        max_epoch, max_update = self._limits()
        itr = self._train_itr
        last = bool(max_update and done >= max_update) or bool(
            max_epoch and self.epoch >= max_epoch and itr is not None and itr.end_of_epoch())
        if last:
            self._end_told = True
            if self.addrop.runs == 0 and self._master():
                logger.warning("training ended after %d updates without a single AD-DROP update: %s. Set "
                               "--addrop-cross-period N or --addrop-schedule always.", done, self._flags())

    # ------------------------------------------------------------------ the step

    def forward(self, model, sample, reduce=True):
        if not model.training or not self.addrop_now():
            return self.plain_loss(model, sample, reduce, addrop_steps=1, addrop_active=0,
                                   **{f"addrop_{c}": 0 for c in DROP_COUNTS})
        loss, sample_size, log, _ = self.addrop_step(model, sample, reduce)
        return loss, sample_size, log

    def addrop_step(self, model, sample, reduce=True, keep=False):
        """One AD-DROP update (the engine's): pass 1 on the unwrapped model, the masks, the stock
        loss under them. Returns the loss, sample size, log and the ``DropMasks`` (``keep``:
        with each site's attribution and mask, what ``addrop-explain`` draws)."""
        selected = self.prepare(model)
        (loss, sample_size, log), drop = self.addrop.run(
            self.task_kind, unwrap(model), sample, selected, lambda: self.task_kind.loss(model, sample, reduce=reduce),
            keep=keep)
        log.update(addrop_steps=1, addrop_active=1, **{f"addrop_{c}": getattr(drop, c) for c in DROP_COUNTS})
        return loss, sample_size, log, drop

    def attribute(self, model, sample, selected):
        """Pass 1 alone: one attribution tensor [B, H, T, S] per site (None where the site did
        not run), or None for a random region (RD)."""
        return self.addrop.attribute(self.task_kind, model, sample, selected)

    # ------------------------------------------------------------------ metrics

    @classmethod
    def reduce_metrics(cls, logging_outputs) -> None:
        task_kinds.reduce_metrics(logging_outputs)
        steps = sum(log.get("addrop_steps", 0) for log in logging_outputs)
        if steps > 0:
            active = sum(log.get("addrop_active", 0) for log in logging_outputs)
            dropped = utils.item(sum(log.get("addrop_dropped", 0) for log in logging_outputs))
            valid = utils.item(sum(log.get("addrop_valid", 0) for log in logging_outputs))
            metrics.log_scalar("addrop_active", active / steps, steps, round=3)
            # weighted by the valid positions, so an epoch's value is sum(dropped) / sum(valid)
            frac = dropped / valid if valid else 0.0
            metrics.log_scalar("addrop_drop_frac", frac, valid, round=4)
            # the drop over the query rows whose attribution is not all zero (masks.attributed_rows)
            dropped = utils.item(sum(log.get("addrop_dropped_attributed", 0) for log in logging_outputs))
            valid = utils.item(sum(log.get("addrop_valid_attributed", 0) for log in logging_outputs))
            metrics.log_scalar("addrop_drop_frac_attributed", dropped / valid if valid else 0.0, valid, round=4)
