"""Short trainings whose per-update losses and drop counts are pinned: a refactor of the AD-DROP
engine (``addrop_fairseq/engine.py``) or of either front end must leave them unchanged.

The pins (``tests/pins/engine.json``) were written by the code before the engine was unified
(``python tests/test_engine_pinned.py --write`` rewrites them; do that only for a change that is
meant to alter training, and say so in the commit). Losses are compared to 1e-6 (relative):
bit-identical on the machine that wrote them, and robust to another CPU's summation order;
the drop counts, which depend on the masks, exactly.
"""
import json
import sys
from pathlib import Path

import pytest
import torch

PINS = Path(__file__).resolve().parent / "pins" / "engine.json"
UPDATES = 4


@pytest.fixture(autouse=True)
def _threads(one_torch_thread):
    yield


def fairseq_run(data_dir, arch_args, batch, extra=(), **where) -> dict:
    """``UPDATES`` Adam updates of ``--criterion addrop_ce --addrop-schedule always`` on fixed batches."""
    from fairseq_builders import build

    torch.manual_seed(0)
    _, task, model, crit = build(data_dir, arch_args + ["--criterion", "addrop_ce", "--addrop-schedule", "always",
                                                        "--addrop-p", "0.3", "--addrop-q", "0.3", *extra], **where)
    model.train()
    task.begin_epoch(1, model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    out = {"loss": [], "dropped": [], "valid": [], "dropped_attributed": []}
    for i in range(UPDATES):
        sample = batch(task, seed=i)
        opt.zero_grad()
        torch.manual_seed(100 + i)
        loss, _, log = crit(model, sample)
        loss.backward()
        opt.step()
        out["loss"].append(float(loss))
        for key in ("dropped", "valid", "dropped_attributed"):
            out[key].append(int(log[f"addrop_{key}"]))
    return out


def trainer_run(tmp: Path) -> dict:
    """``UPDATES`` steps of ``ADDropTrainer`` (schedule always) on a tiny BERT classifier."""
    import hf_builders as hb

    tf = hb.tf()
    from addrop_fairseq.hf.trainer import ADDropArguments, ADDropTrainer

    torch.manual_seed(0)
    model = tf.BertForSequenceClassification(tf.BertConfig(
        vocab_size=60, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=32, num_labels=2))
    g = torch.Generator().manual_seed(1)
    rows = [{"input_ids": torch.randint(1, 60, (5 + i % 4,), generator=g).tolist(), "labels": i % 2}
            for i in range(2 * UPDATES)]

    def collate(batch):
        n = max(len(r["input_ids"]) for r in batch)
        ids = torch.zeros(len(batch), n, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, r in enumerate(batch):
            ids[i, : len(r["input_ids"])] = torch.tensor(r["input_ids"])
            mask[i, : len(r["input_ids"])] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([r["labels"] for r in batch])}

    seen = {"loss": [], "dropped": [], "valid": [], "dropped_attributed": []}

    class Recording(ADDropTrainer):
        def addrop_step(self, *args, **kwargs):
            result, drop = super().addrop_step(*args, **kwargs)
            seen["loss"].append(float(result[0] if isinstance(result, tuple) else result))
            for key in ("dropped", "valid", "dropped_attributed"):
                seen[key].append(int(getattr(drop, key)))
            return result, drop

    args = tf.TrainingArguments(output_dir=str(tmp / "out"), per_device_train_batch_size=2, num_train_epochs=1,
                                logging_steps=1, report_to=[], use_cpu=True, save_strategy="no", disable_tqdm=True,
                                seed=3, learning_rate=1e-3)
    Recording(model=model, args=args, train_dataset=rows, data_collator=collate,
              addrop_args=ADDropArguments(addrop_schedule="always")).train()
    return seen


def runs(tmp: Path) -> dict:
    from fairseq_builders import (
        TINY_ROBERTA,
        TINY_TRANSFORMER,
        sentence_batch,
        sentence_prediction_dir,
        translation_batch,
        translation_dir,
    )

    return {
        "fairseq translation (ga, encoder self-attention)": fairseq_run(translation_dir(tmp / "mt"), TINY_TRANSFORMER,
                                                                       translation_batch),
        "fairseq classification (iga, 3 steps)": fairseq_run(sentence_prediction_dir(tmp / "sp"), TINY_ROBERTA,
                                                             sentence_batch, ["--num-classes", "2", "--addrop-attribution", "iga",
                                                                              "--addrop-ig-steps", "3"],
                                                             task="sentence_prediction", arch="roberta"),
        "HF Trainer (ga)": trainer_run(tmp),
    }


def test_short_trainings_are_unchanged(tmp_path):
    pinned = json.loads(PINS.read_text())
    got = runs(tmp_path)
    assert set(got) == set(pinned)
    for name, want in pinned.items():
        have = got[name]
        for key in ("dropped", "valid", "dropped_attributed"):
            assert have[key] == want[key], f"{name}: {key} per update changed: {have[key]} != {want[key]}"
        assert have["loss"] == pytest.approx(want["loss"], rel=1e-6), f"{name}: per-update loss changed"
        assert all(d > 0 for d in have["dropped"]), f"{name}: an AD-DROP update dropped nothing"


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import conftest  # noqa: F401  (registers the plugin, puts experiments/ on the path)

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        result = runs(Path(tmp))
    PINS.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
