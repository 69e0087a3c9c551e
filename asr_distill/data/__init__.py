"""Corpora and Kaldi data directories."""

from asr_distill.data.kaldi_dir import (
    DataDir,
    Segment,
    read_data_dir,
    split_data_dir,
    validate_data_dir,
    write_data_dir,
)

__all__ = [
    "DataDir",
    "Segment",
    "read_data_dir",
    "split_data_dir",
    "validate_data_dir",
    "write_data_dir",
]
