"""A planned run as the fairseq-train command a user would type: the recipes (optimizer and
schedule flags), the task's and the method's flags, and the command with machine paths
replaced, as it is committed in the run's JSON."""
import math
from pathlib import Path
from typing import List, Optional, Tuple

import studies
from paths import REPO
from tasks import TASKS


def updates_per_epoch(run: studies.Run, sizes: dict) -> int:
    return math.ceil(sizes["train"] / studies.BATCH)


def finetune_recipe(lr: float, total_updates: int, batch: int, epochs: int) -> Tuple[str, ...]:
    """Our fine-tuning recipe (GLUE, NER), fairseq's RoBERTa GLUE one: Adam (0.9, 0.98), eps
    1e-6, weight decay 0.01, linear warm-up over 6% of the updates then linear decay, ``batch``
    examples (studies.py's docstring says where each setting comes from)."""
    return ("--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--adam-eps", "1e-06", "--weight-decay", "0.01",
            "--lr", f"{lr:g}", "--lr-scheduler", "polynomial_decay", "--total-num-update", str(total_updates),
            "--warmup-updates", str(max(1, int(0.06 * total_updates))),
            "--batch-size", str(batch), "--required-batch-size-multiple", "1", "--max-epoch", str(epochs))


def reference_recipe(lr: float, total_updates: int, batch: int, epochs: int) -> Tuple[str, ...]:
    """The authors' code's recipe: AdamW (fairseq's adam decouples weight decay) (0.9, 0.999), eps
    1e-6, weight decay 0.01, a constant learning rate, no warm-up, ``batch`` examples."""
    return ("--optimizer", "adam", "--adam-betas", "(0.9, 0.999)", "--adam-eps", "1e-06", "--weight-decay", "0.01",
            "--lr", f"{lr:g}", "--lr-scheduler", "fixed", "--warmup-updates", "0",
            "--batch-size", str(batch), "--required-batch-size-multiple", "1", "--max-epoch", str(epochs))


#: the recipe a run names (``studies.Run.recipe``) -> its fairseq flags
RECIPES = {"finetune": finetune_recipe, "reference": reference_recipe}


def save_dir(args, run: studies.Run) -> Path:
    return args.work / "checkpoints" / run.key


def command(run: studies.Run, data_bin: Path, sizes: dict, model_dir: str, device: str,
            checkpoints: Optional[Path] = None) -> List[str]:
    """fairseq-train for ``run``; a task that evaluates checkpoints after training (translation)
    saves its best (dev loss) and last ones in ``checkpoints``, the others save nothing and pick
    the best epoch by their dev metric."""
    task = TASKS[run.task]
    flags = list(run.flags)
    total = updates_per_epoch(run, sizes) * run.epochs
    if "--max-update" in flags:
        total = int(flags[flags.index("--max-update") + 1])
    recipe = getattr(task, "recipe", RECIPES[run.recipe])
    cmd = [
        "fairseq-train", str(data_bin), "--user-dir", str(REPO / "addrop_fairseq"), *task.fairseq_args(model_dir),
        *recipe(run.lr, total, studies.BATCH, run.epochs),
        "--seed", str(run.seed), "--log-format", "json", "--log-interval", "1000", "--num-workers", "0",
    ]
    if getattr(task, "saves_checkpoints", False):
        cmd += ["--save-dir", str(checkpoints), "--no-epoch-checkpoints"]
    elif getattr(task, "ood", ()):  # the best dev checkpoint only, for the OOD sets after training
        cmd += ["--save-dir", str(checkpoints), "--no-epoch-checkpoints", "--no-last-checkpoints",
                "--no-save-optimizer-state", "--best-checkpoint-metric", task.metric, "--maximize-best-checkpoint-metric"]
    else:
        cmd += ["--no-save"]
        if "--disable-validation" not in flags:
            cmd += ["--best-checkpoint-metric", task.metric, "--maximize-best-checkpoint-metric"]
    if run.patience is not None:  # fairseq's own early stopping, on the best-checkpoint metric
        cmd += ["--patience", str(run.patience)]
    if device == "cpu":
        cmd += ["--cpu"]
    return cmd + flags


def portable(cmd: List[str], model_dir: str, work: Path) -> List[str]:
    """The command with machine paths replaced by placeholders (it is committed)."""
    out = []
    for a in cmd:
        a = a.replace(str(REPO / "addrop_fairseq"), "addrop_fairseq").replace(model_dir, "$MINILM")
        out.append(a.replace(str(work), "$WORK"))
    return out
