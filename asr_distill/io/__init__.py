"""Filesystem helpers shared by every step: atomic writes and done markers."""

from asr_distill.io.atomic import atomic_open, atomic_path, file_sha256, is_done, mark_done

__all__ = ["atomic_open", "atomic_path", "file_sha256", "is_done", "mark_done"]
