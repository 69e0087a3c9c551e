"""Building a frame store (:mod:`asr_distill.features.framestore` describes the format
and reads it): Kaldi features (``feats.scp`` / ark, or a mapping) and ``ali-to-pdf``
targets, with optional per-speaker CMVN, streamed into memory-mappable arrays, written
atomically and checked against the settings of a finished store."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
from tqdm import tqdm

from asr_distill.data.kaldi_dir import read_table
from asr_distill.errors import InputError
from asr_distill.features.cmvn import apply_cmvn
from asr_distill.features.framestore import (
    FEATS_FILE,
    FORMAT_VERSION,
    META_FILE,
    OFFSETS_FILE,
    SKIPPED_FILE,
    TARGETS_FILE,
    UNALIGNED_FILE,
    UTT_IDS_FILE,
    FrameStore,
)
from asr_distill.io import (
    atomic_open,
    atomic_path,
    check_free_space,
)
from asr_distill.io.kaldi_ark import KALDI_READ_ERRORS, kaldi_io, matrix_shape, read_rx_matrix
from asr_distill.io.step import step_log

log = logging.getLogger(__name__)

_FP16_MAX = float(np.finfo(np.float16).max)

FeatureSource = str | Path | Mapping[str, np.ndarray]
TargetSource = str | Path | Mapping[str, np.ndarray]


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
                    rows, cols = matrix_shape(rx)
                except KALDI_READ_ERRORS as e:
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
                    mat = read_rx_matrix(rx)
                except KALDI_READ_ERRORS as e:
                    raise self._error(utt, f"{type(e).__name__}: {e}", lineno) from None
                yield utt, mat
        else:
            seen: set[str] = set()
            reader = kaldi_io.read_mat_ark(str(self.path))
            while True:
                try:
                    item = next(reader, None)
                except KALDI_READ_ERRORS as e:
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
                except KALDI_READ_ERRORS as e:
                    raise InputError(
                        f"cannot read targets of {utt!r} ({type(e).__name__}: {e})", path, lineno
                    ) from None
        else:
            try:
                for utt, vec in kaldi_io.read_vec_int_ark(str(path)):
                    if utt in out:
                        raise InputError(f"duplicate utterance {utt!r}", path)
                    out[utt] = np.asarray(vec, dtype=np.int32)
            except KALDI_READ_ERRORS as e:
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
                stats = np.asarray(read_rx_matrix(self.table[key]), dtype=np.float64)
            except KALDI_READ_ERRORS as e:
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
    if norm_vars and cmvn_scp is None:
        raise ValueError("norm_vars needs cmvn_scp")
    if utt2spk is not None and cmvn_scp is None:
        raise ValueError("utt2spk is only used with cmvn_scp")
    if num_pdfs is not None and num_pdfs < 1:
        raise ValueError(f"num_pdfs must be >= 1, got {num_pdfs}")
    settings = {
        "feats": feats if isinstance(feats, str | Path) else "<in memory>",
        "targets": targets if isinstance(targets, str | Path | None) else "<in memory>",
        "cmvn_scp": cmvn_scp,
        "utt2spk": utt2spk,
        "norm_vars": norm_vars,
        "num_pdfs": num_pdfs,
        "skip_bad": skip_bad,
        "keep_unaligned": keep_unaligned,
    }
    with step_log(out_dir, "make-frame-store.log", force=force, config=settings) as run:
        if not run:  # finished: only if it was built from the same request
            store = FrameStore(out_dir)
            _check_same_settings(store, targets, cmvn_scp, norm_vars)
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
