"""AD-DROP for fairseq.

Used as ``fairseq-train --user-dir addrop_fairseq --criterion addrop_ce ...``: fairseq imports
the package after itself, and :func:`register` runs, registering (the whole list, in one
place):

* criteria ``addrop_ce`` (:mod:`.criterions.addrop_ce`), ``attendout``,
  ``attention_regularizer`` and ``sentence_prediction_rdrop``;
* task ``sequence_tagging``; models ``transformer_tagger``, ``roberta_tagger``;
* HuggingFace models ``hf_seq2seq``, ``hf_token_classifier``, ``hf_sequence_classifier`` and
  ``--bpe hf`` / ``--tokenizer hf`` (transformers is imported only when one is built);
* the allowlist that lets torch's safe loading read fairseq checkpoints (:mod:`.safe_loading`).

Without fairseq imported first nothing is registered, so the maths (:mod:`.masks`,
:mod:`.attribution`, :mod:`.schedule`, :mod:`.sites`) and the data helpers
(``python -m addrop_fairseq.mt.wmt16``, ...) import without fairseq. A script that imports
this package before fairseq calls :func:`register` itself.
"""
import sys

__version__ = "0.2.0"


def register() -> None:
    """Register the plugin's criteria, tasks, models and checkpoint allowlist with fairseq
    (idempotent: modules are imported once)."""
    from .criterions import addrop_ce, attendout, attention_regularizer, sentence_prediction_rdrop  # noqa: F401
    from .hf import bpe, classifiers, seq2seq  # noqa: F401
    from .models import roberta_tagger, transformer_tagger  # noqa: F401
    from .safe_loading import allow_fairseq_checkpoints
    from .tasks import sequence_tagging  # noqa: F401

    allow_fairseq_checkpoints()


if "fairseq" in sys.modules:  # loaded by fairseq (--user-dir) or after `import fairseq`
    register()
