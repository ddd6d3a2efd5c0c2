"""The fairseq wrappers in-process: hf_seq2seq's incremental decoding against full forwards
and HF's own greedy generate; sites through the wrapper; padding direction; head bookkeeping."""
import pytest
import torch

import hf_builders as hb
from hf_builders import build
from addrop_fairseq.hf import preprocess as hf_preprocess
from addrop_fairseq.hf import vocab as hv


@pytest.fixture(scope="module")
def marian(tmp_path_factory, shared_data):
    root = tmp_path_factory.mktemp("hf_models_marian")
    en = hb._short(hb.read_lines(shared_data / "wmt16_en_ro" / "newsdev2016.en", 80), 8)
    ro = hb._short(hb.read_lines(shared_data / "wmt16_en_ro" / "newsdev2016.ro", 80), 8)
    model_dir = hb.make_marian(root / "marian", en, ro, vocab_size=200)
    hb.write_parallel(root / "raw", "train", "en", "ro", en[:60], ro[:60])
    hb.write_parallel(root / "raw", "test", "en", "ro", en[60:], ro[60:])
    hf_preprocess.main(["--model-dir", str(model_dir), "--task", "translation", "--src", "en", "--tgt", "ro",
                        "--trainpref", str(root / "raw" / "train"), "--testpref", str(root / "raw" / "test"),
                        "--destdir", str(root / "bin")])
    task, model, cfg = build([root / "bin", "--task", "translation", "--source-lang", "en", "--target-lang", "ro",
                              "--arch", "hf_seq2seq", "--hf-model-dir", model_dir])
    task.load_dataset("test")
    itr = task.get_batch_iterator(task.dataset("test"), max_sentences=6).next_epoch_itr(shuffle=False)
    sample = next(iter(itr))
    return task, model.eval(), sample, model_dir


def test_wrapper_equals_hf_forward(marian):
    """Left-padded fairseq source + shifted target == HF's own forward on the tokenizer's ids."""
    task, model, sample, model_dir = marian
    hf = model.hf
    vm = model.vocab_map
    src = sample["net_input"]["src_tokens"]
    assert src[:, 0].eq(task.source_dictionary.pad()).any()  # fairseq left-pads sources
    with torch.no_grad():
        lprobs = model.get_normalized_probs(model(**sample["net_input"]), log_probs=True)
    for b in range(src.size(0)):
        s = src[b][src[b].ne(1)]
        t = sample["target"][b][sample["target"][b].ne(1)]
        ids = vm.to_hf[s][None]
        labels = model.decoder.to_hf[t][None]
        with torch.no_grad():
            ref = hf(input_ids=ids, labels=labels).logits.log_softmax(-1)[0]
        real = [i for i in range(len(task.target_dictionary)) if i not in model.decoder.extra.tolist()]
        torch.testing.assert_close(lprobs[b, : len(t)][:, real], ref[:, model.decoder.out_index[real]], atol=1e-5, rtol=0)


@pytest.mark.slow  # decodes
def test_beam_search_scores_equal_full_forward(marian):
    """Incremental decoding (HF cache in fairseq's incremental state, reordered with the beams)."""
    task, model, sample, _ = marian
    from fairseq.sequence_generator import SequenceGenerator

    gen = SequenceGenerator([model], task.target_dictionary, beam_size=4, max_len_a=0, max_len_b=8)
    with torch.no_grad():
        hypos = gen.generate([model], sample)
    eos = task.target_dictionary.eos()
    n = 0
    for b, beams in enumerate(hypos):
        src = sample["net_input"]["src_tokens"][b: b + 1]
        for h in beams[:2]:
            tokens = h["tokens"][None]
            prev = torch.cat([tokens.new_full((1, 1), eos), tokens[:, :-1]], dim=1)
            with torch.no_grad():
                out = model(src, torch.tensor([src.ne(1).sum()]), prev)
                lp = model.get_normalized_probs(out, log_probs=True)[0]
            full = lp.gather(-1, tokens[0][:, None])[:, 0]
            torch.testing.assert_close(h["positional_scores"], full, atol=1e-4, rtol=0)
            n += 1
    assert n >= 6


@pytest.mark.slow  # decodes
def test_greedy_equals_hf_generate(marian):
    task, model, sample, _ = marian
    from fairseq.sequence_generator import SequenceGenerator

    hf = model.hf
    pad_hf = hf.config.pad_token_id
    gen = SequenceGenerator([model], task.target_dictionary, beam_size=1, max_len_a=0, max_len_b=8)
    with torch.no_grad():
        hypos = gen.generate([model], sample)
    for b, beams in enumerate(hypos):
        src = sample["net_input"]["src_tokens"][b]
        ids = model.vocab_map.to_hf[src[src.ne(1)]][None]
        with torch.no_grad():
            out = hf.generate(input_ids=ids, num_beams=1, do_sample=False, max_new_tokens=8, min_new_tokens=1,
                              bad_words_ids=[[pad_hf]])
        ours = model.decoder.to_hf[beams[0]["tokens"]].tolist()
        theirs = out[0, 1:].tolist()
        k = min(len(ours), len(theirs)) - 1
        assert k >= 3 and ours[:k] == theirs[:k]


def test_sites_through_the_wrapper(marian):
    task, model, sample, _ = marian
    assert model.hf.config._attn_implementation != "addrop"  # untouched until AD-DROP asks
    sites = model.addrop_attention_sites(["encoder-self", "decoder-self", "encoder-decoder"], None)
    assert model.hf.config._attn_implementation == "addrop"
    assert sorted((s.kind, s.layer) for s in sites) == sorted(
        (k, i) for k in ("encoder-self", "decoder-self", "encoder-decoder") for i in range(2))
    assert [s.kind for s in model.addrop_attention_sites(None, [1])] == ["encoder-self"]  # auto: the reference default
    with pytest.raises(ValueError, match="out of range"):
        model.addrop_attention_sites(None, [5])


def test_dictionary_mismatch_names_the_problem(marian, tmp_path, shared_data):
    task, model, sample, _ = marian
    args = [task.cfg.data, "--task", "translation", "--source-lang", "en", "--target-lang", "ro", "--arch", "hf_seq2seq"]
    lines = hb.read_lines(shared_data / "wmt16_tr_en" / "newsdev2016.tr", 40)
    other = hb.make_marian(tmp_path / "other", lines, lines, vocab_size=150)
    with pytest.raises(hv.DictionaryMismatch, match="source dictionary: index \\d+ is .* but the tokenizer in .*"
                                                    "addrop-hf-preprocess --model-dir"):
        build(args + ["--hf-model-dir", other])
    bert = hb.make_bert(tmp_path / "bert", lines, vocab_size=120)
    with pytest.raises(hv.DictionaryMismatch):
        build(args + ["--hf-model-dir", bert])
    from addrop_fairseq.hf.loading import HFSeq2SeqConfig, load_hf_model

    with pytest.raises(ValueError, match="holds a bert model, which AutoModelForSeq2SeqLM cannot load"):
        load_hf_model(HFSeq2SeqConfig(hf_model_dir=str(bert)), "AutoModelForSeq2SeqLM")


def test_token_classifier_padding_direction(tmp_path, shared_data):
    """Left- and right-padded batches give the same per-token logits (positions realigned)."""
    from addrop_fairseq.hf.loading import right_align

    tokens = torch.tensor([[1, 1, 5, 6, 2], [7, 8, 9, 10, 2]])
    right, back = right_align(tokens, 1)
    assert right.tolist() == [[5, 6, 2, 1, 1], [7, 8, 9, 10, 2]]
    assert right.gather(1, back).tolist() == tokens.tolist()
    assert right_align(right, 1)[1] is None
