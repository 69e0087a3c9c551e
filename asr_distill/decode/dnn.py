"""Hybrid DNN decoding of frame stores: log-likelihoods (log posterior - log prior) for
one model or several whose posteriors are combined (the ensemble row of the paper's
Table 1). Frame accuracy is :mod:`asr_distill.nnet.scoring`'s."""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from asr_distill.decode.decode import DecodeConfig, decode, write_decode_dir
from asr_distill.errors import InputError
from asr_distill.features.framestore import FrameStore
from asr_distill.hmm.model import GmmHmm
from asr_distill.io import atomic_open
from asr_distill.io.step import is_done, step_log
from asr_distill.nnet.ensemble import (
    accuracy_weights,
    combine_log_probs,
    read_member_accuracies,
)
from asr_distill.nnet.model import SpliceDnn, hybrid_log_likelihoods

log = logging.getLogger(__name__)


def load_models(paths: Sequence[str | Path]) -> list[SpliceDnn]:
    models = [SpliceDnn.load(p).eval() for p in paths]
    if not models:
        raise ValueError("no DNN given")
    first = models[0].config
    for p, m in zip(paths, models, strict=True):
        c = m.config
        if (c.num_pdfs, c.feat_dim) != (first.num_pdfs, first.feat_dim):
            raise InputError(f"{c.num_pdfs} pdfs / {c.feat_dim}-dim input, but the first "
                             f"model has {first.num_pdfs} / {first.feat_dim}", p)  # fmt: skip
    return models


@torch.no_grad()
def ensemble_log_posteriors(
    models: Sequence[SpliceDnn],
    store: FrameStore,
    utt: str | int,
    *,
    combine: str = "arithmetic",
    weights: Sequence[float] | None = None,
) -> torch.Tensor:
    """log of the models' combined posteriors, ``(T, num_pdfs)``: the (weighted)
    arithmetic or geometric mean, as the teacher ensemble combines them for
    distillation, computed in log space (no -inf where a posterior underflows); each
    model splices the utterance with its own context."""
    logits = torch.stack([
        m(store.utterance(utt, left=m.config.left_context, right=m.config.right_context))
        for m in models
    ])  # (M, T, P)  # fmt: skip
    w = None if weights is None else torch.tensor(list(weights), dtype=torch.float32)
    return combine_log_probs(logits, combine=combine, weights=w)


def member_weights(paths: Sequence[str | Path], weighting: str) -> list[float] | None:
    """None (uniform) or weights from the members' dev frame accuracy (``accuracy``)."""
    if weighting == "uniform":
        return None
    if weighting != "accuracy":
        raise ValueError(f"weighting must be uniform or accuracy, not {weighting!r}")
    return accuracy_weights(read_member_accuracies([str(p) for p in paths])).tolist()


def ensemble_log_priors(models: Sequence[SpliceDnn]) -> torch.Tensor:
    """log of the mean of the models' priors (identical when trained on the same data)."""
    return torch.logsumexp(torch.stack([m.log_priors for m in models]), 0) - math.log(len(models))


def decode_dnn(
    graph_dir: str | Path,
    model_dir: str | Path,
    dnn_paths: Sequence[str | Path],
    store_dir: str | Path,
    decode_dir: str | Path,
    config: DecodeConfig | None = None,
    *,
    nj: int = 1,
    force: bool = False,
    combine: str = "arithmetic",
    weighting: str = "uniform",
    specialists: str | Path | None = None,
    specialist_top_n: int = 1,
) -> dict | None:
    """The ``decode --dnn`` step: decode the utterances of the frame store
    ``store_dir`` with HCLG, the transition model of ``model_dir`` (the GMM-HMM whose
    tree the DNNs' pdfs come from) and the DNNs' combined posteriors over priors. With
    ``specialists`` (train-specialists' dir) the one DNN is a generalist and the
    posteriors are its combination with the specialists, active for the generalist's
    top ``specialist_top_n`` senones
    (:func:`asr_distill.nnet.specialists.generalist_and_specialists`)."""
    config = config or DecodeConfig()
    decode_dir = Path(decode_dir)
    # what the posteriors are, beside the search's settings (config.yaml): a finished
    # decode made from other models or another combination is refused, not reused
    recorded = {"models.txt": "".join(f"{p}\n" for p in dnn_paths),
                "combine.yaml": f"combine: {combine}\nweighting: {weighting}\n" + (
                    f"specialists: {specialists}\nspecialist_top_n: {specialist_top_n}\n"
                    if specialists else "")}  # fmt: skip
    if not force and is_done(decode_dir):
        for name, text in recorded.items():
            path = decode_dir / name
            if path.is_file() and path.read_text(encoding="utf-8") != text:
                raise InputError(
                    f"a finished decode of other posteriors (now: "
                    f"{' '.join(text.split())}); use --force to redo it",
                    path,
                )
    with step_log(decode_dir, "decode.log", force=force, config=config) as run:
        if not run:
            return None
        for name, text in recorded.items():
            with atomic_open(decode_dir / name) as f:
                f.write(text)
        hmm = GmmHmm.load(model_dir)
        models = load_models(dnn_paths)
        posteriors = (_specialist_posteriors(models, specialists, specialist_top_n)
                      if specialists else None)  # fmt: skip
        if models[0].config.num_pdfs != hmm.num_pdfs:
            raise InputError(f"the DNNs have {models[0].config.num_pdfs} outputs but the tree "
                             f"has {hmm.num_pdfs} pdfs", model_dir)  # fmt: skip
        store = FrameStore(store_dir)
        torch.set_num_threads(1)
        start = time.perf_counter()
        log_priors = ensemble_log_priors(models)
        weights = member_weights(dnn_paths, weighting)
        if posteriors is None:
            posteriors = functools.partial(ensemble_log_posteriors, models, store,
                                           combine=combine, weights=weights)  # fmt: skip
        else:
            posteriors = functools.partial(posteriors, store)
        loglikes = {
            utt: hybrid_log_likelihoods(posteriors(utt), log_priors).numpy()
            for utt in store.utt_ids
        }  # (T, P) each
        log.info("DNN forward (%d model(s)) over %d utterances: %.1f s", len(models),
                 len(loglikes), time.perf_counter() - start)  # fmt: skip
        hyps = decode(graph_dir, hmm, sorted(loglikes), loglikes.__getitem__, config,
                      kind="loglikes", nj=nj, lattice_dir=decode_dir)  # fmt: skip
        return write_decode_dir(decode_dir, hyps, loglikes, time.perf_counter() - start, nj,
                                graph_dir)  # fmt: skip


def _specialist_posteriors(models: Sequence[SpliceDnn], specialists: str | Path, top_n: int):
    """``f(store, utt)``: log q of the generalist ``models[0]`` with the specialists of
    train-specialists' dir ``specialists``, active for its ``top_n`` senones."""
    from asr_distill.nnet.specialists import generalist_and_specialists, load_specialists

    if len(models) != 1:
        raise InputError("--specialists takes one --dnn, the generalist", specialists)
    specs = load_specialists(specialists)
    generalist = models[0]
    ctx = generalist.config.left_context, generalist.config.right_context

    @torch.no_grad()
    def log_q(store: FrameStore, utt: str) -> torch.Tensor:
        inputs = store.utterance(utt, left=ctx[0], right=ctx[1])
        return generalist_and_specialists(generalist, specs, inputs, top_n=top_n)[2]

    return log_q
