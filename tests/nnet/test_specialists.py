"""Specialists' arithmetic (issue 19): the KL combination against its closed form, the
dustbin correction against Bayes' rule, k-means recovering planted blocks."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from asr_distill.nnet import specialists as sp


def _log_probs(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (2.0 * torch.randn(*shape, generator=g, dtype=torch.float64)).log_softmax(-1)


def test_one_specialist_matches_the_closed_form():
    gen = _log_probs(16, 12)
    senones = [1, 4, 5, 9]
    spec = _log_probs(16, len(senones) + 1, seed=1)
    active = torch.ones(16, 1, dtype=torch.bool)
    q = sp.combine(gen, [spec], [senones], active, steps=400)
    ref = sp.combine_one_closed_form(gen, spec, senones)
    assert torch.allclose(q.exp(), ref.exp(), atol=1e-4)
    assert torch.allclose(q.exp().sum(-1), torch.ones(16, dtype=torch.float64))
    # the closed form is the minimum: any nudge of it raises the objective
    member = sp.membership([senones], 12).double()
    target = gen.exp().clone()
    target[:, senones] += spec.exp()[:, :-1]
    dust = spec.exp()[:, -1:]
    best = sp.combine_objective(ref, target, dust, member)
    nudged = (ref + 0.05 * _log_probs(16, 12, seed=2)).log_softmax(-1)
    assert (sp.combine_objective(nudged, target, dust, member) > best).all()


def test_closed_form_by_hand():
    # p_g = (0.5, 0.3, 0.2), a specialist on senone 0: p_m = (0.9, dustbin 0.1).
    gen = torch.tensor([[0.5, 0.3, 0.2]], dtype=torch.float64).log()
    spec = torch.tensor([[0.9, 0.1]], dtype=torch.float64).log()
    q = sp.combine_one_closed_form(gen, spec, [0]).exp()
    # on S: (0.5 + 0.9) / 2 = 0.7; outside: (0.5 + 0.1) / 2 = 0.3 split 0.3 : 0.2
    assert torch.allclose(q, torch.tensor([[0.7, 0.18, 0.12]], dtype=torch.float64))
    q_gd = sp.combine(gen, [spec], [[0]], torch.ones(1, 1, dtype=torch.bool), steps=400)
    assert torch.allclose(q_gd.exp(), q, atol=1e-4)


def test_inactive_specialists_leave_the_generalist_alone():
    gen = _log_probs(8, 10)
    specs = [_log_probs(8, 4, seed=3), _log_probs(8, 3, seed=4)]
    sets = [[0, 1, 2], [5, 6]]
    active = torch.zeros(8, 2, dtype=torch.bool)
    active[0, 0] = True  # one frame with one specialist
    q = sp.combine(gen, specs, sets, active, steps=400)
    assert torch.allclose(q[1:].exp(), gen[1:].exp(), atol=1e-4)
    ref = sp.combine_one_closed_form(gen[:1], specs[0][:1], sets[0])
    assert torch.allclose(q[:1].exp(), ref.exp(), atol=1e-4)
    assert torch.equal(sp.combine(gen, specs, sets, torch.zeros(8, 2, dtype=torch.bool)),
                       gen.log_softmax(-1))  # fmt: skip


def test_two_overlapping_specialists_lower_the_objective_monotonically():
    gen = _log_probs(6, 9)
    sets = [[0, 1, 2, 3], [2, 3, 4]]
    specs = [_log_probs(6, 5, seed=5), _log_probs(6, 4, seed=6)]
    active = torch.ones(6, 2, dtype=torch.bool)
    member = sp.membership(sets, 9).double()
    target = gen.exp().clone()
    dust = torch.zeros(6, 2, dtype=torch.float64)
    for m, (s, p) in enumerate(zip(sets, specs, strict=True)):
        target[:, s] += p.exp()[:, :-1]
        dust[:, m] = p.exp()[:, -1]
    objective = [sp.combine_objective(sp.combine(gen, specs, sets, active, steps=n),
                                      target, dust, member).sum().item()
                 for n in (0, 25, 100, 400)]  # fmt: skip
    assert objective == sorted(objective, reverse=True)
    # converged: the stationarity condition of the constrained problem holds
    q = sp.combine(gen, specs, sets, active, steps=1000).exp()
    outside = 1.0 - q @ member.T
    grad = target / q + (dust / outside) @ (1.0 - member)  # -d objective / d q(c)
    lam = grad.mean(-1, keepdim=True)
    assert torch.allclose(grad, lam, rtol=1e-3)


def _objective_parts(gen, specs, sets, active):
    """(target T, dustbins, membership) of combine_objective for a batch."""
    member = sp.membership(sets, gen.shape[1]).double()
    target = gen.exp().clone()
    dust = torch.zeros(gen.shape[0], len(sets), dtype=torch.float64)
    act = active.double()
    for m, (s, p) in enumerate(zip(sets, specs, strict=True)):
        target[:, s] += p.exp()[:, :-1] * act[:, m : m + 1]
        dust[:, m] = p.exp()[:, -1] * act[:, m]
    return target, dust, member


def test_disjoint_sets_get_the_exact_minimiser():
    """Several active specialists on disjoint sets: the bisection's q satisfies the
    stationarity condition to float64 precision, is never worse than long gradient
    descent and agrees with it; with one active specialist it is the closed form."""
    num_pdfs, frames = 15, 40
    gen = _log_probs(frames, num_pdfs, seed=7)
    sets = [[0, 3, 4], [1, 7], [2, 9, 10, 11], [12]]  # 5, 6, 8, 13, 14: no set
    specs = [_log_probs(frames, len(s) + 1, seed=20 + m) for m, s in enumerate(sets)]
    g = torch.Generator().manual_seed(3)
    active = torch.rand(frames, len(sets), generator=g) < 0.6
    active[0] = True  # every specialist
    active[1] = False  # none
    q = sp.combine_disjoint(gen, specs, sets, active)
    assert torch.allclose(q.exp().sum(-1), torch.ones(frames, dtype=torch.float64))
    torch.testing.assert_close(q[1], gen[1], rtol=0, atol=1e-12)  # no specialist: p_g
    target, dust, member = _objective_parts(gen, specs, sets, active)
    p = q.exp()
    outside = 1.0 - p @ member.T
    grad = target / p + (dust / outside) @ (1.0 - member)  # -d objective / d q(c)
    assert torch.allclose(grad, grad.mean(-1, keepdim=True).expand_as(grad), rtol=1e-9)
    exact = sp.combine_objective(q, target, dust, member)
    z = gen.clone().requires_grad_(True)  # the gradient path, for overlapping sets
    opt = torch.optim.Adam([z], lr=0.02)
    for _ in range(3000):
        opt.zero_grad()
        sp.combine_objective(z.log_softmax(-1), target, dust, member).sum().backward()
        opt.step()
    descent = sp.combine_objective(z.detach().log_softmax(-1), target, dust, member)
    assert (exact <= descent + 1e-12).all() and (descent - exact).max() < 1e-6
    assert torch.allclose(q.exp(), z.detach().softmax(-1), atol=2e-4)
    # combine() takes this path for disjoint sets
    assert torch.equal(sp.combine(gen, specs, sets, active), q)
    one = torch.zeros(frames, len(sets), dtype=torch.bool)
    one[:, 2] = True
    torch.testing.assert_close(sp.combine_disjoint(gen, specs, sets, one),
                               sp.combine_one_closed_form(gen, specs[2], sets[2]),
                               rtol=0, atol=1e-12)  # fmt: skip
    with pytest.raises(ValueError, match="disjoint"):
        sp.combine_disjoint(gen, specs[:2], [[0, 3], [3, 7]], active[:, :2])


@pytest.mark.parametrize("margin", [5.0, 40.0, 100.0, 800.0])
def test_exact_combination_with_a_confident_generalist(margin):
    """A generalist sure of one senone of the set (its other senones ``margin`` nats
    below) and a specialist that puts 0.4 on its dustbin: the set keeps (p_g(S) + 0.6) /
    2 of the mass and the rest (p_g(rest) + 0.4) / 2, however small p_g outside the set
    is (the closed form); with a second active specialist, the stationarity conditions."""
    gen = torch.full((1, 6), -margin, dtype=torch.float64)
    gen[0, 1] = 0.0
    gen = gen.log_softmax(-1)
    pg = gen.exp()[0]
    spec = torch.tensor([[0.5, 0.1, 0.4]], dtype=torch.float64).log()  # senones 1, 2; dust
    q = sp.combine_disjoint(gen, [spec], [[1, 2]], torch.ones(1, 1, dtype=torch.bool)).exp()
    assert torch.isfinite(q).all()
    assert q[0, [1, 2]].sum().item() == pytest.approx((pg[[1, 2]].sum().item() + 0.6) / 2,
                                                     abs=1e-12)  # fmt: skip
    assert q[0, [0, 3, 4, 5]].sum().item() == pytest.approx(
        (pg[[0, 3, 4, 5]].sum().item() + 0.4) / 2, abs=1e-12)  # fmt: skip
    other = torch.tensor([[0.2, 0.8]], dtype=torch.float64).log()  # senone 4, dustbin
    q = sp.combine_disjoint(gen, [spec, other], [[1, 2], [4]],
                            torch.ones(1, 2, dtype=torch.bool)).exp()[0]  # fmt: skip
    a1, a2, a_r = q[[1, 2]].sum(), q[4], q[[0, 3, 5]].sum()
    assert torch.isfinite(q).all() and (a1 + a2 + a_r).item() == pytest.approx(1.0, abs=1e-12)
    lam1 = (pg[[1, 2]].sum() + 0.6) / a1 - 0.4 / (1 - a1)
    lam2 = (pg[4] + 0.2) / a2 - 0.8 / (1 - a2)
    assert lam1.item() == pytest.approx(lam2.item(), rel=1e-9)
    if margin < 100:  # a_R still representable
        assert (pg[[0, 3, 5]].sum() / a_r).item() == pytest.approx(lam1.item(), rel=1e-9)


def test_exact_combination_when_the_active_sets_cover_every_pdf():
    """Two active sets that hold every senone: no rest mass, the multiplier is found on
    a linear scale, and a_1 = (A_1 + d_2) / 3 (the objective in a_1 alone)."""
    gen = torch.tensor([[0.5, 0.2, 0.2, 0.1]], dtype=torch.float64).log()
    specs = [torch.tensor([[0.3, 0.3, 0.4]], dtype=torch.float64).log(),
             torch.tensor([[0.1, 0.1, 0.8]], dtype=torch.float64).log()]  # fmt: skip
    sets = [[0, 1], [2, 3]]
    q = sp.combine_disjoint(gen, specs, sets, torch.ones(1, 2, dtype=torch.bool)).exp()
    a1 = ((0.7 + 0.6) + 0.8) / 3
    assert q[0, :2].sum().item() == pytest.approx(a1, abs=1e-9)
    # within a set, q is proportional to p_g + p_m
    assert (q[0, 0] / q[0, 1]).item() == pytest.approx(0.8 / 0.5, rel=1e-9)
    # one active set that covers every senone of any mass takes it all: q = T / A
    gen = torch.tensor([[0.6, 0.4, 0.0, 0.0]], dtype=torch.float64).log()  # -inf outside
    q = sp.combine_disjoint(gen, specs, sets, torch.tensor([[True, False]])).exp()
    assert torch.isfinite(q).all() and q[0, 2:].sum().item() == 0.0
    torch.testing.assert_close(q[0, :2], torch.tensor([0.9, 0.7], dtype=torch.float64) / 1.6)


@pytest.mark.parametrize("fraction", [0.05, 0.3, 0.7])
def test_dustbin_correction_restores_the_natural_posterior(fraction):
    # a frame's natural posterior over S (3 senones) and the dustbin
    natural = torch.tensor([0.2, 0.1, 0.05, 0.65], dtype=torch.float64)
    share = 0.5  # half of each batch from S
    ratio = torch.tensor([share / fraction] * 3 + [(1 - share) / (1 - fraction)],
                         dtype=torch.float64)  # fmt: skip
    trained = natural * ratio / (natural * ratio).sum()  # what the specialist learns
    logits = trained.log()
    logits[-1] += sp.dustbin_log_correction(fraction, share)
    assert torch.allclose(logits.softmax(-1), natural)
    assert sp.dustbin_log_correction(0.25) == pytest.approx(math.log(3.0))
    with pytest.raises(ValueError):
        sp.dustbin_log_correction(0.0)


def test_kmeans_on_posterior_covariance_recovers_planted_blocks():
    # 12 senones in 3 planted groups: frames pick a group, then spread their posterior
    # over that group's senones, so a group's columns co-vary.
    rng = np.random.default_rng(0)
    groups = [[0, 4, 8, 11], [1, 2, 6], [3, 5, 7, 9, 10]]
    post = np.zeros((3000, 12))
    for row in post:
        g = groups[rng.integers(3)]
        row[g] = rng.dirichlet(np.ones(len(g)))
    post = 0.9 * post + 0.1 * rng.dirichlet(np.ones(12), size=3000)
    cov = sp.posterior_covariance(post)
    assert np.allclose(cov, np.cov(post, rowvar=False))
    labels = sp.cluster_columns(sp.normalised_columns(cov), 3, seed=1)
    found = sorted(sorted(np.flatnonzero(labels == k).tolist()) for k in range(3))
    assert found == sorted(groups)
    assert np.array_equal(labels, sp.cluster_columns(sp.normalised_columns(cov), 3, seed=1))


def test_normalised_columns_ignore_each_senones_scale():
    # A senone's variance grows with its frequency; the columns k-means sees do not: a
    # covariance D C D (D diagonal, positive) gives the same columns as C.
    rng = np.random.default_rng(2)
    x = rng.normal(size=(500, 6)) @ rng.normal(size=(6, 6))
    cov = np.cov(x, rowvar=False)
    d = np.diag(rng.uniform(0.01, 100.0, 6))
    cols = sp.normalised_columns(cov)
    assert np.allclose(sp.normalised_columns(d @ cov @ d), cols)
    assert np.allclose(np.linalg.norm(cols, axis=0), 1.0)


def test_cluster_columns_keeps_every_cluster_non_empty():
    labels = sp.cluster_columns(np.eye(5), 5, seed=0)
    assert sorted(labels.tolist()) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError):
        sp.cluster_columns(np.eye(3), 4)


def test_cluster_senones_step_writes_sets_and_names(tmp_path, mono, gmm_system):
    from asr_distill.cli import main
    from asr_distill.features.framestore_build import build_frame_store
    from asr_distill.nnet.model import DnnConfig, SpliceDnn
    from tests.nnet.test_train import DIM, PDFS, learnable_utts

    feats, targets = learnable_utts(20, 0)
    build_frame_store(tmp_path / "train", feats, targets=targets, num_pdfs=PDFS)
    torch.manual_seed(0)
    SpliceDnn(DnnConfig(num_pdfs=PDFS, feat_dim=DIM, left_context=2, right_context=2,
                        hidden_layers=1, hidden_dim=16)).save(tmp_path / "gen")  # fmt: skip
    out = tmp_path / "sets"
    args = ["cluster-senones", "--num-sets", "3", str(tmp_path / "gen"), str(tmp_path / "train"),
            str(out)]  # fmt: skip
    assert main(args) == 0
    sets = sp.read_sets(out / "sets.txt")
    assert len(sets) == 3 and sorted(p for s in sets for p in s) == list(range(PDFS))
    readable = (out / "sets_readable.txt").read_text()
    assert readable.count("set ") == 3 and readable.count("pdf ") == PDFS
    before = (out / "sets.txt").stat().st_mtime_ns
    assert main(args) == 0  # finished: nothing to do
    assert (out / "sets.txt").stat().st_mtime_ns == before
    # names of a GMM's pdfs: its phones and HMM states
    names = sp.senone_names(mono, gmm_system / "data" / "lang" / "phones.txt")
    assert len(names) > 1 and all(names)
    assert any(n.startswith("SIL") for n in names) and all("." in n for n in names)
    assert main([*args[:1], "--force", "--gmm-dir", str(mono), *args[1:]]) == 1  # no --phones


def test_read_sets_names_file_and_line(tmp_path):
    path = tmp_path / "sets.txt"
    path.write_text("0 1 2\n2 3\n")
    with pytest.raises(sp.InputError, match=r"sets.txt:2"):
        sp.read_sets(path)
    path.write_text("0 1 x\n")
    with pytest.raises(sp.InputError, match=r"sets.txt:1"):
        sp.read_sets(path)


@pytest.fixture(scope="module")
def generalist(tmp_path_factory):
    """Toy train/dev stores (5 pdfs), a generalist trained on them, and two sets."""
    from asr_distill.cli import main
    from asr_distill.features.framestore_build import build_frame_store
    from tests.nnet.test_distill import TINY
    from tests.nnet.test_train import PDFS, learnable_utts

    root = tmp_path_factory.mktemp("specialists")
    for name, n, seed in (("train", 40, 0), ("dev", 10, 1)):
        feats, targets = learnable_utts(n, seed)
        build_frame_store(root / name, feats, targets=targets, num_pdfs=PDFS)
    assert main(["train-dnn", "--epochs", "2", *TINY, str(root / "train"), str(root / "dev"),
                 str(root / "gen")]) == 0  # fmt: skip
    (root / "sets.txt").write_text("0 0 1\n1 2 3 4\n")
    return root


def test_a_specialist_starts_as_the_generalist_on_its_senones_and_dustbin(generalist):
    """At the start of training the specialist's task output (its senones and the
    dustbin) is the generalist's distribution with the other senones pooled, exactly:
    the dustbin's probability is the generalist's mass outside the set."""
    from asr_distill.features.framestore import FrameStore
    from asr_distill.nnet.model import SpliceDnn

    gen = SpliceDnn.load(generalist / "gen" / "final")
    objective = sp.SpecialistObjective(generalist / "gen" / "final", [2, 4], sp.SpecialistConfig())
    train, dev = objective.views(FrameStore(generalist / "train"), FrameStore(generalist / "dev"))
    assert train.num_pdfs == gen.config.num_pdfs and dev.num_pdfs == 3
    labels = np.asarray(FrameStore(generalist / "train").targets)
    assert objective.fraction == pytest.approx(np.isin(labels, [2, 4]).mean())
    student = SpliceDnn(gen.config)
    objective.setup(student, torch.device("cpu"))
    x = FrameStore(generalist / "dev").gather(np.arange(50), left=2, right=2).inputs
    with torch.no_grad():
        pg = gen(x).softmax(-1)  # (50, 5)
        ps = objective.scored(student)(x).softmax(-1)  # (50, 3)
    expected = torch.stack([pg[:, 2], pg[:, 4], pg[:, [0, 1, 3]].sum(-1)], -1)
    torch.testing.assert_close(ps, expected, rtol=1e-5, atol=1e-6)
    batch = FrameStore(generalist / "train").gather(np.arange(64), left=2, right=2)
    loss, logits, y = objective.loss(student, batch, torch.device("cpu"), 0)
    assert logits.shape == (64, 3) and torch.isfinite(loss)
    assert torch.equal(y, torch.as_tensor(objective.mapping)[batch.targets])
    bad = SpliceDnn(dataclasses.replace(gen.config, hidden_dim=8))
    with pytest.raises(sp.InputError, match="shape"):
        objective.setup(bad, torch.device("cpu"))
    with pytest.raises(sp.InputError, match="distinct"):
        sp.SpecialistObjective(generalist / "gen" / "final", [2, 2], sp.SpecialistConfig())


def test_train_specialists_step(generalist):
    import yaml

    from asr_distill.cli import main
    from tests.nnet.test_distill import TINY

    out = generalist / "specs"
    args = ["train-specialists", "--epochs", "2", "--soft-weight", "0.5", *TINY,
            str(generalist / "gen" / "final"), str(generalist / "sets.txt"),
            str(generalist / "train"), str(generalist / "dev"), str(out)]  # fmt: skip
    assert main(args) == 0
    for m, senones in enumerate(([0, 1], [2, 3, 4])):
        info = yaml.safe_load((out / f"spec{m}" / "specialist.yaml").read_text())
        assert info["senones"] == senones
        assert info["dustbin_correction"] == pytest.approx(
            sp.dustbin_log_correction(info["train_fraction"])
        )
        rows = (out / f"spec{m}" / "train_curve.csv").read_text().splitlines()
        assert len(rows) == 3  # header + 2 epochs
        # the toy is learnable: the specialist tells its senones from the dustbin
        assert float(rows[-1].split(",")[rows[0].split(",").index("dev_frame_acc")]) > 60.0
    before = (out / "spec0" / "final.safetensors").stat().st_mtime_ns
    assert main(args) == 0  # finished: nothing to redo
    assert (out / "spec0" / "final.safetensors").stat().st_mtime_ns == before
    assert main([*args[:1], "--set", "7", *args[1:]]) == 1  # no such set


def test_specialists_that_agree_with_the_generalist_change_nothing():
    # each p_m the generalist's own distribution seen through set m: q = p_g is optimal
    gen = _log_probs(10, 8)
    sets = [[0, 1, 2], [2, 5], [6]]
    specs = []
    for s in sets:
        rest = [c for c in range(8) if c not in s]
        specs.append(torch.cat([gen[:, s], gen[:, rest].logsumexp(-1, keepdim=True)], -1))
    q = sp.combine(gen, specs, sets, torch.ones(10, 3, dtype=torch.bool), steps=300)
    assert torch.allclose(q.exp(), gen.exp(), atol=1e-5)


def test_specialist_accuracy_step(generalist, capsys):
    import yaml

    from asr_distill.cli import main
    from tests.nnet.test_distill import TINY

    out = generalist / "specs_acc"
    assert main(["train-specialists", "--epochs", "2", *TINY, str(generalist / "gen" / "final"),
                 str(generalist / "sets.txt"), str(generalist / "train"),
                 str(generalist / "dev"), str(out)]) == 0  # fmt: skip
    report = out / "accuracy.yaml"
    gen = str(generalist / "gen" / "final")
    assert main(["specialist-accuracy", "--out", str(report), "--steps", "50", gen, str(out),
                 str(generalist / "dev")]) == 0  # fmt: skip
    r = yaml.safe_load(report.read_text())["stores"][str(generalist / "dev")]
    # the two sets cover every senone: every frame is covered, by exactly one active
    # specialist when top-1 is right, by none when the generalist's top-1 is elsewhere
    assert r["covered_frames"] == r["frames"] > 0
    rows = r["by_active_cover"]
    assert set(rows) <= {0, 1} and sum(row["frames"] for row in rows.values()) == r["frames"]
    gen_correct = sum(row["generalist_correct"] for row in rows.values())
    assert gen_correct == round(r["generalist"] * r["frames"] / 100)
    out = capsys.readouterr().out
    assert "specialists" in out
    # with no active specialist covering it, the generalist's top-1 is wrong: no relative
    # change from 0 correct frames (was printed as thousands of per cent)
    assert rows[0]["generalist_correct"] == 0 and rows[0]["relative_change"] is None
    assert "(n/a)" in out
    assert main(["specialist-accuracy", str(generalist / "gen" / "final"), str(generalist),
                 str(generalist / "dev")]) == 1  # no spec<m> dirs there  # fmt: skip


def test_soft_targets_of_a_generalist_with_its_specialists(generalist):
    """make-soft-targets --specialists caches softmax(log q / T) of the combination, frame
    by frame as generalist_and_specialists computes it; a finished cache is refused for
    another top-n, and a student distils from it through the ordinary distill."""
    import json

    from asr_distill.cli import main
    from asr_distill.features.framestore import FrameStore
    from asr_distill.nnet.model import SpliceDnn
    from asr_distill.nnet.soft_targets import SoftTargetCache, make_soft_targets
    from tests.nnet.test_distill import TINY

    gen_path = generalist / "gen" / "final"
    specs_dir = generalist / "specs_cache"
    assert main(["train-specialists", "--epochs", "1", *TINY, str(gen_path),
                 str(generalist / "sets.txt"), str(generalist / "train"),
                 str(generalist / "dev"), str(specs_dir)]) == 0  # fmt: skip
    out, T = generalist / "soft_spec", 2.0
    kw = {"temperature": T, "top_k": 0, "specialists": specs_dir, "top_n": 2, "steps": 60,
          "batch_size": 100, "progress": False}  # fmt: skip
    summary = make_soft_targets(generalist / "train", [gen_path], out, **kw)
    assert summary.built
    cache = SoftTargetCache(out)
    meta = json.loads((out / "meta.json").read_text())
    assert [m["path"] for m in meta["specialists"]] == [str((specs_dir / f"spec{m}").resolve())
                                                        for m in (0, 1)]  # fmt: skip
    assert (meta["specialist_top_n"], meta["specialist_steps"]) == (2, 60)
    store = FrameStore(generalist / "train")
    frames = np.arange(0, store.features.shape[0], 7)
    x = store.gather(frames, left=2, right=2).inputs
    gen = SpliceDnn.load(gen_path).eval()
    log_pg, active, log_q = sp.generalist_and_specialists(
        gen, sp.load_specialists(specs_dir), x, top_n=2, steps=60)  # fmt: skip
    assert active.any()  # the specialists take part...
    assert (log_q.argmax(-1) != log_pg.argmax(-1)).any() or not torch.allclose(log_q, log_pg)
    probs, indices, _ = cache.gather(frames)
    assert indices is None  # dense
    # ...and the cache holds their combination at T (float16), not the generalist's
    torch.testing.assert_close(probs, (log_q / T).softmax(-1), atol=2e-3, rtol=0)
    # a finished cache for the same request is kept, another top-n is refused
    assert not make_soft_targets(generalist / "train", [gen_path], out, **kw).built
    with pytest.raises(sp.InputError, match="specialists"):
        make_soft_targets(generalist / "train", [gen_path], out, **{**kw, "top_n": 1})
    info = specs_dir / "spec0" / "specialist.yaml"  # the same weights, another correction
    text = info.read_text()
    info.write_text(text.replace("dustbin_correction: ", "dustbin_correction: 1"))
    with pytest.raises(sp.InputError, match="specialists"):
        make_soft_targets(generalist / "train", [gen_path], out, **kw)
    info.write_text(text)
    with pytest.raises(sp.InputError, match="specialists"):
        make_soft_targets(generalist / "train", [gen_path], out,
                          **{k: v for k, v in kw.items() if k != "specialists"})  # fmt: skip
    with pytest.raises(ValueError, match="one teacher"):
        make_soft_targets(generalist / "train", [gen_path, gen_path], generalist / "x", **kw)
    # distill from it: the student trains, and its priors are the generalist's
    student = generalist / "student_spec"
    assert main(["distill", "--epochs", "1", *TINY, "--temperature", "2", "--soft-targets",
                 str(out), str(generalist / "train"), str(generalist / "dev"),
                 str(student)]) == 0  # fmt: skip
    torch.testing.assert_close(SpliceDnn.load(student / "final").log_priors, gen.log_priors)
