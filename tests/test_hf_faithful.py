"""Issue 8 on the HuggingFace path: GA attributes the probabilities after attention dropout,
and an architecture that shares one attention module across layers (ALBERT) is refused."""
import pytest
import torch

import hf_builders as hb
from addrop_fairseq import sites as core
from addrop_fairseq import attribution
from addrop_fairseq.hf import seam as ha


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory, shared_data):
    en = hb.read_lines(shared_data / "wmt16_en_ro" / "newsdev2016.en", 150)
    return hb.make_bert(tmp_path_factory.mktemp("bert"), en)


def test_ga_through_hf_attention_dropout(bert_dir):
    tf = hb.tf()
    torch.manual_seed(0)
    model = tf.AutoModelForSequenceClassification.from_pretrained(
        bert_dir, attention_probs_dropout_prob=0.3, hidden_dropout_prob=0.0)
    tok = tf.AutoTokenizer.from_pretrained(bert_dir)
    kw = dict(tok(["the judge accepted the charges on tuesday", "a federal judge"], padding=True, return_tensors="pt"))
    sites = ha.discover(model, lambda: model(input_ids=torch.full((1, 3), tok.unk_token_id)))
    core.install(sites)

    def ga(train):
        model.train(train)
        torch.manual_seed(3)
        with core.recording(sites) as rec:
            logits = model(**kw).logits
        maps = rec.result()
        return maps, attribution.gradients(logits[:, 0].sum(), maps)

    _, eval_grads = ga(False)
    train_maps, train_grads = ga(True)
    # attention dropout did remove entries of the maps the gradient is taken at ...
    assert any(bool((m[e != 0] == 0).any()) for m, e in zip(train_maps, eval_grads))
    # ... and none of them is a structural zero of the attribution
    for e, t in zip(eval_grads, train_grads):
        assert (t[e != 0] != 0).all()


def test_shared_attention_module_is_refused_by_name(tmp_path):
    tf = hb.tf()
    cfg = tf.AlbertConfig(vocab_size=50, embedding_size=16, hidden_size=32, num_hidden_layers=3,
                          num_attention_heads=4, intermediate_size=64, num_hidden_groups=1)
    model = tf.AlbertForSequenceClassification(cfg)
    with pytest.raises(ValueError, match="several times in one forward pass"):
        ha.discover(model, lambda: model(input_ids=torch.full((1, 3), 5)))


def test_hf_activation_checkpointing_is_refused():
    from addrop_fairseq.engine import refuse_checkpointing

    tf = hb.tf()
    cfg = tf.BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    model = tf.BertForSequenceClassification(cfg)
    refuse_checkpointing(model, "--criterion addrop_ce", "Drop --checkpoint-activations.")  # off: accepted
    model.activation_checkpointing_enable()
    with pytest.raises(ValueError, match="--criterion addrop_ce cannot be combined with gradient checkpointing"):
        refuse_checkpointing(model, "--criterion addrop_ce", "Drop --checkpoint-activations.")
