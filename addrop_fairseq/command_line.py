"""What every command-line tool of the plugin does around its work: fairseq-style logging,
parse the arguments, and turn an expected error into ``error: ...`` with exit status 1; for
the tools that read a trained checkpoint (``addrop-explain``, ``addrop-tag``), the same
``--checkpoint`` / ``--data`` options and the same loading, whose failures are such errors."""
import argparse
import logging
import sys


def run_command(parser, work, argv=None, errors=(ValueError, FileNotFoundError)):
    logging.basicConfig(format="%(asctime)s | %(levelname)s | %(name)s | %(message)s", level=logging.INFO)
    args = parser.parse_args(argv)
    try:
        return work(args)
    except errors as e:
        sys.exit(f"error: {e}")


def checkpoint_parser(prog: str, doc: str, checkpoint_help: str) -> argparse.ArgumentParser:
    """A tool's parser with the options of :func:`load_checkpoint` (``doc``: its module docstring)."""
    p = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help=checkpoint_help)
    p.add_argument("--data", help="the preprocessed data directory (default: the checkpoint's)")
    return p


def load_checkpoint(checkpoint: str, data=None):
    """(model, cfg, task) of a fairseq checkpoint, torch's safe loading on; a missing file, or one
    safe loading refuses, is a ValueError naming it (one line).

    The plugin (sequence_tagging, the taggers, the hf_* models, the checkpoint allowlist) is
    registered by importing this package: at once if fairseq was imported before it, else as
    soon as the ``fairseq`` import below completes (``addrop_fairseq/__init__.py``)."""
    import os
    import pickle

    from fairseq import checkpoint_utils

    from .safe_loading import refusal

    if not os.path.isfile(checkpoint):
        raise FileNotFoundError(f"--checkpoint {checkpoint}: no such file")
    overrides = {"data": data} if data else None
    try:
        models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([checkpoint], arg_overrides=overrides)
    except pickle.UnpicklingError as e:
        raise ValueError(f"--checkpoint {checkpoint}: {refusal(e)}") from None
    return models[0], cfg, task
