"""Study ``protocol``: the paper's own protocol at CPU scale (the reference code's recipe, early
stopping, a search per task) with as many tries for FT as for AD-DROP, judged on fresh seeds."""
import statistics
from dataclasses import dataclass, field
from functools import partial
from typing import Dict, List, Optional, Tuple

import selection
import studies
from stats import MIN_SEEDS_FOR_VERDICT, judged, mean_std, over_seeds, verdict
from tasks import TASKS

from .. import figures as plots
from ..common import GLUE_ORDER, Figure, Section, dev_losses, paper_clause
from ..load import Data

STUDIES = ("protocol", "dropcheck")  # dropcheck: the chosen cells' drop over attributed rows
FIGURE = "protocol_curves.png"


@dataclass
class TaskResult:
    """One task's search, choices and fresh-seed verdict."""

    task: str
    metric: str
    ft_search: Dict[float, Dict[int, dict]]  # lr -> seed -> run
    addrop_search: Dict[Tuple[float, float], dict]  # (p, q) -> seed-1 run
    lr: Optional[float]  # FT's chosen rate (None: search incomplete)
    cell: Optional[Tuple[float, float]]  # AD-DROP's chosen (p, q)
    fresh: Dict[str, Dict[int, dict]]  # "ft" / "addrop" -> seed -> run
    diffs: List[float]  # AD-DROP minus FT, best-epoch dev score, same fresh seed
    reference: Optional[dict] = None  # the task's majority-class floor (results/reference/TASK.json)
    attributed_drop: Optional[float] = None  # the chosen cell's drop over attributed rows (stored or dropcheck)

    @property
    def verdict(self) -> Optional[str]:
        return verdict(self.diffs) if len(self.diffs) >= MIN_SEEDS_FOR_VERDICT else None

    @property
    def complete(self) -> bool:
        return len(self.diffs) == len(studies.CONFIRM_SEEDS)

    def paper_style(self) -> Optional[Tuple[float, float]]:
        """The best single dev score among each method's search tries (FT, AD-DROP): what a
        report of "the best dev score of the search" would compare."""
        ft = [r["best"]["score"] for by_seed in self.ft_search.values() for r in by_seed.values()]
        ad = [r["best"]["score"] for r in self.addrop_search.values()]
        return (max(ft), max(ad)) if ft and ad and self.cell is not None else None


@dataclass
class Protocol(Section):
    tasks: Dict[str, TaskResult] = field(default_factory=dict)

    def recommendation(self, t: TaskResult) -> Optional[str]:
        """What the README recommends for ``t`` once its fresh seeds have a verdict."""
        if t.verdict is None or not t.complete:
            return None
        cell = f"p = {t.cell[0]:g}, q = {t.cell[1]:g}"
        if t.verdict == "helps":
            return f"{TASKS[t.task].name}: {cell} (all layers), which beat FT on fresh seeds"
        return (f"{TASKS[t.task].name}: no (p, q) has shown a gain over FT: the search's choice ({cell}) is "
                f"{'shows no significant difference' if t.verdict == 'not significant' else t.verdict} on fresh "
                "seeds, so the defaults (p = q = 0.3) stay")


def pq(run: dict) -> Tuple[float, float]:
    return float(run["meta"]["p"]), float(run["meta"]["q"])


def task_result(task: str, runs: List[dict]) -> TaskResult:
    mine = [r for r in runs if r["task"] == task]
    ft_search: Dict[float, Dict[int, dict]] = {}
    for r in mine:
        if r["method"].startswith("ft_lr"):
            ft_search.setdefault(r["lr"], {})[r["seed"]] = r
    addrop_search = {pq(r): r for r in mine if r["method"].startswith("addrop_p")}
    fresh = {m: {r["seed"]: r for r in mine if r["method"] == m} for m in ("ft", "addrop")}
    seeds = sorted(set(fresh["ft"]) & set(fresh["addrop"]))
    diffs = [fresh["addrop"][s]["best"]["score"] - fresh["ft"][s]["best"]["score"] for s in seeds]
    return TaskResult(task, mine[0]["metric"], ft_search, addrop_search, selection.protocol_lr(task, mine),
                      selection.protocol_cell(task, mine), fresh, diffs)


def epochs_run(r: dict) -> str:
    """'best epoch / epochs run' (early stopping ends a run before ``PROTOCOL_EPOCHS``)."""
    return f"{r['best']['epoch']}/{r['last']['epoch']}"


def ft_table(t: TaskResult) -> List[str]:
    seeds = list(studies.PROTOCOL_FT_SEEDS)
    lines = [f"| learning rate | {' | '.join(f'seed {s}' for s in seeds)} | mean | |",
             "|---" * (len(seeds) + 3) + "|"]
    for lr in studies.PROTOCOL_LRS:
        by_seed = t.ft_search.get(lr, {})
        cells = [f"{by_seed[s]['best']['score']:.1f} ({epochs_run(by_seed[s])})" if s in by_seed else "–" for s in seeds]
        scores = [by_seed[s]["best"]["score"] for s in seeds if s in by_seed]
        mark = "**chosen**" if t.lr is not None and lr == t.lr else ""
        lines.append(f"| {lr:g} | {' | '.join(cells)} | {mean_std(scores)} | {mark} |")
    return lines


def addrop_table(t: TaskResult) -> List[str]:
    ps = sorted({p for p, _ in t.addrop_search} | set(studies.PROTOCOL_P))
    qs = sorted({q for _, q in t.addrop_search} | set(studies.PROTOCOL_Q))
    lines = [f"| p \\ q | {' | '.join(f'{q:g}' for q in qs)} |", "|---" * (len(qs) + 1) + "|"]
    for p in ps:
        cells = []
        for q in qs:
            r = t.addrop_search.get((p, q))
            text = f"{r['best']['score']:.1f} ({epochs_run(r)})" if r else "–"
            cells.append(f"**{text}**" if t.cell == (p, q) else text)
        lines.append(f"| {p:g} | {' | '.join(cells)} |")
    return lines


def fresh_table(t: TaskResult) -> List[str]:
    lines = ["| seed | FT | AD-DROP | Δ |", "|---|---|---|---|"]
    def cell(r: Optional[dict]) -> str:
        return f"{r['best']['score']:.1f} ({epochs_run(r)})" if r else "–"

    for s in sorted(set(t.fresh["ft"]) | set(t.fresh["addrop"])):
        ft, ad = t.fresh["ft"].get(s), t.fresh["addrop"].get(s)
        d = f"{ad['best']['score'] - ft['best']['score']:+.1f}" if ft and ad else "–"
        lines.append(f"| {s} | {cell(ft)} | {cell(ad)} | {d} |")
    return lines


def status(t: TaskResult) -> str:
    """Where the task's runs stand, in words (the study runs for hours, over sessions)."""
    n_ft = sum(len(v) for v in t.ft_search.values())
    n_grid = len(studies.PROTOCOL_FT_SEEDS) * len(studies.PROTOCOL_LRS)
    parts = [f"FT's search {n_ft} of {n_grid} runs"]
    if t.lr is not None:
        grid = selection.protocol_grid({c: r["best"]["score"] for c, r in t.addrop_search.items()})
        parts.append(f"AD-DROP's search {len(t.addrop_search)} of {len(grid)} cells")
        parts.append(f"fresh seeds: FT {len(t.fresh['ft'])}, AD-DROP {len(t.fresh['addrop'])} of {len(studies.CONFIRM_SEEDS)}")
    return "; ".join(parts)


def verdict_sentence(t: TaskResult) -> str:
    name = TASKS[t.task].name
    if not t.diffs:
        return f"{name}: no fresh-seed pair yet ({status(t)})."
    text = (f"{name} ({t.metric}): AD-DROP at p = {t.cell[0]:g}, q = {t.cell[1]:g} against FT, both at learning rate "
            f"{t.lr:g}: paired Δ {mean_std(t.diffs)} {over_seeds(len(t.diffs))} (seeds {', '.join(str(s) for s in sorted(t.fresh['ft']) if s in t.fresh['addrop'])}), "
            f"ahead on {sum(d > 0 for d in t.diffs)} of {len(t.diffs)}")
    if t.verdict is None:
        return text + ": too few seeds for a verdict."
    seeds = sorted(set(t.fresh["ft"]) & set(t.fresh["addrop"]))
    paper = paper_clause(t.task, [t.fresh["addrop"][s] for s in seeds], {s: t.fresh["ft"][s] for s in seeds}, t.reference)
    return text + f": {judged(t.diffs)}" + (f"; {paper}" if paper else "") + "."


def paper_style_sentence(t: TaskResult) -> Optional[str]:
    best = t.paper_style()
    if best is None:
        return None
    ft, ad = best
    out = (f"{TASKS[t.task].name}: the best single dev score of each method's {sum(len(v) for v in t.ft_search.values())} "
           f"and {len(t.addrop_search)} search runs is FT {ft:.1f}, AD-DROP {ad:.1f} ({ad - ft:+.1f}), the kind of "
           "number a search-and-report table gives")
    if t.diffs:
        mean = statistics.mean(t.diffs)
        out += f"; on fresh seeds the difference is {mean:+.1f} on average"
        if ad - ft > 0:
            kept = max(0.0, mean) / (ad - ft)
            out += f" ({100 * kept:.0f}% of the search's lead survives)"
    return out + "."


def curves(t: TaskResult) -> Dict[str, Dict[str, List[List[Tuple[int, float]]]]]:
    """Per method, per quantity: one (epoch, value) curve per fresh-seed run (the figure's data)."""
    metric = f"valid_{t.metric}"
    out = {}
    for m in ("ft", "addrop"):
        runs = [t.fresh[m][s] for s in sorted(t.fresh[m])]
        out[m] = {
            "train loss": [[(e["epoch"], e["train_loss"]) for e in r["epochs"] if "train_loss" in e] for r in runs],
            "dev loss": [list(zip([e["epoch"] for e in r["epochs"] if "valid_loss" in e], dev_losses(r))) for r in runs],
            f"dev {t.metric}": [[(e["epoch"], e[metric]) for e in r["epochs"] if metric in e] for r in runs],
        }
    return out


def drop_fraction(runs: List[dict], key: str) -> Optional[float]:
    """The mean of ``train_KEY`` over the AD-DROP epochs of ``runs`` (None where not logged)."""
    xs = [e[f"train_{key}"] for r in runs for e in r.get("epochs", [])
          if e.get("train_addrop_active", 0) > 0 and f"train_{key}" in e]
    return statistics.mean(xs) if xs else None


def drop_sentence(t: TaskResult, checks: List[dict]) -> Optional[str]:
    """What the chosen cell drops: the logged share of all query rows' keys, and the share over the
    rows whose attribution is not all zero (the drop that can reach the output), where measured."""
    if t.cell is None or not t.fresh["addrop"]:
        return None
    logged = drop_fraction(list(t.fresh["addrop"].values()), "addrop_drop_frac")
    if logged is None:
        return None
    text = (f"Drop at the chosen cell (p = {t.cell[0]:g}, q = {t.cell[1]:g}): on AD-DROP epochs the fresh-seed runs log "
            f"`addrop_drop_frac` {logged:.3f} (over every query row; rows whose attribution is all zero, most rows of "
            "a classifier's last layer, tie and are dropped at rate q without reaching the loss)")
    stored = drop_fraction(list(t.fresh["addrop"].values()), "addrop_drop_frac_attributed")
    mine = [r for r in checks if r["task"] == t.task and (float(r["meta"]["p"]), float(r["meta"]["q"])) == t.cell]
    check = drop_fraction(mine, "addrop_drop_frac_attributed")
    t.attributed_drop = stored if stored is not None else check
    if stored is not None:
        return text + f"; over rows with a nonzero attribution: `addrop_drop_frac_attributed` {stored:.3f}."
    if check is not None:
        same = drop_fraction(mine, "addrop_drop_frac")
        stored_run = t.fresh["addrop"].get(mine[0]["seed"])
        keys = ("train_loss", "train_addrop_drop_frac", "valid_loss")
        n = len(mine[0]["epochs"])
        replay = stored_run is not None and all(a.get(k) == b.get(k) for a, b in zip(stored_run["epochs"][:n], mine[0]["epochs"])
                                                for k in keys)
        return (text + "; the stored runs predate `addrop_drop_frac_attributed`: a two-epoch rerun of seed "
                f"{mine[0]['seed']} with the stored command (study `dropcheck`) logs {check:.3f} over rows with a "
                f"nonzero attribution, against `addrop_drop_frac` {same:.3f} in the same run (p·q = "
                f"{t.cell[0] * t.cell[1]:.2f}); its epochs "
                + ("reproduce the stored run's train loss, drop fraction and dev loss exactly." if replay else
                   "differ from the stored run's (train loss, drop fraction or dev loss)."))
    return text + "; the share over rows with a nonzero attribution was not logged in these runs."


def build(data: Data, rel: str, done: dict) -> Protocol:
    runs = data.study("protocol")
    checks = data.study("dropcheck")
    out = Protocol()
    if not runs:
        return out
    present = {r["task"] for r in runs}  # the study's tasks first, then any run with --tasks (e.g. STS-B)
    order = [t for t in (*studies.PROTOCOL_TASKS, *GLUE_ORDER) if t in present]
    order = list(dict.fromkeys(order))
    out.tasks = {t: task_result(t, runs) for t in order}
    for t in out.tasks.values():
        t.reference = data.references.get(t.task)
    lines = ["## protocol: the paper's protocol at CPU scale, judged on fresh seeds", "",
             "MiniLM, 1000 training examples per task, whole dev sets. Recipe for every run (both methods), each "
             "setting labelled with its source: AdamW betas (0.9, 0.999), eps 1e-6, weight decay 0.01, constant "
             "learning rate, no warm-up (the reference code, github TaoYang225/AD-DROP; it exempts biases and "
             "LayerNorm from weight decay, fairseq's adam cannot without a composite optimizer, so here the decay is "
             "uniform); batch 16 and max length "
             + ", ".join(f"{TASKS[t].name} {studies.TABLE11_MAX_LENGTH[t]}" for t in order)
             + f" (the paper's Table 11); up to {studies.PROTOCOL_EPOCHS} epochs with early stopping on the dev "
             f"metric, patience {studies.PROTOCOL_PATIENCE} (fairseq's `--patience`; our choice, for CPU: the reference code "
             "allows 50 epochs with patience 5); best-epoch dev score. AD-DROP: all layers, GA, pseudo labels, "
             "cross-tuning (odd epochs plain, even AD-DROP), as the paper for these tasks.", "",
             "Search, the same number of tries for each method (ours; the paper searches p, q over 81 cells and "
             f"tunes FT's rate over a few): FT's learning rate in {{{', '.join(f'{x:g}' for x in studies.PROTOCOL_LRS)}}} "
             f"x seeds {', '.join(map(str, studies.PROTOCOL_FT_SEEDS))}, chosen by mean; AD-DROP at FT's rate, "
             f"(p, q) in {{{', '.join(f'{x:g}' for x in studies.PROTOCOL_P)}}} x "
             f"{{{', '.join(f'{x:g}' for x in studies.PROTOCOL_Q)}}} on seed {studies.PROTOCOL_SEARCH_SEED} "
             "(a winner at the grid's upper edge adds the cells beyond it, up to 0.9, once; the lower edge, 0.1, is where the "
             "paper's range starts, so nothing is added below it; ties, at the 0.1 to which "
             "fairseq logs the dev metric, go to the lower rate and to the first cell in grid order). Then both choices on "
             f"seeds {', '.join(map(str, studies.CONFIRM_SEEDS))}, which the search never saw: that is the verdict "
             "(paired t-test, 5%, two-sided). Cells: best-epoch dev score (best epoch / epochs run).", ""]
    for t in out.tasks.values():
        name = TASKS[t.task].name
        lines += [f"### {name} ({t.metric})", "", f"Status: {status(t)}.", "", "FT's learning rate (seeds 1-3):", ""]
        lines += ft_table(t) + [""]
        if t.addrop_search:
            lines += [f"AD-DROP's p x q at learning rate {t.lr:g}, seed {studies.PROTOCOL_SEARCH_SEED} (chosen in bold):", ""]
            lines += addrop_table(t) + [""]
            extra = sorted(set(t.addrop_search) - set(studies.PROTOCOL_GRID))
            if extra:
                lines += ["The 3 x 3 grid's best cell sat at its upper edge, so the cells beyond it were added: "
                          + ", ".join(f"({p:g}, {q:g})" for p, q in extra) + f" (AD-DROP had {len(t.addrop_search)} "
                          f"tries, FT {sum(len(v) for v in t.ft_search.values())}).", ""]
        if t.fresh["ft"] or t.fresh["addrop"]:
            lines += [f"Fresh seeds ({', '.join(map(str, studies.CONFIRM_SEEDS))}): FT at {t.lr:g}, AD-DROP at "
                      + (f"p = {t.cell[0]:g}, q = {t.cell[1]:g}" if t.cell else "(its search has not finished)") + ":", ""]
            lines += fresh_table(t) + [""]
        lines += ["Verdict: " + verdict_sentence(t), ""]
        drop = drop_sentence(t, checks)
        if drop:
            lines += [drop, ""]
        paper = paper_style_sentence(t)
        if paper:
            lines += ["Selection effect: " + paper, ""]
    with_curves = [t for t in out.tasks.values() if t.fresh["ft"] and t.fresh["addrop"]]
    if with_curves:
        data_for_plot = {t.task: curves(t) for t in with_curves}
        out.figures = [Figure(FIGURE, partial(plots.plot_protocol_curves, data_for_plot))]
        lines += [f"![per-epoch curves of the chosen settings on the fresh seeds]({rel}/{FIGURE})", "",
                  "Per epoch, the chosen settings on the fresh seeds: train loss, dev loss, dev score (mean, and the "
                  "band from the lowest to the highest seed; runs stop early at different epochs, so later epochs "
                  "average fewer seeds).", ""]
    out.lines = lines
    return out
