"""HuggingFace pretrained models inside the plugin (see docs/huggingface.md).

* :mod:`.models`: fairseq models ``hf_seq2seq``, ``hf_token_classifier``,
  ``hf_sequence_classifier`` wrapping a local ``--hf-model-dir``;
* :mod:`.attention`: the ``"addrop"`` attention implementation registered with
  transformers' ``AttentionInterface`` / ``AttentionMaskInterface``, and site discovery;
* :mod:`.vocab`: the one-to-one fairseq dictionary <-> tokenizer ids mapping;
* :mod:`.bpe`: ``--bpe hf`` / ``--tokenizer hf`` detokenization with the HF tokenizer;
* ``python -m addrop_fairseq.hf_preprocess``: raw text / TSV / CoNLL -> fairseq binarized data.

Importing this package does not import transformers; building a model does.
"""
