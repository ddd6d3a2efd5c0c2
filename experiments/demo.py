#!/usr/bin/env python
"""The README demo (``bash scripts/demo.sh``): MiniLM on CoLA, FT and AD-DROP at the protocol
study's chosen settings, one live seed pair trained side by side, printed next to the study's
stored fresh-seed results, with a line saying whether the live pair falls within their spread
and a PNG of the per-epoch dev curves.

    python experiments/demo.py [--seed 9] [--out experiments/work/demo]

The live runs are ``python experiments/run.py demo`` (the real fairseq-train command a user
types, one JSON each under OUT/results, nothing committed); the stored ones are
``experiments/results/protocol``. About 10-15 minutes on 2 cores.
"""
import argparse
import json
import sys
from pathlib import Path

import run as runner
import selection
import studies
from paths import RESULTS
from planning import load_study
from paper import paper_gain
from stats import in_plain_words, mean_std, read, verdict
from tasks import TASKS

HERE = Path(__file__).resolve().parent


def stored(results: Path, task: str):
    """(choice, {"ft"/"addrop": {seed: run}}) of the protocol study's fresh seeds for ``task``."""
    done = load_study(results, "protocol")
    fresh = {m: {r["seed"]: r for r in done if r["task"] == task and r["method"] == m} for m in ("ft", "addrop")}
    return selection.protocol_choice(task, done), fresh


def summary(task: str, live: dict, fresh: dict) -> list:
    """The lines the demo prints: the live pair, the stored seeds, where the live pair falls."""
    name, metric = TASKS[task].name, TASKS[task].metric
    seeds = sorted(set(fresh["ft"]) & set(fresh["addrop"]))
    diffs = [fresh["addrop"][s]["best"]["score"] - fresh["ft"][s]["best"]["score"] for s in seeds]
    d_live = live["addrop"]["best"]["score"] - live["ft"]["best"]["score"]
    row = "  {:<40} {:>12} {:>12} {:>12}".format
    out = [f"{name} dev {metric}, best epoch (early stopping):", row("", "FT", "AD-DROP", "Δ"),
           row(f"live, seed {live['ft']['seed']}", f"{live['ft']['best']['score']:.1f}",
               f"{live['addrop']['best']['score']:.1f}", f"{d_live:+.1f}")]
    if not seeds:
        return out + ["  (no stored fresh-seed pairs yet: run `python experiments/run.py protocol`)"]
    ft = [fresh["ft"][s]["best"]["score"] for s in seeds]
    ad = [fresh["addrop"][s]["best"]["score"] for s in seeds]
    out.append(row(f"stored, seeds {','.join(map(str, seeds))} (mean ± std)", mean_std(ft), mean_std(ad), mean_std(diffs)))
    lo, hi = min(diffs), max(diffs)
    inside = lo <= d_live <= hi
    out.append(f"The live pair's Δ {d_live:+.1f} falls {'within' if inside else 'outside'} the stored seeds' "
               f"range of Δ [{lo:+.1f}, {hi:+.1f}]" + ("." if inside else ": one seed's luck, or a machine difference "
                                                       "(the stored runs record theirs); the stored seeds are the evidence."))
    g = paper_gain(task)
    r = read(diffs, g.gain if g and g.key == TASKS[task].metric else None)
    plain = in_plain_words(verdict(diffs)) if r.kind == "too few" else r.words()
    return out + [f"In plain words: {plain} (MiniLM, {live['ft']['data']['train']} CoLA training examples; "
                  f"{r.numbers()}, over {len(diffs)} fresh seeds"
                  + (f"; the paper: {g.gain:+g}" if g else "") + ")."]


def plot(task: str, live: dict, fresh: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = TASKS[task].metric
    key = f"valid_{metric}"
    colours = {"ft": "#1f77b4", "addrop": "#d62728"}
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for method, label in (("ft", "FT"), ("addrop", "AD-DROP")):
        for k, r in enumerate(fresh[method].values()):
            es = [e["epoch"] for e in r["epochs"] if key in e]
            ax.plot(es, [e[key] for e in r["epochs"] if key in e], color=colours[method], alpha=0.25, linewidth=1,
                    label=f"{label}, stored seeds" if k == 0 else None)
        r = live[method]
        es = [e["epoch"] for e in r["epochs"] if key in e]
        ax.plot(es, [e[key] for e in r["epochs"] if key in e], color=colours[method], linewidth=2.2, marker="o",
                markersize=3, label=f"{label}, live seed {r['seed']}")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"dev {metric}")
    ax.set_title(f"{TASKS[task].name}: per-epoch dev score (AD-DROP on even epochs)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, metadata={"Software": None})


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, default=studies.DEMO_SEED)
    p.add_argument("--out", type=Path, default=HERE / "work" / "demo")
    p.add_argument("--stored", type=Path, default=RESULTS, help="the committed results (protocol study)")
    p.add_argument("--jobs", type=int, default=2)
    args = p.parse_args(argv)
    task = studies.DEMO_TASK
    choice, fresh = stored(args.stored, task)
    if choice is None:
        sys.exit(f"demo: the protocol study has not chosen {TASKS[task].name}'s settings yet "
                 "(python experiments/run.py protocol --tasks cola)")
    lr, (pp, qq) = choice
    print(f"[demo] MiniLM on {TASKS[task].name}, 1000 training examples, the protocol study's choice: FT and "
          f"AD-DROP at learning rate {lr:g}, AD-DROP p = {pp:g}, q = {qq:g} on all layers (cross-tuning); "
          f"seed {args.seed}, both runs side by side", flush=True)
    results = args.out / "results"
    rc = runner.main(["demo", "--seeds", str(args.seed), "--jobs", str(args.jobs), "--results", str(results),
                      "--work", str(HERE / "work"), "--protocol-results", str(args.stored)])
    if rc:
        return rc
    live = {m: json.loads((results / "demo" / task / m / f"seed{args.seed}.json").read_text()) for m in ("ft", "addrop")}
    print("\n".join(summary(task, live, fresh)))
    png = args.out / "demo_curves.png"
    plot(task, live, fresh, png)
    print(f"[demo] per-epoch dev curves: {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
