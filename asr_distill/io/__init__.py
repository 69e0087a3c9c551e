"""Filesystem helpers shared by every step: atomic writes and done markers."""

from asr_distill.io.atomic import (
    atomic_open,
    atomic_path,
    check_free_space,
    file_sha256,
    is_done,
    mark_done,
    remove_stale_temps,
)

__all__ = [
    "atomic_open",
    "atomic_path",
    "check_free_space",
    "file_sha256",
    "is_done",
    "mark_done",
    "remove_stale_temps",
]
