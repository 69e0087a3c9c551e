"""Distillation losses over tensors: soft / hard cross-entropy and their weighted sum
(Hinton, Vinyals & Dean 2015), logit matching (Bucila et al. 2006; Ba & Caruana 2014),
FitNets hints (Romero et al. 2015) and self-distillation heads (Zhang et al. 2019).

Conventions: ``student_logits`` (B, P) are one row per frame over P pdfs (senones);
``labels`` (B,) int64 hold a pdf-id per frame, or -1 for an unlabelled frame, which the
hard terms ignore; every loss is the mean over the frames it applies to and returns a
0-dim tensor. Teacher inputs are targets: they are never differentiated.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

UNLABELLED = -1


def _upcast(x: torch.Tensor) -> torch.Tensor:
    """float16 / bfloat16 (autocast) to float32 for the softmax; other dtypes as they are."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


# ---- argument checks (ValueError, never assert: these are user inputs)


def _check_temperature(temperature: float) -> None:
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a positive finite number, got {temperature}")


def _check_logits(student_logits: torch.Tensor) -> None:
    if student_logits.dim() != 2:
        raise ValueError(f"student_logits must be (B, P), got shape {tuple(student_logits.shape)}")


def _check_same_shape(name: str, t: torch.Tensor, ref: torch.Tensor) -> None:
    if t.shape != ref.shape:
        raise ValueError(f"{name} has shape {tuple(t.shape)}, student_logits {tuple(ref.shape)}")


def _check_labels(labels: torch.Tensor, num_frames: int, num_pdfs: int) -> None:
    if labels.shape != (num_frames,):
        raise ValueError(f"labels must be ({num_frames},), got shape {tuple(labels.shape)}")
    if labels.dtype != torch.int64:
        raise ValueError(f"labels must be int64, got {labels.dtype}")
    bad = (labels < UNLABELLED) | (labels >= num_pdfs)  # (B,)
    if bool(bad.any()):
        raise ValueError(
            f"labels must be pdf-ids in [0, {num_pdfs}) or {UNLABELLED} (unlabelled), "
            f"got {labels[bad][:5].tolist()}"
        )


# ---- Hinton et al. (2015): soft and hard targets


def soft_cross_entropy(
    student_logits: torch.Tensor,
    teacher_log_probs: torch.Tensor | None,
    temperature: float,
    *,
    teacher_probs: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy with the teacher's soft targets at temperature T
    (Hinton, Vinyals & Dean 2015, section 2).

    ``L_soft = mean_b [ -sum_j p_bj log q_bj ]``, ``q = softmax(z / T)`` of the student
    logits z, ``p = exp(teacher_log_probs)``: the teacher distribution *already at T*
    (make it with :func:`asr_distill.nnet.ensemble.combine_log_probs` at the same T).
    Not scaled by T^2; :func:`distillation_loss` does that. Its gradient w.r.t. z_bj is
    ``(q_bj - p_bj) / (T B)``.

    student_logits: (B, P); teacher_log_probs: (B, P) (``-inf`` allowed for p = 0), or
    None and ``teacher_probs`` (B, P), p itself (no log and exp again).
    Returns a 0-dim tensor (0 for B = 0).
    """
    _check_logits(student_logits)
    if (teacher_log_probs is None) == (teacher_probs is None):
        raise ValueError("give exactly one of teacher_log_probs and teacher_probs")
    if teacher_probs is None:
        _check_same_shape("teacher_log_probs", teacher_log_probs, student_logits)
    else:
        _check_same_shape("teacher_probs", teacher_probs, student_logits)
    _check_temperature(temperature)
    log_q = torch.log_softmax(_upcast(student_logits) / temperature, dim=-1)  # (B, P)
    p = (
        _upcast(teacher_probs.detach()) if teacher_probs is not None
        else _upcast(teacher_log_probs.detach()).exp()
    )  # (B, P)  # fmt: skip
    per_frame = -(p * log_q).sum(-1)  # (B,)
    return per_frame.sum() / max(per_frame.numel(), 1)


def soft_cross_entropy_topk(
    student_logits: torch.Tensor,
    topk_probs: torch.Tensor,
    topk_indices: torch.Tensor,
    tail_mass: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """:func:`soft_cross_entropy` for a teacher stored sparsely: its K most probable
    pdfs at temperature T and the probability mass left over, spread uniformly over the
    other P - K pdfs (Hinton et al. 2015, section 2, soft targets at T).

    ``L = mean_b [ -sum_k p_bk log q_{b,i_bk} - tail_b / (P - K) * sum_{j not in top-K_b}
    log q_bj ]`` with ``q = softmax(z / T)``; for K = P the tail term is 0 and L equals
    the dense soft cross-entropy. Not scaled by T^2.

    student_logits: (B, P); topk_probs: (B, K); topk_indices: (B, K) int64, distinct
    per frame; tail_mass: (B,) = 1 - sum_k p_bk. Returns a 0-dim tensor.
    """
    _check_logits(student_logits)
    _check_temperature(temperature)
    b, p_dim = student_logits.shape
    if topk_probs.dim() != 2 or topk_probs.shape[0] != b or topk_probs.shape[1] > p_dim:
        raise ValueError(
            f"topk_probs must be (B={b}, K<={p_dim}), got shape {tuple(topk_probs.shape)}"
        )
    if topk_indices.shape != topk_probs.shape or topk_indices.dtype != torch.int64:
        raise ValueError(
            f"topk_indices must be int64 of shape {tuple(topk_probs.shape)}, got "
            f"{topk_indices.dtype} {tuple(topk_indices.shape)}"
        )
    if tail_mass.shape != (b,):
        raise ValueError(f"tail_mass must be ({b},), got shape {tuple(tail_mass.shape)}")
    k = topk_probs.shape[1]
    if k and bool(((topk_indices < 0) | (topk_indices >= p_dim)).any()):
        raise ValueError(f"topk_indices must lie in [0, {p_dim})")
    # distinct: no two equal neighbours once sorted (B x K, not a (B, P) mask)
    if k > 1 and bool((topk_indices.sort(-1).values.diff(dim=-1) == 0).any()):
        raise ValueError("topk_indices must be distinct within each frame")

    log_q = torch.log_softmax(_upcast(student_logits) / temperature, dim=-1)  # (B, P)
    log_q_top = log_q.gather(1, topk_indices)  # (B, K)
    per_frame = -(_upcast(topk_probs.detach()) * log_q_top).sum(-1)  # (B,)
    if k < p_dim:
        rest = log_q.sum(-1) - log_q_top.sum(-1)  # (B,): the pdfs outside the top-k
        per_frame = per_frame - _upcast(tail_mass.detach()) / (p_dim - k) * rest  # (B,)
    return per_frame.sum() / max(b, 1)


def hard_cross_entropy(student_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy with the hard (aligned pdf-id) labels at T = 1
    (Hinton et al. 2015, section 2, the second objective).

    ``L_hard = (1 / |V|) sum_{b in V} -log softmax(z_b)[y_b]`` over the labelled frames
    V = {b : y_b != -1}; 0 when no frame is labelled.

    student_logits: (B, P); labels: (B,) int64. Returns a 0-dim tensor.
    """
    _check_logits(student_logits)
    _check_labels(labels, *student_logits.shape)
    per_frame = F.cross_entropy(
        _upcast(student_logits), labels, ignore_index=UNLABELLED, reduction="none"
    )  # (B,), 0 on unlabelled frames
    n_labelled = int((labels != UNLABELLED).sum())
    return per_frame.sum() / max(n_labelled, 1)


@dataclasses.dataclass
class DistillLoss:
    """The parts of :func:`distillation_loss`: ``total`` (what to backpropagate),
    ``soft`` (the unscaled soft cross-entropy at T) and ``hard`` (CE at T = 1)."""

    total: torch.Tensor
    soft: torch.Tensor
    hard: torch.Tensor


def distillation_loss(
    student_logits: torch.Tensor,
    labels: torch.Tensor | None,
    *,
    teacher_log_probs: torch.Tensor | None = None,
    topk: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    teacher_probs: torch.Tensor | None = None,
    temperature: float,
    soft_weight: float = 1.0,
    hard_weight: float = 0.5,
) -> DistillLoss:
    """Knowledge distillation objective of Hinton, Vinyals & Dean (2015), section 2:

    ``total = soft_weight * T^2 * L_soft(T) + hard_weight * L_hard``

    where L_soft is the cross-entropy with the teacher's soft targets at temperature T
    (:func:`soft_cross_entropy`, or :func:`soft_cross_entropy_topk` when the teacher is
    stored as top-K) and L_hard the cross-entropy with the labels at T = 1
    (:func:`hard_cross_entropy`). The soft term's gradients scale as 1/T^2, so it is
    multiplied by T^2 to keep the two terms' relative contributions roughly unchanged
    when T changes; for one frame the gradient of the scaled soft term is T (q_T - p_T).
    The paper's speech experiments tried T in {1, 2, 5, 10} and gave the hard term a
    lower weight (default hard_weight [0.5], soft_weight [1.0]).

    Give exactly one teacher: ``teacher_log_probs`` (B, P) at T, ``teacher_probs`` (B,
    P) at T, or ``topk`` = (probs (B, K), indices (B, K) int64, tail (B,)) at T.
    ``labels`` (B,) int64 with -1 for unlabelled frames; with no labelled frame (or
    ``labels=None``: an unlabelled transfer set) the hard term is 0 and ``total`` is the
    scaled soft part.
    """
    if sum(t is not None for t in (teacher_log_probs, topk, teacher_probs)) != 1:
        raise ValueError("give exactly one of teacher_log_probs, teacher_probs and topk")
    _check_temperature(temperature)
    if topk is None:
        soft = soft_cross_entropy(student_logits, teacher_log_probs, temperature,
                                  teacher_probs=teacher_probs)  # fmt: skip
    else:
        if len(topk) != 3:
            raise ValueError("topk must be a (probs, indices, tail_mass) triple")
        soft = soft_cross_entropy_topk(student_logits, *topk, temperature)
    hard = soft.new_zeros(()) if labels is None else hard_cross_entropy(student_logits, labels)
    total = soft_weight * temperature**2 * soft + hard_weight * hard
    return DistillLoss(total=total, soft=soft, hard=hard)


# ---- logit matching: the high-temperature limit


def logit_matching_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Squared difference of mean-centred logits (Bucila, Caruana & Niculescu-Mizil
    2006; Ba & Caruana 2014), the high-temperature limit of distillation (Hinton et al.
    2015, section 2.1).

    ``L = 0.5 * mean_b sum_j (z_bj - v_bj)^2`` with z and v the student and teacher
    logits centred per frame (``z - mean_j z``): softmax is shift-invariant, and the paper
    assumes zero-mean logits when showing that, for large T, the gradient of the
    T^2-scaled soft cross-entropy approaches (1/P) (z - v), i.e. (1/P) times this loss's
    gradient (eqs. 3-4).

    student_logits, teacher_logits: (B, P). Returns a 0-dim tensor.
    """
    _check_logits(student_logits)
    _check_same_shape("teacher_logits", teacher_logits, student_logits)
    z = _upcast(student_logits)
    z = z - z.mean(-1, keepdim=True)  # (B, P)
    v = _upcast(teacher_logits.detach())
    v = v - v.mean(-1, keepdim=True)  # (B, P)
    per_frame = 0.5 * (z - v).pow(2).sum(-1)  # (B,)
    return per_frame.sum() / max(per_frame.numel(), 1)


# ---- FitNets (Romero et al. 2015)


class HintRegressor(nn.Module):
    """The learned regressor of FitNets (Romero et al. 2015, "FitNets: Hints for Thin
    Deep Nets", section 2.2): a linear map ``r(h_s) = W h_s + b`` from the student's
    guided layer (student_dim) to the teacher's hint layer (teacher_dim).

    forward(student_hidden (B, student_dim)) -> (B, teacher_dim).
    """

    def __init__(self, student_dim: int, teacher_dim: int):
        super().__init__()
        self.proj = nn.Linear(student_dim, teacher_dim)

    def forward(self, student_hidden: torch.Tensor) -> torch.Tensor:
        return self.proj(student_hidden)  # (B, Ht)


def fitnets_hint_loss(
    student_hidden: torch.Tensor, teacher_hidden: torch.Tensor, regressor: HintRegressor
) -> torch.Tensor:
    """FitNets hint loss (Romero et al. 2015, eq. 3):

    ``L_hint = 0.5 * mean_b || W h_s,b + b - h_t,b ||^2``

    with ``r = regressor`` (:class:`HintRegressor`), h_s the student's guided-layer and
    h_t the teacher's hint-layer activations of the same frame. The teacher is detached;
    gradients reach the regressor and the student.

    student_hidden: (B, Hs); teacher_hidden: (B, Ht). Returns a 0-dim tensor.
    """
    if student_hidden.dim() != 2 or teacher_hidden.dim() != 2:
        raise ValueError(
            f"hidden activations must be (B, H), got {tuple(student_hidden.shape)} and "
            f"{tuple(teacher_hidden.shape)}"
        )
    if student_hidden.shape[0] != teacher_hidden.shape[0]:
        raise ValueError(
            f"{student_hidden.shape[0]} student frames but {teacher_hidden.shape[0]} teacher"
        )
    mapped = _upcast(regressor(student_hidden))  # (B, Ht)
    if mapped.shape != teacher_hidden.shape:
        raise ValueError(
            f"regressor maps to {tuple(mapped.shape)}, teacher_hidden is "
            f"{tuple(teacher_hidden.shape)}"
        )
    per_frame = 0.5 * (mapped - _upcast(teacher_hidden.detach())).pow(2).sum(-1)  # (B,)
    return per_frame.sum() / max(per_frame.numel(), 1)


# ---- self-distillation (Zhang et al. 2019)


class AuxiliaryHeads(nn.Module):
    """Shallow classifiers of self-distillation (Zhang et al. 2019, "Be Your Own
    Teacher", section 3): one linear head (hidden_dim -> num_pdfs) on each chosen hidden
    layer of the network, trained to mimic the network's own final output.

    ``layers`` are indices into the model's list of hidden activations
    (``SpliceDnn.forward(x, return_hidden=True)[1]``).
    forward(hidden: list of (B, hidden_dim)) -> list of logits (B, num_pdfs), one per
    chosen layer, in the order of ``layers``.
    """

    def __init__(self, hidden_dim: int, num_pdfs: int, layers: Sequence[int]):
        super().__init__()
        if not layers:
            raise ValueError("AuxiliaryHeads needs at least one layer")
        self.layers = [int(i) for i in layers]
        self.heads = nn.ModuleList(nn.Linear(hidden_dim, num_pdfs) for _ in self.layers)

    def forward(self, hidden: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        n = len(hidden)
        for i in self.layers:
            if not -n <= i < n:
                raise ValueError(f"layer {i} out of range for {n} hidden activations")
        return [head(hidden[i]) for i, head in zip(self.layers, self.heads, strict=True)]


def self_distillation_loss(
    aux_logits: Sequence[torch.Tensor],
    final_logits: torch.Tensor,
    labels: torch.Tensor | None,
    *,
    temperature: float,
    soft_weight: float,
    hard_weight: float,
) -> torch.Tensor:
    """Self-distillation loss of the auxiliary heads (Zhang et al. 2019, "Be Your Own
    Teacher", eq. 1 without the feature term), with Hinton et al.'s T^2 scaling:

    ``L = (1 / H) sum_h [ soft_weight * T^2 * CE(softmax(v / T), softmax(z_h / T))
                         + hard_weight * CE_hard(z_h, y) ]``

    over the H heads' logits z_h, with the final output's logits v as the (detached)
    teacher. The paper writes the soft term as a KL divergence; with a detached teacher
    it differs from this cross-entropy by the teacher's entropy, a constant, so the
    gradients are the same. Training the final classifier itself on the labels is the
    trainer's job, not this loss's.

    aux_logits: list of (B, P); final_logits: (B, P); labels: (B,) int64, -1 unlabelled.
    Returns a 0-dim tensor.
    """
    if not aux_logits:
        raise ValueError("self_distillation_loss needs at least one auxiliary head")
    _check_logits(final_logits)
    _check_temperature(temperature)
    teacher = torch.log_softmax(_upcast(final_logits.detach()) / temperature, dim=-1)  # (B, P)
    per_head = [
        distillation_loss(
            z,
            labels,
            teacher_log_probs=teacher,
            temperature=temperature,
            soft_weight=soft_weight,
            hard_weight=hard_weight,
        ).total
        for z in aux_logits
    ]
    return torch.stack(per_head).mean()
