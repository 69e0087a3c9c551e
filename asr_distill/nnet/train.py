"""Frame-level cross-entropy training of a :class:`SpliceDnn` on a frame store, on one
process or many (``torchrun``: DDP with gloo on CPU, nccl on GPU; data sharded by
rank so the ranks of one step together see exactly the single-process batch).

The exp dir gets ``final.{safetensors,yaml}`` (the model with the best dev frame
accuracy, with input normalisation and log-priors inside), ``last.*``,
``train_curve.csv``, ``config.yaml``, ``log/train.log`` and ``.done``. A checkpoint
(``checkpoint.pt``: model, optimiser, schedule, RNG and position in the data; read
back with ``torch.load(weights_only=True)``) is written atomically every
``checkpoint_every`` steps and at each epoch end; re-running the same command resumes
from it, and on CPU with a fixed seed ends with the same weights as a run that was
never interrupted.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import logging
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file
from torch import nn
from tqdm import tqdm

from asr_distill.config import differences, field_defaults, save_config
from asr_distill.errors import InputError
from asr_distill.features.framestore import FEATS_FILE, TARGETS_FILE, FrameStore
from asr_distill.io import atomic_open, atomic_path, file_sha256, is_done
from asr_distill.io.step import step_log
from asr_distill.nnet import augment
from asr_distill.nnet.curve import CURVE_FIELDS, CURVE_FILE
from asr_distill.nnet.model import DnnConfig, SpliceDnn
from asr_distill.nnet.schedule import ScheduleState, end_of_epoch, lr_at_step
from asr_distill.nnet.scoring import score_store

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"


@dataclasses.dataclass
class TrainConfig:
    """DNN training options.

    Model: hidden_layers [8], hidden_dim [2560], left_context [20], right_context [5].
    Optimiser: optimizer 'sgd' (momentum [0.9]) or 'adamw' [sgd]; lr [0.008];
    weight_decay [0]; dropout after each hidden ReLU [0]; batch_size: global frames per
    step [256]; epochs [10].
    Schedule: 'newbob' (Kaldi nnet1: keep the rate while dev frame accuracy improves by
    at least newbob_start_halving [0.5] points, then halve it every epoch; stop when an
    epoch while halving gains less than newbob_end [0.1] points; an epoch that does not
    improve on the best is rejected and the next starts again from the best weights,
    with fresh momentum, unless newbob_restore is off [on]) or 'cosine'
    (warmup_steps [0] of linear warm-up, then cosine to 0 over the run) or 'constant'.
    early_stopping: stop after this many epochs without a better dev frame accuracy
    (0 = off) [0]. data_fraction: train on this deterministic share of the training
    utterances [1.0]; seed [0] (initialisation and data order); checkpoint_every steps
    [500]; bf16 autocast [off] (on GPUs, and on CPUs with AMX or AVX512-BF16, where a cpu
    preset step takes half the time of fp32's: bench/RESULTS.md; elsewhere a CPU emulates
    it, slower than fp32, and the trainer warns),
    torch.compile and the optimiser's fused kernel for GPUs [off]; device ['auto'].
    freq_mask: SpecAugment frequency masking of every training window, a band of up to
    this many feature dims set to 0, fresh each step (:mod:`asr_distill.nnet.augment`;
    online teachers label the masked view) [0: off].
    init: start from the weights and input normalisation of this saved DNN (a stem of
    ``<stem>.safetensors`` + ``.yaml`` of the same shape, e.g. an ensemble member, for a
    warm-started student) instead of a random initialisation; the pdf priors still come
    from the training store's labels ['': random].
    """

    hidden_layers: int = 8
    hidden_dim: int = 2560
    left_context: int = 20
    right_context: int = 5
    optimizer: str = "sgd"
    lr: float = 0.008
    momentum: float = 0.9
    weight_decay: float = 0.0
    dropout: float = 0.0
    freq_mask: int = 0
    batch_size: int = 256
    epochs: int = 10
    schedule: str = "newbob"
    newbob_start_halving: float = 0.5
    newbob_end: float = 0.1
    newbob_restore: bool = True
    warmup_steps: int = 0
    early_stopping: int = 0
    data_fraction: float = 1.0
    seed: int = 0
    checkpoint_every: int = 500
    bf16: bool = False
    compile: bool = False
    fused_optimizer: bool = False
    device: str = "auto"
    init: str = ""

    def __post_init__(self) -> None:
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer must be sgd or adamw, not {self.optimizer!r}")
        if self.schedule not in ("newbob", "cosine", "constant"):
            raise ValueError(f"schedule must be newbob, cosine or constant, not {self.schedule!r}")
        if not 0 < self.data_fraction <= 1:
            raise ValueError(f"data_fraction must be in (0, 1], not {self.data_fraction}")
        if self.batch_size < 1 or self.epochs < 1 or self.checkpoint_every < 1:
            raise ValueError("batch_size, epochs and checkpoint_every must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), not {self.dropout}")
        if self.freq_mask < 0:
            raise ValueError(f"freq_mask must be >= 0, not {self.freq_mask}")


@dataclasses.dataclass
class _Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device_kind: str) -> _Dist:
    """DDP from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK); one process
    otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
    return _Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def _device(config: TrainConfig, d: _Dist) -> torch.device:
    if config.device != "auto":
        return torch.device(config.device)
    if torch.cuda.is_available():
        return torch.device("cuda", d.local_rank)
    return torch.device("cpu")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 matmuls natively (AMX tiles or AVX512-BF16), where
    bf16 autocast speeds training up; elsewhere oneDNN emulates bf16, slower than fp32."""
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def model_config(config: TrainConfig, num_pdfs: int, feat_dim: int) -> DnnConfig:
    return DnnConfig(
        num_pdfs=num_pdfs, feat_dim=feat_dim, left_context=config.left_context,
        right_context=config.right_context, hidden_layers=config.hidden_layers,
        hidden_dim=config.hidden_dim, dropout=config.dropout,
    )  # fmt: skip


def _make_optimizer(config: TrainConfig, params, device: torch.device,
                    all_params_every_step: bool = True) -> torch.optim.Optimizer:  # fmt: skip
    """The optimiser; its fused kernel only on CUDA and only where every parameter has a
    gradient from the first step on. torch 2.14's fused SGD passes the missing momentum
    buffers of parameters that get their first gradient later (FitNets' layers above the
    hint, after the hint stage) as None and fails ("expected Tensor ... got NoneType");
    on a CPU it gained 2-4 % of a cpu-preset step, and a DDP test (gloo) aborted with it."""
    use_fused = config.fused_optimizer and device.type == "cuda" and all_params_every_step
    fused = {"fused": True} if use_fused else {}
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, **fused)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                           weight_decay=config.weight_decay, **fused)  # fmt: skip


def _unwrap(model: nn.Module) -> SpliceDnn:
    inner = getattr(model, "module", model)
    return getattr(inner, "_orig_mod", inner)


def _all_reduce_sums(values: list[float], d: _Dist) -> list[float]:
    if d.world_size == 1:
        return values
    # nccl reduces GPU tensors only; gloo CPU ones.
    on = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" \
        else torch.device("cpu")  # fmt: skip
    t = torch.tensor(values, dtype=torch.float64, device=on)
    dist.all_reduce(t)
    return t.tolist()


def splice_device(store: FrameStore, device: torch.device) -> torch.device | None:
    """Where minibatches are spliced: on a CUDA device when a copy of the store's
    features and targets takes at most a quarter of its free memory (only frame indices
    then cross the bus each step), else on the host (None)."""
    if device.type != "cuda":
        return None
    if store.has_device_copy(device):  # decided before; the copy itself now takes memory
        return device
    need = store.features.nbytes + 8 * store.targets.size
    return device if need <= torch.cuda.mem_get_info(device)[0] / 4 else None


def evaluate(
    model: nn.Module, store: FrameStore, config: TrainConfig, d: _Dist, device: torch.device
) -> tuple[float, float]:
    """(mean CE, frame accuracy %) over the labelled frames of ``store`` (sharded over
    ranks, summed with all_reduce); ``model`` has a SpliceDnn's ``config`` (context)."""
    model.eval()
    score = score_store([model], store, batch_size=max(config.batch_size, 1024),
                        device=device, bf16=config.bf16, rank=d.rank, world_size=d.world_size,
                        splice_device=splice_device(store, device))  # fmt: skip
    model.train()
    loss_sum, correct, count = _all_reduce_sums([score.ce_sum, score.correct, score.frames], d)
    return loss_sum / max(count, 1), 100.0 * correct / max(count, 1)


class Objective:
    """What a training step minimises. The default is frame-level cross-entropy on the
    pdf targets; :mod:`asr_distill.nnet.distill` adds distillation objectives.

    ``wrap(student)`` returns the module trained (the student, or the student with
    extra heads whose outputs ``loss`` reads; under DDP this module is wrapped, so its
    forward must compute everything that has gradients). ``loss`` returns the MEAN loss
    over the batch's frames, the student's logits and the frames' targets.
    ``labelled_only``: train on labelled frames only (False for a transfer set whose
    frames may be unlabelled). ``setup`` runs once the student exists (on ``device``).
    """

    labelled_only: bool = True
    name: str = "cross-entropy"
    # Some parameters get no gradient in some steps (FitNets' hint stage): DDP must
    # look for them (find_unused_parameters), at some cost per step.
    unused_parameters: bool = False

    def setup(self, student: SpliceDnn, device: torch.device) -> None:
        return None

    def views(self, train: FrameStore, dev: FrameStore) -> tuple[FrameStore, FrameStore]:
        """The views of the training and dev stores that this objective trains and is
        judged on (a specialist's: its senones plus a dustbin, half-and-half batches)."""
        return train, dev

    def wrap(self, student: SpliceDnn) -> nn.Module:
        return student

    def scored(self, student: SpliceDnn) -> nn.Module:
        """The module whose outputs the dev view's targets are scored against (the
        student; a specialist's projection onto its senones and the dustbin)."""
        return student

    def priors(self) -> tuple[np.ndarray | None, str]:
        """pdf priors (P,) for a student trained without labelled frames, and where they
        came from; (None, '') when the objective has none (then training stops)."""
        return None, ""

    def judged(self, epoch: int) -> bool:
        """Whether newbob may reject ``epoch`` for its dev accuracy (not an epoch that
        trains something else, as FitNets' hint stage)."""
        return True

    def identity(self) -> dict:
        """What besides the TrainConfig and the stores decides the result (a checkpoint
        made with another identity is not resumed)."""
        return {"objective": self.name}

    def record(self, exp_dir: Path) -> None:
        """Write the objective's settings into ``exp_dir`` (once a resume is known to
        agree with them)."""
        return None

    def loss(self, model: nn.Module, batch, device: torch.device, epoch: int):
        x = batch.inputs.to(device, non_blocking=True)
        y = batch.targets.to(device, non_blocking=True)
        logits = model(x)  # (B, P)
        return nn.functional.cross_entropy(logits.float(), y), logits, y


def train_dnn(
    train_store: str | Path,
    dev_store: str | Path,
    exp_dir: str | Path,
    config: TrainConfig | None = None,
    *,
    force: bool = False,
    progress: bool = True,
    objective: Objective | None = None,
) -> SpliceDnn | None:
    """Train a hybrid DNN with cross-entropy (or ``objective``) on ``train_store``,
    keeping the epoch with the best frame accuracy on ``dev_store``."""
    config = config or TrainConfig()
    exp_dir = Path(exp_dir)
    if is_done(exp_dir) and not force:
        log.info("%s is complete; nothing to do (use --force to retrain)", exp_dir)
        return None
    device_kind = "cuda" if (config.device == "auto" and torch.cuda.is_available()) or \
        config.device.startswith("cuda") else "cpu"  # fmt: skip
    d = _init_distributed(device_kind)
    device = _device(config, d)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    # Rank 0 runs the step's lifecycle (log, done marker; --force also drops the
    # checkpoint); config.yaml is written once a resume is known to agree with it.
    lifecycle = step_log(exp_dir, "train.log", force=True,
                         clear=(CHECKPOINT_FILE,) if force else ())  # fmt: skip
    with lifecycle if d.main else contextlib.nullcontext(True):
        if d.main and config.bf16 and device.type == "cpu" and not cpu_has_native_bf16():
            log.warning(
                "bf16 autocast on a CPU where no AMX or AVX512-BF16 was detected: "
                "probably emulated, slower than fp32 (--no-bf16 trains in fp32)"
            )
        if d.world_size > 1:
            dist.barrier()  # no rank reads a checkpoint that --force is removing
        model = _train(Path(train_store), Path(dev_store), exp_dir, config, d, device,
                       progress, objective or Objective())  # fmt: skip
    return SpliceDnn.load(exp_dir / "final") if d.main else model


def _load_checkpoint(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a torn or foreign file: say which, never unpickle freely
        raise InputError(f"unreadable checkpoint ({e}); delete it to start over", path) from None


def _raise_non_finite(store: FrameStore, path: Path, frames: np.ndarray) -> None:
    frame = int(frames[0])
    raise InputError(f"non-finite features in {len(frames)} frame(s), the first {frame} of "
                     f"utterance {store.utt_of_frame(frame)!r}: the store was damaged after it "
                     "was built; rebuild it with make-frame-store --force",
                     path / FEATS_FILE)  # fmt: skip


class TrainingDiverged(InputError, FloatingPointError):
    """The training loss became non-finite (too high a learning rate): one line from the
    CLI, naming the exp dir."""


# On a GPU the loss is checked for NaN / inf every this many steps (and before every
# checkpoint), not every step: each check waits for the device.
_CUDA_CHECK_STEPS = 100


def _check_finite(value: float, d: _Dist, store: FrameStore, store_path: Path, exp_dir: Path,
                  when: str, batch) -> None:  # fmt: skip
    """Stop (every rank together) when the training loss ``value`` is not finite: blame
    damaged frames of ``batch`` when it has any, else the learning rate."""
    finite = math.isfinite(value)
    if d.world_size > 1:  # every rank stops together, none waits in an all-reduce
        finite = _all_reduce_sums([float(not finite)], d)[0] == 0
    if finite:
        return
    if batch is not None:
        bad = ~torch.isfinite(batch.inputs).all(dim=-1)
        if bad.any():
            _raise_non_finite(store, store_path, batch.frames[bad.cpu()].numpy())
    raise TrainingDiverged(f"training loss is {value} {when}; lower the learning rate and "
                           "re-run with --force", exp_dir)  # fmt: skip


# TrainConfig fields that do not change the trained weights: a resume may differ in them.
_RESUMABLE_FIELDS = ("checkpoint_every", "device")


def store_identity(store: FrameStore) -> dict:
    """A frame store's path, its features' checksum (meta.json) and its targets'."""
    targets = store.path / TARGETS_FILE
    return {"path": str(store.path.resolve()), "feats_sha256": store.meta.get("feats_sha256"),
            "targets_sha256": file_sha256(targets) if targets.is_file() else None}  # fmt: skip


def run_identity(config: TrainConfig, train: FrameStore, dev: FrameStore,
                 objective: Objective) -> dict:  # fmt: skip
    """Everything that decides a training run's result: stored in its checkpoints and
    compared on resume, so a resumed run never mixes settings or data."""
    conf = {k: v for k, v in dataclasses.asdict(config).items() if k not in _RESUMABLE_FIELDS}
    out = {"train_config": conf, "train_store": store_identity(train),
           "dev_store": store_identity(dev), **objective.identity()}  # fmt: skip
    if config.init:  # the initial weights, by content: a retrained init model is another run
        from asr_distill.nnet.ensemble import model_digest

        out["init_sha256"] = model_digest(config.init)
    return out


def _init_model(stem: str, mconf: DnnConfig) -> SpliceDnn:
    """The saved DNN ``stem`` to start from; InputError unless it has ``mconf``'s shape."""
    init = SpliceDnn.load(stem)
    got, want = init.config, mconf
    fields = ("num_pdfs", "feat_dim", "left_context", "right_context", "hidden_layers",
              "hidden_dim")  # fmt: skip
    diff = [f"{f} {getattr(got, f)} (run: {getattr(want, f)})" for f in fields
            if getattr(got, f) != getattr(want, f)]  # fmt: skip
    if diff:
        raise InputError("the init model has another shape: " + ", ".join(diff),
                         Path(stem).with_suffix(".yaml"))  # fmt: skip
    return init


def _with_defaults(identity: dict) -> dict:
    """A checkpoint's identity with the config fields added since it was written set to
    their defaults (what the run used), so a new option does not block a resume."""
    out = dict(identity)
    for key, cls in (("train_config", TrainConfig), ("distill_config", "DistillConfig")):
        if not isinstance(out.get(key), dict):
            continue
        if isinstance(cls, str):  # distill imports this module: look it up lazily
            from asr_distill.nnet import distill

            cls = getattr(distill, cls)
        out[key] = {**field_defaults(cls, _RESUMABLE_FIELDS), **out[key]}
    return out


def check_resume(ckpt: dict, identity: dict, path: Path) -> None:
    """Refuse to resume a checkpoint made by another run (settings, stores, teachers)."""
    old = ckpt.get("identity")
    if old is None:
        raise InputError("checkpoint records no settings, so a resume cannot be checked; run "
                         "with --force to start over", path)  # fmt: skip
    diff = [f"{k}: {a!r} then, {b!r} now" for k, a, b in differences(_with_defaults(old), identity)]
    if diff:
        more = f" (and {len(diff) - 3} more)" if len(diff) > 3 else ""
        raise InputError(f"checkpoint of a run with other settings or data ({'; '.join(diff[:3])}"
                         f"{more}); run with --force to start over, or with the old settings "
                         "to resume", path)  # fmt: skip


def _train(
    train_path: Path, dev_path: Path, exp_dir: Path, config: TrainConfig, d: _Dist,
    device: torch.device, progress: bool, objective: Objective,
) -> SpliceDnn:  # fmt: skip
    train = FrameStore(train_path)
    dev = FrameStore(dev_path)
    labelled_only = objective.labelled_only
    if train.num_pdfs is None or (labelled_only and train.num_labelled_frames == 0):
        raise InputError("the training frame store has no pdf targets", train_path)
    if config.data_fraction < 1:
        train = train.subset(config.data_fraction, seed=config.seed)
    train, dev = objective.views(train, dev)
    num_pdfs = int(train.num_pdfs)
    mconf = model_config(config, num_pdfs, train.dim)
    identity = run_identity(config, train, dev, objective)
    ckpt = _load_checkpoint(exp_dir / CHECKPOINT_FILE)
    if ckpt is not None:
        check_resume(ckpt, identity, exp_dir / CHECKPOINT_FILE)
    if d.main:  # after the check: these files say what this run (and a resumed one) uses
        save_config(config, exp_dir / "config.yaml")
        objective.record(exp_dir)
        log.info(
            "train-dnn (%s): %d x %d ReLU, window %d+1+%d of %d-dim features, %d pdfs, %.2fM "
            "parameters; %d training utterances / %d labelled frames (fraction %g); %d "
            "process(es) on %s", objective.name, mconf.hidden_layers, mconf.hidden_dim,
            mconf.left_context,
            mconf.right_context, mconf.feat_dim, num_pdfs, mconf.num_params() / 1e6,
            train.num_utts, train.num_labelled_frames, config.data_fraction, d.world_size,
            device,
        )  # fmt: skip
    torch.manual_seed(config.seed)
    model = SpliceDnn(mconf)
    mean, std = train.feature_stats()
    if not (np.isfinite(mean).all() and np.isfinite(std).all()):
        _raise_non_finite(train, train_path, np.flatnonzero(~np.isfinite(train.features).all(1)))
    model.set_input_stats(mean, std)
    if config.init:  # the saved model's weights with the normalisation they were learnt on
        model.load_state_dict(_init_model(config.init, mconf).state_dict())
    labels = train.targets[train.frame_indices(labelled_only=True)]
    if len(labels):
        model.set_priors(np.bincount(labels, minlength=num_pdfs))
    else:  # a wholly unlabelled transfer set: the objective (its teachers) gives them
        priors, source = objective.priors()
        if priors is None:
            raise InputError("no labelled frames to count the pdf priors from, and the "
                             "objective has no teachers to take them from", train_path)  # fmt: skip
        model.set_priors(priors)
        if d.main:
            log.info("pdf priors for hybrid decoding from %s (no labelled frames)", source)
    model.to(device)
    objective.setup(model, device)
    trainable = objective.wrap(model).to(device)  # the student, maybe with extra heads
    optimizer = _make_optimizer(config, trainable.parameters(), device,
                                all_params_every_step=not objective.unused_parameters)  # fmt: skip
    steps_per_epoch = train.num_batches(config.batch_size, drop_last=True,
                                        labelled_only=labelled_only)  # fmt: skip
    if steps_per_epoch == 0:
        raise InputError(f"fewer labelled frames than one batch of {config.batch_size}",
                         train_path)  # fmt: skip
    total_steps = steps_per_epoch * config.epochs
    state = ScheduleState(lr=config.lr)
    curve: list[dict] = []
    epoch, start_batch, step = 0, 0, 0
    resumed_sums = [0.0, 0.0, 0.0, 0.0]  # loss, correct, frames, labelled of a resumed epoch
    if ckpt is not None:
        trainable.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        state = ScheduleState(**ckpt["schedule"])
        curve = list(ckpt["curve"])
        epoch, start_batch, step = int(ckpt["epoch"]), int(ckpt["batch"]), int(ckpt["step"])
        torch.set_rng_state(ckpt["rng"])
        resumed_sums = ckpt["epoch_sums"].tolist()
        if d.main:
            log.info("resuming from %s: epoch %d, batch %d, step %d", exp_dir / CHECKPOINT_FILE,
                     epoch, start_batch, step)  # fmt: skip
    train_model: nn.Module = trainable
    if d.world_size > 1:
        train_model = nn.parallel.DistributedDataParallel(
            trainable, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=objective.unused_parameters,
        )  # fmt: skip
    if config.compile:
        train_model = torch.compile(train_model)

    def save_checkpoint(next_epoch: int, next_batch: int, sums: list[float]) -> None:
        if not d.main:
            return
        payload = {
            "model": trainable.state_dict(), "optimizer": optimizer.state_dict(),
            "schedule": dataclasses.asdict(state), "curve": curve, "epoch": next_epoch,
            "batch": next_batch, "step": step, "rng": torch.get_rng_state(),
            "epoch_sums": torch.tensor(sums, dtype=torch.float64), "identity": identity,
        }  # fmt: skip
        with atomic_path(exp_dir / CHECKPOINT_FILE) as tmp:
            torch.save(payload, tmp)

    best_state: dict[str, torch.Tensor] | None = None  # the best epoch's weights
    while epoch < config.epochs and not state.stop:
        start = time.perf_counter()
        # This rank's running sums; a mid-epoch resume restores rank 0's (single process).
        resume = start_batch and d.world_size == 1
        loss_sum, correct, count, labelled_count = resumed_sums if resume else (0, 0, 0, 0)
        resumed_sums = [0.0, 0.0, 0.0, 0.0]
        batches = train.batches(
            config.batch_size, left=config.left_context, right=config.right_context,
            shuffle=True, seed=config.seed, epoch=epoch, start_batch=start_batch, rank=d.rank,
            world_size=d.world_size, drop_last=True, labelled_only=labelled_only,
            device=splice_device(train, device),
        )  # fmt: skip
        bar = tqdm(batches, total=steps_per_epoch - start_batch, desc=f"epoch {epoch}",
                   unit="batch", disable=not (progress and d.main), leave=False)  # fmt: skip
        # Running sums stay on the device (loss x frames, correct, labelled frames): on a
        # GPU, reading them every step would wait for every step.
        sums = torch.tensor([loss_sum, correct, labelled_count], dtype=torch.float64,
                            device=device)  # fmt: skip
        checked = step  # the loss is known finite up to this step
        for b, batch in enumerate(bar, start=start_batch):
            lr = lr_at_step(config, state, step, total_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            if config.freq_mask:  # a fresh view each step, for the student and its teachers
                batch = batch._replace(inputs=augment.mask_frequencies(
                    batch.inputs, train.dim, config.freq_mask))  # fmt: skip
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.bf16):
                loss, logits, y = objective.loss(train_model, batch, device, epoch)
            if device.type != "cuda":  # on the host a check costs nothing: every step
                _check_finite(float(loss.detach()), d, train, train_path, exp_dir,
                              f"at epoch {epoch}, step {step} (lr {lr:g})", batch)  # fmt: skip
            # Mean over this rank's frames x its share of the global batch x world size:
            # DDP's gradient average then equals the gradient of the global batch's mean.
            (loss * (len(y) * d.world_size / config.batch_size)).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            with torch.no_grad():
                hits = (logits.detach().argmax(-1) == y).sum()  # unlabelled (-1) never hit
                sums += torch.stack([loss.detach().double() * len(y), hits.double(),
                                     (y >= 0).sum().double()])  # fmt: skip
            count += len(y)
            end = b + 1 == steps_per_epoch
            if device.type == "cuda" and (step - checked >= _CUDA_CHECK_STEPS or end
                                          or step % config.checkpoint_every == 0):  # fmt: skip
                _check_finite(float(sums[0]), d, train, train_path, exp_dir,
                              f"between steps {checked} and {step} of epoch {epoch}",
                              None)  # fmt: skip
                checked = step
            if step % config.checkpoint_every == 0:
                loss_sum, correct, labelled_count = sums.tolist()
                save_checkpoint(epoch, b + 1, [loss_sum, correct, count, labelled_count])
        loss_sum, correct, labelled_count = sums.tolist()
        loss_sum, correct, count, labelled_count = _all_reduce_sums(
            [loss_sum, correct, count, labelled_count], d
        )
        dev_loss, dev_acc = evaluate(objective.scored(model), dev, config, d, device)
        last_lr = lr_at_step(config, state, step - 1, total_steps)
        row = {
            "epoch": epoch, "step": step, "lr": f"{last_lr:.6g}",
            "train_loss": f"{loss_sum / max(count, 1):.5f}",
            "train_frame_acc": f"{100.0 * correct / max(labelled_count, 1):.3f}",
            "dev_loss": f"{dev_loss:.5f}", "dev_frame_acc": f"{dev_acc:.3f}",
            "seconds": f"{time.perf_counter() - start:.1f}",
        }  # fmt: skip
        curve.append(row)
        best = end_of_epoch(config, state, epoch, dev_acc)
        if best:  # every rank keeps the best weights (with any heads), for newbob
            best_state = {k: v.detach().clone() for k, v in trainable.state_dict().items()}
        elif (config.schedule == "newbob" and config.newbob_restore and not state.stop
              and objective.judged(epoch) and epoch + 1 < config.epochs):  # fmt: skip
            # Kaldi nnet1 rejects the epoch: train on from the best weights. After a
            # resume they come from final.safetensors (the student; any heads stay).
            if best_state is None:
                model.load_state_dict(load_file(str(exp_dir / "final.safetensors"),
                                                device=str(device)))  # fmt: skip
            else:
                trainable.load_state_dict(best_state)
            optimizer.state.clear()  # no momentum from the rejected epoch
            if d.main:
                log.info("epoch %d rejected (dev %.2f%%, best %.2f%% at epoch %d): the next "
                         "starts from the best weights at lr %g", epoch, dev_acc,
                         state.best_dev_acc, state.best_epoch, state.lr)  # fmt: skip
        if d.main:
            log.info("epoch %d: train CE %s acc %s%%, dev CE %.4f acc %.2f%%%s; lr %s; %s s",
                     epoch, row["train_loss"], row["train_frame_acc"], dev_loss, dev_acc,
                     " (best)" if best else "", row["lr"], row["seconds"])  # fmt: skip
            if best:
                model.save(exp_dir / "final")
            with atomic_open(exp_dir / CURVE_FILE) as f:
                w = csv.DictWriter(f, fieldnames=CURVE_FIELDS)
                w.writeheader()
                w.writerows(curve)
        epoch, start_batch = epoch + 1, 0
        save_checkpoint(epoch, 0, [0.0, 0.0, 0.0, 0.0])
    if d.world_size > 1:
        dist.barrier()
    if d.main:
        model.save(exp_dir / "last")
        log.info("train-dnn: best dev frame accuracy %.2f%% (epoch %d) -> %s",
                 state.best_dev_acc, state.best_epoch, exp_dir / "final.safetensors")  # fmt: skip
    return model
