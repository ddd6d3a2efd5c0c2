"""``--task sequence_tagging``: one tag per word (CoNLL NER), scored with seqeval.

Data comes from ``python -m addrop_fairseq.tagging.preprocess``. A sample's ``target`` has
one entry per piece of ``src_tokens``: the word's tag index on its first piece and
``<pad>`` everywhere else (other pieces, ``<s>``/``</s>``, padding), so the loss (fairseq's
label-smoothed CE, or ``addrop_ce``) and AD-DROP's pseudo-label target skip them.
Validation logs entity-level ``precision``/``recall``/``f1`` (percent, seqeval's default
mode, from summed counts) and ``word_acc``; use ``--best-checkpoint-metric f1
--maximize-best-checkpoint-metric``.
"""
import inspect
import logging
import os
from dataclasses import dataclass, field

import numpy as np
import torch
from omegaconf import II, MISSING

from fairseq import utils
from fairseq.data import (
    AppendTokenDataset,
    BaseWrapperDataset,
    Dictionary,
    IdDataset,
    NestedDictionaryDataset,
    NumelDataset,
    NumSamplesDataset,
    PrependTokenDataset,
    RightPadDataset,
    SortDataset,
    StripTokenDataset,
    data_utils,
)
from fairseq.dataclass import FairseqDataclass
from fairseq.logging import metrics
from fairseq.tasks import FairseqTask, register_task

from ..tagging import decode, subwords
from ..tagging import metrics as tag_metrics

logger = logging.getLogger(__name__)


@dataclass
class SequenceTaggingConfig(FairseqDataclass):
    data: str = field(default=MISSING, metadata={"help": "data directory made by addrop_fairseq.tagging.preprocess"})
    prepend_bos: bool = field(default=False, metadata={"help": "put <s> before every sentence (RoBERTa)"})
    append_eos: bool = field(default=False, metadata={"help": "put </s> after every sentence (RoBERTa)"})
    add_mask_symbol: bool = field(
        default=False, metadata={"help": "add <mask> to the token dictionary, as pretrained RoBERTa's has"}
    )
    max_positions: int = field(default=512, metadata={"help": "max pieces per sentence, <s>/</s> included"})
    seed: int = II("common.seed")


class _LabelCount(BaseWrapperDataset):
    """Number of labelled positions (the words) of an item; a batch's is the sum."""

    def __init__(self, dataset, pad):
        super().__init__(dataset)
        self.pad = pad

    def __getitem__(self, index):
        return int(self.dataset[index].ne(self.pad).sum())

    def collater(self, samples):
        return sum(samples)


@register_task("sequence_tagging", dataclass=SequenceTaggingConfig)
class SequenceTaggingTask(FairseqTask):
    addrop_task_kind = "token"  # addrop_ce: per-position targets, <pad> positions ignored

    def __init__(self, cfg: SequenceTaggingConfig, token_dict, tag_dict, meta):
        super().__init__(cfg)
        self.token_dict = token_dict
        self.tag_dict = tag_dict
        self.meta = meta
        self._splitter = None

    @classmethod
    def setup_task(cls, cfg: SequenceTaggingConfig, **kwargs):
        meta = subwords.read_meta(cfg.data)
        token_dict = Dictionary.load(os.path.join(cfg.data, "tokens", "dict.txt"))
        if cfg.add_mask_symbol:
            token_dict.add_symbol("<mask>")
        tag_dict = Dictionary.load(os.path.join(cfg.data, "tags", "dict.txt"))
        logger.info("[tokens] dictionary: %d types; [tags] %d tags", len(token_dict), len(tag_dict) - tag_dict.nspecial)
        return cls(cfg, token_dict, tag_dict, meta)

    @property
    def addrop_unpredictable_labels(self):
        """addrop_ce: pseudo labels come from the tags prediction can output (no specials)."""
        return range(self.tag_dict.nspecial)

    @property
    def source_dictionary(self):
        return self.token_dict

    @property
    def target_dictionary(self):
        return self.tag_dict

    def max_positions(self):
        return self.cfg.max_positions

    # ------------------------------------------------------------------ data

    def load_dataset(self, split, epoch=1, combine=False, **kwargs):
        def load(sub, dictionary):
            path = os.path.join(self.cfg.data, sub, split)
            ds = data_utils.load_indexed_dataset(path, dictionary, combine=combine)
            if ds is None:
                raise FileNotFoundError(f"split {split!r} not found: {path}.{{bin,idx}}")
            return ds

        tokens, tags = load("tokens", self.token_dict), load("tags", self.tag_dict)
        if len(tokens) != len(tags):
            raise ValueError(f"{split}: {len(tokens)} token sequences but {len(tags)} tag sequences")
        sizes = np.array(tokens.sizes) - 1  # the stored </s> goes
        tokens = StripTokenDataset(tokens, self.token_dict.eos())
        tags = StripTokenDataset(tags, self.tag_dict.eos())
        if self.cfg.prepend_bos:
            tokens = PrependTokenDataset(tokens, self.token_dict.bos())
            tags = PrependTokenDataset(tags, self.tag_dict.pad())
            sizes = sizes + 1
        if self.cfg.append_eos:
            tokens = AppendTokenDataset(tokens, self.token_dict.eos())
            tags = AppendTokenDataset(tags, self.tag_dict.pad())
            sizes = sizes + 1
        dataset = NestedDictionaryDataset(
            {
                "id": IdDataset(),
                "net_input": {
                    "src_tokens": RightPadDataset(tokens, pad_idx=self.token_dict.pad()),
                    "src_lengths": NumelDataset(tokens, reduce=False),
                },
                "target": RightPadDataset(tags, pad_idx=self.tag_dict.pad()),
                "nsentences": NumSamplesDataset(),
                "ntokens": _LabelCount(tags, self.tag_dict.pad()),
            },
            sizes=[sizes],
        )
        with data_utils.numpy_seed(self.cfg.seed, epoch):
            shuffle = np.random.permutation(len(dataset))
        # batches of similar lengths, in a seeded random order within a length
        self.datasets[split] = SortDataset(dataset, sort_order=[shuffle, sizes])
        logger.info("loaded %s: %d sentences", split, len(dataset))
        return self.datasets[split]

    def get_batch_iterator(self, *args, **kwargs):
        """fairseq's, with ``required_batch_size_multiple`` forced to 1.

        This fairseq (``data_utils.batch_by_size``) drops the last batch when its size is
        not a multiple of ``--required-batch-size-multiple`` (default 8): the longest
        sentences would silently be left out of every epoch and of the dev F1.
        """
        bound = inspect.signature(FairseqTask.get_batch_iterator).bind(self, *args, **kwargs)
        bound.arguments["required_batch_size_multiple"] = 1
        return super().get_batch_iterator(*bound.args[1:], **bound.kwargs)

    @property
    def splitter(self):
        if self._splitter is None:
            self._splitter = subwords.load_splitter(self.cfg.data, self.meta["subword"])
        return self._splitter

    def encode_words(self, words):
        """(src tokens, labelled-position flags) for one sentence, as in the binarized data."""
        ids, first = subwords.encode_sentence(self.splitter, self.token_dict, words)
        if self.cfg.prepend_bos:
            ids = torch.cat([ids.new_tensor([self.token_dict.bos()]), ids])
            first = torch.cat([first.new_tensor([False]), first])
        if self.cfg.append_eos:
            ids = torch.cat([ids, ids.new_tensor([self.token_dict.eos()])])
            first = torch.cat([first, first.new_tensor([False])])
        return ids, first

    # ------------------------------------------------------------------ validation metrics

    def predict(self, model, net_input, labelled):
        """Word-level predicted tags (IOB2) per sentence, from one forward pass."""
        logits = model(**net_input)[0]
        return decode.word_tags(decode.predict_ids(logits, self.tag_dict.nspecial), labelled, self.tag_dict)

    def valid_step(self, sample, model, criterion):
        # the criterion's own forward pass gives the predictions too (one pass, not two)
        outputs = []
        hook = model.register_forward_hook(lambda module, args, output: outputs.append(output))
        try:
            loss, sample_size, logging_output = super().valid_step(sample, model, criterion)
        finally:
            hook.remove()
        target = sample["target"]
        labelled = target.ne(self.tag_dict.pad())
        logits = outputs[-1][0] if outputs and isinstance(outputs[-1], (tuple, list)) else None
        if torch.is_tensor(logits) and logits.dim() == 3 and logits.shape[:2] == target.shape:
            ids = decode.predict_ids(logits, self.tag_dict.nspecial)
            pred = decode.word_tags(ids, labelled, self.tag_dict)
        else:  # a criterion that does not call the model as model(**net_input)
            with torch.no_grad():
                pred = self.predict(model, sample["net_input"], labelled)
        gold = decode.word_tags(target, labelled, self.tag_dict)
        logging_output.update(tag_metrics.entity_counts(gold, pred))
        return loss, sample_size, logging_output

    def reduce_metrics(self, logging_outputs, criterion):
        super().reduce_metrics(logging_outputs, criterion)
        if not any("ner_gold" in log for log in logging_outputs):
            return
        for key in tag_metrics.COUNT_KEYS:
            metrics.log_scalar("_" + key, utils.item(sum(log.get(key, 0) for log in logging_outputs)))

        def score(i):
            def fn(meters):
                tp, pred, gold = (utils.item(meters["_" + k].sum) for k in ("ner_tp", "ner_pred", "ner_gold"))
                return 100.0 * tag_metrics.prf(tp, pred, gold)[i]

            return fn

        metrics.log_derived("precision", score(0))
        metrics.log_derived("recall", score(1))
        metrics.log_derived("f1", score(2))
        metrics.log_derived(
            "word_acc",
            lambda m: 100.0 * utils.item(m["_ner_correct"].sum) / max(utils.item(m["_ner_words"].sum), 1),
        )
