"""Copy a slice of a CoNLL file: sentences [skip, skip + n), for quick runs and held-out sets.

    python -m addrop_fairseq.tagging.sample --input train.txt --output slice.txt --sentences 500 [--skip 0]

Lines are copied verbatim (all columns); ``-DOCSTART-`` lines are dropped.
"""
import argparse

from .conll import read_conll


def sample(src, dst, sentences: int, skip: int = 0) -> int:
    conll = read_conll(src, gold=False)
    chosen = conll.sentences[skip:skip + sentences]
    with open(dst, "w", encoding="utf-8") as f:
        for sent in chosen:
            f.write("".join(conll.lines[n - 1].rstrip() + "\n" for n in sent.lines) + "\n")
    return len(chosen)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m addrop_fairseq.tagging.sample", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--sentences", type=int, required=True, help="how many sentences (<= 0: all)")
    p.add_argument("--skip", type=int, default=0, help="sentences to skip first")
    args = p.parse_args(argv)
    n = sample(args.input, args.output, args.sentences if args.sentences > 0 else 10 ** 12, args.skip)
    print(f"{args.output}: {n} sentences")


if __name__ == "__main__":
    main()
