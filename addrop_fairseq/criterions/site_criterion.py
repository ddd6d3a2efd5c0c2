"""What every criterion that acts on attention maps shares: the ``--*-attention`` /
``--*-layers`` option parsing, the site selection before the first update (with the checks
that stop training early), fairseq's epoch and update number, the stock task loss and its
metrics. :class:`SiteCriterion` is the base of ``addrop_ce`` and ``attention_regularizer``."""
import argparse
import weakref
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import torch

from fairseq.criterions import FairseqCriterion
from fairseq.criterions.label_smoothed_cross_entropy import LabelSmoothedCrossEntropyCriterionConfig
from fairseq.criterions.sentence_prediction import SentencePredictionConfig

from .. import fairseq_seam, sites, task_kinds
from ..engine import refuse_checkpointing
from ..options import flag_of, parse_kinds, parse_layers
from ..training_hooks import Follower, follow_training


@dataclass
class StockLossConfig(LabelSmoothedCrossEntropyCriterionConfig, SentencePredictionConfig):
    """The options of the stock criteria a site criterion computes its loss with
    (label_smoothed_cross_entropy, sentence_prediction): fairseq's own dataclasses, so their
    names, defaults and help stay fairseq's."""


def unwrap(model):
    """The fairseq model under DDP / ModuleProxyWrapper / ``torch.compile`` layers (pass 1
    must run uncompiled: a compiled graph's recorded maps get zero gradients)."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), torch.nn.Module):
            model = model._orig_mod
        else:
            return model


def checked_type(convert, check: Callable, flag: str):
    """An argparse ``type`` that converts, then checks: a bad value is a usage error
    (``error: argument --x: must be ...``, exit 2), not a traceback from the criterion."""

    def parse(text):
        value = convert(text)
        try:
            check(flag, value)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e).removeprefix(flag).lstrip(": ")) from None
        return value

    parse.__name__ = getattr(convert, "__name__", "value")  # argparse's "invalid float value: 'x'"
    return parse


class SiteCriterion(FairseqCriterion, Follower):
    """The stock loss of the task (``task_kinds``) plus the attention sites it acts on; it
    follows the task's training (:mod:`addrop_fairseq.training_hooks`) for the epoch and update."""

    #: config field -> check(flag, value), run by fairseq-train's argument parser (a bad value
    #: is a usage error) and again when the criterion is built (hydra configs, code)
    OPTION_CHECKS: Dict[str, Callable] = {}

    @classmethod
    def add_args(cls, parser):
        """The config's options (fairseq's), with :attr:`OPTION_CHECKS` in their argparse types."""
        super().add_args(parser)
        for action in parser._actions:  # argparse lists its actions nowhere public
            if action.dest in cls.OPTION_CHECKS and action.option_strings:
                action.type = checked_type(action.type or str, cls.OPTION_CHECKS[action.dest],
                                           flag_of(action.dest))

    @classmethod
    def check_options(cls, cfg) -> None:
        for name, check in cls.OPTION_CHECKS.items():
            check(flag_of(name), getattr(cfg, name))

    def __init__(self, task, cfg, kinds_spec: str, layers_spec: str, flags: str, name: str):
        self.check_options(cfg)
        super().__init__(task)
        self.attention_kinds = parse_kinds(kinds_spec, flags.split(" / ")[0])
        self.layers = parse_layers(layers_spec, flags.split(" / ")[-1])
        self.task_kind = task_kinds.build_kind(task, cfg)
        self.site_flags, self.criterion_name = flags, name
        self.epoch = 1
        self.num_updates = 0
        self.ignore_grad = False  # the running micro-batch is a dummy one (its loss is zeroed)
        self.sites: Optional[List[sites.AttentionSite]] = None  # the last prepared model's
        # each model's sites: one criterion may serve several models (built once, reused)
        self._sites_of = weakref.WeakKeyDictionary()
        follow_training(task, self)

    def begin_epoch(self, epoch, model):
        """Called by the task at every epoch start: the clock, and early checks."""
        self.epoch = epoch
        self.prepare(model)

    def begin_train_step(self, update_num, ignore_grad):
        self.set_update_num(update_num)
        self.ignore_grad = ignore_grad

    def set_update_num(self, num_updates):
        self.num_updates = num_updates

    def select(self, model) -> List[sites.AttentionSite]:
        """``model``'s selected attention sites, installed; errors name the flags."""
        model = unwrap(model)
        refuse_checkpointing(model, f"--criterion {self.criterion_name}",
                             "Drop --checkpoint-activations, or use a smaller --max-tokens/--batch-size.")
        # a model with its own attention code (e.g. a HuggingFace wrapper) hands out its
        # sites itself; fairseq MultiheadAttention models get the fairseq seam
        own = getattr(model, "addrop_attention_sites", None)
        try:
            if own is not None:
                selected = own(self.attention_kinds, self.layers)
            else:
                selected = fairseq_seam.select_sites(model, self.attention_kinds, self.layers)
            sites.install(selected)
        except ValueError as e:
            raise ValueError(f"{self.site_flags}: {e}") from None
        return selected

    def prepare(self, model):
        """Select and install ``model``'s attention sites (once per model); errors here stop
        training before it starts."""
        net = unwrap(model)
        selected = self._sites_of.get(net)
        if selected is None:
            selected = self._sites_of[net] = self.select(net)
        self.sites = selected
        return selected

    def plain_loss(self, model, sample, reduce=True, **log):
        loss, sample_size, logging_output = self.task_kind.loss(model, sample, reduce=reduce)
        if model.training:
            logging_output.update(log)
        return loss, sample_size, logging_output

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True


__all__ = ["SiteCriterion", "StockLossConfig", "unwrap", "checked_type"]
