"""Issue 16, item 4: how far can fortunes text alone take the vocabulary? Dev OOV rate
with the vocabulary of train + lm_text.txt, and with the CMUdict words of the fortune
sentences the corpus rejects (too short, too long, or a word outside CMUdict) added,
leaving out every fortune entry that holds a dev or test sentence.

    python recipes/synth/local/vocab_coverage.py WORK_DIR [N ...]   # a recipe's --work-dir

With N: also the N most frequent English words that CMUdict has, added to train +
lm_text.txt (``asr_distill.lang.dictionary.frequent_english_words``, wordfreq's list,
as ``prepare-dict --frequent-words N``): a frequency list of large general corpora
standing in for the big LM text a real recipe has (LibriSpeech's 200k words), which the
synthetic corpus lacks. recipes/synth/local/lm_sweep.sh measures the graphs and WERs.
"""

from __future__ import annotations

import sys
from pathlib import Path

from asr_distill.data.kaldi_dir import read_table
from asr_distill.data.synth.text import (
    fortune_files,
    load_cmudict,
    normalise_sentence,
    normalise_words,
    read_fortune_entries,
    split_sentences,
)
from asr_distill.lang.dictionary import frequent_english_words


def main(work_dir: Path, tops: list[int]) -> None:
    def texts(split: str) -> list[str]:
        return list(read_table(work_dir / "data" / split / "text", allow_empty_value=True).values())

    lexicon = load_cmudict()
    dev = [w for t in texts("dev") for w in t.split()]
    held = set(texts("dev")) | set(texts("test"))
    vocab = {w for t in texts("train") for w in t.split()}
    lm_text = (work_dir / "corpus" / "lm_text.txt").read_text(encoding="utf-8")
    vocab |= set(lm_text.split())
    extra: set[str] = set()
    skipped = 0
    for path in fortune_files():
        for entry in read_fortune_entries(path):
            raws = split_sentences(entry)
            kept = [normalise_sentence(r, lexicon) for r in raws]
            if any(k in held for k in kept if k):
                skipped += 1
                continue
            for raw, k in zip(raws, kept, strict=True):
                words = normalise_words(raw) if k is None else None
                extra.update(w for w in words or () if w in lexicon)

    def oov(v: set[str]) -> float:
        return 100.0 * sum(w not in v for w in dev) / len(dev)

    print(f"dev tokens {len(dev)}; fortune entries left out (hold dev/test) {skipped}")
    print(f"train + lm_text: {len(vocab)} words, dev OOV {oov(vocab):.2f} %")
    both = vocab | extra
    print(f"+ rejected fortune sentences: {len(both)} words, dev OOV {oov(both):.2f} %")
    for n in tops:
        frequent = {w for w in frequent_english_words(n) if w in lexicon}
        v = vocab | frequent
        print(f"train + lm_text + the {n} most frequent ({len(frequent)} in CMUdict): "
              f"{len(v)} words, dev OOV {oov(v):.2f} %")  # fmt: skip


if __name__ == "__main__":
    main(Path(sys.argv[1]), [int(n) for n in sys.argv[2:]])
