"""CoNLL-style sequence tagging for the ``sequence_tagging`` task.

Reading and writing CoNLL files (:mod:`.conll`), IOB1/IOB2 schemes (:mod:`.schemes`), word
-> subword pieces with the label on the first piece (:mod:`.subwords`: none, sentencepiece,
GPT-2 BPE, a HuggingFace tokenizer), binarization with fairseq's ``Dictionary`` and indexed
datasets (:mod:`.preprocess`, the one pipeline for every splitter, also the
``addrop-tagging-preprocess`` command), the tag CLI (:mod:`.cli`, the ``addrop-tag``
command), slices of a file (:mod:`.sample`, also a CLI), entity counts that sum to seqeval's
exact P/R/F1 (:mod:`.metrics`), arg-max decoding to word-level tags (:mod:`.decode`) and the
per-token head the taggers share (:mod:`.head`).
"""
