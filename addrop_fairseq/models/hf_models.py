"""Registers the HuggingFace wrappers (hf_seq2seq, hf_token_classifier, hf_sequence_classifier)
and ``--bpe hf`` / ``--tokenizer hf`` with fairseq. transformers itself is imported only when
one of them is built (see :mod:`addrop_fairseq.hf`)."""
from ..hf import bpe, seq2seq, classifiers  # noqa: F401  (registration order as before)
