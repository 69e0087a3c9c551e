"""Subword units for lexicon-free systems: a sentencepiece model whose pieces act as phones.

A corpus without a pronunciation dictionary still gets a hybrid system: train a
sentencepiece model (Kudo & Richardson 2018; unigram LM or BPE) on the training
transcripts and spell every word with its pieces. Pieces never cross a space, so a
word's spelling does not depend on its neighbours; word-initial pieces (``▁HE``) are
units distinct from word-internal ones (``HE``).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Sequence

import sentencepiece as spm

from asr_distill.errors import InputError

log = logging.getLogger(__name__)

Pron = tuple[str, ...]


def train_sentencepiece(
    sentences: Sequence[str], model_type: str, vocab_size: int
) -> tuple[bytes, list[tuple[str, float]]]:
    """Train a sentencepiece model on ``sentences``; return (model bytes, [(piece, score)]).

    Full character coverage (every training character is a piece), no BOS/EOS pieces,
    and a soft vocabulary limit (fewer pieces on a small corpus, with a warning).
    """
    if not sentences:
        raise InputError("no training text for sentencepiece")
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences),
            model_writer=model,
            model_type=model_type,
            vocab_size=vocab_size,
            character_coverage=1.0,
            max_sentence_length=1 << 16,  # bytes; longer transcripts would be skipped
            hard_vocab_limit=False,
            bos_id=-1,
            eos_id=-1,
            num_threads=1,
            minloglevel=2,
        )
    except RuntimeError as e:
        raise InputError(f"sentencepiece training failed: {e}") from None
    proto = model.getvalue()
    sp = spm.SentencePieceProcessor(model_proto=proto)
    n = sp.get_piece_size()
    if n < vocab_size:
        log.warning("sentencepiece: %d pieces (asked for %d; the text is small)", n, vocab_size)
    return proto, [(sp.id_to_piece(i), sp.get_score(i)) for i in range(n)]


def spell_with_pieces(model: bytes, words: Iterable[str]) -> dict[str, Pron]:
    """Each word's piece sequence; words with a character the model lacks are left out."""
    sp = spm.SentencePieceProcessor(model_proto=model)
    unk = sp.unk_id()
    out: dict[str, Pron] = {}
    for word in words:
        ids = sp.encode(word)
        if ids and unk not in ids:
            out[word] = tuple(sp.id_to_piece(i) for i in ids)
    return out
