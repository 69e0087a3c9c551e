"""DNN training throughput: frames/s and achieved FLOP/s as a share of the same
machine's dense matmul FLOP/s, measured side by side in one run.

    python bench/train_throughput.py [--preset cpu|paper] [--device cpu|cuda]
        [--steps N] [--batch-size B[,B...]] [--modes MODE[,MODE...]]
        [--splice host|device[,...]] [--profile N]

A mode is ``fp32`` or a ``+``-joined subset of ``bf16``, ``compile`` and ``fused``
(the trainer's --bf16, --compile and --fused-optimizer), e.g. ``bf16+compile+fused``.
``fused`` applies on a CPU too, where the trainer does not use it (bench/RESULTS.md
says why): the bench measures what it would gain.
Every combination of --modes, --batch-size and --splice is timed in this one process.
``--profile N`` then runs the first combination's steps once more under torch.profiler
and prints its N most expensive operators (self time), for issue 18's profile.

The model and the batches are the real ones (SpliceDnn on spliced windows gathered
from a frame store of random fp16 features), and so is the step: the trainer's
objective (:class:`asr_distill.nnet.train.Objective`), backward, SGD with momentum and
its running sums kept on the device. ``--splice device`` splices the windows on the
GPU from a copy of the store (as ``train-dnn`` does when the store fits), ``host`` on
the CPU. A training step's FLOPs are counted as 3x the forward pass (forward, input
gradients, weight gradients). The reference is a dense square matmul timed in the same
process: on a GPU bf16 at 8192^2 (the MFU denominator for every mode), on a CPU fp32
(bf16 with a bf16 mode) at twice the hidden size. Prints a table and one ratio per
row.
"""

from __future__ import annotations

import argparse
import itertools
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from asr_distill.features.framestore import FrameStore
from asr_distill.features.framestore_build import build_frame_store
from asr_distill.nnet.model import DnnConfig, SpliceDnn
from asr_distill.nnet.train import Objective

PRESETS = {
    "cpu": dict(hidden_layers=4, hidden_dim=512, num_pdfs=744, batch=256),
    "paper": dict(hidden_layers=8, hidden_dim=2560, num_pdfs=14000, batch=512),
}
MODE_FLAGS = ("bf16", "compile", "fused")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_flops(n: int, device: torch.device, dtype: torch.dtype, seconds: float = 2.0) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        reps += 1
        if reps % 10 == 0:
            sync(device)
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - start)


def parse_mode(mode: str) -> set[str]:
    flags = set() if mode == "fp32" else set(mode.split("+"))
    if not flags <= set(MODE_FLAGS):
        raise SystemExit(f"unknown mode {mode!r}: fp32 or a +-joined subset of {MODE_FLAGS}")
    return flags


def time_training(store: FrameStore, conf: DnnConfig, device: torch.device, batch: int,
                  flags: set[str], splice: str, steps: int, profile: int = 0) -> float:  # fmt: skip
    """Frames per second of the trainer's step over ``steps`` steps after warm-up; with
    ``profile`` > 0, those steps run under torch.profiler and its top operators print."""
    torch.manual_seed(0)
    model = SpliceDnn(conf).to(device)
    fused = {"fused": True} if "fused" in flags else {}
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, **fused)
    step_model = torch.compile(model) if "compile" in flags else model
    objective = Objective()
    where = device if splice == "device" else None

    def epochs():  # the real batcher every step, epoch after epoch
        for epoch in itertools.count():
            yield from store.batches(batch, left=conf.left_context, right=conf.right_context,
                                     seed=0, epoch=epoch, labelled_only=True, drop_last=True,
                                     device=where)  # fmt: skip

    it = epochs()
    sums = torch.zeros(3, dtype=torch.float64, device=device)

    def step() -> None:
        nonlocal sums
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled="bf16" in flags):
            loss, logits, y = objective.loss(step_model, next(it), device, 0)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            hits = (logits.detach().argmax(-1) == y).sum()
            sums += torch.stack([loss.detach().double() * len(y), hits.double(),
                                 (y >= 0).sum().double()])  # fmt: skip

    for _ in range(5):  # warm-up (and compilation)
        step()
    sync(device)
    if profile:
        activities = [torch.profiler.ProfilerActivity.CPU]
        if device.type == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        with torch.profiler.profile(activities=activities) as prof:
            for _ in range(steps):
                step()
            sync(device)
        key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
        print(prof.key_averages().table(sort_by=key, row_limit=profile), flush=True)
        return 0.0
    start = time.perf_counter()
    for _ in range(steps):
        step()
    float(sums[0])  # the trainer reads its sums back once per check interval
    sync(device)
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", choices=PRESETS, default="cpu")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch-size", default=None, help="comma-separated [preset's]")
    ap.add_argument("--modes", default="fp32", help="comma-separated modes [fp32]")
    ap.add_argument("--bf16", action="store_true", help="same as --modes bf16")
    ap.add_argument("--compile", action="store_true", help="adds compile to the mode")
    ap.add_argument("--fused", action="store_true", help="adds fused to the mode")
    ap.add_argument("--splice", default=None, help="host, device or both [device on CUDA]")
    ap.add_argument("--frames", type=int, default=100_000, help="frames in the random store")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="profile the first combination, print its top N operators")  # fmt: skip
    args = ap.parse_args()
    p = PRESETS[args.preset]
    device = torch.device(args.device)
    batches = [int(b) for b in (args.batch_size or str(p["batch"])).split(",")]
    modes = args.modes.split(",")
    extra = [f for f in MODE_FLAGS if getattr(args, f)]
    if extra:
        modes = ["+".join(sorted(parse_mode(m) | set(extra), key=MODE_FLAGS.index)) for m in modes]
    splices = (args.splice or ("device" if device.type == "cuda" else "host")).split(",")
    conf = DnnConfig(num_pdfs=p["num_pdfs"], hidden_layers=p["hidden_layers"],
                     hidden_dim=p["hidden_dim"])  # fmt: skip
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    print(f"device: {device.type} ({name or platform.machine()}), torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}")  # fmt: skip
    print(f"model: preset {args.preset}, {conf.hidden_layers} x {conf.hidden_dim}, "
          f"{conf.num_params() / 1e6:.1f}M params, {conf.num_pdfs} pdfs; "
          f"{args.steps} steps")  # fmt: skip
    if device.type == "cuda":
        n, dtype = 8192, torch.bfloat16
    else:
        n = conf.hidden_dim * 2
        dtype = torch.bfloat16 if any("bf16" in parse_mode(m) for m in modes) else torch.float32
    peak = matmul_flops(n, device, dtype)
    print(f"dense {dtype} matmul ({n}^2): {peak / 1e12:,.3f} TFLOP/s", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        per = 500
        feats = {f"u{i:05d}": rng.standard_normal((per, 40)).astype(np.float32)
                 for i in range(max(args.frames // per, 1))}  # fmt: skip
        targets = {u: rng.integers(0, conf.num_pdfs, len(x)).astype(np.int32)
                   for u, x in feats.items()}  # fmt: skip
        build_frame_store(Path(tmp) / "fs", feats, targets=targets, num_pdfs=conf.num_pdfs)
        store = FrameStore(Path(tmp) / "fs")
        combos = list(itertools.product(modes, batches, splices))
        for mode, batch, splice in combos:
            fps = time_training(store, conf, device, batch, parse_mode(mode), splice,
                                args.steps)  # fmt: skip
            flops = 3 * conf.flops_per_frame() * fps
            rows.append((mode, batch, splice, fps, flops))
            print(f"| {mode} | {batch} | {splice} | {fps:,.0f} | {flops / 1e12:,.3f} | "
                  f"{flops / peak:.3f} |", flush=True)  # fmt: skip
        if args.profile:
            mode, batch, splice = combos[0]
            print(f"\nprofile of {mode}, batch {batch}, splice {splice}:")
            time_training(store, conf, device, batch, parse_mode(mode), splice, args.steps,
                          profile=args.profile)  # fmt: skip
    print("\n| mode | batch | splice | frames/s | training TFLOP/s | ratio to the matmul |")
    print("|---|---|---|---|---|---|")
    for mode, batch, splice, fps, flops in rows:
        print(f"| {mode} | {batch} | {splice} | {fps:,.0f} | {flops / 1e12:,.3f} | "
              f"**{flops / peak:.3f}** |")  # fmt: skip
    if len(rows) == 1:
        print(f"ratio training / matmul FLOP/s: {rows[0][4] / peak:.3f}")


if __name__ == "__main__":
    main()
