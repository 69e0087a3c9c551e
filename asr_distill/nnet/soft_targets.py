"""Cached soft targets: the frozen teacher ensemble's distribution at temperature T,
top-k per frame, computed once over a whole frame store and read back by the student.

Distillation (Hinton et al. 2015, section 2) trains the student on the ensemble's
``p = combine_m softmax(z_m / T)``. Running 10 teachers at every student step costs
10 forward passes per frame; the paper's ensemble outputs are fixed, so they are
computed once here. With about 14000 senones a full distribution is 28 kB per frame
in float16, so only the ``k`` largest probabilities are kept, with the mass left over
(the *tail*), which a sparse cross-entropy spreads uniformly over the other classes:

    CE(p, q) ~= - sum_{i in top-k} p_i log q_i - tail / (P - k) * sum_{j not in top-k} log q_j

With a few thousand pdfs the full distribution fits (``k = num_pdfs``, or ``top_k=0``):
the cache is then *dense*, every probability in pdf order and no indices, exact up to
float16 rounding. At high T the spread tail erases the ranking among the pdfs outside
the top-k, which is what a high temperature exposes, so the dense layout is the one to
use when it fits.

On-disk format (``format_version`` 1), in the cache directory:

- ``probs.npy``    float16 ``(N, k)``: the top-k probabilities of each store frame,
  descending; dense: ``(N, num_pdfs)`` in pdf order
- ``indices.npy``  int32 ``(N, k)``: their pdf-ids (not written when dense)
- ``tail.npy``     float32 ``(N,)``: ``1 - sum(top-k)``, summed in float32 from the fp32
  distribution, clipped at >= 0
- ``meta.json``    members (paths, sha256 of weights), combine, weights, temperature,
  top_k, layout (``topk`` or ``dense``; absent: topk), num_pdfs, num_frames, context,
  the store's path and ``feats_sha256``, mean tail
- ``.done``        written last; a cache without it is incomplete

Generalist and specialists (Hinton et al. 2015, section 5): with ``specialists`` the one
teacher is a generalist and the distribution is its combination ``q`` with the
specialists of ``train-specialists`` (:func:`asr_distill.nnet.specialists.
generalist_and_specialists`: the generalist's top-n senones pick the active specialists,
q minimises the summed KLs), softened as a teacher's logits are: ``softmax(log q / T)``.
A student distilled from such a cache learns what the specialists add in one network
(beyond the paper, which combines them at inference only). meta.json then also holds
``specialists`` (paths, and digests: the sha256 of each one's weights and of its
specialist.yaml, joined by "+"), ``specialist_top_n`` and ``specialist_steps``.

Rows are in store frame order (frame ``i`` of the store is row ``i``), so a training
batch's :attr:`FrameBatch.frames` index the cache directly, also for a subset view.

Masked views (``views`` V >= 1 with ``freq_mask`` F > 0): the teachers label each frame
V times, each time with its window under one SpecAugment frequency band of up to F
dimensions (:func:`augment.draw_bands`, from a generator seeded by ``mask_seed`` and
the view), so a student can train on perturbed windows that its teachers labelled
as it sees them (Beyer et al. 2022's "consistent" teaching) at the cost of a cached
student: the student's epoch ``e`` reads view ``e mod V`` and masks its windows with
that view's bands. Then ``probs.npy`` (and ``indices.npy``, ``tail.npy``) hold V blocks
of N rows (view ``v``, frame ``i`` is row ``v * N + i``), ``bands.npy`` uint8
``(V, N, 2)`` the start and width of each band, and meta.json ``views``,
``freq_mask``, ``mask_seed`` (absent: one unmasked view).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from asr_distill.errors import InputError
from asr_distill.features.framestore import FrameStore
from asr_distill.io import (
    atomic_open,
    atomic_path,
    check_free_space,
)
from asr_distill.io.npy import load_npy_checked
from asr_distill.io.step import read_done_meta, step_log
from asr_distill.nnet import augment
from asr_distill.nnet.ensemble import COMBINES, Ensemble, model_digest

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
PROBS_FILE = "probs.npy"
INDICES_FILE = "indices.npy"
TAIL_FILE = "tail.npy"
META_FILE = "meta.json"
BANDS_FILE = "bands.npy"


@dataclasses.dataclass(frozen=True)
class SoftTargetSummary:
    """What :func:`make_soft_targets` wrote (or found already complete, ``built=False``)."""

    path: Path
    num_frames: int
    top_k: int
    num_pdfs: int
    temperature: float
    mean_tail: float
    seconds: float
    built: bool


def _normalised_weights(weights: Sequence[float] | None, num_members: int) -> list[float]:
    """Member weights summing to 1 (uniform when None)."""
    if weights is None:
        return [1.0 / num_members] * num_members
    w = [float(x) for x in weights]
    if len(w) != num_members:
        raise ValueError(f"{len(w)} weights for {num_members} teachers")
    if not all(math.isfinite(x) and x > 0 for x in w):
        raise ValueError(f"weights must be positive and finite, got {w}")
    total = sum(w)
    return [x / total for x in w]


def _member_key(digests: Sequence[str], weights: Sequence[float]) -> list[tuple[str, float]]:
    """The ensemble as an order-free multiset of (weights sha256, weight): both combines are
    invariant to the order in which members are listed."""
    return sorted((d, round(w, 9)) for d, w in zip(digests, weights, strict=True))


def _same_temperature(a: float, b: float) -> bool:
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)


def make_soft_targets(
    store_dir: str | Path,
    model_paths: Sequence[str | Path],
    out_dir: str | Path,
    *,
    temperature: float,
    top_k: int,
    combine: str = "arithmetic",
    weights: Sequence[float] | None = None,
    batch_size: int = 4096,
    device: str = "cpu",
    views: int = 1,
    freq_mask: int = 0,
    mask_seed: int = 0,
    specialists: str | Path | None = None,
    top_n: int = 1,
    steps: int = 200,
    force: bool = False,
    progress: bool = True,
) -> SoftTargetSummary:
    """Run the frozen ensemble over every frame of a frame store and cache its top-k.

    store_dir: a frame store (``make-frame-store``); every frame, labelled or not,
        in store order, spliced with the members' left/right context.
    model_paths: saved :class:`SpliceDnn` stems (``<stem>.safetensors`` + ``.yaml``); the
        members must share outputs, feature dim and context.
    temperature: T > 0 of the ensemble's distribution (the paper tries 1, 2, 5, 10).
    top_k: 1 .. num_pdfs probabilities kept per frame; ``num_pdfs`` or 0 keeps all of
        them as a dense cache (pdf order, no indices).
    combine: ``arithmetic`` [default] (mean of probabilities, as the paper) or
        ``geometric`` (normalised mean of log-probabilities); see :mod:`ensemble`.
    weights: per-member weights (normalised to sum to 1); default None is uniform.
    batch_size: frames per forward pass [4096]; device: where the teachers run [cpu].
    views, freq_mask, mask_seed: with ``freq_mask`` F > 0, label ``views`` masked
        views of every frame, each window under a frequency band of up to F dims drawn
        from a generator seeded by (``mask_seed``, view); see the module docs. Without
        masks only one view (the clean windows) makes sense.
    specialists: train-specialists' dir; the one teacher is then their generalist and
        the cache holds ``softmax(log q / T)`` of the combination (module docs), the
        generalist's ``top_n`` senones picking the active specialists (q is exact for
        disjoint sets; ``steps`` gradient steps find it for overlapping ones).
    force: recompute a finished cache. Without it a finished cache is a no-op if it was
        made for the same store, teachers, combine, weights, T and k, and an
        :class:`InputError` naming its meta.json otherwise.

    Arrays are written to temporary names and renamed, meta.json after them and
    ``.done`` last, so a killed run leaves no ``.done`` and a re-run redoes the cache.
    """
    t0 = time.monotonic()
    store_dir, out_dir = Path(store_dir), Path(out_dir)
    paths = [Path(p) for p in model_paths]
    if not paths:
        raise ValueError("need at least one teacher model")
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if combine not in COMBINES:
        raise ValueError(f"combine must be one of {COMBINES}, not {combine!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if views < 1 or freq_mask < 0 or (views > 1 and freq_mask == 0):
        raise ValueError(f"views must be >= 1 and freq_mask >= 0, more than one view only "
                         f"with masks (got views {views}, freq_mask {freq_mask})")  # fmt: skip
    w = _normalised_weights(weights, len(paths))
    store = FrameStore(store_dir)
    digests = [model_digest(p) for p in paths]
    spec = None  # (paths, digests, top_n, steps) of the specialists
    if specialists is not None:
        if len(paths) != 1:
            raise ValueError(f"with specialists, one teacher (their generalist), not "
                             f"{len(paths)}")  # fmt: skip
        if top_n < 1 or steps < 1:
            raise ValueError(f"top_n and steps must be >= 1, got {top_n}, {steps}")
        from asr_distill.nnet.specialists import specialist_dirs

        spec_paths = [str(d.resolve()) for d in specialist_dirs(specialists)]
        spec = (spec_paths, [_specialist_digest(d) for d in spec_paths], int(top_n),
                int(steps))  # fmt: skip

    settings = {"store": str(Path(store_dir).resolve()), "teachers": [str(p) for p in paths],
                "temperature": float(temperature), "top_k": int(top_k), "combine": combine,
                "weights": w, "batch_size": int(batch_size), "device": str(device),
                "views": int(views), "freq_mask": int(freq_mask),
                "mask_seed": int(mask_seed)}  # fmt: skip
    if spec is not None:
        settings.update(specialists=spec[0], specialist_top_n=spec[2], specialist_steps=spec[3])
    with step_log(out_dir, "make-soft-targets.log", force=force, config=settings) as run:
        if not run:  # finished: only if it holds what is asked for
            cache = SoftTargetCache(out_dir)
            if top_k == 0:
                top_k = cache.num_pdfs
            request = (views, freq_mask, mask_seed if freq_mask else 0)
            _check_same_request(cache, store, digests, w, combine, temperature, top_k, request,
                                spec)  # fmt: skip
            return SoftTargetSummary(
                out_dir, cache.num_frames, cache.top_k, cache.num_pdfs, cache.temperature,
                float(cache.meta.get("mean_tail", float("nan"))), time.monotonic() - t0,
                built=False,
            )  # fmt: skip
        ensemble = Ensemble.load(paths, combine=combine, weights=w).to(device)
        conf = ensemble.config
        teacher_probs = ensemble.probs
        if spec is not None:
            teacher_probs = _specialist_teacher(ensemble.members[0], specialists,
                                                    spec[2], spec[3], device)  # fmt: skip
        num_pdfs = conf.num_pdfs
        if top_k == 0:
            top_k = num_pdfs
        if not 1 <= top_k <= num_pdfs:
            raise ValueError(f"top_k must be in 0..{num_pdfs} (the teachers' pdfs), got {top_k}")
        dense = top_k == num_pdfs
        if conf.feat_dim != store.dim:
            raise InputError(
                f"teachers read {conf.feat_dim}-dim features, the store holds {store.dim}-dim",
                store.path / "meta.json",
            )
        if store.num_pdfs is not None and store.num_pdfs != num_pdfs:
            raise InputError(
                f"teachers have {num_pdfs} outputs, the store's targets {store.num_pdfs} pdfs",
                store.path / "meta.json",
            )

        if freq_mask > store.dim:
            raise ValueError(f"freq_mask {freq_mask} is wider than the {store.dim}-dim features")
        n = store.features.shape[0]
        rows = views * n
        check_free_space(out_dir, rows * (top_k * 2 + (0 if dense else top_k * 4) + 6),
                         "the soft-target cache")  # fmt: skip
        tail_sum = 0.0
        (out_dir / INDICES_FILE).unlink(missing_ok=True)  # a dense cache has none
        (out_dir / BANDS_FILE).unlink(missing_ok=True)  # an unmasked cache has none
        with contextlib.ExitStack() as stack:
            probs_tmp = stack.enter_context(atomic_path(out_dir / PROBS_FILE))
            tail_tmp = stack.enter_context(atomic_path(out_dir / TAIL_FILE))
            fmt = np.lib.format
            probs_mm = fmt.open_memmap(probs_tmp, mode="w+", dtype=np.float16,
                                       shape=(rows, top_k))  # fmt: skip
            indices_mm = bands_mm = None
            if not dense:
                indices_tmp = stack.enter_context(atomic_path(out_dir / INDICES_FILE))
                indices_mm = fmt.open_memmap(indices_tmp, mode="w+", dtype=np.int32,
                                             shape=(rows, top_k))  # fmt: skip
            tail_mm = fmt.open_memmap(tail_tmp, mode="w+", dtype=np.float32, shape=(rows,))
            if freq_mask:
                bands_tmp = stack.enter_context(atomic_path(out_dir / BANDS_FILE))
                bands_mm = fmt.open_memmap(bands_tmp, mode="w+", dtype=np.uint8,
                                           shape=(views, n, 2))  # fmt: skip
                for v in range(views):  # (start, width) of each frame's band in view v
                    rng = np.random.default_rng([mask_seed, v])
                    start, width = augment.draw_bands(n, store.dim, freq_mask, rng)
                    bands_mm[v, :, 0], bands_mm[v, :, 1] = start, width
            bar = tqdm(total=rows, desc="make-soft-targets", unit="frame",
                       disable=not progress)  # fmt: skip
            with torch.no_grad(), bar:
                for v, s in ((v, s) for v in range(views) for s in range(0, n, batch_size)):
                    e = min(n, s + batch_size)  # frames s..e-1 of view v
                    frames = np.arange(s, e, dtype=np.int64)
                    batch = store.gather(frames, left=conf.left_context, right=conf.right_context)
                    x = batch.inputs.to(device)  # (B, W*D)
                    if bands_mm is not None:
                        band = torch.from_numpy(np.array(bands_mm[v, s:e]))  # (B, 2)
                        x = augment.mask_bands(x, store.dim, band[:, 0], band[:, 1])
                    p = teacher_probs(x, temperature).float()  # (B, P)
                    s, e = v * n + s, v * n + e  # rows of this view
                    if dense:
                        top_p = p  # (B, P), pdf order
                    else:
                        top_p, top_i = torch.topk(p, top_k, dim=-1, sorted=True)  # (B, k), (B, k)
                        indices_mm[s:e] = top_i.cpu().numpy().astype(np.int32)
                    tail = (1.0 - top_p.sum(-1, dtype=torch.float32)).clamp_min(0.0)  # (B,)
                    probs_mm[s:e] = top_p.cpu().numpy().astype(np.float16)
                    tail_np = tail.cpu().numpy()
                    tail_mm[s:e] = tail_np
                    tail_sum += float(tail_np.sum(dtype=np.float64))
                    bar.update(e - s)
            for mm in (probs_mm, indices_mm, tail_mm, bands_mm):
                if mm is not None:
                    mm.flush()
            del probs_mm, indices_mm, tail_mm, bands_mm

        mean_tail = tail_sum / max(rows, 1)
        meta = {
            "format_version": FORMAT_VERSION,
            "members": [
                {"path": str(p.resolve()), "sha256": d} for p, d in zip(paths, digests, strict=True)
            ],
            "combine": combine,
            "weights": w,
            "temperature": float(temperature),
            "top_k": int(top_k),
            "layout": "dense" if dense else "topk",
            "num_pdfs": int(num_pdfs),
            "num_frames": int(n),
            "left_context": int(conf.left_context),
            "right_context": int(conf.right_context),
            "store_path": str(store.path.resolve()),
            "feats_sha256": store.meta["feats_sha256"],
            "mean_tail": mean_tail,
        }
        if freq_mask:
            meta.update(views=int(views), freq_mask=int(freq_mask), mask_seed=int(mask_seed))
        if spec is not None:
            meta.update(specialists=[{"path": p, "digest": d} for p, d in zip(*spec[:2],
                                                                             strict=True)],
                        specialist_top_n=spec[2], specialist_steps=spec[3])  # fmt: skip
        with atomic_open(out_dir / META_FILE) as f:
            json.dump(meta, f, indent=2, sort_keys=True)
            f.write("\n")
        seconds = time.monotonic() - t0
        log.info(
            "%s: %d frames x %d view(s)%s, top-%d of %d pdfs at T=%g, mean tail mass %.4g, "
            "%.1f s", out_dir, n, views, f" (frequency bands up to {freq_mask})" if freq_mask
            else "", top_k, num_pdfs, temperature, mean_tail, seconds,
        )  # fmt: skip
        return SoftTargetSummary(
            out_dir, n, top_k, num_pdfs, float(temperature), mean_tail, seconds, built=True
        )


def _specialist_digest(exp_dir: str | Path) -> str:
    """A specialist's identity: the sha256 of its weights and of its specialist.yaml (its
    senones and dustbin correction), joined by "+"."""
    from asr_distill.io import file_sha256
    from asr_distill.nnet.specialists import SPECIALIST_FILE

    exp_dir = Path(exp_dir)
    if not (exp_dir / SPECIALIST_FILE).is_file():
        raise InputError("missing (not a train-specialists run)", exp_dir / SPECIALIST_FILE)
    return f"{model_digest(exp_dir / 'final')}+{file_sha256(exp_dir / SPECIALIST_FILE)}"


def _specialist_teacher(generalist, specialists: str | Path, top_n: int, steps: int,
                        device: str):  # fmt: skip
    """``f(x, T)``: softmax(log q / T) of the generalist with its specialists."""
    from asr_distill.nnet.specialists import generalist_and_specialists, load_specialists

    specs = load_specialists(specialists, map_location=device)
    for s in specs:
        c, g = s.model.config, generalist.config
        if (c.num_pdfs, c.feat_dim, c.left_context, c.right_context) != (
            g.num_pdfs, g.feat_dim, g.left_context, g.right_context
        ):  # fmt: skip
            raise InputError("a specialist with other outputs, features or context than "
                             "the generalist", s.path)  # fmt: skip

    def probs(x: torch.Tensor, temperature: float) -> torch.Tensor:
        log_q = generalist_and_specialists(generalist, specs, x, top_n=top_n, steps=steps)[2]
        return (log_q / temperature).softmax(-1)

    return probs


def _check_same_request(
    cache: SoftTargetCache,
    store: FrameStore,
    digests: Sequence[str],
    weights: Sequence[float],
    combine: str,
    temperature: float,
    top_k: int,
    views: tuple[int, int, int],
    spec: tuple | None = None,
) -> None:
    """A finished cache is only reused for the request it was made for; ``views`` is
    (views, freq_mask, mask_seed), ``spec`` (paths, digests, top_n, steps) of the
    specialists or None."""
    m = cache.meta
    problems = []
    same_frames = cache.num_frames == int(store.features.shape[0])
    if m.get("feats_sha256") != store.meta.get("feats_sha256") or not same_frames:
        problems.append(f"store {store.path} (feats_sha256) differs from {m.get('store_path')}")
    if not _same_temperature(cache.temperature, temperature):
        problems.append(f"temperature {temperature:g} now, {cache.temperature:g} then")
    if cache.top_k != top_k:
        problems.append(f"top_k {top_k} now, {cache.top_k} then")
    if m.get("combine") != combine:
        problems.append(f"combine {combine} now, {m.get('combine')} then")
    then = (cache.views, cache.freq_mask, cache.mask_seed)
    if then != tuple(views):
        problems.append(f"views, freq_mask, mask_seed {views} now, {then} then")
    if _member_key(digests, weights) != _member_key(cache.member_digests, m.get("weights", [])):
        problems.append("teachers (sha256 of weights) or their weights differ")
    then_spec = cache.specialists
    now_spec = None if spec is None else (sorted(spec[1]), spec[2], spec[3])
    if then_spec is not None:
        then_spec = (sorted(then_spec[0]), then_spec[1], then_spec[2])
    if now_spec != then_spec:
        problems.append("specialists (sha256 of weights), their top-n or steps differ")
    if problems:
        raise InputError(
            f"a finished soft-target cache made for another request ({'; '.join(problems)}); "
            "use --force to recompute it",
            cache.path / META_FILE,
        )


class SoftTargetCache:
    """A soft-target cache opened read-only (arrays memory-mapped).

    Opening checks the done marker and that meta.json agrees with the arrays; any
    problem is an :class:`InputError` naming the file. Call :meth:`check` with the
    student's frame store and temperature before training on it.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        meta_path = self.path / META_FILE
        self.meta = read_done_meta(
            self.path, "soft-target cache", "re-run make-soft-targets", META_FILE
        )
        try:
            version = self.meta["format_version"]
            n, k, p = (int(self.meta[x]) for x in ("num_frames", "top_k", "num_pdfs"))
            self.temperature = float(self.meta["temperature"])
            self.member_digests = [str(m["sha256"]) for m in self.meta["members"]]
            self.views = int(self.meta.get("views", 1))
            self.freq_mask = int(self.meta.get("freq_mask", 0))
            self.mask_seed = int(self.meta.get("mask_seed", 0))
            spec = self.meta.get("specialists")
            # (the specialists' digests, top_n, steps); None: no specialists
            self.specialists = None if spec is None else (
                [str(x["digest"]) for x in spec], int(self.meta["specialist_top_n"]),
                int(self.meta["specialist_steps"]))  # fmt: skip
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"meta.json lacks or has a bad field ({e})", meta_path) from None
        if version != FORMAT_VERSION:
            raise InputError(f"unsupported soft-target format_version {version}", meta_path)
        layout = self.meta.get("layout", "topk")
        if layout not in ("topk", "dense") or (layout == "dense" and k != p):
            raise InputError(f"bad layout {layout!r} for top_k {k} of {p} pdfs", meta_path)
        if self.views < 1 or self.freq_mask < 0 or (self.views > 1 and not self.freq_mask):
            raise InputError(f"bad views {self.views} / freq_mask {self.freq_mask}", meta_path)
        self.dense = layout == "dense"
        self.num_frames, self.top_k, self.num_pdfs = n, k, p
        rows = self.views * n
        self._probs = self._open(PROBS_FILE, np.float16, (rows, k))  # (V*N, k)
        self._indices = None if self.dense else self._open(INDICES_FILE, np.int32, (rows, k))
        self._tail = self._open(TAIL_FILE, np.float32, (rows,))  # (V*N,)
        self._bands = (
            self._open(BANDS_FILE, np.uint8, (self.views, n, 2)) if self.freq_mask else None
        )  # (V, N, 2)
        if self._indices is not None and self._indices.size:
            lo, hi = int(self._indices.min()), int(self._indices.max())
            if lo < 0 or hi >= p:  # a damaged file: the loss would index past the outputs
                raise InputError(f"pdf-ids {lo}..{hi} outside 0..{p - 1} (num_pdfs in "
                                 "meta.json): re-run make-soft-targets --force",
                                 self.path / INDICES_FILE)  # fmt: skip

    def _open(self, name: str, dtype: type, shape: tuple[int, ...]) -> np.ndarray:
        return load_npy_checked(self.path / name, dtype, shape, "soft-target")

    def __len__(self) -> int:
        return self.num_frames

    def check(
        self,
        store: FrameStore,
        *,
        temperature: float,
        model_paths: Sequence[str | Path] | None = None,
        top_k: int | None = None,
        combine: str | None = None,
        weighting: str | None = None,
        weights: Sequence[float] | None = None,
    ) -> None:
        """Refuse (:class:`InputError` naming meta.json) to feed a mismatched student.

        The cache must come from the same features (``feats_sha256`` and the number of
        frames of the whole store ``store`` views; a subset view of it is fine), at
        ``temperature``; when given, from the teachers ``model_paths`` (compared by the
        sha256 of their weights, in any order) and with ``top_k`` kept; combined by the
        ``combine`` mean with ``weighting`` (uniform or not) or exactly ``weights``
        (member weights in ``model_paths`` order).
        """
        meta_path = self.path / META_FILE
        want_sha = store.meta.get("feats_sha256")
        if self.meta.get("feats_sha256") != want_sha:
            raise InputError(
                f"soft targets were made from other features: feats_sha256 "
                f"{self.meta.get('feats_sha256')} ({self.meta.get('store_path')}), "
                f"the store {store.path} has {want_sha}",
                meta_path,
            )
        if self.num_frames != int(store.features.shape[0]):
            raise InputError(
                f"soft targets cover {self.num_frames} frames, the store {store.path} "
                f"has {store.features.shape[0]}",
                meta_path,
            )
        if not _same_temperature(self.temperature, temperature):
            raise InputError(
                f"soft targets are at temperature {self.temperature:g}, "
                f"training asks for {temperature:g}",
                meta_path,
            )
        if top_k is not None and top_k != self.top_k:
            raise InputError(f"soft targets keep top-{self.top_k}, asked for {top_k}", meta_path)
        if combine is not None and self.meta.get("combine") != combine:
            raise InputError(f"soft targets combine the teachers by the "
                             f"{self.meta.get('combine')} mean, training asks for {combine}",
                             meta_path)  # fmt: skip
        cached = [float(w) for w in self.meta.get("weights", [])]
        uniform = all(math.isclose(w, 1.0 / len(cached), rel_tol=1e-6) for w in cached)
        if weights is None and weighting is not None and (weighting == "uniform") != uniform:
            how = "uniformly" if uniform else "by accuracy"
            raise InputError(f"soft targets weight the teachers {how}, training asks for "
                             f"{weighting} weights", meta_path)  # fmt: skip
        if weights is not None and model_paths is not None:
            # float32 (training) against float64 (the cache): equal up to rounding
            want_key = _member_key([model_digest(p) for p in model_paths], weights)
            have_key = _member_key(self.member_digests, cached)
            if len(want_key) != len(have_key) or any(
                a[0] != b[0] or not math.isclose(a[1], b[1], rel_tol=1e-5)
                for a, b in zip(want_key, have_key, strict=True)
            ):  # fmt: skip
                raise InputError("soft targets weight the teachers otherwise than training "
                                 f"asks ({weighting} weights)", meta_path)  # fmt: skip
        if model_paths is not None:
            want = sorted(model_digest(p) for p in model_paths)
            if want != sorted(self.member_digests):
                raise InputError(
                    "soft targets were made by other teachers (sha256 of their weights "
                    f"differ from {[str(p) for p in model_paths]})",
                    meta_path,
                )

    @property
    def masked(self) -> bool:
        """The cache holds masked views: a student must see its windows under the bands."""
        return self._bands is not None

    def _rows(self, frames: np.ndarray | torch.Tensor, view: int) -> np.ndarray:
        if isinstance(frames, torch.Tensor):
            frames = frames.cpu().numpy()
        frames = np.asarray(frames, dtype=np.int64)  # (B,)
        if frames.size and (frames.min() < 0 or frames.max() >= self.num_frames):
            raise IndexError(f"frame index out of range 0..{self.num_frames - 1}")
        if not 0 <= view < self.views:
            raise IndexError(f"view {view} out of range 0..{self.views - 1}")
        return frames

    def bands(self, frames: np.ndarray | torch.Tensor, view: int = 0) -> tuple[torch.Tensor, ...]:
        """The frequency bands under which the teachers saw frames ``frames`` (B,) in
        ``view``: start and width (B,) int64 (for :func:`augment.mask_bands`)."""
        if self._bands is None:
            raise ValueError(f"{self.path} holds no masked views")
        band = torch.from_numpy(self._bands[view, self._rows(frames, view)].astype(np.int64))
        return band[:, 0], band[:, 1]

    def gather(self, frames: np.ndarray | torch.Tensor, view: int = 0) -> tuple[torch.Tensor, ...]:
        """Soft targets of store frame indices ``frames`` (B,) (a batch's ``.frames``) in
        ``view`` (0 .. views - 1; an unmasked cache has one).

        Returns probs ``(B, k)`` float32 (descending), indices ``(B, k)`` int64 pdf-ids
        and tail ``(B,)`` float32 (the probability mass outside the top-k); for a dense
        cache probs are ``(B, num_pdfs)`` in pdf order and indices None.
        """
        frames = self._rows(frames, view) + view * self.num_frames  # rows of the view
        probs = torch.from_numpy(self._probs[frames]).float()  # (B, k); torch: 20x astype
        indices = (
            None if self.dense else torch.from_numpy(self._indices[frames].astype(np.int64))
        )  # (B, k)
        tail = torch.from_numpy(np.array(self._tail[frames], dtype=np.float32))  # (B,)
        return probs, indices, tail

    def __repr__(self) -> str:
        return (
            f"SoftTargetCache({str(self.path)!r}, frames={self.num_frames}, "
            f"top_k={self.top_k}, num_pdfs={self.num_pdfs}, T={self.temperature:g}"
            f"{', dense' if self.dense else ''}"
            f"{f', {self.views} views masked up to {self.freq_mask}' if self.masked else ''}"
            f"{f', {len(self.specialists[0])} specialists' if self.specialists else ''})"
        )
