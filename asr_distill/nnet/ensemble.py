"""A teacher ensemble: frozen DNNs whose distributions at temperature T are combined
by the arithmetic mean of probabilities (default; Hinton et al. 2015 average the
members' predictions) or the geometric mean (mean log-probabilities, renormalised),
with uniform weights or weights from the members' dev frame accuracy."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from asr_distill.errors import InputError
from asr_distill.io import file_sha256
from asr_distill.nnet.model import SpliceDnn

COMBINES = ("arithmetic", "geometric")


def _member_weights(member_logits: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """(M,) float32 weights on the logits' device: ``weights``, or uniform when None."""
    m = member_logits.shape[0]
    w = torch.full((m,), 1.0 / m) if weights is None else torch.as_tensor(
        weights, dtype=torch.float32)  # fmt: skip
    return w.to(member_logits.device)


def combine_log_probs(
    member_logits: torch.Tensor,
    temperature: float = 1.0,
    *,
    combine: str = "arithmetic",
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """log of the ensemble distribution at ``temperature``.

    member_logits: (M, B, P); weights: (M,) summing to 1 (uniform if None).
    arithmetic: ``log sum_m w_m softmax(z_m / T)``;
    geometric: ``log_softmax(sum_m w_m log_softmax(z_m / T))`` (renormalised).
    Returns (B, P).
    """
    if combine not in COMBINES:
        raise ValueError(f"combine must be one of {COMBINES}, not {combine!r}")
    w = _member_weights(member_logits, weights)
    logp = torch.log_softmax(member_logits.float() / temperature, dim=-1)  # (M, B, P)
    if combine == "arithmetic":
        return torch.logsumexp(logp + torch.log(w)[:, None, None], dim=0)  # (B, P)
    return torch.log_softmax((w[:, None, None] * logp).sum(0), dim=-1)  # (B, P)


def combine_probs(
    member_logits: torch.Tensor,
    temperature: float = 1.0,
    *,
    combine: str = "arithmetic",
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """The ensemble distribution at ``temperature`` itself, (B, P): what a distillation
    loss or a soft-target cache needs. The same distribution as
    ``combine_log_probs(...).exp()``; the arithmetic mean is a weighted sum of the
    members' softmaxes, without the log-sum-exp over members that the log form takes
    (the costliest operation of an online distillation step on a CPU). Probabilities
    below float32's range are 0 here, where the log form keeps them finite."""
    if combine != "arithmetic":
        return combine_log_probs(member_logits, temperature, combine=combine,
                                 weights=weights).exp()  # fmt: skip
    w = _member_weights(member_logits, weights)
    p = torch.softmax(member_logits.float() / temperature, dim=-1)  # (M, B, P)
    return torch.einsum("m,mbp->bp", w, p)  # (B, P)


def accuracy_weights(dev_frame_acc: Sequence[float]) -> torch.Tensor:
    """Member weights proportional to dev frame accuracy (normalised to sum to 1)."""
    a = torch.tensor(list(dev_frame_acc), dtype=torch.float32)
    if (a <= 0).any():
        raise ValueError(f"frame accuracies must be positive, got {list(dev_frame_acc)}")
    return a / a.sum()


def model_digest(path_stem: str | Path) -> str:
    """sha256 of a saved model's weights file (identifies a teacher in caches)."""
    p = Path(path_stem)
    p = p if p.suffix == ".safetensors" else p.with_suffix(".safetensors")
    if not p.is_file():
        raise InputError("missing (not a saved DNN)", p)
    return file_sha256(p)


def read_member_accuracies(paths: Sequence[str]) -> list[float]:
    """Each teacher's best dev frame accuracy, from its exp dir's ``train_curve.csv``
    (needed for ``--weighting accuracy``)."""
    from asr_distill.nnet.curve import best_dev_frame_acc

    return [best_dev_frame_acc(Path(p).parent)[0] for p in paths]


class Ensemble(torch.nn.Module):
    """Frozen members that all read the same spliced window (same context).

    forward(inputs (B, W*D)) -> member logits (M, B, P).
    """

    def __init__(self, members: Sequence[SpliceDnn], weights: torch.Tensor | None = None,
                 combine: str = "arithmetic"):  # fmt: skip
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        first = members[0].config
        for m in members:
            c = m.config
            if (c.num_pdfs, c.feat_dim, c.left_context, c.right_context) != (
                first.num_pdfs, first.feat_dim, first.left_context, first.right_context
            ):  # fmt: skip
                raise ValueError("ensemble members must share outputs, features and context")
        self.members = torch.nn.ModuleList(members)
        self.combine = combine
        self.register_buffer(
            "weights", torch.full((len(members),), 1.0 / len(members)) if weights is None
            else torch.as_tensor(weights, dtype=torch.float32),
        )  # fmt: skip
        self._stack_members()
        self.requires_grad_(False)
        self.eval()

    def _stack_members(self) -> None:
        """Members of one shape run as one batched matmul per layer, not a Python loop
        over members: their weights are stacked into buffers ``(M, in, out)`` (moved by
        ``to()`` with the members). Members that share their input normalisation (those
        trained on one store) also share one first-layer matmul over the concatenated
        weights ``(in, M * H)``. Members of different shapes keep the loop."""
        shapes = {(m.config.hidden_layers, m.config.hidden_dim) for m in self.members}
        self.stacked = len(shapes) == 1 and len(self.members) > 1 and \
            self.members[0].config.hidden_layers > 0  # fmt: skip
        if not self.stacked:
            return
        ms = self.members
        self.shared_input = all(
            torch.equal(m.input_mean, ms[0].input_mean)
            and torch.equal(m.input_inv_std, ms[0].input_inv_std) for m in ms
        )  # fmt: skip
        layers = [[m.hidden[i] for m in ms] for i in range(len(ms[0].hidden))] + \
            [[m.output for m in ms]]  # fmt: skip
        for i, group in enumerate(layers):
            w = torch.stack([lin.weight.detach().t() for lin in group])  # (M, in, out)
            b = torch.stack([lin.bias.detach() for lin in group])[:, None, :]  # (M, 1, out)
            if i == 0 and self.shared_input:  # (in, M * out): one matmul for all members
                w = w.permute(1, 0, 2).reshape(w.shape[1], -1)
            self.register_buffer(f"stacked_w{i}", w.contiguous(), persistent=False)
            self.register_buffer(f"stacked_b{i}", b.contiguous(), persistent=False)
        self.register_buffer("stacked_mean", torch.stack([m.input_mean for m in ms])[:, None],
                             persistent=False)  # (M, 1, W*D)  # fmt: skip
        self.register_buffer("stacked_inv_std", torch.stack([m.input_inv_std for m in ms])[
            :, None], persistent=False)  # (M, 1, W*D)  # fmt: skip
        self.num_layers = len(layers)

    @property
    def config(self):
        return self.members[0].config

    def train(self, mode: bool = True) -> Ensemble:  # frozen teachers stay in eval mode
        return super().train(False)

    @torch.no_grad()
    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if not self.stacked:
            return torch.stack([m(inputs) for m in self.members])  # (M, B, P)
        m = len(self.members)
        w0, b0 = self.stacked_w0, self.stacked_b0
        if self.shared_input:
            x = (inputs - self.stacked_mean[0]) * self.stacked_inv_std[0]  # (B, W*D)
            h = (x @ w0).reshape(len(inputs), m, -1).transpose(0, 1)  # (M, B, H)
            h = torch.relu(h + b0)
        else:
            x = (inputs[None] - self.stacked_mean) * self.stacked_inv_std  # (M, B, W*D)
            h = torch.relu(torch.baddbmm(b0, x, w0))  # (M, B, H)
        for i in range(1, self.num_layers):
            w, b = getattr(self, f"stacked_w{i}"), getattr(self, f"stacked_b{i}")
            h = torch.baddbmm(b, h, w)  # (M, B, out)
            if i < self.num_layers - 1:
                h = torch.relu(h)
        return h  # (M, B, P)

    @torch.no_grad()
    def log_probs(self, inputs: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """(B, P) log of the combined distribution at ``temperature``."""
        return combine_log_probs(self(inputs), temperature, combine=self.combine,
                                 weights=self.weights)  # fmt: skip

    @torch.no_grad()
    def probs(self, inputs: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """(B, P) combined distribution at ``temperature`` (:func:`combine_probs`)."""
        return combine_probs(self(inputs), temperature, combine=self.combine,
                             weights=self.weights)  # fmt: skip

    @classmethod
    def load(
        cls,
        paths: Sequence[str | Path],
        *,
        combine: str = "arithmetic",
        weights: Sequence[float] | None = None,
        map_location: str = "cpu",
    ) -> Ensemble:
        members = [SpliceDnn.load(p, map_location=map_location) for p in paths]
        w = None if weights is None else torch.tensor(list(weights), dtype=torch.float32)
        return cls(members, w, combine)
