"""HuggingFace pretrained models inside the plugin (see docs/huggingface.md).

* :mod:`.seq2seq`: fairseq model ``hf_seq2seq`` (translation, incremental decoding);
* :mod:`.classifiers`: fairseq models ``hf_token_classifier``, ``hf_sequence_classifier``;
* :mod:`.loading`: what those wrappers share: their options (a local ``--hf-model-dir``),
  loading the HF model and tokenizer, turning fairseq batches into HF inputs;
* :mod:`.seam`: the ``"addrop"`` attention implementation registered with
  transformers' ``AttentionInterface`` / ``AttentionMaskInterface``, site discovery, and the
  wrappers' ``addrop_attention_sites`` (:class:`~.seam.HFSitesMixin`);
* :mod:`.vocab`: the one-to-one fairseq dictionary <-> tokenizer ids mapping;
* :mod:`.bpe`: ``--bpe hf`` / ``--tokenizer hf`` detokenization with the HF tokenizer;
* :mod:`.preprocess` (``addrop-hf-preprocess``): raw text / TSV / CoNLL -> fairseq binarized data.

Importing this package does not import transformers; building a model does.
"""
