#!/usr/bin/env python
"""AD-DROP's per-update cost on the HuggingFace path (ADDropTrainer), eager vs fused pass 2.

A random-init ``BertForSequenceClassification`` of a named shape (``bert-base``: 12 layers,
hidden 768, 12 heads, batch 32 x 128 tokens; ``small``; ``tiny`` for tests), one synthetic
batch (lengths 75-100 % of the maximum, right-padded), and one ``Trainer.training_step``
(forward, for AD-DROP pass 1 + GA attribution + masks + pass 2, backward; no optimizer step)
timed for:

* ``plain``: ``ADDropTrainer`` with ``addrop_schedule="never"`` (the stock Trainer's step);
* ``addrop_fused``: ``addrop_schedule="always"``, GA, all layers, p = q = 0.3, pass 2 through
  ``scaled_dot_product_attention`` (the default);
* ``addrop_eager``: the same with pass 2 forced eager (``sites.pass2_attention("eager")``).

``--dtype bf16`` / ``fp16`` is the Trainer's own mixed precision (``TrainingArguments``).
Timing is round-robin (``harness.py``); memory is measured per variant after the timing:
CUDA ``max_memory_allocated`` over ``--memory-steps`` steps (``step`` = that minus what was
allocated before), CPU the peak resident set size of those steps (``VmHWM`` after resetting
it). Imports transformers, never fairseq (the GPU check runs where fairseq is absent).

    python benchmarks/hf_bench.py --shape small --steps 5
    python benchmarks/hf_bench.py --shape bert-base --device cuda --dtype bf16 --steps 20
"""
import argparse
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for p in (str(REPO), str(Path(__file__).resolve().parent)):
    if p not in sys.path:
        sys.path.insert(0, p)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

import harness  # noqa: E402  (benchmarks/harness.py)

SHAPES = {
    "bert-base": dict(layers=12, hidden=768, heads=12, length=128, batch=32),
    "small": dict(layers=4, hidden=256, heads=4, length=64, batch=16),
    "tiny": dict(layers=2, hidden=32, heads=4, length=12, batch=4),
}
VARIANTS = ("plain", "addrop_fused", "addrop_eager")
DTYPES = ("fp32", "bf16", "fp16")


def training_args(out: str, device: str, dtype: str, batch: int, **kw):
    from transformers import TrainingArguments

    if dtype == "fp16" and not device.startswith("cuda"):
        raise SystemExit("--dtype fp16: the Trainer's fp16 needs a CUDA device")
    return TrainingArguments(output_dir=out, per_device_train_batch_size=batch, report_to=[], save_strategy="no",
                             disable_tqdm=True, use_cpu=not device.startswith("cuda"), bf16=dtype == "bf16",
                             fp16=dtype == "fp16", **kw)


def random_bert(shape: dict, vocab: int, seed: int):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=vocab, hidden_size=shape["hidden"], num_hidden_layers=shape["layers"],
                        num_attention_heads=shape["heads"], intermediate_size=4 * shape["hidden"],
                        max_position_embeddings=max(512, shape["length"]), num_labels=2)
    return BertForSequenceClassification(config)


def random_batch(shape: dict, vocab: int, seed: int, device) -> dict:
    g = torch.Generator().manual_seed(seed)
    bsz, length = shape["batch"], shape["length"]
    lo = max(2, (3 * length + 3) // 4)
    ids = torch.randint(5, vocab, (bsz, length), generator=g)
    mask = torch.zeros(bsz, length, dtype=torch.long)
    for b in range(bsz):
        mask[b, : int(torch.randint(lo, length + 1, (1,), generator=g))] = 1
    ids = ids * mask
    labels = torch.randint(0, 2, (bsz,), generator=g)
    return {k: v.to(device) for k, v in {"input_ids": ids, "attention_mask": mask, "labels": labels}.items()}


class Bench:
    """One model, one batch, one Trainer per schedule; ``step(variant)`` is one training step."""

    def __init__(self, shape_name: str, device: str, dtype: str, seed: int = 1, vocab: int = 30522,
                 p: float = 0.3, q: float = 0.3):
        from addrop_fairseq.hf.trainer import ADDropArguments, ADDropTrainer

        self.shape = dict(SHAPES[shape_name], name=shape_name)
        self._tmp = tempfile.TemporaryDirectory(prefix="addrop_hf_bench_")
        self.model = random_bert(self.shape, vocab, seed)
        args = training_args(self._tmp.name, device, dtype, self.shape["batch"])
        self.trainers = {
            "plain": ADDropTrainer(model=self.model, args=args, addrop_args=ADDropArguments(addrop_schedule="never")),
            "addrop": ADDropTrainer(model=self.model, args=args, addrop_args=ADDropArguments(
                addrop_p=p, addrop_q=q, addrop_schedule="always", addrop_attribution="ga", addrop_layers="all")),
        }
        for t in self.trainers.values():
            t.current_gradient_accumulation_steps = 1  # what train()'s loop sets
        self.device = self.trainers["plain"].args.device
        self.model.to(self.device).train()
        self.inputs = random_batch(self.shape, vocab, seed, self.device)
        self.n_params = sum(p.numel() for p in self.model.parameters())
        self.losses = {}

    def sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def step(self, variant: str) -> None:
        from addrop_fairseq import sites

        self.model.zero_grad(set_to_none=True)
        trainer = self.trainers["plain" if variant == "plain" else "addrop"]
        with sites.pass2_attention("eager" if variant == "addrop_eager" else "auto"):
            loss = trainer.training_step(self.model, dict(self.inputs))
        self.losses[variant] = loss.detach()

    clock = staticmethod(time.perf_counter)

    def timed_step(self, variant: str) -> float:
        self.sync()
        t0 = self.clock()
        self.step(variant)
        self.sync()
        return self.clock() - t0

    def memory(self, variant: str, steps: int) -> dict:
        """Peak memory of ``steps`` steps of ``variant`` (bytes): ``peak`` and ``step``."""
        self.step(variant)
        self.model.zero_grad(set_to_none=True)
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            for _ in range(steps):
                self.step(variant)
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
            return {"kind": "CUDA max_memory_allocated", "peak": peak, "step": peak - before}
        harness.malloc_trim()
        before = harness.proc_status_bytes("VmRSS")
        if not harness.reset_peak_rss():
            return {"kind": "not measured (no /proc/self/clear_refs)"}
        for _ in range(steps):
            self.step(variant)
        peak = harness.proc_status_bytes("VmHWM")
        return {"kind": "CPU peak RSS of the steps (VmHWM after resetting it)", "peak": peak, "step": peak - before}


def run(shape: str = "small", device: str = "cpu", dtype: str = "fp32", steps: int = 5, warmup: int = 2,
        memory_steps: int = 2, variants=VARIANTS, seed: int = 1, progress: bool = False, clock: str = "wall") -> dict:
    """Time and measure the variants; print the table; return the figures (for JSON).
    ``clock="cpu"``: this process's CPU time (robust to other jobs' load; CPU, one thread)."""
    bench = Bench(shape, device, dtype, seed)
    if clock == "cpu":
        bench.clock = time.process_time
    s = bench.shape
    print(f"random-init BERT ({shape}): {s['layers']} layers, hidden {s['hidden']}, {s['heads']} heads, "
          f"{bench.n_params / 1e6:.1f}M params; batch {s['batch']} x {s['length']}; {bench.device}, {dtype}, "
          f"{torch.get_num_threads()} threads; torch {torch.__version__}; step = Trainer.training_step "
          f"(no optimizer step); {warmup} warm-up + {steps} timed round-robin repetitions, {clock} time; "
          f"load average at start {harness.load_average()}", flush=True)
    times = harness.run_round_robin(bench.timed_step, variants, warmup, steps, progress)
    load_end = harness.load_average()
    mem = {v: bench.memory(v, memory_steps) for v in variants} if memory_steps else {}
    plain_mem = mem.get("plain", {}).get("step")
    cols = [
        ("peak MiB", {v: f"{m['peak'] / 2**20:.0f}" for v, m in mem.items() if "peak" in m}),
        ("step MiB", {v: f"{m['step'] / 2**20:.0f}" for v, m in mem.items() if "step" in m}),
        ("mem ratio", {v: f"{m['step'] / plain_mem:.2f}" for v, m in mem.items() if plain_mem and "step" in m}),
    ]
    kind = next(iter(mem.values()), {}).get("kind", "not measured")
    harness.print_ratio_table(times, variants, "plain", cols, load_at_end=load_end, note=f"memory: {kind}")
    out = {"shape": s, "device": str(bench.device), "dtype": dtype, "torch": torch.__version__,
           "median_ms": {v: 1e3 * harness.quartiles(times[v])[1] for v in variants},
           "ratio": {v: harness.median_ratio(times, v) for v in variants},
           "memory": mem, "finite_losses": all(bool(torch.isfinite(x)) for x in bench.losses.values())}
    for v in variants:
        if v != "plain":
            print(f"{v}_vs_plain = {out['ratio'][v]:.2f}")
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shape", choices=sorted(SHAPES), default="small")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", choices=DTYPES, default="fp32")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--memory-steps", type=int, default=2, help="0: no memory measurement")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", default=None, help="also write the figures here")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="cpu: this process's CPU time (robust to other jobs' load; CPU with --threads 1)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device available")
    variants = [v for v in args.variants.split(",") if v]
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        raise SystemExit(f"--variants: unknown {bad}; choose from {VARIANTS}")
    if "plain" not in variants:
        variants.insert(0, "plain")
    out = run(args.shape, args.device, args.dtype, args.steps, args.warmup, args.memory_steps, variants, args.seed,
              args.progress, args.clock)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
