"""addrop-hf-preprocess (:mod:`addrop_fairseq.hf.preprocess`): the dictionary maps one-to-one
onto the tokenizer's ids, binarized data is exactly the tokenizer's encoding, detokenization
is the tokenizer's decode, mismatches and missing tokenizers are errors that say so."""
import shutil

import pytest
import torch

import hf_builders as hb
from addrop_fairseq.hf import preprocess as hf_preprocess
from addrop_fairseq.hf import bpe as hf_bpe
from addrop_fairseq.hf import vocab as hv


@pytest.fixture(scope="module")
def corpus(shared_data):
    en = hb._short(hb.read_lines(shared_data / "wmt16_en_ro" / "newsdev2016.en", 60), 12)
    ro = hb._short(hb.read_lines(shared_data / "wmt16_en_ro" / "newsdev2016.ro", 60), 12)
    return en, ro


@pytest.fixture(scope="module")
def dirs(tmp_path_factory, corpus):
    root = tmp_path_factory.mktemp("hf_data_models")
    en, ro = corpus
    return {
        "marian": hb.make_marian(root / "marian", en, ro, vocab_size=200),
        "bert": hb.make_bert(root / "bert", en, vocab_size=300),
        "roberta": hb.make_roberta(root / "roberta", en, vocab_size=300),
    }


def load_split(prefix, dictionary):
    from fairseq.data import data_utils

    ds = data_utils.load_indexed_dataset(str(prefix), dictionary)
    return [ds[i].long() for i in range(len(ds))]


def test_roles_are_preserved(dirs):
    tf = hb.tf()
    for name, d in dirs.items():
        tok = tf.AutoTokenizer.from_pretrained(d)
        dictionary = hv.build_dictionary(tok)
        vm = hv.VocabMap(dictionary, tok, len(tok))
        assert vm.to_hf[dictionary.pad()] == tok.pad_token_id
        assert vm.to_hf[dictionary.unk()] == tok.unk_token_id
        eos = tok.eos_token_id if tok.eos_token_id is not None else tok.sep_token_id
        assert vm.to_hf[dictionary.eos()] == eos
        if name == "marian":  # no bos: fairseq's <s> has no HF id (input: unk, output: never)
            assert vm.extra == [dictionary.bos()]
        else:
            assert vm.to_hf[dictionary.bos()] == tok.cls_token_id
            assert vm.extra == []
            assert vm.to_hf[dictionary.index("<mask>")] == tok.mask_token_id
        # a bijection onto the tokenizer's ids
        real = [i for i in range(len(dictionary)) if i not in vm.extra]
        assert sorted(vm.out_index[real].tolist()) == sorted(tok.get_vocab().values())


def test_translation_data_is_the_tokenizers_encoding(dirs, corpus, tmp_path):
    from fairseq.data import Dictionary

    en, ro = corpus
    raw = tmp_path / "raw"
    hb.write_parallel(raw, "train", "en", "ro", en[:20], ro[:20])
    hb.write_parallel(raw, "valid", "en", "ro", en[20:25], ro[20:25])
    dest = tmp_path / "bin"
    hf_preprocess.main(["--model-dir", str(dirs["marian"]), "--task", "translation", "--src", "en", "--tgt", "ro",
                        "--trainpref", str(raw / "train"), "--validpref", str(raw / "valid"),
                        "--destdir", str(dest)])
    tok = hb.tf().AutoTokenizer.from_pretrained(dirs["marian"])
    src_dict = Dictionary.load(str(dest / "dict.en.txt"))
    tgt_dict = Dictionary.load(str(dest / "dict.ro.txt"))
    vm = hv.VocabMap(tgt_dict, tok, len(tok))
    src = load_split(dest / "train.en-ro.en", src_dict)
    tgt = load_split(dest / "train.en-ro.ro", tgt_dict)
    want_src = tok(en[:20])["input_ids"]
    want_tgt = tok(text_target=ro[:20])["input_ids"]
    for s, t, ws, wt in zip(src, tgt, want_src, want_tgt):
        assert vm.to_hf[s].tolist() == ws
        assert vm.to_hf[t].tolist() == wt
        assert t[-1] == tgt_dict.eos()
    # detokenization for BLEU: the tokenizer's own decode of the same ids
    codec = hf_bpe.HFBPE(hf_bpe.HFBPEConfig(hf_tokenizer_dir=str(dirs["marian"])))
    for t, wt in zip(tgt, want_tgt):
        text = codec.decode(tgt_dict.string(t, escape_unk=True))
        assert text == tok.decode(wt, skip_special_tokens=True)
        assert "\u2581" not in text
    assert codec.encode(en[0]).split() == [tgt_dict[i] for i in src[0][:-1]]


@pytest.mark.parametrize("name", ["bert", "roberta"])
def test_sentence_pairs_are_encoded_as_the_tokenizer_does(dirs, shared_data, tmp_path, name):
    from fairseq.data import Dictionary

    rows = hb.read_glue_tsv(shared_data / "glue" / "RTE" / "dev.tsv", 12)
    raw = tmp_path / "raw"
    hb.write_pairs(raw, "train", rows)
    dest = tmp_path / "bin"
    hf_preprocess.main(["--model-dir", str(dirs[name]), "--task", "sentence_prediction",
                        "--trainpref", str(raw / "train"), "--destdir", str(dest)])
    tok = hb.tf().AutoTokenizer.from_pretrained(dirs[name])
    d = Dictionary.load(str(dest / "input0" / "dict.txt"))
    d.add_symbol("<mask>")  # what sentence_prediction does: already there, nothing changes
    vm = hv.VocabMap(d, tok, len(tok))
    items = load_split(dest / "input0" / "train", d)
    want = tok([r[0] for r in rows], [r[1] for r in rows])["input_ids"]
    assert [vm.to_hf[x].tolist() for x in items] == want
    label_dict = Dictionary.load(str(dest / "label" / "dict.txt"))
    labels = load_split(dest / "label" / "train", label_dict)
    assert [label_dict[x[0]] for x in labels] == [r[2] for r in rows]


def test_tagging_data_labels_first_pieces(dirs, shared_data, tmp_path):
    from fairseq.data import Dictionary

    conll = hb.conll_slice(shared_data / "conll2003" / "train.txt", tmp_path / "train.txt", 10)
    dest = tmp_path / "bin"
    hf_preprocess.main(["--model-dir", str(dirs["roberta"]), "--task", "sequence_tagging",
                        "--trainpref", str(conll), "--destdir", str(dest)])
    tf = hb.tf()
    tok = tf.AutoTokenizer.from_pretrained(dirs["roberta"], add_prefix_space=True)
    tok_dict = Dictionary.load(str(dest / "tokens" / "dict.txt"))
    tag_dict = Dictionary.load(str(dest / "tags" / "dict.txt"))
    vm = hv.VocabMap(tok_dict, tok, len(tok))
    toks = load_split(dest / "tokens" / "train", tok_dict)
    tags = load_split(dest / "tags" / "train", tag_dict)
    from addrop_fairseq.tagging.conll import read_conll

    sentences = read_conll(str(conll)).sentences
    for s, ids, tg in zip(sentences, toks, tags):
        enc = tok(s.tokens, is_split_into_words=True, add_special_tokens=False)
        assert vm.to_hf[ids[:-1]].tolist() == enc["input_ids"]
        labelled = tg[:-1].ne(tag_dict.pad())
        firsts = [i for i, w in enumerate(enc.word_ids()) if i == 0 or enc.word_ids()[i - 1] != w]
        assert labelled.nonzero().view(-1).tolist() == firsts
        assert [tag_dict[t] for t in tg[:-1][labelled]] == s.tags  # CoNLL-2003 here is IOB2 already


def test_unwritable_tokens_are_escaped(dirs):
    tok = hb.tf().AutoTokenizer.from_pretrained(dirs["bert"])
    tok.add_tokens(["two words"])
    new_id = tok.convert_tokens_to_ids("two words")
    symbols = dict(hv.dictionary_symbols(tok))
    assert symbols[new_id] == f"<hf:{new_id}>"
    assert hv.symbols_to_ids([f"<hf:{new_id}>", "</s>", "<<unk>>"], tok) == [new_id, tok.sep_token_id, tok.unk_token_id]
    d = hv.build_dictionary(tok)
    assert hv.VocabMap(d, tok, len(tok)).to_hf[d.index(f"<hf:{new_id}>")] == new_id


def test_dictionary_from_another_tokenizer_is_refused(dirs):
    tf = hb.tf()
    bert = tf.AutoTokenizer.from_pretrained(dirs["bert"])
    roberta = tf.AutoTokenizer.from_pretrained(dirs["roberta"])
    with pytest.raises(hv.DictionaryMismatch, match="make the data with addrop-hf-preprocess"):
        hv.VocabMap(hv.build_dictionary(bert), roberta, len(roberta), "source dictionary", str(dirs["roberta"]))


def test_model_dir_without_tokenizer_is_an_error(dirs, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    for f in ("config.json", "model.safetensors"):
        shutil.copy(dirs["bert"] / f, bare / f)
    with pytest.raises(ValueError, match="no usable tokenizer there"):
        hv.load_tokenizer(str(bare))
    with pytest.raises(ValueError, match="no config.json"):
        hv.check_model_dir(str(tmp_path))
    with pytest.raises(ValueError, match="not a directory"):
        hv.check_model_dir(str(tmp_path / "missing"))


def test_logits_reordered_into_fairseq_order_with_extras_never_predicted(dirs):
    tok = hb.tf().AutoTokenizer.from_pretrained(dirs["marian"])
    d = hv.build_dictionary(tok)
    vm = hv.VocabMap(d, tok, len(tok))
    logits = torch.randn(2, 3, len(tok))
    out = hv.to_fairseq_logits(logits, vm.out_index, torch.tensor(vm.extra))
    assert out.shape[-1] == len(d)
    lp_hf = torch.log_softmax(logits, -1)
    lp_fs = torch.log_softmax(out, -1)
    real = [i for i in range(len(d)) if i not in vm.extra]
    torch.testing.assert_close(lp_fs[..., real], lp_hf[..., vm.out_index[real]], atol=1e-5, rtol=0)
    assert (lp_fs[..., vm.extra] < -90).all()
