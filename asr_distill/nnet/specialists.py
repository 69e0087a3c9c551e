"""Specialists on confusable senones (Hinton et al. 2015, section 5), the parts that are
pure arithmetic: grouping the senones a generalist confuses, the dustbin's bias
correction, and the combination of a generalist with the specialists active for a
frame.

Confusable sets (section 5.3). The covariance matrix of the generalist's posterior
vectors over the training frames has a column per senone; senones whose posteriors rise
and fall together (a vowel's states across contexts) have similar columns. K-means on
the columns (the paper uses an online version; here Lloyd's iterations from k-means++
seeds, deterministic for a seed) gives disjoint sets. The columns are those of the
correlation matrix scaled to unit length (:func:`normalised_columns`), so that a
senone's frequency does not decide its set.

Dustbin correction (section 5.1). A specialist's softmax covers its senones S plus one
dustbin class for all others, and it is trained on batches with half of the frames
from S, while a fraction ``f`` of the data has a senone of S. Its training prior is
therefore ``0.5 / f`` times the natural one on S and ``0.5 / (1 - f)`` times on the
dustbin; Bayes' rule with the natural priors puts the dustbin logit up by the log of the
ratio of the two, ``log((1 - f) / f)`` (:func:`dustbin_log_correction`).

Combination (section 5.4). For a frame, with the generalist's distribution ``p_g`` over
all senones and the active specialists' ``p_m`` over ``S_m`` plus a dustbin, the full
distribution ``q`` minimises::

    KL(p_g || q) + sum_m KL(p_m || q_m)

where ``q_m`` is ``q`` seen by specialist m: ``q(c)`` for ``c`` in ``S_m`` and
``sum_{c not in S_m} q(c)`` for the dustbin. Up to constants this is the cross-entropy
``-sum_c T(c) log q(c) - sum_m p_m(dust) log Q_m`` with ``T = p_g + sum_m p_m`` on the
specialists' senones and ``Q_m`` the mass of q outside ``S_m``. It is convex in ``q``.
With one specialist the minimiser has a closed form (:func:`combine_one_closed_form`,
used by the tests): ``q(c) = (p_g(c) + p_m(c)) / 2`` on S, and outside S the mass
``(p_g(not S) + p_m(dust)) / 2`` spread in proportion to ``p_g``.

With disjoint sets (cluster-senones' sets) the minimiser is exact for any number of
active specialists (:func:`combine_disjoint`): within an active set ``S_m`` q is
proportional to ``T``, outside the active sets to ``p_g``, so only the masses ``a_m`` of
the active sets and ``a_R`` of the rest remain. Their stationarity conditions with the
multiplier ``lam`` of ``sum a = 1`` are ``A_m / a_m - d_m / (1 - a_m) = lam`` and
``B / a_R = lam`` (``A_m = T(S_m)``, ``d_m`` the dustbin probability, ``B = p_g(R)``):
each ``a_m(lam)`` is the root in (0, 1) of a quadratic and decreases with ``lam``, so
``lam`` is found by bisection, per frame, on a handful of numbers. Overlapping sets
take gradient descent on q's logits (:func:`combine`, for a batch of frames at once).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import yaml

from asr_distill.errors import InputError
from asr_distill.io import atomic_open
from asr_distill.io.step import step_log
from asr_distill.io.text import utf8_lines
from asr_distill.nnet.train import Objective

log = logging.getLogger(__name__)

SETS_FILE = "sets.txt"
READABLE_FILE = "sets_readable.txt"
SPECIALIST_FILE = "specialist.yaml"


def posterior_covariance(posteriors: np.ndarray) -> np.ndarray:
    """(P, P) covariance of posterior vectors (rows of ``posteriors``, (N, P)), in
    float64."""
    x = np.asarray(posteriors, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"need (N >= 2, P) posteriors, not shape {x.shape}")
    centred = x - x.mean(0)
    return centred.T @ centred / (len(x) - 1)


def normalised_columns(cov: np.ndarray) -> np.ndarray:
    """The correlation matrix of a covariance, each column scaled to unit length. Raw
    covariance columns scale with their senone's variance, so k-means on them puts the
    few frequent senones (silence) in sets of their own and everything else in one;
    on these columns it groups senones by the pattern of their co-variation alone."""
    sd = np.sqrt(np.clip(np.diag(cov), 1e-30, None))
    corr = cov / sd[:, None] / sd[None, :]
    return corr / np.linalg.norm(corr, axis=0, keepdims=True)


def cluster_columns(matrix: np.ndarray, num_clusters: int, *, seed: int = 0,
                    iters: int = 100) -> np.ndarray:  # fmt: skip
    """K-means of the columns of ``matrix`` (D, P) into ``num_clusters`` clusters: (P,)
    cluster ids in ``0 .. num_clusters - 1``, every cluster non-empty. k-means++ seeds
    from ``seed``, then Lloyd's iterations until nothing moves (at most ``iters``)."""
    cols = np.asarray(matrix, dtype=np.float64).T  # (P, D): one point per column
    num = len(cols)
    if not 1 <= num_clusters <= num:
        raise ValueError(f"num_clusters must be in 1..{num}, not {num_clusters}")
    rng = np.random.default_rng(seed)
    centres = [cols[rng.integers(num)]]
    dist = ((cols - centres[0]) ** 2).sum(1)
    for _ in range(1, num_clusters):
        total = dist.sum()
        pick = rng.choice(num, p=dist / total) if total > 0 else rng.integers(num)
        centres.append(cols[pick])
        dist = np.minimum(dist, ((cols - cols[pick]) ** 2).sum(1))
    centre = np.stack(centres)
    labels = np.full(num, -1)
    for _ in range(iters):
        d2 = ((cols[:, None, :] - centre[None]) ** 2).sum(-1)  # (P, K)
        new = d2.argmin(1)
        for k in range(num_clusters):  # an empty cluster takes the worst-fitted column
            if not (new == k).any():
                worst = d2[np.arange(num), new].argmax()
                new[worst] = k
                d2[worst] = 0.0
        if (new == labels).all():
            break
        labels = new
        for k in range(num_clusters):
            centre[k] = cols[labels == k].mean(0)
    return labels


def dustbin_log_correction(fraction: float, share: float = 0.5) -> float:
    """What to add to a specialist's dustbin logit when a ``share`` of each training batch
    came from its senones, which cover a ``fraction`` of the natural frames:
    ``log((share / fraction) / ((1 - share) / (1 - fraction)))``."""
    if not (0.0 < fraction < 1.0 and 0.0 < share < 1.0):
        raise ValueError(f"fraction and share must be in (0, 1): {fraction}, {share}")
    return math.log(share / fraction) - math.log((1.0 - share) / (1.0 - fraction))


def membership(sets: Sequence[Sequence[int]], num_pdfs: int) -> torch.Tensor:
    """(M, P) float 0/1 matrix: row m marks the senones of set m."""
    out = torch.zeros(len(sets), num_pdfs)
    for m, s in enumerate(sets):
        out[m, torch.as_tensor(list(s), dtype=torch.long)] = 1.0
    return out


def combine_objective(log_q: torch.Tensor, target: torch.Tensor, dust: torch.Tensor,
                      member: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """Per frame (B,): ``-sum_c T(c) log q(c) - sum_m dust_m log Q_m`` for log q (B, P),
    the summed targets T (B, P), the active specialists' dustbin probabilities
    ``dust`` (B, M; 0 where a specialist is inactive) and the sets (M, P)."""
    q = log_q.exp()
    outside = (1.0 - q @ member.T).clamp_min(1e-30)  # (B, M): q's mass outside each set
    return -(target * log_q).sum(-1) - (dust * outside.log()).sum(-1)


def _check_shapes(specialists: Sequence[torch.Tensor], sets: Sequence[Sequence[int]],
                  num_frames: int) -> None:  # fmt: skip
    """Each specialist's log-probs are (B, |S_m| + 1): its senones, then the dustbin."""
    for m, (s, logp) in enumerate(zip(sets, specialists, strict=True)):
        if logp.shape != (num_frames, len(s) + 1):
            raise ValueError(f"specialist {m}: log-probs of shape {tuple(logp.shape)}, "
                             f"expected {(num_frames, len(s) + 1)}")  # fmt: skip


def combine(
    generalist: torch.Tensor,
    specialists: Sequence[torch.Tensor],
    sets: Sequence[Sequence[int]],
    active: torch.Tensor,
    *,
    steps: int = 200,
    lr: float = 0.5,
) -> torch.Tensor:
    """log q (B, P) of section 5.4 for a batch of frames.

    ``generalist``: log p_g (B, P). ``specialists[m]``: log p_m (B, |S_m| + 1), its
    senones in the order of ``sets[m]`` then the dustbin (already bias-corrected).
    ``active``: (B, M) bool, which specialists take part for each frame. Disjoint sets
    get the exact minimiser (:func:`combine_disjoint`); overlapping ones start q's logits
    at log p_g and follow Adam for ``steps`` steps on the summed objective (the frames
    are independent, so this is each frame's own descent).
    """
    if not active.any():
        return generalist.log_softmax(-1)
    num_frames, num_pdfs = generalist.shape
    member = membership(sets, num_pdfs).to(generalist)
    if bool((member.sum(0) <= 1).all()):
        return combine_disjoint(generalist, specialists, sets, active)
    act = active.to(generalist.dtype)
    target = generalist.exp().clone()
    dust = generalist.new_zeros(num_frames, len(sets))
    _check_shapes(specialists, sets, num_frames)
    for m, (s, logp) in enumerate(zip(sets, specialists, strict=True)):
        p = logp.exp() * act[:, m : m + 1]
        target[:, torch.as_tensor(list(s), dtype=torch.long, device=p.device)] += p[:, :-1]
        dust[:, m] = p[:, -1]
    z = generalist.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            combine_objective(z.log_softmax(-1), target, dust, member).sum().backward()
            opt.step()
    return z.detach().log_softmax(-1)


def combine_disjoint(
    generalist: torch.Tensor,
    specialists: Sequence[torch.Tensor],
    sets: Sequence[Sequence[int]],
    active: torch.Tensor,
    *,
    iterations: int = 100,
) -> torch.Tensor:
    """The exact log q (B, P) of section 5.4 when the sets are disjoint (module docs);
    arguments as :func:`combine`. ``iterations`` of bisection on each frame's multiplier
    (on log lam over at most ~750 nats, or on lam over at most M + 1) reach float64's
    resolution."""
    num_frames, num_pdfs = generalist.shape
    num_sets = len(sets)
    dtype = torch.float64  # the bisection and the masses; q back in the input's dtype
    log_pg = generalist.to(dtype).log_softmax(-1)
    set_of = torch.full((num_pdfs,), num_sets, dtype=torch.long, device=generalist.device)
    for m, s in enumerate(sets):
        if len(s) == 0:
            raise ValueError(f"set {m} is empty")
        set_of[torch.as_tensor(list(s), dtype=torch.long, device=generalist.device)] = m
    if (torch.bincount(set_of, minlength=num_sets + 1)[:num_sets] !=
            torch.as_tensor([len(set(s)) for s in sets], device=set_of.device)).any():  # fmt: skip
        raise ValueError("combine_disjoint needs disjoint sets")
    act = torch.cat(
        [active.to(torch.bool), active.new_zeros(num_frames, 1, dtype=torch.bool)], 1
    )  # (B, M + 1)
    # log T(c): log(p_g(c) + p_m(c)) on the sets of active specialists, log p_g elsewhere
    log_t = log_pg.clone()
    dust = log_pg.new_zeros(num_frames, num_sets)  # (B, M): 0 where inactive
    _check_shapes(specialists, sets, num_frames)
    for m, (s, logp) in enumerate(zip(sets, specialists, strict=True)):
        idx = torch.as_tensor(list(s), dtype=torch.long, device=generalist.device)
        on = active[:, m].to(torch.bool)
        logp = logp.to(dtype).log_softmax(-1)
        both = torch.logaddexp(log_pg[:, idx], logp[:, :-1])
        log_t[:, idx] = torch.where(on[:, None], both, log_pg[:, idx])
        dust[:, m] = torch.where(on, logp[:, -1].exp(), dust[:, m])
    # frame b, pdf c is in an active set: its group is set_of[c], else the rest (M)
    in_active = act.gather(1, set_of.expand(num_frames, -1))  # (B, P)
    group = torch.where(in_active, set_of.expand(num_frames, -1), num_sets)  # (B, P)
    log_mass = torch.full((num_frames, num_sets + 1), -math.inf, dtype=dtype,
                          device=log_t.device).scatter_reduce(
        1, group, log_t, reduce="amax", include_self=True)  # fmt: skip
    shift = torch.where(torch.isfinite(log_mass), log_mass, 0.0)
    mass = torch.zeros_like(log_mass).scatter_add(1, group, (log_t - shift.gather(1, group)).exp())
    log_a_coef = mass.log() + shift  # (B, M + 1): log A_m (active sets) and log B (rest)
    a_sets = log_a_coef[:, :num_sets].exp()  # (B, M): A_m; 0 for inactive sets
    log_b = log_a_coef[:, num_sets]  # (B,): log B, the rest's generalist mass (-inf: none)
    on = act[:, :num_sets] & (a_sets > 0)
    n_on = on.sum(-1)  # (B,)

    def masses(lam: torch.Tensor) -> torch.Tensor:  # (B,) -> the sets' masses (B, M)
        lam = lam[:, None]
        s_ = lam + a_sets + dust
        root = (s_ * s_ - 4.0 * lam * a_sets).clamp_min(0.0).sqrt()
        a = 2.0 * a_sets / (s_ + root).clamp_min(1e-300)  # the root in (0, 1], any lam
        return torch.where(on, a, 0.0)

    # g(lam) = sum a_m(lam) + B / lam - 1 decreases in lam and is <= 0 at lam = sum A + B
    # (a_m <= A_m / lam). With B > 0, g(B) >= 0: bisection on log lam, whose bracket
    # may span hundreds of nats for a confident generalist (B underflows, log B does not).
    # With B = 0 (the active sets cover every pdf of any mass) lam may be <= 0: linear
    # bisection from the lam where every a_m >= 1/n (n >= 2 active sets), at which g >= 0;
    # one set alone then takes all the mass.
    log_hi = torch.logsumexp(log_a_coef, -1)  # log(sum A + B)
    has_rest = torch.isfinite(log_b)
    lo_log = torch.where(has_rest, torch.minimum(log_b, log_hi) - 1.0, log_hi)
    hi_log = log_hi.clone()
    n = n_on.clamp_min(2).to(dtype)[:, None]
    lo_lin = torch.where(on, n * a_sets - n * dust / (n - 1.0), math.inf).amin(-1)
    lo_lin = torch.where(torch.isfinite(lo_lin), lo_lin, 0.0)
    hi_lin = log_hi.exp()
    for _ in range(iterations):
        mid_log, mid_lin = (lo_log + hi_log) / 2, (lo_lin + hi_lin) / 2
        g_log = masses(mid_log.exp()).sum(-1) + (log_b - mid_log).exp() - 1.0
        g_lin = masses(mid_lin).sum(-1) - 1.0
        up_log, up_lin = g_log > 0, g_lin > 0
        lo_log, hi_log = torch.where(up_log, mid_log, lo_log), torch.where(up_log, hi_log, mid_log)
        lo_lin, hi_lin = torch.where(up_lin, mid_lin, lo_lin), torch.where(up_lin, hi_lin, mid_lin)
    lam_log, lam_lin = (lo_log + hi_log) / 2, (lo_lin + hi_lin) / 2
    a_log = torch.where(has_rest[:, None], masses(lam_log.exp()), masses(lam_lin))  # (B, M)
    a_log = torch.where(on & ~has_rest[:, None] & (n_on == 1)[:, None], 1.0, a_log)
    log_a = torch.cat(
        [a_log.clamp_min(1e-300).log(), torch.where(has_rest, log_b - lam_log, -math.inf)[:, None]],
        1,
    )
    log_a = torch.where(torch.cat([on, has_rest[:, None]], 1), log_a, -math.inf)
    log_a = log_a - torch.logsumexp(log_a, -1, keepdim=True)  # exact up to the bisection
    # q(c) = a_group * T(c) / A_group; pdfs of no mass (log T = -inf) stay at -inf
    scale = (log_a - log_a_coef).gather(1, group)  # (B, P)
    log_q = torch.where(torch.isfinite(log_t), log_t + scale, -math.inf)
    return log_q.log_softmax(-1).to(generalist.dtype)


def combine_one_closed_form(generalist: torch.Tensor, specialist: torch.Tensor,
                            senones: Sequence[int]) -> torch.Tensor:  # fmt: skip
    """The exact minimiser for one active specialist (log q, (B, P)); see the module
    docstring."""
    pg = generalist.exp()
    pm = specialist.exp()
    idx = torch.as_tensor(list(senones), dtype=torch.long)
    inside = torch.zeros(pg.shape[1], dtype=torch.bool)
    inside[idx] = True
    pg_out = pg[:, ~inside].sum(-1, keepdim=True)
    q = pg * ((pg_out + pm[:, -1:]) / 2) / pg_out
    q[:, idx] = (pg[:, idx] + pm[:, :-1]) / 2
    return q.log()


# --------------------------------------------------------------------------- the step


@torch.no_grad()
def store_posterior_covariance(model: torch.nn.Module, store, *, batch_size: int = 4096
                               ) -> tuple[np.ndarray, np.ndarray, int]:  # fmt: skip
    """The (P, P) covariance and (P,) mean of ``model``'s posteriors over every frame of
    ``store`` (a FrameStore or a view of one), summed in float64 batch by batch, and the
    number of frames."""
    cfg = model.config
    total = second = None
    frames = 0
    for batch in store.batches(batch_size, left=cfg.left_context, right=cfg.right_context,
                               shuffle=False):  # fmt: skip
        p = model(batch.inputs).float().softmax(-1).double()
        total = p.sum(0) if total is None else total + p.sum(0)
        second = p.T @ p if second is None else second + p.T @ p
        frames += len(p)
    if frames < 2:
        raise ValueError("fewer than two frames")
    mean = total / frames
    cov = (second - frames * torch.outer(mean, mean)) / (frames - 1)
    return cov.numpy(), mean.numpy(), frames


def senone_names(gmm_dir: str | Path, phones_txt: str | Path) -> list[str]:
    """Per pdf, the phones and HMM states that use it (from the GMM's transition model),
    e.g. ``AH_B.1 AH_I.1``; position-dependent phones keep their suffix."""
    from asr_distill.hmm.model import GmmHmm

    names: dict[int, str] = {}
    for _, line in utf8_lines(Path(phones_txt)):
        fields = line.split()
        if len(fields) == 2:
            names[int(fields[1])] = fields[0]
    model = GmmHmm.load(gmm_dir)
    uses: list[set[str]] = [set() for _ in range(model.num_pdfs)]
    for t in model.trans_model.tuples:
        phone, hmm_state, forward_pdf, self_loop_pdf = t.__getstate__()
        label = f"{names.get(phone, phone)}.{hmm_state}"
        for pdf in {forward_pdf, self_loop_pdf}:
            uses[pdf].add(label)
    return [" ".join(sorted(u)) for u in uses]


@dataclasses.dataclass
class ClusterConfig:
    """num_sets: M, the specialists [10]; max_frames: frames whose posteriors enter the
    covariance, whole utterances drawn by seed (0: all) [200000]; seed [0]."""

    num_sets: int = 10
    max_frames: int = 200000
    seed: int = 0


def cluster_senones(model_path: str | Path, store_dir: str | Path, out_dir: str | Path,
                    config: ClusterConfig | None = None, *, gmm_dir: str | Path | None = None,
                    phones_txt: str | Path | None = None, force: bool = False) -> Path:  # fmt: skip
    """``cluster-senones``: the generalist's posterior covariance on a frame store, k-means
    on its columns, and OUT_DIR/sets.txt (``set-id pdf pdf ...``, one set a line) plus
    OUT_DIR/sets_readable.txt (each set's senones with their training frame counts and,
    given ``gmm_dir`` and ``phones_txt``, the phones and HMM states that use them)."""
    from asr_distill.features.framestore import FrameStore
    from asr_distill.nnet.model import SpliceDnn

    config = config or ClusterConfig()
    out_dir = Path(out_dir)
    with step_log(out_dir, "cluster-senones.log", force=force, config=config) as run:
        if not run:
            return out_dir / SETS_FILE
        model = SpliceDnn.load(model_path).eval()
        full = store = FrameStore(store_dir)
        if config.max_frames and store.num_frames > config.max_frames:
            store = store.subset(config.max_frames / store.num_frames, seed=config.seed)
        cov, mean, frames = store_posterior_covariance(model, store)
        labels = cluster_columns(normalised_columns(cov), config.num_sets, seed=config.seed)
        targets = np.asarray(full.targets)
        counts = np.bincount(targets[targets >= 0], minlength=len(labels))  # aligned frames
        names = senone_names(gmm_dir, phones_txt) if gmm_dir and phones_txt else None
        sets = [np.flatnonzero(labels == k) for k in range(config.num_sets)]
        # largest set first; ties by their first senone
        sets.sort(key=lambda s: (-len(s), int(s[0])))
        with atomic_open(out_dir / SETS_FILE) as f:
            for k, s in enumerate(sets):
                f.write(f"{k} {' '.join(map(str, s.tolist()))}\n")
        with atomic_open(out_dir / READABLE_FILE) as f:
            for k, s in enumerate(sets):
                share = counts[s].sum() / max(counts.sum(), 1)
                f.write(f"set {k}: {len(s)} senones, {100 * share:.2f} % of the training "
                        f"frames\n")  # fmt: skip
                for pdf in s[np.argsort(-counts[s], kind="stable")]:
                    extra = f"  {names[pdf]}" if names else ""
                    f.write(f"  pdf {pdf:5d}  {counts[pdf]:8d} frames  mean posterior "
                            f"{mean[pdf]:.4f}{extra}\n")  # fmt: skip
        log.info("cluster-senones: %d frames, %d senones in %d sets (sizes %s) -> %s", frames,
                 len(labels), config.num_sets, [len(s) for s in sets], out_dir)  # fmt: skip
    return out_dir / SETS_FILE


def read_sets(path: str | Path) -> list[list[int]]:
    """The senone sets of a ``sets.txt`` (error naming the file and line)."""
    sets: list[list[int]] = []
    for lineno, line in utf8_lines(Path(path)):
        fields = line.split()
        if not fields:
            continue
        try:
            ids = [int(x) for x in fields]
        except ValueError:
            raise InputError("not integers (set-id pdf ...)", path, lineno) from None
        if ids[0] != len(sets) or len(ids) < 2:
            raise InputError(f"expected set {len(sets)} with at least one pdf", path, lineno)
        sets.append(ids[1:])
    if not sets:
        raise InputError("no sets", path)
    return sets


# --------------------------------------------------------------------------- training


@dataclasses.dataclass
class SpecialistConfig:
    """soft_weight: weight of the generalist's soft targets (projected onto the
    specialist's senones and its dustbin, at temperature, scaled by T^2), the paper's
    remedy for a specialist's overfitting; the hard term gets 1 - soft_weight [0.5];
    temperature [2.0]."""

    soft_weight: float = 0.5
    temperature: float = 2.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.soft_weight <= 1.0:
            raise ValueError(f"soft_weight must be in [0, 1], not {self.soft_weight}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, not {self.temperature}")


def set_mapping(senones: Sequence[int], num_pdfs: int) -> np.ndarray:
    """(P,) int32: senone ``senones[i]`` -> i, every other pdf -> the dustbin ``len(senones)``."""
    mapping = np.full(num_pdfs, len(senones), dtype=np.int32)
    mapping[np.asarray(list(senones), dtype=np.int64)] = np.arange(len(senones), dtype=np.int32)
    return mapping


def project_logits(logits: torch.Tensor, senones: torch.Tensor, rest: torch.Tensor) -> torch.Tensor:
    """Full logits (B, P) -> a specialist's (B, |S| + 1): its senones' logits, then the
    dustbin's, the log-sum-exp of all the others (so the softmax of the result is the
    full softmax with the other senones' mass pooled)."""
    return torch.cat([logits[:, senones], logits[:, rest].logsumexp(-1, keepdim=True)], -1)


class _Projected(torch.nn.Module):
    """A full-output model seen through :func:`project_logits` (what a specialist is
    scored as); ``config`` is the model's (its context)."""

    def __init__(self, model: torch.nn.Module, senones: torch.Tensor, rest: torch.Tensor):
        super().__init__()
        self.model, self.config = model, model.config
        self.register_buffer("senones", senones, persistent=False)
        self.register_buffer("rest", rest, persistent=False)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return project_logits(self.model(inputs), self.senones, self.rest)


class SpecialistObjective(Objective):
    """The trainer's objective for one specialist: batches half from its senones
    (:meth:`FrameStore.balanced`), hard cross-entropy over its senones plus a dustbin,
    plus the generalist's soft targets projected the same way.

    A specialist is a copy of the generalist, all outputs kept, trained through
    :func:`project_logits`: its dustbin is the pooled mass of the other senones. So
    training starts exactly where the generalist is on the specialist's task (a dustbin
    as one more output row, initialised from the others, starts far below it: a
    log-sum-exp of rows is not a row) and the specialist can only move from there."""

    def __init__(self, generalist: str | Path, senones: Sequence[int], config: SpecialistConfig):
        from asr_distill.nnet.ensemble import model_digest
        from asr_distill.nnet.model import SpliceDnn

        self.c = config
        self.generalist_path = str(generalist)
        self.generalist = SpliceDnn.load(generalist).eval()
        for p in self.generalist.parameters():
            p.requires_grad_(False)
        self.digest = model_digest(generalist)
        self.senones = [int(s) for s in senones]
        num_pdfs = self.generalist.config.num_pdfs
        if not self.senones or len(set(self.senones)) != len(self.senones) or \
                min(self.senones) < 0 or max(self.senones) >= num_pdfs:  # fmt: skip
            raise InputError(f"a specialist's senones must be distinct pdfs of 0..{num_pdfs - 1}",
                             generalist)  # fmt: skip
        self.mapping = set_mapping(self.senones, num_pdfs)
        self.idx = torch.as_tensor(self.senones)
        self.rest = torch.as_tensor(np.flatnonzero(self.mapping == len(self.senones)))
        self.name = f"specialist on {len(self.senones)} senones + dustbin"
        self.fraction: float | None = None  # of the labelled training frames in the set

    def views(self, train, dev):
        if train.num_pdfs != self.generalist.config.num_pdfs:
            raise InputError(f"the store has {train.num_pdfs} pdfs, the generalist "
                             f"{self.generalist.config.num_pdfs}", train.path)  # fmt: skip
        labels = np.asarray(train.targets)[train.frame_indices(labelled_only=True)]
        inside = np.isin(labels, self.senones)
        if inside.all() or not inside.any():
            raise InputError("a specialist needs labelled frames inside and outside its set",
                             train.path)  # fmt: skip
        self.fraction = float(inside.mean())
        # Training keeps the pdf targets (the loss maps them); dev is scored as the
        # specialist's task, its senones plus the dustbin (:meth:`scored`).
        dev_view = dev.relabelled(self.mapping).balanced(np.arange(len(self.senones)))
        return train.balanced(self.senones), dev_view

    def setup(self, student, device: torch.device) -> None:
        """Start from the generalist: every weight and buffer."""
        g, s = self.generalist, student
        if dataclasses.astuple(g.config) != dataclasses.astuple(
                dataclasses.replace(s.config, dropout=g.config.dropout)):  # fmt: skip
            raise InputError("the specialist's shape (--config) differs from the generalist's",
                             self.generalist_path)  # fmt: skip
        s.load_state_dict(g.state_dict())
        self.generalist.to(device)
        self.rest = self.rest.to(device)
        self.idx = self.idx.to(device)
        self.mapping_t = torch.as_tensor(self.mapping, dtype=torch.int64, device=device)

    def scored(self, student):
        return _Projected(student, self.idx, self.rest)

    def identity(self) -> dict:
        return {"objective": self.name, "specialist_config": dataclasses.asdict(self.c),
                "generalist": self.digest, "senones": self.senones,
                "dustbin": "pooled"}  # fmt: skip

    def record(self, exp_dir: Path) -> None:
        with atomic_open(exp_dir / SPECIALIST_FILE) as f:
            yaml.safe_dump({"generalist": self.generalist_path, "generalist_sha256": self.digest,
                            "senones": self.senones, "train_fraction": self.fraction,
                            "dustbin_correction": dustbin_log_correction(self.fraction),
                            **dataclasses.asdict(self.c)}, f, sort_keys=False)  # fmt: skip

    def loss(self, model, batch, device: torch.device, epoch: int):
        from asr_distill.nnet import losses

        x = batch.inputs.to(device, non_blocking=True)
        y = self.mapping_t[batch.targets.to(device, non_blocking=True)]  # (B,) in 0..|S|
        full = model(x).float()  # (B, P)
        logits = project_logits(full, self.idx, self.rest)  # (B, |S| + 1)
        hard = losses.hard_cross_entropy(logits, y)
        if self.c.soft_weight == 0:
            return hard, logits, y
        t = self.c.temperature
        with torch.no_grad():
            teacher = project_logits((self.generalist(x).float() / t).log_softmax(-1),
                                     self.idx, self.rest)  # fmt: skip
        # Both at T, then projected: the softmax of project(z / T) pools the others at T.
        soft = losses.soft_cross_entropy(project_logits(full / t, self.idx, self.rest),
                                         teacher, 1.0)  # fmt: skip
        return (1 - self.c.soft_weight) * hard + self.c.soft_weight * t * t * soft, logits, y


def train_specialists(
    generalist: str | Path, sets_path: str | Path, train_store: str | Path,
    dev_store: str | Path, out_dir: str | Path, train_config, config: SpecialistConfig,
    *, which: Sequence[int] | None = None, force: bool = False, progress: bool = False,
) -> list[Path]:  # fmt: skip
    """``train-specialists``: one specialist per set of ``sets_path`` (or the set ids in
    ``which``) into ``out_dir/spec<m>``, each a train-dnn run (resumable, done marker) with
    :class:`SpecialistObjective`; its ``specialist.yaml`` holds the set and the dustbin's
    bias correction. Returns the specialists' dirs."""
    from asr_distill.nnet.train import train_dnn

    sets = read_sets(sets_path)
    which = list(range(len(sets))) if which is None else list(which)
    for m in which:
        if not 0 <= m < len(sets):
            raise InputError(f"no set {m} (sets 0..{len(sets) - 1})", sets_path)
    dirs = [Path(out_dir) / f"spec{m}" for m in which]
    # The step's own lifecycle (log, config, done marker) over its train-dnn runs; a
    # selection of sets has a marker of its own.
    marker = ".done" if len(which) == len(sets) else ".done_sets_" + "_".join(map(str, which))
    settings = {"generalist": str(generalist), "sets": str(sets_path), "which": which,
                "specialist": dataclasses.asdict(config),
                "train": dataclasses.asdict(train_config)}  # fmt: skip
    with step_log(out_dir, "train-specialists.log", force=force, config=settings,
                  marker=marker) as run:  # fmt: skip
        if not run:
            return dirs
        for m, exp in zip(which, dirs, strict=True):
            objective = SpecialistObjective(generalist, sets[m], config)
            log.info("train-specialists: set %d (%d senones) -> %s", m, len(sets[m]), exp)
            train_dnn(train_store, dev_store, exp, train_config, force=force,
                      progress=progress, objective=objective)  # fmt: skip
    return dirs


# --------------------------------------------------------------------------- inference


@dataclasses.dataclass
class Specialist:
    """A trained specialist: its model (all the generalist's outputs, seen through
    :func:`project_logits`: ``senones`` then the dustbin) and the dustbin logit's
    correction (:func:`dustbin_log_correction`)."""

    model: torch.nn.Module
    senones: list[int]
    correction: float
    path: str = ""
    # (senones, the other pdfs) as index tensors, per device: built once, not per batch
    _index: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def load(cls, exp_dir: str | Path, map_location: str = "cpu") -> Specialist:
        from asr_distill.nnet.model import SpliceDnn

        exp_dir = Path(exp_dir)
        path = exp_dir / SPECIALIST_FILE
        if not path.is_file():
            raise InputError("missing (not a train-specialists run)", path)
        info = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        try:
            senones, correction = (
                [int(s) for s in info["senones"]],
                float(info["dustbin_correction"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"bad or missing field ({e})", path) from None
        model = SpliceDnn.load(exp_dir / "final", map_location=map_location).eval()
        num_pdfs = model.config.num_pdfs
        if not senones or max(senones) >= num_pdfs or len(senones) >= num_pdfs:
            raise InputError(f"the model has {num_pdfs} outputs: not a specialist (all the "
                             f"generalist's outputs) on these {len(senones)} senones",
                             path)  # fmt: skip
        return cls(model, senones, correction, str(exp_dir))

    def log_probs(self, inputs: torch.Tensor) -> torch.Tensor:
        """(B, |S| + 1) log-probabilities with the dustbin corrected."""
        if inputs.device not in self._index:
            outside = set_mapping(self.senones, self.model.config.num_pdfs) == len(self.senones)
            self._index[inputs.device] = (
                torch.as_tensor(self.senones, device=inputs.device),
                torch.as_tensor(np.flatnonzero(outside), device=inputs.device))  # fmt: skip
        idx, rest = self._index[inputs.device]
        logits = project_logits(self.model(inputs).float(), idx, rest)
        logits[:, -1] += self.correction
        return logits.log_softmax(-1)


def specialist_dirs(out_dir: str | Path) -> list[Path]:
    """train-specialists' ``spec<m>`` dirs in ``out_dir``, by m."""
    dirs = sorted((d for d in Path(out_dir).glob("spec*") if d.name[4:].isdigit()),
                  key=lambda d: int(d.name[4:]))  # fmt: skip
    if not dirs:
        raise InputError("no spec<m> dirs (train-specialists' output)", out_dir)
    return dirs


def load_specialists(out_dir: str | Path, map_location: str = "cpu") -> list[Specialist]:
    """The specialists of train-specialists' ``out_dir`` (its ``spec<m>`` dirs, by m)."""
    return [Specialist.load(d, map_location) for d in specialist_dirs(out_dir)]


@torch.no_grad()
def generalist_and_specialists(generalist: torch.nn.Module, specialists: Sequence[Specialist],
                               inputs: torch.Tensor, *, top_n: int = 1, steps: int = 200
                               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """For a batch of windows: the generalist's log p_g (B, P), which specialists are active
    (B, M) (those whose set meets the generalist's ``top_n`` senones, the paper's n), and
    the combined log q (B, P) (:func:`combine`)."""
    log_pg = generalist(inputs).float().log_softmax(-1)
    num_pdfs = log_pg.shape[1]
    member = membership([s.senones for s in specialists], num_pdfs).bool()  # (M, P)
    member = member.to(log_pg.device)
    top = log_pg.topk(top_n, dim=-1).indices  # (B, n)
    active = member[:, top].any(-1).T  # (B, M)
    specs = [s.log_probs(inputs) for s in specialists]
    log_q = combine(log_pg, specs, [s.senones for s in specialists], active, steps=steps)
    return log_pg, active, log_q


def score_specialists(generalist: torch.nn.Module, specialists: Sequence[Specialist], store,
                      *, top_n: int = 1, steps: int = 200, batch_size: int = 4096
                      ) -> dict:  # fmt: skip
    """Frame accuracy of the generalist alone and with the specialists on the labelled
    frames of ``store``, overall, on the frames whose correct senone some specialist
    covers, and by the number of active specialists that cover the correct senone (the
    paper's Tables 3 and 4)."""
    cfg = generalist.config
    member = membership([s.senones for s in specialists], cfg.num_pdfs).bool()
    covered_any = member.any(0)  # (P,)
    rows: dict[int, list[int]] = {}  # covering active specialists -> [frames, gen, combined]
    total = [0, 0, 0]
    covered = [0, 0, 0]
    for batch in store.batches(batch_size, left=cfg.left_context, right=cfg.right_context,
                               shuffle=False, labelled_only=True):  # fmt: skip
        y = batch.targets
        log_pg, active, log_q = generalist_and_specialists(
            generalist, specialists, batch.inputs, top_n=top_n, steps=steps)  # fmt: skip
        g_ok = log_pg.argmax(-1) == y
        q_ok = log_q.argmax(-1) == y
        cover = (active & member[:, y].T).sum(-1)  # (B,): active specialists covering y
        for k in cover.unique().tolist():
            sel = cover == k
            row = rows.setdefault(int(k), [0, 0, 0])
            row[0] += int(sel.sum())
            row[1] += int(g_ok[sel].sum())
            row[2] += int(q_ok[sel].sum())
        cov = covered_any[y]
        for acc, sel in ((total, torch.ones_like(cov)), (covered, cov)):
            acc[0] += int(sel.sum())
            acc[1] += int(g_ok[sel].sum())
            acc[2] += int(q_ok[sel].sum())

    def pct(n: int, d: int) -> float:
        return round(100.0 * n / max(d, 1), 3)

    return {
        "frames": total[0], "generalist": pct(total[1], total[0]),
        "with_specialists": pct(total[2], total[0]),
        "covered_frames": covered[0], "covered_generalist": pct(covered[1], covered[0]),
        "covered_with_specialists": pct(covered[2], covered[0]),
        "by_active_cover": {k: {"frames": r[0], "generalist_correct": r[1],
                                "combined_correct": r[2], "change": r[2] - r[1],
                                "relative_change": pct(r[2] - r[1], r[1]) if r[1] else None}
                            for k, r in sorted(rows.items())},
    }  # fmt: skip
