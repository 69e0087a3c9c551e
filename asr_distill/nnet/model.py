"""The hybrid acoustic model: an L x H ReLU MLP over a spliced window of frames,
predicting the senone (pdf-id) of the window's centre frame (Hinton et al. 2015,
section 4: 8 x 2560 ReLU, 26 frames of 40 log-mel fbank = 20 left + 1 + 5 right).

The input normalisation (per-dimension mean and inverse standard deviation of the
training features, tiled over the window) and the log-priors of the pdfs (from
alignment counts, for hybrid decoding) are buffers of the model, so a checkpoint
holds everything decoding needs. On disk a model is ``<name>.safetensors`` (the
state dict) plus ``<name>.yaml`` (its :class:`DnnConfig`); nothing is pickled.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from pathlib import Path

import numpy as np
import torch
import yaml
from safetensors.torch import load_file, save_file
from torch import nn

from asr_distill.errors import InputError
from asr_distill.io import atomic_open, atomic_path, is_done

PRIOR_FLOOR = 1e-8
KILLED_LOG_LIKELIHOOD = -1e10


def hybrid_log_likelihoods(log_posteriors: torch.Tensor, log_priors: torch.Tensor) -> torch.Tensor:
    """Scaled log-likelihoods for HMM decoding, ``log p(pdf | x) - log p(pdf)``.

    A pdf whose prior is below the floor (stored as ``-inf``: never seen in training)
    gets a log-likelihood of -1e10, so the decoder never picks it, as Kaldi's PdfPrior
    does; dividing by a tiny floored prior would instead boost such pdfs enormously.
    """
    killed = torch.isinf(log_priors)  # (P,)
    ll = log_posteriors - torch.where(killed, torch.zeros_like(log_priors), log_priors)
    return ll.masked_fill(killed, KILLED_LOG_LIKELIHOOD)


@dataclasses.dataclass
class DnnConfig:
    """Model shape: hidden_layers [8] x hidden_dim [2560] ReLU (the paper preset),
    left_context [20] and right_context [5] frames of feat_dim [40] features, and
    num_pdfs outputs (senones, from the tree); dropout after each hidden ReLU while
    training [0]."""

    num_pdfs: int
    feat_dim: int = 40
    left_context: int = 20
    right_context: int = 5
    hidden_layers: int = 8
    hidden_dim: int = 2560
    dropout: float = 0.0

    @property
    def window(self) -> int:
        return self.left_context + 1 + self.right_context

    @property
    def input_dim(self) -> int:
        return self.window * self.feat_dim

    def num_params(self) -> int:
        dims = [self.input_dim] + [self.hidden_dim] * self.hidden_layers + [self.num_pdfs]
        return sum(a * b + b for a, b in itertools.pairwise(dims))

    def flops_per_frame(self) -> int:
        """Multiply-adds x 2 of one forward pass of one frame."""
        dims = [self.input_dim] + [self.hidden_dim] * self.hidden_layers + [self.num_pdfs]
        return 2 * sum(a * b for a, b in itertools.pairwise(dims))


class SpliceDnn(nn.Module):
    """``logits = W_L+1 relu(... relu(W_1 ((x - mean) * inv_std)))``.

    forward(inputs (B, window * feat_dim)) -> logits (B, num_pdfs); with
    ``return_hidden=True`` also the list of the L hidden activations (B, H) (FitNets
    hints and self-distillation read them).
    """

    def __init__(self, config: DnnConfig):
        super().__init__()
        self.config = config
        dims = [config.input_dim] + [config.hidden_dim] * config.hidden_layers
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(dims))
        self.output = nn.Linear(dims[-1], config.num_pdfs)
        self.register_buffer("input_mean", torch.zeros(config.input_dim))
        self.register_buffer("input_inv_std", torch.ones(config.input_dim))
        self.register_buffer(
            "log_priors", torch.full((config.num_pdfs,), -math.log(config.num_pdfs))
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He (Kaiming) initialisation for the ReLU layers, zero biases."""
        for layer in self.hidden:
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            nn.init.zeros_(layer.bias)
        nn.init.normal_(self.output.weight, std=1.0 / math.sqrt(self.output.in_features))
        nn.init.zeros_(self.output.bias)

    def set_input_stats(self, mean: np.ndarray, std: np.ndarray, floor: float = 1e-3) -> None:
        """Per-dimension feature mean and std ``(feat_dim,)``, tiled over the window."""
        w = self.config.window
        self.input_mean.copy_(torch.as_tensor(np.tile(mean, w), dtype=torch.float32))
        inv = 1.0 / np.maximum(np.asarray(std, np.float64), floor)
        self.input_inv_std.copy_(torch.as_tensor(np.tile(inv, w), dtype=torch.float32))

    def set_priors(self, pdf_counts: np.ndarray, floor: float = PRIOR_FLOOR) -> None:
        """log p(pdf) from alignment frame counts; pdfs whose relative frequency is below
        ``floor`` get ``-inf`` (see :func:`hybrid_log_likelihoods`)."""
        counts = np.asarray(pdf_counts, np.float64)
        if counts.shape != (self.config.num_pdfs,):
            raise ValueError(f"{counts.shape} pdf counts for {self.config.num_pdfs} pdfs")
        p = counts / max(counts.sum(), 1.0)
        with np.errstate(divide="ignore"):
            log_p = np.where(p < floor, -np.inf, np.log(np.maximum(p, floor)))
        self.log_priors.copy_(torch.as_tensor(log_p, dtype=torch.float32))

    def forward(
        self, inputs: torch.Tensor, return_hidden: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        h = (inputs - self.input_mean) * self.input_inv_std  # (B, W*D)
        hidden = []
        for layer in self.hidden:
            h = torch.relu(layer(h))  # (B, H)
            if self.config.dropout and self.training:
                h = nn.functional.dropout(h, self.config.dropout, training=True)
            hidden.append(h)
        logits = self.output(h)  # (B, P)
        return (logits, hidden) if return_hidden else logits

    @torch.no_grad()
    def log_likelihoods(self, inputs: torch.Tensor, batch: int = 4096) -> torch.Tensor:
        """Hybrid decoding scores ``log p(x | pdf) + const = log_softmax(logits) - log p(pdf)``
        (:func:`hybrid_log_likelihoods`),
        ``(T, num_pdfs)``, for an utterance's spliced inputs ``(T, W*D)``."""
        out = [
            hybrid_log_likelihoods(
                torch.log_softmax(self(inputs[i : i + batch]).float(), dim=-1), self.log_priors
            )
            for i in range(0, len(inputs), batch)
        ]
        return torch.cat(out) if out else inputs.new_zeros((0, self.config.num_pdfs))

    # ---- files

    def save(self, path_stem: str | Path) -> None:
        """Write ``<stem>.safetensors`` and ``<stem>.yaml`` atomically."""
        stem = Path(path_stem)
        stem.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(stem.with_suffix(".safetensors")) as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()},
                      str(tmp))  # fmt: skip
        with atomic_open(stem.with_suffix(".yaml")) as f:
            yaml.safe_dump(dataclasses.asdict(self.config), f, sort_keys=True)

    @classmethod
    def load(cls, path_stem: str | Path, map_location: str = "cpu") -> SpliceDnn:
        stem = Path(path_stem)
        if stem.suffix in (".safetensors", ".yaml"):
            stem = stem.with_suffix("")
        conf_path, weights = stem.with_suffix(".yaml"), stem.with_suffix(".safetensors")
        for p in (conf_path, weights):
            if not p.is_file():
                raise InputError("missing (not a saved DNN)", p)
        # A train-dnn / distill exp dir (it checkpoints) without its done marker holds the
        # best epoch so far of a killed or running run, not a trained model.
        if (stem.parent / "checkpoint.pt").is_file() and not is_done(stem.parent):
            raise InputError("the training run that writes this model has not finished "
                             "(no done marker): re-run its command to complete it",
                             weights)  # fmt: skip
        try:
            values = yaml.safe_load(conf_path.read_text(encoding="utf-8"))
            config = DnnConfig(**values)
        except (yaml.YAMLError, TypeError) as e:
            raise InputError(f"not a DnnConfig: {e}", conf_path) from None
        model = cls(config)
        try:
            state = load_file(str(weights), device=map_location)
        except Exception as e:  # SafetensorError (torn, truncated, not safetensors), OSError
            raise InputError(f"unreadable weights ({e})", weights) from None
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            raise InputError(f"does not match {conf_path.name}: {e}", weights) from None
        return model.eval()  # loaded for inference (no dropout); train() to train it further
