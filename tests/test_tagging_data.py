"""CoNLL reading, IOB schemes, subword alignment and binarization round trips (no training)."""
import json

import pytest
import seqeval.metrics
from hypothesis import given, settings
from hypothesis import strategies as st

from addrop_fairseq.tagging import preprocess, schemes
from addrop_fairseq.tagging.conll import ConllError, read_conll, with_column, write_sentences
from addrop_fairseq.tagging.metrics import entity_counts, prf
from addrop_fairseq.tagging.sample import sample
from addrop_fairseq.tagging.subwords import load_splitter, read_meta

TYPES = ["PER", "LOC", "ORG"]
tag_st = st.sampled_from(["O"] + [f"{p}-{t}" for p in "BI" for t in TYPES])


def iob2_sentence(tags):
    """Make any tag list valid IOB2 (an I-X must continue an X entity)."""
    return schemes.iob1_to_iob2(tags)


# ---------------------------------------------------------------- schemes and metrics


@settings(max_examples=100, deadline=None)
@given(st.lists(tag_st, min_size=1, max_size=20))
def test_iob1_iob2_round_trip_keeps_entities(tags):
    iob2 = iob2_sentence(tags)
    iob1 = schemes.iob2_to_iob1(iob2)
    assert schemes.iob1_to_iob2(iob1) == iob2
    assert schemes.iob2_to_iob1(schemes.iob1_to_iob2(iob1)) == iob1
    # the same entities for seqeval, whichever scheme is read
    assert seqeval.metrics.f1_score([iob2], [iob1]) in (0.0, 1.0)
    if any(t != "O" for t in iob2):
        assert seqeval.metrics.f1_score([iob2], [iob1]) == 1.0
    # an IOB2 file never looks like IOB1; IOB1 is detected when an entity opens with I-
    assert schemes.detect_scheme([iob2]) == "iob2"
    assert schemes.detect_scheme([iob1]) == ("iob1" if iob1 != iob2 else "iob2")


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.tuples(tag_st, tag_st), min_size=1, max_size=12), min_size=1, max_size=6))
def test_summed_entity_counts_equal_seqeval(sentences):
    gold = [[g for g, _ in s] for s in sentences]
    pred = [[p for _, p in s] for s in sentences]
    # split the corpus in two "batches": counts add up
    half = len(gold) // 2
    a, b = entity_counts(gold[:half], pred[:half]), entity_counts(gold[half:], pred[half:])
    c = {k: a[k] + b[k] for k in a}
    p, r, f = prf(c["ner_tp"], c["ner_pred"], c["ner_gold"])
    assert p == pytest.approx(seqeval.metrics.precision_score(gold, pred, zero_division=0), abs=1e-12)
    assert r == pytest.approx(seqeval.metrics.recall_score(gold, pred, zero_division=0), abs=1e-12)
    assert f == pytest.approx(seqeval.metrics.f1_score(gold, pred, zero_division=0), abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(st.lists(tag_st, min_size=1, max_size=20))
def test_repairing_any_sequence_to_iob2_keeps_seqeval_entities(tags):
    from seqeval.metrics.sequence_labeling import get_entities

    assert get_entities(schemes.iob1_to_iob2(tags)) == get_entities(list(tags))


def test_bad_tags_are_rejected():
    with pytest.raises(schemes.TagError):
        schemes.to_iob2(["O", "S-PER"], "iob2")
    with pytest.raises(ValueError):
        schemes.resolve_scheme("bioes", [["O"]])


# ---------------------------------------------------------------- reading CoNLL


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_reader_keeps_line_numbers_and_skips_docstart(tmp_path):
    f = write(tmp_path / "a.txt", "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n"
              "Peter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n\n\n")
    conll = read_conll(f)
    assert [s.tokens for s in conll.sentences] == [["EU", "rejects"], ["Peter", "Blackburn"]]
    assert [s.tags for s in conll.sentences] == [["B-ORG", "O"], ["B-PER", "I-PER"]]
    assert [s.lines for s in conll.sentences] == [[3, 4], [6, 7]]
    assert conll.ncols == 4 and conll.gold
    out = with_column(conll, [["B-ORG", "O"], ["B-PER", "O"]])
    assert out[0] == "-DOCSTART- -X- -X- O O" and out[1] == ""
    assert out[2] == "EU NNP B-NP B-ORG B-ORG" and out[6] == "Blackburn NNP I-NP I-PER O"
    tokens_only = read_conll(write(tmp_path / "b.txt", "EU\nrejects\n"), gold=None)
    assert not tokens_only.gold and tokens_only.sentences[0].tags is None


@pytest.mark.parametrize(
    "text, line, words",
    [
        ("EU NNP B-ORG\nrejects VBZ B-VP O\n", 2, "expected 3 columns (as on line 1), found 4"),
        ("EU B-ORG\n\n\nrejects O\n", 3, "empty sentence"),
        ("EU B-ORG\nrejects E-PER\n", 2, "'E-PER' is not O, B-TYPE or I-TYPE"),
        ("EU\nrejects\n", 1, "expected a token and a tag column"),
    ],
)
def test_reader_errors_name_the_line(tmp_path, text, line, words):
    f = write(tmp_path / "bad.txt", text)
    with pytest.raises(ConllError) as e:
        read_conll(f)
    assert f"{f}:{line}:" in str(e.value) and words in str(e.value)


def test_sample_copies_verbatim_sentences(tmp_path, shared_data):
    src = shared_data / "conll2003" / "valid.txt"
    n = sample(src, tmp_path / "s.txt", 5, skip=3)
    assert n == 5
    full, part = read_conll(src), read_conll(tmp_path / "s.txt")
    assert [(s.tokens, s.tags) for s in part.sentences] == [(s.tokens, s.tags) for s in full.sentences[3:8]]


# ---------------------------------------------------------------- binarization round trips


@pytest.fixture(scope="module")
def slices(tmp_path_factory, shared_data):
    d = tmp_path_factory.mktemp("conll")
    sample(shared_data / "conll2003" / "train.txt", d / "train.txt", 150)
    sample(shared_data / "conll2003" / "valid.txt", d / "valid.txt", 60)
    # the same sentences in the original CoNLL-2003 scheme, IOB1, plus one with two adjacent
    # entities of one type (the only place IOB1 writes B-)
    for split in ("train", "valid"):
        conll = read_conll(d / f"{split}.txt")
        rows = [[[w, t] for w, t in zip(s.tokens, schemes.iob2_to_iob1(s.tags))] for s in conll.sentences]
        rows.append([["Paris", "I-LOC"], ["London", "B-LOC"], ["and", "O"], ["Bonn", "I-LOC"]])
        write_sentences(d / f"{split}.iob1.txt", rows)
    return d


def original(path):
    return [(s.tokens, s.tags) for s in read_conll(path).sentences]


def run_preprocess(tmp, train, valid, *extra):
    preprocess.main(["--train", str(train), "--valid", str(valid), "--destdir", str(tmp), *map(str, extra)])
    return tmp


@pytest.mark.parametrize("subword", ["none", "sentencepiece"])
def test_round_trip_iob2(tmp_path, slices, subword):
    extra = ["--subword", subword, "--sentencepiece-vocab-size", 400]
    d = run_preprocess(tmp_path, slices / "train.txt", slices / "valid.txt", *extra)
    meta = read_meta(d)
    assert meta["input_schemes"] == {"train": "iob2", "valid": "iob2"}
    for split in ("train", "valid"):
        back = preprocess.read_binarized(d, split)
        if subword == "none" and split == "valid":  # unseen words are <unk> at word level
            assert [t for _, t in back] == [t for _, t in original(slices / "valid.txt")]
            continue
        assert back == original(slices / f"{split}.txt")


def test_round_trip_iob1_is_detected_and_stored_as_iob2(tmp_path, slices):
    d = run_preprocess(tmp_path, slices / "train.iob1.txt", slices / "valid.iob1.txt",
                       "--subword", "sentencepiece", "--sentencepiece-vocab-size", 400)
    assert read_meta(d)["input_schemes"] == {"train": "iob1", "valid": "iob1"}
    for split in ("train", "valid"):
        iob1 = original(slices / f"{split}.iob1.txt")
        assert any(t.startswith("B-") for _, tags in iob1 for t in tags)
        assert preprocess.read_binarized(d, split) == iob1
        stored = preprocess.read_binarized(d, split, scheme="iob2")
        assert stored[:-1] == original(slices / f"{split}.txt")  # the CoNLL-2003 IOB2 original
        assert stored[-1][1] == ["B-LOC", "B-LOC", "O", "B-LOC"]
    # an explicit --tag-scheme is obeyed too
    d2 = run_preprocess(tmp_path / "explicit", slices / "train.iob1.txt", slices / "valid.iob1.txt",
                        "--tag-scheme", "iob1")
    assert preprocess.read_binarized(d2, "train") == original(slices / "train.iob1.txt")


def check_first_piece_alignment(d, split, conll_path):
    """Every word's pieces are its splitter pieces; its tag sits on the first, <pad> on the rest."""
    from fairseq.data import Dictionary, data_utils

    splitter = load_splitter(str(d), read_meta(d)["subword"])
    tok_dict = Dictionary.load(str(d / "tokens" / "dict.txt"))
    tag_dict = Dictionary.load(str(d / "tags" / "dict.txt"))
    toks = data_utils.load_indexed_dataset(str(d / "tokens" / split), tok_dict)
    tags = data_utils.load_indexed_dataset(str(d / "tags" / split), tag_dict)
    multi = 0
    for i, sent in enumerate(read_conll(conll_path).sentences):
        ids, tag_ids = toks[i].tolist(), tags[i].tolist()
        assert ids[-1] == tok_dict.eos() and tag_ids[-1] == tag_dict.eos()
        pos = 0
        for word, tag in zip(sent.tokens, sent.tags):
            pieces = splitter.pieces(word)
            multi += len(pieces) > 1
            assert [tok_dict[j] for j in ids[pos:pos + len(pieces)]] == pieces
            assert tag_dict[tag_ids[pos]] == tag
            assert tag_ids[pos + 1:pos + len(pieces)] == [tag_dict.pad()] * (len(pieces) - 1)
            pos += len(pieces)
        assert pos == len(ids) - 1
    return multi


def test_sentencepiece_first_piece_alignment(tmp_path, slices):
    d = run_preprocess(tmp_path, slices / "train.txt", slices / "valid.txt",
                       "--subword", "sentencepiece", "--sentencepiece-vocab-size", 300)
    assert check_first_piece_alignment(d, "valid", slices / "valid.txt") > 50


def tiny_gpt2_bpe(d):
    """A byte-level GPT-2 BPE with every byte and two merges (RoBERTa's format, made up)."""
    from fairseq.data.encoders.gpt2_bpe_utils import bytes_to_unicode

    symbols = list(bytes_to_unicode().values()) + ["Ġt", "he", "Ġthe"]
    (d / "encoder.json").write_text(json.dumps({s: i for i, s in enumerate(symbols)}))
    (d / "vocab.bpe").write_text("#version: 0.2\nĠ t\nh e\nĠt he\n", encoding="utf-8")
    return d / "encoder.json", d / "vocab.bpe"


def test_gpt2_bpe_round_trip_and_alignment(tmp_path, slices):
    enc, bpe = tiny_gpt2_bpe(tmp_path)
    d = run_preprocess(tmp_path / "bin", slices / "train.txt", slices / "valid.txt", "--subword", "gpt2",
                       "--gpt2-encoder-json", enc, "--gpt2-vocab-bpe", bpe)
    assert preprocess.read_binarized(d, "valid") == original(slices / "valid.txt")
    assert check_first_piece_alignment(d, "valid", slices / "valid.txt") > 50
    splitter = load_splitter(str(d), read_meta(d)["subword"])
    assert splitter.pieces("the") == ["258"]  # " the" -> Ġthe, the last merge
    assert splitter.pieces("EU") == ["220", "36", "52"] and splitter.join(["220", "36", "52"]) == "EU"


def test_special_symbols_in_text_become_unk(tmp_path):
    f = write(tmp_path / "t.txt", "<pad> O\n</s> O\nEU B-ORG\n\n")
    d = run_preprocess(tmp_path / "bin", f, f)
    back = preprocess.read_binarized(d, "train")
    assert back == [(["<unk>", "<unk>", "EU"], ["O", "O", "B-ORG"])]
