"""``--criterion attendout`` in fairseq: the game's step (the re-initialisation copies exactly,
G-Net learns, the baseline moves), a resume in the middle of a round continues the game
exactly, D-Net's checkpoint loads without the plugin, and the CLI trains a tiny RoBERTa and
real MiniLM on a GLUE slice."""
import re
import shutil

import pytest
import torch

import hf_builders as hb
from conftest import REPO, cli_env, run_cli
from fairseq_builders import TINY_ROBERTA, binarized_sentence_prediction, build

pytestmark = pytest.mark.slow  # starts subprocesses (fairseq/HF CLIs, fresh interpreters)

PLUGIN = str(REPO / "addrop_fairseq")
COMMON = ["--task", "sentence_prediction", "--arch", "roberta", *TINY_ROBERTA, "--num-classes", "2",
          "--optimizer", "adam", "--lr", "1e-3", "--batch-size", "8", "--required-batch-size-multiple", "1",
          "--num-workers", "0", "--seed", "1", "--cpu", "--criterion", "attendout", "--attendout-steps", "3"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return binarized_sentence_prediction(tmp_path_factory.mktemp("attendout"), run_cli, n_train=48, n_valid=16)


def train_steps(data, n, **extra):
    """(task, model, criterion, optimizer) after ``n`` updates through task.train_step."""
    from fairseq import optim

    cfg, task, model, criterion = build(data, COMMON[4:] +
                                        [x for kv in extra.items() for x in kv],
                                        task="sentence_prediction", arch="roberta")
    for split in ("train", "valid"):
        task.load_dataset(split)
    params = list(model.parameters())
    optimizer = optim.build_optimizer(cfg.optimizer, params)
    itr = task.get_batch_iterator(task.dataset("train"), max_sentences=8, seed=1).next_epoch_itr(shuffle=False)
    task.begin_epoch(1, model)
    model.train()
    for update, sample in zip(range(n), itr):
        torch.manual_seed(100 + update)
        optimizer.zero_grad()
        task.train_step(sample, model, criterion, optimizer, update)
        task.optimizer_step(optimizer, model, update)
    return task, model, criterion, optimizer


def test_update_freq_2_counts_updates_and_restarts_only_between_them(data, monkeypatch):
    """fairseq's own Trainer, --update-freq 2, T = 3: rounds fall after every 3 optimizer updates
    (not 3 micro-batches), A-Net steps once per update, and D-Net's optimizer step applies its
    gradient to the parameters that gradient was taken at (the attacker always wins here, so a
    restart inside an update would change them)."""
    from fairseq.data import iterators
    from fairseq.trainer import Trainer

    from addrop_fairseq import attendout_maths as ao

    monkeypatch.setattr(ao, "attacker_probability", lambda *a, **k: 1.0)
    cfg, task, model, criterion = build(data, COMMON[4:] + ["--update-freq", "2"],
                                        task="sentence_prediction", arch="roberta")
    for split in ("train", "valid"):
        task.load_dataset(split)
    trainer = Trainer(cfg, task, model, criterion)
    trainer.lr_step(1)  # builds fairseq's optimizer, as fairseq-train does before the first epoch
    trainer.begin_epoch(1)

    def params():
        return torch.cat([p.detach().flatten() for p in model.parameters()]).clone()

    seen, stepped, rounds = [], [], []
    model.register_forward_pre_hook(lambda m, _: seen.append((trainer.get_num_updates(), params()))
                                    if m.training else None)
    step = trainer.optimizer.step

    def spy_step(*args, **kwargs):
        stepped.append((trainer.get_num_updates(), params()))
        return step(*args, **kwargs)

    monkeypatch.setattr(trainer.optimizer, "step", spy_step)
    dropout_step = criterion.dropout_step

    def spy_round(m):
        rounds.append((trainer.get_num_updates(), [len(update) for update in criterion.round]))
        return dropout_step(m)

    monkeypatch.setattr(criterion, "dropout_step", spy_round)
    itr = task.get_batch_iterator(task.dataset("train"), max_sentences=2, seed=1).next_epoch_itr(shuffle=False)
    for samples, _ in zip(iterators.GroupedIterator(itr, 2), range(7)):
        trainer.train_step(samples)
    assert trainer.get_num_updates() == 7
    assert rounds == [(3, [2, 2, 2]), (6, [2, 2, 2])]  # at the start of updates 4 and 7, T updates each
    assert len(criterion.round) == 1 and len(criterion.round[0]) == 2
    assert [u for u, _ in stepped] == list(range(7)) and [u for u, _ in seen] == [u for u in range(7) for _ in (0, 1)]
    for update, at_step in stepped:
        for u, at_forward in seen:
            if u == update:
                assert torch.equal(at_forward, at_step), f"update {update}: D's parameters changed within the update"
    assert any(not torch.equal(stepped[u][1], stepped[u - 1][1]) for u in (3, 6))  # the restarts happened
    a_steps = {int(s["step"]) for s in criterion.a_opt.optimizer.state.values()}
    assert a_steps == {7}  # one A-Net step per update, not per micro-batch


def test_a_dropout_step_updates_g_net_and_restarts_both_nets_from_one(data):
    task, model, criterion, _ = train_steps(data, 3)
    assert len(criterion.round) == 3 and criterion.baseline.count == 0
    d = {k: v.clone() for k, v in model.state_dict().items()}
    a = {k: v.clone() for k, v in criterion.anet.state_dict().items()}
    assert any(not torch.equal(d[k], a[k]) for k in d)  # trained apart for 3 updates
    g = [p.clone() for p in criterion.gnet.parameters()]
    # the reward, independently: D's per-example loss minus A's on the examples the step draws
    torch.manual_seed(0)
    ds = task.dataset("valid")
    picks = torch.randint(len(ds), (3,)).tolist()
    batch = ds.collater([ds[i] for i in picks])
    model.eval(), criterion.anet.eval()
    with torch.no_grad():
        def losses(net):
            logits, _ = net(**batch["net_input"], features_only=True, classification_head_name="sentence_classification_head")
            return torch.nn.functional.cross_entropy(logits, batch["target"].view(-1), reduction="none")
        want = float((losses(model) - losses(criterion.anet)).mean())
    model.train(), criterion.anet.train()
    torch.manual_seed(0)
    log = criterion.dropout_step(model)
    assert log["attendout_reward"] == pytest.approx(want, abs=1e-6)
    assert criterion.round == [] and criterion.baseline.count == 1
    assert any(not torch.equal(p, q) for p, q in zip(criterion.gnet.parameters(), g))  # Eq. 5 step
    winner = a if log["attendout_attacker_won"] else d
    for name, p in model.state_dict().items():
        assert torch.equal(p, winner[name]) and torch.equal(criterion.anet.state_dict()[name], winner[name])
    # G-Net's parameters are not trained by fairseq's optimizer: no gradient reaches them there
    assert all(p.grad is None for p in criterion.gnet.parameters())


def test_a_net_starts_as_d_net_and_gets_the_masks(data, monkeypatch):
    task, model, criterion, optimizer = train_steps(data, 0, **{"--attendout-init-rate": "0.5"})
    criterion.prepare(model)
    for (name, p), q in zip(model.state_dict().items(), criterion.anet.state_dict().values()):
        assert torch.equal(p, q), name
    assert [s.layer for s in criterion.a_sites] == [0, 1] and criterion.gnet.n_layers == 2
    assert all(s.module is not t.module for s, t in zip(criterion.a_sites, criterion.sites))
    # one update: A-Net's two layers get G-Net's masks (about half the valid keys at rate 0.5),
    # D-Net none
    from addrop_fairseq import attendout_maths as ao_maths

    seen = []
    original = ao_maths.remove_scores

    def spy(scores, valid, drop):
        seen.append(float(drop.sum()) / float(valid.expand_as(drop).sum()))
        return original(scores, valid, drop)

    monkeypatch.setattr(ao_maths, "remove_scores", spy)
    task.train_step(next(iter(task.get_batch_iterator(task.dataset("train"), max_sentences=8).next_epoch_itr(
        shuffle=False))), model, criterion, optimizer, 0)
    assert len(seen) == 2 and all(0.3 < f < 0.7 for f in seen)


def test_a_missing_scoring_split_stops_before_the_first_update(data):
    _, task, model, criterion = build(data, COMMON[4:] + ["--attendout-eval", "heldout"],
                                      task="sentence_prediction", arch="roberta")
    with pytest.raises(ValueError, match="--attendout-eval heldout: cannot load that split"):
        criterion.prepare(model)


def test_half_precision_is_refused_before_the_first_update(data):
    _, task, model, criterion = build(data, COMMON[4:], task="sentence_prediction", arch="roberta")
    criterion.half()  # what fairseq's trainer does with --fp16
    with pytest.raises(ValueError, match="--criterion attendout does not support --fp16"):
        criterion.prepare(model.half())


def last_weights(path):
    state = torch.load(path, map_location="cpu", weights_only=False)
    return state["model"], state["criterion"]


def test_resume_in_the_middle_of_a_round_continues_the_game_exactly(data, tmp_path):
    args = [data, "--user-dir", PLUGIN, *COMMON, "--max-update", "11", "--no-progress-bar", "--log-format", "simple",
            "--no-epoch-checkpoints", "--save-interval-updates", "4", "--keep-interval-updates", "5"]
    run_cli("fairseq_cli.train", [*args, "--save-dir", tmp_path / "straight"])
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    # update 4 of T = 3: one cached batch of the second round
    shutil.copy(tmp_path / "straight" / "checkpoint_1_4.pt", resumed / "checkpoint_last.pt")
    proc = run_cli("fairseq_cli.train", [*args, "--save-dir", resumed])
    assert "(epoch 1 @ 4 updates)" in proc.stdout + proc.stderr  # resumed mid-round
    model_a, crit_a = last_weights(tmp_path / "straight" / "checkpoint_last.pt")
    model_b, crit_b = last_weights(resumed / "checkpoint_last.pt")
    for k in model_a:
        assert torch.equal(model_a[k], model_b[k]), k
    for k in crit_a:
        if k != "attendout_game":
            assert torch.equal(crit_a[k], crit_b[k]), k
    assert crit_a["attendout_game"]["baseline"] == crit_b["attendout_game"]["baseline"]
    mid = torch.load(resumed / "checkpoint_last.pt", map_location="cpu", weights_only=False)
    assert len(torch.load(tmp_path / "straight" / "checkpoint_1_4.pt", weights_only=False)
               ["criterion"]["attendout_game"]["round"]) == 1
    assert mid["extra_state"]["train_iterator"]["iterations_in_epoch"] == 5  # 11 updates, 6 per epoch


def test_d_net_checkpoint_loads_without_the_plugin(data, tmp_path):
    run_cli("fairseq_cli.train", [data, "--user-dir", PLUGIN, *COMMON, "--max-update", "4", "--no-progress-bar",
                                  "--save-dir", tmp_path])
    env = cli_env(TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1")  # plugin-free: no allowlist
    env.pop("PYTHONPATH")
    code = (
        "import torch\n"
        "from fairseq import checkpoint_utils\n"
        f"models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([{str(tmp_path / 'checkpoint_last.pt')!r}],\n"
        f"    arg_overrides={{'data': {str(data)!r}}})\n"
        "m = models[0].eval()\n"
        "assert 'addrop' not in type(m.encoder.sentence_encoder.layers[0].self_attn).__name__.lower()\n"
        "logits, _ = m(torch.tensor([[0, 5, 6, 2]]), features_only=True, classification_head_name='sentence_classification_head')\n"
        "print('ok', tuple(logits.shape))\n"
    )
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and "ok (1, 2)" in out.stdout, out.stderr[-3000:]


def test_minilm_on_an_rte_slice_through_the_cli(tmp_path, shared_data):
    from addrop_fairseq.hf import preprocess

    hb.write_pairs(tmp_path / "raw", "train", hb.read_glue_tsv(shared_data / "glue" / "RTE" / "train.tsv", 16))
    hb.write_pairs(tmp_path / "raw", "valid", hb.read_glue_tsv(shared_data / "glue" / "RTE" / "dev.tsv", 8))
    preprocess.main(["--model-dir", str(hb.minilm_dir()), "--task", "sentence_prediction", "--max-length", "64",
                     "--trainpref", str(tmp_path / "raw" / "train"), "--validpref", str(tmp_path / "raw" / "valid"),
                     "--destdir", str(tmp_path / "bin")])
    proc = run_cli("fairseq_cli.train", [
        tmp_path / "bin", "--user-dir", PLUGIN, "--task", "sentence_prediction", "--num-classes", "2",
        "--arch", "hf_sequence_classifier", "--hf-model-dir", hb.minilm_dir(), "--max-positions", "512",
        "--optimizer", "adam", "--lr", "5e-5", "--batch-size", "4", "--max-update", "5", "--no-save",
        "--criterion", "attendout", "--attendout-steps", "2", "--attendout-layers", "0,5",
        "--required-batch-size-multiple", "1", "--num-workers", "0", "--log-format", "simple",
        "--no-progress-bar", "--cpu"])
    log = proc.stdout + proc.stderr
    line = re.search(r"\| train \| epoch 001 \|.*", log).group(0)
    assert "attendout_rate_l0" in line and "attendout_rate_l1" in line and "attendout_rate_l2" not in line
    rates = [float(x) for x in re.findall(r"attendout_rate_l\d ([\d.]+)", line)]
    assert len(rates) == 2 and all(0.0 < r < 1.0 for r in rates)
    assert re.search(r"attendout_reward -?[\d.]+", line) and re.search(r"attendout_attacker_won [\d.]+", line)


def test_minilm_tagger_on_a_conll_slice_through_the_cli(tmp_path, shared_data):
    """sequence_tagging: the per-token scores (mean NLL over a sentence's words) drive the game."""
    from addrop_fairseq.hf import preprocess

    hb.conll_slice(shared_data / "conll2003" / "train.txt", tmp_path / "train.txt", 16)
    hb.conll_slice(shared_data / "conll2003" / "valid.txt", tmp_path / "valid.txt", 8)
    preprocess.main(["--model-dir", str(hb.minilm_dir()), "--task", "sequence_tagging",
                     "--trainpref", str(tmp_path / "train.txt"), "--validpref", str(tmp_path / "valid.txt"),
                     "--destdir", str(tmp_path / "bin")])
    proc = run_cli("fairseq_cli.train", [
        tmp_path / "bin", "--user-dir", PLUGIN, "--task", "sequence_tagging", "--arch", "hf_token_classifier",
        "--hf-model-dir", hb.minilm_dir(), "--max-positions", "512", "--optimizer", "adam", "--lr", "5e-5",
        "--batch-size", "4", "--max-update", "5", "--no-save", "--criterion", "attendout",
        "--attendout-steps", "2", "--attendout-layers", "0", "--required-batch-size-multiple", "1",
        "--num-workers", "0", "--log-format", "simple", "--no-progress-bar", "--cpu"])
    log = proc.stdout + proc.stderr
    line = re.search(r"\| train \| epoch 001 \|.*", log).group(0)
    assert re.search(r"attendout_reward -?[\d.]+", line) and "attendout_rate_l0" in line
    assert re.search(r"valid on 'valid' subset \|.* f1 [\d.]+", log)
