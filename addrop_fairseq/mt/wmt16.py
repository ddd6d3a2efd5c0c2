"""Data, subword and scoring steps of the WMT16 pipeline (``scripts/wmt16_common.sh``).

Run as a file by the shell scripts (``python addrop_fairseq/mt/wmt16.py SUBCOMMAND ...``):
it imports only the standard library, ``sentencepiece`` and ``sacrebleu`` (lazily), never
fairseq, so a step costs well under a second of start-up. The functions are also importable
(``from addrop_fairseq.mt import wmt16``) for tests.

Subcommands
  check DIR SRC TGT           every split has both sides, equal line counts, no empty lines
  download-train OUT SRC TGT  WMT16 training corpora (EN-RO: Europarl v8 + SETIMES2;
                              TR-EN: SETIMES2) from their public sources -> OUT/train.{SRC,TGT}
  normalise LANG IN OUT       NFC, whitespace, and for Romanian cedilla -> comma-below
  spm-train PREFIX VOCAB IN.. joint sentencepiece model (Python API; pip has no spm_train)
  spm-encode MODEL IN OUT     text -> space-separated pieces
  hyps GENERATE_OUT OUT       fairseq-generate's D- lines, in input order
  score ...                   sacrebleu BLEU (with signature), chrF, length ratio; table as
                              text, Markdown and JSON
  split SRC TGT OUTDIR        a parallel file pair -> train/valid/test slices (the demo)

Text conventions: files are UTF-8, one sentence per line, lines end with "\\n" only (a
U+2028 or a lone "\\r" inside a line does not split it, as it would with Python's
universal newlines); a final "\\r" before the "\\n" is dropped when reading.
"""
import argparse
import json
import os
import shutil
import sys
import tarfile
import time
import unicodedata
import urllib.request
import zipfile
from pathlib import Path

# ---------------------------------------------------------------------------- text I/O


class DataError(Exception):
    """A problem with the user's data: reported as one clear message, exit status 2."""


def read_lines(path):
    """Lines of a UTF-8 file split on "\\n" only, without their terminators."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"missing file: {path}")
    lines = []
    with open(path, encoding="utf-8", newline="\n") as f:
        try:
            for line in f:
                if line.endswith("\n"):
                    line = line[:-1]
                if line.endswith("\r"):
                    line = line[:-1]
                lines.append(line)
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: not UTF-8 after line {len(lines)}: {e}") from None
    return lines


def write_lines(path, lines):
    """Write lines (each gets "\\n") through a temporary file, so a crash leaves no output."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for line in lines:
            f.write(line)
            f.write("\n")
    os.replace(tmp, path)


# ---------------------------------------------------------------------------- checks


def check_parallel(src_path, tgt_path):
    """Problems with one parallel file pair (missing side, line-count mismatch, empty lines)."""
    problems = []
    sides = {}
    for path in (src_path, tgt_path):
        try:
            sides[path] = read_lines(path)
        except DataError as e:
            problems.append(str(e))
    if problems:
        return problems
    src, tgt = sides[src_path], sides[tgt_path]
    if not src:
        problems.append(f"{src_path} is empty")
    if len(src) != len(tgt):
        problems.append(
            f"line-count mismatch: {src_path} has {len(src)} lines, {tgt_path} has {len(tgt)}"
        )
    for path, lines in ((src_path, src), (tgt_path, tgt)):
        empty = [i + 1 for i, line in enumerate(lines) if not line.strip()]
        if empty:
            shown = ", ".join(map(str, empty[:5])) + (" ..." if len(empty) > 5 else "")
            problems.append(f"{path}: {len(empty)} empty line(s), at line {shown}")
    return problems


def check_dir(directory, src, tgt, splits=("train", "valid", "test")):
    """Check DIR/{split}.{src,tgt} for every split; returns {split: line count}."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"data directory not found: {directory}")
    problems, counts = [], {}
    for split in splits:
        src_path, tgt_path = directory / f"{split}.{src}", directory / f"{split}.{tgt}"
        found = check_parallel(src_path, tgt_path)
        problems += found
        if not found:
            counts[split] = len(read_lines(src_path))
    if problems:
        raise DataError(
            f"bad parallel data in {directory} (expected {{{','.join(splits)}}}.{{{src},{tgt}}}, "
            "plain text, one sentence per line, no empty lines):\n  - " + "\n  - ".join(problems)
        )
    return counts


# ---------------------------------------------------------------------------- normalisation

# Romanian s/t with comma below (U+0218-U+021B) are the correct letters; older corpora
# (Europarl, SETIMES) often have the look-alike cedilla forms (U+015E/F, U+0162/3) from
# legacy encodings. The WMT16 dev/test references use comma-below. Turkish s-cedilla is a
# different, correct letter, so this map is applied to Romanian text only.
RO_CEDILLA_TO_COMMA = str.maketrans(
    {"\u015e": "\u0218", "\u015f": "\u0219", "\u0162": "\u021a", "\u0163": "\u021b"}
)


def normalise_line(line, lang):
    """NFC, whitespace runs -> one space, and for Romanian cedilla -> comma-below."""
    line = unicodedata.normalize("NFC", line)
    if lang == "ro":
        line = line.translate(RO_CEDILLA_TO_COMMA)
    return " ".join(line.split())


def normalise_file(lang, src, dst, max_lines=0):
    lines = read_lines(src)
    if max_lines > 0:
        lines = lines[:max_lines]
    changed = 0
    out = []
    for line in lines:
        norm = normalise_line(line, lang)
        changed += norm != line
        out.append(norm)
    write_lines(dst, out)
    return len(out), changed


# ---------------------------------------------------------------------------- downloads

# Training corpora of the WMT16 news task (http://www.statmt.org/wmt16/translation-task.html).
# Each entry: (name, url, archive file name, member basenames by language).
TRAIN_CORPORA = {
    ("en", "ro"): [
        (
            "europarl-v8",
            "https://data.statmt.org/wmt16/translation-task/training-parallel-ep-v8.tgz",
            "training-parallel-ep-v8.tgz",
            {"en": "europarl-v8.ro-en.en", "ro": "europarl-v8.ro-en.ro"},
        ),
        (
            "setimes2",
            "https://object.pouta.csc.fi/OPUS-SETIMES/v2/moses/en-ro.txt.zip",
            "SETIMES2.en-ro.txt.zip",
            # OPUS names the members SETIMES.en-ro.{en,ro} (older zips: SETIMES2.en-ro.*)
            {"en": ".en-ro.en", "ro": ".en-ro.ro"},
        ),
    ],
    ("tr", "en"): [
        (
            "setimes2",
            "https://object.pouta.csc.fi/OPUS-SETIMES/v2/moses/en-tr.txt.zip",
            "SETIMES2.en-tr.txt.zip",
            {"en": ".en-tr.en", "tr": ".en-tr.tr"},
        ),
    ],
}


def corpora_for(src, tgt):
    key = (src, tgt) if (src, tgt) in TRAIN_CORPORA else (tgt, src)
    if key not in TRAIN_CORPORA:
        raise DataError(f"no WMT16 training corpora known for {src}-{tgt}")
    return TRAIN_CORPORA[key]


def download(url, dest):
    """Fetch url to dest (skipped when dest exists), through dest.part."""
    dest = Path(dest)
    if dest.exists():
        print(f"  have {dest.name}", flush=True)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    print(f"  downloading {url}", flush=True)
    req = urllib.request.Request(url, headers={"User-Agent": "addrop_fairseq-wmt16/0.1"})
    for attempt in range(3):
        try:
            with urllib.request.urlopen(req, timeout=60) as resp, open(part, "wb") as out:
                total = int(resp.headers.get("Content-Length") or 0)
                done, next_report = 0, 0.1
                while True:
                    chunk = resp.read(1 << 20)
                    if not chunk:
                        break
                    out.write(chunk)
                    done += len(chunk)
                    if total and done / total >= next_report:
                        print(f"    {done / 2**20:.0f} / {total / 2**20:.0f} MiB", flush=True)
                        next_report += 0.1
            if total and done != total:
                raise OSError(f"short read: {done} of {total} bytes")
            os.replace(part, dest)
            return dest
        except OSError as e:
            print(f"    attempt {attempt + 1} failed: {e}", flush=True)
            time.sleep(5 * (attempt + 1))
    raise DataError(f"could not download {url} (no internet? use --local DIR)")


def extract_members(archive, wanted, dest_dir):
    """Extract the members whose names end with each wanted suffix; returns {lang: path}."""
    archive, dest_dir = Path(archive), Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    if archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as z:
            names = [n for n in z.namelist() if not n.endswith("/")]
            opener = z.open
            found = _match(names, wanted, archive)
            out = {}
            for lang, name in found.items():
                out[lang] = dest_dir / Path(name).name
                with opener(name) as fin, open(out[lang], "wb") as fout:
                    shutil.copyfileobj(fin, fout)
            return out
    with tarfile.open(archive) as t:
        members = [m for m in t.getmembers() if m.isfile()]
        found = _match([m.name for m in members], wanted, archive)
        out = {}
        for lang, name in found.items():
            out[lang] = dest_dir / Path(name).name
            with t.extractfile(name) as fin, open(out[lang], "wb") as fout:
                shutil.copyfileobj(fin, fout)
        return out


def _match(names, wanted, archive):
    found = {}
    for lang, suffix in wanted.items():
        hits = [n for n in names if n.endswith(suffix) and not Path(n).name.startswith(".")]
        if len(hits) != 1:
            raise DataError(
                f"{archive}: expected one member ending in {suffix!r}, found {hits or 'none'}"
            )
        found[lang] = hits[0]
    return found


def download_train(out_dir, src, tgt, cache_dir=None):
    """Download and concatenate the training corpora into out_dir/train.{src,tgt}.

    Real corpora have alignment gaps (an empty side): those pairs are dropped, and the
    count is printed. Everything else is kept as is; normalisation is a later step.
    """
    out_dir = Path(out_dir)
    cache_dir = Path(cache_dir or out_dir / "downloads")
    all_src, all_tgt = [], []
    for name, url, filename, wanted in corpora_for(src, tgt):
        archive = download(url, cache_dir / filename)
        files = extract_members(archive, wanted, cache_dir / name)
        s, t = read_lines(files[src]), read_lines(files[tgt])
        if len(s) != len(t):
            raise DataError(f"{name}: {files[src]} has {len(s)} lines, {files[tgt]} {len(t)}")
        keep = [(a, b) for a, b in zip(s, t) if a.strip() and b.strip()]
        print(f"  {name}: {len(s)} pairs, {len(s) - len(keep)} with an empty side dropped", flush=True)
        all_src += [a for a, _ in keep]
        all_tgt += [b for _, b in keep]
    write_lines(out_dir / f"train.{src}", all_src)
    write_lines(out_dir / f"train.{tgt}", all_tgt)
    return len(all_src)


# ---------------------------------------------------------------------------- sentencepiece


def spm_train(prefix, vocab_size, inputs, max_sentences=2_000_000, seed=1):
    import sentencepiece as spm

    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    tmp = prefix.with_name(prefix.name + ".tmp")
    if hasattr(spm, "set_random_generator_seed"):  # sampling of input_sentence_size lines
        spm.set_random_generator_seed(seed)
    spm.SentencePieceTrainer.train(
        input=",".join(map(str, inputs)),
        model_prefix=str(tmp),
        vocab_size=vocab_size,
        model_type="unigram",
        character_coverage=1.0,
        # our normalise step already did NFC + whitespace: no NFKC here, so the model
        # writes exactly the characters the references use (NFKC would turn "…" into "...")
        normalization_rule_name="identity",
        hard_vocab_limit=False,  # a small corpus gets a smaller vocabulary, not an error
        input_sentence_size=max_sentences,
        shuffle_input_sentence=True,
        num_threads=max(1, os.cpu_count() or 1),
        minloglevel=2,
    )
    for ext in (".model", ".vocab"):
        os.replace(str(tmp) + ext, str(prefix) + ext)
    sp = spm.SentencePieceProcessor(model_file=str(prefix) + ".model")
    return sp.get_piece_size()


def spm_encode(model, src, dst, batch=20000):
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(model))
    lines = [" ".join(line.split()) for line in read_lines(src)]
    out = []
    for i in range(0, len(lines), batch):
        for pieces in sp.encode(lines[i : i + batch], out_type=str):
            out.append(" ".join(pieces))
    write_lines(dst, out)
    return len(out)


# ---------------------------------------------------------------------------- hypotheses


def extract_hyps(generate_out, expect=None):
    """Detokenized hypotheses (D-<id> lines) of fairseq-generate, ordered by id."""
    hyps = {}
    for line in read_lines(generate_out):
        if line.startswith("D-"):
            head, _, rest = line.partition("\t")
            _score, _, text = rest.partition("\t")
            hyps[int(head[2:])] = text
    n = len(hyps) if expect is None else expect
    missing = [i for i in range(n) if i not in hyps]
    if missing or len(hyps) != n:
        raise DataError(
            f"{generate_out}: expected hypotheses 0..{n - 1}, got {len(hyps)} "
            f"(missing ids {missing[:5]})"
        )
    return [hyps[i] for i in range(n)]


# ---------------------------------------------------------------------------- scoring


def score(refs, runs):
    """{run: metrics} for runs = {name: hypotheses}; sacrebleu defaults (13a, mixed case)."""
    from sacrebleu.metrics import BLEU, CHRF

    results, signatures = {}, {}
    for name, hyps in runs.items():
        if len(hyps) != len(refs):
            raise DataError(f"{name}: {len(hyps)} hypotheses for {len(refs)} references")
        bleu, chrf = BLEU(), CHRF()
        b = bleu.corpus_score(hyps, [refs])
        c = chrf.corpus_score(hyps, [refs])
        signatures = {"bleu": str(bleu.get_signature()), "chrf": str(chrf.get_signature())}
        results[name] = {
            "bleu": round(b.score, 2),
            "chrf": round(c.score, 2),
            "len_ratio": round(b.sys_len / b.ref_len, 3) if b.ref_len else 0.0,
            "hyp_len": b.sys_len,
            "ref_len": b.ref_len,
            "bleu_detail": str(b),
        }
    return results, signatures


def format_table(title, results, signatures, notes=()):
    rows = [
        f"### {title}",
        "",
        "| run | BLEU | chrF | len ratio |",
        "|:----|-----:|-----:|----------:|",
    ]
    for name, r in results.items():
        rows.append(f"| {name} | {r['bleu']:.2f} | {r['chrf']:.2f} | {r['len_ratio']:.3f} |")
    names = list(results)
    if "baseline" in results and len(names) > 1:
        base = results["baseline"]
        for name in names:
            if name != "baseline":
                r = results[name]
                rows.append(
                    f"| {name} - baseline | {r['bleu'] - base['bleu']:+.2f} | "
                    f"{r['chrf'] - base['chrf']:+.2f} | |"
                )
    rows += ["", f"BLEU signature: `{signatures.get('bleu', '')}`  ",
             f"chrF signature: `{signatures.get('chrf', '')}`"]
    if notes:
        rows += [""] + [f"- {n}" for n in notes]
    return "\n".join(rows) + "\n"


def score_files(ref_path, hyp_specs, json_path, md_path, title, notes=()):
    refs = read_lines(ref_path)
    runs, hyp_paths = {}, {}
    for spec in hyp_specs:
        name, _, path = spec.partition("=")
        if not path:
            raise DataError(f"--hyp wants NAME=PATH, got {spec!r}")
        runs[name] = read_lines(path)
        hyp_paths[name] = str(Path(path).resolve())
    results, signatures = score(refs, runs)
    for name in results:
        results[name]["hyp"] = hyp_paths[name]
    table = format_table(f"{title} ({len(refs)} sentences)", results, signatures, notes)
    payload = {
        "title": title,
        "ref": str(Path(ref_path).resolve()),
        "n_sentences": len(refs),
        "signatures": signatures,
        "runs": results,
        "notes": list(notes),
    }
    Path(json_path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(str(json_path) + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    Path(md_path).write_text(table, encoding="utf-8")
    os.replace(tmp, json_path)  # JSON last: its presence means the step finished
    return table


# ---------------------------------------------------------------------------- demo split


def split_parallel(src_file, tgt_file, out_dir, src, tgt, n_valid, n_test):
    """First lines -> train, next n_valid -> valid, last n_test -> test (contiguous blocks,
    so test sentences come from other news stories than most training sentences)."""
    s, t = read_lines(src_file), read_lines(tgt_file)
    problems = check_parallel(src_file, tgt_file)
    if problems:
        raise DataError("\n".join(problems))
    n = len(s)
    n_train = n - n_valid - n_test
    if n_train < 1:
        raise DataError(f"{src_file}: {n} lines cannot give {n_valid} valid + {n_test} test")
    out_dir = Path(out_dir)
    parts = {"train": (0, n_train), "valid": (n_train, n_train + n_valid), "test": (n_train + n_valid, n)}
    for split, (a, b) in parts.items():
        write_lines(out_dir / f"{split}.{src}", s[a:b])
        write_lines(out_dir / f"{split}.{tgt}", t[a:b])
    return {k: b - a for k, (a, b) in parts.items()}


# ---------------------------------------------------------------------------- CLI


def main(argv=None):
    p = argparse.ArgumentParser(prog="wmt16.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    c = sub.add_parser("check")
    c.add_argument("dir")
    c.add_argument("src")
    c.add_argument("tgt")
    c.add_argument("--splits", default="train,valid,test")

    c = sub.add_parser("download-train")
    c.add_argument("out")
    c.add_argument("src")
    c.add_argument("tgt")
    c.add_argument("--cache")

    c = sub.add_parser("normalise")
    c.add_argument("lang")
    c.add_argument("input")
    c.add_argument("output")
    c.add_argument("--max-lines", type=int, default=0)

    c = sub.add_parser("spm-train")
    c.add_argument("prefix")
    c.add_argument("vocab_size", type=int)
    c.add_argument("inputs", nargs="+")
    c.add_argument("--max-sentences", type=int, default=2_000_000)
    c.add_argument("--seed", type=int, default=1)

    c = sub.add_parser("spm-encode")
    c.add_argument("model")
    c.add_argument("input")
    c.add_argument("output")

    c = sub.add_parser("hyps")
    c.add_argument("generate_out")
    c.add_argument("output")
    c.add_argument("--ref", help="expect as many hypotheses as this file has lines")

    c = sub.add_parser("score")
    c.add_argument("--ref", required=True)
    c.add_argument("--hyp", action="append", required=True, help="NAME=PATH, repeatable")
    c.add_argument("--json", required=True)
    c.add_argument("--md", required=True)
    c.add_argument("--title", default="BLEU")
    c.add_argument("--note", action="append", default=[])

    c = sub.add_parser("split")
    c.add_argument("src_file")
    c.add_argument("tgt_file")
    c.add_argument("out_dir")
    c.add_argument("src")
    c.add_argument("tgt")
    c.add_argument("--valid", type=int, default=200)
    c.add_argument("--test", type=int, default=200)

    a = p.parse_args(argv)
    try:
        if a.cmd == "check":
            counts = check_dir(a.dir, a.src, a.tgt, a.splits.split(","))
            print("  " + ", ".join(f"{k} {v} pairs" for k, v in counts.items()))
        elif a.cmd == "download-train":
            n = download_train(a.out, a.src, a.tgt, a.cache)
            print(f"  train: {n} pairs", flush=True)
        elif a.cmd == "normalise":
            n, changed = normalise_file(a.lang, a.input, a.output, a.max_lines)
            print(f"  {a.output}: {n} lines, {changed} changed by normalisation ({a.lang})")
        elif a.cmd == "spm-train":
            size = spm_train(a.prefix, a.vocab_size, a.inputs, a.max_sentences, a.seed)
            print(f"  {a.prefix}.model: {size} pieces (asked {a.vocab_size})")
        elif a.cmd == "spm-encode":
            spm_encode(a.model, a.input, a.output)
        elif a.cmd == "hyps":
            expect = len(read_lines(a.ref)) if a.ref else None
            write_lines(a.output, extract_hyps(a.generate_out, expect))
        elif a.cmd == "score":
            print(score_files(a.ref, a.hyp, a.json, a.md, a.title, a.note), end="")
        elif a.cmd == "split":
            counts = split_parallel(a.src_file, a.tgt_file, a.out_dir, a.src, a.tgt, a.valid, a.test)
            print("  " + ", ".join(f"{k} {v} pairs" for k, v in counts.items()))
    except DataError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
