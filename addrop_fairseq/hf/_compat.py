"""Importing transformers lazily, and surviving a broken torchaudio install.

transformers' model modules import ``torchaudio`` whenever its package is installed; a
torchaudio built for another torch (e.g. the CUDA wheel pulled in next to a CPU torch)
then raises ``OSError`` from inside ``import transformers.models...`` and no model can be
built. :func:`transformers` checks once: if ``import torchaudio`` fails, the package is
marked absent (``sys.modules["torchaudio"] = None``, which makes ``find_spec`` report it
missing) so that transformers skips it, and a warning says so. Nothing here imports
transformers at plugin import time: fairseq runs that use no HuggingFace model never pay
for it.
"""
import importlib
import importlib.util
import logging
import sys

logger = logging.getLogger(__name__)

_checked = False


def guard_torchaudio() -> None:
    global _checked
    if _checked:
        return
    _checked = True
    if "torchaudio" in sys.modules:
        return
    try:
        if importlib.util.find_spec("torchaudio") is None:
            return
    except (ImportError, ValueError):
        return
    try:
        importlib.import_module("torchaudio")
    except Exception as e:  # OSError for a wheel built against another torch
        sys.modules["torchaudio"] = None
        logger.warning(
            "torchaudio is installed but cannot be imported (%s: %s); treating it as absent so "
            "that transformers can load", type(e).__name__, str(e).splitlines()[0][:200],
        )


def transformers():
    """The ``transformers`` module (imported on first use)."""
    guard_torchaudio()
    import transformers as tf

    return tf
