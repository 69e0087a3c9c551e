"""Distillation objectives for the DNN trainer, and teacher ensembles.

Methods (``DistillConfig.method``):

- ``kd``: Hinton et al. (2015): ``w_soft * T^2 * CE(p_teacher(T), q_student(T)) +
  w_hard * CE(labels, q_student(1))``; the teacher distribution comes from frozen
  ensemble members run on the same batch (online) or from a top-k soft-target cache
  (``make-soft-targets``). Unlabelled frames (target -1) get the soft term only, so
  the transfer set may be unlabelled. With ``pseudo_labels`` the teachers' distribution
  is replaced by its argmax (``w_soft * CE(argmax p_teacher, q_student(1)) + w_hard *
  CE(labels, q_student(1))``): the control that shows what the soft targets add over
  hard pseudo-labels from the same teachers on the same frames.
- ``logits``: logit matching (Caruana; Bucila et al. 2006), the high-temperature limit
  of ``kd``: MSE between the student's and the (member-averaged) teacher's
  mean-centred logits, plus the weighted hard CE.
- ``fitnets``: Romero et al. (2015): a student hidden layer, through a learned linear
  regressor, matches a teacher hidden layer (MSE); as a first stage
  (``hint_epochs`` epochs of hints only) and/or jointly with ``kd``.
- ``self``: self-distillation (Zhang et al. 2019): auxiliary heads on intermediate
  layers are taught by the network's own final softmax at T, while the final layer
  learns the hard labels.

``train_ensemble`` trains the members: ordinary, resumable ``train-dnn`` runs that
differ in seed (initialisation and data order).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn

from asr_distill.errors import InputError
from asr_distill.features.framestore import FrameStore
from asr_distill.io import atomic_open, file_sha256
from asr_distill.io.step import step_log
from asr_distill.nnet import augment, losses
from asr_distill.nnet.ensemble import (
    Ensemble,
    accuracy_weights,
    model_digest,
    read_member_accuracies,
)
from asr_distill.nnet.model import SpliceDnn
from asr_distill.nnet.train import Objective, TrainConfig, train_dnn

log = logging.getLogger(__name__)

METHODS = ("kd", "logits", "fitnets", "self")


@dataclasses.dataclass
class DistillConfig:
    """Distillation options.

    method: kd, logits, fitnets or self [kd]; teachers: saved teacher models (e.g.
    ``exp/ensemble/member3/final``) [none]; soft_targets: a ``make-soft-targets`` cache
    used instead of running the teachers (kd only) [none]; temperature T [2.0];
    soft_weight [1.0] and hard_weight [0.5] (the paper's hard weight is lower);
    combine: arithmetic or geometric mean of the members [arithmetic]; weighting:
    uniform or accuracy (member weights from dev frame accuracy) [uniform];
    hint_weight [1.0], student_hint_layer / teacher_hint_layer (indices into the
    hidden layers, negative from the top) [-2 / -2], hint_epochs: epochs of hints only
    before joint training (FitNets stage 1) [1]; aux_layers: hidden layers that get an
    auxiliary head (self) [[]: the middle one], self_weight [1.0]; pseudo_labels: kd
    with the teachers' argmax instead of their distribution [false].
    mixup_alpha: mixup of each window with another of the batch, fresh each step, which
    the online teachers label as the student sees it (kd with --teacher, no cache; see
    :mod:`asr_distill.nnet.augment`), lam ~ Beta(a, a) folded to >= 0.5 [0: off]. (The
    trainer's freq_mask masks the windows before the objective sees them.)
    """

    method: str = "kd"
    teachers: list[str] = dataclasses.field(default_factory=list)
    soft_targets: str | None = None
    temperature: float = 2.0
    soft_weight: float = 1.0
    hard_weight: float = 0.5
    combine: str = "arithmetic"
    weighting: str = "uniform"
    hint_weight: float = 1.0
    student_hint_layer: int = -2
    teacher_hint_layer: int = -2
    hint_epochs: int = 1
    aux_layers: list[int] = dataclasses.field(default_factory=list)
    self_weight: float = 1.0
    pseudo_labels: bool = False
    mixup_alpha: float = 0.0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, not {self.method!r}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, not {self.temperature}")
        if self.weighting not in ("uniform", "accuracy"):
            raise ValueError(f"weighting must be uniform or accuracy, not {self.weighting!r}")
        needs_teacher = self.method in ("logits", "fitnets") or (
            self.method == "kd" and self.soft_targets is None
        )
        if needs_teacher and not self.teachers:
            raise ValueError(f"method {self.method} needs --teacher (or --soft-targets for kd)")
        if self.soft_targets is not None and self.method != "kd":
            raise ValueError("--soft-targets is only for method kd")
        if self.pseudo_labels and self.method != "kd":
            raise ValueError("--pseudo-labels is only for method kd")
        if self.mixup_alpha < 0:
            raise ValueError("mixup_alpha must be >= 0")
        if self.mixup_alpha and (self.method != "kd" or self.soft_targets is not None):
            raise ValueError("--mixup-alpha needs method kd with online teachers (--teacher, "
                             "no --soft-targets): a cache holds the targets of the "
                             "unperturbed frames")  # fmt: skip


class _TeacherInputs:
    """The teachers' spliced inputs for a batch: the student's own when the contexts
    agree, else gathered again from the store with the teachers' context."""

    def __init__(self, store: FrameStore, student: SpliceDnn, teacher_conf):
        self.store = store
        self.same = (teacher_conf.left_context, teacher_conf.right_context) == (
            student.config.left_context, student.config.right_context
        )  # fmt: skip
        self.left, self.right = teacher_conf.left_context, teacher_conf.right_context

    def __call__(self, batch, x: torch.Tensor) -> torch.Tensor:
        if self.same:
            return x
        frames = batch.frames.numpy()
        return self.store.gather(frames, left=self.left, right=self.right).inputs.to(x.device)


class DistillObjective(Objective):
    """The trainer's objective for every method of :class:`DistillConfig`."""

    labelled_only = False

    def __init__(self, config: DistillConfig, train_store: FrameStore, *,
                 perturbed: bool = False):  # fmt: skip
        """``perturbed``: the trainer perturbs the windows (``--freq-mask``), so online
        teachers must read the student's own windows."""
        self.c = config
        self.store = train_store
        self.perturbed = perturbed
        self.name = f"{config.method} T={config.temperature:g}"
        # FitNets' hint stage trains the lower layers and the regressor only.
        self.unused_parameters = config.method == "fitnets" and config.hint_epochs > 0
        if config.pseudo_labels:
            self.name = "kd with the teachers' argmax as hard pseudo-labels"
        self.teachers: Ensemble | None = None
        self.cache = None
        weights = None
        if config.teachers:
            if config.weighting == "accuracy":
                weights = accuracy_weights(read_member_accuracies(config.teachers)).tolist()
            self.teachers = Ensemble.load(config.teachers, combine=config.combine,
                                          weights=weights)  # fmt: skip
        if config.soft_targets is not None:
            from asr_distill.nnet.soft_targets import SoftTargetCache

            self.cache = SoftTargetCache(config.soft_targets)
            # The cache must hold the distribution the config asks for: same teachers,
            # T, combination and member weights.
            self.cache.check(train_store, temperature=config.temperature,
                             model_paths=config.teachers or None, combine=config.combine,
                             weighting=config.weighting, weights=weights)  # fmt: skip
            if self.cache.masked and perturbed:
                raise InputError("the soft-target cache holds masked views, whose bands the "
                                 "student's windows take: train without --freq-mask",
                                 self.cache.path / "meta.json")  # fmt: skip

    def priors(self) -> tuple[np.ndarray | None, str]:
        """The teachers' own priors (the labelled counts of the data they were trained
        on), averaged: the student mimics their posteriors, so it divides by the same
        priors as the ensemble's hybrid decoding. Teachers are those given, else the
        members named in the soft-target cache."""
        paths = list(self.c.teachers)
        if not paths and self.cache is not None:
            paths = [m["path"] for m in self.cache.meta["members"]]
        if not paths:
            return None, ""
        models = (
            self.teachers.members if self.teachers is not None
            else [SpliceDnn.load(p) for p in paths]  # load() takes a stem or its .safetensors
        )  # fmt: skip
        probs = torch.stack([m.log_priors.cpu().exp() for m in models]).mean(0)  # (P,)
        return probs.numpy().astype(np.float64), f"the mean prior of {len(models)} teacher(s)"

    def judged(self, epoch: int) -> bool:
        return not (self.c.method == "fitnets" and epoch < self.c.hint_epochs)

    def identity(self) -> dict:
        """The method's settings and the checksums of the teachers' weights and of the
        soft-target cache: a resume with other teachers or targets is refused."""
        teachers = {str(p): model_digest(p) for p in self.c.teachers}
        cache = None
        if self.c.soft_targets is not None:
            cache = file_sha256(Path(self.c.soft_targets) / "meta.json")
        return {"objective": self.name, "distill_config": dataclasses.asdict(self.c),
                "teacher_sha256": teachers, "soft_targets_meta_sha256": cache}  # fmt: skip

    def record(self, exp_dir: Path) -> None:
        with atomic_open(exp_dir / "distill.yaml") as f:
            yaml.safe_dump(dataclasses.asdict(self.c), f, sort_keys=True)

    def setup(self, student: SpliceDnn, device: torch.device) -> None:
        if self.teachers is not None:
            if self.teachers.config.num_pdfs != student.config.num_pdfs:
                raise InputError(
                    f"teachers have {self.teachers.config.num_pdfs} outputs, the student "
                    f"{student.config.num_pdfs}", self.c.teachers[0],
                )  # fmt: skip
            self.teachers.to(device)
            self.teacher_inputs = _TeacherInputs(self.store, student, self.teachers.config)
            perturbed = self.c.mixup_alpha or (self.perturbed and self.cache is None)
            if perturbed and not self.teacher_inputs.same:
                raise InputError("--mixup-alpha and --freq-mask need online teachers with the "
                                 "student's context (they label the student's perturbed "
                                 "windows)", self.c.teachers[0])  # fmt: skip

    def wrap(self, student: SpliceDnn) -> nn.Module:
        if self.c.method == "fitnets":
            t_dim = self.teachers.members[0].config.hidden_dim
            return _StudentWithHint(student, losses.HintRegressor(student.config.hidden_dim,
                                                                  t_dim), self.c)  # fmt: skip
        if self.c.method == "self":
            return _StudentWithAux(student, self.c)
        return student

    def _pseudo_labels(self, batch, x, device, view: int) -> torch.Tensor:
        """The teachers' most probable pdf per frame (B,) int64 (any T: same argmax)."""
        if self.cache is not None:
            probs, idx, _ = self.cache.gather(batch.frames.numpy(), view)
            top = probs.argmax(-1) if idx is None else idx[:, 0]  # top-k is sorted
            return top.to(device)
        return self.teachers.log_probs(self.teacher_inputs(batch, x)).argmax(-1).to(device)

    def _kd(self, logits, y, batch, x, device, view: int = 0):
        c = self.c
        if c.pseudo_labels:
            pseudo = self._pseudo_labels(batch, x, device, view)  # (B,)
            return c.soft_weight * losses.hard_cross_entropy(logits, pseudo) + \
                c.hard_weight * losses.hard_cross_entropy(logits, y)  # fmt: skip
        if self.cache is not None:
            probs, idx, tail = self.cache.gather(batch.frames.numpy(), view)
            if idx is None:  # dense cache: the whole distribution, in pdf order
                return losses.distillation_loss(
                    logits, y, teacher_probs=probs.to(device),
                    temperature=c.temperature, soft_weight=c.soft_weight,
                    hard_weight=c.hard_weight,
                ).total  # fmt: skip
            topk = (probs.to(device), idx.to(device), tail.to(device))
            return losses.distillation_loss(
                logits, y, topk=topk, temperature=c.temperature, soft_weight=c.soft_weight,
                hard_weight=c.hard_weight,
            ).total  # fmt: skip
        t_probs = self.teachers.probs(self.teacher_inputs(batch, x), c.temperature)
        return losses.distillation_loss(
            logits, y, teacher_probs=t_probs, temperature=c.temperature,
            soft_weight=c.soft_weight, hard_weight=c.hard_weight,
        ).total  # fmt: skip

    def loss(self, model: nn.Module, batch, device: torch.device, epoch: int):
        c = self.c
        x = batch.inputs.to(device, non_blocking=True)
        y = batch.targets.to(device, non_blocking=True)
        if c.method == "kd":
            view = 0
            if self.cache is not None and self.cache.masked:  # the view its teachers saw
                view = epoch % self.cache.views
                start, width = self.cache.bands(batch.frames.numpy(), view)  # (B,), (B,)
                x = augment.mask_bands(x, self.store.dim, start, width)
            if c.mixup_alpha > 0:  # the frame's own window dominates: its label stays
                x = augment.mix_frames(x, c.mixup_alpha)
            logits = model(x)  # (B, P)
            return self._kd(logits, y, batch, x, device, view), logits, y
        if c.method == "logits":
            logits = model(x)
            with torch.no_grad():
                t_logits = self.teachers(self.teacher_inputs(batch, x)).mean(0)  # (B, P)
            total = c.soft_weight * losses.logit_matching_loss(logits, t_logits)
            if c.hard_weight:
                total = total + c.hard_weight * losses.hard_cross_entropy(logits, y)
            return total, logits, y
        if c.method == "fitnets":
            logits, hint = model(x)  # (B, P), (B, H_teacher)
            with torch.no_grad():
                _, t_hidden = self.teachers.members[0](self.teacher_inputs(batch, x),
                                                       return_hidden=True)  # fmt: skip
            # The regressor ran inside the (possibly DDP-wrapped) module's forward.
            hint_loss = losses.fitnets_hint_loss(hint, t_hidden[c.teacher_hint_layer],
                                                 nn.Identity())  # fmt: skip
            if epoch < c.hint_epochs:  # FitNets stage 1: hints only
                return c.hint_weight * hint_loss, logits, y
            return self._kd(logits, y, batch, x, device) + c.hint_weight * hint_loss, logits, y
        logits, aux = model(x)  # self-distillation
        total = losses.hard_cross_entropy(logits, y) + c.self_weight * \
            losses.self_distillation_loss(aux, logits, y, temperature=c.temperature,
                                          soft_weight=c.soft_weight,
                                          hard_weight=c.hard_weight)  # fmt: skip
        return total, logits, y


class _StudentWithHint(nn.Module):
    def __init__(self, student: SpliceDnn, regressor: nn.Module, c: DistillConfig):
        super().__init__()
        self.student, self.regressor, self.layer = student, regressor, c.student_hint_layer

    def forward(self, x):
        logits, hidden = self.student(x, return_hidden=True)
        return logits, self.regressor(hidden[self.layer])


class _StudentWithAux(nn.Module):
    def __init__(self, student: SpliceDnn, c: DistillConfig):
        super().__init__()
        n = student.config.hidden_layers
        self.layers = [i % n for i in c.aux_layers] or [max(n // 2 - 1, 0)]
        if any(i == n - 1 for i in self.layers):
            raise ValueError("aux_layers must be below the last hidden layer")
        self.student = student
        self.heads = losses.AuxiliaryHeads(
            student.config.hidden_dim, student.config.num_pdfs, self.layers
        )

    def forward(self, x):
        logits, hidden = self.student(x, return_hidden=True)
        return logits, self.heads(hidden)


def distill(
    train_store: str | Path,
    dev_store: str | Path,
    exp_dir: str | Path,
    train_config: TrainConfig,
    config: DistillConfig,
    *,
    force: bool = False,
    progress: bool = True,
) -> SpliceDnn | None:
    """Train a student with ``config``'s method (see the module docs); the exp dir is
    a train-dnn exp dir plus ``distill.yaml``."""
    exp_dir = Path(exp_dir)
    store = FrameStore(train_store)
    if train_config.data_fraction < 1:
        store = store.subset(train_config.data_fraction, seed=train_config.seed)
    objective = DistillObjective(config, store, perturbed=train_config.freq_mask > 0)
    return train_dnn(train_store, dev_store, exp_dir, train_config, force=force,
                     progress=progress, objective=objective)  # fmt: skip


def train_ensemble(
    train_store: str | Path,
    dev_store: str | Path,
    exp_dir: str | Path,
    config: TrainConfig,
    *,
    members: int = 10,
    parallel: int = 1,
    base_seed: int = 1,
    force: bool = False,
) -> list[Path]:
    """Train ``members`` DNNs ``exp_dir/member<i>`` with seeds ``base_seed + i``
    (initialisation and data order), one after another or ``parallel`` processes at a
    time; each is an ordinary resumable train-dnn run. Writes ``members.txt`` (the
    models' paths) and returns them."""
    exp_dir = Path(exp_dir)
    dirs = [exp_dir / f"member{i}" for i in range(members)]
    paths = [d / "final" for d in dirs]
    settings = {"members": members, "base_seed": base_seed, "member_config":
                dataclasses.asdict(config), "train_store": str(train_store),
                "dev_store": str(dev_store)}  # fmt: skip
    # A finished ensemble is done only for the same members and settings: other ones
    # (more members, another config) train what is missing, member by member.
    recorded = exp_dir / "config.yaml"
    same = recorded.is_file() and yaml.safe_load(recorded.read_text("utf-8")) == \
        yaml.safe_load(yaml.safe_dump(settings))  # fmt: skip
    with step_log(exp_dir, "train-ensemble.log", force=force or not same,
                  config=settings) as run:  # fmt: skip
        if not run:
            return paths
        if parallel <= 1:
            for i, d in enumerate(dirs):
                log.info("train-ensemble: member %d of %d (seed %d)", i + 1, members,
                         base_seed + i)  # fmt: skip
                train_dnn(train_store, dev_store, d,
                          dataclasses.replace(config, seed=base_seed + i), force=force,
                          progress=False)  # fmt: skip
        else:
            _train_parallel(train_store, dev_store, dirs, config, parallel, base_seed, force)
        with atomic_open(exp_dir / "members.txt") as f:
            f.writelines(f"{p}\n" for p in paths)
    return paths


def _train_parallel(train_store, dev_store, dirs, config: TrainConfig, parallel: int,
                    base_seed: int, force: bool) -> None:  # fmt: skip
    """Members as ``python -m asr_distill train-dnn`` processes, ``parallel`` at a time,
    each with an equal share of the CPU threads (or its own GPU, round robin)."""
    conf_path = Path(dirs[0]).parent / "member_config.yaml"
    with atomic_open(conf_path) as f:
        yaml.safe_dump(dataclasses.asdict(config), f, sort_keys=True)
    threads = max(1, (os.cpu_count() or 1) // parallel)
    gpus = torch.cuda.device_count()
    pending = list(enumerate(dirs))
    running: list[tuple[int, subprocess.Popen]] = []
    failed = []
    while pending or running:
        while pending and len(running) < parallel:
            i, d = pending.pop(0)
            cmd = [sys.executable, "-m", "asr_distill", "train-dnn", "--config", str(conf_path),
                   "--seed", str(base_seed + i), "--no-progress", str(train_store),
                   str(dev_store), str(d)]  # fmt: skip
            if gpus:
                cmd += ["--device", f"cuda:{i % gpus}"]
            if force:
                cmd.append("--force")
            env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
            log.info("train-ensemble: member %d started: %s", i, " ".join(cmd))
            running.append((i, subprocess.Popen(cmd, env=env)))
        i, proc = running.pop(0)
        if proc.wait() != 0:
            failed.append(i)
    if failed:
        raise RuntimeError(f"ensemble members {failed} failed; re-run to resume them")
