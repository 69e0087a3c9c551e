"""The decoder's options, in a module of their own so that the CLI can build its
options without importing the decoder (torch, kaldi-hmm-gmm)."""

from __future__ import annotations

import dataclasses

from asr_distill.errors import InputError


@dataclasses.dataclass
class DecodeConfig:
    """Decoder options: beam [13], lattice_beam [8], max_active [7000], min_active
    [200] (Kaldi's nnet3 decode.sh has lattice beam 8, its GMM decode.sh 6); lmwts: LM
    weights to score at, each with acoustic scale 1/LMWT [7, 9, 11, 13, 15, 17];
    word_ins_penalties: word insertion penalties to score at with each LM weight
    (Kaldi's score.sh) [0, 0.5, 1];
    allow_partial: output the best partial path when no final state is reached [True].
    lattice: search once per utterance into a lattice (at acoustic scale
    1/search_lmwt; default the middle LM weight) and take each LM weight and penalty's
    best path from it [True]; false: one one-best search per LM weight (kaldi-hmm-gmm's
    LatticeFasterDecoder), penalty 0 only. determinize: determinize the lattices (Kaldi's
    CompactLattice, pruned at lattice_beam, as its decoders do by default) and take the
    sweep's best paths from them; false writes the raw state-level lattices [True].
    With a SAT model (Kaldi's decode_fmllr.sh):
    first_pass_lmwt: LM weight of the speaker-independent first pass whose best paths
    give the fMLLR statistics [12, Kaldi's acwt 0.0833]; fmllr_silence_weight: weight
    of their silence frames [0.01]."""

    beam: float = 13.0
    lattice_beam: float = 8.0
    max_active: int = 7000
    min_active: int = 200
    lmwts: list[float] = dataclasses.field(default_factory=lambda: [7, 9, 11, 13, 15, 17])
    word_ins_penalties: list[float] = dataclasses.field(default_factory=lambda: [0.0, 0.5, 1.0])
    allow_partial: bool = True
    lattice: bool = True
    determinize: bool = True
    search_lmwt: float | None = None
    first_pass_lmwt: float = 12.0
    fmllr_silence_weight: float = 0.01

    def __post_init__(self) -> None:
        self.lmwts = [float(w) for w in self.lmwts]
        if not self.lmwts or min(self.lmwts) <= 0:
            raise InputError(f"LM weights must be positive, got {self.lmwts}")
        self.word_ins_penalties = [float(p) for p in self.word_ins_penalties]
        if not self.word_ins_penalties:
            raise InputError("give at least one word insertion penalty")
        if self.search_lmwt is not None and self.search_lmwt <= 0:
            raise InputError(f"search_lmwt must be positive, got {self.search_lmwt}")
        if self.beam <= 0 or self.lattice_beam <= 0:
            raise InputError(f"beams must be positive, got {self.beam}, {self.lattice_beam}")
        if not 0 < self.min_active <= self.max_active:
            raise InputError(f"need 0 < min_active <= max_active, got {self.min_active}, "
                             f"{self.max_active}")  # fmt: skip

    def settings(self) -> list[tuple[float, float]]:
        """The (LM weight, word insertion penalty) pairs to score: every pair from a
        lattice, penalty 0 only from one-best searches."""
        wips = self.word_ins_penalties if self.lattice else [0.0]
        return [(w, p) for w in self.lmwts for p in wips]

    def lattice_lmwt(self) -> float:
        """The LM weight of the lattice search (acoustic scale 1/this)."""
        if self.search_lmwt is not None:
            return self.search_lmwt
        return sorted(self.lmwts)[(len(self.lmwts) - 1) // 2]
