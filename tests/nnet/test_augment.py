"""Fresh perturbations for online distillation: mixup and frequency masks."""

from __future__ import annotations

import pytest
import torch

from asr_distill.nnet.augment import mask_frequencies, mix_frames
from asr_distill.nnet.distill import DistillConfig
from asr_distill.nnet.train import TrainConfig

W, D = 4, 10


def test_mixup_is_a_convex_mix_dominated_by_the_frame_itself():
    torch.manual_seed(0)
    x = torch.randn(64, W * D)
    torch.manual_seed(1)
    y = mix_frames(x, alpha=0.4)
    for b in range(64):
        # y_b = lam x_b + (1 - lam) x_j for some partner j and lam in [0.5, 1]
        ok = False
        for j in range(64):
            diff = x[b] - x[j]
            if diff.abs().max() < 1e-6:  # the partner is the frame itself
                ok = ok or torch.allclose(y[b], x[b], atol=1e-5)
                continue
            lam = float(((y[b] - x[j]) @ diff) / (diff @ diff))
            if 0.5 - 1e-5 <= lam <= 1 + 1e-5 and torch.allclose(
                y[b], lam * x[b] + (1 - lam) * x[j], atol=1e-5
            ):
                ok = True
                break
        assert ok, b
    assert not torch.allclose(y, x)
    torch.manual_seed(1)
    assert torch.equal(mix_frames(x, alpha=0.4), y)  # the global generator decides


def test_frequency_mask_zeroes_one_band_in_every_frame_of_the_window():
    torch.manual_seed(0)
    x = torch.randn(200, W * D) + 5.0  # no zeros of its own
    y = mask_frequencies(x, D, max_width=3)
    frames = y.reshape(200, W, D)
    widths = []
    for b in range(200):
        zero = frames[b] == 0  # (W, D)
        assert torch.equal(zero, zero[:1].expand(W, D))  # the same dims in every frame
        dims = torch.nonzero(zero[0]).flatten()
        widths.append(len(dims))
        if len(dims):
            assert int(dims[-1] - dims[0]) + 1 == len(dims)  # one contiguous band
        kept = ~zero
        assert torch.equal(frames[b][kept], x.reshape(200, W, D)[b][kept])
    assert set(widths) == {0, 1, 2, 3}
    with pytest.raises(ValueError, match="not windows"):
        mask_frequencies(torch.zeros(2, 7), D, 3)


def test_mixup_needs_online_teachers():
    with pytest.raises(ValueError, match="online teachers"):
        DistillConfig(teachers=["t"], soft_targets="cache", mixup_alpha=0.4)
    with pytest.raises(ValueError, match="online teachers"):
        DistillConfig(method="logits", teachers=["t"], mixup_alpha=0.4)
    with pytest.raises(ValueError, match=">= 0"):
        TrainConfig(freq_mask=-1)
