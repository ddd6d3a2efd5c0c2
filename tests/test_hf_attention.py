"""The "addrop" attention implementation on tiny random BERT, ELECTRA, RoBERTa and Marian.

Idle it equals transformers' stock sdpa and eager; recording gives eager's maps; masking
drops exactly the keys asked for; ``valid`` marks padding / causal / padded queries; sites
and their errors; an architecture that bypasses the interface is refused by name.
"""
import pytest
import torch

import hf_builders as hb
from addrop_fairseq import sites as core
from addrop_fairseq import attribution
from addrop_fairseq.hf import seam as ha

ARCHS = {
    "bert": "AutoModelForSequenceClassification",
    "electra": "AutoModelForTokenClassification",
    "roberta": "AutoModelForSequenceClassification",
    "marian": "AutoModelForSeq2SeqLM",
}


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory, shared_data):
    root = tmp_path_factory.mktemp("hf_models")
    en = hb.read_lines(shared_data / "wmt16_en_ro" / "newsdev2016.en", 150)
    ro = hb.read_lines(shared_data / "wmt16_en_ro" / "newsdev2016.ro", 150)
    return {
        "bert": hb.make_bert(root / "bert", en),
        "electra": hb.make_bert(root / "electra", en, arch="electra"),
        "roberta": hb.make_roberta(root / "roberta", en),
        "marian": hb.make_marian(root / "marian", en, ro),
    }


def load(model_dirs, name, attn="sdpa"):
    tf = hb.tf()
    torch.manual_seed(0)
    return getattr(tf, ARCHS[name]).from_pretrained(model_dirs[name], attn_implementation=attn).eval()


def batch(model_dirs, name):
    """A padded batch (second row shorter), decoder inputs with padding for Marian."""
    tok = hb.tf().AutoTokenizer.from_pretrained(model_dirs[name])
    kw = dict(tok(["the judge accepted the charges on tuesday", "a federal judge"], padding=True,
                  return_tensors="pt"))
    if name == "marian":
        start = tok.pad_token_id
        kw["decoder_input_ids"] = torch.tensor([[start, 5, 6, 7, 8], [start, 9, 10, start, start]])
        kw["decoder_attention_mask"] = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    return tok, kw


def sites_of(model, name, tok):
    if name == "marian":
        def run():
            model(input_ids=torch.full((1, 3), tok.unk_token_id), decoder_input_ids=torch.full((1, 2), tok.pad_token_id))
        return ha.discover(model, run, encoder=model.get_encoder(), src_len=3)

    def run():
        model(input_ids=torch.full((1, 3), tok.unk_token_id))
    return ha.discover(model, run)


@pytest.mark.parametrize("name", list(ARCHS))
def test_idle_addrop_equals_stock_sdpa_and_eager(model_dirs, name):
    tok, kw = batch(model_dirs, name)
    sdpa = load(model_dirs, name, "sdpa")
    eager = load(model_dirs, name, "eager")
    with torch.no_grad():
        ref_sdpa = sdpa(**kw).logits
        ref_eager = eager(**kw).logits
        sites = sites_of(sdpa, name, tok)
        assert sdpa.config._attn_implementation == "addrop"
        assert all(core.state(s.module).hook is None for s in sites)
        idle = sdpa(**kw).logits
        sites_of(eager, name, tok)
        idle_eager = eager(**kw).logits
    if idle.dim() == 3:  # per-position logits: padded positions are not compared
        real = kw["attention_mask"].bool() if name != "marian" else kw["decoder_attention_mask"].bool()
    else:
        real = torch.ones(idle.shape[:-1], dtype=torch.bool)
    torch.testing.assert_close(idle[real], ref_sdpa[real], atol=1e-5, rtol=0)
    torch.testing.assert_close(idle_eager[real], ref_eager[real], atol=1e-5, rtol=0)
    torch.testing.assert_close(idle[real], ref_eager[real], atol=1e-5, rtol=0)


def test_sites_kinds_layers_and_errors(model_dirs):
    tok, _ = batch(model_dirs, "marian")
    marian = load(model_dirs, "marian")
    sites = sites_of(marian, "marian", tok)
    got = [(s.kind, s.layer) for s in sites]
    assert sorted(got) == sorted(
        [(k, i) for k in ("encoder-self", "decoder-self", "encoder-decoder") for i in range(2)]
    )
    assert {s.name for s in sites if s.kind == "encoder-decoder"} == {
        "hf.model.decoder.layers.0.encoder_attn", "hf.model.decoder.layers.1.encoder_attn"}
    auto = core.select_from(sites, None, None, "Marian")
    assert {s.kind for s in auto} == {"encoder-self"}  # auto: encoder self-attention, the reference default
    only = core.select_from(sites, ["encoder-decoder"], [1], "Marian")
    assert [(s.kind, s.layer) for s in only] == [("encoder-decoder", 1)]
    with pytest.raises(ValueError, match="layer\\(s\\) \\[2\\] out of range for encoder-self attention with 2 layers"):
        core.select_from(sites, ["encoder-self"], [0, 2], "Marian")

    tok, _ = batch(model_dirs, "bert")
    bert = load(model_dirs, "bert")
    bsites = sites_of(bert, "bert", tok)
    assert [(s.kind, s.layer) for s in bsites] == [("encoder-self", 0), ("encoder-self", 1)]
    with pytest.raises(ValueError, match="has no decoder-self attention \\(it has encoder-self\\)"):
        core.select_from(bsites, ["decoder-self"], None, "BertForSequenceClassification")


def test_architecture_outside_the_interface_is_refused():
    """DeBERTa-v2 computes attention in its own code: AD-DROP says so instead of doing nothing."""
    tf = hb.tf()
    config = tf.DebertaV2Config(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=32, max_position_embeddings=32)
    model = tf.DebertaV2ForSequenceClassification(config).eval()
    with pytest.raises(ValueError, match="does not route its attention through transformers' AttentionInterface"):
        ha.discover(model, lambda: model(input_ids=torch.ones(1, 3, dtype=torch.long)))


@pytest.mark.parametrize("name", ["bert", "marian"])
def test_recording_gives_eager_maps_and_valid_marks_padding(model_dirs, name):
    tok, kw = batch(model_dirs, name)
    eager = load(model_dirs, name, "eager")
    model = load(model_dirs, name, "sdpa")
    sites = sites_of(model, name, tok)
    with torch.no_grad():
        ref = eager(**kw, output_attentions=True)
        with core.recording(sites) as rec:
            model(**kw)
    maps = rec.result()
    if name == "marian":
        stock = {"encoder-self": ref.encoder_attentions, "decoder-self": ref.decoder_attentions,
                 "encoder-decoder": ref.cross_attentions}
    else:
        stock = {"encoder-self": ref.attentions}
    for site, m in zip(sites, maps):
        torch.testing.assert_close(m, stock[site.kind][site.layer], atol=1e-6, rtol=0)

    # the valid masks handed to the drop maker
    seen = {}

    def make_drop(i, valid):
        seen[i] = valid[:, :1].clone()
        return torch.zeros_like(valid)

    with torch.no_grad(), core.masking(sites, make_drop):
        model(**kw)
    src_real = kw["attention_mask"].bool()
    tgt_real = kw.get("decoder_attention_mask", kw["attention_mask"]).bool()
    for i, site in enumerate(sites):
        valid = seen[i][:, 0]
        if site.kind == "encoder-self":
            want = src_real[:, None, :] & src_real[:, :, None]
        elif site.kind == "decoder-self":
            t = tgt_real.size(1)
            causal = torch.ones(t, t, dtype=torch.bool).tril()
            want = causal & tgt_real[:, None, :] & tgt_real[:, :, None]
        else:
            want = src_real[:, None, :].expand(-1, tgt_real.size(1), -1)
        assert torch.equal(valid, want), site.name


def test_masking_drops_exactly_the_chosen_keys(model_dirs):
    """First layer (same input as stock): dropped keys get probability 0, the rest renormalize."""
    tok, kw = batch(model_dirs, "bert")
    model = load(model_dirs, "bert")
    sites = sites_of(model, "bert", tok)
    with torch.no_grad(), core.recording(sites) as rec:
        model(**kw)
    stock0 = rec.result()[0]
    gen = torch.Generator().manual_seed(1)
    drops = {}

    def make_drop(i, valid):
        drop = valid & (torch.rand(valid.shape, generator=gen) < 0.3)
        drop[..., 0] = False  # keep [CLS] so no row is emptied
        drops[i] = drop
        return drop

    with torch.no_grad():
        with core.masking(sites, make_drop):
            out = model(**kw, output_attentions=True)
    probs0 = out.attentions[0]
    drop0 = drops[0]
    assert drop0.any()
    assert float(probs0[drop0].abs().max()) == 0.0
    am = kw["attention_mask"].bool()
    valid0 = am[:, None, None, :] & am[:, None, :, None]
    keep = valid0 & ~drop0
    want = stock0 * keep
    want = want / want.sum(-1, keepdim=True)
    torch.testing.assert_close(probs0[keep], want[keep], atol=1e-5, rtol=1e-4)


def test_one_autograd_call_equals_per_layer_calls_through_hf(model_dirs):
    """attribution.gradients (one autograd call over the 6 maps) against the original code's
    way: per layer its own forward pass (eval mode: no dropout, the same maps every time), its
    own target built here from the logits, one autograd call for that layer's map only."""
    tok, kw = batch(model_dirs, "marian")
    model = load(model_dirs, "marian")
    sites = sites_of(model, "marian", tok)
    real = kw["decoder_attention_mask"].bool()
    with core.recording(sites) as rec:
        logits = model(**kw).logits
    maps = rec.result()
    target = attribution.token_target(torch.log_softmax(logits, -1), attribution.pseudo_labels(logits), real)
    one = attribution.gradients(target, maps)

    per_layer = []
    for layer in range(len(sites)):
        with core.recording(sites) as rec:
            logits = model(**kw).logits
        lprobs = logits.float().log_softmax(-1)
        picked = lprobs.gather(-1, logits.detach().argmax(-1, keepdim=True)).squeeze(-1)
        (g,) = torch.autograd.grad(picked[real].sum(), rec.result()[layer])
        per_layer.append(g)
    assert len(one) == len(per_layer) == 6
    for site, a, b in zip(sites, one, per_layer):
        assert a.shape == b.shape, site.name
        torch.testing.assert_close(a, b)
        assert a.abs().sum() > 0, site.name
