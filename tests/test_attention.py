"""The MultiheadAttention override: idle = stock fairseq, recording and masking = the maths."""
import copy

import pytest
import torch
from fairseq.modules.multihead_attention import MultiheadAttention

from addrop_fairseq import fairseq_seam
from addrop_fairseq import sites as core
from addrop_fairseq.options import parse_kinds, parse_layers
from fairseq_builders import TINY_TRANSFORMER, build, translation_batch, translation_dir

NO_DROPOUT = ["--dropout", "0", "--attention-dropout", "0"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = translation_dir(tmp_path_factory.mktemp("dict"))
    cfg, task, model, crit = build(d, TINY_TRANSFORMER + ["--criterion", "addrop_ce", "--attention-dropout", "0.1"])
    return task, model


def all_sites(model):
    sites = fairseq_seam.select_sites(model, list(core.ATTENTION_KINDS), None)
    core.install(sites)
    return sites


def run(model, sample, seed):
    torch.manual_seed(seed)
    out, extra = model(**sample["net_input"])
    return out


def test_idle_override_is_bit_identical(tiny):
    task, stock = tiny
    patched = copy.deepcopy(stock)
    sites = all_sites(patched)
    # idle modules are the stock class, with no hook on their dropout: nothing of ours runs
    assert len(sites) == 6 and all(type(s.module) is MultiheadAttention for s in sites)
    assert all(not s.module.dropout_module._forward_hooks and not s.module.dropout_module._forward_pre_hooks for s in sites)
    with core.masking(sites, lambda i, valid: torch.zeros_like(valid)):
        assert all(type(s.module) is not MultiheadAttention for s in sites)
    assert all(type(s.module) is MultiheadAttention for s in sites)
    assert all(not s.module.dropout_module._forward_hooks and not s.module.dropout_module._forward_pre_hooks for s in sites)
    assert list(patched.state_dict().keys()) == list(stock.state_dict().keys())
    sample = translation_batch(task)
    for mode in ("train", "eval"):
        getattr(stock, mode)()
        getattr(patched, mode)()
        a, b = run(stock, sample, 3), run(patched, sample, 3)
        assert torch.equal(a, b), mode
    # backward too
    stock.train(), patched.train()
    run(stock, sample, 4).sum().backward()
    run(patched, sample, 4).sum().backward()
    for (n, p1), (_, p2) in zip(stock.named_parameters(), patched.named_parameters()):
        assert torch.equal(p1.grad, p2.grad), n
    stock.zero_grad(), patched.zero_grad()


def test_idle_override_incremental_decoding_is_bit_identical(tiny):
    task, stock = tiny
    patched = copy.deepcopy(stock)
    all_sites(patched)
    stock.eval(), patched.eval()
    sample = translation_batch(task)
    prev = sample["net_input"]["prev_output_tokens"]
    outs = []
    for model in (stock, patched):
        enc = model.encoder(sample["net_input"]["src_tokens"], sample["net_input"]["src_lengths"])
        state = {}
        steps = []
        with torch.no_grad():
            for t in range(prev.size(1)):
                logits, extra = model.decoder(prev[:, : t + 1], encoder_out=enc, incremental_state=state)
                steps.append((logits, extra["attn"][0]))
        outs.append(steps)
    for (l1, a1), (l2, a2) in zip(*outs):
        assert torch.equal(l1, l2) and torch.equal(a1, a2)


def reference_attention(mha, x, pad, drop=None):
    """softmax(q k^T / sqrt(d) with dropped keys and padding removed) per head, by hand."""
    T, B, C = x.shape
    H, d = mha.num_heads, mha.head_dim
    q = (mha.q_proj(x) * mha.scaling).view(T, B, H, d).permute(1, 2, 0, 3)
    k = mha.k_proj(x).view(T, B, H, d).permute(1, 2, 0, 3)
    v = mha.v_proj(x).view(T, B, H, d).permute(1, 2, 0, 3)
    scores = q @ k.transpose(-1, -2)  # B H T S
    if drop is not None:
        scores = scores.masked_fill(drop, torch.finfo(scores.dtype).min)
    scores = scores.masked_fill(pad[:, None, None, :], float("-inf"))
    probs = scores.softmax(-1)
    out = (probs @ v).permute(2, 0, 1, 3).reshape(T, B, C)
    return mha.out_proj(out), probs


@pytest.fixture
def lone_attention():
    torch.manual_seed(0)
    mha = MultiheadAttention(8, 2, dropout=0.0, self_attention=True)
    site = core.AttentionSite("encoder.layers.0.self_attn", "encoder-self", 0, mha, fairseq_seam.SEAM)
    core.install([site])
    x = torch.randn(5, 3, 8)
    pad = torch.tensor([[False] * 5, [False] * 3 + [True] * 2, [False] * 4 + [True]])
    return mha, site, x, pad


def test_recording_gives_per_head_probabilities_in_the_graph(lone_attention):
    mha, site, x, pad = lone_attention
    with core.recording([site]) as rec:
        out, _ = mha(x, x, x, key_padding_mask=pad, need_weights=False)
    (maps,) = rec.result()
    ref_out, ref_probs = reference_attention(mha, x, pad)
    assert maps.shape == (3, 2, 5, 5)
    torch.testing.assert_close(maps, ref_probs)
    torch.testing.assert_close(out, ref_out)
    (g,) = torch.autograd.grad(out.sum(), [maps])
    assert g.shape == maps.shape and g.abs().sum() > 0


def test_recording_substitutes_replacements(lone_attention):
    mha, site, x, pad = lone_attention
    uniform = torch.full((3, 2, 5, 5), 0.2)
    with core.recording([site], replacements=[uniform]):
        out, _ = mha(x, x, x, key_padding_mask=pad, need_weights=False)
    v = mha.v_proj(x).view(5, 3, 2, 4).permute(1, 2, 0, 3)
    expected = mha.out_proj((uniform @ v).permute(2, 0, 1, 3).reshape(5, 3, 8))
    torch.testing.assert_close(out, expected)


def test_masking_drops_exactly_the_chosen_keys(lone_attention):
    mha, site, x, pad = lone_attention
    gen = torch.Generator().manual_seed(1)
    seen_valid = []

    def make_drop(i, valid):
        seen_valid.append(valid.clone())
        return valid & (torch.rand(valid.shape, generator=gen) < 0.4)

    with core.masking([site], make_drop):
        out, _ = mha(x, x, x, key_padding_mask=pad, need_weights=False)
    (valid,) = seen_valid
    # padded keys and padded query rows are not valid
    assert not valid[1, :, :, 3:].any() and not valid[1, :, 3:, :].any() and valid[0].all()
    gen.manual_seed(1)
    drop = valid & (torch.rand(valid.shape, generator=gen) < 0.4)
    ref_out, ref_probs = reference_attention(mha, x, pad, drop)
    real_rows = ~pad  # outputs at padded query positions are never used
    torch.testing.assert_close(out.transpose(0, 1)[real_rows], ref_out.transpose(0, 1)[real_rows])
    # and the module is idle again afterwards (fast path, no hook)
    assert core.state(mha).hook is None
    torch.testing.assert_close(mha(x, x, x, key_padding_mask=pad, need_weights=False)[0], reference_attention(mha, x, pad)[0])


def test_valid_keys_respects_causal_mask(tiny):
    task, model = tiny
    model = copy.deepcopy(model).train()
    sites = fairseq_seam.select_sites(model, ["decoder-self"], [0])
    core.install(sites)
    seen = []
    with core.masking(sites, lambda i, valid: seen.append(valid) or torch.zeros_like(valid)):
        model(**translation_batch(task)["net_input"])
    (valid,) = seen
    T = valid.size(-1)
    assert torch.equal(valid[0, 0], torch.ones(T, T, dtype=torch.bool).tril())


def test_site_selection_and_errors(tiny):
    task, model = tiny
    sites = fairseq_seam.select_sites(model, ["encoder-self", "decoder-self"], [1])
    assert [(s.name, s.kind, s.layer) for s in sites] == [
        ("encoder.layers.1.self_attn", "encoder-self", 1),
        ("decoder.layers.1.self_attn", "decoder-self", 1),
    ]
    cross = fairseq_seam.select_sites(model, ["encoder-decoder"], None)
    assert [s.name for s in cross] == ["decoder.layers.0.encoder_attn", "decoder.layers.1.encoder_attn"]
    with pytest.raises(ValueError, match=r"layer\(s\) \[2\] out of range for encoder-self attention with 2 layers"):
        fairseq_seam.select_sites(model, ["encoder-self"], [0, 2])
    with pytest.raises(ValueError, match="unknown kind"):
        parse_kinds("encoder-self,decoder-cross")
    with pytest.raises(ValueError, match="'all' or"):
        parse_layers("first")
    with pytest.raises(ValueError, match="non-negative"):
        parse_layers("-1")
    assert parse_layers("0, 2,5") == [0, 2, 5] and parse_layers("all") is None
    with pytest.raises(ValueError, match="no fairseq MultiheadAttention"):
        fairseq_seam.select_sites(torch.nn.Sequential(torch.nn.Linear(2, 2)), ["encoder-self"], None)
