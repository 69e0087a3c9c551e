"""Tests of the modified Kneser-Ney LM trainer, the ARPA reader and perplexity.

Golden values come from brute force written independently here (set-based counts,
a recursive interpolated-KN formula, a separate ARPA parser with the backoff rule)
and from a tiny corpus worked out by hand.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from asr_distill.cli import main
from asr_distill.errors import InputError
from asr_distill.lang.lm import (
    BackoffLM,
    LmConfig,
    compute_perplexity,
    iter_sentences,
    modified_kn_discounts,
    perplexity,
    read_vocab,
    train_kn_lm,
    train_lm,
)

BOS, EOS = "<s>", "</s>"
WORDS = [f"w{i}" for i in range(40)]
KNOWN = WORDS[:30]  # a vocabulary that leaves out the rarest words


def toy_corpus(num_sentences: int = 400, seed: int = 0) -> list[list[str]]:
    """Sentences mixing a first-order Markov chain with Zipfian draws.

    Like real text, it has frequent n-grams and a tail of rare ones; with the defaults
    every order up to 4 has count-of-counts that give valid discounts.
    """
    rng = random.Random(seed)
    zipf = [1 / (r + 1) for r in range(len(WORDS))]
    succ = {w: rng.sample(WORDS[:15], 4) for w in [BOS, *WORDS]}
    out = []
    for _ in range(num_sentences):
        words, prev = [], BOS
        for _ in range(rng.randint(1, 7)):
            markov = rng.random() < 0.7
            prev = rng.choice(succ[prev]) if markov else rng.choices(WORDS, zipf)[0]
            words.append(prev)
        out.append(words)
    return out


def write_lines(path: Path, sentences: list[list[str]]) -> Path:
    path.write_text("".join(" ".join(s) + "\n" for s in sentences), encoding="utf-8")
    return path


# ----------------------------------------------------------------- independent brute force


def brute_kn_counts(sentences, order):
    """Adjusted KN counts per order, from sets of left neighbours (the textbook definition)."""
    raw = [Counter() for _ in range(order)]
    left = [defaultdict(set) for _ in range(order)]
    for s in sentences:
        toks = [BOS, *s, EOS]
        for i in range(1, len(toks)):  # position of the predicted word
            for n in range(1, order + 1):
                start = i - n + 1
                if start < 0:
                    break
                g = tuple(toks[start : i + 1])
                raw[n - 1][g] += 1
                if start > 0:
                    left[n - 1][g].add(toks[start - 1])
    adjusted = []
    for n in range(1, order + 1):
        if n == order:
            adjusted.append(dict(raw[n - 1]))
        else:
            adjusted.append(
                {g: (c if g[0] == BOS else len(left[n - 1][g])) for g, c in raw[n - 1].items()}
            )
    return raw, adjusted


def brute_discounts(adjusted_n):
    n = [sum(1 for a in adjusted_n.values() if a == k) for k in (1, 2, 3, 4)]
    y = n[0] / (n[0] + 2 * n[1])
    return tuple(k - (k + 1) * y * n[k] / n[k - 1] for k in (1, 2, 3))


def brute_kn_prob(word, history, followers_by_order, discounts, vocab):
    """Interpolated modified KN p(word | history), recursively from the formula.

    ``followers_by_order[n - 1][h]`` maps each word w to the adjusted count a(h w).
    """
    n = len(history) + 1
    followers = followers_by_order[n - 1].get(tuple(history), {})
    d = discounts[n - 1]
    if n == 1:
        total = sum(followers.values())
        gamma = sum(d[min(a, 3) - 1] for a in followers.values()) / total
        a = followers.get(word, 0)
        own = (a - d[min(a, 3) - 1]) / total if a else 0.0
        return own + gamma / len(vocab)
    lower = brute_kn_prob(word, history[1:], followers_by_order, discounts, vocab)
    if not followers:
        return lower
    total = sum(followers.values())
    gamma = sum(d[min(a, 3) - 1] for a in followers.values()) / total
    a = followers.get(word, 0)
    own = (a - d[min(a, 3) - 1]) / total if a else 0.0
    return own + gamma * lower


def parse_arpa(path):
    """A minimal ARPA parser of its own: {ngram: (log10 p, log10 bow)} and the header."""
    ngrams, header, n = {}, {}, 0
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line.startswith("ngram "):
            k, v = line[6:].split("=")
            header[int(k)] = int(v)
        elif line.endswith("-grams:"):
            n = int(line[1])
        elif line and n and not line.startswith("\\"):
            f = line.split()
            ngrams[tuple(f[1 : n + 1])] = (float(f[0]), float(f[n + 1]) if len(f) > n + 1 else 0.0)
    return ngrams, header


def backoff_prob(ngrams, word, history):
    """p(w | h) = p*(h w) if listed, else bow(h) p(w | h'), written out afresh."""
    h = tuple(history)
    if (*h, word) in ngrams:
        return 10 ** ngrams[(*h, word)][0]
    bow = 10 ** ngrams[h][1] if h in ngrams else 1.0
    return bow * backoff_prob(ngrams, word, h[1:])


def seen_histories(sentences, order):
    """Every history of length 0..order-1 that occurs before a predicted word."""
    out = set()
    for s in sentences:
        toks = [BOS, *s, EOS]
        for i in range(1, len(toks)):
            for k in range(order):
                if i - k >= 0:
                    out.add(tuple(toks[i - k : i]))
    return out


# ----------------------------------------------------------------- discounts


def test_discount_formula_by_hand():
    # n = (10, 4, 2, 1): Y = 10/18 = 5/9; D1 = 1 - 2Y 4/10 = 5/9; D2 = 2 - 3Y 2/4 = 7/6;
    # D3+ = 3 - 4Y 1/2 = 17/9.
    d = modified_kn_discounts((10, 4, 2, 1))
    assert d == pytest.approx((5 / 9, 7 / 6, 17 / 9), abs=1e-12)
    assert modified_kn_discounts((3, 0, 1, 1)) is None  # n_2 = 0
    assert modified_kn_discounts((10, 1, 10, 1)) is None  # D2 = 2 - 3 (10/12) 10 < 0


def test_discounts_from_count_of_counts_match_brute_force():
    sents = toy_corpus()
    _, stats, _ = train_kn_lm(sents, LmConfig(order=3))
    _, adjusted = brute_kn_counts(sents, 3)
    for n in range(1, 4):
        assert not stats.used_fallback[n - 1]
        assert stats.discounts[n - 1] == pytest.approx(brute_discounts(adjusted[n - 1]), 1e-12)


# ----------------------------------------------------------------- probabilities


def test_arpa_probabilities_equal_interpolated_kn_formula(tmp_path):
    sents = toy_corpus()
    model, stats, counts = train_kn_lm(sents, LmConfig(order=3))
    model.write_arpa(tmp_path / "lm.arpa")
    lm = BackoffLM.read_arpa(tmp_path / "lm.arpa")
    _, adjusted = brute_kn_counts(sents, 3)
    followers = [defaultdict(dict) for _ in adjusted]
    for n, table in enumerate(adjusted):
        for g, a in table.items():
            followers[n][g[:-1]][g[-1]] = a
    vocab = sorted(counts.vocab - {BOS})
    histories = sorted(h for h in seen_histories(sents, 3) if len(h) == 2)[::10]
    for h in [(), ("w0",), (BOS,), ("w37",), *histories]:
        for w in vocab:
            want = brute_kn_prob(w, h, followers, stats.discounts, vocab)
            assert 10 ** lm.log10_prob(w, h) == pytest.approx(want, rel=1e-6), (h, w)


@pytest.mark.parametrize("order", [2, 3, 4])
@pytest.mark.parametrize("prune", [[], [0, 1], [0, 1, 2]])
def test_every_seen_history_sums_to_one(tmp_path, order, prune):
    sents = toy_corpus()
    prune = prune[:order]
    model, stats, counts = train_kn_lm(sents, LmConfig(order=order, prune=prune))
    model.write_arpa(tmp_path / "lm.arpa")
    ngrams, header = parse_arpa(tmp_path / "lm.arpa")
    assert header == {n: stats.num_ngrams[n - 1] for n in range(1, order + 1)}
    if prune:
        assert sum(stats.num_pruned) > 0
    for g in ngrams:  # prefixes and suffixes of every listed n-gram are listed
        if len(g) > 1:
            assert g[:-1] in ngrams and g[1:] in ngrams, g
    vocab = sorted(counts.vocab - {BOS})
    lm = BackoffLM.read_arpa(tmp_path / "lm.arpa")
    for h in seen_histories(sents, order):
        total = sum(backoff_prob(ngrams, w, h) for w in vocab)
        assert total == pytest.approx(1.0, abs=1e-4), h
        assert 10 ** lm.log10_prob("w1", h) == pytest.approx(backoff_prob(ngrams, "w1", h))


def test_pruning_drops_low_count_ngrams():
    sents = toy_corpus()
    raw, _ = brute_kn_counts(sents, 3)
    model, stats, _ = train_kn_lm(sents, LmConfig(order=3, prune=[0, 1, 2]))
    assert set(model.ngrams[1]) == {g for g, c in raw[1].items() if c > 1}
    assert set(model.ngrams[2]) == {g for g, c in raw[2].items() if c > 2}
    assert stats.num_pruned[2] == sum(1 for c in raw[2].values() if c <= 2)


# ----------------------------------------------------------------- hand-computed tiny corpus

TINY = [["a", "b"], ["a", "c"], ["b"]]
# Bigram LM. Every count-of-counts has n_3 = 0, so D = (0.5, 1.0, 1.5) at both orders.
# Unigram continuation counts: a 1, b 2 (after a, <s>), c 1, </s> 2; S = 6, |V| = 5
# (a b c </s> <unk>), gamma = (0.5*2 + 1.0*2)/6 = 1/2:
#   p(a) = p(c) = 0.5/6 + 0.5/5 = 0.183333..., p(b) = p(</s>) = 1/6 + 0.1, p(<unk>) = 0.1.
# History <s>: c(<s> a) = 2, c(<s> b) = 1, gamma = (1.0 + 0.5)/3 = 1/2:
#   p(a|<s>) = (2-1)/3 + 0.5 * 0.183333 = 0.425; p(b|<s>) = 0.5/3 + 0.5 * 0.266667 = 0.3.
# History a: b 1, c 1, gamma = 1/2: p(b|a) = 0.5/2 + 0.5 * 0.266667 = 0.383333...
# History b: </s> 2, gamma = 1/2: p(</s>|b) = 1/2 + 0.5 * 0.266667 = 0.633333...
# Backing off: p(<unk>|a) = bow(a) p(<unk>) = 0.05; p(</s>|<unk>) = p(</s>) = 0.266667.


def test_tiny_corpus_by_hand(tmp_path):
    model, stats, _ = train_kn_lm(TINY, LmConfig(order=2))
    assert stats.used_fallback == [True, True]
    model.write_arpa(tmp_path / "lm.arpa")
    lm = BackoffLM.read_arpa(tmp_path / "lm.arpa")

    def p(w, *h):
        return 10 ** lm.log10_prob(w, list(h))

    assert p("a", BOS) == pytest.approx(0.425, abs=1e-6)
    assert p("b", BOS) == pytest.approx(0.3, abs=1e-6)
    assert p("b", "a") == pytest.approx(0.5 / 2 + 0.5 * (1 / 6 + 0.1), abs=1e-6)
    assert p("</s>", "b") == pytest.approx(0.5 + 0.5 * (1 / 6 + 0.1), abs=1e-6)
    assert p("<unk>") == pytest.approx(0.1, abs=1e-6)
    assert p("<unk>", "a") == pytest.approx(0.05, abs=1e-6)
    assert lm.log10_prob("a", ["a"]) == pytest.approx(math.log10(0.5 * (0.5 / 6 + 0.1)), abs=1e-6)
    assert lm.ngrams[0][(BOS,)][0] == -99.0

    res = perplexity(lm, [["a", "b"], ["a", "zebra"]])
    want = math.log10(0.425 * (0.5 / 2 + 0.5 * (1 / 6 + 0.1)) * (0.5 + 0.5 * (1 / 6 + 0.1)))
    want += math.log10(0.425 * 0.05 * (1 / 6 + 0.1))
    assert (res.num_sentences, res.num_words, res.num_oovs, res.oovs_included) == (2, 4, 1, True)
    assert res.log10_prob == pytest.approx(want, abs=1e-6)
    assert res.ppl == pytest.approx(10 ** (-want / 6), rel=1e-6)
    assert res.ppl1 == pytest.approx(10 ** (-want / 4), rel=1e-6)
    assert res.log10_prob_in_vocab == pytest.approx(want - math.log10(0.05), abs=1e-6)


# ----------------------------------------------------------------- perplexity


def test_perplexity_equals_brute_force_loop(tmp_path):
    sents = toy_corpus()
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(KNOWN) + "\n", encoding="utf-8")
    summary = train_lm(
        [write_lines(tmp_path / "train.txt", sents)],
        tmp_path / "lm",
        LmConfig(order=3, vocab=str(vocab)),
    )
    dev_sents = [*toy_corpus(30, seed=7), ["w0", "zebra", "w1"]]
    dev = write_lines(tmp_path / "dev.txt", dev_sents)
    res = compute_perplexity(summary.arpa_path, [dev])

    lm = BackoffLM.read_arpa(summary.arpa_path)
    known = set(KNOWN)
    total, tokens, oovs = 0.0, 0, 0
    for s in dev_sents:
        mapped = [w if w in known else "<unk>" for w in s]
        oovs += sum(w not in known for w in s)
        toks = [BOS, *mapped, EOS]
        for i in range(1, len(toks)):
            total += lm.log10_prob(toks[i], toks[max(0, i - 2) : i])
            tokens += 1
    assert oovs > 3
    assert (res.num_oovs, res.oovs_included) == (oovs, True)
    assert res.log10_prob == pytest.approx(total, abs=1e-9)
    assert res.ppl == pytest.approx(10 ** (-total / tokens), rel=1e-9)
    assert summary.dev_perplexity is None


def test_unk_and_vocabulary_handling(tmp_path):
    sents = toy_corpus()
    vocab = tmp_path / "words.txt"
    # Kaldi words.txt: ids are ignored, so are <eps>, <s>, </s> and #0.
    kept = ["<eps>", *KNOWN, "unseen", BOS, EOS, "#0"]
    vocab.write_text("".join(f"{w} {i}\n" for i, w in enumerate(kept)), encoding="utf-8")
    assert read_vocab(vocab) == {*KNOWN, "unseen"}
    model, _, counts = train_kn_lm(sents, LmConfig(order=2, vocab=str(vocab)))
    assert counts.num_mapped_to_unk == sum(w not in KNOWN for s in sents for w in s) > 0
    assert "w35" not in model and "w39" not in model
    assert "<unk>" in model and ("w0", "<unk>") in model.ngrams[1]
    # A vocabulary word never seen in training only has the uniform share gamma / |V|.
    assert "unseen" in model and model.log10_prob("unseen", []) < model.log10_prob("<unk>", [])

    # Without <unk> in the model, OOVs are skipped and counted.
    no_unk = BackoffLM([{g: v for g, v in t.items() if "<unk>" not in g} for t in model.ngrams])
    res = perplexity(no_unk, [["w0", "w35", "w1"]])
    assert (res.num_oovs, res.oovs_included) == (1, False)
    want = (
        no_unk.log10_prob("w0", [BOS])
        + no_unk.log10_prob("w1", ["w35"])
        + no_unk.log10_prob(EOS, ["w1"])
    )
    assert res.log10_prob == pytest.approx(want)
    assert res.ppl == pytest.approx(10 ** (-want / 3))


def test_arpa_loads_with_kaldilm(tmp_path, capfd):
    kaldilm = pytest.importorskip("kaldilm")
    model, _, counts = train_kn_lm(toy_corpus(), LmConfig(order=3, prune=[0, 0, 1]))
    arpa = tmp_path / "lm.arpa"
    model.write_arpa(arpa)
    symbols = ["<eps>", *sorted(counts.vocab), "#0"]
    words_txt = tmp_path / "words.txt"
    words_txt.write_text("".join(f"{w} {i}\n" for i, w in enumerate(symbols)), encoding="utf-8")
    text = kaldilm.arpa2fst(
        str(arpa),
        str(tmp_path / "G.fst"),
        disambig_symbol="#0",
        read_symbol_table=str(words_txt),
    )
    err = capfd.readouterr().err
    assert "[W]" not in err and "[E]" not in err
    assert (tmp_path / "G.fst").stat().st_size > 0
    arcs = [line.split() for line in text.splitlines() if len(line.split()) >= 4]
    for g in [g for g in sorted(model.ngrams[1]) if BOS not in g and EOS not in g][:5]:
        label = str(symbols.index(g[1]))
        cost = -math.log(10) * model.ngrams[1][g][0]
        assert any(a[2] == label and abs(float(a[4]) - cost) < 1e-4 for a in arcs), g


def test_gzipped_arpa_reads_like_plain(tmp_path):
    import gzip

    model, _, _ = train_kn_lm(toy_corpus(), LmConfig(order=3))
    arpa = tmp_path / "lm.arpa"
    model.write_arpa(arpa)
    gz = tmp_path / "lm.arpa.gz"
    gz.write_bytes(gzip.compress(arpa.read_bytes()))
    assert BackoffLM.read_arpa(gz).ngrams == BackoffLM.read_arpa(arpa).ngrams


# ----------------------------------------------------------------- bad input


def test_bad_input_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"a b\nc \xff d\n")
    with pytest.raises(InputError) as e:
        train_kn_lm(iter_sentences([bad]))
    assert (e.value.path, e.value.line) == (str(bad), 2)

    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(InputError, match="empty") as e:
        list(iter_sentences([empty]))
    assert e.value.path == str(empty)

    marker = tmp_path / "marker.txt"
    marker.write_text("<s> a b </s>\na </s> b\n", encoding="utf-8")
    with pytest.raises(InputError) as e:
        list(iter_sentences([marker]))
    assert e.value.line == 2

    arpa = tmp_path / "bad.arpa"
    arpa.write_text("\\data\\\nngram 1=2\n\n\\1-grams:\n-1.0\ta\nx\tb\n\\end\\\n", encoding="utf-8")
    with pytest.raises(InputError) as e:
        BackoffLM.read_arpa(arpa)
    assert (e.value.path, e.value.line) == (str(arpa), 6)

    with pytest.raises(ValueError, match="first value"):
        LmConfig(prune=[1, 1])
    with pytest.raises(ValueError, match="decrease"):
        LmConfig(prune=[0, 2, 1])


def test_kaldi_text_strips_utterance_ids(tmp_path):
    text = tmp_path / "text"
    text.write_text("utt1 HELLO WORLD\nutt2\nutt3 HELLO\n", encoding="utf-8")
    assert list(iter_sentences([text], kaldi_text=True)) == [["HELLO", "WORLD"], ["HELLO"]]


def test_data_dir_text_mixes_with_plain_text(tmp_path):
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "text").write_text("utt1 HELLO WORLD\n", encoding="utf-8")
    (tmp_path / "lm.txt").write_text("GOOD DAY\n", encoding="utf-8")
    got = list(iter_sentences([tmp_path / "lm.txt", tmp_path / "dev"]))
    assert got == [["GOOD", "DAY"], ["HELLO", "WORLD"]]


# ----------------------------------------------------------------- the command line


def test_cli_train_lm_and_perplexity(tmp_path, capsys):
    train = write_lines(tmp_path / "train.txt", toy_corpus(200))
    dev = write_lines(tmp_path / "dev.txt", toy_corpus(20, seed=3))
    out = tmp_path / "lm"
    argv = ["train-lm", str(train), str(out), "--order", "2", "--prune", "0,1"]
    assert main([*argv, "--dev-text", str(dev)]) == 0
    for name in ("lm.arpa", "config.yaml", "log/train-lm.log", "perplexity.txt", ".done"):
        assert (out / name).is_file(), name
    assert "prune:\n- 0\n- 1\n" in (out / "config.yaml").read_text()
    report = (out / "perplexity.txt").read_text()
    capsys.readouterr()
    assert main(["lm-perplexity", str(out / "lm.arpa"), str(dev)]) == 0
    assert capsys.readouterr().out.split("\n")[1:] == report.split("\n")[1:]

    before = (out / "lm.arpa").stat().st_mtime_ns
    assert main(argv) == 0  # finished with the same settings: a no-op
    assert main([*argv[:3], "--order", "3"]) == 1  # other settings: refused, not reused
    assert "finished with other settings (order: 2 -> 3" in capsys.readouterr().err
    assert (out / "lm.arpa").stat().st_mtime_ns == before
    assert main([*argv[:3], "--order", "3", "--force"]) == 0
    assert BackoffLM.read_arpa(out / "lm.arpa").order == 3

    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    assert main(["train-lm", str(empty), str(tmp_path / "lm2")]) == 1
    assert main(["train-lm", str(train), str(tmp_path / "lm3"), "--prune", "1"]) == 1
