"""Site discovery keeps its probe in the probed model's own state, nothing module-global
(issue 25, item 10): probing one model never records another model's attention calls, and
the transient states are gone afterwards, also when the probed run fails."""
import pytest
import torch

import hf_builders as hb
from addrop_fairseq import sites as core
from addrop_fairseq.hf import seam


def tiny_bert(seed):
    tf = hb.tf()
    torch.manual_seed(seed)
    config = tf.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=32, max_position_embeddings=32)
    return tf.BertModel(config).eval()


def test_probe_records_only_the_probed_model():
    a, b = tiny_bert(0), tiny_bert(1)
    seam.switch(b)  # b runs the addrop implementation too, inside a's probe
    ids = torch.ones(1, 3, dtype=torch.long)

    def run():
        a(input_ids=ids)
        b(input_ids=ids)

    seam.switch(a)
    calls = seam.probe(a, run)
    a_modules = {id(m) for m in a.modules()}
    assert len(calls) == 2 and all(id(m) in a_modules for m, _, _ in calls)
    # transient states removed; the discovered sites keep theirs, idle
    assert all(core.state(m) is None for m in a.modules() if m is not a)
    # one probe inside another (b's while a's runs): each records its own model's calls only
    inner = []

    def nested():
        a(input_ids=ids)
        inner.extend(seam.probe(b, lambda: b(input_ids=ids)))
        a(input_ids=ids)

    outer = seam.probe(a, nested)
    b_modules = {id(m) for m in b.modules()}
    assert len(outer) == 4 and all(id(m) in a_modules for m, _, _ in outer)
    assert len(inner) == 2 and all(id(m) in b_modules for m, _, _ in inner)
    # a run that fails leaves no transient state and the model's training mode as it was
    a.train()

    def fails():
        a(input_ids=ids)
        raise RuntimeError("the forward failed")

    with pytest.raises(RuntimeError, match="the forward failed"):
        seam.probe(a, fails)
    assert a.training and all(core.state(m) is None for m in a.modules() if m is not a)
    a.eval()
    found = seam.discover(a, lambda: a(input_ids=ids))
    assert [s.layer for s in found] == [0, 1]
    assert all(core.state(s.module).hook is None for s in found)
    assert sum(core.state(m) is not None for m in a.modules() if m is not a) == 2
    # probing again keeps the sites' states (and their idle fallback)
    before = [core.state(s.module) for s in found]
    assert len(seam.probe(a, lambda: a(input_ids=ids))) == 2
    assert [core.state(s.module) for s in found] == before and all(st.hook is None for st in before)
