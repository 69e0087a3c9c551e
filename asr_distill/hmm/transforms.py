"""Feature-space transforms of GMM systems, estimated in numpy on statistics gathered
with our GMMs (kaldi-hmm-gmm binds none of Kaldi's estimators):

- :func:`splice` and :class:`FeatureTransform`: Kaldi's ``splice-feats |
  transform-feats final.mat``, stored in a model dir as Kaldi does;
- LDA (Kaldi's ``acc-lda`` / ``est-lda``): :class:`LdaStats`, :func:`estimate_lda`;
- MLLT, the semi-tied covariance transform (Gales 1999; Kaldi's ``gmm-acc-mllt`` /
  ``est-mllt``): :func:`accumulate_mllt`, :func:`estimate_mllt`;
- fMLLR, per-speaker affine transforms (Gales 1998; Kaldi's ``FmllrDiagGmmAccs``,
  ``gmm-est-fmllr``): :class:`FmllrStats`, :func:`estimate_fmllr`, :func:`apply_fmllr`.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np

from asr_distill.errors import InputError
from asr_distill.io import atomic_open
from asr_distill.io.kaldi_ark import KALDI_READ_ERRORS, read_mat, write_matrix_file

MATRIX_FILE = "final.mat"
SPLICE_FILE = "splice_opts"


def splice(feats: np.ndarray, left: int, right: int) -> np.ndarray:
    """Kaldi's splice-feats: (T, D) -> (T, D * (left + 1 + right)), frame t followed by
    its neighbours t-left .. t+right in order, the first and last frames repeated at
    the edges."""
    x = np.asarray(feats, np.float32)
    idx = np.clip(np.arange(len(x))[:, None] + np.arange(-left, right + 1), 0, len(x) - 1)
    return x[idx].reshape(len(x), -1)


@dataclasses.dataclass
class FeatureTransform:
    """Spliced CMVN'd MFCC frames (+-``left``/``right``) times ``matrix`` (out_dim,
    in_dim) or (out_dim, in_dim + 1), the last column an offset: Kaldi's
    ``splice-feats | transform-feats final.mat``, stored in a model dir as Kaldi does
    (``final.mat``, ``splice_opts``)."""

    matrix: np.ndarray
    left: int = 3
    right: int = 3

    def apply(self, feats: np.ndarray) -> np.ndarray:
        x = splice(feats, self.left, self.right)
        m = np.asarray(self.matrix, np.float32)
        if m.shape[1] == x.shape[1] + 1:
            return np.ascontiguousarray(x @ m[:, :-1].T + m[:, -1])
        if m.shape[1] != x.shape[1]:
            raise ValueError(f"transform of {m.shape[1]} columns for {x.shape[1]}-dim "
                             f"spliced features")  # fmt: skip
        return np.ascontiguousarray(x @ m.T)

    def save(self, model_dir: str | Path) -> None:
        write_matrix_file(Path(model_dir) / MATRIX_FILE, self.matrix)
        with atomic_open(Path(model_dir) / SPLICE_FILE) as f:
            f.write(f"--left-context={self.left} --right-context={self.right}\n")

    @classmethod
    def load(cls, model_dir: str | Path) -> FeatureTransform | None:
        """The transform of a model dir, or None if it has none (delta features)."""
        path = Path(model_dir) / MATRIX_FILE
        if not path.is_file():
            return None
        try:
            matrix = np.asarray(read_mat(str(path)), np.float64)
        except KALDI_READ_ERRORS as e:
            raise InputError(f"not a Kaldi matrix: {e}", path) from None
        opts = Path(model_dir) / SPLICE_FILE
        text = opts.read_text(encoding="utf-8") if opts.is_file() else ""
        context = dict(re.findall(r"--(left|right)-context=(\d+)", text))
        if set(context) != {"left", "right"}:
            raise InputError("expected '--left-context=N --right-context=N'", opts)
        return cls(matrix, int(context["left"]), int(context["right"]))


@dataclasses.dataclass
class LdaStats:
    """Kaldi's acc-lda statistics: per class (pdf) the weighted frame count and sum, and
    the total weighted scatter ``sum w x x^T`` (float64)."""

    counts: np.ndarray  # (C,)
    sums: np.ndarray  # (C, D)
    scatter: np.ndarray  # (D, D)

    @classmethod
    def zeros(cls, num_classes: int, dim: int) -> LdaStats:
        return cls(np.zeros(num_classes), np.zeros((num_classes, dim)), np.zeros((dim, dim)))

    def accumulate(
        self, x: np.ndarray, classes: np.ndarray, weights: np.ndarray | None = None
    ) -> None:
        """Add frames ``x`` (T, D) of classes (T,); a weight of 0 (e.g. silence, as
        Kaldi's ``weight-silence-post 0``) leaves a frame out."""
        x = np.asarray(x, np.float64)
        w = np.ones(len(x)) if weights is None else np.asarray(weights, np.float64)
        np.add.at(self.counts, classes, w)
        np.add.at(self.sums, classes, x * w[:, None])
        self.scatter += (x * w[:, None]).T @ x


def estimate_lda(stats: LdaStats, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Kaldi's est-lda: the (dim, D) matrix whose rows are the leading solutions of the
    generalized eigenproblem ``B v = s W v`` (B between-class, W within-class
    covariance), scaled so that the transformed within-class covariance is the unit
    matrix and the between-class one diagonal. Returns it and all D eigenvalues s
    (descending)."""
    n = stats.counts.sum()
    full = stats.sums.shape[1]
    if not 0 < dim <= full:
        raise ValueError(f"LDA dim must be in 1..{full}, got {dim}")
    if n <= 0:
        raise ValueError("no frames for LDA")
    mean = stats.sums.sum(0) / n
    total = stats.scatter / n - np.outer(mean, mean)
    seen = stats.counts > 0
    class_means = stats.sums[seen] / stats.counts[seen, None]
    between = (class_means * (stats.counts[seen, None] / n)).T @ class_means - np.outer(mean, mean)
    within = total - between
    try:
        chol = np.linalg.cholesky(within)
    except np.linalg.LinAlgError:
        raise ValueError("within-class covariance not positive definite: too little data "
                         "for LDA, or constant feature dimensions") from None  # fmt: skip
    chol_inv = np.linalg.inv(chol)
    s, u = np.linalg.eigh(chol_inv @ between @ chol_inv.T)
    order = np.argsort(s)[::-1]
    lda = u[:, order].T @ chol_inv
    return lda[:dim], s[order]


def gmm_posteriors(x: np.ndarray, means: np.ndarray, variances: np.ndarray,
                   log_weights: np.ndarray) -> np.ndarray:  # fmt: skip
    """(T, M) posteriors of the M Gaussians of a diagonal GMM (means and variances
    (M, D), log weights (M,)) for frames x (T, D); rows sum to 1."""
    x = np.asarray(x, np.float64)
    mu, inv = np.asarray(means, np.float64), 1.0 / np.asarray(variances, np.float64)
    sq = (x**2) @ inv.T - 2 * x @ (mu * inv).T + (mu**2 * inv).sum(1)  # (T, M)
    loglike = np.asarray(log_weights) + 0.5 * np.log(inv).sum(1) - 0.5 * sq
    post = np.exp(loglike - loglike.max(1, keepdims=True))
    return post / post.sum(1, keepdims=True)


@dataclasses.dataclass
class MlltStats:
    """Kaldi's gmm-acc-mllt statistics: ``beta``, the weighted frame count, and for each
    feature dimension i, ``G_i = sum_t sum_m gamma_tm / var_mi (x_t - mu_m)(x_t - mu_m)^T``
    over the Gaussians m of each frame's aligned pdf (float64)."""

    beta: float
    G: np.ndarray  # (D, D, D)


def accumulate_mllt(
    means: list[np.ndarray],
    variances: list[np.ndarray],
    log_weights: list[np.ndarray],
    frames: dict[int, tuple[np.ndarray, np.ndarray]],
) -> MlltStats:
    """MLLT statistics from per-pdf frames ``{pdf: (x (T, D), frame weights (T,))}`` and
    each pdf's diagonal GMM (means and variances (M, D), log weights (M,)): the
    Gaussian posteriors of each frame within its pdf, as gmm-acc-mllt (without its
    random pruning)."""
    dim = means[0].shape[1]
    G = np.zeros((dim, dim, dim))
    beta = 0.0
    for pdf, (x, w) in frames.items():
        x = np.asarray(x, np.float64)
        mu, inv = np.asarray(means[pdf], np.float64), 1.0 / np.asarray(variances[pdf], np.float64)
        post = gmm_posteriors(x, means[pdf], variances[pdf], log_weights[pdf]) * w[:, None]
        occ = post.sum(0)  # (M,)
        first = post.T @ x  # (M, D)
        second = ((post[:, :, None] * x[:, None, :]).reshape(len(x), -1).T @ x).reshape(
            len(occ), x.shape[1], x.shape[1]
        )  # (M, D, D): sum_t post_tm x_t x_t^T
        scatter = (second - np.einsum("md,me->mde", first, mu) - np.einsum("md,me->mde", mu, first)
                   + occ[:, None, None] * np.einsum("md,me->mde", mu, mu))  # fmt: skip
        G += np.einsum("mi,mde->ide", inv, scatter)
        beta += float(w.sum())
    return MlltStats(beta, G)


def mllt_objective(stats: MlltStats, A: np.ndarray) -> float:
    """The MLLT auxiliary function ``beta log|det A| - 1/2 sum_i a_i G_i a_i^T``."""
    _, logdet = np.linalg.slogdet(A)
    return float(stats.beta * logdet - 0.5 * np.einsum("id,ide,ie->", A, stats.G, A))


def estimate_mllt(
    stats: MlltStats, max_iters: int = 100, tol: float = 1e-8
) -> tuple[np.ndarray, float]:
    """Kaldi's est-mllt: the square transform A (from the unit matrix) maximising
    :func:`mllt_objective` by Gales' row-by-row update, ``a_i = c_i G_i^-1
    sqrt(beta / (c_i G_i^-1 c_i^T))`` with c_i the i-th row of A's cofactors. Each row
    update maximises the objective over that row, so it never decreases. Returns A and
    the objective's gain per frame."""
    dim = stats.G.shape[0]
    G_inv = np.linalg.inv(stats.G)
    A = np.eye(dim)
    start = prev = mllt_objective(stats, A)
    for _ in range(max_iters):
        for i in range(dim):
            c = np.linalg.det(A) * np.linalg.inv(A)[:, i]  # cofactors of row i
            g = G_inv[i] @ c
            A[i] = g * np.sqrt(stats.beta / (c @ g))
        objf = mllt_objective(stats, A)
        if objf - prev < tol * max(stats.beta, 1.0):
            prev = objf
            break
        prev = objf
    return A, (prev - start) / max(stats.beta, 1.0)


@dataclasses.dataclass
class FmllrStats:
    """Kaldi's FmllrDiagGmmAccs for one speaker, with extended frames x~ = [x; 1]:
    ``beta`` (weighted frames), ``K = sum gamma Sigma^-1 mu x~^T`` (D, D+1) and, for
    each dimension i, ``G_i = sum gamma / var_i x~ x~^T`` (D, D+1, D+1); float64."""

    beta: float
    K: np.ndarray
    G: np.ndarray

    @classmethod
    def zeros(cls, dim: int) -> FmllrStats:
        return cls(0.0, np.zeros((dim, dim + 1)), np.zeros((dim, dim + 1, dim + 1)))

    def accumulate(self, x: np.ndarray, post: np.ndarray, means: np.ndarray,
                   variances: np.ndarray) -> None:  # fmt: skip
        """Add frames ``x`` (T, D) with posteriors ``post`` (T, M) over the Gaussians of
        ``means`` and ``variances`` (M, D) (each frame's Gaussians of its pdf)."""
        inv = 1.0 / np.asarray(variances, np.float64)  # (M, D)
        post = np.asarray(post, np.float64)
        self.accumulate_frames(x, post.sum(1), post @ inv,
                               post @ (np.asarray(means, np.float64) * inv))  # fmt: skip

    def accumulate_frames(self, x: np.ndarray, weight: np.ndarray, precision: np.ndarray,
                          scaled_mean: np.ndarray) -> None:  # fmt: skip
        """Add frames ``x`` (T, D) of weights (T,) (their posteriors' sums) given, per
        frame, ``precision`` = sum_m gamma_m / var_m and ``scaled_mean`` = sum_m gamma_m
        mu_m / var_m (T, D) over its Gaussians."""
        xe = np.hstack([np.asarray(x, np.float64), np.ones((len(x), 1))])  # (T, D+1)
        self.beta += float(np.sum(weight))
        self.K += np.asarray(scaled_mean, np.float64).T @ xe
        weighted = np.asarray(precision, np.float64)[:, :, None] * xe[:, None, :]  # (T, D, D+1)
        self.G += (weighted.reshape(len(xe), -1).T @ xe).reshape(self.G.shape)  # by BLAS

    def add(self, other: FmllrStats) -> None:
        self.beta += other.beta
        self.K += other.K
        self.G += other.G


def fmllr_objective(stats: FmllrStats, W: np.ndarray) -> float:
    """The fMLLR auxiliary function ``beta log|det A| + sum_i (w_i k_i^T - 1/2 w_i G_i
    w_i^T)`` of W = [A b] (D, D+1), Gaussian-normalising terms left out."""
    _, logdet = np.linalg.slogdet(W[:, :-1])
    quad = np.einsum("id,ide,ie->", W, stats.G, W)
    return float(stats.beta * logdet + np.einsum("id,id->", W, stats.K) - 0.5 * quad)


def estimate_fmllr(
    stats: FmllrStats,
    W0: np.ndarray | None = None,
    max_iters: int = 20,
    tol: float = 1e-6,
    min_count: float = 50.0,
) -> tuple[np.ndarray, float]:
    """Kaldi's gmm-est-fmllr: W = [A b] maximising :func:`fmllr_objective` by the
    row-by-row update of Gales (1998), from ``W0`` (default [I 0]): for row i, with c_i
    the cofactors of A's row i (0 for b), ``w_i = (alpha c_i + k_i) G_i^-1``, alpha the
    root of ``alpha^2 c G^-1 c' + alpha c G^-1 k' - beta = 0`` with the higher
    objective. Each row update maximises the objective over its row. A speaker with
    fewer than ``min_count`` frames keeps ``W0`` (Kaldi's ``--fmllr-min-count``), as
    does one whose statistics are not positive definite (too few distinct frames).
    Returns W and the objective's gain per frame."""
    dim = stats.K.shape[0]
    W = np.hstack([np.eye(dim), np.zeros((dim, 1))]) if W0 is None else np.array(W0, np.float64)
    beta = stats.beta
    if beta < max(min_count, 1e-10):
        return W, 0.0
    try:
        np.linalg.cholesky(stats.G)  # every G_i positive definite, else no estimate
    except np.linalg.LinAlgError:
        return W, 0.0
    G_inv = np.linalg.inv(stats.G)
    start = prev = fmllr_objective(stats, W)
    for _ in range(max_iters):
        for i in range(dim):
            A = W[:, :-1]
            c = np.append(np.linalg.det(A) * np.linalg.inv(A)[:, i], 0.0)
            c_g = G_inv[i] @ c  # G_i^-1 c (G symmetric)
            e1, e2 = c @ c_g, stats.K[i] @ c_g
            disc = np.sqrt(e2 * e2 + 4 * e1 * beta)
            roots = [(-e2 + disc) / (2 * e1), (-e2 - disc) / (2 * e1)]
            alpha = max(roots, key=lambda a: beta * np.log(abs(a * e1 + e2)) - 0.5 * a * a * e1)
            W[i] = G_inv[i] @ (alpha * c + stats.K[i])
        objf = fmllr_objective(stats, W)
        if objf - prev < tol * beta:
            prev = max(prev, objf)
            break
        prev = objf
    return W, (prev - start) / beta


def apply_fmllr(x: np.ndarray, W: np.ndarray) -> np.ndarray:
    """Kaldi's transform-feats with a (D, D+1) affine transform: A x + b."""
    return np.ascontiguousarray(np.asarray(x, np.float32) @ W[:, :-1].T.astype(np.float32)
                                + W[:, -1].astype(np.float32))  # fmt: skip
