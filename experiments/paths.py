"""The folders the experiments scripts agree on: the repository, the committed results, the
scratch work, the shared data, and where a run's JSON goes. One place, so the CLI, the jobs it
imports and the scripts beside them read and write the same files."""
import os
from pathlib import Path

import studies

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

RESULTS = HERE / "results"
WORK = HERE / "work"


def shared_data() -> Path:
    return Path(os.environ.get("ADDROP_SHARED_DATA", REPO.parent / "shared" / "data"))


def result_path(results: Path, run: studies.Run) -> Path:
    return results / f"{run.key}.json"
