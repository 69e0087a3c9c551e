"""The report: tables from a recipe's exp dir, the distilled row chosen on dev, the
paper's claims computed from the numbers, plots written, missing inputs listed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from asr_distill.cli import main


def put(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_text(yaml.safe_dump(data))


def system(exp: Path, rel: str, accs: dict[str, float], wers: tuple[float, float] | None):
    put(exp / rel / "frame_accuracy.yaml",
        {"stores": {f"/x/frames/{s}": {"frame_accuracy": a} for s, a in accs.items()}})  # fmt: skip
    if wers:
        for split, w in zip(("dev", "test"), wers, strict=True):
            put(exp / rel / f"decode_{split}" / "scores.yaml", {"lmwt": 11, "wer": w})


def baseline_and_ensemble(exp: Path) -> None:
    """A baseline at 50 / 48 % (dev / test) and a 2-member ensemble at 54 / 52 %."""
    system(exp, "dnn", {"train": 80.0, "dev": 50.0, "test": 48.0}, (25.0, 26.0))
    put(exp / "ensemble" / "accuracy.yaml", {"stores": {
        "/x/frames/dev": {"ensemble": 54.0, "members": [50.0, 51.0]},
        "/x/frames/test": {"ensemble": 52.0, "members": [48.0, 49.0]}}})  # fmt: skip


def test_report_tables_and_claims(tmp_path):
    exp = tmp_path / "exp"
    baseline_and_ensemble(exp)
    for split, w in (("dev", 23.0), ("test", 24.0)):
        put(exp / "ensemble" / f"decode_{split}" / "scores.yaml", {"wer": w})
    # T=2 is best on dev (53.0) though T=5 is best on test: the report must pick T=2.
    for t, dev, test in ((1, 51.0, 49.0), (2, 53.0, 51.5), (5, 52.0, 51.9), (10, 51.5, 50.0)):
        system(exp, f"distill_T{t}", {"dev": dev, "test": test}, (24.0, 25.0))
    system(exp, "distill_transfer", {"dev": 53.8, "test": 51.9}, (23.5, 24.5))
    system(exp, "distill_pseudo", {"dev": 52.5, "test": 50.5}, (24.0, 25.5))
    system(exp, "small_hard", {"train": 90.0, "test": 40.0}, None)
    system(exp, "small_soft", {"train": 70.0, "test": 46.0}, None)
    for rel, accs in (("small_hard", (30, 38, 37)), ("small_soft", (30, 40, 43))):
        rows = "epoch,step,lr,train_loss,train_frame_acc,dev_loss,dev_frame_acc,seconds\n"
        rows += "".join(f"{e},{e},0.1,1,1,1,{a},1\n" for e, a in enumerate(accs))
        put(exp / rel / "train_curve.csv", rows)
    out = tmp_path / "report"
    assert main(["report", str(exp), str(out)]) == 0
    t1 = (out / "table1.csv").read_text().splitlines()
    # Gains kept, dev / test: (53-50)/(54-50) = 75 %, (51.5-48)/(52-48) = 87.5 %.
    assert t1[4].startswith("distilled on the training data,53.00,51.50,24.00,25.00,75.00,87.50")
    spread = "baseline: mean ± std of the 2 members (seeds),50.50 ± 0.71,48.50 ± 0.71"
    assert t1[2].startswith(spread)
    assert t1[5].startswith("distilled with the transfer set,53.80,51.90,23.50,24.50,95.00,97.50")
    assert t1[6].startswith("hard pseudo-labels on the transfer set,52.50,50.50")
    text = (out / "report.md").read_text()
    # gain 52-48 = 4; distilled keeps (51.5-48)/4 = 87.5 %; soft recovers (46-40)/(48-40) = 75 %.
    assert "ensemble beats the baseline (test frame accuracy): yes (gain 4.00 points)" in text
    assert "keeps 87.50 %; T = 2" in text and "recover 75.00 %" in text
    assert "transfer set keeps at least 95 % of the ensemble's gain: yes (keeps 97.50 %)" in text
    assert (
        "hard pseudo-labels on the transfer set by more than the baseline's seed std: yes "
        "(by 1.40 points; seed std 0.71)" in text
    )
    assert "Not measured" not in text
    t5 = (out / "table5.csv").read_text().splitlines()
    assert t5[1].startswith("baseline (100 %),80.00,48.00")
    for png in ("temperature.png", "table5_dev_curve.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_inputs_are_listed_not_invented(tmp_path):
    exp = tmp_path / "exp"
    system(exp, "dnn", {"train": 80.0, "dev": 50.0, "test": 48.0}, (25.0, 26.0))
    assert main(["report", str(exp), str(tmp_path / "out")]) == 0
    text = (tmp_path / "out" / "report.md").read_text()
    assert "## Not measured (inputs missing)" in text and "- ensemble/accuracy.yaml" in text
    assert "ensemble beats the baseline (test frame accuracy): -" in text


def test_student_seeds_give_mean_and_std_rows_and_the_checks_use_the_means(tmp_path):
    exp = tmp_path / "exp"
    baseline_and_ensemble(exp)
    system(exp, "distill_T2", {"dev": 53.0, "test": 51.0}, (24.0, 25.0))
    system(exp, "distill_T5", {"dev": 52.0, "test": 52.0}, (24.0, 25.0))
    # Seeds of the T chosen on dev (2) count; a seed dir of another T does not.
    system(exp, "distill_T2_seed1", {"dev": 52.0, "test": 50.0}, None)
    system(exp, "distill_T2_seed2", {"dev": 51.0, "test": 49.0}, None)
    system(exp, "distill_T5_seed1", {"dev": 10.0, "test": 10.0}, None)
    system(exp, "distill_transfer", {"dev": 54.0, "test": 52.0}, (23.5, 24.5))
    system(exp, "distill_transfer_seed1", {"dev": 53.0, "test": 51.0}, None)
    system(exp, "distill_pseudo", {"dev": 52.5, "test": 51.8}, (24.0, 25.5))
    system(exp, "distill_pseudo_seed1", {"dev": 52.5, "test": 50.2}, None)
    out = tmp_path / "report"
    assert main(["report", "--temperatures", "2 5", str(exp), str(out)]) == 0
    t1 = (out / "table1.csv").read_text().splitlines()
    # T=2: test 51, 50, 49 -> mean 50, std 1; kept (50-48)/(52-48) = 50 %.
    assert t1[4].startswith("distilled on the training data,53.00,51.00")
    assert t1[5].startswith("distilled on the training data: mean ± std of 3 student seeds,"
                            "52.00 ± 1.00,50.00 ± 1.00,-,-,50.00,50.00")  # fmt: skip
    assert t1[7].startswith("distilled with the transfer set: mean ± std of 2 student seeds,"
                            "53.50 ± 0.71,51.50 ± 0.71,-,-,87.50,87.50")  # fmt: skip
    assert t1[9].startswith("hard pseudo-labels on the transfer set: mean ± std of 2")
    text = (out / "report.md").read_text()
    assert "(keeps 50.00 %; T = 2, chosen on dev, mean of 3 seeds)" in text
    assert "gain: NO (keeps 87.50 %, mean of 2 seeds)" in text
    # means 51.5 vs 51.0: by 0.50 points, under the members' std 0.71
    assert "seed std: NO (by 0.50 points; seed std 0.71)" in text
    # A run with 2 seeds ignores seed dirs left over from a run with more.
    assert main(["report", "--temperatures", "2 5", "--student-seeds", "2", str(exp),
                 str(out)]) == 0  # fmt: skip
    t1 = (out / "table1.csv").read_text().splitlines()
    assert t1[5].startswith("distilled on the training data: mean ± std of 2 student seeds,"
                            "52.50 ± 0.71,50.50 ± 0.71")  # fmt: skip


def test_gmm_table_lists_the_trained_gmm_systems_with_kaldis_reference(tmp_path):
    from safetensors.numpy import save_file

    exp = tmp_path / "exp"
    for name, pdfs, gauss, wers in (("mono", 10, 100, (40.0, 41.0)),
                                    ("tri2b", 50, 900, (30.0, None))):  # fmt: skip
        (exp / name).mkdir(parents=True)
        offsets = np.linspace(0, gauss, pdfs + 1).astype(np.int64)
        save_file({"gauss_offsets": offsets}, str(exp / name / "final.gmm.safetensors"))
        put(exp / name / "decode_dev" / "scores.yaml", {"wer": wers[0]})
    assert main(["report", str(exp), str(tmp_path / "out")]) == 0
    rows = (tmp_path / "out" / "gmm.csv").read_text().splitlines()
    assert rows[1:] == ["mono (monophone),10,100,40.00,-,",
                        "tri2b (triphone on LDA+MLLT),50,900,30.00,-,24.32"]  # fmt: skip
    text = (tmp_path / "out" / "report.md").read_text()
    assert "## GMM-HMM systems" in text and "tri2b/decode_test/scores.yaml" in text


def test_only_the_dev_chosen_temperature_needs_a_decode(tmp_path):
    """The recipes decode the student at the dev-best T alone: the other temperatures'
    WERs are '-', not missing inputs; the chosen one's missing decode is listed."""
    exp = tmp_path / "exp"
    baseline_and_ensemble(exp)
    system(exp, "distill_T2", {"dev": 51.0, "test": 49.0}, None)
    system(exp, "distill_T5", {"dev": 53.0, "test": 51.0}, (24.0, 25.0))
    out = tmp_path / "report"
    assert main(["report", "--temperatures", "2 5", str(exp), str(out)]) == 0
    rows = (out / "temperature.csv").read_text().splitlines()
    assert rows[1] == "2,51.00,49.00,-,-" and rows[2] == "5,53.00,51.00,24.00,25.00"
    assert "distill_T2/decode" not in (out / "report.md").read_text()
    (exp / "distill_T5" / "decode_dev" / "scores.yaml").unlink()
    assert main(["report", "--temperatures", "2 5", str(exp), str(out)]) == 0
    assert "- distill_T5/decode_dev/scores.yaml" in (out / "report.md").read_text()


def test_specialists_tables_when_the_recipe_trained_them(tmp_path):
    exp = tmp_path / "exp"
    baseline_and_ensemble(exp)
    assert main(["report", str(exp), str(tmp_path / "out")]) == 0
    text = (tmp_path / "out" / "report.md").read_text()
    assert "specialists" not in text  # optional: neither a section nor a missing input
    row = {"frames": 100, "generalist_correct": 40, "combined_correct": 44, "change": 4,
           "relative_change": 10.0}  # fmt: skip
    put(exp / "specialists" / "accuracy.yaml", {
        "specialists": ["spec0", "spec1"], "top_n": 1,
        "stores": {"frames/dev": {
            "frames": 300, "generalist": 50.0, "with_specialists": 51.5,
            "covered_frames": 200, "covered_generalist": 45.0,
            "covered_with_specialists": 47.25,
            "by_active_cover": {0: dict(row, combined_correct=40, change=0, relative_change=0.0),
                                1: row}}}})  # fmt: skip
    put(exp / "specialists" / "decode_dev" / "scores.yaml", {"wer": 20.5})
    assert main(["report", str(exp), str(tmp_path / "out")]) == 0
    text = (tmp_path / "out" / "report.md").read_text()
    assert "## Generalist and specialists" in text
    t3 = (tmp_path / "out" / "specialists.csv").read_text().splitlines()
    assert t3[1] == "dev,300,50.00,51.50,200,45.00,47.25"
    t4 = (tmp_path / "out" / "specialists_cover.csv").read_text().splitlines()
    assert t4[2] == "dev,1,100,40,44,4,10.00"
    systems = (tmp_path / "out" / "specialists_systems.csv").read_text().splitlines()
    assert systems[1:] == ["generalist (the baseline),50.00,48.00,25.00,26.00",
                           "generalist + 2 specialists,51.50,-,20.50,-"]  # fmt: skip
    assert "specialists/decode_test/scores.yaml" in text  # listed as missing
    # the optional student of the generalist with its specialists gets a row
    system(exp, "distill_specialists", {"dev": 51.0, "test": 49.0}, (24.0, 25.5))
    put(exp / "distill_specialists" / "distill.yaml", {"temperature": 2.0})
    assert main(["report", str(exp), str(tmp_path / "out")]) == 0
    systems = (tmp_path / "out" / "specialists_systems.csv").read_text().splitlines()
    assert systems[3] == "one student of generalist + specialists (T=2),51.00,49.00,24.00,25.50"
