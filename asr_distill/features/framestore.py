"""The frame store: features and per-frame senone targets laid out for frame-level DNN training.

A hybrid DNN is trained frame by frame on context windows of spliced features
(paper preset: 20 left + 1 + 5 right = 26 frames of 40-dim fbank = 1040 inputs)
with the senone (pdf-id) of the centre frame as target. :func:`build_frame_store`
streams Kaldi features (``feats.scp``) and ``ali-to-pdf`` alignments into one
directory of memory-mappable arrays; :class:`FrameStore` reads it back and yields
minibatches of windows without ever materialising the expanded ``(N, W*D)`` matrix.

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
import dataclasses
import hashlib
import json
import logging
import re
import struct
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from tqdm import tqdm

from asr_distill.data.kaldi_dir import read_table
from asr_distill.errors import InputError
from asr_distill.features.compute import apply_cmvn
from asr_distill.io import (
    atomic_open,
    atomic_path,
    check_free_space,
    is_done,
    mark_done,
    remove_stale_temps,
)
from asr_distill.io.kaldi_ark import kaldi_io
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

_FP16_MAX = float(np.finfo(np.float16).max)
_STATS_CHUNK_FRAMES = 1 << 18
# What kaldi-io raises on unreadable or malformed input.
_KALDI_READ_ERRORS = (
    OSError,
    EOFError,
    ValueError,
    AssertionError,
    IndexError,
    UnicodeDecodeError,
    struct.error,
    kaldi_io.UnknownMatrixHeader,
    kaldi_io.BadSampleSize,
    kaldi_io.SubprocessFailed,
)

FeatureSource = str | Path | Mapping[str, np.ndarray]
TargetSource = str | Path | Mapping[str, np.ndarray]


# --------------------------------------------------------------------------- building


@dataclasses.dataclass(frozen=True)
class FrameStoreSummary:
    """What :func:`build_frame_store` wrote (or found already complete, ``built=False``)."""

    path: Path
    num_utts: int
    num_frames: int
    num_labelled_frames: int
    num_skipped: int
    dim: int
    num_pdfs: int | None
    built: bool


_RANGE_RE = re.compile(r"^(.+)\[(\d*):(\d*)(?:,(\d*):(\d*))?\]$")


def _read_rx_matrix(rx: str) -> np.ndarray:
    """A matrix from an scp rxfilename, honouring Kaldi's inclusive ``[r1:r2,c1:c2]`` ranges."""
    m = _RANGE_RE.match(rx)
    if m is None:
        return kaldi_io.read_mat(rx)
    mat = kaldi_io.read_mat(m.group(1))
    bounds = [None if g in (None, "") else int(g) for g in m.groups()[1:]]
    r1, r2, c1, c2 = bounds
    rows = slice(r1, None if r2 is None else r2 + 1)
    cols = slice(c1, None if c2 is None else c2 + 1)
    return mat[rows, cols]


def _matrix_shape(rx: str) -> tuple[int, int]:
    """(rows, cols) of the matrix an scp entry points to, reading only its header if possible."""
    if _RANGE_RE.match(rx) is None and re.search(r":[0-9]+$", rx) and not rx.endswith("|"):
        fd = kaldi_io.open_or_fd(rx)
        try:
            head = fd.read(2)
            kind = fd.read(3)
            if head == b"\0B" and kind in (b"FM ", b"DM "):
                size1, rows, size2, cols = struct.unpack("<bibi", fd.read(10))
                if size1 == 4 and size2 == 4:
                    return rows, cols
            elif head == b"\0B" and kind == b"CM ":
                _, _, rows, cols = struct.unpack("<ffii", fd.read(16))
                return rows, cols
        finally:
            fd.close()
    mat = _read_rx_matrix(rx)  # text, compressed CM2/CM3, pipes, ranges: read it all
    return mat.shape[0], mat.shape[1] if mat.ndim == 2 else -1


class _Features:
    """A feature source: an scp (read twice, headers first), an ark, or a mapping."""

    def __init__(self, source: FeatureSource):
        self.mapping: Mapping[str, np.ndarray] | None = None
        self.table: dict[str, str] | None = None
        if isinstance(source, Mapping):
            self.mapping = source
            self.path: Path | None = None
            return
        spec = str(source)
        kind = None
        if spec.startswith(("scp:", "ark:")):
            kind, spec = spec.split(":", 1)
        self.path = Path(spec)
        if kind is None:
            kind = "scp" if self.path.suffix == ".scp" else "ark"
        if not self.path.is_file():
            raise InputError("feature file does not exist", self.path)
        if kind == "scp":
            self.table = read_table(self.path)

    @property
    def name(self) -> str:
        return "<in-memory>" if self.path is None else str(self.path.resolve())

    def _error(self, utt: str, what: str, lineno: int | None) -> InputError:
        return InputError(f"cannot read features of {utt!r}: {what}", self.path, lineno)

    def shapes(self) -> Iterator[tuple[str, int, int]]:
        """(utt, num_frames, dim) in source order; dim is -1 for a matrix that is not 2-D."""
        if self.mapping is not None:
            for utt, mat in self.mapping.items():
                shape = np.shape(mat)
                yield utt, shape[0] if shape else 0, shape[1] if len(shape) == 2 else -1
        elif self.table is not None:
            for lineno, (utt, rx) in enumerate(self.table.items(), start=1):
                try:
                    rows, cols = _matrix_shape(rx)
                except _KALDI_READ_ERRORS as e:
                    raise self._error(utt, f"{type(e).__name__}: {e}", lineno) from None
                yield utt, rows, cols
        else:
            for utt, mat in self.items():
                yield utt, mat.shape[0], mat.shape[1] if mat.ndim == 2 else -1

    def items(self) -> Iterator[tuple[str, np.ndarray]]:
        """(utt, (T, D) matrix) in source order."""
        if self.mapping is not None:
            yield from ((utt, np.asarray(mat)) for utt, mat in self.mapping.items())
        elif self.table is not None:
            for lineno, (utt, rx) in enumerate(self.table.items(), start=1):
                try:
                    mat = _read_rx_matrix(rx)
                except _KALDI_READ_ERRORS as e:
                    raise self._error(utt, f"{type(e).__name__}: {e}", lineno) from None
                yield utt, mat
        else:
            seen: set[str] = set()
            reader = kaldi_io.read_mat_ark(str(self.path))
            while True:
                try:
                    item = next(reader, None)
                except _KALDI_READ_ERRORS as e:
                    raise InputError(
                        f"malformed ark ({type(e).__name__}: {e})", self.path
                    ) from None
                if item is None:
                    return
                if item[0] in seen:
                    raise InputError(f"duplicate utterance {item[0]!r}", self.path)
                seen.add(item[0])
                yield item


def _load_targets(source: TargetSource) -> tuple[dict[str, np.ndarray], str]:
    """Per-utterance pdf-ids (int32) from an int-vector ark/scp or a mapping, and its name."""
    if isinstance(source, Mapping):
        out = {}
        for utt, vec in source.items():
            arr = np.asarray(vec)
            if arr.ndim != 1 or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
                raise InputError(f"targets of {utt!r} are not a 1-d integer array")
            out[utt] = arr.astype(np.int32)
        name = "<in-memory>"
        path = None
    else:
        spec = str(source)
        kind = None
        if spec.startswith(("scp:", "ark:")):
            kind, spec = spec.split(":", 1)
        path = Path(spec)
        kind = kind or ("scp" if path.suffix == ".scp" else "ark")
        if not path.is_file():
            raise InputError("target file does not exist", path)
        name = str(path.resolve())
        out = {}
        if kind == "scp":
            for lineno, (utt, rx) in enumerate(read_table(path).items(), start=1):
                try:
                    out[utt] = np.asarray(kaldi_io.read_vec_int(rx), dtype=np.int32)
                except _KALDI_READ_ERRORS as e:
                    raise InputError(
                        f"cannot read targets of {utt!r} ({type(e).__name__}: {e})", path, lineno
                    ) from None
        else:
            try:
                for utt, vec in kaldi_io.read_vec_int_ark(str(path)):
                    if utt in out:
                        raise InputError(f"duplicate utterance {utt!r}", path)
                    out[utt] = np.asarray(vec, dtype=np.int32)
            except _KALDI_READ_ERRORS as e:
                raise InputError(
                    f"malformed int-vector ark ({type(e).__name__}: {e})", path
                ) from None
    for utt, arr in out.items():
        if arr.size and arr.min() < -1:
            raise InputError(f"pdf-id below -1 in targets of {utt!r}", path)
    return out, name


class _Cmvn:
    """Kaldi CMVN stats per speaker (per utterance when no utt2spk is given), read on demand."""

    def __init__(self, cmvn_scp: str | Path, utt2spk: str | Path | None, norm_vars: bool):
        self.cmvn_path = Path(cmvn_scp)
        self.utt2spk_path = None if utt2spk is None else Path(utt2spk)
        self.table = read_table(self.cmvn_path)
        self.utt2spk = None if utt2spk is None else read_table(self.utt2spk_path)
        self.norm_vars = norm_vars
        self._cache: dict[str, np.ndarray] = {}

    def problem(self, utt: str) -> tuple[str, Path] | None:
        """Why ``utt`` cannot be normalised (reason, file to blame), or None."""
        if self.utt2spk is not None and utt not in self.utt2spk:
            return f"utterance {utt!r} is not in utt2spk", self.utt2spk_path
        key = utt if self.utt2spk is None else self.utt2spk[utt]
        if key not in self.table:
            return f"no CMVN stats for {key!r} (utterance {utt!r})", self.cmvn_path
        return None

    def apply(self, utt: str, feats: np.ndarray) -> np.ndarray:
        key = utt if self.utt2spk is None else self.utt2spk[utt]
        stats = self._cache.get(key)
        if stats is None:
            try:
                stats = np.asarray(_read_rx_matrix(self.table[key]), dtype=np.float64)
            except _KALDI_READ_ERRORS as e:
                raise InputError(
                    f"cannot read CMVN stats of {key!r} ({type(e).__name__}: {e})", self.cmvn_path
                ) from None
            self._cache[key] = stats
        try:
            return apply_cmvn(feats, stats, norm_vars=self.norm_vars)  # (T, D)
        except ValueError as e:
            raise InputError(f"CMVN stats of {key!r}: {e}", self.cmvn_path) from None


@dataclasses.dataclass
class _Plan:
    """Pass 1's result: utterances to store (id, frames) in order, and those skipped."""

    utts: list[tuple[str, int]]
    skipped: dict[str, str]
    num_seen: int
    dim: int
    max_target: int
    unaligned: list[str] = dataclasses.field(default_factory=list)


def _plan(
    source: _Features,
    tgt: dict[str, np.ndarray] | None,
    tgt_name: str | None,
    tgt_path: str | None,
    cmvn: _Cmvn | None,
    skip_bad: bool,
    keep_unaligned: bool = False,
) -> _Plan:
    """Pass 1: shapes, target lengths and CMVN coverage of every utterance; what to keep."""
    utts: list[tuple[str, int]] = []
    unaligned: list[str] = []
    skipped: dict[str, str] = {}
    seen: set[str] = set()
    dim = None
    max_target = -1
    for utt, num, d in tqdm(source.shapes(), desc="make-frame-store (scan)", unit="utt"):
        if utt in seen:
            raise InputError(f"duplicate utterance {utt!r}", source.path)
        seen.add(utt)
        if d < 1:
            raise InputError(f"features of {utt!r} are not a (frames, dim) matrix", source.path)
        if dim is None:
            dim = d
        elif d != dim:
            raise InputError(
                f"features of {utt!r} have dim {d}, earlier utterances {dim}", source.path
            )
        problem: tuple[str, Path | str | None] | None = None
        files = f"(features {source.name}, targets {tgt_name})"
        if tgt is not None and utt not in tgt and keep_unaligned:
            unaligned.append(utt)  # kept, every frame unlabelled
        elif tgt is not None and utt not in tgt:
            problem = (f"utterance {utt!r} has features but no targets {files}", tgt_path)
        elif tgt is not None and len(tgt[utt]) != num:
            problem = (
                f"utterance {utt!r}: {num} feature frames but {len(tgt[utt])} targets {files}",
                tgt_path,
            )
        elif cmvn is not None:
            problem = cmvn.problem(utt)
        if problem is not None:
            if not skip_bad:
                raise InputError(problem[0], problem[1])
            skipped[utt] = problem[0]
            log.warning("skipping: %s", problem[0])
            continue
        if tgt is not None and num and utt in tgt:
            max_target = max(max_target, int(tgt[utt].max()))
        utts.append((utt, num))
    if not utts:
        raise InputError("no utterances to store", source.path)
    if tgt is not None and set(tgt) - seen:
        log.warning("%d utterances have targets but no features; ignored", len(set(tgt) - seen))
    return _Plan(utts, skipped, len(seen), dim, max_target, unaligned)


def _write_arrays(
    out_dir: Path,
    source: _Features,
    plan: _Plan,
    offsets: np.ndarray,
    tgt: dict[str, np.ndarray] | None,
    cmvn: _Cmvn | None,
) -> tuple[str, int]:
    """Pass 2: stream features (and targets) into pre-sized memmaps, written atomically.

    Returns the sha256 of the float16 feature bytes and the number of labelled frames.
    Consumes ``tgt`` (entries are dropped once written).
    """
    sha = hashlib.sha256()
    num_labelled = 0
    num_frames = int(offsets[-1])
    with (
        atomic_path(out_dir / FEATS_FILE) as feats_tmp,
        atomic_path(out_dir / TARGETS_FILE) as targets_tmp,
    ):
        feats_mm = np.lib.format.open_memmap(
            feats_tmp, mode="w+", dtype=np.float16, shape=(num_frames, plan.dim)
        )  # (N, D)
        targets_mm = np.lib.format.open_memmap(
            targets_tmp, mode="w+", dtype=np.int32, shape=(num_frames,)
        )  # (N,)
        targets_mm[:] = -1
        i = 0
        items = source.items()
        for utt, mat in tqdm(items, desc="make-frame-store", unit="utt", total=plan.num_seen):
            if utt in plan.skipped:
                continue
            expected_utt, expected_frames = plan.utts[i] if i < len(plan.utts) else (None, 0)
            if utt != expected_utt or mat.shape != (expected_frames, plan.dim):
                raise InputError(f"features changed while reading (at {utt!r})", source.path)
            if not np.isfinite(mat).all():
                raise InputError(f"non-finite features in utterance {utt!r}", source.path)
            if cmvn is not None:
                mat = cmvn.apply(utt, mat)
            with np.errstate(over="ignore"):  # overflow to inf is caught just below
                x16 = np.ascontiguousarray(mat, dtype=np.float16)  # (T, D)
            if not np.isfinite(x16).all():
                raise InputError(
                    f"features of utterance {utt!r} are non-finite after CMVN or exceed the "
                    f"float16 range (|x| > {_FP16_MAX:g})",
                    source.path,
                )
            s, e = int(offsets[i]), int(offsets[i + 1])
            feats_mm[s:e] = x16
            sha.update(x16.tobytes())
            if tgt is not None and utt in tgt:
                vec = tgt.pop(utt)
                targets_mm[s:e] = vec
                num_labelled += int(np.count_nonzero(vec >= 0))
            i += 1
        if i != len(plan.utts):
            raise InputError("features changed while reading (fewer utterances)", source.path)
        feats_mm.flush()
        targets_mm.flush()
        del feats_mm, targets_mm
    return sha.hexdigest(), num_labelled


def _check_same_settings(
    store: FrameStore, targets: TargetSource | None, cmvn_scp, norm_vars: bool
) -> None:
    """A finished store is only reused for the same request: a store built without
    targets (or CMVN) must not silently stand in for one with them, or the reverse."""
    meta_path = store.path / META_FILE
    was_targets = store.meta.get("sources", {}).get("targets")
    cmvn = store.meta.get("cmvn", {})
    problems = []
    if (targets is None) != (was_targets is None):
        problems.append(
            f"targets {'given' if targets is not None else 'not given'} now, "
            f"{'given' if was_targets is not None else 'not given'} then"
        )
    elif isinstance(targets, str | Path) and was_targets and \
            str(Path(targets).resolve()) != str(Path(was_targets).resolve()):  # fmt: skip
        problems.append(f"targets {targets} now, {was_targets} then")
    if (cmvn_scp is not None) != bool(cmvn.get("applied")) or \
            (cmvn_scp is not None and bool(norm_vars) != bool(cmvn.get("norm_vars"))):  # fmt: skip
        problems.append("CMVN settings differ")
    if problems:
        raise InputError(
            f"a finished frame store built with other settings ({'; '.join(problems)}); "
            "use --force to rebuild it", meta_path,
        )  # fmt: skip


def build_frame_store(
    out_dir: str | Path,
    feats: FeatureSource,
    *,
    targets: TargetSource | None = None,
    cmvn_scp: str | Path | None = None,
    utt2spk: str | Path | None = None,
    norm_vars: bool = False,
    num_pdfs: int | None = None,
    skip_bad: bool = False,
    keep_unaligned: bool = False,
    force: bool = False,
) -> FrameStoreSummary:
    """Write a frame store (see the module docstring for the format) to ``out_dir``.

    feats: a Kaldi ``feats.scp`` (or ``.ark``; ``scp:``/``ark:`` prefixes allowed) or a
        mapping utt -> float ``(T, D)`` array. Its order is the store order.
    targets: per-frame pdf-ids, a Kaldi int-vector ark or scp (``ali-to-pdf`` output) or
        a mapping utt -> int ``(T,)``; ``-1`` marks an unlabelled frame. None (default)
        stores ``-1`` for every frame, an unlabelled transfer set.
    cmvn_scp: Kaldi CMVN stats (2 x (D+1): sums + count, sums of squares) keyed by
        speaker through ``utt2spk`` (or by utterance when ``utt2spk`` is None); means
        are subtracted, and with ``norm_vars`` (default False) variances normalised,
        as Kaldi's ``apply-cmvn``.
    num_pdfs: the number of senones; default None means max target + 1.
    skip_bad: skip (count, log, list in ``skipped.txt``) utterances whose targets are
        missing or of the wrong length, or that lack CMVN stats, instead of raising
        :class:`InputError` naming the utterance and files. Non-finite features and a
        feature dimension that changes are always errors.
    keep_unaligned: keep utterances that have no targets (e.g. failed to align) with
        every frame unlabelled (-1), counted, logged and listed in ``unaligned.txt``:
        a dev or test store must hold every utterance to be decoded.
    force: rebuild a complete store; otherwise a complete store is left alone.

    Reads the features twice (headers only for a binary scp, then the data) and holds
    at most the targets in memory; features stream into a float16 memmap.
    """
    out_dir = Path(out_dir)
    if is_done(out_dir) and not force:
        store = FrameStore(out_dir)
        _check_same_settings(store, targets, cmvn_scp, norm_vars)
        log.info("%s is complete; nothing to do (use --force to rebuild)", out_dir)
        return FrameStoreSummary(
            out_dir,
            store.num_utts,
            store.num_frames,
            store.num_labelled_frames,
            int(store.meta.get("num_skipped", 0)),
            store.dim,
            store.num_pdfs,
            built=False,
        )
    if norm_vars and cmvn_scp is None:
        raise ValueError("norm_vars needs cmvn_scp")
    if utt2spk is not None and cmvn_scp is None:
        raise ValueError("utt2spk is only used with cmvn_scp")
    if num_pdfs is not None and num_pdfs < 1:
        raise ValueError(f"num_pdfs must be >= 1, got {num_pdfs}")
    if (out_dir / ".done").exists():
        (out_dir / ".done").unlink()

    source = _Features(feats)
    tgt, tgt_name = _load_targets(targets) if targets is not None else (None, None)
    tgt_path = None if targets is None or isinstance(targets, Mapping) else tgt_name
    cmvn = None if cmvn_scp is None else _Cmvn(cmvn_scp, utt2spk, norm_vars)

    plan = _plan(source, tgt, tgt_name, tgt_path, cmvn, skip_bad, keep_unaligned)
    if num_pdfs is not None and plan.max_target >= num_pdfs:
        raise InputError(
            f"pdf-id {plan.max_target} is out of range for num_pdfs={num_pdfs}", tgt_path
        )
    if num_pdfs is None and plan.max_target >= 0:
        num_pdfs = plan.max_target + 1
    lengths = np.array([n for _, n in plan.utts], dtype=np.int64)
    offsets = np.zeros(len(plan.utts) + 1, dtype=np.int64)  # (U+1,)
    np.cumsum(lengths, out=offsets[1:])
    num_frames = int(offsets[-1])
    skipped = plan.skipped
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out_dir)
    check_free_space(out_dir, num_frames * (plan.dim * 2 + 4), "the frame store")
    sha256, num_labelled = _write_arrays(out_dir, source, plan, offsets, tgt, cmvn)

    with atomic_path(out_dir / OFFSETS_FILE) as tmp, open(tmp, "wb") as f:
        np.save(f, offsets)
    with atomic_open(out_dir / UTT_IDS_FILE) as f:
        f.writelines(f"{utt}\n" for utt, _ in plan.utts)
    skipped_path = out_dir / SKIPPED_FILE
    if skipped:
        with atomic_open(skipped_path) as f:
            f.writelines(f"{utt} {reason}\n" for utt, reason in skipped.items())
        log.warning("skipped %d utterances (listed in %s)", len(skipped), skipped_path)
    elif skipped_path.exists():
        skipped_path.unlink()
    unaligned_path = out_dir / UNALIGNED_FILE
    if plan.unaligned:
        with atomic_open(unaligned_path) as f:
            f.writelines(f"{utt}\n" for utt in plan.unaligned)
        log.warning("%d utterances have no targets and are kept unlabelled (listed in %s)",
                    len(plan.unaligned), unaligned_path)  # fmt: skip
    elif unaligned_path.exists():
        unaligned_path.unlink()
    meta = {
        "format_version": FORMAT_VERSION,
        "dim": plan.dim,
        "num_frames": num_frames,
        "num_utts": len(plan.utts),
        "num_labelled_frames": num_labelled,
        "num_pdfs": num_pdfs,
        "num_skipped": len(skipped),
        "num_unaligned": len(plan.unaligned),
        "feats_dtype": "float16",
        "feats_sha256": sha256,
        "cmvn": {
            "applied": cmvn is not None,
            "norm_vars": bool(norm_vars),
            "cmvn_scp": None if cmvn_scp is None else str(Path(cmvn_scp).resolve()),
            "utt2spk": None if utt2spk is None else str(Path(utt2spk).resolve()),
        },
        "sources": {"feats": source.name, "targets": tgt_name},
    }
    with atomic_open(out_dir / META_FILE) as f:
        json.dump(meta, f, indent=2, sort_keys=True)
        f.write("\n")
    mark_done(out_dir)
    log.info(
        "%s: %d utterances, %d frames (%d labelled) of dim %d, %s pdfs",
        out_dir,
        len(plan.utts),
        num_frames,
        num_labelled,
        plan.dim,
        num_pdfs,
    )
    return FrameStoreSummary(
        out_dir,
        len(plan.utts),
        num_frames,
        num_labelled,
        len(skipped),
        plan.dim,
        num_pdfs,
        built=True,
    )


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
        utt = np.searchsorted(self._offsets, frames, side="right") - 1  # (B,)
        start = self._offsets[utt]  # (B,)
        last = self._offsets[utt + 1] - 1  # (B,)
        if device is not None:
            return self._gather_on_device(frames, torch.from_numpy(frames).to(device), left,
                                          right)  # fmt: skip
        idx = np.clip(frames[:, None] + k[None, :], start[:, None], last[:, None])  # (B, W)
        x = self._feats[idx.reshape(-1)]  # (B*W, D) float16
        inputs = torch.from_numpy(x.astype(np.float32).reshape(len(frames), -1))  # (B, W*D)
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
        inputs = feats[idx.reshape(-1)].float().reshape(len(frames), -1)  # (B, W*D)
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
        x = np.asarray(self._feats[s:e], dtype=np.float32)  # (T, D)
        idx = np.clip(np.arange(e - s)[:, None] + k[None, :], 0, max(e - s - 1, 0))  # (T, W)
        return torch.from_numpy(x[idx].reshape(e - s, -1))  # (T, W*D)

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
        n = self.num_labelled_frames if labelled_only else self.num_frames
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
        frames = self.frame_indices(labelled_only)  # (n,)
        if shuffle:
            order = np.random.default_rng([seed, epoch]).permutation(len(frames))
            frames = frames[order]
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
