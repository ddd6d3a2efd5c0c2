"""CoNLL-style sequence tagging for the ``sequence_tagging`` task.

Reading and writing CoNLL files (:mod:`.conll`), IOB1/IOB2 schemes (:mod:`.schemes`), word
-> subword pieces with the label on the first piece (:mod:`.subwords`), binarization with
fairseq's ``Dictionary`` and indexed datasets (:mod:`.preprocess`, also a CLI), slices of a
file (:mod:`.sample`, also a CLI), entity counts that sum to seqeval's exact P/R/F1
(:mod:`.metrics`), arg-max decoding to word-level tags (:mod:`.decode`) and the per-token
head the taggers share (:mod:`.head`).
"""
