"""Shared fixtures: where the real data lives, and how to run fairseq's CLI in a subprocess."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fairseq  # noqa: F401,I001  (first, as fairseq-train does: importing the plugin then registers it)
import addrop_fairseq

addrop_fairseq.register()  # also when a test module imported the package before fairseq

REPO = Path(__file__).resolve().parents[1]

if os.environ.get("PYTEST_XDIST_WORKER"):
    # one pytest worker per core (scripts/test.sh): a second torch thread per worker would
    # only oversubscribe the cores (subprocesses get OMP_NUM_THREADS=1 from cli_env)
    import torch

    torch.set_num_threads(1)
# experiments/ is a folder of scripts (``python experiments/run.py STUDY``) whose modules import
# each other by plain name (``import studies``), as a script's own folder is on sys.path; the
# tests import them the same way, from here once
sys.path.insert(0, str(REPO / "experiments"))


def shared_data_dir() -> Path:
    """../shared/data beside the repository (or $ADDROP_SHARED_DATA)."""
    path = Path(os.environ.get("ADDROP_SHARED_DATA", REPO.parent / "shared" / "data"))
    if not path.is_dir():
        raise RuntimeError(
            f"real test data not found at {path}: the tests read ../shared/data beside the "
            "repository (set ADDROP_SHARED_DATA to point elsewhere)"
        )
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return shared_data_dir()


@pytest.fixture(scope="session")
def tdir(tmp_path_factory) -> Path:
    """A translation data directory with dictionaries only (tests build their batches)."""
    from fairseq_builders import translation_dir

    return translation_dir(tmp_path_factory.mktemp("dict"))


@pytest.fixture(scope="session")
def spdir(tmp_path_factory) -> Path:
    """A sentence_prediction data directory with dictionaries only (tests build their batches)."""
    from fairseq_builders import sentence_prediction_dir

    return sentence_prediction_dir(tmp_path_factory.mktemp("sp"))


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models run faster on one thread, and much faster on a shared machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def cli_env(**extra) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    # tiny test models gain nothing from more threads, and spinning OpenMP threads slow
    # everything down when several processes share the 2 cores (the gloo test runs two)
    env.setdefault("OMP_NUM_THREADS", "1")
    env.update(extra)
    return env


def run_cli(module: str, args, cwd=None, check=True, timeout=900, env=None):
    """Run ``python -m module args`` (e.g. fairseq_cli.train) and return the CompletedProcess.

    On failure the combined output is in the assertion message.
    """
    cmd = [sys.executable, "-m", module, *map(str, args)]
    proc = subprocess.run(
        cmd, cwd=cwd or REPO, env=env or cli_env(), capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited {proc.returncode}\n--- stdout ---\n{proc.stdout[-6000:]}"
            f"\n--- stderr ---\n{proc.stderr[-6000:]}"
        )
    return proc
