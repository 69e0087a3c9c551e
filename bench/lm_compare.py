"""Our ``train-lm`` against kaldingram on the same text, vocabulary and dev set (issue 16).

Both models see the same sentences, with words outside ``--vocab`` mapped to the unk
symbol, and both are scored by the same code (``asr_distill.lang.arpa.perplexity``), so
their perplexities compare directly. Prints, per model: n-grams per order, dev
perplexity (OOVs scored as the unk symbol) and the training seconds. Then the pruned
models a first-pass graph would use: kaldingram's entropy pruning (Stolcke 1998) at
each ``--entropy`` threshold, of its own model and of ours, and our count cut-offs
(``--prune``) for comparison, with
their n-gram counts and dev perplexity. "ppl (IV)" leaves the dev set's OOV tokens out
(SRILM's numbers without OOVs); it is the one to compare, since a model trained on text
in which every word is in the vocabulary has no unk n-gram (kaldingram: OOVs are skipped;
ours: they are scored as the unk symbol's share of the uniform floor, "unk" = yes).

    python bench/lm_compare.py --vocab W/data/lang/words.txt --dev W/data/dev \\
        W/corpus/lm_text.txt W/data/train

kaldingram is not a dependency of the package; the benchmark needs
``pip install kaldingram`` (or ``--kaldingram-path DIR`` where it is unpacked).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from asr_distill.lang.arpa import BackoffLM, perplexity
from asr_distill.lang.lm import LmConfig, iter_sentences, read_vocab, train_kn_lm


def _counts(path: Path) -> list[int]:
    """n-grams per order from an ARPA file's \\data\\ header."""
    counts = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("ngram "):
                counts.append(int(line.split("=")[1]))
            elif line.startswith("\\1-grams:"):
                break
    return counts


def _row(name: str, arpa: Path, dev: list[list[str]], unk: str, seconds: float) -> None:
    result = perplexity(BackoffLM.read_arpa(arpa), dev, unk_symbol=unk)
    counts = "/".join(map(str, _counts(arpa)))
    unk_scored = "yes" if result.oovs_included else "no"
    print(f"{name:<34} {counts:>24} {result.ppl_in_vocab:9.2f} {result.ppl:9.2f} "
          f"{unk_scored:>6} {seconds:8.1f}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("text", nargs="+", help="training text files or Kaldi data dirs")
    p.add_argument("--vocab", required=True, help="words.txt: other words become --unk")
    p.add_argument("--dev", required=True, help="dev text file or Kaldi data dir")
    p.add_argument("--order", type=int, default=3)
    p.add_argument("--unk", default="<UNK>")
    p.add_argument("--entropy", default="1e-7 1e-6 1e-5", help="kaldingram prune thresholds")
    p.add_argument("--prune", default="0,0,1 0,1,1 0,1,2", help="our count cut-offs")
    p.add_argument("--kaldingram-path", help="directory holding the kaldingram package")
    args = p.parse_args(argv)
    if args.kaldingram_path:
        sys.path.insert(0, args.kaldingram_path)
    from kaldingram import prune as kg_prune
    from kaldingram import train as kg_train

    vocab = read_vocab(args.vocab) | {args.unk}
    sentences = [[w if w in vocab else args.unk for w in s] for s in iter_sentences(args.text)]
    dev = list(iter_sentences([args.dev]))
    n_words = sum(len(s) for s in sentences)
    print(f"{len(sentences)} sentences, {n_words} words; dev {len(dev)} sentences; "
          f"order {args.order}")  # fmt: skip
    print(f"{'model':<34} {'n-grams per order':>24} {'ppl (IV)':>9} {'ppl':>9} "
          f"{'unk':>6} {'seconds':>8}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        text = tmp / "text.txt"
        text.write_text("".join(" ".join(s) + "\n" for s in sentences), encoding="utf-8")

        start = time.perf_counter()
        model, _, _ = train_kn_lm(sentences, LmConfig(order=args.order, vocab=args.vocab,
                                                      unk_symbol=args.unk))  # fmt: skip
        model.write_arpa(tmp / "ours.arpa")
        _row("asr-distill train-lm", tmp / "ours.arpa", dev, args.unk,
             time.perf_counter() - start)  # fmt: skip

        start = time.perf_counter()
        counts = kg_train.NgramCounts(args.order)
        counts.add_raw_counts_from_file(str(text))
        counts.cal_discounting_constants()
        counts.cal_f()
        counts.cal_bow()
        with open(tmp / "kg.arpa", "w", encoding="utf-8") as f:
            counts.print_as_arpa(fout=f)
        _row("kaldingram train", tmp / "kg.arpa", dev, args.unk, time.perf_counter() - start)

        for base, label in (("kg", "kaldingram"), ("ours", "ours")):
            for threshold in args.entropy.split():
                start = time.perf_counter()
                lm = kg_prune.ArpaParser().loadf(str(tmp / f"{base}.arpa"), encoding="utf-8")[0]
                kg_prune.prune(lm, float(threshold), 1)
                out = tmp / f"{base}_{threshold}.arpa"
                kg_prune.ArpaParser().dumpf(lm, str(out), encoding="utf-8")
                _row(f"{label}, kaldingram prune {threshold}", out, dev, args.unk,
                     time.perf_counter() - start)  # fmt: skip

        for cutoffs in args.prune.split():
            start = time.perf_counter()
            config = LmConfig(order=args.order, vocab=args.vocab, unk_symbol=args.unk,
                              prune=[int(c) for c in cutoffs.split(",")])  # fmt: skip
            model, _, _ = train_kn_lm(sentences, config)
            out = tmp / f"ours_{cutoffs}.arpa"
            model.write_arpa(out)
            _row(f"asr-distill --prune {cutoffs}", out, dev, args.unk,
                 time.perf_counter() - start)  # fmt: skip
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TQDM_DISABLE", "1")
    raise SystemExit(main())
