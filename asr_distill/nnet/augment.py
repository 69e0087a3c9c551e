"""Fresh perturbations of a minibatch's spliced windows, for distillation with online
teachers: the teachers label the perturbed view the student sees, so every epoch shows
the student frames that neither it nor the teachers memorised ("function matching",
Beyer et al. 2022, "Knowledge distillation: A good teacher is patient and consistent").

Both act on the raw spliced inputs ``(B, W*D)`` (time-major windows of D-dim features,
as :meth:`FrameStore.gather` gives them), before the models' input normalisation, and
draw from torch's global generator (seeded by the trainer and saved in its checkpoints,
so a resumed run draws the same).

- :func:`mix_frames`: mixup (Zhang et al. 2018) of each window with another window of
  the batch, ``x' = lam * x_b + (1 - lam) * x_partner``, ``lam ~ Beta(a, a)`` folded
  to ``lam >= 0.5`` so the frame's own window dominates and keeps its hard label.
- :func:`mask_frequencies`: SpecAugment's frequency masking (Park et al. 2019): a band
  of ``w ~ U{0..F}`` consecutive feature dimensions, the same in every frame of the
  window, set to 0 (the speaker's mean for CMN'd features). :func:`draw_bands` draws
  the same bands from a numpy generator and :func:`mask_bands` applies given ones: a
  soft-target cache of masked views (``make-soft-targets --views``) fixes its bands,
  and the student sees each frame under the band its teachers labelled.
"""

from __future__ import annotations

import numpy as np
import torch


def mix_frames(inputs: torch.Tensor, alpha: float) -> torch.Tensor:
    """Mixup of each window (B, W*D) with a random partner of the batch; returns (B, W*D)."""
    if alpha <= 0:
        raise ValueError(f"mixup alpha must be > 0, got {alpha}")
    b = inputs.shape[0]
    a = torch.tensor(float(alpha))
    lam = torch.distributions.Beta(a, a).sample((b,))  # (B,)
    lam = torch.maximum(lam, 1.0 - lam).to(inputs.device, inputs.dtype)[:, None]  # (B, 1)
    partner = torch.randperm(b).to(inputs.device)  # (B,)
    return lam * inputs + (1.0 - lam) * inputs[partner]


def mask_frequencies(inputs: torch.Tensor, feat_dim: int, max_width: int) -> torch.Tensor:
    """One band of up to ``max_width`` feature dimensions per window set to 0, in all
    of its frames; returns (B, W*D)."""
    b = inputs.shape[0]  # mask_bands checks the window's shape
    if not 0 < max_width <= feat_dim:
        raise ValueError(f"max_width must be in [1, {feat_dim}], got {max_width}")
    width = torch.randint(0, max_width + 1, (b,))  # (B,)
    start = (torch.rand(b) * (feat_dim - width + 1)).long()  # (B,) in [0, D - w]
    return mask_bands(inputs, feat_dim, start, width)


def draw_bands(num: int, feat_dim: int, max_width: int,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """``num`` frequency bands drawn as :func:`mask_frequencies` draws them, from a numpy
    generator (a soft-target cache's fixed views): start and width, (num,) uint8 each."""
    if not 0 < max_width <= min(feat_dim, 255):
        raise ValueError(f"max_width must be in [1, {min(feat_dim, 255)}], got {max_width}")
    width = rng.integers(0, max_width + 1, num)  # (num,)
    start = np.floor(rng.random(num) * (feat_dim - width + 1))  # (num,) in [0, D - w]
    return start.astype(np.uint8), width.astype(np.uint8)


def mask_bands(inputs: torch.Tensor, feat_dim: int, start: torch.Tensor,
               width: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """Window b's feature dimensions ``start[b] .. start[b] + width[b] - 1`` set to 0 in
    all of its frames; inputs (B, W*D), start and width (B,); returns (B, W*D)."""
    b, n = inputs.shape
    if feat_dim < 1 or n % feat_dim:
        raise ValueError(f"inputs of width {n} are not windows of {feat_dim}-dim frames")
    dev = inputs.device
    start, width = start.to(dev).long()[:, None], width.to(dev).long()[:, None]  # (B, 1)
    dims = torch.arange(feat_dim, device=dev)[None, :]  # (1, D)
    band = (dims >= start) & (dims < start + width)  # (B, D)
    x = inputs.reshape(b, n // feat_dim, feat_dim)  # (B, W, D)
    return x.masked_fill(band[:, None, :], 0.0).reshape(b, n)
