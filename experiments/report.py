#!/usr/bin/env python
"""RESULTS.md and figures/*.png from the stored run JSONs; nothing typed by hand.

    python experiments/report.py                       # experiments/results -> experiments/RESULTS.md
    python experiments/report.py --results DIR --out DIR

Deterministic: the same JSONs give the same RESULTS.md, byte for byte. Every verdict is
``stats.verdict`` on the per-seed paired differences (same seed, same data).
"""
import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import studies  # noqa: E402
from tasks import TASKS  # noqa: E402
from stats import MIN_SEEDS_FOR_VERDICT, fmt, judged, mean_std, over_seeds, p_text, verdict  # noqa: E402

METHOD_NAMES = {
    "ft": "FT (fine-tuning)",
    "addrop": "AD-DROP (GA, pseudo labels, cross-tuning)",
    "rd": "RD (random region, same p, q)",
    "attn_dropout": "extra attention dropout (0.1 + p·q, spread over the layers)",
    "addrop_dec": "AD-DROP on encoder + decoder self-attention",
    "addrop_best": "AD-DROP at the sensitivity map's best cell",
    "rdrop": "R-Drop",
    "attendout": "AttendOut (T = 20, scored on held-out training rows)",
    "scores_dropout": "attention scores dropout (0.1)",
    "attn_layerdrop": "attention LayerDrop (0.2)",
    "scheduled": "scheduled scores dropout",
}
SHORT_NAMES = {"addrop": "AD-DROP", "addrop_best": "AD-DROP (best cell)", "addrop_dec": "AD-DROP enc+dec", "rd": "RD", "attn_dropout": "attention dropout",
               "rdrop": "R-Drop", "attendout": "AttendOut", "scores_dropout": "scores dropout", "attn_layerdrop": "attention LayerDrop",
               "scheduled": "scheduled dropout"}
GLUE_ORDER = ["rte", "mrpc", "cola", "stsb", "sst2"]
TASK_ORDER = GLUE_ORDER + ["ner", "ner_scratch", "wmt_en_ro", "wmt_tr_en"]


def load(results: Path) -> List[dict]:
    return [json.loads(p.read_text()) for p in sorted(results.glob("*/*/*/seed*.json"))]


def load_references(results: Path) -> Dict[str, dict]:
    """Majority-class floors per GLUE task (``results/reference/TASK.json``, run.py writes them)."""
    return {p.stem: json.loads(p.read_text()) for p in sorted((results / "reference").glob("*.json"))}


def majority_line(references: Dict[str, dict], tasks: List[str]) -> List[str]:
    refs = [references[t] for t in GLUE_ORDER if t in references and t in tasks]
    if not refs:
        return []
    return ["Majority-class floor (the training subset's most frequent label predicted for every dev example): "
            + ", ".join(f"{TASKS[r['task']].name} {r['metric']} {r['score']:.1f}" for r in refs)
            + ("; STS-B none (a constant prediction has no correlation)" if "stsb" in tasks else "") + ".", ""]


FAIRSEQ_RDROP = "label_smoothed_cross_entropy_with_rdrop"


def dev_losses(run: dict) -> List[float]:
    """The dev loss after each epoch, on one scale for every criterion. fairseq's
    ``label_smoothed_cross_entropy_with_rdrop`` duplicates the batch in validation too and sums
    both copies' losses over one copy's tokens (its KL term is 0 there: no dropout in eval), so
    it logs twice the loss the other criteria log; halved here."""
    half = FAIRSEQ_RDROP in run.get("command", ())
    return [e["valid_loss"] / 2 if half else e["valid_loss"] for e in run["epochs"] if "valid_loss" in e]


def by(runs, *keys):
    out = defaultdict(list)
    for r in runs:
        out[tuple(r[k] for k in keys)].append(r)
    return out


def header(runs: List[dict]) -> List[str]:
    if not runs:
        return []
    v = runs[0]["versions"]
    devices = sorted({f"{r['device']} ({r['threads']} thread{'s' if r['threads'] > 1 else ''} per run)" for r in runs})
    cpu_h = sum(r["cpu_s"] for r in runs) / 3600
    machines = defaultdict(int)
    for r in runs:
        machines[r["versions"].get("machine")] += 1
    recorded = [f"{m} ({n} run{'s' if n > 1 else ''})" for m, n in sorted((m, n) for m, n in machines.items() if m)]
    hardware = "; ".join(recorded + ([f"not recorded for {machines[None]} runs (made before run.py recorded it)"]
                                     if machines.get(None) else []))
    commits = {r["versions"].get("git_commit") or "?" for r in runs}
    dirty = sorted(r_key(r) for r in runs if (r["versions"].get("git_commit") or "").endswith("+dirty"))
    return [
        f"Runs: {len(runs)}, {cpu_h:.1f} CPU-hours in all; device {', '.join(devices)}; hardware: {hardware}; "
        f"python {v['python']}, torch {v['torch']}, fairseq-fixed {v['fairseq-fixed']}, "
        f"transformers {v['transformers']}; code at {len(commits)} commit{'s' if len(commits) > 1 else ''} "
        "(each run's JSON names its own)" + (f", {len(dirty)} run{'s' if len(dirty) > 1 else ''} from a tree with "
                                            f"uncommitted changes to `addrop_fairseq/` ({', '.join(dirty)})" if dirty else "") + ".",
        "",
    ]


def r_key(r: dict) -> str:
    return f"{r['study']}/{r['task']}/{r['method']}/seed{r['seed']}"


# ---------------------------------------------------------------------------- studies


def tune_section(runs: List[dict]) -> List[str]:
    if not runs:
        return []
    grid = sorted({lr for t in TASK_ORDER if any(r["task"] == t for r in runs) for lr in TASKS[t].lr_grid})
    lines = ["## tune: FT's learning rate", "",
             f"FT (`--addrop-schedule never`), seed 1, {studies.EPOCHS} epochs ({studies.MT_EPOCHS} for translation), "
             f"batch {studies.BATCH}, each task's grid. Best-epoch dev score; for translation the lowest dev loss (its "
             "score is BLEU on the test block, which nothing is chosen on). The chosen learning rate is used by "
             "every method in the other studies.", "",
             "| task | chosen on | " + " | ".join(f"lr {lr:g}" for lr in grid) + " | chosen |",
             "|---|---|" + "---|" * len(grid) + "---|"]
    for task in TASK_ORDER:
        rs = [r for r in runs if r["task"] == task]
        if not rs:
            continue
        mt = TASKS[task].family == "mt"
        value = {r["lr"]: -studies.tune_score(r) if mt else studies.tune_score(r) for r in rs}
        best = studies.chosen_lr(task, rs)
        edge = " (the grid's edge: widen it)" if best in (min(TASKS[task].lr_grid), max(TASKS[task].lr_grid)) else ""
        chosen = f"{best:g}{edge}" if best is not None else "grid incomplete"
        lines.append(f"| {TASKS[task].name} | {'dev loss (lowest)' if mt else 'dev ' + rs[0]['metric']} | "
                     + " | ".join(fmt(value.get(lr), 3 if mt else 1) for lr in grid) + f" | {chosen} |")
    return lines + [""]


def paired_diffs(runs: List[dict], ft_by_seed: Dict[int, dict]) -> List[float]:
    """Best-epoch dev score minus FT's, same seed (seeds FT has not run are left out)."""
    return [r["best"]["score"] - ft_by_seed[r["seed"]]["best"]["score"] for r in runs if r["seed"] in ft_by_seed]


def sizes_line(runs: List[dict]) -> str:
    sizes = {r["task"]: r["data"] for r in runs}
    return "; ".join(f"{TASKS[t].name} {sizes[t]['train']}/{sizes[t]['dev']}"
                     + ("" if sizes[t]["dev"] == sizes[t]["dev_total"] else f" (of {sizes[t]['dev_total']})")
                     for t in TASK_ORDER if t in sizes)


def comparison(runs: List[dict], figures: Path, rel: str, figure: str, score: str = "best-epoch dev score") -> List[str]:
    """Per task and method: seeds, best- and last-epoch ``score``, the paired differences to
    FT and their verdict; one sentence per method; the paired-differences figure."""
    lines = ["| task (metric) | method | seeds | best epoch | last epoch | dev loss, last epoch | paired Δ best vs FT | "
             "per-seed Δ | verdict | cost ×FT |", "|---|---|---|---|---|---|---|---|---|---|"]
    groups = by(runs, "task", "method")
    sentences = []
    plot = {}
    for task in TASK_ORDER:
        ft = {r["seed"]: r for r in groups.get((task, "ft"), [])}
        for method in METHOD_NAMES:
            rs = sorted(groups.get((task, method), []), key=lambda r: r["seed"])
            if not rs:
                continue
            best = [r["best"]["score"] for r in rs]
            last = [r["last"]["score"] for r in rs]
            cost = cost_ratio(rs, list(ft.values()))
            if method == "ft":
                diff_txt = seeds_txt = judge = ""
            else:
                diffs = paired_diffs(rs, ft)
                plot[(task, method)] = diffs
                diff_txt = mean_std(diffs) if diffs else "–"
                seeds_txt = ", ".join(f"{d:+.1f}" for d in diffs)
                judge = judged(diffs)
                if diffs:
                    sentences.append(f"- {TASKS[task].name}, {METHOD_NAMES[method]}: {verdict(diffs)} "
                                     f"(paired Δ {diff_txt} {over_seeds(len(diffs))}"
                                     + (f", {p_text(diffs)})." if len(diffs) >= MIN_SEEDS_FOR_VERDICT else ")."))
            lines.append(f"| {TASKS[task].name} ({rs[0]['metric']}) | {METHOD_NAMES[method]} | {len(rs)} | "
                         f"{mean_std(best)} | {mean_std(last)} | {mean_std([dev_losses(r)[-1] for r in rs], 3)} | "
                         f"{diff_txt} | {seeds_txt} | {judge} | {cost} |")
    other_studies = sorted({r["study"] for r in runs if r["method"] != "ft"} - {r["study"] for r in runs if r["method"] == "ft"})
    lines += ["", "Cost ×FT: seconds per update relative to FT's runs on the same task (these runs shared the CPU "
              "two at a time: indicative; the cost study and benchmarks/ are the clean measurements)."
              + (f" The rows of the {', '.join(f'`{s}`' for s in other_studies)} study ran in other sessions than FT's (another "
                 "machine or load): their ratio mixes the two, so below 1 means a faster session, not a cheaper "
                 "method; benchmarks/step_overhead.py times them side by side." if other_studies else "")
              + (" Dev loss: fairseq's R-Drop criterion logs twice the cross-entropy in validation (it scores "
                 "the batch and its duplicate); its column is halved to the other rows' scale."
                 if any(FAIRSEQ_RDROP in r.get("command", ()) for r in runs) else ""),
              "", f"What the data say (paired differences of the {score}, same seed; the verdict, from three seeds "
                                     "on, is a two-sided paired t-test at 5%, so three seeds need a mean above 4.3 standard errors):", ""] + sentences + [""]
    tested = sum(len(d) >= MIN_SEEDS_FOR_VERDICT for d in plot.values())
    if tested > 1:
        lines += [f"{tested} comparisons at 5% each: about {0.05 * tested:.1f} \"helps\" or \"hurts\" would appear by chance "
                  "alone where no method differs from FT; a lone verdict with a small effect deserves that doubt.", ""]
    if plot:
        plot_paired(plot, figures / figure, score)
        lines += [f"![paired differences to FT]({rel}/{figure})", ""]
    return lines


SECOND_METRICS = {"mrpc": "accuracy", "stsb": "spearman"}  # GLUE scores these two tasks twice


def second_metric(r: dict, metric: str) -> Optional[float]:
    """``metric`` at the epoch where the run's headline metric was best (one early-stopping choice)."""
    return next((e.get(f"valid_{metric}") for e in r["epochs"] if e["epoch"] == r["best"]["epoch"]), None)


def second_metrics_table(runs: List[dict]) -> List[str]:
    """GLUE's other metric for MRPC (accuracy) and STS-B (Spearman), per method, with its paired Δ."""
    groups = by(runs, "task", "method")
    rows = []
    for task, metric in SECOND_METRICS.items():
        ft = {r["seed"]: second_metric(r, metric) for r in groups.get((task, "ft"), [])}
        for method in METHOD_NAMES:
            rs = sorted(groups.get((task, method), []), key=lambda r: r["seed"])
            vals = {r["seed"]: second_metric(r, metric) for r in rs}
            if not rs or any(v is None for v in vals.values()):
                continue
            diffs = [v - ft[s] for s, v in vals.items() if ft.get(s) is not None] if method != "ft" else []
            rows.append(f"| {TASKS[task].name} ({metric}) | {SHORT_NAMES.get(method, 'FT')} | {len(rs)} | "
                        f"{mean_std(list(vals.values()))} | {mean_std(diffs) if diffs else ''} |")
    if not rows:
        return []
    return ["GLUE's second metric for MRPC and STS-B, at the epoch where the headline metric was best:", "",
            "| task (metric) | method | seeds | dev score | paired Δ vs FT |", "|---|---|---|---|---|"] + rows + [""]


def attendout_rates_figure(runs: List[dict], figures: Path, rel: str) -> List[str]:
    """The paper's Fig. 3 from our AttendOut runs: G-Net's mean drop probability per attacked
    layer at the end of every epoch (fairseq's per-epoch mean), averaged over seeds, per task."""
    ao = [r for r in runs if r["method"] == "attendout"]
    if not ao:
        return []
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
    name = "attendout_drop_rates.png"
    (figures / name).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(figures / name, dpi=120, metadata={"Software": None})
    plt.close(fig)
    return ["AttendOut's learned drop probability per attacked layer (the paper's Fig. 3; epoch means, "
            "averaged over seeds):", "", f"![AttendOut drop rates]({rel}/{name})", ""]


def learning_curves(runs: List[dict], figures: Path, rel: str, name: str) -> List[str]:
    """Per task: dev score and train loss per epoch for every method (mean over seeds, band =
    min to max), and one computed sentence on FT's regime: is it still improving when training
    stops, and is its dev loss already rising (the overfitting a regularizer is meant to curb)?"""
    tasks = [t for t in TASK_ORDER if any(r["task"] == t for r in runs)]
    if not tasks:
        return []
    plt = _plt()
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
                color = f"C{list(METHOD_NAMES).index(m)}"
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
    (figures / name).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(figures / name, dpi=120, metadata={"Software": None})
    plt.close(fig)
    ft = [r for r in runs if r["method"] == "ft"]
    lines = []
    if ft:
        at_end = sum(r["best"]["epoch"] == len(r["epochs"]) for r in ft)
        rising = sum(r["epochs"][-1]["valid_loss"] > min(e["valid_loss"] for e in r["epochs"]) for r in ft)
        lines = [f"FT's regime: its best dev score is at the last epoch in {at_end} of {len(ft)} runs (still "
                 f"improving when training stops), and its dev loss at the last epoch is above its minimum in "
                 f"{rising} of {len(ft)} runs (overfitting in the loss).", ""]
    return lines + [f"![dev score and train loss per epoch]({rel}/{name})", ""]


def attention_dropout_rates(runs: List[dict]) -> str:
    """The attention-dropout peer's rate per task, read from the commands that ran."""
    rates = {}
    for r in runs:
        if r["method"] == "attn_dropout":
            cmd = r["command"]
            rates[r["task"]] = json.loads(cmd[cmd.index("--hf-config-overrides") + 1])["attention_probs_dropout_prob"]
    return ", ".join(f"{TASKS[t].name} {rates[t]:g}" for t in TASK_ORDER if t in rates)


def scheduled_text(runs: List[dict]) -> str:
    """The scheduled scores dropout's setting, read from a run's command (its slopes depend on the
    run's length: the last layer reaches the end rate at the last update)."""
    for r in runs:
        for a in r.get("command", []):
            if r["method"] == "scheduled" and a.startswith("--attn-reg-slopes="):
                slopes = a.split("=", 1)[1]
                at = (studies.SCHEDULE_START - studies.SCHEDULE_END) / -float(slopes.split(",")[-1]) * 1000
                return (f"scheduled scores dropout from {studies.SCHEDULE_START:g}, per-layer slopes {slopes} "
                        f"per 1000 updates (the last layer at {studies.SCHEDULE_END:g} after {at:.0f} updates, "
                        f"a full run's length)")
    return f"scheduled scores dropout from {studies.SCHEDULE_START:g} down to {studies.SCHEDULE_END:g} in the last layer"


def regularizer_settings(runs: List[dict], model: str, unit: str) -> str:
    """The sentence that says how the ``regularizers`` rows were run (empty when there are none)."""
    if not any(r["method"] in studies.REGULARIZERS for r in runs):
        return ""
    return (f" AttendOut and its cheap regularizers (study `regularizers`, {model}same budget; the settings of "
            "AttendOut's paper, not re-tuned here, as AD-DROP's are not): AttendOut with T = 20, its nets scored "
            f"on 200 training {unit} outside the subset; scores dropout 0.1; attention LayerDrop 0.2; "
            f"{scheduled_text(runs)}.")


def glue_section(runs: List[dict], figures: Path, rel: str, references: Optional[Dict[str, dict]] = None) -> List[str]:
    if not runs:
        return []
    epochs = sorted({r["epochs_planned"] for r in runs})
    return (["## glue: AD-DROP and its peers on five GLUE tasks (Table 1 analogue)", "",
            "MiniLM. Train / dev examples (training subsets are a fixed shuffle, the same for every run; "
            f"dev sets whole unless marked): {sizes_line(runs)}. {'/'.join(map(str, epochs))} epochs, batch "
            f"{studies.BATCH}; p, q and layers of AD-DROP and RD from the paper's Table 11 (BERT column; not "
            "re-tuned for MiniLM, whose learning rate alone was tuned, for FT), first layer for SST-2 and STS-B; "
            "STS-B is regression, where AD-DROP has no pseudo labels and attributes the real loss (Appendix A); extra attention dropout (HF's "
            "`attention_probs_dropout_prob`: every layer, every epoch) = MiniLM's 0.1 + p·q × the share of layers "
            f"AD-DROP acts on ({attention_dropout_rates(runs)}); R-Drop alpha 1 (its GLUE setting)."
            + regularizer_settings(runs, "", "rows"),
            ""] + majority_line(references or {}, sorted({r["task"] for r in runs}))
            + comparison(runs, figures, rel, "glue_paired_differences.png") + regularizer_verdicts(runs, "glue")
            + second_metrics_table(runs)
            + learning_curves(runs, figures, rel, "glue_curves.png") + attendout_rates_figure(runs, figures, rel))


def epochs_section(runs: List[dict], glue_runs: List[dict], figures: Path, rel: str,
                   confirm_runs: Sequence[dict] = ()) -> List[str]:
    """FT and AD-DROP trained ``LONG_EPOCHS`` epochs next to the glue study's ``EPOCHS``: per task,
    FT at both budgets (paired by seed: the epochs half of FT's tuning) and AD-DROP's paired Δ
    to FT at each budget; then the long runs' full table and learning curves."""
    if not runs:
        return []
    short, long = studies.EPOCHS, studies.LONG_EPOCHS
    groups = by(runs + glue_runs, "study", "task", "method")
    tasks = [t for t in TASK_ORDER if ("epochs", t, "ft") in groups]
    lines = [f"## epochs: {long} epochs instead of {short}", "",
             f"FT and AD-DROP with the glue study's settings (same subsets, learning rate, p, q, layers, seeds), "
             f"trained {long} epochs: the epochs half of FT's tuning, and, if FT trained longer overfits its "
             "1000 examples (the regime line below says whether it does), the regime a regularizer is meant for. Δ FT = FT's best-epoch dev score at "
             f"{long} minus at {short} epochs, same seed; Δ AD-DROP = AD-DROP minus FT at the same budget, same seed.", "",
             f"| task (metric) | FT, {short} ep | FT, {long} ep | Δ FT {long} vs {short} | Δ AD-DROP, {short} ep | "
             f"Δ AD-DROP, {long} ep |", "|---|---|---|---|---|---|"]
    sentences = []

    def again(task: str) -> str:
        """What the same comparison gave on the fresh seeds of study epochs_confirm."""
        ft = {r["seed"]: r for r in confirm_runs if r["task"] == task and r["method"] == "ft"}
        d = paired_diffs([r for r in confirm_runs if r["task"] == task and r["method"] == "addrop"], ft)
        return f" Judged again on {len(d)} fresh seeds (epochs_confirm, below): {judged(d)}, Δ {mean_std(d)}." if d else ""

    for t in tasks:
        ft = {n: {r["seed"]: r for r in groups.get((study, t, "ft"), [])} for n, study in ((short, "glue"), (long, "epochs"))}
        d_ft = paired_diffs(list(ft[long].values()), ft[short])
        d_ad = {n: paired_diffs(groups.get((study, t, "addrop"), []), ft[n]) for n, study in ((short, "glue"), (long, "epochs"))}

        def cell(d):
            return f"{mean_std(d)}, {judged(d)}" if d else "–"

        lines.append(f"| {TASKS[t].name} ({TASKS[t].metric}) | {mean_std([r['best']['score'] for r in ft[short].values()])} | "
                     f"{mean_std([r['best']['score'] for r in ft[long].values()])} | {cell(d_ft)} | {cell(d_ad[short])} | "
                     f"{cell(d_ad[long])} |")
        if d_ad[long]:
            sentences.append(f"- {TASKS[t].name}: for FT, {long} epochs instead of {short}: "
                             f"{judged(d_ft) if d_ft else 'not paired'}; AD-DROP against FT at {long} epochs: "
                             f"{judged(d_ad[long])}, Δ {mean_std(d_ad[long])}." + again(t))
    lines += ["", "What the data say:", ""] + sentences + [""]
    lines += comparison(runs, figures, rel, "epochs_paired_differences.png")
    return lines + learning_curves(runs, figures, rel, "epochs_curves.png")


def epochs_confirm_section(runs: List[dict], epochs_runs: List[dict], figures: Path, rel: str) -> List[str]:
    if not runs:
        return []
    seeds = sorted({r["seed"] for r in runs})
    lines = ["## epochs_confirm: the epochs study on fresh seeds", "",
             f"FT and AD-DROP exactly as in the epochs study ({studies.LONG_EPOCHS} epochs), on seeds "
             f"{', '.join(map(str, seeds))}, which played no part in choosing that setting (it was one of "
             "several looked at: five tasks, two budgets): a gain must hold here before the README's demo is built on it.", ""] + comparison(
                 runs, figures, rel, "epochs_confirm_paired_differences.png")
    pooled = []
    for task in TASK_ORDER:
        both = [r for r in runs + epochs_runs if r["task"] == task]
        ft = {r["seed"]: r for r in both if r["method"] == "ft"}
        diffs = paired_diffs([r for r in both if r["method"] == "addrop"], ft)
        fresh = paired_diffs([r for r in runs if r["task"] == task and r["method"] == "addrop"], ft)
        if fresh and len(diffs) > len(fresh):
            pooled.append(f"- {TASKS[task].name}: FT {mean_std([r['best']['score'] for r in ft.values()])}, AD-DROP Δ "
                          f"{mean_std(diffs)}, {ahead(diffs)}; {judged(diffs)}.")
    if pooled:
        lines += ["Both studies' seeds together (the seeds "
                  "that chose the setting are in it, so the fresh seeds above are the unbiased test):", ""] + pooled + [""]
    return lines


def ner_section(runs: List[dict], figures: Path, rel: str) -> List[str]:
    if not runs:
        return []
    epochs = sorted({r["epochs_planned"] for r in runs})
    p, q = studies.NER_PQ
    return (["## ner: CoNLL-2003 (seqeval entity F1 on the dev set)", "",
            f"Train / dev sentences: {sizes_line(runs)}. {'/'.join(map(str, epochs))} epochs, batch "
            f"{studies.BATCH} sentences; AD-DROP and RD with p = {p}, q = {q} (the paper gives none for CoNLL) on "
            "all layers, pseudo-label loss as the attribution target (Eq. 8-10); R-Drop is fairseq's "
            "`label_smoothed_cross_entropy_with_rdrop` (alpha 1). MiniLM is uncased; the tagger is trained "
            "from scratch." + regularizer_settings(runs, "MiniLM, ", "sentences"), ""] + comparison(runs, figures, rel, "ner_paired_differences.png")
            + regularizer_verdicts(runs, "ner"))


def mt_section(runs: List[dict], figures: Path, rel: str) -> List[str]:
    if not runs:
        return []
    epochs = sorted({r["epochs_planned"] for r in runs})
    p, q = studies.MT_PQ
    lines = ["## mt: WMT16 EN-RO and TR-EN, small transformers from scratch", "",
             "These are 2+2-layer, d = 128 transformers trained from scratch on the newsdev2016 pairs (the "
             "paper fine-tunes OPUS-MT, which cannot be downloaded here; the WMT16 training corpora are not "
             "on these machines either): the point is the relative effect and its variance, not the level. "
             f"Train / valid / test pairs: {sizes_line(runs)} (valid for the checkpoint choice by loss). "
             f"{'/'.join(map(str, epochs))} epochs, 2048 tokens per batch, label smoothing 0.1; AD-DROP and RD "
             f"with p = {p}, q = {q} on all layers of encoder self-attention (the reference code's default) or "
             "of encoder and decoder self-attention (`addrop_dec`); R-Drop is fairseq's "
             "`label_smoothed_cross_entropy_with_rdrop`, alpha 5. Scores: sacrebleu on the test block against "
             "the untouched references, beam 4; \"best epoch\" = the checkpoint with the lowest valid loss. The "
             "score compared is chrF, not BLEU: FT scores 0-1 BLEU here (study tune), where 4-gram matches are "
             "too rare to rank methods; BLEU is in the second table.", ""]
    lines += comparison(runs, figures, rel, "mt_paired_differences.png", "best checkpoint's test chrF")
    lines += ["The best checkpoint's BLEU and length ratio, and its dev loss (the lowest of the run, what the "
              "checkpoint is chosen on) with the paired Δ to FT's; the verdict there counts a lower loss as "
              "helping:", "",
              "| task | method | seeds | BLEU (best ckpt) | length ratio | lowest dev loss | paired Δ vs FT | "
              "per-seed Δ | verdict |", "|---|---|---|---|---|---|---|---|---|"]
    groups = by(runs, "task", "method")
    for task in TASK_ORDER:
        for method in METHOD_NAMES:
            rs = groups.get((task, method), [])
            if not rs:
                continue
            diffs = lowest_loss_diffs(rs, groups.get((task, "ft"), [])) if method != "ft" else []
            lines.append(f"| {TASKS[task].name} | {METHOD_NAMES[method]} | {len(rs)} | "
                         f"{mean_std([r['test']['best']['bleu'] for r in rs], 2)} | "
                         f"{mean_std([r['test']['best']['len_ratio'] for r in rs], 3)} | "
                         f"{mean_std([min(dev_losses(r)) for r in rs], 3)} | " + (
                             f"{mean_std(diffs, 3)} | {', '.join(f'{d:+.3f}' for d in diffs)} | "
                             f"{judged([-d for d in diffs])} |" if diffs else " |  |  |"))
    sig = sorted({r["test"]["signatures"]["bleu"] for r in runs})
    lines += [""] + length_warnings(runs) + mt_attention_default(runs)
    return lines + ["sacrebleu signatures: BLEU `" + "`, `".join(sig) + "`; chrF `"
                    + "`, `".join(sorted({r["test"]["signatures"]["chrf"] for r in runs})) + "`.", ""]


DEGENERATE_LENGTH = (0.5, 2.0)  # test output / reference length outside this: not translations yet


def length_ratios(runs: List[dict], task: str) -> Tuple[List[float], int]:
    """The best checkpoints' test length ratios on ``task``, and how many are outside DEGENERATE_LENGTH."""
    lo, hi = DEGENERATE_LENGTH
    ratios = [r["test"]["best"]["len_ratio"] for r in runs if r["task"] == task]
    return ratios, sum(not lo <= x <= hi for x in ratios)


def lowest_loss_diffs(runs: List[dict], ft_runs: List[dict]) -> List[float]:
    """Each run's lowest dev loss (what a translation checkpoint is chosen on) minus FT's, same seed."""
    ft = {r["seed"]: min(dev_losses(r)) for r in ft_runs}
    return [min(dev_losses(r)) - ft[r["seed"]] for r in sorted(runs, key=lambda r: r["seed"]) if r["seed"] in ft]


def length_warnings(runs: List[dict]) -> List[str]:
    """Where outputs are far from the references' length, chrF (and BLEU's brevity penalty) rank
    lengths more than translations; said per task, from the runs' own length ratios."""
    lo, hi = DEGENERATE_LENGTH
    out = []
    for task in TASK_ORDER:
        ratios, bad = length_ratios(runs, task)
        if bad:
            out.append(f"{TASKS[task].name}: {bad} of {len(ratios)} runs translate the test block to less than "
                       f"{lo:g} or more than {hi:g} times the references' length (length ratios {min(ratios):.2f} to "
                       f"{max(ratios):.2f}): those outputs are not translations yet, and chrF differences between "
                       "them are mostly length differences; the dev loss column is the cleaner signal there.")
    return out + [""] if out else []


def mt_attention_default(runs: List[dict]) -> List[str]:
    """Which attention AD-DROP should act on in translation, by a rule fixed before the runs:
    encoder + decoder self-attention replaces the reference code's encoder-only default only
    if it beats it, paired per seed on the test score (chrF), significantly (p < 0.05) on every task run."""
    per_task = {}
    for task in TASK_ORDER:
        enc = {r["seed"]: r for r in runs if r["task"] == task and r["method"] == "addrop"}
        diffs = paired_diffs([r for r in runs if r["task"] == task and r["method"] == "addrop_dec"], enc)
        if diffs:
            per_task[task] = diffs
    if not per_task:
        return []
    parts = "; ".join(f"{TASKS[t].name} Δ {mean_std(d, 2)} {TASKS[t].metric} {over_seeds(len(d))}, {judged(d)}"
                      for t, d in per_task.items())
    wins = all(verdict(d) == "helps" for d in per_task.values())
    return [f"Attention default for translation (encoder + decoder self-attention minus encoder only, paired "
            f"per seed): {parts}. " + (
                "The evidence picks encoder + decoder self-attention over the reference code's encoder-only "
                "default on every task." if wins else
                "The evidence does not pick a different default: `--addrop-attention auto` stays encoder "
                "self-attention, the reference code's choice."), ""]


ABLATION_ROWS = [  # (study, method, label): FT, AD-DROP and RD come from the glue study
    ("glue", "ft", "FT"), ("glue", "addrop", "AD-DROP (GA, pseudo labels, cross-tuning)"),
    ("ablation", "iga", f"r/w IGA (m = {studies.ABLATION_IG_STEPS})"), ("ablation", "aa", "r/w AA"),
    ("glue", "rd", "r/w RD"), ("ablation", "gold", "r/w gold labels"), ("ablation", "no_cross", "w/o cross-tuning"),
]


def seconds_per_update(rs: List[dict]) -> float:
    return statistics.mean(r["train_wall"] / max(1, r["updates"]) for r in rs)


def cost_ratio(rs: List[dict], ft_runs: List[dict]) -> str:
    """Seconds per update of ``rs`` over FT's, as a table cell."""
    return fmt(seconds_per_update(rs) / seconds_per_update(ft_runs), 2) if rs and ft_runs else "–"


def ablation_groups(runs: List[dict], glue_runs: List[dict]) -> Tuple[List[str], dict]:
    """The ablation's tasks and its runs grouped with the glue study's FT, AD-DROP and RD on them."""
    tasks = [t for t in TASK_ORDER if any(r["task"] == t for r in runs)]
    return tasks, by(runs + [r for r in glue_runs if r["task"] in tasks], "study", "task", "method")


def vs_addrop(groups: dict, study: str, task: str, method: str, addrop_study: str = "glue") -> List[float]:
    """A variant's paired per-seed difference to AD-DROP: what replacing that part changes."""
    return paired_diffs(groups.get((study, task, method), []),
                        {r["seed"]: r for r in groups.get((addrop_study, task, "addrop"), [])})


def ablation_verdicts(groups: dict, tasks: List[str], numbers: bool = False, rows=ABLATION_ROWS,
                      addrop_study: str = "glue") -> str:
    """One clause per variant (``rows``: study, method, label): its verdict against AD-DROP per task
    (with the paired Δ if ``numbers``)."""
    words = {"helps": "better than AD-DROP", "hurts": "worse than AD-DROP", "within noise": "within noise of AD-DROP"}
    clauses = []
    for study, method, label in rows:
        said = defaultdict(list)  # verdict -> tasks (with their Δ)
        for t in tasks:
            diffs = vs_addrop(groups, study, t, method, addrop_study) if method not in ("ft", "addrop") else []
            if diffs:
                said[verdict(diffs)].append(TASKS[t].name + (f" ({mean_std(diffs)})" if numbers else ""))
        if said:
            clauses.append(f"{label}: " + ", ".join(f"{words.get(v, v)} on {' and '.join(ts)}" for v, ts in said.items()))
    return "; ".join(clauses)


def regularizer_verdicts(runs: List[dict], addrop_study: str) -> List[str]:
    """AttendOut and its cheap regularizers against AD-DROP (``addrop_study``'s runs), paired per
    seed: the comparison the AttendOut issue asks to state plainly."""
    regs = [r for r in runs if r["study"] == "regularizers"]
    tasks = [t for t in TASK_ORDER if any(r["task"] == t for r in regs)]
    groups = by(regs + [r for r in runs if r["study"] == addrop_study and r["task"] in tasks], "study", "task", "method")
    text = ablation_verdicts(groups, tasks, numbers=True, addrop_study=addrop_study,
                             rows=[("regularizers", m, METHOD_NAMES[m]) for m in studies.REGULARIZERS])
    return [f"AttendOut and its cheap regularizers against AD-DROP (paired per seed, the same test): {text}.", ""] if text else []


def ablation_section(runs: List[dict], glue_runs: List[dict]) -> List[str]:
    if not runs:
        return []
    tasks, groups = ablation_groups(runs, glue_runs)
    lines = ["## ablation: the paper's Table 2", "",
             "AD-DROP with one part replaced, same learning rate, seeds and budget; FT, AD-DROP and RD are the "
             "glue study's runs. Cells: best-epoch dev score mean ± std, the paired Δ to FT, the paired Δ to "
             "AD-DROP (what replacing that part changes; **bold** where significant); cost = seconds per update "
             "relative to FT's runs on the same task (these runs shared the CPU two at a time, and the ablation's "
             "own rows ran in other sessions than FT's: indicative only; the cost study is the clean measurement).", "",
             "| method | " + " | ".join(f"{TASKS[t].name} ({TASKS[t].metric}) | Δ FT | Δ AD-DROP | cost" for t in tasks)
             + " |", "|---|" + "---|---|---|---|" * len(tasks)]
    for study, method, label in ABLATION_ROWS:
        cells = []
        for t in tasks:
            rs = groups.get((study, t, method), [])
            ft = {r["seed"]: r for r in groups.get(("glue", t, "ft"), [])}
            diffs = paired_diffs(rs, ft) if method != "ft" else []
            vs = vs_addrop(groups, study, t, method) if method not in ("ft", "addrop") else []
            vs_text = mean_std(vs) if vs else "–"
            cells.append(f"{mean_std([r['best']['score'] for r in rs])} | {mean_std(diffs) if diffs else '–'} | "
                         + (f"**{vs_text}**" if verdict(vs) in ("helps", "hurts") else vs_text)
                         + f" | {cost_ratio(rs, list(ft.values()))}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    summary = ablation_verdicts(groups, tasks)
    return lines + (["", f"Against AD-DROP, paired per seed: {summary}."] if summary else []) + [""]


def sensitivity_cells(runs: List[dict], glue_runs: List[dict]):
    """{task: (FT mean, {(schedule, p, q): best score}, {seed: FT's best score})}"""
    out = {}
    for t in TASK_ORDER:
        rs = [r for r in runs if r["task"] == t]
        ft = {r["seed"]: r["best"]["score"] for r in glue_runs if r["task"] == t and r["method"] == "ft"}
        if rs and ft:
            out[t] = (statistics.mean(ft.values()), {(r["meta"]["schedule"], float(r["meta"]["p"]), float(r["meta"]["q"])):
                                                     r["best"]["score"] for r in rs}, ft)
    return out


def sensitivity_section(runs: List[dict], glue_runs: List[dict], figures: Path, rel: str) -> List[str]:
    cells = sensitivity_cells(runs, glue_runs)
    if not cells:
        return []
    grid = studies.SENSITIVITY_GRID
    lines = ["## sensitivity: p × q (Fig. 6 and Fig. 4 analogues)", "",
             f"Every (p, q) in {{{', '.join(f'{x:g}' for x in grid)}}}², with cross-tuning and without (AD-DROP on "
             "every epoch), one seed; the difference of the best-epoch dev score to FT's mean over the glue "
             "study's seeds, divided by the largest absolute difference of the grid (MaxAbsScaler, as the paper).", ""]
    for t, (ft_mean, scores, ft_by_seed) in cells.items():
        seeds = sorted({r["seed"] for r in runs if r["task"] == t})
        for schedule in ("cross", "always"):
            diffs = {(p, q): v - ft_mean for (s, p, q), v in scores.items() if s == schedule}
            if not diffs:
                continue
            lines += [f"{TASKS[t].name}, {'with' if schedule == 'cross' else 'without'} cross-tuning: Δ to FT "
                      f"({ft_mean:.1f}), rows p, columns q:", "",
                      "| p \\ q | " + " | ".join(f"{q:g}" for q in grid) + " |", "|---|" + "---|" * len(grid)]
            for p in grid:
                lines.append(f"| {p:g} | " + " | ".join(f"{diffs[(p, q)]:+.1f}" if (p, q) in diffs else "–"
                                                        for q in grid) + " |")
            best = max(diffs, key=diffs.get)
            above = sum(d > 0 for d in diffs.values())
            partial = "" if len(diffs) == len(grid) ** 2 else f"So far ({len(diffs)} of {len(grid) ** 2} cells run): "
            lines += ["", f"{partial}Best cell p = {best[0]:g}, q = {best[1]:g} ({diffs[best]:+.1f}); {above} of "
                      f"{len(diffs)} cells above FT's mean; the plugin's default p = q = 0.3: "
                      + (f"{diffs[(0.3, 0.3)]:+.1f}." if (0.3, 0.3) in diffs else "not run.")
                      + same_seed(ft_mean, ft_by_seed, seeds, [v for (s, _, _), v in scores.items() if s == schedule]), ""]
        name = f"sensitivity_{t}.png"
        plot_sensitivity(t, ft_mean, scores, figures / name, own_seed_ft(ft_by_seed, seeds))
        lines += [f"![p x q heat maps and score distributions]({rel}/{name})", ""]
    return lines


def own_seed_ft(ft_by_seed: Dict[int, float], seeds: List[int]) -> Optional[Tuple[int, float]]:
    """(seed, FT's score on it) when the grid ran on one seed FT also ran: a one-seed map measured
    against FT's mean carries that seed's luck, so it is also judged against FT on its own seed."""
    return (seeds[0], ft_by_seed[seeds[0]]) if len(seeds) == 1 and seeds[0] in ft_by_seed else None


def same_seed(ft_mean: float, ft_by_seed: Dict[int, float], seeds: List[int], cells: List[float]) -> str:
    own = own_seed_ft(ft_by_seed, seeds)
    if own is None:
        return ""
    seed, ft = own
    return (f" Against FT on the same seed (seed {seed}: {ft:.1f}, {ft - ft_mean:+.1f} from FT's mean), "
            f"{sum(c > ft for c in cells)} of {len(cells)} cells are above.")


def best_cells(runs: List[dict]) -> Dict[str, str]:
    """{task: "p = .., q = .."} of the confirm study's AD-DROP runs."""
    return {r["task"]: f"p = {r['meta']['p']}, q = {r['meta']['q']}" for r in runs if r["method"] == "addrop_best"}


def confirm_section(runs: List[dict], figures: Path, rel: str) -> List[str]:
    if not runs:
        return []
    cells = best_cells(runs)
    seeds = sorted({r["seed"] for r in runs})
    return ["## confirm: the sensitivity map's best cell on fresh seeds", "",
            "The cross-tuning cell with the best dev score in the sensitivity study (one seed, seed 1) is a "
            "selection: its lead includes that seed's luck. Here it is judged against FT on seeds the selection "
            f"never saw ({', '.join(map(str, seeds))}), same budget and learning rate: "
            + "; ".join(f"{TASKS[t].name} {c}" for t, c in cells.items()) + ".", ""] + comparison(
                runs, figures, rel, "confirm_paired_differences.png")


def ahead(diffs: List[float]) -> str:
    return f"ahead on {sum(d > 0 for d in diffs)} of {len(diffs)} seeds"


def pq_recommendation(sensitivity_runs: List[dict], confirm_runs: List[dict], glue_runs: List[dict]) -> List[str]:
    """The p, q to recommend for small-data classification, by a rule fixed before the grid was
    complete: the map's best cross-tuning cell if the fresh seeds of study ``confirm`` say it helps
    (paired, p < 0.05); otherwise no cell has shown a gain, and the defaults p = q = 0.3 stay.
    "Sensible" for the defaults: within FT's seed-to-seed spread of the best cell on the map."""
    lines = []
    cells = sensitivity_cells(sensitivity_runs, glue_runs)
    for t, (ft_mean, scores, ft_by_seed) in cells.items():
        cross = {(p, q): v for (s, p, q), v in scores.items() if s == "cross"}
        best = studies.best_cell(cross)  # the cell study confirm judges
        if best is None:
            continue
        default = (0.3, 0.3)
        rank = 1 + sum(v > cross[default] for v in cross.values())
        gap = cross[best] - cross[default]
        ft_sd = statistics.stdev(ft_by_seed.values()) if len(ft_by_seed) > 1 else None
        spread = (f"{gap:.1f} below the best cell, " + ("within" if gap <= ft_sd else "more than")
                  + f" FT's seed-to-seed spread (std {ft_sd:.1f} over {len(ft_by_seed)} seeds)") if ft_sd else f"{gap:.1f} below the best cell"
        place = f"the defaults p = q = 0.3 rank {rank} of {len(cross)} cells with cross-tuning on the map, {spread}"
        ft = {r["seed"]: r for r in confirm_runs if r["task"] == t and r["method"] == "ft"}
        diffs = paired_diffs([r for r in confirm_runs if r["task"] == t and r["method"] == "addrop_best"], ft)
        name, cell = TASKS[t].name, f"p = {best[0]:g}, q = {best[1]:g}"
        if len(diffs) < MIN_SEEDS_FOR_VERDICT:
            lines.append(f"{name}: recommendation pending: study confirm has not judged the best cell ({cell}) "
                         f"on {MIN_SEEDS_FOR_VERDICT} fresh seeds yet; {place}.")
        elif verdict(diffs) == "helps":
            lines.append(f"{name}: recommended p, q for small-data classification: {cell} with cross-tuning, the map's "
                         f"best cell, ahead of FT on fresh seeds (Δ {mean_std(diffs)}, {ahead(diffs)}, {p_text(diffs)}); "
                         f"{place}.")
        else:
            lines.append(f"{name}: no (p, q) has shown a gain over FT: the map's best cell ({cell}) is "
                         f"{verdict(diffs)} on fresh seeds (Δ {mean_std(diffs)}, {ahead(diffs)}, {p_text(diffs)}), "
                         f"and a ranking made on one seed does not tell cells apart, so the defaults stay; {place}.")
    return lines


def prior_section(runs: List[dict], figures: Path, rel: str, references: Optional[Dict[str, dict]] = None,
                  mechanism: Optional[dict] = None) -> List[str]:
    if not runs:
        return []
    lines = ["## prior: dropping low- vs high-attribution positions (Fig. 2 / Fig. 7 analogue)", "",
             "MRPC, first layer only, gold-label GA, AD-DROP on every update; dropping rate 0.3 "
             "(p = 0.3, q = 1): none (FT), random (RD), high (AD-DROP's candidates) and low "
             "(the int(p n) lowest-attribution keys, as the reference code).", ""]
    main = [r for r in runs if r["meta"].get("rate") == "0.3" or r["method"] == "none"]
    strategies = ["none", "random", "high", "low"]
    lines += ["| strategy | seeds | final train loss (bits) | final dev loss (bits) | best dev F1 | last dev F1 |", "|---|---|---|---|---|---|"]
    curves = {}
    for s in strategies:
        rs = [r for r in main if r["method"] == s]
        if not rs:
            continue
        tl = [r["epochs"][-1].get("train_loss") for r in rs]
        vl = [r["epochs"][-1].get("valid_loss") for r in rs]
        lines.append(f"| {s} | {len(rs)} | {mean_std(tl, 3)} | {mean_std(vl, 3)} | "
                     f"{mean_std([r['best']['score'] for r in rs])} | {mean_std([r['last']['score'] for r in rs])} |")
        curves[s] = rs
    lines.append("")
    floor = (references or {}).get("mrpc")
    if floor:
        lines += [f"MRPC's majority-class floor is F1 {floor['score']:.1f}: a run there answers \"paraphrase\" for "
                  "every pair.", ""]
    if "none" in curves and len(curves) > 1:
        none = {r["seed"]: r for r in curves["none"]}

        def mean_loss(r, key):  # the area under the curve: how fast it fits, not only where it ends
            return statistics.mean(e[key] for e in r["epochs"] if key in e)

        def compare(s, key, word):
            pairs = [(mean_loss(r, key), mean_loss(none[r["seed"]], key)) for r in curves[s] if r["seed"] in none]
            above = sum(a > b for a, b in pairs)
            return (f"{word} {statistics.mean(a for a, _ in pairs):.3f} vs none's "
                    f"{statistics.mean(b for _, b in pairs):.3f}, above none's in {above} of {len(pairs)} seeds")

        expect = {"random": "close to none", "high": "slower fitting: train loss above none's",
                  "low": "faster fitting and overfitting: train loss below none's, dev loss above"}
        said = [f"- {s} (paper: {expect[s]}): {compare(s, 'train_loss', 'train loss')}; "
                f"{compare(s, 'valid_loss', 'dev loss')}." for s in strategies if s != "none" and s in curves]
        lines += ["What the data say (losses averaged over the epochs, i.e. the area under the curves of the "
                  "figure below; each seed against none's run with the same seed; after each strategy, what the "
                  "paper's Fig. 2 shows for it):", ""] + said + [""]
    if curves:
        name = "prior_losses.png"
        plot_prior(curves, figures / name)
        lines += [f"![train and dev loss per epoch by strategy]({rel}/{name})", ""]
    first = min(r["seed"] for r in main) if main else None
    rates = [r for r in runs if "_rate" in r["method"]] + [r for r in main if r["method"] in ("high", "low")
                                                           and r["seed"] == first]
    if any("_rate" in r["method"] for r in rates):
        scores = {(r["meta"]["strategy"], float(r["meta"]["rate"])): (best_accuracy(r), r["best"]["score"]) for r in rates}
        grid = sorted({rate for _, rate in scores})
        none_first = next((r for r in curves.get("none", []) if r["seed"] == first), None)
        floor_acc = floor and 100 * floor["dev_counts"][floor["label"]] / floor["dev_size"]
        lines += [f"Dev accuracy and F1 (each the best over the epochs) against the dropping rate, seed {first} "
                  f"(Fig. 7 analogue, which plots accuracy). None, seed {first}: accuracy "
                  f"{fmt(none_first and best_accuracy(none_first))}, F1 {fmt(none_first and none_first['best']['score'])}"
                  + (f"; majority class: accuracy {floor_acc:.1f}, F1 {floor['score']:.1f}" if floor else "") + ".", "",
                  "| strategy (metric) | " + " | ".join(f"rate {g:g}" for g in grid) + " |", "|---|" + "---|" * len(grid)]
        lines += [f"| {s} ({metric}) | " + " | ".join(fmt((scores.get((s, g)) or (None, None))[i]) for g in grid) + " |"
                  for s in ("high", "low") for i, metric in enumerate(("accuracy", "F1"))]
        name = "prior_rates.png"
        plot_rates({k: v[0] for k, v in scores.items()}, figures / name, none_first and best_accuracy(none_first), floor_acc)
        lines += ["", f"![dev accuracy vs dropping rate]({rel}/{name})", ""]
    return lines + prior_mechanism_lines(mechanism)


def load_mechanism(results: Path) -> Optional[dict]:
    """``experiments/prior_mechanism.py``'s measurement, when it has run."""
    path = results / "prior_mechanism" / "mrpc.json"
    return json.loads(path.read_text()) if path.exists() else None


def prior_mechanism_lines(m: Optional[dict]) -> List[str]:
    """Why a strategy collapses training: what its mask does to a model that has learned MRPC."""
    if not m:
        return []
    st = m["strategies"]
    cats = [c for c in ("[CLS]", "[SEP]", "punctuation", "other") if all(c in v["drop_share"] for v in st.values())]
    lines = [f"Why (`python experiments/prior_mechanism.py`): the same masks (layer {m['layer']}, {m['labels']}-label "
             f"attribution, rate {m['rate']:g}, q = 1) applied to FT's trained MiniLM ({m['checkpoint']}) on all "
             f"{next(iter(st.values()))['pairs']} MRPC dev pairs, eval mode: the gold-label loss without and with "
             "the mask, the right predictions the mask turns wrong, and the share of (head, query) rows that "
             "drop each kind of key.", "",
             "| strategy | gold loss, no mask (nats) | with the mask | Δ per pair | right predictions turned wrong | "
             + " | ".join(f"{c} dropped" for c in cats) + " |", "|---|---|---|---|---|" + "---|" * len(cats)]
    for name, v in sorted(st.items(), key=lambda kv: ("random", "high", "low").index(kv[0])):
        lines.append(f"| {name} | {v['gold_loss_clean']:.3f} | {v['gold_loss_masked']:.3f} | "
                     f"{v['delta_mean']:+.3f} ± {v['delta_std']:.3f} | {v['flipped']} of {v['right']} "
                     f"({100 * v['flipped'] / max(1, v['right']):.0f}%) | "
                     + " | ".join(f"{100 * v['drop_share'][c]:.0f}%" for c in cats) + " |")
    if {"high", "random", "low"} <= set(st):
        hi, rd, lo = (st[k]["delta_mean"] for k in ("high", "random", "low"))
        lines += ["", f"Dropping the high-attribution keys raises the gold loss by {hi:+.3f} nats per pair, against "
                  f"{rd:+.3f} for a random region of the same size and {lo:+.3f} for the low-attribution keys: "
                  + ("the keys \"high\" removes carry the evidence for the right answer; a model trained under "
                     "that mask on every update is denied it, which fits the runs above."
                     if hi > max(rd, lo) else "the mask does not remove more evidence than the others here.")]
    return lines + [""]


COST_NAMES = {  # method -> (README's short name, RESULTS.md's long name)
    "ft": ("FT", "FT"), "ga_all": ("GA all layers", "GA, all 6 layers"), "ga_first": ("GA first layer", "GA, first layer"),
    "aa_all": ("AA all layers", "AA (attention weights), all layers"),
    "rd_all": ("RD all layers", "RD (random region: no attribution pass), all layers"),
    "iga_first": ("IGA first layer", "IGA, first layer"), "rdrop": ("R-Drop", "R-Drop (two passes + KL)"),
}


def cost_name(r: dict, long: bool) -> str:
    """The method's name; IGA's with its step count m, read from the command (the criterion's
    default when the command does not set it)."""
    name = COST_NAMES.get(r["method"], (r["method"], r["method"]))[long]
    if r["method"].startswith("iga"):
        cmd = r.get("command", [])
        m = cmd[cmd.index("--addrop-ig-steps") + 1] if "--addrop-ig-steps" in cmd else f"{IG_STEPS_DEFAULT} (the default)"
        name += f", m = {m}" if long else f" (m = {m.split()[0]})"
    return name


IG_STEPS_DEFAULT = 20  # addrop_ce's --addrop-ig-steps default (a test pins it to the criterion's)


def cost_section(runs: List[dict]) -> List[str]:
    if not runs:
        return []
    ft = next((r for r in runs if r["method"] == "ft"), None)
    lines = ["## cost: seconds per update relative to FT (Table 7 analogue)", "",
             f"MRPC, MiniLM, batch {studies.BATCH}, {studies.COST_UPDATES} updates each with AD-DROP on every "
             "update (p = 0.5, q = 0.8), one run at a time; train_wall / updates from fairseq's log; peak "
             "resident memory of the training process.", "",
             "| method | s / update | × FT | peak RSS MiB | × FT |", "|---|---|---|---|---|"]
    for r in sorted(runs, key=lambda r: r["train_wall"] / max(1, r["updates"])):
        spu = r["train_wall"] / max(1, r["updates"])
        ratio = spu / (ft["train_wall"] / max(1, ft["updates"])) if ft else None
        mem = r["peak_rss_mb"] / ft["peak_rss_mb"] if ft else None
        lines.append(f"| {cost_name(r, long=True)} | {spu:.2f} | {fmt(ratio, 2)} | {r['peak_rss_mb']:.0f} | {fmt(mem, 2)} |")
    return lines + [""]


# ---------------------------------------------------------------------------- figures


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_paired(plot: Dict[tuple, List[float]], path: Path, score: str = "best-epoch dev score") -> None:
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
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, metadata={"Software": None})
    plt.close(fig)


def plot_sensitivity(task: str, ft_mean: float, scores: Dict[tuple, float], path: Path,
                     own: Optional[Tuple[int, float]] = None) -> None:
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
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, metadata={"Software": None})
    plt.close(fig)


def plot_prior(curves: Dict[str, List[dict]], path: Path) -> None:
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
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, metadata={"Software": None})
    plt.close(fig)


def best_accuracy(r: dict) -> Optional[float]:
    vals = [e["valid_accuracy"] for e in r["epochs"] if "valid_accuracy" in e]
    return max(vals) if vals else None


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
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, metadata={"Software": None})
    plt.close(fig)


# ---------------------------------------------------------------------------- README


README_BEGIN = "<!-- experiments:begin (generated by python experiments/report.py from experiments/results; do not edit) -->"
README_END = "<!-- experiments:end -->"


def readme_block(runs: List[dict], references: Optional[Dict[str, dict]] = None,
                 mechanism: Optional[dict] = None) -> List[str]:
    """The README's "Does it work?" numbers: the glue headline table, the prior figure, the cost line."""
    lines = []
    glue_runs = [r for r in runs if r["study"] in ("glue", "regularizers", "smoke")]  # as glue_section
    groups = by(glue_runs, "task", "method")
    peers = [m for m in studies.glue_methods("rte") if m != "ft"]
    peers += [m for m in studies.REGULARIZERS if any(r["method"] == m for r in glue_runs)]
    tasks = [t for t in GLUE_ORDER if (t, "ft") in groups]
    if tasks:
        seeds = sorted({r["seed"] for r in glue_runs})
        lines += [f"MiniLM (real pretrained weights) fine-tuned on {studies.TRAIN_SIZE} training examples per "
                  f"GLUE task, {studies.EPOCHS} epochs, seeds {', '.join(map(str, seeds))}; full dev sets, "
                  "best-epoch score, FT's learning rate for every method, AD-DROP's p, q and layers from the paper's "
                  "Table 11 (tuned there for BERT, not re-tuned here). Δ = mean ± std of the per-seed "
                  "difference to FT (same seed); **bold** where a paired t-test finds it significant (5%, two-sided, "
                  "three seeds or more); majority class = the floor, its training subset's most frequent label "
                  "predicted for every dev example.", "",
                  "| task (metric) | majority class | FT | " + " | ".join(f"Δ {SHORT_NAMES[m]}" for m in peers) + " |",
                  "|---|---|---|" + "---|" * len(peers)]
        for task in tasks:
            ft_runs = groups[(task, "ft")]
            ft = {r["seed"]: r for r in ft_runs}
            cells = []
            for m in peers:
                diffs = paired_diffs(groups.get((task, m), []), ft)
                txt = mean_std(diffs) if diffs else "–"
                cells.append(f"**{txt}**" if verdict(diffs) in ("helps", "hurts") else txt)
            floor = (references or {}).get(task)
            lines.append(f"| {TASKS[task].name} ({ft_runs[0]['metric']}) | {fmt(floor and floor['score'])} | "
                         f"{mean_std([r['best']['score'] for r in ft_runs])} | " + " | ".join(cells) + " |")
        verdicts = defaultdict(list)
        for task in tasks:
            ft = {r["seed"]: r for r in groups[(task, "ft")]}
            diffs = paired_diffs(groups.get((task, "addrop"), []), ft)
            if diffs:
                verdicts[verdict(diffs)].append(TASKS[task].name)
        if verdicts:
            lines += ["", "AD-DROP against FT: " + "; ".join(f"{v} on {', '.join(ts)}" for v, ts in sorted(verdicts.items())) + "."]
        lines.append("")
        lines += regularizer_verdicts(glue_runs, "glue")
    # one line per task family first (NER, translation), then classification's closer looks
    for study, what in (("ner", "NER (CoNLL-2003, seqeval entity F1)"),
                        ("mt", "Translation (WMT16 newsdev slices, small models from scratch, test chrF)"),
                        ("epochs", f"Trained {studies.LONG_EPOCHS} epochs instead of {studies.EPOCHS} (same "
                                   "settings otherwise)"),
                        ("epochs_confirm", f"The same, {studies.LONG_EPOCHS} epochs, judged on fresh seeds")):
        srs = [r for r in runs if r["study"] == study]
        parts = []
        for task in TASK_ORDER:
            ft = {r["seed"]: r for r in srs if r["task"] == task and r["method"] == "ft"}
            diffs = paired_diffs([r for r in srs if r["task"] == task and r["method"] == "addrop"], ft)
            if diffs:
                loss = ""
                if study.startswith("epochs"):  # the regularizing effect the score does not show
                    ad = [r for r in srs if r["task"] == task and r["method"] == "addrop"]
                    loss = (f", dev loss after the last epoch FT {mean_std([dev_losses(r)[-1] for r in ft.values()], 2)} "
                            f"vs AD-DROP {mean_std([dev_losses(r)[-1] for r in ad], 2)}")
                if study == "mt":  # what the checkpoint is chosen on; lower helps
                    ld = lowest_loss_diffs([r for r in srs if r["task"] == task and r["method"] == "addrop"], list(ft.values()))
                    ratios, bad = length_ratios(srs, task)
                    loss = (f", lowest dev loss Δ {mean_std(ld, 3)}: {judged([-d for d in ld])}"
                            + (f" (outputs far from the references' length in {bad} of {len(ratios)} runs: not "
                               "translations yet)" if 2 * bad > len(ratios) else ""))
                if study == "ner":  # AttendOut and its cheap regularizers, the same paired test against FT
                    for m in studies.REGULARIZERS:
                        peer = paired_diffs([r for r in runs if r["study"] == "regularizers" and r["task"] == task
                                             and r["method"] == m], ft)
                        if peer:
                            loss += f", {SHORT_NAMES[m]} Δ {mean_std(peer)}: {judged(peer)}"
                parts.append(f"{TASKS[task].name}: FT {mean_std([r['best']['score'] for r in ft.values()])}, "
                             f"AD-DROP Δ {mean_std(diffs)} {over_seeds(len(diffs))}: "
                             f"{judged(diffs)}{loss}")
        if parts:
            lines += [f"{what}: " + "; ".join(parts) + ".", ""]
            if study == "ner":
                tagging = {r["task"] for r in srs}
                lines += regularizer_verdicts(srs + [r for r in runs if r["study"] == "regularizers"
                                                     and r["task"] in tagging], "ner")
    confirm = [r for r in runs if r["study"] == "confirm"]
    for task, cell in best_cells(confirm).items():
        ft = {r["seed"]: r for r in confirm if r["task"] == task and r["method"] == "ft"}
        diffs = paired_diffs([r for r in confirm if r["task"] == task and r["method"] == "addrop_best"], ft)
        if diffs:
            lines += [f"{TASKS[task].name} at the sensitivity map's best cell ({cell}, chosen on seed 1), judged on "
                      f"fresh seeds: FT {mean_std([r['best']['score'] for r in ft.values()])}, AD-DROP Δ "
                      f"{mean_std(diffs)}, {ahead(diffs)}: {judged(diffs)}.", ""]
    sensitivity = [r for r in runs if r["study"] == "sensitivity"]
    if sensitivity:
        planned = len(studies.sensitivity(sorted({r["task"] for r in sensitivity}), [1], {}))
        so_far = f", so far {len(sensitivity)} of {planned} runs" if len(sensitivity) < planned else ""
        paired = []
        for t, (ft_mean, scores, ft_by_seed) in sensitivity_cells(
                sensitivity, [r for r in runs if r["study"] == "glue"]).items():
            own = own_seed_ft(ft_by_seed, sorted({r["seed"] for r in sensitivity if r["task"] == t}))
            if own:
                paired.append(f"{TASKS[t].name} {sum(v > own[1] for v in scores.values())} of {len(scores)} cells "
                              f"above FT on the same seed ({own[1]:.1f}; FT's mean {ft_mean:.1f})")
        lines += [f"Sensitivity to p and q{so_far} (difference to FT's mean, scaled to [-1, 1]), with and without "
                  "cross-tuning" + (f"; one seed per cell: {'; '.join(paired)}" if paired else "") + ":", ""]
        lines += [f"![sensitivity](experiments/figures/sensitivity_{t}.png)"
                  for t in sorted({r["task"] for r in runs if r["study"] == "sensitivity"})] + [""]
        for x in pq_recommendation(sensitivity, [r for r in runs if r["study"] == "confirm"],
                                   [r for r in runs if r["study"] == "glue"]):
            lines += [f"Recommended p, q (rule: [RESULTS.md](experiments/RESULTS.md#recommended-p-and-q)): {x}", ""]
    ablation = [r for r in runs if r["study"] == "ablation"]
    if ablation:
        tasks, groups = ablation_groups(ablation, [r for r in runs if r["study"] == "glue"])
        seeds = ", ".join(map(str, sorted({r["seed"] for r in ablation})))
        lines += [f"The paper's ablation (Table 2: AD-DROP with one part replaced; {' and '.join(TASKS[t].name for t in tasks)}, "
                  f"seeds {seeds}; [RESULTS.md](experiments/RESULTS.md#ablation-the-papers-table-2)), paired Δ to "
                  f"AD-DROP: {ablation_verdicts(groups, tasks, numbers=True)}.", ""]
    if any(r["study"] == "prior" for r in runs):
        lines += ["The paper's prior experiment (MRPC, first layer, gold-label GA, dropping rate 0.3): train and "
                  "dev loss per epoch when dropping none, random, high- or low-attribution positions "
                  "(mean over seeds, band = min to max):", "",
                  "![prior experiment](experiments/figures/prior_losses.png)", ""]
        if mechanism and {"high", "random", "low"} <= set(mechanism["strategies"]):
            st = mechanism["strategies"]
            lines += [f"Why \"high\" is so harsh: on FT's trained model its mask raises the gold-label loss by "
                      f"{st['high']['delta_mean']:+.3f} nats per dev pair and turns {st['high']['flipped']} of "
                      f"{st['high']['right']} right predictions wrong; a random region of the same size "
                      f"{st['random']['delta_mean']:+.3f} nats ({st['random']['flipped']} turned), the low-attribution "
                      f"keys {st['low']['delta_mean']:+.3f} ({st['low']['flipped']} turned).", ""]
    cost = {r["method"]: r for r in runs if r["study"] == "cost"}
    if "ft" in cost and len(cost) > 1:
        spu = {m: r["train_wall"] / max(1, r["updates"]) for m, r in cost.items()}
        lines += ["Cost per update relative to FT (MRPC, one CPU thread, AD-DROP on every update): "
                  + ", ".join(f"{cost_name(cost[m], long=False)} ×{spu[m] / spu['ft']:.2f}"
                              for m in sorted(spu, key=spu.get) if m != "ft")
                  + "; under cross-tuning only the even epochs pay the extra.", ""]
    if not lines:
        lines = ["No study has finished yet.", ""]
    return lines + ["Every table, figure and verdict: [experiments/RESULTS.md](experiments/RESULTS.md)."]


def update_readme(path: Path, runs: List[dict], references: Optional[Dict[str, dict]] = None,
                  mechanism: Optional[dict] = None) -> None:
    text = path.read_text(encoding="utf-8")
    if text.count(README_BEGIN) != 1 or text.count(README_END) != 1:
        raise SystemExit(f"{path}: expected one '{README_BEGIN}' and one '{README_END}' line")
    head, rest = text.split(README_BEGIN)
    _, tail = rest.split(README_END)
    path.write_text(head + README_BEGIN + "\n" + "\n".join(readme_block(runs, references, mechanism)) + "\n" + README_END + tail, encoding="utf-8")


# ---------------------------------------------------------------------------- main


def render(runs: List[dict], figures: Path, rel: str, references: Optional[Dict[str, dict]] = None,
           mechanism: Optional[dict] = None) -> str:
    lines = ["# Results", "",
             "Generated by `python experiments/report.py` from the JSONs in `experiments/results/` "
             "(one per run, written by `python experiments/run.py STUDY`); do not edit by hand.", ""]
    lines += header(runs)
    per_study = by(runs, "study")
    lines += tune_section([r for (s,), rs in per_study.items() if s == "tune" for r in rs])
    def family(r):
        return TASKS[r["task"]].family

    lines += glue_section([r for (s,), rs in per_study.items() if s in ("glue", "regularizers", "smoke") for r in rs
                           if family(r) == "glue"], figures, rel, references)
    lines += epochs_section(per_study.get(("epochs",), []), per_study.get(("glue",), []), figures, rel,
                            per_study.get(("epochs_confirm",), []))
    lines += epochs_confirm_section(per_study.get(("epochs_confirm",), []), per_study.get(("epochs",), []), figures, rel)
    lines += ner_section([r for (s,), rs in per_study.items() if s in ("ner", "regularizers", "smoke") for r in rs
                          if family(r) == "ner"], figures, rel)
    lines += mt_section([r for (s,), rs in per_study.items() if s in ("mt", "smoke") for r in rs
                         if family(r) == "mt"], figures, rel)
    glue_runs = per_study.get(("glue",), [])
    lines += ablation_section(per_study.get(("ablation",), []), glue_runs)
    lines += sensitivity_section(per_study.get(("sensitivity",), []), glue_runs, figures, rel)
    lines += confirm_section(per_study.get(("confirm",), []), figures, rel)
    recommendation = pq_recommendation(per_study.get(("sensitivity",), []), per_study.get(("confirm",), []), glue_runs)
    if recommendation:
        lines += ["### Recommended p and q", "", "Rule, fixed before the grid was complete: the map's best cross-tuning "
                  "cell if the confirm study says it helps on fresh seeds (paired, p < 0.05), otherwise the "
                  "plugin's defaults p = q = 0.3 stay; the defaults are sensible if they lie within FT's "
                  "seed-to-seed spread of the best cell.", ""] + [f"- {x}" for x in recommendation] + [""]
    lines += prior_section([r for (s,), rs in per_study.items() if s == "prior" for r in rs], figures, rel, references,
                           mechanism)
    lines += cost_section([r for (s,), rs in per_study.items() if s == "cost" for r in rs])
    return "\n".join(lines).rstrip() + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--results", type=Path, default=HERE / "results")
    p.add_argument("--out", type=Path, default=HERE, help="where RESULTS.md and figures/ go")
    p.add_argument("--readme", default=None,
                   help="README whose 'Does it work?' block to rewrite (default: the repository's README "
                        "when --results and --out are the defaults, otherwise none; '' for none)")
    args = p.parse_args(argv)
    runs, references = load(args.results), load_references(args.results)
    text = render(runs, args.out / "figures", "figures", references, load_mechanism(args.results))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "RESULTS.md").write_text(text, encoding="utf-8")
    print(f"{args.out / 'RESULTS.md'}: {len(runs)} runs")
    readme = Path(args.readme) if args.readme else None
    if args.readme is None and args.results.resolve() == (HERE / "results") and args.out.resolve() == HERE:
        readme = HERE.parent / "README.md"
    if readme is not None:
        update_readme(readme, runs, references, load_mechanism(args.results))
        print(f"{readme}: 'Does it work?' block rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
