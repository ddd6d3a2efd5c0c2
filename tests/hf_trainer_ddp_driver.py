"""One rank of the 2-process ADDropTrainer test (tests/test_hf_trainer.py): a tiny random BERT
classifier trained 2 epochs under cross-tuning on CPU with gloo; writes the log history and
the final parameters' checksum to ``OUT.rank<R>.json``.

Run with RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT set (as torchrun does).
"""
import json
import sys

import torch


def main(out: str) -> None:
    from addrop_fairseq.hf.trainer import ADDropArguments, ADDropTrainer

    assert "fairseq" not in sys.modules
    import transformers as tf

    torch.manual_seed(0)  # the same initial model on both ranks
    config = tf.BertConfig(vocab_size=60, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=32, max_position_embeddings=32, num_labels=2)
    model = tf.BertForSequenceClassification(config)
    g = torch.Generator().manual_seed(1)
    data = [{"input_ids": torch.randint(1, 60, (6 + i % 3,), generator=g).tolist(), "labels": i % 2}
            for i in range(16)]
    args = tf.TrainingArguments(
        output_dir=out + ".trainer", per_device_train_batch_size=2, gradient_accumulation_steps=2,
        num_train_epochs=2, logging_steps=1, report_to=[], use_cpu=True, save_strategy="no",
        ddp_backend="gloo", disable_tqdm=True, seed=3, dataloader_num_workers=0,
    )
    trainer = ADDropTrainer(model=model, args=args, train_dataset=data, data_collator=collate,
                            addrop_args=ADDropArguments(addrop_p=0.3, addrop_q=0.3))
    trainer.train()
    rank = trainer.args.process_index
    params = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
    with open(f"{out}.rank{rank}.json", "w") as f:
        json.dump({"world_size": trainer.args.world_size, "log_history": trainer.state.log_history,
                   "params_sum": float(params.double().sum()), "params_abs": float(params.double().abs().sum()),
                   "distributed_type": str(trainer.accelerator.distributed_type)}, f)


def collate(rows):
    n = max(len(r["input_ids"]) for r in rows)
    ids = torch.zeros(len(rows), n, dtype=torch.long)
    mask = torch.zeros(len(rows), n, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r["input_ids"])] = torch.tensor(r["input_ids"])
        mask[i, : len(r["input_ids"])] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([r["labels"] for r in rows])}


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(sys.argv[1])
