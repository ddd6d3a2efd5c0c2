"""Let torch's safe (weights-only) loading read fairseq checkpoints, and nothing more.

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True``: the unpickler builds only
tensors, containers and plain values and refuses any other global, because unpickling a
global can run arbitrary code (a file whose pickle calls ``os.system``). fairseq 0.12 calls
``torch.load`` without ``weights_only`` and pickles more than that into every checkpoint.
Rather than switching safe loading off for the whole process (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``,
after which every ``torch.load`` in the process, e.g. transformers reading a downloaded
``pytorch_model.bin``, unpickles arbitrary code), importing the plugin adds exactly the
globals fairseq checkpoints hold to torch's allowlist:

* ``argparse.Namespace``: a legacy architecture's arguments (``cfg["model"]``; ``args`` in
  older checkpoints). The rest of the config is plain containers (``OmegaConf.to_container``,
  enums as strings).
* numpy arrays: the meters' ``state_dict()`` in ``extra_state["metrics"]`` keeps numpy sums,
  e.g. ``_bleu_counts`` / ``_bleu_totals`` with ``--eval-bleu``. An array is pickled as
  ``numpy._core.multiarray._reconstruct(ndarray, shape, dtype)`` + ``ndarray.__setstate__``
  and its dtype as ``numpy.dtype(code, align, copy)`` + ``__setstate__`` on the dtype's class.

Each entry only builds data: a ``Namespace`` is ``object.__new__`` plus setting attributes; an
array is an empty array of an allowlisted class (only ``ndarray``: ``_reconstruct`` refuses a
non-array class) filled from bytes; a dtype is parsed from a type code. Only numeric and bool
dtype classes are listed, so numpy's pickle of an object array is refused (and a crafted one
could only hold objects this same restricted unpickler built). Nothing here calls a function
with arbitrary arguments: ``os.system``, ``eval``, ``functools.partial`` and the like stay
refused.

The list was found by saving real checkpoints with ``fairseq-train`` (translation transformer
with ``--eval-bleu`` and ``--store-ema``, RoBERTa ``sentence_prediction``, the
``sequence_tagging`` taggers, the ``hf_*`` models) and loading them with ``weights_only=True``.
``tests/test_safe_loading.py`` checks it is needed and enough, and that code stays refused; the
CLI tests resume, generate, tag and reload every kind of checkpoint under safe loading. The
plugin's own tools report a refused file in one line (:func:`refusal`).
"""


def fairseq_checkpoint_globals() -> list:
    """What :func:`allow_fairseq_checkpoints` adds, in ``torch.serialization.add_safe_globals`` form."""
    import argparse

    import numpy as np

    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray  # numpy 2 / 1
    dtype_classes = {type(np.dtype(code)) for code in "?" + np.typecodes["AllInteger"] + np.typecodes["AllFloat"]}
    return [
        argparse.Namespace,
        np.ndarray,
        np.dtype,
        *sorted(dtype_classes, key=lambda c: c.__name__),
        # under the name the file was written with: numpy 1 pickles numpy.core..., numpy 2 numpy._core...
        (multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
        (multiarray._reconstruct, "numpy._core.multiarray._reconstruct"),
    ]


def allow_fairseq_checkpoints() -> None:
    """Allowlist :func:`fairseq_checkpoint_globals` for ``torch.load(weights_only=True)``.

    Idempotent. A no-op on torch < 2.6, which loads fully by default (fairseq needs nothing).
    """
    import torch

    if torch.__version__ < "2.6":
        return
    torch.serialization.add_safe_globals(fairseq_checkpoint_globals())


def refusal(error) -> str:
    """One line for a ``pickle.UnpicklingError`` of ``torch.load`` (torch's own message runs to a
    dozen): the global safe loading refused and why it stays refused, or, for a file that is no
    pickle of ours at all, what torch choked on."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    culprit = next((line for line in lines if "GLOBAL" in line), None)
    if culprit is None:
        detail = next((line for line in reversed(lines) if not line.startswith("Check the documentation")),
                      type(error).__name__)
        return f"not a checkpoint torch can read ({detail})"
    return (f"Weights only load failed: {culprit} addrop_fairseq lets torch's safe loading build only what "
            "fairseq checkpoints hold (addrop_fairseq/safe_loading.py): loading this file fully could run "
            "code it carries; do so only if you trust where it came from")
