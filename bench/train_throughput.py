"""DNN training throughput: frames/s and achieved FLOP/s as a share of the same
machine's dense matmul FLOP/s, measured side by side in one run.

    python bench/train_throughput.py [--preset cpu|paper] [--device cpu|cuda]
        [--steps N] [--batch-size B] [--bf16] [--compile] [--fused]

The model and the batches are the real ones (SpliceDnn on spliced windows gathered
from a frame store of random fp16 features); a training step's FLOPs are counted as
3x the forward pass (forward, input gradients, weight gradients). The reference is a
square fp32 (or bf16 with --bf16) matmul of the model's hidden size, timed in the
same process. Prints one line per figure and the ratio.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from asr_distill.features.framestore import FrameStore, build_frame_store
from asr_distill.nnet.model import DnnConfig, SpliceDnn

PRESETS = {
    "cpu": dict(hidden_layers=4, hidden_dim=512, num_pdfs=744, batch=256),
    "paper": dict(hidden_layers=8, hidden_dim=2560, num_pdfs=14000, batch=512),
}


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", choices=PRESETS, default="cpu")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--fused", action="store_true", help="fused SGD (CUDA)")
    args = ap.parse_args()
    p = PRESETS[args.preset]
    device = torch.device(args.device)
    batch = args.batch_size or p["batch"]
    conf = DnnConfig(num_pdfs=p["num_pdfs"], hidden_layers=p["hidden_layers"],
                     hidden_dim=p["hidden_dim"])  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        feats = {f"u{i:04d}": rng.standard_normal((500, 40)).astype(np.float32)
                 for i in range(200)}  # fmt: skip
        targets = {u: rng.integers(0, conf.num_pdfs, len(x)).astype(np.int32)
                   for u, x in feats.items()}  # fmt: skip
        build_frame_store(Path(tmp) / "fs", feats, targets=targets, num_pdfs=conf.num_pdfs)
        store = FrameStore(Path(tmp) / "fs")
        torch.manual_seed(0)
        model = SpliceDnn(conf).to(device)
        opt_kw = {"fused": True} if args.fused and device.type == "cuda" else {}
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, **opt_kw)
        step_model = torch.compile(model) if args.compile else model
        it = store.batches(batch, left=20, right=5, seed=0, labelled_only=True, drop_last=True)

        def step() -> None:
            b = next(it)
            x, y = b.inputs.to(device, non_blocking=True), b.targets.to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
                loss = torch.nn.functional.cross_entropy(step_model(x).float(), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        for _ in range(5):  # warm-up (and compilation)
            step()
        sync(device)
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        sync(device)
        elapsed = time.perf_counter() - start
    frames_s = args.steps * batch / elapsed
    train_flops = 3 * conf.flops_per_frame() * frames_s
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    peak = matmul_flops(conf.hidden_dim * 2, device, dtype)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    print(f"device: {device.type} ({name or platform.machine()}), torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}")  # fmt: skip
    print(f"model: preset {args.preset}, {conf.hidden_layers} x {conf.hidden_dim}, "
          f"{conf.num_params() / 1e6:.1f}M params; batch {batch}; bf16 {args.bf16}; "
          f"compile {args.compile}; fused {args.fused}")  # fmt: skip
    print(f"training: {frames_s:,.0f} frames/s, {train_flops / 1e9:,.1f} GFLOP/s")
    print(f"dense {dtype} matmul ({conf.hidden_dim * 2}^2): {peak / 1e9:,.1f} GFLOP/s")
    print(f"ratio training / matmul FLOP/s: {train_flops / peak:.3f}")


if __name__ == "__main__":
    main()
