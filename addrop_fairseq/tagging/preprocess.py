"""CoNLL files -> fairseq binarized data for ``--task sequence_tagging`` (``addrop-tagging-preprocess``).

    addrop-tagging-preprocess --train train.txt --valid dev.txt \\
        --destdir data-bin/conll2003 [--tag-scheme auto] [--subword sentencepiece]
    addrop-tagging-preprocess --train train.txt --valid dev.txt \\
        --destdir data-bin/conll-bert --subword hf --hf-model-dir ~/bert-base-cased

(also ``python -m addrop_fairseq.tagging.preprocess``). The one tagging pipeline:
``addrop-hf-preprocess --task sequence_tagging`` is this with ``--subword hf``.

Layout (what ``fairseq-preprocess --only-source`` writes, once for pieces, once for tags):
``DEST/tokens/{dict.txt,SPLIT.bin,SPLIT.idx}``, ``DEST/tags/{dict.txt,SPLIT.bin,SPLIT.idx}``
and ``DEST/tagging.json`` (schemes, subword splitter). Items are fairseq ``Dictionary``
indices ending in ``</s>``; the tag sequence has one entry per piece, the word's tag
(IOB2) on its first piece and ``<pad>`` on the others. With ``--subword hf`` the piece
dictionary is the tokenizer's one-to-one dictionary (:mod:`addrop_fairseq.hf.vocab`), what
``hf_token_classifier`` checks at build time.
"""
import argparse
import json
import logging
import os
from collections import Counter
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from ..command_line import run_command

from . import schemes
from .conll import read_conll
from .subwords import (
    SUBWORD_KINDS,
    GPT2Splitter,
    HFSplitter,
    SentencePieceSplitter,
    WordSplitter,
    encode_sentence,
    load_splitter,
    read_meta,
    save_splitter,
    train_sentencepiece,
)

logger = logging.getLogger("addrop_fairseq.tagging.preprocess")
SPLITS = ("train", "valid", "test")


def get_parser():
    p = argparse.ArgumentParser(prog="addrop-tagging-preprocess", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", help="training CoNLL file (tag in the last column); required unless --subword hf")
    p.add_argument("--valid", help="validation CoNLL file (comma-separated for several: valid, valid1, ...)")
    p.add_argument("--test", help="test CoNLL file (comma-separated for several: test, test1, ...)")
    p.add_argument("--destdir", required=True, help="output data directory")
    p.add_argument("--tag-scheme", default="auto", choices=["auto", *schemes.SCHEMES],
                   help="scheme of the input tags (auto: detected per file); stored as IOB2")
    p.add_argument("--subword", default="none", choices=SUBWORD_KINDS, help="word splitter")
    p.add_argument("--sentencepiece-vocab-size", type=int, default=8000,
                   help="vocabulary of the sentencepiece model trained on the training words")
    p.add_argument("--sentencepiece-model", help="use this sentencepiece model instead of training one")
    p.add_argument("--gpt2-encoder-json", help="GPT-2 BPE encoder.json (--subword gpt2)")
    p.add_argument("--gpt2-vocab-bpe", help="GPT-2 BPE vocab.bpe (--subword gpt2)")
    p.add_argument("--hf-model-dir", help="local HF model directory whose tokenizer splits the words (--subword hf)")
    p.add_argument("--srcdict", help="reuse this fairseq dict.txt for the pieces (e.g. RoBERTa's)")
    p.add_argument("--thresholdsrc", type=int, default=0,
                   help="map pieces seen fewer times in training to <unk> (no --srcdict)")
    p.add_argument("--nwordssrc", type=int, default=-1, help="keep at most this many pieces (no --srcdict)")
    return p


def make_splitter(args, train_words: List[List[str]]) -> WordSplitter:
    if args.subword == "none":
        return WordSplitter()
    if args.subword == "sentencepiece":
        path = args.sentencepiece_model or train_sentencepiece(
            train_words, os.path.join(args.destdir, "sentencepiece"), args.sentencepiece_vocab_size
        )
        return SentencePieceSplitter(path)
    if args.subword == "hf":
        if not args.hf_model_dir:
            raise SystemExit("--subword hf needs --hf-model-dir")
        return HFSplitter(args.hf_model_dir)
    if not (args.gpt2_encoder_json and args.gpt2_vocab_bpe):
        raise SystemExit("--subword gpt2 needs --gpt2-encoder-json and --gpt2-vocab-bpe")
    return GPT2Splitter(args.gpt2_encoder_json, args.gpt2_vocab_bpe)


def build_token_dict(args, splitter, train_words):
    from fairseq.data import Dictionary

    fixed = splitter.dictionary()
    if fixed is not None:  # a pretrained model's: every index must mean what it meant there
        if args.srcdict or args.thresholdsrc or args.nwordssrc >= 0:
            raise SystemExit(f"--subword {splitter.kind} has a fixed dictionary: drop --srcdict, "
                             "--thresholdsrc, --nwordssrc")
        return fixed
    if args.srcdict:
        return Dictionary.load(args.srcdict)
    d = Dictionary()
    counts = Counter(p for words in train_words for w in words for p in splitter.pieces(w))
    for piece in splitter.vocabulary():  # every piece the splitter can emit gets an index
        counts.setdefault(piece, 0)
    for piece, n in sorted(counts.items()):
        if d.index(piece) == d.unk() and piece != d.unk_word:
            d.add_symbol(piece, n)
    d.finalize(threshold=args.thresholdsrc, nwords=args.nwordssrc, padding_factor=8)
    return d


def build_tag_dict(tag_lists: Sequence[Sequence[str]]):
    from fairseq.data import Dictionary

    d = Dictionary()
    for tags in tag_lists:
        for t in tags:
            d.add_symbol(t)
    d.finalize(threshold=-1, nwords=-1, padding_factor=1)
    return d


def binarize(path_prefix: str, items: List[torch.Tensor], vocab_size: int) -> None:
    from fairseq.data import indexed_dataset

    builder = indexed_dataset.make_builder(path_prefix + ".bin", impl="mmap", vocab_size=vocab_size)
    for item in items:
        builder.add_item(item)
    builder.finalize(path_prefix + ".idx")


def encode_split(splitter, tok_dict, tag_dict, sentences) -> Tuple[List[torch.Tensor], List[torch.Tensor], Dict]:
    toks, tags, stats = [], [], Counter()
    for words, word_tags in sentences:
        ids, first = encode_sentence(splitter, tok_dict, words)
        target = torch.full_like(ids, tag_dict.pad())
        target[first] = torch.tensor([tag_dict.index(t) for t in word_tags], dtype=torch.long)
        toks.append(torch.cat([ids, ids.new_tensor([tok_dict.eos()])]).int())
        tags.append(torch.cat([target, target.new_tensor([tag_dict.eos()])]).int())
        stats.update(sentences=1, words=len(words), pieces=len(ids), unk=int(ids.eq(tok_dict.unk()).sum()))
    return toks, tags, dict(stats)


def split_files(args) -> List[Tuple[str, str]]:
    """(split name, CoNLL file) pairs; comma-separated files become SPLIT, SPLIT1, SPLIT2, ..."""
    out = []
    for split in SPLITS:
        value = getattr(args, split, None)
        for k, path in enumerate(value.split(",") if value else []):
            out.append((split if k == 0 else f"{split}{k}", path))
    return out


def preprocess(args) -> Dict:
    """Binarize; returns the ``tagging.json`` contents. Also what ``addrop-hf-preprocess
    --task sequence_tagging`` runs (``--subword hf``)."""
    files = split_files(args)
    if not files:
        raise SystemExit("nothing to do: give --train, --valid and/or --test")
    if args.subword != "hf" and not args.train:
        raise SystemExit(f"--subword {args.subword} needs --train (its vocabulary comes from the training words)")
    os.makedirs(args.destdir, exist_ok=True)
    data, input_schemes = {}, {}
    for split, path in files:
        conll = read_conll(path, gold=True)
        tag_lists = [s.tags for s in conll.sentences]
        scheme = schemes.resolve_scheme(args.tag_scheme, tag_lists)
        input_schemes[split] = scheme
        data[split] = [(s.tokens, schemes.to_iob2(s.tags, scheme)) for s in conll.sentences]
        logger.info("%s: %d sentences from %s (%s tags)", split, len(data[split]), path, scheme)
    train_words = [w for w, _ in data.get("train", [])]
    splitter = make_splitter(args, train_words)
    tok_dict = build_token_dict(args, splitter, train_words)
    tag_dict = build_tag_dict([t for split in data.values() for _, t in split])
    for sub, d in (("tokens", tok_dict), ("tags", tag_dict)):
        os.makedirs(os.path.join(args.destdir, sub), exist_ok=True)
        d.save(os.path.join(args.destdir, sub, "dict.txt"))
    meta = {"version": 1, "stored_scheme": "iob2", "input_schemes": input_schemes, "splits": {}}
    meta["subword"] = save_splitter(splitter, args.destdir)
    for split, sentences in data.items():
        toks, tags, stats = encode_split(splitter, tok_dict, tag_dict, sentences)
        binarize(os.path.join(args.destdir, "tokens", split), toks, len(tok_dict))
        binarize(os.path.join(args.destdir, "tags", split), tags, len(tag_dict))
        meta["splits"][split] = stats
        logger.info("%s: %s", split, stats)
    with open(os.path.join(args.destdir, "tagging.json"), "w") as f:
        json.dump(meta, f, indent=1)
    return meta


def read_binarized(datadir: str, split: str, scheme: Optional[str] = None) -> List[Tuple[List[str], List[str]]]:
    """The (words, tags) of a binarized split, decoded back; tags in ``scheme`` (default: the
    split's input scheme). Used to check that preprocessing loses nothing."""
    from fairseq.data import Dictionary, data_utils

    meta = read_meta(datadir)
    splitter = load_splitter(datadir, meta["subword"])
    tok_dict = Dictionary.load(os.path.join(datadir, "tokens", "dict.txt"))
    tag_dict = Dictionary.load(os.path.join(datadir, "tags", "dict.txt"))
    toks = data_utils.load_indexed_dataset(os.path.join(datadir, "tokens", split), tok_dict)
    tags = data_utils.load_indexed_dataset(os.path.join(datadir, "tags", split), tag_dict)
    scheme = scheme or meta["input_schemes"].get(split, "iob2")
    out = []
    for i in range(len(toks)):
        ids, tag_ids = toks[i][:-1].tolist(), tags[i][:-1].tolist()
        words, word_tags, pieces = [], [], []
        for piece, tag in zip(ids, tag_ids):
            if tag != tag_dict.pad() and pieces:
                words.append(splitter.join(pieces))
                pieces = []
            if tag != tag_dict.pad():
                word_tags.append(tag_dict[tag])
            pieces.append(tok_dict[piece])
        if pieces:
            words.append(splitter.join(pieces))
        out.append((words, schemes.from_iob2(word_tags, scheme)))
    return out


def main(argv=None):
    run_command(get_parser(), preprocess, argv)


if __name__ == "__main__":
    main()
