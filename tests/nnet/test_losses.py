"""Distillation losses: golden values by hand, T^2 scaling and the paper's gradient
T (q_T - p_T), sparse (top-K) teachers, unlabelled frames, logit matching as the
high-temperature limit, FitNets hints and self-distillation heads."""

from __future__ import annotations

import math

import pytest
import torch

from asr_distill.nnet.losses import (
    AuxiliaryHeads,
    HintRegressor,
    distillation_loss,
    fitnets_hint_loss,
    hard_cross_entropy,
    logit_matching_loss,
    self_distillation_loss,
    soft_cross_entropy,
    soft_cross_entropy_topk,
)
from asr_distill.nnet.model import DnnConfig, SpliceDnn

Z = [[1.0, 2.0, 0.0], [0.0, 0.0, 3.0]]  # student logits: 2 frames x 3 pdfs
P_T = [[0.2, 0.5, 0.3], [0.1, 0.1, 0.8]]  # teacher distribution, already at T


def softmax_by_hand(row: list[float], temperature: float = 1.0) -> list[float]:
    e = [math.exp(x / temperature) for x in row]
    return [x / sum(e) for x in e]


def soft_ce_by_hand(z: list[list[float]], p: list[list[float]], temperature: float) -> float:
    per_frame = []
    for zr, pr in zip(z, p, strict=True):
        q = softmax_by_hand(zr, temperature)
        per_frame.append(-sum(pj * math.log(qj) for pj, qj in zip(pr, q, strict=True)))
    return sum(per_frame) / len(per_frame)


def t(x) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


# ---- golden values


def test_soft_hard_total_golden_values():
    temperature = 2.0
    z, logp = t(Z), t(P_T).log()
    labels = torch.tensor([1, 2])
    # soft: frame 0: q = softmax([0.5, 1, 0]); frame 1: q = softmax([0, 0, 1.5])
    e0 = [math.exp(0.5), math.exp(1.0), 1.0]
    e1 = [1.0, 1.0, math.exp(1.5)]
    soft0 = -(
        0.2 * math.log(e0[0] / sum(e0))
        + 0.5 * math.log(e0[1] / sum(e0))
        + 0.3 * math.log(e0[2] / sum(e0))
    )
    soft1 = -(
        0.1 * math.log(e1[0] / sum(e1))
        + 0.1 * math.log(e1[1] / sum(e1))
        + 0.8 * math.log(e1[2] / sum(e1))
    )
    soft = (soft0 + soft1) / 2
    # hard at T = 1: -log softmax(z)[y]
    hard0 = -(2.0 - math.log(math.e + math.e**2 + 1.0))
    hard1 = -(3.0 - math.log(2.0 + math.e**3))
    hard = (hard0 + hard1) / 2

    assert soft_cross_entropy(z, logp, temperature).item() == pytest.approx(soft, rel=1e-6)
    assert hard_cross_entropy(z, labels).item() == pytest.approx(hard, rel=1e-6)
    out = distillation_loss(
        z, labels, teacher_log_probs=logp, temperature=temperature, soft_weight=0.7, hard_weight=0.3
    )
    assert out.soft.item() == pytest.approx(soft, rel=1e-6)
    assert out.hard.item() == pytest.approx(hard, rel=1e-6)
    assert out.total.item() == pytest.approx(0.7 * 4.0 * soft + 0.3 * hard, rel=1e-6)
    assert out.total.dim() == out.soft.dim() == out.hard.dim() == 0
    # default weights: soft 1, hard 0.5
    default = distillation_loss(z, labels, teacher_log_probs=logp, temperature=temperature)
    assert default.total.item() == pytest.approx(4.0 * soft + 0.5 * hard, rel=1e-6)


# ---- T^2 scaling and the gradient T (q_T - p_T)


def test_total_is_t_squared_times_soft():
    z, logp = t(Z), t(P_T).log()
    for temperature in (1.0, 2.0, 5.0, 10.0):
        out = distillation_loss(
            z,
            torch.tensor([0, 1]),
            teacher_log_probs=logp,
            temperature=temperature,
            soft_weight=1.0,
            hard_weight=0.0,
        )
        expected = temperature**2 * soft_ce_by_hand(Z, P_T, temperature)
        assert out.total.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("temperature", [1.0, 2.0, 5.0, 10.0])
def test_gradient_is_t_times_q_minus_p_single_frame(temperature):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(1, 7, generator=g, dtype=torch.float64).mul(3).requires_grad_()
    v = torch.randn(1, 7, generator=g, dtype=torch.float64).mul(3)
    logp = torch.log_softmax(v / temperature, dim=-1)  # teacher at T
    out = distillation_loss(
        z,
        torch.tensor([2]),
        teacher_log_probs=logp,
        temperature=temperature,
        soft_weight=1.0,
        hard_weight=0.0,
    )
    out.total.backward()
    q = torch.softmax(z.detach() / temperature, dim=-1)
    expected = temperature * (q - logp.exp())  # T^2 * (q - p) / T
    torch.testing.assert_close(z.grad, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("temperature", [1.0, 2.0, 5.0, 10.0])
def test_gradient_is_t_times_q_minus_p_over_b_for_b_frames(temperature):
    g = torch.Generator().manual_seed(1)
    b = 4
    z = torch.randn(b, 6, generator=g, dtype=torch.float64).mul(2).requires_grad_()
    v = torch.randn(b, 6, generator=g, dtype=torch.float64).mul(2)
    logp = torch.log_softmax(v / temperature, dim=-1)
    out = distillation_loss(
        z, None, teacher_log_probs=logp, temperature=temperature, soft_weight=1.0, hard_weight=0.0
    )
    out.total.backward()
    q = torch.softmax(z.detach() / temperature, dim=-1)
    torch.testing.assert_close(z.grad, temperature * (q - logp.exp()) / b, rtol=1e-9, atol=1e-12)


def test_unscaled_soft_gradient_falls_as_one_over_t_squared():
    g = torch.Generator().manual_seed(2)
    p_dim = 5
    z0 = torch.randn(1, p_dim, generator=g, dtype=torch.float64)
    v = torch.randn(1, p_dim, generator=g, dtype=torch.float64)
    z0, v = z0 - z0.mean(), v - v.mean()

    def grad_norms(temperature):
        z = z0.clone().requires_grad_()
        out = distillation_loss(
            z,
            None,
            teacher_log_probs=torch.log_softmax(v / temperature, -1),
            temperature=temperature,
            hard_weight=0.0,
        )
        (g_soft,) = torch.autograd.grad(out.soft, z, retain_graph=True)
        (g_total,) = torch.autograd.grad(out.total, z)
        return g_soft.norm().item(), g_total.norm().item()

    soft_50, total_50 = grad_norms(50.0)
    soft_100, total_100 = grad_norms(100.0)
    assert soft_50 / soft_100 == pytest.approx(4.0, rel=0.05)  # ~ 1 / T^2
    assert total_50 / total_100 == pytest.approx(1.0, rel=0.05)  # O(1)
    assert total_100 == pytest.approx(((z0 - v) / p_dim).norm().item(), rel=0.05)


# ---- sparse (top-K) teachers


def test_topk_with_k_equal_p_is_dense():
    g = torch.Generator().manual_seed(3)
    z = torch.randn(5, 8, generator=g)
    logp = torch.log_softmax(torch.randn(5, 8, generator=g) * 2, dim=-1)
    probs, idx = logp.exp().sort(dim=-1, descending=True)
    tail = torch.full((5,), 1e-7)  # rounding left over: ignored when K == P
    for temperature in (1.0, 2.0, 10.0):
        dense = soft_cross_entropy(z, logp, temperature)
        sparse = soft_cross_entropy_topk(z, probs, idx, tail, temperature)
        assert abs(sparse.item() - dense.item()) < 1e-6


def test_topk_with_concentrated_teacher_and_no_tail_is_dense():
    g = torch.Generator().manual_seed(4)
    z = torch.randn(3, 6, generator=g)
    p = torch.zeros(3, 6)
    idx = torch.tensor([[0, 4], [5, 1], [2, 3]])
    probs = torch.tensor([[0.7, 0.3], [0.6, 0.4], [0.9, 0.1]])
    p.scatter_(1, idx, probs)
    dense = soft_cross_entropy(z, p.log(), 2.0)  # log 0 = -inf: p = 0 there
    sparse = soft_cross_entropy_topk(z, probs, idx, torch.zeros(3), 2.0)
    assert torch.isfinite(dense)
    assert abs(sparse.item() - dense.item()) < 1e-6


def test_topk_tail_by_hand():
    z = [0.5, -1.0, 2.0, 0.0]
    q = softmax_by_hand(z)
    # top-2: pdf 2 with 0.5, pdf 0 with 0.3; tail 0.2 spread over pdfs 1 and 3
    expected = -(0.5 * math.log(q[2]) + 0.3 * math.log(q[0])) - 0.1 * (
        math.log(q[1]) + math.log(q[3])
    )
    got = soft_cross_entropy_topk(t([z]), t([[0.5, 0.3]]), torch.tensor([[2, 0]]), t([0.2]), 1.0)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # the same as the dense teacher with the tail spread out
    dense = soft_cross_entropy(t([z]), t([[0.3, 0.1, 0.5, 0.1]]).log(), 1.0)
    assert got.item() == pytest.approx(dense.item(), rel=1e-6)
    # and through distillation_loss, scaled by T^2
    out = distillation_loss(
        t([z]), None, topk=(t([[0.5, 0.3]]), torch.tensor([[2, 0]]), t([0.2])), temperature=2.0
    )
    ref = soft_cross_entropy_topk(t([z]), t([[0.5, 0.3]]), torch.tensor([[2, 0]]), t([0.2]), 2.0)
    assert out.total.item() == pytest.approx(4.0 * ref.item(), rel=1e-9)


def test_topk_rejects_bad_indices():
    z = torch.zeros(1, 4)
    with pytest.raises(ValueError, match="distinct"):
        soft_cross_entropy_topk(
            z, torch.tensor([[0.5, 0.5]]), torch.tensor([[1, 1]]), torch.zeros(1), 1.0
        )
    with pytest.raises(ValueError, match="lie in"):
        soft_cross_entropy_topk(
            z, torch.tensor([[0.5, 0.5]]), torch.tensor([[1, 4]]), torch.zeros(1), 1.0
        )


# ---- labels


def test_unlabelled_frames_are_ignored_by_the_hard_term():
    z = t(Z)
    only_first = hard_cross_entropy(z, torch.tensor([1, -1]))
    assert only_first.item() == pytest.approx(-(2.0 - math.log(math.e + math.e**2 + 1.0)), rel=1e-6)
    z_grad = z.clone().requires_grad_()
    hard_cross_entropy(z_grad, torch.tensor([1, -1])).backward()
    assert torch.all(z_grad.grad[1] == 0) and torch.any(z_grad.grad[0] != 0)


def test_all_unlabelled_gives_zero_hard_term():
    z, logp = t(Z), t(P_T).log()
    for labels in (torch.tensor([-1, -1]), None):
        out = distillation_loss(
            z, labels, teacher_log_probs=logp, temperature=5.0, soft_weight=0.8, hard_weight=0.5
        )
        assert out.hard.item() == 0.0
        assert out.total.item() == pytest.approx(
            0.8 * 25.0 * soft_ce_by_hand(Z, P_T, 5.0), rel=1e-6
        )


def test_bad_arguments_raise_value_error():
    z, logp = t(Z), t(P_T).log()
    topk = (t([[1.0], [1.0]]), torch.tensor([[0], [2]]), t([0.0, 0.0]))
    with pytest.raises(ValueError, match="exactly one"):
        distillation_loss(z, None, temperature=1.0)
    with pytest.raises(ValueError, match="exactly one"):
        distillation_loss(z, None, teacher_log_probs=logp, topk=topk, temperature=1.0)
    with pytest.raises(ValueError, match="labels"):
        hard_cross_entropy(z, torch.tensor([3, 0]))
    with pytest.raises(ValueError, match="labels"):
        hard_cross_entropy(z, torch.tensor([-2, 0]))
    with pytest.raises(ValueError, match="temperature"):
        soft_cross_entropy(z, logp, 0.0)
    with pytest.raises(ValueError, match="shape"):
        soft_cross_entropy(z, logp[:1], 1.0)
    with pytest.raises(ValueError, match="shape"):
        soft_cross_entropy(z, None, 1.0, teacher_probs=logp[:1].exp())
    with pytest.raises(ValueError, match="exactly one"):
        soft_cross_entropy(z, logp, 1.0, teacher_probs=logp.exp())
    with pytest.raises(ValueError, match="exactly one"):
        distillation_loss(z, None, teacher_probs=logp.exp(), topk=topk, temperature=1.0)


def test_teacher_probs_give_the_loss_of_teacher_log_probs():
    """The ensemble's probabilities (combine_probs, no log-sum-exp over members) give
    the same distribution as combine_log_probs, and the loss from probabilities is the
    loss from their logs."""
    from asr_distill.nnet.ensemble import combine_log_probs, combine_probs

    g = torch.Generator().manual_seed(0)
    members = 3.0 * torch.randn(4, 6, 9, generator=g)
    w = torch.tensor([0.1, 0.2, 0.3, 0.4])
    for combine in ("arithmetic", "geometric"):
        for weights in (None, w):
            lp = combine_log_probs(members, 2.0, combine=combine, weights=weights)
            p = combine_probs(members, 2.0, combine=combine, weights=weights)
            torch.testing.assert_close(p, lp.exp(), rtol=1e-6, atol=1e-7)
    z = torch.randn(6, 9, generator=g)
    labels = torch.tensor([0, 3, -1, 8, 2, 2])
    a = distillation_loss(z, labels, teacher_log_probs=lp, temperature=2.0)
    b = distillation_loss(z, labels, teacher_probs=lp.exp(), temperature=2.0)
    torch.testing.assert_close(a.total, b.total)


# ---- logit matching


def test_logit_matching_by_hand():
    # frame 0: centred z = [-1, 0, 1], centred v = [-1, -1, 2]: 0.5 * (0 + 1 + 1) = 1
    # frame 1: a constant shift of the teacher matches exactly: 0
    z = t([[1.0, 2.0, 3.0], [0.0, 1.0, 2.0]])
    v = t([[0.0, 0.0, 3.0], [5.0, 6.0, 7.0]])
    assert logit_matching_loss(z, v).item() == pytest.approx(0.5, rel=1e-9)


def test_logit_matching_is_the_high_temperature_limit():
    g = torch.Generator().manual_seed(5)
    p_dim = 6
    z = torch.randn(1, p_dim, generator=g, dtype=torch.float64)
    v = torch.randn(1, p_dim, generator=g, dtype=torch.float64)
    z, v = z - z.mean(), v - v.mean()  # zero-mean logits (paper eq. 4)

    def distill_grad(temperature):
        zz = z.clone().requires_grad_()
        out = distillation_loss(
            zz,
            None,
            teacher_log_probs=torch.log_softmax(v / temperature, -1),
            temperature=temperature,
            hard_weight=0.0,
        )
        out.total.backward()
        return zz.grad

    zz = z.clone().requires_grad_()
    logit_matching_loss(zz, v).backward()
    limit = zz.grad / p_dim  # (1/P) (z - v)
    torch.testing.assert_close(limit, (z - v) / p_dim)
    torch.testing.assert_close(distill_grad(100.0), limit, rtol=0, atol=2e-3)
    # at T = 1 it is far from the limit, so the check above means something
    assert (distill_grad(1.0) - limit).abs().max() > 2e-2


# ---- FitNets


def test_fitnets_zero_when_regressor_maps_exactly():
    g = torch.Generator().manual_seed(6)
    reg = HintRegressor(3, 5)
    a, c = torch.randn(5, 3, generator=g), torch.randn(5, generator=g)
    with torch.no_grad():
        reg.proj.weight.copy_(a)
        reg.proj.bias.copy_(c)
    h_s = torch.randn(4, 3, generator=g)
    h_t = h_s @ a.T + c
    assert fitnets_hint_loss(h_s, h_t, reg).item() == pytest.approx(0.0, abs=1e-10)
    # by hand with a zero regressor: 0.5 * mean ||h_t||^2
    with torch.no_grad():
        reg.proj.weight.zero_()
        reg.proj.bias.zero_()
    expected = 0.5 * sum(float((row**2).sum()) for row in h_t) / 4
    assert fitnets_hint_loss(h_s, h_t, reg).item() == pytest.approx(expected, rel=1e-5)


def test_fitnets_gradients_reach_regressor_and_student_not_teacher():
    g = torch.Generator().manual_seed(7)
    reg = HintRegressor(3, 5)
    h_s = torch.randn(4, 3, generator=g, requires_grad=True)
    h_t = torch.randn(4, 5, generator=g, requires_grad=True)
    fitnets_hint_loss(h_s, h_t, reg).backward()
    assert reg.proj.weight.grad is not None and reg.proj.weight.grad.abs().sum() > 0
    assert reg.proj.bias.grad is not None and reg.proj.bias.grad.abs().sum() > 0
    assert h_s.grad is not None and h_s.grad.abs().sum() > 0
    assert h_t.grad is None
    with pytest.raises(ValueError, match="regressor maps"):
        fitnets_hint_loss(h_s, h_t[:, :4], reg)


# ---- self-distillation


def test_auxiliary_heads_shapes():
    config = DnnConfig(
        num_pdfs=7, feat_dim=2, left_context=1, right_context=1, hidden_layers=3, hidden_dim=4
    )
    model = SpliceDnn(config)
    logits, hidden = model(torch.randn(5, config.input_dim), return_hidden=True)
    heads = AuxiliaryHeads(config.hidden_dim, config.num_pdfs, layers=[0, 1])
    aux = heads(hidden)
    assert [tuple(a.shape) for a in aux] == [(5, 7), (5, 7)]
    loss = self_distillation_loss(
        aux,
        logits,
        torch.tensor([0, 1, -1, 6, 2]),
        temperature=3.0,
        soft_weight=1.0,
        hard_weight=0.5,
    )
    loss.backward()
    assert all(h.weight.grad is not None for h in heads.heads)
    with pytest.raises(ValueError, match="out of range"):
        AuxiliaryHeads(4, 7, layers=[3])(hidden)


def test_self_distillation_teacher_is_detached():
    g = torch.Generator().manual_seed(8)
    aux = [torch.randn(3, 4, generator=g, requires_grad=True) for _ in range(2)]
    final = torch.randn(3, 4, generator=g, requires_grad=True)
    loss = self_distillation_loss(
        aux, final, torch.tensor([0, 3, 1]), temperature=2.0, soft_weight=1.0, hard_weight=0.5
    )
    loss.backward()
    assert final.grad is None or torch.all(final.grad == 0)
    assert all(a.grad.abs().sum() > 0 for a in aux)


def test_self_distillation_one_head_by_hand():
    temperature, sw, hw = 2.0, 0.6, 0.4
    head = [[0.0, 1.0, -1.0], [2.0, 0.0, 0.0]]
    final = [[1.0, 3.0, 0.0], [0.0, -1.0, 1.0]]
    labels = [1, -1]
    p = [softmax_by_hand(row, temperature) for row in final]
    soft = soft_ce_by_hand(head, p, temperature)
    hard = -math.log(softmax_by_hand(head[0])[1])  # the only labelled frame
    expected = sw * temperature**2 * soft + hw * hard
    got = self_distillation_loss(
        [t(head)],
        t(final),
        torch.tensor(labels),
        temperature=temperature,
        soft_weight=sw,
        hard_weight=hw,
    )
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # two identical heads average to the same value
    got2 = self_distillation_loss(
        [t(head), t(head)],
        t(final),
        torch.tensor(labels),
        temperature=temperature,
        soft_weight=sw,
        hard_weight=hw,
    )
    assert got2.item() == pytest.approx(expected, rel=1e-6)
