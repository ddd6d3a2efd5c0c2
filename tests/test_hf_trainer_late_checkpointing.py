"""Gradient checkpointing switched on after an ``ADDropTrainer`` is built (by hand, or by the
Trainer's own ``train()`` from its arguments) is refused at the first AD-DROP step, before any
update, as at construction (issue 33, item 8): checkpointed layers are recomputed in the
backward pass without the masks, and torch would stop with a ``CheckpointError``."""
import pytest
import torch

from addrop_fairseq.hf.trainer import ADDropArguments, ADDropTrainer
from test_hf_trainer import collate, params, rows, targs, tiny

pytestmark = pytest.mark.slow  # subprocesses, MiniLM or training: the full suite, not the fast lane


@pytest.fixture(autouse=True)
def _threads(one_torch_thread):
    yield


@pytest.mark.parametrize("how", ["model", "arguments"])
def test_checkpointing_switched_on_after_init_is_refused_before_any_update(tmp_path, how):
    model = tiny()
    trainer = ADDropTrainer(model=model, args=targs(tmp_path), train_dataset=rows(), data_collator=collate,
                            addrop_args=ADDropArguments(addrop_schedule="always"))
    if how == "model":
        model.gradient_checkpointing_enable()
    else:  # train() enables it on the model from the arguments
        for name in ("activation_checkpointing", "gradient_checkpointing"):
            if name in vars(trainer.args):
                object.__setattr__(trainer.args, name, True)
                break
        else:
            raise AssertionError("TrainingArguments has no checkpointing switch")
    before = params(model)
    with pytest.raises(ValueError, match="AD-DROP cannot be combined with gradient checkpointing"):
        trainer.train()
    for name, value in params(model).items():
        assert torch.equal(value, before[name]), name


def test_plain_updates_with_checkpointing_stay_allowed(tmp_path):
    """``schedule never``: no AD-DROP step, nothing to refuse (the check sits in the AD-DROP step)."""
    model = tiny()
    trainer = ADDropTrainer(model=model, args=targs(tmp_path), train_dataset=rows(), data_collator=collate,
                            addrop_args=ADDropArguments(addrop_schedule="never"))
    model.gradient_checkpointing_enable()
    trainer.train()
    assert trainer.state.global_step == 4
