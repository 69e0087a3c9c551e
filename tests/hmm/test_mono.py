"""Monophone training, alignment dirs, the model container and GMM features."""

from __future__ import annotations

import kaldi_hmm_gmm as khg
import numpy as np
import pytest

from asr_distill.cli import main
from asr_distill.hmm.align import read_alignments, tids_to_pdfs
from asr_distill.hmm.feats import add_deltas, delta_scales
from asr_distill.hmm.model import GmmHmm
from asr_distill.hmm.train import load_training_data


def test_add_deltas_is_kaldis_delta_features():
    """Kaldi's DeltaFeatures: order 1 the regression over +-2 frames, order 2 the
    regression of the regression with the INPUT's edge frames repeated (not the
    first-order deltas'), which differs from delta(delta(x)) only near the edges."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((12, 2)).astype(np.float32)
    out = add_deltas(x)
    assert out.shape == (12, 6)
    T = len(x)

    def at(t):
        return x[min(max(t, 0), T - 1)]

    d1 = np.stack([sum(n * at(t + n) for n in (-2, -1, 1, 2)) / 10 for t in range(T)])
    d2 = np.stack([sum(m * n * at(t + m + n) for m in (-2, -1, 1, 2) for n in (-2, -1, 1, 2))
                   / 100 for t in range(T)])  # fmt: skip
    np.testing.assert_array_equal(out[:, :2], x)
    np.testing.assert_allclose(out[:, 2:4], d1, atol=1e-6)
    np.testing.assert_allclose(out[:, 4:6], d2, atol=1e-6)

    def regression(c):  # edges of c repeated
        padded = np.concatenate([c[:1], c[:1], c, c[-1:], c[-1:]])
        return np.stack([sum(n * (padded[t + 2 + n] - padded[t + 2 - n]) for n in (1, 2)) / 10
                         for t in range(len(c))])  # fmt: skip

    interior = slice(4, T - 4)  # 4 = the second-order filter's reach
    np.testing.assert_allclose(out[interior, 4:6], regression(regression(x))[interior], atol=1e-6)
    assert not np.allclose(out[:2, 4:6], regression(regression(x))[:2], atol=1e-6)
    assert [len(s) for s in delta_scales()] == [1, 5, 9]


def read_curve(exp):
    rows = [line.split("\t") for line in (exp / "train_curve.tsv").read_text().splitlines()]
    return [(int(r[0]), float(r[1]), int(r[3])) for r in rows[1:]]


def test_mono_likelihood_rises_and_gaussians_grow(mono):
    curve = read_curve(mono)
    assert [it for it, _, _ in curve] == list(range(12))
    likes = [like for _, like, _ in curve]
    assert likes[-1] > likes[0] + 3.0  # nats per frame over the flat start
    assert likes[-1] >= max(likes[:-1]) - 0.05  # ends at (about) its best
    gauss = [g for _, _, g in curve]
    assert gauss == sorted(gauss) and gauss[-1] > gauss[0]
    log_text = (mono / "log" / "train.log").read_text()
    assert "iter 11: avg log-likelihood per frame" in log_text


def test_model_round_trip_is_exact(mono, gmm_system):
    model = GmmHmm.load(mono)
    # Word-position variants share pdfs (phones/sets.int), as Kaldi's --shared-phones.
    lang = load_training_data(gmm_system / "data" / "dev_mfcc", gmm_system / "data" / "lang").lang
    tm = model.trans_model
    pdfs_of: dict[int, set[int]] = {}
    for tid in range(1, tm.num_transition_ids + 1):
        pdfs_of.setdefault(tm.transition_id_to_phone(tid), set()).add(tm.transition_id_to_pdf(tid))
    assert set().union(*pdfs_of.values()) == set(range(model.num_pdfs))  # every pdf used
    lang_dir = gmm_system / "data" / "lang"
    shared = [[int(x) for x in line.split()]
              for line in (lang_dir / "phones" / "sets.int").read_text().splitlines()]  # fmt: skip
    assert any(len(s) > 1 for s in shared)
    for phones in shared:  # one set of pdfs per shared set, none outside it
        assert len({frozenset(pdfs_of[p]) for p in phones}) == 1, phones
    owners = [frozenset(pdfs_of[s[0]]) for s in shared]
    assert sum(len(o) for o in owners) == model.num_pdfs  # disjoint between sets
    assert model.num_pdfs < 3 * len(lang.nonsilence)
    model.save(mono.parent / "copy")
    again = GmmHmm.load(mono.parent / "copy")
    assert (mono / "tree").read_bytes() == (mono.parent / "copy" / "tree").read_bytes()
    assert (mono / "tree").read_bytes().startswith(b"\0BContextDependency ")
    np.testing.assert_array_equal(model.trans_model.log_probs, again.trans_model.log_probs)
    # Training updated the transition probabilities, and loading kept them.
    flat = khg.TransitionModel(ctx_dep=model.ctx_dep, hmm_topo=model.topo)
    assert not np.allclose(flat.log_probs, model.trans_model.log_probs)
    state, state2 = model.trans_model.__getstate__(), again.trans_model.__getstate__()
    np.testing.assert_allclose(state[7], state2[7], atol=1e-6)  # derived non-self-loop probs
    x = np.random.default_rng(1).standard_normal(model.dim).astype(np.float32)
    for pdf in (0, model.num_pdfs // 2, model.num_pdfs - 1):
        assert again.am.log_likelihood(pdf, x) == pytest.approx(model.am.log_likelihood(pdf, x))


def test_align_writes_complete_alignment_dir(mono, gmm_system):
    data, lang = gmm_system / "data" / "train_mfcc", gmm_system / "data" / "lang"
    ali = gmm_system / "exp" / "mono_ali_train"
    assert main(["align", "--nj", "2", str(data), str(lang), str(mono), str(ali)]) == 0
    model = GmmHmm.load(ali)
    lang_phones = {line.split()[0] for line in (lang / "phones.txt").read_text().splitlines()}
    tids, pdfs = read_alignments(ali), read_alignments(ali, "pdf.ark")
    n_utts = len((data / "text").read_text().splitlines())
    failed = (ali / "failed.txt").read_text().splitlines()
    assert len(tids) + len(failed) == n_utts  # nothing dropped silently
    assert len(tids) >= 0.9 * n_utts
    num_frames = dict(
        line.split() for line in (data / "utt2num_frames")
        .read_text().splitlines()
    )  # fmt: skip
    counts = np.zeros(model.num_pdfs, np.int64)
    for utt, t in tids.items():
        assert len(t) == int(num_frames[utt])
        np.testing.assert_array_equal(pdfs[utt], tids_to_pdfs(model, t))
        counts += np.bincount(pdfs[utt], minlength=model.num_pdfs)
    assert (ali / "pdf_counts").read_text().split() == [str(c) for c in counts]
    assert int((ali / "num_pdfs").read_text()) == model.num_pdfs
    # phones.ctm tiles each utterance exactly, with phone names from phones.txt.
    ctm: dict[str, list[list[str]]] = {}
    for line in (ali / "phones.ctm").read_text().splitlines():
        utt, _, start, dur, phone = line.split()
        ctm.setdefault(utt, []).append([float(start), float(dur), phone])
    for utt, segs in ctm.items():
        assert sum(d for _, d, _ in segs) == pytest.approx(len(tids[utt]) * 0.01, abs=1e-6)
        ends = [round(s + d, 2) for s, d, _ in segs]
        assert [s for s, _, _ in segs] == [0.0, *ends[:-1]]
        assert all(p in lang_phones for _, _, p in segs)
    # A second run is a no-op.
    mtime = (ali / "ali.ark").stat().st_mtime_ns
    assert main(["align", str(data), str(lang), str(mono), str(ali)]) == 0
    assert (ali / "ali.ark").stat().st_mtime_ns == mtime


def test_unalignable_utterance_is_listed_not_dropped(mono, gmm_system, tmp_path):
    src = gmm_system / "data" / "dev_mfcc"
    data = tmp_path / "data"
    data.mkdir()
    for name in ("feats.scp", "cmvn.scp", "utt2spk", "spk2utt"):
        (data / name).write_text((src / name).read_text())
    lines = (src / "text").read_text().splitlines()
    first = lines[0].split()[0]
    # Far more words than the audio has frames for: no path through the graph.
    lines[0] = first + " " + " ".join(["EVERYBODY"] * 150)
    (data / "text").write_text("\n".join(lines) + "\n")
    ali = tmp_path / "ali"
    assert main(["align", str(data), str(gmm_system / "data" / "lang"), str(mono), str(ali)]) == 0
    failed = dict(line.split(" ", 1) for line in (ali / "failed.txt").read_text().splitlines())
    assert first in failed
    assert first not in read_alignments(ali)
    assert "failed" in (ali / "log" / "align.log").read_text()


def test_truncated_or_foreign_tree_is_a_clear_error(mono, tmp_path):
    import shutil

    from asr_distill.errors import InputError

    copy = tmp_path / "mono"
    shutil.copytree(mono, copy)
    tree = (copy / "tree").read_bytes()
    for bad in (tree[: len(tree) // 2], b"hello world\n", b""):
        (copy / "tree").write_bytes(bad)
        with pytest.raises(InputError, match=r"tree: not a Kaldi tree"):
            GmmHmm.load(copy)
