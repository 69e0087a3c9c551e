"""Issue 16: decoding once into lattices plus a sweep of LM weights x word insertion
penalties, against one one-best search (kaldi-hmm-gmm's LatticeFasterDecoder, what
``decode --no-lattice`` runs per LM weight), side by side in one run, on a finished
synth recipe's dev set.

- one-best: one search at ``--decode-lmwt`` (the reference cost), then the one-best
  sweep of today's recipes (one search per LM weight), for the WERs;
- lattice: ``decode`` with lattices: one search per utterance (numba,
  :mod:`asr_distill.decode.lattice`), the best path at every LM weight x penalty, the
  lattices written (``lat.N.gz``), as the ``decode`` step does;
- determinized: the same with ``determinize: true`` (CompactLattices written, the
  sweep from them).

Prints the seconds and ratios, the dev WER of both at every LM weight (penalty 0),
the best setting of each, the lattice oracle WER, and how many lattice best paths equal
the one-best search at the same weight.

    python bench/lattice_decode.py --work-dir /work/runs/small2                # DNN
    python bench/lattice_decode.py --work-dir /work/runs/small2 --am tri2b     # GMM
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from asr_distill.data.kaldi_dir import read_table
from asr_distill.decode.config import DecodeConfig
from asr_distill.decode.decode import decode
from asr_distill.decode.dnn import ensemble_log_posteriors, load_models
from asr_distill.decode.score import compute_wer, lattice_oracle, setting_name
from asr_distill.features.framestore import FrameStore
from asr_distill.hmm.feats import load_gmm_features
from asr_distill.hmm.model import GmmHmm
from asr_distill.nnet.model import hybrid_log_likelihoods


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work-dir", required=True, help="a finished synth recipe's work dir")
    ap.add_argument("--am", default="dnn", help="dnn (exp/dnn/final on tri3b's tree) or a "
                    "GMM without SAT: mono, tri1, tri2b")  # fmt: skip
    ap.add_argument("--lmwts", default=None, help="default: the preset's (6..18 DNN, 12..24 GMM)")
    ap.add_argument("--wips", default="0,0.5,1")
    ap.add_argument("--decode-lmwt", type=float, default=None, help="default: the middle one")
    ap.add_argument("--beam", type=float, default=None, help="default: 10 DNN, 11 GMM")
    ap.add_argument("--lattice-beam", type=float, default=6.0)
    ap.add_argument("--max-active", type=int, default=2000)
    ap.add_argument("--nj", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(1)
    w = Path(args.work_dir)
    dnn = args.am == "dnn"
    am = w / "exp" / ("tri3b" if dnn else args.am)
    hmm = GmmHmm.load(am)
    lmwts = [float(x) for x in (args.lmwts or ("6,9,12,15,18" if dnn else "12,15,18,21,24"))
             .split(",")]  # fmt: skip
    beam = args.beam or (10.0 if dnn else 11.0)
    if dnn:
        models = load_models([w / "exp" / "dnn" / "final"])
        store = FrameStore(w / "frames" / "dev")
        with torch.no_grad():
            source = {u: hybrid_log_likelihoods(ensemble_log_posteriors(models, store, u),
                                                models[0].log_priors).numpy()
                      for u in store.utt_ids}  # fmt: skip
        kind = "loglikes"
    else:
        source = load_gmm_features(w / "data" / "dev_mfcc", transform=hmm.transform)
        kind = "gmm"
    utts = sorted(source)
    graph = am / "graph"
    decode_lmwt = args.decode_lmwt or sorted(lmwts)[(len(lmwts) - 1) // 2]
    base = dict(beam=beam, lattice_beam=args.lattice_beam, max_active=args.max_active)

    def run(config: DecodeConfig, lattice_dir: Path | None = None):
        start = time.perf_counter()
        hyps = decode(graph, hmm, utts, source.__getitem__, config, kind=kind, nj=args.nj,
                      lattice_dir=lattice_dir)  # fmt: skip
        return hyps, time.perf_counter() - start

    run(DecodeConfig(lmwts=[decode_lmwt], lattice=True, **base))  # numba: load compiled code
    _, t_one = run(DecodeConfig(lmwts=[decode_lmwt], lattice=False, **base))
    wips = [float(x) for x in args.wips.split(",")]
    refs = read_table(w / "data" / "dev" / "text", allow_empty_value=True)
    found = {}
    for det in (False, True):
        with tempfile.TemporaryDirectory() as tmp:
            hyps, t = run(
                DecodeConfig(lmwts=lmwts, word_ins_penalties=wips, search_lmwt=decode_lmwt,
                             determinize=det, **base), Path(tmp),
            )  # fmt: skip
            (Path(tmp) / "words.txt").write_text((graph / "words.txt").read_text())
            start = time.perf_counter()
            oracle = lattice_oracle(Path(tmp), refs)
            size = sum(f.stat().st_size for f in Path(tmp).glob("lat.*.gz")) / 2**20
            found[det] = (hyps, t, oracle, time.perf_counter() - start, size)
    lat_hyps, t_lat, oracle, t_oracle, size = found[False]
    det_hyps, t_det, det_oracle, _, det_size = found[True]
    one_hyps, t_sweep = run(DecodeConfig(lmwts=lmwts, lattice=False, **base))

    def wer(hyps) -> float:
        return compute_wer(refs, {u: " ".join(hyps[u] or []) for u in utts})[0].wer

    frames = sum(len(x) for x in source.values())
    print(f"{args.am} on {len(utts)} dev utterances ({frames} frames), HCLG of {am.name}; "
          f"beam {beam}, max-active {args.max_active}, lattice beam {args.lattice_beam}, "
          f"lattice searched at LM weight {decode_lmwt:g}, nj {args.nj}")  # fmt: skip
    print(f"one one-best search (LM weight {decode_lmwt:g}): {t_one:.2f} s")
    print(
        f"lattice search + best paths at {len(lmwts)} x {len(wips)} settings + lattices "
        f"written: {t_lat:.2f} s = {t_lat / t_one:.2f}x one one-best search"
    )
    print(
        f"the same, determinized: {t_det:.2f} s = {t_det / t_one:.2f}x; lattices "
        f"{det_size:.2f} MB gzipped (undeterminized {size:.2f} MB)"
    )
    print(
        f"one-best sweep ({len(lmwts)} searches): {t_sweep:.2f} s = "
        f"{t_sweep / t_one:.2f}x; lattice oracle (read + score): {t_oracle:.2f} s"
    )
    same = sum(lat_hyps[x, 0.0][u] == one_hyps[x, 0.0][u] for x in lmwts for u in utts)
    print(
        f"lattice best paths equal to the one-best search at the same weight: {same} of "
        f"{len(lmwts) * len(utts)}"
    )
    print("dev WER %   LM weight: " + " ".join(f"{x:>6g}" for x in lmwts))
    print("one-best searches:      " + " ".join(f"{wer(one_hyps[x, 0.0]):6.2f}" for x in lmwts))
    for p in wips:
        print(f"lattice, penalty {p:<4g}:  " + " ".join(f"{wer(lat_hyps[x, p]):6.2f}"
                                                       for x in lmwts))  # fmt: skip
    for p in wips:
        print(f"determinized, pen. {p:<4g}: " + " ".join(f"{wer(det_hyps[x, p]):6.2f}"
                                                       for x in lmwts))  # fmt: skip
    best_one = min((wer(h), k) for k, h in one_hyps.items())
    best_lat = min((wer(h), k) for k, h in lat_hyps.items())
    best_det = min((wer(h), k) for k, h in det_hyps.items())
    print(
        f"best: one-best sweep {best_one[0]:.2f} ({setting_name(*best_one[1])}), lattices "
        f"{best_lat[0]:.2f} ({setting_name(*best_lat[1])}), determinized "
        f"{best_det[0]:.2f} ({setting_name(*best_det[1])}); lattice oracle {oracle.wer:.2f}, "
        f"determinized {det_oracle.wer:.2f}"
    )


if __name__ == "__main__":
    main()
