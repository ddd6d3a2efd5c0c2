"""Words -> subword pieces, with the word's label on its first piece.

Four splitters, chosen at preprocessing time and recorded in the data directory so that
training, validation and the tag CLI (``addrop-tag``) encode words identically:

* ``none``: one piece per word (the word itself; unseen words become ``<unk>``);
* ``sentencepiece``: a model trained on the training words (identity normalization and
  byte fallback, so pieces always decode back to the exact word);
* ``gpt2``: fairseq's GPT-2 byte-level BPE (``encoder.json`` + ``vocab.bpe``), each word
  encoded with a leading space, pieces written as BPE ids: the input format of fairseq's
  pretrained RoBERTa checkpoints (use their ``dict.txt`` as ``--srcdict``);
* ``hf``: a HuggingFace tokenizer (a local ``save_pretrained`` directory, for
  ``hf_token_classifier``), as HF's token-classification recipe runs it: the sentence's
  words in one call with ``is_split_into_words`` (byte-level BPE tokenizers with
  ``add_prefix_space=True``), grouped by ``word_ids``; pieces are the symbols of the
  one-to-one dictionary of :mod:`addrop_fairseq.hf.vocab`, which is also the data's
  dictionary (:meth:`WordSplitter.dictionary`).
"""
import json
import logging
import os
import shutil
from typing import Dict, Iterable, List, Sequence

import torch

SUBWORD_KINDS = ("none", "sentencepiece", "gpt2", "hf")
logger = logging.getLogger(__name__)


class WordSplitter:
    kind = "none"

    def pieces(self, word: str) -> List[str]:
        return [word]

    def sentence_pieces(self, words: Sequence[str]) -> List[List[str]]:
        """The pieces of each word of a sentence (splitters that need the context override it)."""
        return [self.pieces(w) for w in words]

    def join(self, pieces: Sequence[str]) -> str:
        return "".join(pieces)

    def vocabulary(self) -> List[str]:
        """Every piece the splitter can emit (all get an index), or [] for open vocabularies."""
        return []

    def dictionary(self):
        """The fairseq Dictionary the data must use (a pretrained model's), or None: built
        from the training pieces (or ``--srcdict``)."""
        return None

    def meta(self) -> Dict:
        return {"kind": self.kind}


class SentencePieceSplitter(WordSplitter):
    kind = "sentencepiece"

    def __init__(self, model_path: str):
        import sentencepiece as spm

        self.model_path = model_path
        self.sp = spm.SentencePieceProcessor(model_file=str(model_path))

    def pieces(self, word):
        return self.sp.encode(word, out_type=str) or [word]

    def join(self, pieces):
        return self.sp.decode_pieces(list(pieces))

    def vocabulary(self) -> List[str]:
        return [self.sp.id_to_piece(i) for i in range(self.sp.get_piece_size()) if not self.sp.is_control(i)]

    def meta(self):
        return {"kind": self.kind, "model": os.path.basename(self.model_path)}


class GPT2Splitter(WordSplitter):
    kind = "gpt2"

    def __init__(self, encoder_json: str, vocab_bpe: str):
        from fairseq.data.encoders.gpt2_bpe_utils import get_encoder

        self.files = (encoder_json, vocab_bpe)
        self.bpe = get_encoder(encoder_json, vocab_bpe)

    def pieces(self, word):
        return [str(i) for i in self.bpe.encode(" " + word)]

    def join(self, pieces):
        if not all(p.isdigit() for p in pieces):  # e.g. <unk> from a dictionary without the piece
            return "".join(pieces)
        text = self.bpe.decode([int(p) for p in pieces])
        return text[1:] if text.startswith(" ") else text

    def vocabulary(self):
        return [str(i) for i in sorted(self.bpe.encoder.values())]

    def meta(self):
        return {"kind": self.kind, "encoder_json": "gpt2/encoder.json", "vocab_bpe": "gpt2/vocab.bpe"}


class HFSplitter(WordSplitter):
    """A HuggingFace fast tokenizer from a local directory; pieces are hf.vocab dictionary symbols."""

    kind = "hf"

    def __init__(self, model_dir: str):
        from ..hf import vocab

        self.model_dir = os.path.abspath(model_dir)
        tokenizer = vocab.load_tokenizer(self.model_dir)
        if getattr(tokenizer, "add_prefix_space", None) is False:
            # byte-level BPE (RoBERTa, GPT-2, BART) marks a word start with a space; HF's
            # token-classification recipe encodes every word, the first included, with one
            tokenizer = vocab.load_tokenizer(self.model_dir, add_prefix_space=True)
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError(f"{model_dir}: --subword hf needs a fast tokenizer (word_ids), "
                             f"not {type(tokenizer).__name__}")
        self.tokenizer = tokenizer
        self._vocab = vocab
        self._id2tok = vocab.id_to_token(tokenizer)
        self._tok2id = tokenizer.get_vocab()

    def sentence_pieces(self, words):
        if not words:
            return []
        enc = self.tokenizer(list(words), is_split_into_words=True, add_special_tokens=False)
        groups: Dict[int, List[int]] = {}
        for hf_id, w in zip(enc["input_ids"], enc.word_ids()):
            if w is not None:
                groups.setdefault(w, []).append(hf_id)
        unk = self.tokenizer.unk_token_id  # a word the tokenizer drops entirely is one unk
        return [self._vocab.ids_to_symbols(groups.get(w) or [unk], self.tokenizer, self._id2tok)
                for w in range(len(words))]

    def pieces(self, word):
        return self.sentence_pieces([word])[0]

    def join(self, pieces):
        """The tokenizer's decode of one word's pieces, spaces removed (a CoNLL word has none;
        WordPiece decodes "U.S." as "u . s ."); its normalization (e.g. lower case) stays."""
        ids = self._vocab.symbols_to_ids(list(pieces), self.tokenizer, self._tok2id)
        return "".join(self.tokenizer.decode(ids, clean_up_tokenization_spaces=False).split())

    def dictionary(self):
        return self._vocab.build_dictionary(self.tokenizer)

    def meta(self):
        return {"kind": self.kind, "model_dir": self.model_dir, "tokenizer": type(self.tokenizer).__name__}


def train_sentencepiece(sentences: Iterable[Sequence[str]], prefix: str, vocab_size: int) -> str:
    """Train a unigram model on the words (never on tags); returns the .model path."""
    import sentencepiece as spm

    sentences = [" ".join(words) for words in sentences]
    # every character and the 256 byte pieces (+ <unk>, <s>, </s>) must fit in the vocabulary
    needed = len(set("".join(sentences)) | {"\u2581"}) + 259
    if vocab_size < needed:
        logger.warning("sentencepiece vocabulary %d is too small for this text: using %d", vocab_size, needed)
        vocab_size = needed
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_prefix=prefix,
        vocab_size=vocab_size,
        hard_vocab_limit=False,  # small corpora: fewer pieces rather than an error
        character_coverage=1.0,
        byte_fallback=True,
        normalization_rule_name="identity",
        num_threads=2,
        minloglevel=2,
    )
    return prefix + ".model"


def save_splitter(splitter: WordSplitter, destdir: str) -> Dict:
    """Copy the splitter's model files into ``destdir``; returns its metadata."""
    if isinstance(splitter, SentencePieceSplitter):
        target = os.path.join(destdir, os.path.basename(splitter.model_path))
        if os.path.abspath(target) != os.path.abspath(splitter.model_path):
            shutil.copyfile(splitter.model_path, target)
    elif isinstance(splitter, GPT2Splitter):
        os.makedirs(os.path.join(destdir, "gpt2"), exist_ok=True)
        for src, name in zip(splitter.files, ("encoder.json", "vocab.bpe")):
            shutil.copyfile(src, os.path.join(destdir, "gpt2", name))
    return splitter.meta()


def load_splitter(datadir: str, meta: Dict) -> WordSplitter:
    kind = meta.get("kind", "none")
    if kind == "none":
        return WordSplitter()
    if kind == "sentencepiece":
        return SentencePieceSplitter(os.path.join(datadir, meta["model"]))
    if kind == "gpt2":
        return GPT2Splitter(os.path.join(datadir, meta["encoder_json"]), os.path.join(datadir, meta["vocab_bpe"]))
    if kind == "hf":
        model_dir = meta["model_dir"]
        if not os.path.isdir(model_dir):
            raise ValueError(f"{datadir}: the data was split by the HF tokenizer in {model_dir}, which is not "
                             "there any more (tagging.json names it)")
        return HFSplitter(model_dir)
    raise ValueError(f"{datadir}: unknown subword kind {kind!r} (expected one of {SUBWORD_KINDS})")


def piece_ids(dictionary, pieces: Sequence[str]) -> List[int]:
    """Dictionary indices; a piece spelled like a special symbol (``<pad>``...) becomes <unk>."""
    ids = []
    for piece in pieces:
        i = dictionary.index(piece)
        ids.append(dictionary.unk() if i < dictionary.nspecial else i)
    return ids


def encode_sentence(splitter: WordSplitter, dictionary, words: Sequence[str]):
    """(piece ids, first-piece flags) for one sentence, without special tokens."""
    ids, first = [], []
    for pieces in splitter.sentence_pieces(words):
        ids.extend(piece_ids(dictionary, pieces))
        first.extend([True] + [False] * (len(pieces) - 1))
    return torch.tensor(ids, dtype=torch.long), torch.tensor(first, dtype=torch.bool)


def read_meta(datadir: str) -> Dict:
    path = os.path.join(datadir, "tagging.json")
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{path} not found: make the data directory with addrop-tagging-preprocess "
            "(or addrop-hf-preprocess --task sequence_tagging)"
        )
    with open(path) as f:
        return json.load(f)
