"""Every PNG the report draws, from data a section computed; each function writes ``path``.
Deterministic bytes: no timestamp or software tag in the metadata, fixed sizes and dpi."""
import statistics
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import studies
from tasks import TASKS

from .names import METHOD_COLORS, METHOD_NAMES, SHORT_NAMES, TASK_ORDER


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, metadata={"Software": None})
    _plt().close(fig)


def plot_paired(plot: Dict[tuple, List[float]], path: Path, score: str = "best-epoch dev score") -> None:
    """Per task, one bar per method: the mean paired difference to FT, the seeds as dots."""
    plt = _plt()
    tasks = [t for t in TASK_ORDER if any(k[0] == t for k in plot)]
    methods = [m for m in METHOD_NAMES if any(k[1] == m for k in plot)]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    width = 0.8 / max(1, len(methods))
    for j, m in enumerate(methods):
        for i, t in enumerate(tasks):
            d = plot.get((t, m))
            if not d:
                continue
            x = i + (j - (len(methods) - 1) / 2) * width
            ax.bar(x, statistics.mean(d), width, color=f"C{j}", label=METHOD_NAMES[m] if i == 0 else None, alpha=0.8)
            ax.scatter([x] * len(d), d, color="k", s=8, zorder=3)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xticks(range(len(tasks)), [TASKS[t].name for t in tasks])
    ax.set_ylabel(f"{score} − FT (same seed)")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    _save(fig, path)


def plot_curves(runs: List[dict], path: Path) -> None:
    """Per task (columns): dev score and train loss per epoch for every method, mean over seeds,
    band = min to max."""
    plt = _plt()
    tasks = [t for t in TASK_ORDER if any(r["task"] == t for r in runs)]
    methods = [m for m in METHOD_NAMES if any(r["method"] == m for r in runs)]
    fig, axes = plt.subplots(2, len(tasks), figsize=(max(6.4, 3.2 * len(tasks)), 5.4), squeeze=False, sharex="col")
    for col, task in enumerate(tasks):
        for j, m in enumerate(methods):
            rs = [r for r in runs if r["task"] == task and r["method"] == m]
            if not rs:
                continue
            n = min(len(r["epochs"]) for r in rs)
            xs = list(range(1, n + 1))
            for ax, key in ((axes[0][col], "valid_" + rs[0]["metric"]), (axes[1][col], "train_loss")):
                ys = [[r["epochs"][e].get(key, float("nan")) for r in rs] for e in range(n)]
                color = METHOD_COLORS[m]
                ax.plot(xs, [statistics.mean(y) for y in ys], color=color, marker="o", ms=3,
                        label=SHORT_NAMES.get(m, "FT") if col == 0 and key != "train_loss" else None)
                ax.fill_between(xs, [min(y) for y in ys], [max(y) for y in ys], color=color, alpha=0.15)
        axes[0][col].set_title(TASKS[task].name, fontsize=9)
        axes[0][col].set_ylabel(f"dev {next(r['metric'] for r in runs if r['task'] == task)}")
        axes[1][col].set_xlabel("epoch")
        axes[1][col].xaxis.get_major_locator().set_params(integer=True)
    axes[1][0].set_ylabel("train loss (fairseq's log)")
    fig.legend(fontsize=7, loc="lower center", ncol=min(len(methods), 5), bbox_to_anchor=(0.5, 0.0))
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    _save(fig, path)


def plot_attendout_rates(ao: List[dict], path: Path) -> None:
    """The paper's Fig. 3 from AttendOut runs: G-Net's mean drop probability per attacked layer
    at the end of every epoch (fairseq's per-epoch mean), averaged over seeds, per task."""
    plt = _plt()
    tasks = [t for t in TASK_ORDER if any(r["task"] == t for r in ao)]
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks), 3.0), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        rs = [r for r in ao if r["task"] == task]
        keys = sorted({k for r in rs for e in r["epochs"] for k in e if k.startswith("train_attendout_rate_l")},
                      key=lambda k: int(k.rsplit("l", 1)[1]))
        for j, k in enumerate(keys):
            n = min(len(r["epochs"]) for r in rs)
            ys = [statistics.mean(r["epochs"][e].get(k, float("nan")) for r in rs) for e in range(n)]
            ax.plot(range(1, n + 1), ys, marker="o", ms=3, color=f"C{j}", label=f"layer {k.rsplit('l', 1)[1]}")
        ax.set_title(TASKS[task].name, fontsize=9)
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes[0][0].set_ylabel("mean drop probability")
    axes[0][-1].legend(fontsize=6)
    fig.tight_layout()
    _save(fig, path)


def plot_sensitivity(task: str, ft_mean: float, scores: Dict[tuple, float], path: Path,
                     own: Optional[Tuple[int, float]] = None) -> None:
    """Fig. 6 / Fig. 4: the p x q heat maps with and without cross-tuning (difference to FT's mean,
    scaled to [-1, 1]) and the distribution of the cells' scores."""
    plt = _plt()
    grid = studies.SENSITIVITY_GRID
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), layout="constrained", gridspec_kw={"width_ratios": [1, 1, 0.8]})
    diffs = {k: v - ft_mean for k, v in scores.items()}
    scale = max((abs(d) for d in diffs.values()), default=1.0) or 1.0
    cmap = plt.get_cmap("RdBu_r").with_extremes(bad="0.8")  # a cell not run yet: grey, not "no difference" white
    for ax, schedule in zip(axes[:2], ("cross", "always")):
        img = [[diffs.get((schedule, p, q), float("nan")) / scale for q in grid] for p in grid]
        im = ax.imshow(img, cmap=cmap, vmin=-1, vmax=1)
        ax.set_xticks(range(len(grid)), [f"{q:g}" for q in grid])
        ax.set_yticks(range(len(grid)), [f"{p:g}" for p in grid])
        ax.set_xlabel("q")
        ax.set_ylabel("p")
        missing = sum((schedule, p, q) not in diffs for p in grid for q in grid)
        ax.set_title(f"{'with' if schedule == 'cross' else 'without'} cross-tuning"
                     + (f" (grey: {missing} cell{'s' if missing != 1 else ''} not run)" if missing else ""), fontsize=9)
    fig.colorbar(im, ax=axes[1], fraction=0.046, label="(score − FT mean) / max |·|")
    fig.get_layout_engine().set(wspace=0.12)  # room between the colorbar's label and the box plot's
    data = [[v for (s, _, _), v in scores.items() if s == schedule] for schedule in ("cross", "always")]
    axes[2].boxplot(data, showfliers=False)
    for i, d in enumerate(data):
        axes[2].scatter([i + 1] * len(d), d, s=8, color=f"C{i}", zorder=3)
    axes[2].axhline(ft_mean, color="grey", lw=0.8, ls="--", label="FT mean")
    if own is not None:  # the grid's own seed: the comparison that does not carry that seed's luck
        axes[2].axhline(own[1], color="black", lw=0.8, ls=":", label=f"FT, seed {own[0]}")
    axes[2].set_xticks([1, 2], ["with", "without"])
    axes[2].set_title("cross-tuning", fontsize=9)
    axes[2].set_ylabel(f"best dev {TASKS[task].metric}")
    axes[2].legend(fontsize=7)
    _save(fig, path)


def plot_prior(curves: Dict[str, List[dict]], path: Path) -> None:
    """Train and dev loss per epoch per dropping strategy (mean over seeds, band = min to max)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2), sharex=True)
    for j, (s, rs) in enumerate(curves.items()):
        for ax, key in zip(axes, ("train_loss", "valid_loss")):
            n = min(len(r["epochs"]) for r in rs)
            ys = [[r["epochs"][e][key] for r in rs] for e in range(n)]
            mean = [statistics.mean(y) for y in ys]
            lo, hi = [min(y) for y in ys], [max(y) for y in ys]
            xs = list(range(1, n + 1))
            ax.plot(xs, mean, color=f"C{j}", label=s)
            ax.fill_between(xs, lo, hi, color=f"C{j}", alpha=0.2)
    axes[0].set_title("train loss (bits, fairseq's log)")
    axes[1].set_title("dev loss (bits)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def plot_rates(accuracy: Dict[tuple, Optional[float]], path: Path, ft: Optional[float] = None,
               floor: Optional[float] = None) -> None:
    """Fig. 7: best dev accuracy against the dropping rate, high vs low; FT and the majority floor."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    if ft is not None:
        ax.axhline(ft, color="C0", linestyle="--", linewidth=1, label="none (FT)")
    if floor is not None:
        ax.axhline(floor, color="grey", linestyle=":", linewidth=1, label="majority class")
    for j, s in enumerate(("high", "low")):
        pts = sorted((rate, v) for (strategy, rate), v in accuracy.items() if strategy == s and v is not None)
        if pts:
            ax.plot([p for p, _ in pts], [v for _, v in pts], marker="o", color=f"C{j + 2}", label=f"drop {s}")
    ax.set_xlabel("dropping rate")
    ax.set_ylabel("best dev accuracy")
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def band(curves: List[List[Tuple[int, float]]]) -> Tuple[List[int], List[float], List[float], List[float]]:
    """Per epoch: (epochs, mean, low, high) over the runs' (epoch, value) curves that reach it."""
    by_epoch: Dict[int, List[float]] = {}
    for curve in curves:
        for e, v in curve:
            by_epoch.setdefault(e, []).append(v)
    es = sorted(by_epoch)
    return (es, [statistics.mean(by_epoch[e]) for e in es], [min(by_epoch[e]) for e in es],
            [max(by_epoch[e]) for e in es])


def plot_protocol_curves(data: Dict[str, Dict[str, Dict[str, List[List[Tuple[int, float]]]]]], path: Path) -> None:
    """One row per task, one panel per quantity (train loss, dev loss, dev score): FT vs
    AD-DROP per epoch, mean and band. ``data[task][method][quantity]``: one curve per run."""
    plt = _plt()
    fig, axes = plt.subplots(len(data), 3, figsize=(11, 3.2 * len(data)), squeeze=False)
    for row, (task, by_method) in zip(axes, data.items()):
        quantities = list(next(iter(by_method.values())))
        for ax, quantity in zip(row, quantities):
            for method, curves in by_method.items():
                es, mean, lo, hi = band(curves[quantity])
                ax.plot(es, mean, color=METHOD_COLORS[method], label=SHORT_NAMES.get(method, "FT"), marker="o",
                        markersize=3)
                ax.fill_between(es, lo, hi, color=METHOD_COLORS[method], alpha=0.15, linewidth=0)
            ax.set_title(f"{TASKS[task].name}: {quantity}", fontsize=10)
            ax.set_xlabel("epoch")
        row[0].legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def plot_ood(data: Dict[str, Dict[str, List[Tuple[float, float]]]], floors: Dict[str, float], path: Path) -> None:
    """One panel per training set -> OOD set: each run's in-distribution dev accuracy (x) against
    its OOD accuracy (y), FT and AD-DROP, with the OOD set's floor (its most frequent label) and a
    coin's 50 drawn, so a gap between the dots is read against them."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(data), figsize=(4.6 * len(data), 3.8), squeeze=False)
    for ax, (title, by_method) in zip(axes[0], data.items()):
        for method, pts in by_method.items():
            if pts:
                ax.scatter([x for x, _ in pts], [y for _, y in pts], color=METHOD_COLORS[method],
                           label=SHORT_NAMES.get(method, "FT"), s=28)
        if title in floors:
            ax.axhline(floors[title], color="grey", ls="--", lw=1, label="most frequent label")
        ax.axhline(50.0, color="black", ls=":", lw=1, label="chance (two labels)")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("in-distribution dev accuracy")
        ax.set_ylabel("OOD accuracy")
        ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
