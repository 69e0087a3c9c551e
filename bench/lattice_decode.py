"""Issue 16's first measurement: can a pip-installable decoder give lattices at the cost
of today's one-best decode?

Side by side, in one run, on one decode set (a hybrid DNN's log-likelihoods over a
recipe's dev frame store and the GMM's HCLG):

- kaldi-hmm-gmm's ``LatticeFasterDecoder`` (one-best; what ``decode`` calls today), once
  per LM weight;
- kaldi-decoder's ``LatticeSimpleDecoder`` (the only pip decoder found that returns a
  lattice: ``get_raw_lattice``, state level, not determinized), once at
  ``--decode-lmwt``, then the best path of the raw lattice at every LM weight (kaldifst's
  ``scale_lattice`` + ``shortest_path``), no decoding again.

Prints the seconds of each, the lattices' mean arcs per frame, and how many best paths
from the lattice equal the one-best decode at the same LM weight, and the dev WER of
both at each weight.

    python bench/lattice_decode.py --work-dir /work/demo_run   # after the small recipe

kaldi-decoder is pinned to 0.2.11 (dev extras): 0.3.2 rejects kaldifst 1.7.17's FSTs
and hangs when imported before kaldi_hmm_gmm.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import kaldi_decoder as kd
import kaldi_hmm_gmm as khg
import kaldifst
import torch

from asr_distill.data.kaldi_dir import read_table
from asr_distill.decode.decode import pdf_loglikes_to_tid_columns, read_symbols
from asr_distill.decode.dnn import ensemble_log_posteriors, load_models
from asr_distill.decode.score import compute_wer
from asr_distill.features.framestore import FrameStore
from asr_distill.hmm.model import GmmHmm
from asr_distill.lang.validate import read_fst
from asr_distill.nnet.model import hybrid_log_likelihoods


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work-dir", required=True, help="a finished synth recipe's work dir")
    ap.add_argument("--lmwts", default="6,8,10,12,14,16")
    ap.add_argument(
        "--decode-lmwt",
        type=float,
        default=10.0,
        help="the LM weight of the lattice decode (acoustic scale 1/LMWT)",
    )
    ap.add_argument("--beam", type=float, default=10.0)
    ap.add_argument("--lattice-beam", type=float, default=6.0)
    ap.add_argument("--max-active", type=int, default=2000)
    ap.add_argument("--utts", type=int, default=0, help="first N dev utterances (0: all)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    w = Path(args.work_dir)
    am = w / "exp" / "tri3b"  # the DNN targets' tree and graph (gmm_targets: tri3b)
    hmm = GmmHmm.load(am)
    graph = read_fst(am / "graph" / "HCLG.fst")
    models = load_models([w / "exp" / "dnn" / "final"])
    store = FrameStore(w / "frames" / "dev")
    utts = list(store.utt_ids)[: args.utts or None]
    with torch.no_grad():
        loglikes = {
            u: pdf_loglikes_to_tid_columns(hmm, hybrid_log_likelihoods(
                ensemble_log_posteriors(models, store, u), models[0].log_priors).numpy())
            for u in utts
        }  # fmt: skip
    lmwts = [float(x) for x in args.lmwts.split(",")]
    nframes = sum(len(x) for x in loglikes.values())

    start = time.perf_counter()
    onebest: dict[tuple[str, float], list[int]] = {}
    cfg = khg.LatticeFasterDecoderConfig(beam=args.beam, lattice_beam=args.lattice_beam,
                                         max_active=args.max_active)  # fmt: skip
    for lmwt in lmwts:
        for u in utts:
            dec = khg.LatticeFasterDecoder(graph, cfg)
            _, _, words, _ = khg.decode_utterance_lattice_faster(
                decoder=dec, decodable=khg.DecodableCtc(loglikes[u] / lmwt),
                trans_model=hmm.trans_model, utt=u, allow_partial=True)  # fmt: skip
            onebest[u, lmwt] = list(words)
    t_onebest = time.perf_counter() - start

    start = time.perf_counter()
    lattices = {}
    acwt = 1.0 / args.decode_lmwt
    scfg = kd.LatticeSimpleDecoderConfig(beam=args.beam, lattice_beam=args.lattice_beam)
    for u in utts:
        dec = kd.LatticeSimpleDecoder(graph, scfg)
        dec.decode(kd.DecodableCtc(loglikes[u] * acwt))
        _, lat = dec.get_raw_lattice()
        kaldifst.scale_lattice([[1.0, 0.0], [0.0, 1.0 / acwt]], lat)  # raw acoustic costs
        lattices[u] = lat
    t_lattice = time.perf_counter() - start
    arcs = sum(sum(lat.num_arcs(s) for s in range(lat.num_states)) for lat in lattices.values())

    start = time.perf_counter()
    same = total = 0
    by_lmwt = {}
    fromlat: dict[tuple[str, float], list[int]] = {}
    for lmwt in lmwts:
        for u, lat in lattices.items():
            scaled = lat.copy()
            kaldifst.scale_lattice([[1.0, 0.0], [0.0, 1.0 / lmwt]], scaled)
            _, _, words, _ = kaldifst.get_linear_symbol_sequence(kaldifst.shortest_path(scaled))
            fromlat[u, lmwt] = list(words)
            same += int(list(words) == onebest[u, lmwt])
            total += 1
            by_lmwt[lmwt] = by_lmwt.get(lmwt, 0) + int(list(words) == onebest[u, lmwt])
    t_sweep = time.perf_counter() - start
    print(
        f"{len(utts)} utterances, {nframes} frames, {hmm.num_pdfs} pdfs, "
        f"HCLG {graph.num_states} states; beam {args.beam}, lattice beam {args.lattice_beam}"
    )
    print(
        f"one-best LatticeFasterDecoder x {len(lmwts)} LM weights: {t_onebest:.2f} s "
        f"({t_onebest / len(lmwts):.2f} s per weight)"
    )
    print(
        f"LatticeSimpleDecoder once, raw lattice: {t_lattice:.2f} s "
        f"({t_lattice / (t_onebest / len(lmwts)):.2f}x one one-best pass); "
        f"{arcs / nframes:.1f} lattice arcs per frame"
    )
    print(
        f"best paths of the lattices at {len(lmwts)} LM weights: {t_sweep:.2f} s; "
        f"{same} of {total} equal the one-best decode at that weight "
        f"(by LM weight: {by_lmwt})"
    )
    symbols = read_symbols(am / "graph" / "words.txt")
    refs = read_table(w / "data" / "dev" / "text", allow_empty_value=True)
    refs = {u: refs[u] for u in utts}
    for name, hyps in (("one-best decodes", onebest), ("lattice best paths", fromlat)):
        wers = [compute_wer(refs, {u: " ".join(symbols[i] for i in hyps[u, lmwt]) for u in utts})
                [0].wer for lmwt in lmwts]  # fmt: skip
        print(
            f"dev WER % of the {name} at LM weights {lmwts}: " + " ".join(f"{x:.2f}" for x in wers)
        )


if __name__ == "__main__":
    main()
