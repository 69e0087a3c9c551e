"""The frame store: features and per-frame senone targets laid out for frame-level DNN training.

A hybrid DNN is trained frame by frame on context windows of spliced features
(paper preset: 20 left + 1 + 5 right = 26 frames of 40-dim fbank = 1040 inputs)
with the senone (pdf-id) of the centre frame as target.
:func:`~asr_distill.features.framestore_build.build_frame_store` streams Kaldi
features (``feats.scp``) and ``ali-to-pdf`` alignments into one directory of
memory-mappable arrays; :class:`FrameStore` reads it back and yields minibatches
of windows without ever materialising the expanded ``(N, W*D)`` matrix.

On-disk format (``format_version`` 1), all arrays little-endian ``.npy``:

- ``feats.npy``    float16 ``(N, D)``: every frame, utterances back to back in store order
- ``targets.npy``  int32 ``(N,)``: pdf-id of each frame, ``-1`` where unlabelled
- ``offsets.npy``  int64 ``(U+1,)``: utterance ``i`` spans frames ``[offsets[i], offsets[i+1])``
- ``utt_ids.txt``  one utterance id a line, in store order (the order of the feature source)
- ``meta.json``    dim, num_frames, num_utts, num_labelled_frames, num_pdfs (or null),
  CMVN settings, ``feats_sha256`` (sha256 of the float16 feature bytes), source paths
- ``skipped.txt``  ``utt reason`` of utterances skipped with ``skip_bad`` (only if any)
- ``unaligned.txt`` utterances kept without targets (all frames ``-1``) with
  ``keep_unaligned`` (only if any)
- ``.done``        written last; a store without it is incomplete

Splicing repeats edge frames, exactly like Kaldi's ``splice-feats``: for frame ``t``
of an utterance spanning ``[s, e)`` the window is frames ``clamp(t + k, s, e - 1)``
for ``k = -left .. right``, concatenated in time order (frame ``t - left`` first).
"""

from __future__ import annotations

import copy
import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from asr_distill.errors import InputError
from asr_distill.io.npy import load_npy_checked
from asr_distill.io.step import read_done_meta

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
PAPER_LEFT_CONTEXT = 20
PAPER_RIGHT_CONTEXT = 5

FEATS_FILE = "feats.npy"
TARGETS_FILE = "targets.npy"
OFFSETS_FILE = "offsets.npy"
UTT_IDS_FILE = "utt_ids.txt"
META_FILE = "meta.json"
SKIPPED_FILE = "skipped.txt"
UNALIGNED_FILE = "unaligned.txt"

_STATS_CHUNK_FRAMES = 1 << 18


# --------------------------------------------------------------------------- reading


class FrameBatch(NamedTuple):
    """A minibatch of spliced context windows."""

    inputs: torch.Tensor  # (B, (left+1+right)*D) float32, time-major (frame t-left first)
    targets: torch.Tensor  # (B,) int64 pdf-ids of the centre frames, -1 if unlabelled
    frames: torch.Tensor  # (B,) int64 store frame indices of the centre frames


def splice_offsets(left: int, right: int) -> np.ndarray:
    """The frame offsets ``-left .. right`` of a context window, ``(left+1+right,)`` int64."""
    if left < 0 or right < 0:
        raise ValueError(f"context must be >= 0, got left={left} right={right}")
    return np.arange(-left, right + 1, dtype=np.int64)


class FrameStore:
    """A frame store opened read-only (arrays memory-mapped), or a subset view of one.

    ``features`` (N, D) float16, ``targets`` (N,) int32 and ``offsets`` (U+1,) int64 are
    always the whole store's arrays (store frame numbering). ``utt_ids``, ``num_utts``,
    ``num_frames``, ``num_labelled_frames`` and everything that iterates describe this
    view: the whole store, or the utterances picked by :meth:`subset`.

    Opening checks the done marker and that meta.json agrees with the arrays; any
    problem is an :class:`InputError` naming the file. ``verify_checksum=True`` also
    re-hashes the features (reads them all).
    """

    def __init__(self, path: str | Path, *, verify_checksum: bool = False):
        self.path = Path(path)
        meta_path = self.path / META_FILE
        self.meta = read_done_meta(self.path, "frame store", "rebuild it with --force", META_FILE)
        try:
            version = self.meta["format_version"]
            n, d, u = (int(self.meta[k]) for k in ("num_frames", "dim", "num_utts"))
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"meta.json lacks or has a bad field ({e})", meta_path) from None
        if version != FORMAT_VERSION:
            raise InputError(f"unsupported frame store format_version {version}", meta_path)
        self._feats = self._open(FEATS_FILE, np.float16, (n, d))  # (N, D)
        self._targets = self._open(TARGETS_FILE, np.int32, (n,))  # (N,)
        offsets = np.array(self._open(OFFSETS_FILE, np.int64, (u + 1,)))  # (U+1,)
        if u and (offsets[0] != 0 or offsets[-1] != n or np.any(np.diff(offsets) < 0)):
            raise InputError(
                f"offsets do not partition the {n} frames into utterances",
                self.path / OFFSETS_FILE,
            )
        self._offsets = offsets
        ids_path = self.path / UTT_IDS_FILE
        try:
            ids = ids_path.read_text(encoding="utf-8").split()
        except FileNotFoundError:
            raise InputError("frame store has no utt_ids.txt", ids_path) from None
        if len(ids) != u or len(set(ids)) != u:
            raise InputError(
                f"expected {u} unique utterance ids (meta.json), found {len(ids)}", ids_path
            )
        self._all_utt_ids = ids
        self._utt_index = np.arange(u, dtype=np.int64)  # (U_view,)
        self._position: dict[str, int] | None = None
        self._device_copy: tuple[torch.Tensor, torch.Tensor] | None = None
        self._balance: np.ndarray | None = None  # (P,) bool: see balanced()
        if verify_checksum:
            self.verify_checksum()

    def _open(self, name: str, dtype: type, shape: tuple[int, ...]) -> np.ndarray:
        return load_npy_checked(self.path / name, dtype, shape, "frame store")

    # ---- properties

    @property
    def dim(self) -> int:
        return self._feats.shape[1]

    @property
    def num_pdfs(self) -> int | None:
        return self.meta.get("num_pdfs")

    @property
    def features(self) -> np.ndarray:
        """The store's float16 features, memory-mapped, ``(N_store, D)``."""
        return self._feats

    @property
    def targets(self) -> np.ndarray:
        """The store's int32 targets, memory-mapped, ``(N_store,)``; -1 = unlabelled."""
        return self._targets

    @property
    def offsets(self) -> np.ndarray:
        """The store's utterance offsets ``(U_store+1,)`` int64."""
        return self._offsets

    @property
    def utt_index(self) -> np.ndarray:
        """Store indices of this view's utterances, ascending, ``(U_view,)``."""
        return self._utt_index

    def utt_of_frame(self, frame: int) -> str:
        """The id of the utterance that holds store frame ``frame``."""
        return self._all_utt_ids[int(np.searchsorted(self._offsets, frame, side="right")) - 1]

    @property
    def utt_ids(self) -> list[str]:
        return [self._all_utt_ids[i] for i in self._utt_index]

    @property
    def num_utts(self) -> int:
        return len(self._utt_index)

    @property
    def num_frames(self) -> int:
        starts, ends = self._ranges()
        return int((ends - starts).sum())

    @property
    def num_labelled_frames(self) -> int:
        if self._is_whole():
            return int(self.meta.get("num_labelled_frames", 0))
        return int(np.count_nonzero(self._targets[self.frame_indices()] >= 0))

    def _is_whole(self) -> bool:
        return len(self._utt_index) == len(self._all_utt_ids)

    def _ranges(self) -> tuple[np.ndarray, np.ndarray]:
        return self._offsets[self._utt_index], self._offsets[self._utt_index + 1]

    # ---- views and indices

    def subset(self, fraction: float, seed: int = 0) -> FrameStore:
        """A view of ``round(fraction * num_utts)`` utterances (at least one), chosen by ``seed``.

        The choice depends only on (view, fraction, seed), never on the process; no
        feature data is copied. ``fraction=0.03`` is the paper's 3 % experiment.
        """
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        k = max(1, round(fraction * self.num_utts))
        chosen = np.random.default_rng(seed).permutation(self.num_utts)[:k]
        view = copy.copy(self)
        view._utt_index = self._utt_index[np.sort(chosen)]
        view._position = None
        return view

    def relabelled(self, mapping: np.ndarray) -> FrameStore:
        """A view whose targets are ``mapping[target]`` (unlabelled frames stay -1) and whose
        ``num_pdfs`` is ``mapping.max() + 1``: a specialist's senones and its dustbin.
        The mapped targets are held in memory (4 bytes a frame)."""
        mapping = np.asarray(mapping, dtype=np.int32)
        if self.num_pdfs is None or mapping.shape != (self.num_pdfs,) or mapping.min() < 0:
            raise ValueError(f"mapping must give each of the {self.num_pdfs} pdfs an id >= 0")
        view = copy.copy(self)
        view._targets = np.where(self._targets >= 0, mapping[np.maximum(self._targets, 0)], -1)
        view.meta = {**self.meta, "num_pdfs": int(mapping.max()) + 1}
        view._device_copy = None
        view._balance = None
        return view

    def balanced(self, classes: np.ndarray | list[int]) -> FrameStore:
        """A view whose epochs (:meth:`batches`) take labelled frames only, alternating
        one whose target is in ``classes`` and one whose target is not, so every batch is
        half of each (Hinton et al. 2015, section 5: a specialist's training data). An
        epoch has ``2 min(n_in, n_out)`` frames; shuffled, each epoch draws afresh which
        frames of the larger side take part."""
        if self.num_pdfs is None:
            raise ValueError("a view balanced by class needs pdf targets")
        mask = np.zeros(self.num_pdfs, dtype=bool)
        mask[np.asarray(classes, dtype=np.int64)] = True
        view = copy.copy(self)
        view._balance = mask
        return view

    def _balanced_sides(self) -> tuple[np.ndarray, np.ndarray]:
        frames = self.frame_indices(labelled_only=True)
        inside = self._balance[self._targets[frames]]
        return frames[inside], frames[~inside]

    def _epoch_size(self, labelled_only: bool) -> int:
        """Frames in one epoch of :meth:`batches`."""
        if self._balance is not None:
            a, b = self._balanced_sides()
            return 2 * min(len(a), len(b))
        return self.num_labelled_frames if labelled_only else self.num_frames

    def _epoch_frames(self, labelled_only: bool, shuffle: bool, seed: int,
                      epoch: int) -> np.ndarray:  # fmt: skip
        """Store frame indices of one epoch, in the order :meth:`batches` visits them."""
        if self._balance is not None:
            a, b = self._balanced_sides()
            n = min(len(a), len(b))
            if shuffle:
                rng = np.random.default_rng([seed, epoch])
                a, b = a[rng.permutation(len(a))], b[rng.permutation(len(b))]
            return np.stack([a[:n], b[:n]], axis=1).reshape(-1)
        frames = self.frame_indices(labelled_only)  # (n,)
        if shuffle:
            order = np.random.default_rng([seed, epoch]).permutation(len(frames))
            frames = frames[order]
        return frames

    def frame_indices(self, labelled_only: bool = False) -> np.ndarray:
        """Store frame indices of this view in store order, ``(n,)`` int64."""
        if self._is_whole():
            frames = np.arange(self._feats.shape[0], dtype=np.int64)
        else:
            starts, ends = self._ranges()
            frames = np.concatenate(
                [np.arange(s, e, dtype=np.int64) for s, e in zip(starts, ends, strict=True)]
                or [np.zeros(0, dtype=np.int64)]
            )
        if labelled_only:
            frames = frames[self._targets[frames] >= 0]
        return frames

    # ---- splicing

    def gather(
        self,
        frames: np.ndarray,
        *,
        left: int = PAPER_LEFT_CONTEXT,
        right: int = PAPER_RIGHT_CONTEXT,
        device: torch.device | str | None = None,
    ) -> FrameBatch:
        """Spliced windows around the store frame indices ``frames`` (any order).

        device: splice there with torch, from a copy of the store's features made once
        (:meth:`on_device`): on a GPU only the frame indices cross the bus, not the
        26-fold windows. ``inputs`` and ``targets`` are then on that device, ``frames``
        on the host. None splices on the host with numpy (the same values).
        """
        frames = np.asarray(frames, dtype=np.int64)  # (B,)
        k = splice_offsets(left, right)  # (W,)
        if device is not None:
            return self._gather_on_device(frames, torch.from_numpy(frames).to(device), left,
                                          right)  # fmt: skip
        utt = np.searchsorted(self._offsets, frames, side="right") - 1  # (B,)
        start = self._offsets[utt]  # (B,)
        last = self._offsets[utt + 1] - 1  # (B,)
        idx = np.clip(frames[:, None] + k[None, :], start[:, None], last[:, None])  # (B, W)
        x = self._feats[idx.reshape(-1)]  # (B*W, D) float16
        width = len(k) * self.dim  # explicit: a rank's slice of a short batch may be empty
        # float16 -> float32 in torch: exact, and 20x numpy's astype (which is not vectorised)
        inputs = torch.from_numpy(x).float().reshape(len(frames), width)  # (B, W*D)
        targets = torch.from_numpy(self._targets[frames].astype(np.int64))  # (B,)
        return FrameBatch(inputs, targets, torch.from_numpy(frames))

    def on_device(self, device: torch.device | str) -> tuple[torch.Tensor, ...]:
        """The whole store's features ``(N, D)`` float16, targets ``(N,)`` int64 and
        offsets ``(U+1,)`` int64 on ``device``, copied on the first call and kept (the
        paper's 700M frames of 40 fbank are 56 GB in float16)."""
        device = torch.device(device)
        cached = self._device_copy
        if cached is None or cached[0].device != device:
            cached = tuple(torch.from_numpy(np.array(a)).to(device) for a in (
                self._feats, self._targets.astype(np.int64), self._offsets))  # fmt: skip
            self._device_copy = cached
        return cached

    def has_device_copy(self, device: torch.device | str) -> bool:
        """Whether :meth:`on_device` already holds the store on ``device``."""
        copy = self._device_copy
        return copy is not None and copy[0].device == torch.device(device)

    def _gather_on_device(self, frames: np.ndarray, frames_dev: torch.Tensor, left: int,
                          right: int) -> FrameBatch:  # fmt: skip
        """:meth:`gather` from the device copy, for frame indices already on the device
        (``frames_dev``, equal to ``frames``): nothing crosses the bus, so the host never
        waits for the device here."""
        feats, targets, offsets = self.on_device(frames_dev.device)
        utt = torch.searchsorted(offsets, frames_dev, right=True) - 1  # (B,)
        start, last = offsets[utt, None], offsets[utt + 1, None] - 1  # (B, 1)
        k = torch.arange(-left, right + 1, device=frames_dev.device)  # (W,)
        idx = torch.minimum(torch.maximum(frames_dev[:, None] + k, start), last)  # (B, W)
        inputs = feats[idx.reshape(-1)].float().reshape(len(frames), len(k) * self.dim)
        return FrameBatch(inputs, targets[frames_dev], torch.from_numpy(frames))

    def _utt_position(self, key: int | str) -> int:
        if isinstance(key, str):
            if self._position is None:
                self._position = {u: i for i, u in enumerate(self.utt_ids)}
            if key not in self._position:
                raise KeyError(f"utterance {key!r} is not in this frame store view")
            return self._position[key]
        if not -self.num_utts <= key < self.num_utts:
            raise IndexError(f"utterance index {key} out of range for {self.num_utts}")
        return key % self.num_utts

    def _utt_span(self, key: int | str) -> tuple[int, int]:
        i = self._utt_index[self._utt_position(key)]
        return int(self._offsets[i]), int(self._offsets[i + 1])

    def utterance(
        self, key: int | str, *, left: int = PAPER_LEFT_CONTEXT, right: int = PAPER_RIGHT_CONTEXT
    ) -> torch.Tensor:
        """Spliced features ``(T, (left+1+right)*D)`` float32 of one utterance of this view.

        ``key`` is the utterance's position in this view or its id.
        """
        s, e = self._utt_span(key)
        k = splice_offsets(left, right)  # (W,)
        x = np.array(self._feats[s:e])  # (T, D) float16
        idx = np.clip(np.arange(e - s)[:, None] + k[None, :], 0, max(e - s - 1, 0))  # (T, W)
        return torch.from_numpy(x[idx]).float().reshape(e - s, -1)  # (T, W*D)

    def utterance_targets(self, key: int | str) -> torch.Tensor:
        """Targets ``(T,)`` int64 of one utterance of this view (-1 = unlabelled)."""
        s, e = self._utt_span(key)
        return torch.from_numpy(self._targets[s:e].astype(np.int64))

    # ---- minibatches

    def num_batches(
        self, batch_size: int, *, drop_last: bool = False, labelled_only: bool = False
    ) -> int:
        """Global batches per epoch of :meth:`batches` with the same arguments."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        n = self._epoch_size(labelled_only)
        return n // batch_size if drop_last else -(-n // batch_size)

    def batches(
        self,
        batch_size: int,
        *,
        left: int = PAPER_LEFT_CONTEXT,
        right: int = PAPER_RIGHT_CONTEXT,
        shuffle: bool = True,
        seed: int = 0,
        epoch: int = 0,
        start_batch: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
        labelled_only: bool = False,
        device: torch.device | str | None = None,
    ) -> Iterator[FrameBatch]:
        """Minibatches of spliced windows over this view's frames, one epoch.

        batch_size: the GLOBAL batch size (summed over ranks).
        shuffle: order frames by a permutation drawn from ``(seed, epoch)`` only, so
            every process computes the same order; False gives store order (evaluation).
        start_batch: begin at global batch ``k`` (resume mid-epoch); the result equals
            the full iterator with its first ``k`` batches dropped.
        rank, world_size: DDP sharding. Each global batch is cut into ``world_size``
            contiguous slices (sizes differ by at most one, ``np.array_split``) and rank
            ``r`` gets slice ``r``; so every rank yields the same number of batches and
            the ranks' slices of one step, concatenated in rank order, are exactly the
            single-process batch. With ``drop_last=False`` a rank's slice of the short
            final batch may be empty (B=0).
        drop_last: drop the final global batch if it is short.
        labelled_only: skip frames whose target is -1 (training on hard labels).
        device: splice on this device with torch (see :meth:`gather`).

        Yields :class:`FrameBatch` (inputs ``(B, (left+1+right)*D)`` float32, targets
        ``(B,)`` int64, frames ``(B,)`` int64), B = this rank's share of the global batch.
        """
        if not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank} world={world_size}")
        if seed < 0 or epoch < 0 or start_batch < 0:
            raise ValueError("seed, epoch and start_batch must be >= 0")
        num_batches = self.num_batches(batch_size, drop_last=drop_last, labelled_only=labelled_only)
        splice_offsets(left, right)  # validate before the first batch is asked for
        if labelled_only and num_batches == 0 and self.num_labelled_frames == 0:
            raise ValueError(f"{self.path}: no labelled frames to train on")
        return self._iterate(
            batch_size, left, right, shuffle, seed, epoch, start_batch, rank, world_size,
            num_batches, labelled_only, device,
        )  # fmt: skip

    def _iterate(
        self,
        batch_size: int,
        left: int,
        right: int,
        shuffle: bool,
        seed: int,
        epoch: int,
        start_batch: int,
        rank: int,
        world_size: int,
        num_batches: int,
        labelled_only: bool,
        device: torch.device | str | None,
    ) -> Iterator[FrameBatch]:
        frames = self._epoch_frames(labelled_only, shuffle, seed, epoch)  # (n,)
        # With a device, the epoch's frame order goes there once, not a batch at a time.
        frames_dev = None if device is None else torch.from_numpy(frames).to(device)
        for b in range(start_batch, num_batches):
            lo = b * batch_size
            size = min(batch_size, len(frames) - lo)  # G
            # This rank's slice of the global batch, as np.array_split(G, world_size).
            per, extra = divmod(size, world_size)
            lo += rank * per + min(rank, extra)
            hi = lo + per + (rank < extra)
            if frames_dev is None:
                yield self.gather(frames[lo:hi], left=left, right=right)
            else:
                yield self._gather_on_device(frames[lo:hi], frames_dev[lo:hi], left, right)

    # ---- statistics and integrity

    def feature_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-dimension mean and (population) std ``(D,)`` float64 over this view's frames.

        Accumulated in float64, chunk by chunk (Chan et al.'s pairwise update), so the
        store is never loaded whole. The statistics of a spliced input are these tiled
        ``left+1+right`` times.
        """
        count = 0
        mean = np.zeros(self.dim, dtype=np.float64)  # (D,)
        m2 = np.zeros(self.dim, dtype=np.float64)  # (D,)
        for s, e in self._runs():
            for c in range(s, e, _STATS_CHUNK_FRAMES):
                x = np.asarray(self._feats[c : min(e, c + _STATS_CHUNK_FRAMES)], dtype=np.float64)
                n_b = x.shape[0]
                mean_b = x.mean(axis=0)  # (D,)
                m2_b = ((x - mean_b) ** 2).sum(axis=0)  # (D,)
                total = count + n_b
                delta = mean_b - mean
                mean = mean + delta * (n_b / total)
                m2 = m2 + m2_b + delta**2 * (count * n_b / total)
                count = total
        if count == 0:
            raise ValueError(f"{self.path}: no frames to compute statistics over")
        return mean, np.sqrt(m2 / count)

    def _runs(self) -> Iterator[tuple[int, int]]:
        """Maximal contiguous frame ranges covered by this view."""
        starts, ends = self._ranges()
        run_start = None
        run_end = None
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            if run_end is not None and s == run_end:
                run_end = e
                continue
            if run_start is not None and run_end > run_start:
                yield run_start, run_end
            run_start, run_end = s, e
        if run_start is not None and run_end > run_start:
            yield run_start, run_end

    def verify_checksum(self) -> None:
        """Re-hash the features and compare with meta.json (reads the whole feature file)."""
        sha = hashlib.sha256()
        n = self._feats.shape[0]
        for c in range(0, n, _STATS_CHUNK_FRAMES):
            sha.update(np.ascontiguousarray(self._feats[c : c + _STATS_CHUNK_FRAMES]).tobytes())
        if sha.hexdigest() != self.meta.get("feats_sha256"):
            raise InputError(
                "feature checksum does not match meta.json (corrupt store)", self.path / FEATS_FILE
            )

    def __repr__(self) -> str:
        return (
            f"FrameStore({str(self.path)!r}, utts={self.num_utts}, frames={self.num_frames}, "
            f"dim={self.dim}, num_pdfs={self.num_pdfs})"
        )
