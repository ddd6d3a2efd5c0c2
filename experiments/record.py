"""What a run's JSON records besides its command: the per-epoch numbers read from fairseq's
``--log-format json`` output, the best and last epoch's dev score, and the environment the
timings belong to (machine, package versions, git commit), so a stored run says where it
came from without its log."""
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Dict, List

import studies
from paths import REPO
from tasks import TASKS


def parse_log(lines: List[str]) -> List[dict]:
    """Per-epoch records from fairseq's ``--log-format json`` output."""
    epochs: Dict[int, dict] = {}
    for line in lines:
        i = line.find('{"epoch"')
        if i < 0:
            continue
        try:
            stats = json.loads(line[i:])
        except json.JSONDecodeError:
            continue
        keys = list(stats)
        if not any(k.startswith(("train_", "valid_")) for k in keys) or any(k.startswith("train_inner") for k in keys):
            continue
        rec = epochs.setdefault(int(stats["epoch"]), {"epoch": int(stats["epoch"])})
        for k, v in stats.items():
            if k.startswith(("train_", "valid_")) and not isinstance(v, (list, dict)):
                try:
                    rec[k] = float(v)
                except (TypeError, ValueError):
                    rec[k] = v
    return [epochs[e] for e in sorted(epochs)]


def machine() -> str:
    """The hardware a run's timings belong to: CPU model, cores, memory."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = f", {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2 ** 30:.0f} GiB"
    except (ValueError, OSError, AttributeError):
        mem = ""
    return f"{model}, {os.cpu_count()} cores{mem}"


def versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "machine": machine()}
    for name in ("torch", "fairseq-fixed", "transformers"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "addrop_fairseq"], cwd=REPO,
                               capture_output=True, text=True).stdout.strip() != ""
        out["git_commit"] = commit + ("+dirty" if dirty else "")
    except OSError:
        out["git_commit"] = None
    return out


def summarise(run: studies.Run, epochs: List[dict]) -> dict:
    metric = TASKS[run.task].metric
    key = f"valid_{metric}"
    scored = [e for e in epochs if key in e]
    out = {"metric": metric}
    if scored:
        best = max(scored, key=lambda e: e[key])
        out["best"] = {"epoch": best["epoch"], "score": best[key]}
        out["last"] = {"epoch": scored[-1]["epoch"], "score": scored[-1][key]}
    else:
        out["best"] = out["last"] = {"epoch": None, "score": None}
    return out
