"""``mkgraph``: the decoding graph HCLG from a lang dir with G.fst and a model dir
(Kaldi's ``utils/mkgraph.sh``).

Stages, all in C++ (kaldifst, kaldi-hmm-gmm):

1. ``LG = min(det*(L_disambig ∘ G))``, determinised in the log semiring.
2. ``CLG``: ``compose_context`` with the tree's context width N and central position
   P (N=1, P=0 for a monophone model) and the disambiguation phones; it returns the
   ilabels, the phone window of each input label of CLG (Kaldi's ``ilabels_N_P``).
3. ``Ha``: ``get_h_transducer`` over those windows (transition-ids in, CLG labels out,
   transition log-probabilities times ``transition_scale``, no self-loops), with one
   disambiguation transition-id per disambiguation label.
4. ``HCLGa = min(det*(Ha ∘ CLG))`` with the disambiguation transition-ids replaced
   by epsilon between det* and min (Kaldi's ``fstrmsymbols``; done as a composition,
   see :func:`asr_distill.graph.fst_ops.relabel_to_epsilon`). Kaldi also runs
   ``fstrmepslocal`` there, which kaldifst lacks; the epsilon arcs (about 10 % of
   HCLGa's arcs) are left for the decoder, or removed by full ``rmepsilon`` with
   :attr:`GraphConfig.rmepsilon` (slower, and more arcs: it copies arcs where
   epsilons join).
5. ``HCLG = add_self_loops(HCLGa)`` with ``self_loop_scale`` and reordering.

Not done (kaldifst lacks it): ``fstpushspecial`` on LG, which only moves weights to
make LG closer to stochastic; the stochasticity report shows how far LG and HCLGa
are.

Cost on the cpu recipe's graph (16k words, a 3-gram with 105k bigrams and 170k
trigrams: G 114k states / 384k arcs; a 744-leaf triphone tree): about 65 s on one
core and 1.8 GB of memory; HCLG has 3.0M states and 6.8M arcs (145 MB).

Input labels of HCLG are transition-ids (1-based), output labels word ids.

Written into ``graph_dir`` (like Kaldi's ``exp/tri1/graph``)::

    HCLG.fst          OpenFst binary (VectorFst, StdArc)
    words.txt phones.txt num_pdfs
    phones/           word_boundary.*, align_lexicon.*, optional_silence.*,
                      disambig.{txt,int}, silence.csl (what decoding and scoring need)
    config.yaml       the resolved :class:`GraphConfig`
    stochasticity.txt fstisstochastic's min/max (log semiring) of LG, HCLGa, and of
                      HCLG when both scales are 1 (as mkgraph.sh)
    log/mkgraph.log   inputs, timings and sizes of every stage
    .done             written last

A ``graph_dir`` holding ``.done`` is left alone unless ``force``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import kaldi_hmm_gmm as khg
import kaldifst
import numpy as np

from asr_distill.errors import InputError
from asr_distill.graph.fst_ops import (
    ArcTable,
    Stochasticity,
    arc_table,
    fst_size,
    relabel_to_epsilon,
    stochasticity,
)
from asr_distill.hmm.model import GmmHmm
from asr_distill.io import atomic_open, atomic_path
from asr_distill.io.step import step_log
from asr_distill.lang.validate import LangDir, read_fst, read_symbol_table, validate_lang

log = logging.getLogger(__name__)

HCLG_NAME = "HCLG.fst"
# Files of the lang dir's phones/ that decoding, scoring and CTMs need (as mkgraph.sh).
PHONES_FILES = (
    "word_boundary.txt",
    "word_boundary.int",
    "align_lexicon.txt",
    "align_lexicon.int",
    "optional_silence.txt",
    "optional_silence.int",
    "optional_silence.csl",
    "disambig.txt",
    "disambig.int",
    "silence.csl",
)
REQUIRED_PHONES_FILES = ("silence.csl", "disambig.int")


@dataclasses.dataclass
class GraphConfig:
    """Options of :func:`make_graph` (defaults in brackets, as Kaldi's mkgraph.sh).

    transition_scale: scale on the transition log-probabilities in H [1.0].
    self_loop_scale: scale on the self-loop log-probabilities added by add-self-loops
        [0.1]; Kaldi's 1.0 for chain models does not apply here.
    rmepsilon: remove all epsilon arcs of HCLGa before minimising [False]. On the
        cpu recipe's graph (16k words, 3-gram, 744-leaf tree) HCLGa goes from 1.98M
        states / 3.25M arcs (10 % epsilons) to 1.86M / 3.73M, the stage takes a few
        seconds longer, and decoding gives the same words at the same speed.
    """

    transition_scale: float = 1.0
    self_loop_scale: float = 0.1
    rmepsilon: bool = False

    def __post_init__(self) -> None:
        for name in ("transition_scale", "self_loop_scale"):
            if getattr(self, name) < 0:
                raise InputError(f"{name} must be >= 0, got {getattr(self, name)}")


@dataclasses.dataclass
class StageInfo:
    """One stage of :func:`make_graph`: the FST it made, its size and its time."""

    name: str
    num_states: int
    num_arcs: int
    seconds: float


@dataclasses.dataclass
class GraphSummary:
    """Result of :func:`make_graph`."""

    graph_dir: Path
    hclg_path: Path
    num_states: int
    num_arcs: int
    num_pdfs: int
    num_transition_ids: int
    context_width: int
    central_position: int
    stages: list[StageInfo]
    stochasticity: dict[str, Stochasticity]
    seconds: float


class _Stages:
    """Times the stages and logs the size of what each made."""

    def __init__(self) -> None:
        self.stages: list[StageInfo] = []
        self._t = time.perf_counter()

    def done(self, name: str, fst: kaldifst.StdFst) -> None:
        now = time.perf_counter()
        states, arcs = fst_size(fst)
        info = StageInfo(name, states, arcs, now - self._t)
        self.stages.append(info)
        log.info("%-6s %9d states %10d arcs %8.2f s", name, states, arcs, info.seconds)
        if states == 0:
            raise RuntimeError(f"{name} is empty")
        self._t = time.perf_counter()


def _check_model_matches_lang(model: GmmHmm, lang: LangDir, model_dir: Path) -> None:
    """The model's phones must be the lang's (Kaldi's check_phones_compatible.sh)."""
    own = model_dir / "phones.txt"
    if own.is_file() and read_symbol_table(own) != lang.phones:
        raise InputError(f"phones.txt differs from {lang.path / 'phones.txt'}", own)
    disambig = set(lang.disambig)
    real = sorted(i for p, i in lang.phones.items() if p != "<eps>" and p not in disambig)
    if sorted(model.topo.phones) != real:
        raise InputError(
            f"the model's phones ({len(model.topo.phones)}, from its topo) are not the "
            f"non-disambiguation phones of {lang.path / 'phones.txt'} ({len(real)}): "
            "model and lang dir do not belong together",
            model_dir / "topo",
        )


def _check_labels(table: ArcTable, num_tids: int, lang: LangDir) -> None:
    """Inputs must be transition-ids or epsilon, outputs words (no ``#0``)."""
    bad_in = table.ilabel[(table.ilabel < 0) | (table.ilabel > num_tids)]
    if bad_in.size:
        raise RuntimeError(f"input labels that are not transition-ids: {bad_in[:5]}")
    not_words = {lang.words[w] for w in ("#0", "<s>", "</s>")}
    bad_out = set(np.unique(table.olabel).tolist()) - (set(lang.words.values()) - not_words)
    if bad_out:
        raise RuntimeError(f"output labels that are not words: {sorted(bad_out)[:5]}")


def _determinize_star(fst: kaldifst.StdVectorFst, name: str) -> None:
    if kaldifst.determinize_star(fst, use_log=True):
        raise RuntimeError(f"determinization of {name} stopped early")


def build_hclg(
    l_disambig: kaldifst.StdVectorFst,
    g: kaldifst.StdVectorFst,
    disambig_phones: list[int],
    model: GmmHmm,
    config: GraphConfig,
) -> tuple[kaldifst.StdVectorFst, dict[str, kaldifst.StdVectorFst], list[StageInfo]]:
    """Stages 1-5 of the module docstring. Returns (HCLG, the intermediate FSTs
    ``LG`` and ``HCLGa`` by name, the stage infos)."""
    stages = _Stages()
    if not l_disambig.is_olabel_sorted:
        l_disambig = l_disambig.copy()
        kaldifst.arcsort(l_disambig, sort_type="olabel")
    if not g.is_ilabel_sorted:
        g = g.copy()
        kaldifst.arcsort(g, sort_type="ilabel")
    lg = kaldifst.compose(l_disambig, g)
    _determinize_star(lg, "LG")
    kaldifst.minimize_encoded(lg)
    kaldifst.arcsort(lg, sort_type="ilabel")
    stages.done("LG", lg)

    width, center = model.ctx_dep.context_width, model.ctx_dep.central_position
    clg, ilabels = kaldifst.compose_context(
        disambig_syms=disambig_phones, context_width=width, central_position=center, ifst=lg
    )
    kaldifst.arcsort(clg, sort_type="ilabel")
    stages.done("CLG", clg)

    h, disambig_tids = khg.get_h_transducer(
        ilabel_info=ilabels,
        ctx_dep=model.ctx_dep,
        trans_model=model.trans_model,
        config=khg.HTransducerConfig(transition_scale=config.transition_scale),
    )
    kaldifst.arcsort(h, sort_type="olabel")
    stages.done("Ha", h)

    hclga = kaldifst.compose(h, clg)
    del clg, h
    _determinize_star(hclga, "HCLGa")
    num_tids = model.trans_model.num_transition_ids
    hclga = relabel_to_epsilon(hclga, disambig_tids, num_tids)
    if config.rmepsilon:
        kaldifst.rmepsilon(hclga)
    kaldifst.minimize_encoded(hclga)
    stages.done("HCLGa", hclga)

    hclg = khg.add_self_loops(
        trans_model=model.trans_model,
        ifst=hclga,
        self_loop_scale=config.self_loop_scale,
        disambig_syms=[],
        reorder=True,
    )
    stages.done("HCLG", hclg)
    return hclg, {"LG": lg, "HCLGa": hclga}, stages.stages


def _copy(src: Path, dst: Path) -> None:
    with atomic_open(dst, "wb") as f:
        f.write(src.read_bytes())


def make_graph(
    lang_dir: str | Path,
    model_dir: str | Path,
    graph_dir: str | Path,
    *,
    transition_scale: float = 1.0,
    self_loop_scale: float = 0.1,
    rmepsilon: bool = False,
    force: bool = False,
) -> GraphSummary | None:
    """Build ``graph_dir/HCLG.fst`` from ``lang_dir`` (with G.fst, as ``make-g`` makes
    it) and the GMM-HMM in ``model_dir`` (``train-mono``/``train-tri``); see the
    module docstring for the stages and files and :class:`GraphConfig` for the options.

    Returns None, doing nothing, if ``graph_dir`` is finished and not ``force``.
    Raises :class:`InputError` naming the file for a missing G.fst, a bad lang or
    model dir, or a model whose phones are not the lang's.
    """
    config = GraphConfig(transition_scale, self_loop_scale, rmepsilon)
    lang_dir, model_dir, graph_dir = Path(lang_dir), Path(model_dir), Path(graph_dir)
    with step_log(graph_dir, "mkgraph.log", force=force, config=config) as run:
        if not run:
            return None
        return _mkgraph(lang_dir, model_dir, graph_dir, config)


def _mkgraph(lang_dir: Path, model_dir: Path, graph_dir: Path,
             config: GraphConfig) -> GraphSummary:  # fmt: skip
    if not (lang_dir / "G.fst").is_file():
        raise InputError("missing G.fst: run make-g first (mkgraph needs a grammar)",
                         lang_dir / "G.fst")  # fmt: skip
    for name in REQUIRED_PHONES_FILES:
        if not (lang_dir / "phones" / name).is_file():
            raise InputError("missing", lang_dir / "phones" / name)
    lang = validate_lang(lang_dir)
    model = GmmHmm.load(model_dir)
    _check_model_matches_lang(model, lang, model_dir)

    t0 = time.perf_counter()
    log.info("mkgraph: %s + %s -> %s (%s)", lang_dir, model_dir, graph_dir, config)
    width, center = model.ctx_dep.context_width, model.ctx_dep.central_position
    log.info(
        "model: context width %d, central position %d, %d pdfs, %d transition-ids",
        width,
        center,
        model.num_pdfs,
        model.trans_model.num_transition_ids,
    )
    l_disambig = read_fst(lang_dir / "L_disambig.fst")
    g = read_fst(lang_dir / "G.fst")
    log.info("G      %9d states %10d arcs", *fst_size(g))
    disambig_phones = [lang.phones[p] for p in lang.disambig]
    hclg, parts, stages = build_hclg(l_disambig, g, disambig_phones, model, config)

    t = time.perf_counter()
    report = {"LG": stochasticity(parts["LG"])}
    hclga_table = arc_table(parts["HCLGa"])
    # add_self_loops only adds self-loops of real transition-ids.
    _check_labels(hclga_table, model.trans_model.num_transition_ids, lang)
    report["HCLGa"] = stochasticity(parts["HCLGa"], hclga_table)
    del hclga_table, parts
    # As mkgraph.sh: with scales other than 1, HCLG is not stochastic by design.
    if config.transition_scale == 1.0 and config.self_loop_scale == 1.0:
        report["HCLG"] = stochasticity(hclg)
    with atomic_open(graph_dir / "stochasticity.txt") as f:
        f.write("# graph min_cost max_cost (fstisstochastic, log semiring)\n")
        for name, st in report.items():
            f.write(f"{name} {st}\n")
            log.info("%s stochasticity (min, max): %s", name, st)
        if "HCLG" not in report:
            f.write("# HCLG not tested: transition/self-loop scales are not 1\n")
    log.info("stochasticity and label checks: %.2f s", time.perf_counter() - t)

    t = time.perf_counter()
    with atomic_path(graph_dir / HCLG_NAME) as tmp:
        if not hclg.write(str(tmp)):
            raise OSError(f"cannot write {graph_dir / HCLG_NAME}")
    for name in ("words.txt", "phones.txt"):
        _copy(lang_dir / name, graph_dir / name)
    for name in PHONES_FILES:
        if (lang_dir / "phones" / name).is_file():
            _copy(lang_dir / "phones" / name, graph_dir / "phones" / name)
    with atomic_open(graph_dir / "num_pdfs") as f:
        f.write(f"{model.num_pdfs}\n")
    log.info("wrote %s: %.2f s", graph_dir / HCLG_NAME, time.perf_counter() - t)
    seconds = time.perf_counter() - t0
    log.info("mkgraph: %.1f s in all", seconds)
    last = stages[-1]
    return GraphSummary(
        graph_dir=graph_dir,
        hclg_path=graph_dir / HCLG_NAME,
        num_states=last.num_states,
        num_arcs=last.num_arcs,
        num_pdfs=model.num_pdfs,
        num_transition_ids=model.trans_model.num_transition_ids,
        context_width=width,
        central_position=center,
        stages=stages,
        stochasticity=report,
        seconds=seconds,
    )
