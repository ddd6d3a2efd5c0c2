"""WMT16 translation for the studies: the newsdev2016 pairs of ``../shared/data`` (the WMT16
training corpora are not on these machines) split into contiguous train / valid / test blocks
as ``scripts/wmt16_demo.sh`` does, normalised (NFC; Romanian comma-below) except the test references,
a joint sentencepiece model, ``fairseq-preprocess --joined-dictionary``; a small transformer
trained from scratch (the demo preset's 2+2 layers, d = 128). After training, the best (valid
loss) and last checkpoints translate the test block (beam 4) and sacrebleu scores them against
the untouched references: BLEU with its signature, chrF, length ratio."""
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

REPO = Path(__file__).resolve().parents[1]

MODEL = ("--arch", "transformer", "--share-all-embeddings", "--encoder-layers", "2", "--decoder-layers", "2",
         "--encoder-embed-dim", "128", "--decoder-embed-dim", "128", "--encoder-ffn-embed-dim", "256",
         "--decoder-ffn-embed-dim", "256", "--encoder-attention-heads", "4", "--decoder-attention-heads", "4",
         "--dropout", "0.2")
VOCAB = 2000
BEAM = 4


@dataclass(frozen=True)
class WmtTask:
    name: str
    src: str
    tgt: str
    folder: str  # under ../shared/data
    n_valid: int
    n_test: int
    # sacrebleu chrF on the test block (valid: loss). Not BLEU: these models score 0-1 BLEU (study tune,
    # seen before any AD-DROP translation run), where 4-gram matches are too rare to rank anything
    metric: str = "chrf"
    extra_metrics: Tuple[str, ...] = ("bleu", "len_ratio")
    family: str = "mt"
    lr_grid: Tuple[float, ...] = (1e-3, 2e-3, 4e-3, 8e-3)  # 8e-3 added: the dev loss was lowest at 4e-3 on both
    sec_per_update: float = 0.35  # 2+2 layers d=128, 2048 tokens, 1 thread
    saves_checkpoints: bool = True  # evaluate() translates with them
    batch: str = "2048 tokens"

    def fairseq_args(self, model_dir: str) -> Tuple[str, ...]:
        return ("--task", "translation", "--source-lang", self.src, "--target-lang", self.tgt, *MODEL)

    def recipe(self, lr: float, total_updates: int, batch: int, epochs: int) -> Tuple[str, ...]:
        """The demo preset's: Adam, inverse square-root schedule, label smoothing 0.1, 2048 tokens."""
        return ("--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--weight-decay", "0.0001",
                "--lr", f"{lr:g}", "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "150",
                "--warmup-init-lr", "1e-07", "--label-smoothing", "0.1", "--max-tokens", "2048",
                "--required-batch-size-multiple", "1", "--max-epoch", str(epochs))

    def prepare(self, data: Path, key: str, n_train: Optional[int], work: Path, n_dev: Optional[int],
                max_length: int, model_dir: str) -> Tuple[Path, dict]:
        from addrop_fairseq.mt import wmt16

        out = work / "data" / f"{key}-train{n_train or 'all'}-valid{self.n_valid}-test{self.n_test}"
        binned = out / "bin"
        raw = out / "raw"
        src_file = data / self.folder / f"newsdev2016.{self.src}"
        tgt_file = data / self.folder / f"newsdev2016.{self.tgt}"
        if not (binned / "done").exists():
            sizes = wmt16.split_parallel(src_file, tgt_file, raw, self.src, self.tgt, self.n_valid, self.n_test)
            if n_train is not None and n_train < sizes["train"]:  # the first n_train pairs of the train block
                for lang in (self.src, self.tgt):
                    lines = wmt16.read_lines(raw / f"train.{lang}")[:n_train]
                    wmt16.write_lines(raw / f"train.{lang}", lines)
                sizes["train"] = n_train
            norm, spm = out / "norm", out / "spm"
            for split in ("train", "valid", "test"):
                for lang in (self.src, self.tgt):
                    if split == "test" and lang == self.tgt:
                        continue  # references stay untouched (scored raw)
                    wmt16.normalise_file(lang, raw / f"{split}.{lang}", norm / f"{split}.{lang}")
            wmt16.spm_train(spm / "spm", VOCAB, [norm / f"train.{self.src}", norm / f"train.{self.tgt}"])
            for split in ("train", "valid", "test"):
                for lang in (self.src, self.tgt):
                    src = norm / f"{split}.{lang}" if (norm / f"{split}.{lang}").exists() else raw / f"{split}.{lang}"
                    wmt16.spm_encode(spm / "spm.model", src, spm / f"{split}.{lang}")
            pre = [sys.executable, "-m", "fairseq_cli.preprocess", "--source-lang", self.src, "--target-lang",
                   self.tgt, "--trainpref", str(spm / "train"), "--validpref", str(spm / "valid"),
                   "--testpref", str(spm / "test"), "--destdir", str(binned), "--joined-dictionary",
                   "--workers", "1"]
            proc = subprocess.run(pre, cwd=REPO, capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"{' '.join(pre)} failed:\n{proc.stderr[-3000:]}")
            (binned / "sizes").write_text(" ".join(str(sizes[k]) for k in ("train", "valid", "test")) + "\n")
            (binned / "done").write_text("ok\n")
        n_tr, n_va, n_te = (int(x) for x in (binned / "sizes").read_text().split())
        return binned, {"train": n_tr, "dev": n_va, "dev_total": n_va, "test": n_te,
                        "test_ref": str(raw / f"test.{self.tgt}")}

    def evaluate(self, save_dir: Path, data_bin: Path, sizes: dict, seed: int, env: Dict[str, str]) -> dict:
        """Translate the test block with checkpoint_best.pt and checkpoint_last.pt; sacrebleu."""
        from addrop_fairseq.mt import wmt16

        refs = wmt16.read_lines(sizes["test_ref"])
        out = {}
        for which in ("best", "last"):
            gen = [sys.executable, "-m", "fairseq_cli.generate", str(data_bin), "--path",
                   str(save_dir / f"checkpoint_{which}.pt"), "--user-dir", str(REPO / "addrop_fairseq"),
                   "--gen-subset", "test", "--source-lang", self.src, "--target-lang", self.tgt,
                   "--beam", str(BEAM), "--max-len-a", "1.2", "--max-len-b", "10", "--remove-bpe", "sentencepiece",
                   "--max-tokens", "8000", "--seed", str(seed), "--required-batch-size-multiple", "1", "--cpu"]
            proc = subprocess.run(gen, cwd=REPO, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"fairseq-generate failed:\n{proc.stderr[-3000:]}")
            path = save_dir / f"generate.{which}.txt"
            path.write_text(proc.stdout, encoding="utf-8")
            hyps = wmt16.extract_hyps(path, expect=len(refs))
            scores, signatures = wmt16.score(refs, {which: hyps})
            s = scores[which]
            out[which] = {"bleu": s["bleu"], "chrf": s["chrf"], "len_ratio": s["len_ratio"]}
            out["signatures"] = signatures
        return out


TASKS = {
    "wmt_en_ro": WmtTask("WMT16 EN-RO (newsdev slice)", "en", "ro", "wmt16_en_ro", 100, 200),
    # 1.6e-2 added: TR-EN's dev loss was lowest at 8e-3, the grid's top again
    "wmt_tr_en": WmtTask("WMT16 TR-EN (newsdev slice)", "tr", "en", "wmt16_tr_en", 100, 200,
                         lr_grid=(1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2)),
}
