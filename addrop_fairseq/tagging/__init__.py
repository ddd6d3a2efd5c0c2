"""CoNLL-style sequence tagging for the ``sequence_tagging`` task.

Pure Python + seqeval (and fairseq's ``Dictionary`` / indexed datasets where data is
binarized): reading and writing CoNLL files (:mod:`.conll`), IOB1/IOB2 schemes
(:mod:`.schemes`), word -> subword encoding with the label on the first piece
(:mod:`.subwords`), binarization (:mod:`.preprocess`, also a CLI) and entity-level counts
that sum across batches to seqeval's exact P/R/F1 (:mod:`.metrics`).
"""
