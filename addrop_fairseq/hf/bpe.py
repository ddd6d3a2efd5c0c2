"""``--bpe hf`` / ``--tokenizer hf``: text <-> symbols of an hf_preprocess dictionary, by the HF tokenizer.

``fairseq-generate ... --bpe hf --hf-tokenizer-dir DIR --scoring sacrebleu`` turns the
space-joined dictionary symbols of hypotheses and references back into text with
``tokenizer.decode(ids, skip_special_tokens=True)``, exactly as HuggingFace's own
generation pipelines detokenize, so sacrebleu scores the text a HF user would get.
``encode`` (fairseq-interactive) is ``tokenizer.tokenize``. During training,
``--eval-bleu --eval-bleu-detok hf --eval-bleu-detok-args '{"hf_tokenizer_dir": "DIR"}'``
uses the same class as a fairseq tokenizer.
"""
from dataclasses import dataclass, field

from fairseq.data.encoders import register_bpe, register_tokenizer
from fairseq.dataclass import FairseqDataclass


@dataclass
class HFBPEConfig(FairseqDataclass):
    hf_tokenizer_dir: str = field(
        default="", metadata={"help": "directory of the HF tokenizer the data was made with (the --hf-model-dir)"}
    )


@dataclass
class HFTokenizerConfig(HFBPEConfig):
    pass


class HFTextCodec:
    def __init__(self, cfg):
        from . import vocab

        path = getattr(cfg, "hf_tokenizer_dir", "")
        if not path:
            raise ValueError("--bpe hf / --tokenizer hf needs --hf-tokenizer-dir (the model's directory)")
        self.tokenizer = vocab.load_tokenizer(path)
        self.vocab = self.tokenizer.get_vocab()
        self.id2tok = vocab.id_to_token(self.tokenizer)
        self._vocab = vocab

    def encode(self, x: str) -> str:
        ids = self.tokenizer(x, add_special_tokens=False)["input_ids"]
        return " ".join(self._vocab.ids_to_symbols(ids, self.tokenizer, self.id2tok))

    def decode(self, x: str) -> str:
        ids = self._vocab.symbols_to_ids(x.split(), self.tokenizer, self.vocab)
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def is_beginning_of_word(self, x: str) -> bool:
        if x.startswith("##"):  # WordPiece continuation
            return False
        if x.startswith("\u2581") or x.startswith("\u0120"):  # sentencepiece / byte-level BPE
            return True
        return x in ("<s>", "</s>", "<pad>", "<unk>", "<mask>")


@register_bpe("hf", dataclass=HFBPEConfig)
class HFBPE(HFTextCodec):
    pass


@register_tokenizer("hf", dataclass=HFTokenizerConfig)
class HFTokenizer(HFTextCodec):
    pass
