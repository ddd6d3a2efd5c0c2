"""The cheap attention regularizers (AttendOut Sections 3.2 and 7), ``--criterion
attention_regularizer``: scores dropout (Eq. 3 with Eq. 4 for emptied rows), attention
LayerDrop (exactly uniform rows over the valid keys, padding respected, in fairseq and HF
models), the scheduled rates, the metrics, and the CLI."""
import math
import re

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hf_builders as hb
from addrop_fairseq import attendout_maths
from addrop_fairseq import sites as core
from conftest import REPO, run_cli
from fairseq_builders import (
    DropoutTaps,
    binarized_sentence_prediction,
    TINY_ROBERTA,
    TINY_TRANSFORMER,
    build,
    sentence_batch,
    translation_batch,
    translation_dir,
)

NO_DROPOUT = ["--dropout", "0", "--attention-dropout", "0"]


def softmax_of(scores, valid):
    """The attention an HF model computes after the edit: its additive mask leaves invalid keys
    at the dtype's minimum, the value removed keys get (the harder case: fairseq's -inf after
    the edit would hide a row that is not uniform over its valid keys)."""
    return torch.softmax(torch.where(valid, scores, torch.finfo(scores.dtype).min), dim=-1)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 9), st.integers(1, 12), st.floats(0.0, 1.0), st.integers(0, 10_000))
def test_scores_dropout_removes_valid_keys_and_empties_rows_to_uniform(rows, n, p, seed):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(2, 3, rows, n, generator=g)
    valid = torch.rand(2, 1, rows, n, generator=g) < 0.8
    out, drop = attendout_maths.scores_dropout(scores, valid, p, torch.Generator().manual_seed(seed))
    valid = valid.expand_as(scores)
    assert not (drop & ~valid).any()  # only valid keys are removed
    assert torch.equal(out[valid & ~drop], scores[valid & ~drop])  # the others keep their score
    probs = softmax_of(out, valid)
    emptied = (drop == valid).all(-1) & valid.any(-1)
    for b, h, t in emptied.nonzero().tolist():  # Eq. 4: 1/n over the row's valid keys
        k = int(valid[b, h, t].sum())
        torch.testing.assert_close(probs[b, h, t][valid[b, h, t]], torch.full((k,), 1.0 / k))
    partial = valid.any(-1) & ~emptied
    assert float(probs[partial.unsqueeze(-1).expand_as(drop) & drop].abs().sum()) == 0.0
    assert not torch.isnan(probs[valid.any(-1)]).any()


def test_scores_dropout_rate_is_p():
    scores, valid = torch.zeros(4, 4, 64, 64), torch.ones(4, 1, 64, 64, dtype=torch.bool)
    for p in (0.1, 0.3, 0.7):
        _, drop = attendout_maths.scores_dropout(scores, valid, p, torch.Generator().manual_seed(0))
        assert abs(float(drop.float().mean()) - p) < 0.01


def test_scheduled_rate_is_linear_then_clipped():
    assert attendout_maths.scheduled_rate(0.6, -0.1, 0) == 0.6
    assert math.isclose(attendout_maths.scheduled_rate(0.6, -0.1, 2500), 0.35)
    assert attendout_maths.scheduled_rate(0.6, -0.1, 10_000) == 0.0  # clipped at 0
    assert attendout_maths.scheduled_rate(0.6, 0.5, 1000) == 1.0  # clipped at 1


# ---------------------------------------------------------------------------- fairseq models


def roberta(spdir, *extra):
    return build(spdir, ["--criterion", "attention_regularizer", *TINY_ROBERTA, "--num-classes", "2",
                         *NO_DROPOUT, *extra], task="sentence_prediction", arch="roberta")


def test_attention_layerdrop_makes_every_selected_row_uniform_over_valid_keys(spdir):
    _, task, model, criterion = roberta(spdir, "--attn-reg", "layerdrop", "--attn-reg-p", "1.0",
                                        "--attn-reg-layers", "1")
    sample = sentence_batch(task)  # right-padded rows of different lengths
    model.train()
    selected = criterion.prepare(model)
    layers = model.encoder.sentence_encoder.layers
    with DropoutTaps([layers[0].self_attn, layers[1].self_attn], before=True) as taps:
        criterion(model, sample)
    real = sample["net_input"]["src_tokens"].ne(task.source_dictionary.pad())
    probs = taps.maps[1]  # [B, H, T, S], the selected layer
    for b in range(probs.size(0)):  # real query rows (padded ones have no valid key: left alone)
        n = int(real[b].sum())
        rows = probs[b][:, real[b]]
        torch.testing.assert_close(rows[:, :, real[b]], torch.full_like(rows[:, :, real[b]], 1.0 / n))
        assert float(rows[:, :, ~real[b]].abs().sum()) == 0.0  # padding respected
    assert not torch.allclose(taps.maps[0][0][:, :, real[0]], torch.full_like(taps.maps[0][0][:, :, real[0]],
                                                                               1.0 / int(real[0].sum())))
    assert [s.layer for s in selected] == [1]


def test_p_zero_is_the_stock_loss_and_metrics_count_removed_keys(spdir):
    _, task, model, criterion = roberta(spdir, "--attn-reg", "scores-dropout", "--attn-reg-p", "0")
    sample = sentence_batch(task)
    model.train()
    with torch.no_grad():
        loss, _, log = criterion(model, sample)
        stock, _, _ = criterion.task_kind.loss(model, sample)
    assert torch.equal(loss, stock) and int(log["attn_reg_dropped"]) == 0 and int(log["attn_reg_valid"]) > 0
    _, task, model, criterion = roberta(spdir, "--attn-reg", "scores-dropout", "--attn-reg-p", "0.4")
    model.train()
    torch.manual_seed(0)
    _, _, log = criterion(model, sentence_batch(task))
    real = sentence_batch(task)["net_input"]["src_tokens"].ne(task.source_dictionary.pad())
    # valid = real keys of real query rows, 2 heads, 2 layers
    assert int(log["attn_reg_valid"]) == sum(int(r.sum()) ** 2 for r in real) * 2 * 2
    assert 0.3 < int(log["attn_reg_dropped"]) / int(log["attn_reg_valid"]) < 0.5
    with torch.no_grad():
        model.eval()  # validation: the stock loss, nothing removed
        loss, _, log = criterion(model, sentence_batch(task))
        assert torch.equal(loss, criterion.task_kind.loss(model, sentence_batch(task))[0])
        assert "attn_reg_dropped" not in log


def test_scheduled_rates_per_layer_at_chosen_updates(spdir):
    _, task, model, criterion = roberta(spdir, "--attn-reg", "scheduled", "--attn-reg-p", "0.6",
                                        "--attn-reg-slopes=-0.1,-0.3")  # '=' for a leading minus
    criterion.prepare(model)
    for update, want in ((0, [0.6, 0.6]), (1000, [0.5, 0.3]), (1500, [0.45, 0.15]), (3000, [0.3, 0.0])):
        criterion.set_update_num(update)
        assert [round(r, 6) for r in criterion.rates(2)] == want
    # the rate of each layer is the one applied: at update 3000 layer 1 removes nothing
    criterion.set_update_num(3000)
    seen = {}
    original = attendout_maths.scores_dropout

    def spy(scores, valid, p, generator=None):
        out, drop = original(scores, valid, p, generator)
        seen[len(seen)] = (p, float(drop.float().sum()))
        return out, drop

    attendout_maths.scores_dropout = spy
    try:
        model.train()
        criterion(model, sentence_batch(task))
    finally:
        attendout_maths.scores_dropout = original
    assert seen[0][0] == pytest.approx(0.3) and seen[0][1] > 0 and seen[1] == (0.0, 0.0)
    _, _, _, bad = roberta(spdir, "--attn-reg", "scheduled", "--attn-reg-slopes", "1,2,3")
    with pytest.raises(ValueError, match="--attn-reg-slopes: 3 values for 2 attention layers"):
        bad.prepare(model)


def test_translation_encoder_and_decoder_sites(tmp_path):
    tdir = translation_dir(tmp_path)
    _, task, model, criterion = build(tdir, ["--criterion", "attention_regularizer", *TINY_TRANSFORMER,
                                             *NO_DROPOUT, "--attn-reg", "layerdrop", "--attn-reg-p", "1",
                                             "--attn-reg-attention", "decoder-self"])
    model.train()
    sample = translation_batch(task)
    layers = model.decoder.layers
    with DropoutTaps([layers[0].self_attn], before=True) as taps:
        criterion(model, sample)
    probs = taps.maps[0]  # causal: row t attends uniformly to keys 0..t
    prev = sample["net_input"]["prev_output_tokens"]
    for b in range(probs.size(0)):
        for t in range(probs.size(2)):
            if prev[b, t] == task.target_dictionary.pad():
                continue
            keys = [s for s in range(t + 1) if prev[b, s] != task.target_dictionary.pad()]
            torch.testing.assert_close(probs[b, :, t, keys], torch.full((probs.size(1), len(keys)), 1.0 / len(keys)))


# ---------------------------------------------------------------------------- HF models


def test_hf_layerdrop_is_uniform_over_valid_keys_with_padding(tmp_path, shared_data):
    tf = hb.tf()
    en = hb.read_lines(shared_data / "wmt16_en_ro" / "newsdev2016.en", 100)
    model_dir = hb.make_bert(tmp_path / "bert", en)
    tok = tf.AutoTokenizer.from_pretrained(model_dir)
    model = tf.BertModel.from_pretrained(model_dir, attn_implementation="eager").eval()
    from addrop_fairseq.hf import seam as ha

    sites = ha.discover(model, lambda: model(input_ids=torch.full((1, 3), tok.unk_token_id)))
    kw = dict(tok(["the judge accepted the charges on tuesday", "a federal judge"], padding=True,
                  return_tensors="pt"))

    def edit(i, scores, valid):
        return attendout_maths.uniform_rows(scores, valid, torch.ones_like(valid[..., :1])) if i == 0 else scores

    with torch.no_grad(), core.editing(sites, edit):
        out = model(**kw, output_attentions=True)
    probs = out.attentions[0]
    am = kw["attention_mask"].bool()
    for b in range(2):
        n = int(am[b].sum())
        torch.testing.assert_close(probs[b][:, am[b]][:, :, am[b]], torch.full((probs.size(1), n, n), 1.0 / n))
        assert float(probs[b][:, :, ~am[b]].abs().sum()) == 0.0


# ---------------------------------------------------------------------------- CLI


@pytest.mark.slow
def test_cli_trains_with_each_regularizer_and_refuses_bad_slopes(tmp_path):
    binarized_sentence_prediction(tmp_path, run_cli)
    common = [tmp_path / "bin", "--user-dir", REPO / "addrop_fairseq", "--task", "sentence_prediction",
              "--arch", "roberta", *TINY_ROBERTA, "--num-classes", "2", "--optimizer", "adam", "--lr", "1e-3",
              "--batch-size", "8", "--max-epoch", "1", "--no-save", "--no-progress-bar", "--log-format", "simple",
              "--required-batch-size-multiple", "1", "--num-workers", "0", "--criterion", "attention_regularizer"]
    for mode in ("scores-dropout", "layerdrop", "scheduled"):
        proc = run_cli("fairseq_cli.train", [*common, "--attn-reg", mode, "--attn-reg-p", "0.5",
                                             "--attn-reg-slopes=-0.1,0.1"])
        log = proc.stdout + proc.stderr
        frac = float(re.search(r"\| train \|.* attn_reg_drop_frac ([\d.]+)", log).group(1))
        assert 0.0 < frac < 1.0, (mode, frac)
    proc = run_cli("fairseq_cli.train", [*common, "--attn-reg", "scheduled", "--attn-reg-slopes", "1,2,3"], check=False)
    assert proc.returncode != 0
    assert "--attn-reg-slopes: 3 values for 2 attention layers" in proc.stdout + proc.stderr
