"""Mixing up (Kaldi's GetSplitTargets and DiagGmm::Split, seeded) and the
reproducibility of GMM training it gives."""

from __future__ import annotations

import kaldi_hmm_gmm as khg
import numpy as np
import pytest

from asr_distill.cli import main
from asr_distill.hmm.em import split_by_count, split_gmm, split_targets
from asr_distill.hmm.model import make_diag_gmm


def random_am(rng: np.random.Generator, num_pdfs: int, dim: int = 3) -> khg.AmDiagGmm:
    am = khg.AmDiagGmm()
    for _ in range(num_pdfs):
        n = int(rng.integers(1, 3))
        w = rng.uniform(0.2, 1.0, n)
        am.add_pdf(make_diag_gmm(w / w.sum(), rng.uniform(0.5, 2.0, (n, dim)),
                                 rng.standard_normal((n, dim))))  # fmt: skip
    return am


@pytest.mark.parametrize("power,min_count", [(0.25, 20.0), (0.2, 3.0), (1.0, 50.0)])
def test_split_targets_match_kaldi_hmm_gmm(power, min_count):
    """Our targets give each pdf as many Gaussians as kaldi-hmm-gmm's SplitByCount."""
    rng = np.random.default_rng(7)
    occs = np.round(rng.gamma(1.0, 300.0, 40)).astype(np.float32)
    occs[:3] = [0.0, 5.0, 41.0]  # no data; too little to split; split once at min_count 20
    theirs = random_am(np.random.default_rng(1), len(occs))
    ours = random_am(np.random.default_rng(1), len(occs))
    target = 4 * len(occs)
    theirs.split_by_count(state_occs=occs, target_components=target, perturb_factor=0.01,
                          power=power, min_count=min_count)  # fmt: skip
    split_by_count(ours, occs, target, perturb_factor=0.01, power=power, min_count=min_count,
                   rng=np.random.default_rng(0))  # fmt: skip
    assert [ours.num_gauss_in_pdf(p) for p in range(len(occs))] == [
        theirs.num_gauss_in_pdf(p) for p in range(len(occs))
    ]
    counts = split_targets(occs, target, power, min_count)
    assert counts[0] == 1 and counts[1] == 1 and counts.min() >= 1
    assert counts.sum() <= target


def test_split_gmm_halves_heaviest_and_is_seeded():
    rng = np.random.default_rng(3)
    w = np.array([0.7, 0.3], np.float32)
    inv_vars = rng.uniform(0.5, 2.0, (2, 4)).astype(np.float32)
    means = rng.standard_normal((2, 4)).astype(np.float32)

    def split(seed: int) -> khg.DiagGmm:
        gmm = make_diag_gmm(w, inv_vars, means)
        split_gmm(gmm, 3, 0.01, np.random.default_rng(seed))
        return gmm

    a, b, c = split(0), split(0), split(1)
    np.testing.assert_allclose(np.asarray(a.weights), [0.35, 0.3, 0.35], atol=1e-7)
    new_means = np.asarray(a.means)
    # The two halves straddle the old mean, apart by 2 * 0.01 * n / sqrt(inv_var).
    np.testing.assert_allclose((new_means[0] + new_means[2]) / 2, means[0], atol=1e-5)
    np.testing.assert_allclose(new_means[1], means[1], atol=1e-6)
    assert np.all(np.abs(new_means[2] - new_means[0]) > 0)
    np.testing.assert_allclose(np.asarray(a.inv_vars)[2], inv_vars[0])
    np.testing.assert_array_equal(np.asarray(a.means), np.asarray(b.means))
    assert not np.array_equal(np.asarray(a.means), np.asarray(c.means))


def test_train_mono_same_model_for_any_nj(mono, gmm_system):
    """Two runs of train-mono, with --nj 2 (the fixture) and --nj 1, give the same
    model to the byte: Gaussian splits are seeded, statistics summed in one order."""
    data, lang = gmm_system / "data" / "train_mfcc", gmm_system / "data" / "lang"
    out = gmm_system / "exp" / "mono_nj1"
    assert main(["train-mono", "--nj", "1", "--num-iters", "12", "--tot-gauss", "300",
                 str(data), str(lang), str(out)]) == 0  # fmt: skip
    assert (out / "train_curve.tsv").read_text() == (mono / "train_curve.tsv").read_text()
    for name in ("final.gmm.safetensors", "tree"):
        assert (out / name).read_bytes() == (mono / name).read_bytes(), name
    other_seed = gmm_system / "exp" / "mono_seed1"
    assert main(["train-mono", "--nj", "2", "--num-iters", "12", "--tot-gauss", "300",
                 "--seed", "1", str(data), str(lang), str(other_seed)]) == 0  # fmt: skip
    gmm = "final.gmm.safetensors"
    assert (other_seed / gmm).read_bytes() != (mono / gmm).read_bytes()
