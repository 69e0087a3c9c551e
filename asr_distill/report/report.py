"""``asr-distill report``: the paper's tables from a recipe's exp dir, as Markdown and
CSV, with PNG plots.

It reads what the recipe's steps wrote (layout of ``recipes/synth/run.sh``):

- ``dnn/``: the baseline (one model); ``frame_accuracy.yaml`` (train, dev, test
  stores), ``decode_{dev,test}/scores.yaml``
- ``ensemble/``: ``accuracy.yaml`` (``ensemble-accuracy``), ``decode_{dev,test}/``
- ``distill_T<T>/``: students at each temperature, like ``dnn/``
- ``distill_transfer/`` and ``distill_pseudo/``: students of the transfer set (soft
  targets, and the control with the teachers' argmax as hard labels), like ``dnn/``
- ``<student>_seed<S>/`` (S = 1 .. student_seeds-1) beside the distilled rows' students
  (``distill_T<best T>``, ``distill_transfer``, ``distill_pseudo``): the same student
  with another seed, ``frame_accuracy.yaml`` only (mean ± std rows)
- ``small_hard/`` and ``small_soft/``: the 3 % experiment (frame accuracy on the
  subset they trained on and on test; ``train_curve.csv`` per epoch)
- ``specialists/`` (optional): ``accuracy.yaml`` of ``specialist-accuracy`` and
  ``decode_{dev,test}/`` of ``decode --specialists`` (the paper's Tables 3 and 4);
  ``distill_specialists/`` (optional): a student of the generalist with its
  specialists, like ``dnn/``

and writes ``table1.{md,csv}``, ``temperature.{md,csv,png}``, ``table5.{md,csv}``,
``table5_dev_curve.png`` and ``report.md`` (all of them, with the paper's numbers and
the checks of the paper's claims). A missing input shows as "-" and is listed;
nothing is made up.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import statistics
from collections.abc import Sequence
from pathlib import Path

import yaml

from asr_distill.io import atomic_open, atomic_path
from asr_distill.nnet.curve import CURVE_FILE, read_train_curve

log = logging.getLogger(__name__)

PAPER_TABLE1 = {"baseline": (58.9, 10.9), "ensemble": (61.1, 10.7), "distilled": (60.8, 10.7)}
# Kaldi's egs/mini_librispeech/s5 RESULTS (dev-clean-2, tgsmall first pass), WER %.
KALDI_MINI_LIBRISPEECH = {"tri1": 27.37, "tri2b": 24.32, "tri3b": 18.10}
GMM_SYSTEMS = {"mono": "monophone", "tri1": "triphone on deltas", "tri2b": "triphone on LDA+MLLT",
               "tri3b": "triphone on LDA+MLLT, fMLLR SAT"}  # fmt: skip
PAPER_TABLE5 = {"baseline (100 %)": (63.4, 58.9), "hard targets (3 %)": (67.3, 44.5),
                "soft targets (3 %)": (65.4, 57.0)}  # fmt: skip


@dataclasses.dataclass
class System:
    """Frame accuracies (%) and WERs (%) of one system; None where not measured."""

    name: str
    dev_acc: float | None = None
    test_acc: float | None = None
    train_acc: float | None = None
    dev_wer: float | None = None
    test_wer: float | None = None


class _Reader:
    def __init__(self, exp: Path):
        self.exp = exp
        self.missing: list[str] = []

    def yaml(self, rel: str) -> dict | None:
        path = self.exp / rel
        if not path.is_file():
            self.missing.append(rel)
            return None
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}

    def wer(self, rel_dir: str) -> float | None:
        scores = self.yaml(f"{rel_dir}/scores.yaml")
        return None if scores is None else float(scores["wer"])

    def frame_acc(self, rel: str, split: str) -> float | None:
        """The accuracy for the store whose last path component is ``split``."""
        data = self.yaml(rel)
        if data is None:
            return None
        for store, v in data.get("stores", {}).items():
            if Path(store).name == split:
                return float(v["ensemble"] if "ensemble" in v else v["frame_accuracy"])
        self.missing.append(f"{rel} [{split}]")
        return None

    def system(self, name: str, rel: str, acc_file: str = "frame_accuracy.yaml", *,
               splits: Sequence[str] = ("dev", "test"), wer: bool = True) -> System:  # fmt: skip
        acc = {s: self.frame_acc(f"{rel}/{acc_file}", s) for s in splits}
        return System(
            name, dev_acc=acc.get("dev"), test_acc=acc.get("test"), train_acc=acc.get("train"),
            dev_wer=self.wer(f"{rel}/decode_dev") if wer else None,
            test_wer=self.wer(f"{rel}/decode_test") if wer else None,
        )  # fmt: skip

    def member_spread(self, rel: str, split: str) -> tuple[float, float, int] | None:
        """(mean, std, n) of the ensemble members' frame accuracies on ``split``: N
        baselines that differ only in seed."""
        data = self.yaml(rel)
        if data is None:
            return None
        for store, v in data.get("stores", {}).items():
            if Path(store).name == split and v.get("members"):
                accs = [float(a) for a in v["members"]]
                std = statistics.stdev(accs) if len(accs) > 1 else 0.0
                return statistics.fmean(accs), std, len(accs)
        self.missing.append(f"{rel} [{split} members]")
        return None

    def seed_spread(self, rel: str, seeds: int | None) -> dict[str, tuple] | None:
        """{split: (mean, std, n)} of the dev and test frame accuracies of the student
        ``rel`` and its other seeds ``rel_seed1`` .. ``rel_seed<seeds-1>`` (all of them
        that exist when ``seeds`` is None), counting only seeds scored on both splits;
        None with fewer than two."""
        if seeds is None:
            found = sorted(p.name for p in self.exp.glob(f"{rel}_seed*") if p.is_dir())
        else:
            found = [f"{rel}_seed{s}" for s in range(1, seeds)]
        accs = []
        for r in [rel, *found]:
            path = self.exp / r / "frame_accuracy.yaml"
            if not path.is_file():
                self.missing.append(f"{r}/frame_accuracy.yaml")
                continue
            pair = (self.frame_acc(f"{r}/frame_accuracy.yaml", "dev"),
                    self.frame_acc(f"{r}/frame_accuracy.yaml", "test"))  # fmt: skip
            if None not in pair:
                accs.append(pair)
        if len(accs) < 2:
            return None
        out = {}
        for i, split in enumerate(("dev", "test")):
            xs = [a[i] for a in accs]
            out[split] = (statistics.fmean(xs), statistics.stdev(xs), len(xs))
        return out

    def curve(self, rel: str) -> list[tuple[int, float]]:
        if not (self.exp / rel / CURVE_FILE).is_file():
            self.missing.append(f"{rel}/{CURVE_FILE}")
            return []
        return [(int(r["epoch"]), r["dev_frame_acc"]) for r in read_train_curve(self.exp / rel)]


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _fmt_t(t: float | None) -> str:
    return "?" if t is None else f"{float(t):g}"


def _write_table(out: Path, stem: str, header: Sequence[str], rows: Sequence[Sequence]) -> str:
    md = "| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n"
    md += "".join("| " + " | ".join(str(c) for c in row) + " |\n" for row in rows)
    with atomic_open(out / f"{stem}.md") as f:
        f.write(md)
    with atomic_open(out / f"{stem}.csv") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return md


def _share(part: float | None, whole: float | None) -> float | None:
    if part is None or whole is None or whole == 0:
        return None
    return 100.0 * part / whole


def _kept(system: System, base: System, ens: System, split: str) -> float | None:
    """% of the ensemble's frame-accuracy gain over the baseline that ``system`` keeps."""
    b, e, s = (getattr(x, f"{split}_acc") for x in (base, ens, system))
    if b is None or e is None or s is None:
        return None
    return _share(s - b, e - b)


def _spread(x: tuple[float, float, int] | None) -> str:
    return "-" if x is None else f"{x[0]:.2f} ± {x[1]:.2f}"


def _gmm_table(r: _Reader, out: Path) -> str:
    """gmm.{md,csv}: size and WER of each GMM-HMM dir the recipe trained (mono, tri1,
    tri2b, tri3b), beside Kaldi's mini_librispeech WERs; empty if there are none."""
    from safetensors.numpy import load_file

    rows = []
    for name, kind in GMM_SYSTEMS.items():
        gmm = r.exp / name / "final.gmm.safetensors"
        if not gmm.is_file():
            continue
        offsets = load_file(str(gmm))["gauss_offsets"]
        rows.append([f"{name} ({kind})", len(offsets) - 1, int(offsets[-1]),
                     _fmt(r.wer(f"{name}/decode_dev")), _fmt(r.wer(f"{name}/decode_test")),
                     KALDI_MINI_LIBRISPEECH.get(name, "")])  # fmt: skip
    if not rows:
        return ""
    header = ["system", "pdfs", "Gaussians", "dev WER %", "test WER %",
              "Kaldi mini_librispeech WER % (dev-clean-2)"]  # fmt: skip
    return _write_table(out, "gmm", header, rows)


def _rescore_table(r: _Reader, out: Path) -> str:
    """rescore.{md,csv}: each system decoded into ``decode_{dev,test}`` and rescored
    into ``decode_{dev,test}_rescored`` (lm-rescore): the two LMs (their files, as
    Kaldi's RESULTS name tgsmall and tgmed), first-pass and rescored WER, and the dev
    lattices' oracle WER; empty if nothing was rescored."""
    rows = []
    for d in sorted(r.exp.glob("*/decode_dev_rescored")):
        rel = d.parent.name
        first, again = (r.yaml(f"{rel}/decode_dev/scores.yaml"),
                        r.yaml(f"{rel}/decode_dev_rescored/scores.yaml"))  # fmt: skip
        lms = r.yaml(f"{rel}/decode_dev_rescored/config.yaml") or {}
        names = " -> ".join("/".join(Path(str(lms.get(k, "?"))).parts[-2:])
                            for k in ("old_lm", "new_lm"))  # fmt: skip
        rows.append([
            rel, names, _fmt(r.wer(f"{rel}/decode_dev")), _fmt(r.wer(f"{rel}/decode_test")),
            _fmt(r.wer(f"{rel}/decode_dev_rescored")), _fmt(r.wer(f"{rel}/decode_test_rescored")),
            _fmt((first or {}).get("oracle_wer")), _fmt((again or {}).get("oracle_wer")),
        ])  # fmt: skip
    if not rows:
        return ""
    header = ["system", "LMs: first pass -> rescoring", "first pass dev WER %",
              "first pass test WER %", "rescored dev WER %",
              "rescored test WER %", "dev oracle WER % (first pass)",
              "dev oracle WER % (rescored)"]  # fmt: skip
    return _write_table(out, "rescore", header, rows)


def _specialists_tables(r: _Reader, out: Path) -> str:
    """specialists.{md,csv} and specialists_cover.{md,csv} from ``specialists/accuracy.yaml``
    (``specialist-accuracy`` on dev and test): the paper's Tables 3 and 4, generalist
    alone and with the specialists; empty if the recipe trained none."""
    if not (r.exp / "specialists" / "accuracy.yaml").is_file():  # optional: not "missing"
        return ""
    acc = r.yaml("specialists/accuracy.yaml")
    stores = acc.get("stores") or {}
    n = len(acc.get("specialists") or [])
    rows3, rows4 = [], []
    for store, res in stores.items():
        name = Path(store).name
        rows3.append([name, res["frames"], _fmt(res["generalist"]), _fmt(res["with_specialists"]),
                      res["covered_frames"], _fmt(res["covered_generalist"]),
                      _fmt(res["covered_with_specialists"])])  # fmt: skip
        for k, row in sorted((res.get("by_active_cover") or {}).items()):
            rows4.append([name, k, row["frames"], row["generalist_correct"],
                          row["combined_correct"], row["change"],
                          _fmt(row["relative_change"])])  # fmt: skip
    header3 = ["frames of", "frames", "generalist frame acc %",
               f"with {n} specialists %", "frames a specialist covers",
               "generalist on them %", "with specialists on them %"]  # fmt: skip
    header4 = ["frames of", "active specialists covering the correct senone", "frames",
               "generalist correct", "with specialists correct", "change",
               "relative change %"]  # fmt: skip
    t3 = _write_table(out, "specialists", header3, rows3)
    t4 = _write_table(out, "specialists_cover", header4, rows4)
    by_split = {Path(k).name: v for k, v in stores.items()}
    systems = [r.system("generalist (the baseline)", "dnn"),
               System(f"generalist + {n} specialists",
                      *(by_split.get(s, {}).get("with_specialists") for s in ("dev", "test")),
                      dev_wer=r.wer("specialists/decode_dev"),
                      test_wer=r.wer("specialists/decode_test"))]  # fmt: skip
    if (r.exp / "distill_specialists").is_dir():  # optional (specialist_student_temperature)
        conf = r.yaml("distill_specialists/distill.yaml") or {}
        systems.append(r.system(f"one student of generalist + specialists "
                                f"(T={_fmt_t(conf.get('temperature'))})",
                                "distill_specialists"))  # fmt: skip
    rows = [[x.name, _fmt(x.dev_acc), _fmt(x.test_acc), _fmt(x.dev_wer), _fmt(x.test_wer)]
            for x in systems]  # fmt: skip
    t5 = _write_table(out, "specialists_systems", ["system", "dev frame acc %",
                      "test frame acc %", "dev WER %", "test WER %"], rows)  # fmt: skip
    return (
        f"{t3}\n{t4}\nThe generalist's top-{acc.get('top_n', 1)} senones activate the "
        f"specialists. Decoded, and distilled into one network (beyond the paper):\n\n{t5}"
    )


def make_report(
    exp_dir: str | Path,
    out_dir: str | Path,
    *,
    temperatures: Sequence[float] = (1, 2, 5, 10),
    title: str = "asr-distill report",
    context: str = "",
    student_seeds: int | None = None,
) -> str:
    """Write the report files into ``out_dir``; return ``report.md``'s text.
    ``student_seeds``: the seeds each distilled row was trained with (the recipe's
    ``student_seeds``; seed dirs beyond them are ignored); None: every seed dir found."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    exp, out = Path(exp_dir), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    r = _Reader(exp)
    base = r.system("baseline (1 model)", "dnn", splits=("train", "dev", "test"))
    ens = r.system("ensemble", "ensemble", acc_file="accuracy.yaml")
    students = {t: r.system(f"distilled T={t:g}", f"distill_T{t:g}", wer=False)
                for t in temperatures}  # fmt: skip
    # The distilled row of Table 1: the temperature with the best DEV frame accuracy. The
    # recipes decode only that student; another T's WER is shown where it was decoded.
    scored = [t for t in temperatures if students[t].dev_acc is not None]
    best_t = max(scored, key=lambda t: students[t].dev_acc) if scored else None
    for t, system in students.items():
        rel = f"distill_T{t:g}"
        if t == best_t or (exp / rel / "decode_dev").is_dir():
            system.dev_wer, system.test_wer = (
                r.wer(f"{rel}/decode_dev"),
                r.wer(f"{rel}/decode_test"),
            )
    dist = dataclasses.replace(
        students[best_t] if best_t is not None else System(""),
        name="distilled on the training data",
    )

    xfer = r.system("distilled with the transfer set", "distill_transfer")
    pseudo = r.system("hard pseudo-labels on the transfer set", "distill_pseudo")
    for system, rel in ((dist, f"distill_T{best_t:g}" if best_t is not None else None),
                        (xfer, "distill_transfer")):  # fmt: skip
        dconf = exp / rel / "distill.yaml" if rel else None
        if dconf is not None and dconf.is_file():
            d = yaml.safe_load(dconf.read_text())
            system.name += f" (T={d['temperature']:g}, hard weight {d['hard_weight']:g})"
    spread = {s: r.member_spread("ensemble/accuracy.yaml", s) for s in ("dev", "test")}
    n_members = next((x[2] for x in spread.values() if x is not None), 0)

    header1 = [
        "system",
        "dev frame acc %",
        "test frame acc %",
        "dev WER %",
        "test WER %",
        "dev gain kept %",
        "test gain kept %",
        "paper frame acc %",
        "paper WER %",
    ]
    rows1 = [[base.name, _fmt(base.dev_acc), _fmt(base.test_acc), _fmt(base.dev_wer),
              _fmt(base.test_wer), "", "", *PAPER_TABLE1["baseline"]],
             [f"baseline: mean ± std of the {n_members} members (seeds)", _spread(spread["dev"]),
              _spread(spread["test"]), "-", "-", "", "", "", ""]]  # fmt: skip
    # Distilled rows trained with several seeds (<dir>_seed<S>): their mean +- std, and
    # the means (System) the checks below use.
    dist_rel = f"distill_T{best_t:g}" if best_t is not None else None
    seeds: dict[str, tuple[System, dict]] = {}
    for key, rel in (("dist", dist_rel), ("xfer", "distill_transfer"),
                     ("pseudo", "distill_pseudo")):  # fmt: skip
        sp = r.seed_spread(rel, student_seeds) if rel and student_seeds != 1 else None
        if sp is not None:
            mean = System("", dev_acc=sp["dev"][0], test_acc=sp["test"][0])
            seeds[key] = (mean, sp)
    for sys_, key, skey in ((ens, "ensemble", None), (dist, "distilled", "dist"),
                            (xfer, None, "xfer"), (pseudo, None, "pseudo")):  # fmt: skip
        paper = PAPER_TABLE1[key] if key else ("", "")
        rows1.append([sys_.name, _fmt(sys_.dev_acc), _fmt(sys_.test_acc), _fmt(sys_.dev_wer),
                      _fmt(sys_.test_wer), _fmt(_kept(sys_, base, ens, "dev")),
                      _fmt(_kept(sys_, base, ens, "test")), *paper])  # fmt: skip
        if skey in seeds:
            mean, sp = seeds[skey]
            rows1.append([f"{sys_.name.split(' (')[0]}: mean ± std of {sp['dev'][2]} student "
                          "seeds", _spread(sp["dev"]), _spread(sp["test"]), "-", "-",
                          _fmt(_kept(mean, base, ens, "dev")),
                          _fmt(_kept(mean, base, ens, "test")), "", ""])  # fmt: skip
    t1 = _write_table(out, "table1", header1, rows1)
    tg = _gmm_table(r, out)
    t_rescore = _rescore_table(r, out)
    t_spec = _specialists_tables(r, out)

    header_t = ["T", "dev frame acc %", "test frame acc %", "dev WER %", "test WER %"]
    rows_t = [[f"{t:g}", _fmt(s.dev_acc), _fmt(s.test_acc), _fmt(s.dev_wer), _fmt(s.test_wer)]
              for t, s in students.items()]  # fmt: skip
    tt = _write_table(out, "temperature", header_t, rows_t)
    fig, ax1 = plt.subplots(figsize=(6, 4))
    ts = [t for t in temperatures if students[t].dev_acc is not None]
    ax1.plot(ts, [students[t].dev_acc for t in ts], "o-", label="dev frame acc")
    ax1.set_xscale("log")
    ax1.set_xticks(list(temperatures), [f"{t:g}" for t in temperatures])
    ax1.set_xlabel("temperature T")
    ax1.set_ylabel("dev frame accuracy %")
    ax2 = ax1.twinx()
    tw = [t for t in temperatures if students[t].dev_wer is not None]
    ax2.plot(tw, [students[t].dev_wer for t in tw], "s--", color="tab:red", label="dev WER")
    ax2.set_ylabel("dev WER %")
    fig.legend(loc="upper center", ncol=2)
    fig.tight_layout()
    with atomic_path(out / "temperature.png") as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)

    conf = exp / "small_hard" / "config.yaml"
    fraction = yaml.safe_load(conf.read_text())["data_fraction"] if conf.is_file() else 0.03
    pct = f"{100 * fraction:g} %"
    hard = r.system(f"hard targets ({pct})", "small_hard", splits=("train", "test"), wer=False)
    dconf = exp / "small_soft" / "distill.yaml"
    how = ""
    if dconf.is_file():  # the soft run's temperature and hard-label weight
        d = yaml.safe_load(dconf.read_text())
        how = f", T={d['temperature']:g}, hard weight {d['hard_weight']:g}"
    soft = r.system(f"soft targets ({pct}{how})", "small_soft", splits=("train", "test"),
                    wer=False)  # fmt: skip
    header5 = ["system", "train frame acc %", "test frame acc %", "paper train %", "paper test %"]
    rows5 = [[s.name, _fmt(s.train_acc), _fmt(s.test_acc), *PAPER_TABLE5[k]]  # paper: 3 %
             for s, k in ((base, "baseline (100 %)"), (hard, "hard targets (3 %)"),
                          (soft, "soft targets (3 %)"))]  # fmt: skip
    rows5[0][0] = "baseline (100 %)"
    t5 = _write_table(out, "table5", header5, rows5)
    fig, ax = plt.subplots(figsize=(6, 4))
    drawn = 0
    for name, rel in ((hard.name, "small_hard"), (soft.name, "small_soft")):
        c = r.curve(rel)
        if c:
            ax.plot([e for e, _ in c], [a for _, a in c], "o-", label=name)
            drawn += 1
    ax.set_xlabel("epoch")
    ax.set_ylabel("dev frame accuracy %")
    ax.set_title(f"{pct} of the training data")
    if drawn:
        ax.legend()
    fig.tight_layout()
    with atomic_path(out / "table5_dev_curve.png") as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)

    checks = []
    # With several student seeds the checks use their means.
    n_seeds = {k: v[1]["test"][2] for k, v in seeds.items()}
    dist_m, xfer_m, pseudo_m = (seeds[k][0] if k in seeds else x for k, x in
                                (("dist", dist), ("xfer", xfer), ("pseudo", pseudo)))  # fmt: skip

    def seeds_note(key: str) -> str:
        return f", mean of {n_seeds[key]} seeds" if key in n_seeds else ""

    gain = None if ens.test_acc is None or base.test_acc is None else ens.test_acc - base.test_acc
    kept = _share(None if dist_m.test_acc is None or base.test_acc is None
                  else dist_m.test_acc - base.test_acc, gain)  # fmt: skip
    checks.append(f"- ensemble beats the baseline (test frame accuracy): "
                  f"{'-' if gain is None else ('yes' if gain > 0 else 'NO')} "
                  f"(gain {_fmt(gain)} points)")  # fmt: skip
    checks.append(f"- distilled model keeps at least 80 % of the ensemble's gain: "
                  f"{'-' if kept is None else ('yes' if kept >= 80 else 'NO')} "
                  f"(keeps {_fmt(kept)} %; T = {'-' if best_t is None else f'{best_t:g}'}, "
                  f"chosen on dev{seeds_note('dist')})")  # fmt: skip
    kept_x = _kept(xfer_m, base, ens, "test")
    checks.append(f"- distilled with the transfer set keeps at least 95 % of the ensemble's "
                  f"gain: {'-' if kept_x is None else ('yes' if kept_x >= 95 else 'NO')} "
                  f"(keeps {_fmt(kept_x)} %{seeds_note('xfer')})")  # fmt: skip
    margin = None if xfer_m.test_acc is None or pseudo_m.test_acc is None \
        else xfer_m.test_acc - pseudo_m.test_acc  # fmt: skip
    seed_std = None if spread["test"] is None else spread["test"][1]
    beats = None if margin is None or seed_std is None else margin > seed_std
    checks.append(f"- soft targets beat hard pseudo-labels on the transfer set by more than "
                  f"the baseline's seed std: {'-' if beats is None else ('yes' if beats else 'NO')}"
                  f" (by {_fmt(margin)} points; seed std {_fmt(seed_std)})")  # fmt: skip
    gap = None if base.test_acc is None or hard.test_acc is None else base.test_acc - hard.test_acc
    rec = _share(None if soft.test_acc is None or hard.test_acc is None
                 else soft.test_acc - hard.test_acc, gap)  # fmt: skip
    checks.append(f"- soft targets on {pct} recover at least 70 % of the gap between hard "
                  f"targets on {pct} and the 100 % baseline: "
                  f"{'-' if rec is None else ('yes' if rec >= 70 else 'NO')} "
                  f"(recover {_fmt(rec)} %)")  # fmt: skip
    missing = sorted(set(r.missing))
    text = f"# {title}\n\n{context}\n\n## Table 1: baseline, ensemble, distilled\n\n{t1}\n"
    if tg:
        text += f"## GMM-HMM systems (the DNNs' alignments come from one of them)\n\n{tg}\n"
    if t_rescore:
        text += f"## First pass and LM rescoring (lm-rescore)\n\n{t_rescore}\n"
    text += f"## Temperature sweep\n\n{tt}\n![temperature](temperature.png)\n\n"
    text += (f"## Table 5: {pct} of the training data (the paper: 3 %)\n\n{t5}\n"
             "![dev curves](table5_dev_curve.png)\n\n")  # fmt: skip
    if t_spec:
        text += f"## Generalist and specialists (the paper's Tables 3 and 4)\n\n{t_spec}\n"
    text += "## The paper's claims, checked\n\n" + "\n".join(checks) + "\n"
    if missing:
        text += "\n## Not measured (inputs missing)\n\n" + "".join(f"- {m}\n" for m in missing)
    with atomic_open(out / "report.md") as f:
        f.write(text)
    log.info("report: %s (%d missing inputs)", out / "report.md", len(missing))
    return text
