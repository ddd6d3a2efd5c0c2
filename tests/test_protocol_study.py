"""The protocol study's phases (FT's rate, then AD-DROP's p, q at that rate, then both on fresh
seeds), its edge widening, its recipe's flags, and the ood study: waits for protocol's choice,
runs through the real CLI at smoke size and scores the best checkpoint on HANS."""
import json
import statistics
import subprocess
import sys

import pytest

import selection
import studies
from commands import command
from conftest import REPO, cli_env


def done_run(run, score):
    """A finished run's JSON as run.py writes it (the fields the planning reads)."""
    return {"study": run.study, "task": run.task, "method": run.method, "seed": run.seed, "lr": run.lr,
            "meta": dict(run.meta), "recipe": run.recipe, "best": {"epoch": 3, "score": score}}


def plan(done, tasks=("cola",), seeds=(4, 5)):
    return studies.protocol(list(tasks), list(seeds), {}, {t: selection.protocol_search(t, done) for t in tasks})


def runnable(runs):
    return [r for r in runs if not r.waits_for]


def test_protocol_phases_choose_on_search_runs_and_judge_on_fresh_seeds():
    runs = plan([])
    assert [r.method for r in runnable(runs)] == [f"ft_lr{lr:g}" for lr in studies.PROTOCOL_LRS for _ in range(3)]
    assert {r.waits_for for r in runs if r.waits_for} == {"FT's learning rate"}
    assert all(r.recipe == "reference" and r.patience == 4 and r.max_length == 47 and r.epochs == 15 for r in runs)

    # FT's grid: 5e-5 has the best mean over seeds 1-3 (1e-4 has the best single run)
    scores = {2e-5: (10, 11, 12), 5e-5: (20, 21, 22), 1e-4: (40, 5, 5)}
    done = [done_run(r, scores[r.lr][r.seed - 1]) for r in runs if r.method.startswith("ft_lr")]
    assert selection.protocol_lr("cola", done[:-1]) is None  # one run short: nothing chosen
    assert selection.protocol_lr("cola", done) == 5e-5
    runs = plan(done)
    ready = runnable(runs)
    search = [r for r in ready if r.method.startswith("addrop_p")]
    assert len(search) == 9 and {r.seed for r in search} == {1} and {r.lr for r in search} == {5e-5}
    assert [(r.method, r.seed) for r in ready if r.method == "ft"] == [("ft", 4), ("ft", 5)]
    assert {r.waits_for for r in runs if r.waits_for} == {"AD-DROP's (p, q)"}

    # AD-DROP's grid: an inner cell wins (no widening), then the fresh AD-DROP runs use it
    cell_scores = {(p, q): p + q for p in studies.PROTOCOL_P for q in studies.PROTOCOL_Q}
    cell_scores[(0.3, 0.3)] = 5.0
    done += [done_run(r, cell_scores[(float(r.meta[0][1]), float(r.meta[1][1]))]) for r in search]
    assert selection.protocol_cell("cola", done) == (0.3, 0.3)
    fresh = [r for r in runnable(plan(done)) if r.method == "addrop"]
    assert [r.seed for r in fresh] == [4, 5]
    flags = fresh[0].flags
    assert flags[flags.index("--addrop-p") + 1] == "0.3" and flags[flags.index("--addrop-q") + 1] == "0.3"
    assert flags[flags.index("--addrop-layers") + 1] == "all" and flags[flags.index("--addrop-schedule") + 1] == "cross"


def test_a_winner_at_the_grids_upper_edge_adds_the_cells_beyond_it_once():
    grid = {(p, q): 1.0 for p in studies.PROTOCOL_P for q in studies.PROTOCOL_Q}
    grid[(0.6, 0.3)] = 9.0  # p at the top edge, q inside
    assert selection.protocol_grid(grid)[9:] == [(0.9, 0.3)]
    grid[(0.6, 0.3)], grid[(0.6, 0.7)] = 1.0, 9.0  # both at the edge: three cells beyond
    added = selection.protocol_grid(grid)[9:]
    assert added == [(0.6, 0.9), (0.9, 0.7), (0.9, 0.9)]
    assert selection.protocol_cell("t", []) is None
    done = [{"task": "t", "method": f"addrop_p{p:g}_q{q:g}", "meta": {"p": str(p), "q": str(q)},
             "best": {"score": s}} for (p, q), s in grid.items()]
    assert selection.protocol_cell("t", done) is None  # the widening has not run yet
    done += [{"task": "t", "method": f"addrop_p{p:g}_q{q:g}", "meta": {"p": str(p), "q": str(q)},
              "best": {"score": 10.0 if (p, q) == (0.9, 0.9) else 2.0}} for p, q in added]
    assert selection.protocol_cell("t", done) == (0.9, 0.9)
    grid = {(p, q): 1.0 for p in studies.PROTOCOL_P for q in studies.PROTOCOL_Q}
    grid[(0.1, 0.1)] = 9.0  # the lower edge is the paper's range's own: nothing to add
    assert len(selection.protocol_grid(grid)) == 9


@pytest.mark.slow
def test_protocol_refuses_the_search_seeds_as_fresh_ones_and_uses_the_reference_recipe(tmp_path):
    with pytest.raises(ValueError, match="judge them on fresh ones"):
        studies.protocol(["cola"], [3, 4], {}, {})
    run = plan([])[0]
    cmd = command(run, tmp_path, {"train": 1000}, "$MINILM", "cpu")
    opt = {a: b for a, b in zip(cmd, cmd[1:]) if a.startswith("--")}
    assert opt["--optimizer"] == "adam" and opt["--adam-betas"] == "(0.9, 0.999)" and opt["--adam-eps"] == "1e-06"
    assert opt["--lr-scheduler"] == "fixed" and opt["--warmup-updates"] == "0" and opt["--weight-decay"] == "0.01"
    assert opt["--patience"] == "4" and opt["--best-checkpoint-metric"] == "mcc" and opt["--max-epoch"] == "15"
    assert "--maximize-best-checkpoint-metric" in cmd and "--no-save" in cmd
    out = subprocess.run([sys.executable, str(REPO / "experiments" / "run.py"), "protocol", "--dry-run",
                          "--results", str(tmp_path)], cwd=REPO, env=cli_env(), capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "study protocol: 56 runs, 0 done, 56 to run (38 of them wait for settings earlier runs choose)" in out.stdout
    assert "(waits for FT's learning rate)" in out.stdout


def test_ood_waits_for_the_protocol_choice_then_uses_it_for_both_tasks():
    assert {r.waits_for for r in studies.ood(["mnli", "qqp"], [1], {}, None)} == {"the protocol study's mrpc choice"}
    runs = studies.ood(["mnli", "qqp"], [1, 2], {}, (1e-4, (0.6, 0.1)))
    assert not any(r.waits_for for r in runs) and {r.lr for r in runs} == {1e-4}
    assert [(r.task, r.method, r.seed) for r in runs][:4] == [("mnli", "ft", 1), ("mnli", "addrop", 1),
                                                              ("mnli", "ft", 2), ("mnli", "addrop", 2)]
    assert {r.max_length for r in runs if r.task == "qqp"} == {120} and {r.train_size for r in runs} == {1000}
    addrop = next(r for r in runs if r.method == "addrop").flags
    assert addrop[addrop.index("--addrop-p") + 1] == "0.6" and addrop[addrop.index("--addrop-q") + 1] == "0.1"


@pytest.mark.slow
def test_ood_smoke_trains_on_mnli_and_scores_the_best_checkpoint_on_hans(tmp_path):
    """The whole pipeline at smoke size: fairseq-train keeps only the best dev checkpoint,
    addrop-evaluate scores it on HANS's first rows (MNLI's three labels mapped to HANS's two),
    the checkpoint is removed, the scores land in the run's JSON."""
    args = ["ood", "--smoke", "--tasks", "mnli", "--seeds", "1", "--only", "ft",
            "--results", str(tmp_path / "results"), "--work", str(tmp_path / "work")]
    proc = subprocess.run([sys.executable, str(REPO / "experiments" / "run.py"), *args], cwd=REPO, env=cli_env(),
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    r = json.loads((tmp_path / "results" / "smoke" / "mnli" / "ft" / "seed1.json").read_text())
    hans = r["ood"]["hans"]
    assert hans["n"] == 48 and hans["file"] == "hans/hans_eval_30k.tsv"
    assert set(hans["by_group"]) == {"lexical_overlap", "subsequence", "constituent"}
    assert set(hans["by_label"]) == {"entailment", "non-entailment"}
    assert sum(hans["predicted"].values()) == 48 and set(hans["predicted"]) <= {"entailment", "non-entailment"}
    assert hans["label_map"] == {"neutral": "non-entailment", "contradiction": "non-entailment"}
    assert "--save-dir" in r["command"] and "--no-last-checkpoints" in r["command"]
    assert not (tmp_path / "work" / "checkpoints" / "smoke" / "mnli" / "ft" / "seed1").exists()


def test_demo_places_the_live_pair_among_the_stored_fresh_seeds(tmp_path):
    import demo

    def r(method, seed, score):
        return {"method": method, "seed": seed, "best": {"epoch": 3, "score": score}, "data": {"train": 1000},
                "epochs": [{"epoch": e, "valid_mcc": score - 3 + e} for e in (1, 2, 3)]}

    fresh = {"ft": {s: r("ft", s, 40.0) for s in (4, 5, 6)},
             "addrop": {4: r("addrop", 4, 41.0), 5: r("addrop", 5, 39.0), 6: r("addrop", 6, 42.0)}}
    live = {"ft": r("ft", 9, 40.0), "addrop": r("addrop", 9, 41.5)}
    text = "\n".join(demo.summary("cola", live, fresh))
    assert "live, seed 9" in text and "+1.5" in text
    assert "The live pair's Δ +1.5 falls within the stored seeds' range of Δ [-1.0, +2.0]." in text
    assert "cannot tell" in text and "over 3 fresh seeds" in text and "95% CI [" in text
    live["addrop"] = r("addrop", 9, 45.0)
    assert "falls outside" in "\n".join(demo.summary("cola", live, fresh))
    demo.plot("cola", live, fresh, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 10_000
    with pytest.raises(SystemExit, match="has not chosen CoLA's settings yet"):
        demo.main(["--stored", str(tmp_path / "empty")])


def test_report_section_judges_on_fresh_seeds_and_shows_the_selection_effect(tmp_path):
    """The protocol section: FT's and AD-DROP's search tables, the chosen settings, the verdict
    on the fresh seeds only, the paper-style best-of-search comparison beside it, and the README
    leading with it (the fixed-budget table titled as what it is)."""
    from reporting import readme
    from reporting.load import Data
    from reporting.sections import protocol as section

    def full(run, score):
        r = done_run(run, score)
        r["metric"] = "mcc"
        r["last"] = {"epoch": 7, "score": score - 1}
        r["epochs"] = [{"epoch": e, "train_loss": 1.0 / e, "valid_loss": 0.5, "valid_mcc": score - 3 + e} for e in (1, 2, 3)]
        return r

    runs = plan([], seeds=studies.CONFIRM_SEEDS)
    ft_scores = {2e-5: 10.0, 5e-5: 20.0, 1e-4: 15.0}
    done = [full(r, ft_scores[r.lr] + r.seed) for r in runs if r.method.startswith("ft_lr")]
    search = [r for r in runnable(plan(done, seeds=studies.CONFIRM_SEEDS)) if r.method.startswith("addrop_p")]
    done += [full(r, 30.0 if r.method == "addrop_p0.3_q0.3" else 18.0) for r in search]  # AD-DROP's best try: 30
    fresh = runnable(plan(done, seeds=studies.CONFIRM_SEEDS))
    deltas = {4: 0.5, 5: -0.5, 6: 1.0, 7: -1.0, 8: 0.2}
    done += [full(r, 20.0 + (deltas[r.seed] if r.method == "addrop" else 0.0)) for r in fresh if r.method in ("ft", "addrop")]
    for r in done:
        r["study"] = "protocol"
    out = section.build(Data(done), "figures", {})
    text = "\n".join(out.lines)
    cola = out.tasks["cola"]
    assert cola.lr == 5e-5 and cola.cell == (0.3, 0.3) and cola.complete
    assert cola.diffs == [pytest.approx(d) for d in deltas.values()]
    assert "| 5e-05 | 21.0 (3/7) | 22.0 (3/7) | 23.0 (3/7) | 22.0 ± 1.0 | **chosen** |" in text
    assert "| 0.3 | 18.0 (3/7) | **30.0 (3/7)** | 18.0 (3/7) |" in text
    assert "paired Δ 0.0 ± 0.8 over 5 seeds (seeds 4, 5, 6, 7, 8), ahead on 3 of 5: not significant (p = 0.92; 95% CI [-0.9, +1.0], detects 1.3)" in text
    # the best single try of each search: FT 23.0 (5e-5, seed 3), AD-DROP 30.0: +7.0, of which ~0 survives
    assert "is FT 23.0, AD-DROP 30.0 (+7.0)" in text and "on fresh seeds the difference is +0.0 on average (1% of" in text
    assert [f.name for f in out.figures] == ["protocol_curves.png"]
    out.figures[0].draw(tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 10_000
    lines = readme.protocol_lines(out)
    assert lines[0].startswith("**The paper's protocol at CPU scale**")
    assert lines[2] == ("In plain words, on the fresh seeds: CoLA: AD-DROP's difference to plain fine-tuning is not "
                        "significant (paired t-test, 5%). On no task here does AD-DROP beat "
                        "plain fine-tuning given the same number of tries.")
    assert any("CoLA (mcc): AD-DROP at p = 0.3, q = 0.3 against FT" in x for x in lines)
    assert any(x.startswith("Recommended p, q (the protocol study): CoLA: no (p, q) has shown a gain") for x in lines)
    assert lines[-2].startswith("**Fixed budget: 4 epochs, the paper's BERT p, q, not searched**")


def test_ood_section_pairs_in_distribution_and_ood_accuracy_per_seed(tmp_path):
    """The ood section: per training set, in-distribution dev and OOD accuracy (overall, per gold
    label, per HANS heuristic) for FT and AD-DROP, paired per seed, the paper's Table 6 beside it,
    and the figure of both accuracies per run."""
    from reporting.load import Data
    from reporting.sections import ood as section

    def hans(acc, ent):
        return {"accuracy": acc, "n": 30000, "by_label": {"entailment": {"accuracy": ent, "n": 15000},
                                                         "non-entailment": {"accuracy": 2 * acc - ent, "n": 15000}},
                "by_group": {g: {"accuracy": acc + k, "n": 10000} for k, g in enumerate(section.HANS_GROUPS)},
                "by_group_label": {f"{g}/{lab}": {"accuracy": acc, "n": 5000} for g in section.HANS_GROUPS
                                   for lab in ("entailment", "non-entailment")}}

    runs = []
    for r in studies.ood(["mnli"], [1, 2, 3], {}, (5e-5, (0.3, 0.1))):
        bump = 1.0 if r.method == "addrop" else 0.0
        runs.append({"study": "ood", "task": r.task, "method": r.method, "seed": r.seed, "lr": r.lr,
                     "meta": dict(r.meta), "best": {"epoch": 2, "score": 60.0 + r.seed + bump},
                     "ood": {"hans": hans(50.0 + r.seed + 2 * bump * r.seed, 90.0)}})
    out = section.build(Data(runs), "figures", {})
    t = out.tasks["mnli"]
    assert t.dev.diffs == [1.0, 1.0, 1.0] and t.overall.diffs == [2.0, 4.0, 6.0]
    text = "\n".join(out.lines)
    assert "| MNLI dev accuracy (in distribution) | 62.0 ± 1.0 | 63.0 ± 1.0 | 1.0 ± 0.0 | +1.0, +1.0, +1.0 | helps (p < 0.01; 95% CI [+1.0, +1.0], detects 0.0) |" in text
    assert "| HANS accuracy | 52.0 ± 1.0 | 56.0 ± 3.0 | 4.0 ± 2.0 | +2.0, +4.0, +6.0 | not significant (p = 0.074; 95% CI [-1.0, +9.0], detects 6.5) |" in text
    assert "| HANS gold entailment |" in text and "| HANS lexical overlap / non-entailment |" in text
    assert "the paper's +0.66 accuracy (Table 6, RoBERTa-base, one run: FT 69.83 -> 70.49)" in text
    assert not t.at_chance and "at chance" not in text  # HANS 52 and 56: above a coin
    assert "Setting: learning rate 5e-05, AD-DROP p = 0.3, q = 0.1 on all layers (protocol mrpc's choice)." in text
    assert "MNLI -> HANS: MNLI dev accuracy (in distribution) FT 62.0 ± 1.0, AD-DROP Δ 1.0 ± 0.0 over 3 seeds: helps" in out.line(t)
    out.figures[0].draw(tmp_path / "ood.png")
    assert (tmp_path / "ood.png").stat().st_size > 10_000


def test_hf_trainer_section_sets_the_trainer_cell_beside_the_fairseq_runs():
    """The Trainer's runs of a glue cell against the fairseq CLI's: per method the difference of
    means and a Welch test (the seeds are not the same runs), and each front end's paired verdict."""
    from reporting.load import Data
    from reporting.sections import hf_trainer as section

    def r(study, method, seed, score):
        return {"study": study, "task": "mrpc", "method": method, "seed": seed, "metric": "f1",
                "best": {"epoch": 3, "score": score}}

    runs = [r("hf_trainer", "ft", s, 85.0 + s) for s in (1, 2, 3)] + [r("hf_trainer", "addrop", s, 82.0 + s) for s in (1, 2, 3)]
    runs += [r("glue", "ft", s, 84.5 + s) for s in (1, 2, 3)] + [r("glue", "addrop", s, 82.5 + s * 1.1) for s in (1, 2, 3)]
    runs += [r("glue", "rd", 1, 50.0)]  # another method of the cell: not compared
    out = section.build(Data(runs), "figures", {})
    a = out.agreements["mrpc"]
    gap, p = a.gap("ft")
    from scipy.stats import ttest_ind

    reference = ttest_ind([86.0, 87.0, 88.0], [85.5, 86.5, 87.5], equal_var=False).pvalue
    assert gap == pytest.approx(0.5) and p == pytest.approx(reference)
    assert a.diffs("trainer") == [-3.0, -3.0, -3.0]
    text = "\n".join(out.lines)
    assert "| MRPC (f1) | FT | 86.0, 87.0, 88.0 | 87.0 ± 1.0 | 86.5 ± 1.0 | +0.5 | not significantly different (p = 0.57) |" in text
    assert "reach the same verdict" in text
    assert "Trainer minus fairseq CLI over seeds 1, 2, 3: FT +0.5, not significantly different (Welch p = 0.57)" in out.sentence(a)


def test_report_section_shows_a_task_run_with_tasks_after_the_studys_own(tmp_path):
    """STS-B, the issue's optional third task, runs with ``--tasks stsb``: its search shows in the
    section after the study's own tasks (it was dropped when the section listed only those)."""
    from reporting.load import Data
    from reporting.sections import protocol as section

    done = []
    for task, metric in (("stsb", "pearson"), ("cola", "mcc")):
        for r in plan([], tasks=(task,)):
            if r.method == "ft_lr5e-05" and r.seed == 1:
                d = done_run(r, 80.0)
                d.update(study="protocol", metric=metric, last={"epoch": 3, "score": 79.0},
                         epochs=[{"epoch": 1, "train_loss": 1.0, "valid_loss": 0.5, f"valid_{metric}": 80.0}])
                done.append(d)
    out = section.build(Data(done), "figures", {})
    assert list(out.tasks) == ["cola", "stsb"]
    text = "\n".join(out.lines)
    assert text.index("### CoLA (mcc)") < text.index("### STS-B (pearson)")
    assert "max length CoLA 47, STS-B 100" in text


def test_ood_section_separates_a_shift_in_the_predicted_label_from_telling_pairs_apart():
    """PAWS-Wiki test is 55.8% "not paraphrase": a model that only predicts that label more often
    gains raw accuracy without telling pairs apart any better. The section gives the floor, the
    balanced accuracy (blind to the shift), the predicted share, and says so in words."""
    from reporting.load import Data
    from reporting.sections import ood as section

    def paws(acc0, acc1):
        right0, right1 = round(4464 * acc0 / 100), round(3536 * acc1 / 100)
        return {"accuracy": 100 * (right0 + right1) / 8000, "n": 8000,
                "by_label": {"0": {"accuracy": acc0, "n": 4464}, "1": {"accuracy": acc1, "n": 3536}},
                "predicted": {"0": right0 + 3536 - right1, "1": right1 + 4464 - right0}}

    runs = []
    for r in studies.ood(["qqp"], [1, 2, 3], {}, (5e-5, (0.1, 0.1))):
        scored = paws(90.0 + r.seed, 10.0) if r.method == "addrop" else paws(40.0, 60.0)
        runs.append({"study": "ood", "task": r.task, "method": r.method, "seed": r.seed, "lr": r.lr,
                     "meta": dict(r.meta), "best": {"epoch": 2, "score": 77.0}, "ood": {"paws": scored}})
    out = section.build(Data(runs), "figures", {})
    t = out.tasks["qqp"]
    text = "\n".join(out.lines)
    assert statistics.mean(t.overall.diffs) > 5  # raw accuracy "gains" from predicting "not paraphrase" more
    assert "Floor: always predicting not paraphrase (0) scores 55.8: 4,464 of 8,000 pairs; both methods are at chance" in text
    assert t.at_chance and "cannot show the paper's OOD gain, or its absence" in out.line(t)
    assert "| PAWS balanced accuracy (mean over gold labels) | 50.0 ± 0.0 | 51.0 ± 0.5 | 1.0 ± 0.5 | +0.5, +1.0, +1.5 |" in text
    assert "| PAWS predicted not paraphrase (0) (% of pairs) |" in text
    assert ("opposite signs, each larger than the overall +6.9 (+52.0 on not paraphrase (0), " in text
            and "-50.0 on paraphrase (1), " in text and "raw accuracy rewards such a shift" in text)
    assert ("In words: on PAWS, AD-DROP against FT: helps (p < 0.01" in text
            and "mean Δ +6.91 over 3 seeds; on balanced accuracy: not significant (p = 0.074; 95% CI [-0.2, +2.2], "
            "detects 1.6), mean Δ +1.00; in distribution: not significant" in text)
    assert "PAWS balanced accuracy (mean over gold labels) FT 50.0 ± 0.0, AD-DROP Δ 1.0 ± 0.5 over 3 seeds" in out.line(t)
