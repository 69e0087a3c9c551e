"""Feature transforms of GMM systems: splicing, LDA, MLLT and Kaldi's matrix files."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from asr_distill.errors import InputError
from asr_distill.hmm.transforms import (
    FeatureTransform,
    FmllrStats,
    LdaStats,
    MlltStats,
    accumulate_mllt,
    apply_fmllr,
    estimate_fmllr,
    estimate_lda,
    estimate_mllt,
    fmllr_objective,
    mllt_objective,
    splice,
)


def test_splice_repeats_the_edge_frames_as_kaldi():
    x = np.arange(4, dtype=np.float32)[:, None] * np.array([[1, 10]], np.float32)
    out = splice(x, 1, 2)
    assert out.shape == (4, 8)
    # frame 0: frames -1 (= 0), 0, 1, 2; frame 3: 2, 3, 4 (= 3), 5 (= 3)
    assert out[0].tolist() == [0, 0, 0, 0, 1, 10, 2, 20]
    assert out[3].tolist() == [2, 20, 3, 30, 3, 30, 3, 30]


def _classes(rng, num_classes=6, dim=5, per_class=400):
    within = rng.normal(size=(dim, dim))
    centres = rng.normal(size=(num_classes, dim)) * 3
    labels = np.repeat(np.arange(num_classes), per_class)
    x = centres[labels] + rng.normal(size=(len(labels), dim)) @ within.T
    return x, labels


def test_lda_solves_the_generalized_eigenproblem_directly():
    rng = np.random.default_rng(0)
    x, labels = _classes(rng)
    stats = LdaStats.zeros(6, 5)
    stats.accumulate(x[:1000], labels[:1000])
    stats.accumulate(x[1000:], labels[1000:])  # accumulation is additive
    lda, eigenvalues = estimate_lda(stats, 3)
    # direct solution: B v = s W v from the class statistics, v normalised to v' W v = 1
    mean = x.mean(0)
    means = np.stack([x[labels == c].mean(0) for c in range(6)])
    counts = np.bincount(labels)
    B = sum(n * np.outer(m - mean, m - mean) for n, m in zip(counts, means, strict=True))
    B /= len(x)
    W = sum(np.cov(x[labels == c].T, bias=True) * n for c, n in enumerate(counts)) / len(x)
    s, v = np.linalg.eig(np.linalg.solve(W, B))
    order = np.argsort(-s.real)
    v = v.real[:, order]
    v /= np.sqrt(np.einsum("dk,de,ek->k", v, W, v))
    np.testing.assert_allclose(eigenvalues[:5], s.real[order], rtol=1e-6, atol=1e-9)
    for k in range(3):  # rows equal up to sign
        sign = np.sign(lda[k] @ v[:, k])
        np.testing.assert_allclose(lda[k], sign * v[:, k], rtol=1e-5, atol=1e-8)
    # transformed: unit within-class covariance, diagonal between-class covariance
    np.testing.assert_allclose(lda @ W @ lda.T, np.eye(3), atol=1e-8)
    np.testing.assert_allclose(lda @ B @ lda.T, np.diag(s.real[order][:3]), atol=1e-8)


def test_lda_leaves_out_zero_weight_frames():
    rng = np.random.default_rng(1)
    x, labels = _classes(rng)
    junk = rng.normal(size=(300, 5)) * 50
    a, b = LdaStats.zeros(6, 5), LdaStats.zeros(6, 5)
    a.accumulate(x, labels)
    b.accumulate(np.vstack([x, junk]), np.concatenate([labels, np.zeros(300, int)]),
                 np.concatenate([np.ones(len(x)), np.zeros(300)]))  # fmt: skip
    np.testing.assert_allclose(estimate_lda(a, 4)[0], estimate_lda(b, 4)[0], atol=1e-9)
    with pytest.raises(ValueError, match="LDA dim"):
        estimate_lda(a, 6)


def _semi_tied_data(rng, dim=4, num_pdfs=3, gauss=2, frames=3000):
    """Frames of diagonal-covariance GMMs seen through a random square mixing matrix."""
    mix = rng.normal(size=(dim, dim)) + 2 * np.eye(dim)
    pdf_frames, means, covs, log_weights = {}, [], [], []
    for p in range(num_pdfs):
        mu = rng.normal(size=(gauss, dim)) * 2
        var = rng.uniform(0.2, 3.0, size=(gauss, dim))
        comp = rng.integers(gauss, size=frames)
        z = mu[comp] + rng.normal(size=(frames, dim)) * np.sqrt(var[comp])
        pdf_frames[p] = (z @ mix.T, np.ones(frames))
        means.append(mu @ mix.T)  # the Gaussians as seen through the mixing
        covs.append(np.stack([mix @ np.diag(v) @ mix.T for v in var]))
        log_weights.append(np.log(np.full(gauss, 1.0 / gauss)))
    return pdf_frames, means, covs, log_weights, mix


def _diag(covs, A):
    """The diagonal variances of Gaussians of full covariances ``covs`` seen through A."""
    return [np.stack([np.diag(A @ c @ A.T) for c in cs]) for cs in covs]


def test_mllt_objective_never_decreases_and_recovers_the_mixing():
    rng = np.random.default_rng(2)
    frames, means, covs, log_weights, mix = _semi_tied_data(rng)
    stats = accumulate_mllt(means, _diag(covs, np.eye(4)), log_weights, frames)
    assert stats.beta == 9000 and stats.G.shape == (4, 4, 4)
    objf = [mllt_objective(stats, np.eye(4))]
    for iters in (1, 2, 3, 5, 10, 30):
        A, gain = estimate_mllt(stats, max_iters=iters, tol=0.0)
        objf.append(mllt_objective(stats, A))
        np.testing.assert_allclose(gain, (objf[-1] - objf[0]) / stats.beta, rtol=1e-9)
    assert all(b >= a - 1e-6 for a, b in itertools.pairwise(objf)), objf
    assert objf[-1] > objf[0] + 0.1 * stats.beta
    # As in training, the model's variances are re-estimated in the new feature space
    # and MLLT estimated again; the composed transform then undoes the mixing up to the
    # scale and order of the dimensions: total @ mix is a scaled permutation.
    total = A
    for _ in range(4):
        moved = {p: (x @ total.T, w) for p, (x, w) in frames.items()}
        stats = accumulate_mllt([m @ total.T for m in means], _diag(covs, total), log_weights,
                                moved)  # fmt: skip
        total = estimate_mllt(stats)[0] @ total
    prod = np.abs(total @ mix)
    assert (prod.max(1) / prod.sum(1)).min() > 0.95, prod  # 0.84 after one estimation


def test_mllt_of_diagonal_data_is_near_the_unit_matrix():
    rng = np.random.default_rng(3)
    stats = MlltStats(1000.0, np.stack([np.diag(rng.uniform(900, 1100, 3)) for _ in range(3)]))
    stats.G[:] = 1000.0 * np.eye(3)
    A, gain = estimate_mllt(stats)
    np.testing.assert_allclose(np.abs(A), np.eye(3), atol=1e-6)
    assert abs(gain) < 1e-9


def test_transform_round_trips_through_kaldis_binary_matrix(tmp_path):
    rng = np.random.default_rng(4)
    m = rng.normal(size=(40, 91)).astype(np.float32)
    FeatureTransform(m, 3, 3).save(tmp_path)
    raw = (tmp_path / "final.mat").read_bytes()
    assert raw[:5] == b"\0BFM " and len(raw) == 5 + 10 + 40 * 91 * 4  # Kaldi's layout
    assert (tmp_path / "splice_opts").read_text().split() == ["--left-context=3",
                                                              "--right-context=3"]  # fmt: skip
    back = FeatureTransform.load(tmp_path)
    np.testing.assert_array_equal(back.matrix, m)
    x = rng.normal(size=(7, 13)).astype(np.float32)
    np.testing.assert_allclose(back.apply(x), splice(x, 3, 3) @ m.T, rtol=1e-5, atol=1e-5)
    with_offset = FeatureTransform(np.hstack([m, np.ones((40, 1), np.float32)]), 3, 3)
    np.testing.assert_allclose(with_offset.apply(x), back.apply(x) + 1, rtol=1e-5, atol=1e-5)
    assert FeatureTransform.load(tmp_path / "none") is None
    (tmp_path / "final.mat").write_bytes(raw[:30])
    with pytest.raises(InputError, match=r"final\.mat"):
        FeatureTransform.load(tmp_path)


def _gmm_frames(rng, dim=3, gauss=4, frames=4000):
    means = rng.normal(size=(gauss, dim)) * 3
    variances = rng.uniform(0.3, 2.0, size=(gauss, dim))
    comp = rng.integers(gauss, size=frames)
    z = means[comp] + rng.normal(size=(frames, dim)) * np.sqrt(variances[comp])
    return means, variances, comp, z


def test_fmllr_recovers_a_known_affine_transform():
    """Frames of a known diagonal GMM distorted by x = M z + v: fMLLR estimated with the
    GMM undoes the distortion (W maps x back to z)."""
    rng = np.random.default_rng(5)
    means, variances, comp, z = _gmm_frames(rng, frames=20000)
    M = np.diag([1.5, 0.7, 1.2]) + 0.3 * rng.normal(size=(3, 3))
    v = rng.normal(size=3)
    x = z @ M.T + v
    post = np.zeros((len(x), len(means)))
    post[np.arange(len(x)), comp] = 1.0  # the true Gaussian of each frame
    stats = FmllrStats.zeros(3)
    stats.accumulate(x[:5000], post[:5000], means, variances)
    stats.accumulate(x[5000:], post[5000:], means, variances)
    objf = [fmllr_objective(stats, np.hstack([np.eye(3), np.zeros((3, 1))]))]
    for iters in (1, 2, 3, 5, 10):
        W, gain = estimate_fmllr(stats, max_iters=iters, tol=0.0)
        objf.append(fmllr_objective(stats, W))
        np.testing.assert_allclose(gain, (objf[-1] - objf[0]) / stats.beta, rtol=1e-9)
    assert all(b >= a - 1e-6 for a, b in itertools.pairwise(objf)), objf
    inverse = np.linalg.inv(M)
    np.testing.assert_allclose(W[:, :-1], inverse, atol=0.03)
    np.testing.assert_allclose(W[:, -1], -inverse @ v, atol=0.05)
    assert np.abs(apply_fmllr(x, W) - z).mean() < 0.03


def test_fmllr_of_undistorted_data_is_near_the_identity_and_empty_stats_keep_it():
    rng = np.random.default_rng(6)
    means, variances, comp, z = _gmm_frames(rng, frames=20000)
    post = np.eye(len(means))[comp]
    stats = FmllrStats.zeros(3)
    stats.accumulate(z, post, means, variances)
    W, gain = estimate_fmllr(stats)
    np.testing.assert_allclose(W, np.hstack([np.eye(3), np.zeros((3, 1))]), atol=0.05)
    assert 0 <= gain < 1e-3
    W0, gain0 = estimate_fmllr(FmllrStats.zeros(3))
    assert gain0 == 0 and np.array_equal(W0, np.hstack([np.eye(3), np.zeros((3, 1))]))


def test_fmllr_of_a_speaker_with_too_few_frames_is_the_identity():
    rng = np.random.default_rng(7)
    means, variances, comp, z = _gmm_frames(rng, dim=3, frames=40)
    identity = np.hstack([np.eye(3), np.zeros((3, 1))])
    few = FmllrStats.zeros(3)
    few.accumulate(z, np.eye(len(means))[comp], means, variances)
    assert few.beta == 40
    W, gain = estimate_fmllr(few)  # under Kaldi's min count of 50 frames
    assert gain == 0 and np.array_equal(W, identity)
    same = FmllrStats.zeros(3)  # 60 copies of 2 frames: enough count, singular scatter
    same.accumulate(np.repeat(z[:2], 30, 0), np.repeat(np.eye(len(means))[comp[:2]], 30, 0),
                    means, variances)  # fmt: skip
    W, gain = estimate_fmllr(same)
    assert gain == 0 and np.array_equal(W, identity)
