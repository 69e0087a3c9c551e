"""Learning-rate schedules of the DNN trainer: newbob as Kaldi nnet1 has it (keep the
rate while dev frame accuracy improves enough, then halve it every epoch; an epoch that
does not improve is rejected by the trainer), cosine with linear warm-up, and constant;
plus early stopping. The state between epochs is :class:`ScheduleState`, checkpointed."""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from asr_distill.nnet.train import TrainConfig


@dataclasses.dataclass
class ScheduleState:
    """What the learning-rate schedule remembers between epochs (checkpointed)."""

    lr: float
    halving: bool = False
    stop: bool = False
    best_dev_acc: float = -1.0
    best_epoch: int = -1
    epochs_since_best: int = 0


def lr_at_step(config: TrainConfig, state: ScheduleState, step: int, total_steps: int) -> float:
    """The learning rate for optimiser step ``step`` (0-based)."""
    if config.schedule == "cosine":
        if step < config.warmup_steps:
            return config.lr * (step + 1) / config.warmup_steps
        span = max(total_steps - config.warmup_steps, 1)
        progress = min((step - config.warmup_steps) / span, 1.0)
        return 0.5 * config.lr * (1.0 + math.cos(math.pi * progress))
    return state.lr


def end_of_epoch(config: TrainConfig, state: ScheduleState, epoch: int, dev_acc: float) -> bool:
    """Update the schedule with an epoch's dev frame accuracy (in %); True if this is the
    best epoch so far. Newbob halves the rate once the gain falls below the start
    threshold and stops when, while halving, it falls below the end threshold."""
    gain = dev_acc - state.best_dev_acc
    better = dev_acc > state.best_dev_acc
    if config.schedule == "newbob" and state.best_dev_acc >= 0:
        if state.halving and gain < config.newbob_end:
            state.stop = True
        if gain < config.newbob_start_halving:
            state.halving = True
        if state.halving:
            state.lr /= 2
    if better:
        state.best_dev_acc, state.best_epoch, state.epochs_since_best = dev_acc, epoch, 0
    else:
        state.epochs_since_best += 1
    if config.early_stopping and state.epochs_since_best >= config.early_stopping:
        state.stop = True
    return better
