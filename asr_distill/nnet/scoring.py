"""Frame accuracy and cross-entropy of one model or of several combined, on a frame
store's labelled frames: the one path behind train-dnn's dev evaluation, the
``frame-accuracy`` step (students, baselines, ensembles) and ``ensemble-accuracy``.

Several models are combined as the teacher ensemble combines them for distillation
(:func:`asr_distill.nnet.ensemble.combine_log_probs`: arithmetic or geometric mean,
uniform or given weights, in log space); each model splices the windows with its own
context. One model is scored on its logits directly (the argmax of the logits is the
argmax of the posteriors, and the CE is ``cross_entropy`` of the logits).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch import nn

from asr_distill.features.framestore import FrameStore
from asr_distill.nnet.ensemble import combine_log_probs


@dataclasses.dataclass
class StoreScore:
    """Sums over the scored frames (add the sums of DDP ranks, then read the rates)."""

    frames: int = 0
    correct: float = 0.0  # the (combined) argmax equals the target
    ce_sum: float = 0.0  # summed -log p(target) of the (combined) distribution
    member_correct: list[float] = dataclasses.field(default_factory=list)

    @property
    def frame_accuracy(self) -> float:
        """Frame accuracy in % (0 without frames)."""
        return 100.0 * self.correct / max(self.frames, 1)

    @property
    def cross_entropy(self) -> float:
        return self.ce_sum / max(self.frames, 1)

    @property
    def member_frame_accuracies(self) -> list[float]:
        return [100.0 * c / max(self.frames, 1) for c in self.member_correct]


def _context(model: nn.Module) -> tuple[int, int]:
    inner = getattr(model, "_orig_mod", getattr(model, "module", model))
    return inner.config.left_context, inner.config.right_context


@torch.no_grad()
def score_store(
    models: Sequence[nn.Module],
    store: FrameStore,
    *,
    combine: str = "arithmetic",
    weights: Sequence[float] | None = None,
    batch_size: int = 4096,
    device: torch.device | None = None,
    bf16: bool = False,
    rank: int = 0,
    world_size: int = 1,
    splice_device: torch.device | None = None,
) -> StoreScore:
    """Score ``models`` (SpliceDnn-like, in eval mode) on the labelled frames of
    ``store`` (this rank's shard of each batch under DDP), in store order.

    ``device``: where the models run [cpu]; ``bf16``: autocast; ``splice_device``:
    splice the first context's windows there (see :meth:`FrameStore.gather`).
    """
    if not models:
        raise ValueError("no model to score")
    device = device or torch.device("cpu")
    contexts = [_context(m) for m in models]
    first = contexts[0]
    w = None if weights is None else torch.tensor(list(weights), dtype=torch.float32)
    sums = torch.zeros(2 + len(models), dtype=torch.float64, device=device)
    frames = 0
    for batch in store.batches(
        batch_size, left=first[0], right=first[1], shuffle=False, rank=rank,
        world_size=world_size, labelled_only=True, device=splice_device,
    ):  # fmt: skip
        if len(batch.targets) == 0:
            continue
        y = batch.targets.to(device)
        inputs = {first: batch.inputs.to(device)}
        for ctx in contexts[1:]:
            if ctx not in inputs:
                inputs[ctx] = store.gather(batch.frames.numpy(), left=ctx[0],
                                           right=ctx[1]).inputs.to(device)  # fmt: skip
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = [m(inputs[ctx]) for m, ctx in zip(models, contexts, strict=True)]
        if len(models) == 1:
            z = logits[0].float()  # (B, P)
            ce = nn.functional.cross_entropy(z, y, reduction="sum")
            hits = (z.argmax(-1) == y).sum()
            member = hits[None]
        else:
            z = torch.stack([x.float() for x in logits])  # (M, B, P)
            logp = combine_log_probs(z, combine=combine, weights=w)  # (B, P)
            ce = -logp.gather(1, y[:, None]).sum()
            hits = (logp.argmax(-1) == y).sum()
            member = (z.argmax(-1) == y).sum(-1)  # (M,)
        sums += torch.cat([torch.stack([hits.double(), ce.double()]), member.double()])
        frames += len(y)
    values = sums.tolist()
    return StoreScore(frames, values[0], values[1], values[2:])
