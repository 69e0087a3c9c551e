"""Cost of distillation per training step, as ratios to plain cross-entropy, and how
the top-k soft-target cache's k changes the loss; measured side by side in one run.

    python bench/distill_cost.py [--exp-dir EXP --frames STORE] [--steps N] [--ks 10,50]
        [--device cuda] [--bf16] [--shape cpu|paper]

Three objectives train the same student architecture on the same batches: plain
cross-entropy (train-dnn), distillation from a make-soft-targets cache, and
distillation with the ensemble run online in the step (distill --teacher ...). A step
is the trainer's: the objective's loss, backward, SGD update. With --exp-dir (a
recipe's exp dir: ensemble/members.txt) and --frames (its frames/train) the teachers
and frames are the recipe's; without them, N random-init teachers of the cpu
preset's shape (``--shape paper``: the paper's 8 x 2560 over 14000 pdfs) on random
features. Then, on the same batches, the kd loss computed from caches of top-k in --ks
and from all num_pdfs probabilities is compared with the online loss (relative
difference). ``--device cuda --bf16`` times the steps on a GPU under bf16 autocast.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from asr_distill.features.framestore import FrameBatch, FrameStore
from asr_distill.features.framestore_build import build_frame_store
from asr_distill.nnet import losses
from asr_distill.nnet.distill import DistillConfig, DistillObjective
from asr_distill.nnet.model import DnnConfig, SpliceDnn
from asr_distill.nnet.soft_targets import SoftTargetCache, make_soft_targets
from asr_distill.nnet.train import Objective

SHAPES = {
    "cpu": (744, dict(hidden_layers=4, hidden_dim=512, left_context=20, right_context=5)),
    "paper": (14000, dict(hidden_layers=8, hidden_dim=2560, left_context=20, right_context=5)),
}


def random_setup(root: Path, members: int, frames: int, shape: str) -> tuple[Path, list]:
    """A frame store of random features and targets, and random-init teachers."""
    num_pdfs, dims = SHAPES[shape]
    rng = np.random.default_rng(0)
    feats, targets, per = {}, {}, 500
    for i in range(frames // per):
        feats[f"u{i:04d}"] = rng.normal(0, 1, (per, 40)).astype(np.float32)
        targets[f"u{i:04d}"] = rng.integers(0, num_pdfs, per).astype(np.int32)
    store = root / "frames"
    build_frame_store(store, feats, targets=targets, num_pdfs=num_pdfs)
    paths = []
    for m in range(members):
        torch.manual_seed(m + 1)
        model = SpliceDnn(DnnConfig(num_pdfs=num_pdfs, feat_dim=40, **dims))
        model.save(root / f"member{m}")
        paths.append(str(root / f"member{m}"))
    return store, paths


def time_steps(
    objectives: dict[str, Objective], make_student, batches: list, reps: int,
    device: torch.device, bf16: bool,
) -> dict[str, float]:  # fmt: skip
    """Seconds per training step of each objective: passes over the batches interleaved
    (objective A, B, C, A, B, C, ...) so machine noise hits all alike; the median pass
    after one warm-up pass each."""
    setups = {}
    for name, objective in objectives.items():
        student = make_student().to(device)
        model = objective.wrap(student).to(device)
        objective.setup(student, device)
        setups[name] = (objective, model, torch.optim.SGD(model.parameters(), lr=1e-4,
                                                          momentum=0.9))  # fmt: skip
    times: dict[str, list[float]] = {name: [] for name in objectives}
    for r in range(reps + 1):
        for name, (objective, model, opt) in setups.items():
            sync(device)
            start = time.perf_counter()
            for b in batches:
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    loss, _, _ = objective.loss(model, b, device, epoch=0)
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
            sync(device)
            if r:  # the first pass warms up
                times[name].append((time.perf_counter() - start) / len(batches))
    return {name: float(np.median(t)) for name, t in times.items()}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--exp-dir", default=None, help="recipe exp dir with ensemble/members.txt")
    ap.add_argument("--frames", default=None, help="its training frame store")
    ap.add_argument("--members", type=int, default=10, help="random teachers without --exp-dir")
    ap.add_argument("--steps", type=int, default=20, help="batches per timed pass")
    ap.add_argument("--reps", type=int, default=3, help="timed passes (median)")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--temperature", type=float, default=2.0)
    ap.add_argument("--ks", default="10,50", help="top-k caches compared with the online loss")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast in the timed steps")
    ap.add_argument("--shape", choices=SHAPES, default="cpu", help="random teachers' shape")
    ap.add_argument("--num-frames", type=int, default=20000, help="random store's frames")
    args = ap.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.exp_dir:
            exp = Path(args.exp_dir)
            teachers = (exp / "ensemble" / "members.txt").read_text().split()
            store_dir = Path(args.frames or exp.parent / "frames" / "train")
            source = f"teachers {exp}/ensemble ({len(teachers)}), frames {store_dir}"
        else:
            store_dir, teachers = random_setup(tmp, args.members, args.num_frames, args.shape)
            source = f"{len(teachers)} random-init teachers, random frames"
        store = FrameStore(store_dir)
        t_conf = SpliceDnn.load(teachers[0]).config
        student_conf = DnnConfig(num_pdfs=t_conf.num_pdfs, feat_dim=t_conf.feat_dim,
                                 hidden_layers=t_conf.hidden_layers, hidden_dim=t_conf.hidden_dim,
                                 left_context=t_conf.left_context,
                                 right_context=t_conf.right_context)  # fmt: skip
        # The same batches for every objective: the first --steps of epoch 0.
        it = store.batches(args.batch_size, left=t_conf.left_context,
                           right=t_conf.right_context, shuffle=True, seed=0, epoch=0)  # fmt: skip
        # Staged on the device once, as train-dnn's on-device splicing gives them.
        device = torch.device(args.device)
        batches = [FrameBatch(b.inputs.to(device), b.targets.to(device), b.frames)
                   for _, b in zip(range(args.steps), it, strict=False)]  # fmt: skip
        # The cache covers the batches' frames only (a subset store would change the
        # checksum), so make it over the whole store: time it, it is part of the cost.
        T = args.temperature
        ks = [int(k) for k in args.ks.split(",")]
        caches, cache_seconds = {}, {}
        for k in [*ks, t_conf.num_pdfs]:
            start = time.perf_counter()
            make_soft_targets(store_dir, teachers, tmp / f"cache_k{k}", temperature=T,
                              top_k=k, progress=False, device=args.device)  # fmt: skip
            cache_seconds[k] = time.perf_counter() - start
            caches[k] = tmp / f"cache_k{k}"

        def student() -> SpliceDnn:
            torch.manual_seed(0)
            model = SpliceDnn(student_conf)
            model.set_input_stats(*store.feature_stats())
            return model

        def kd(**kw) -> DistillObjective:
            return DistillObjective(DistillConfig(method="kd", temperature=T, **kw), store)

        k_time = max(ks)
        cached = kd(soft_targets=str(caches[k_time]), teachers=teachers)
        objectives = {
            "plain cross-entropy": Objective(),
            f"kd from the top-{k_time} cache": cached,
            f"kd, {len(teachers)} teachers online": kd(teachers=teachers),
        }
        seconds = time_steps(objectives, student, batches, args.reps, device, args.bf16)

        # Loss of each cache vs the online loss, same untrained student, same batches.
        s = student().to(device).eval()
        online = kd(teachers=teachers)
        online.setup(s, device)
        opened = {k: SoftTargetCache(path) for k, path in caches.items()}
        for cache in opened.values():
            cache.check(store, temperature=T, model_paths=teachers)
        loss_online, loss_k = 0.0, {k: 0.0 for k in caches}
        with torch.no_grad():
            for b in batches:
                x, y = b.inputs, b.targets
                logits = s(x)
                t_lp = online.teachers.log_probs(x, T)
                loss_online += float(losses.distillation_loss(
                    logits, y, teacher_log_probs=t_lp, temperature=T).total)  # fmt: skip
                for k, cache in opened.items():
                    probs, idx, tail = (t if t is None else t.to(device)
                                        for t in cache.gather(b.frames))  # fmt: skip
                    soft = ({"teacher_log_probs": probs.log()} if idx is None  # dense cache
                            else {"topk": (probs, idx, tail)})  # fmt: skip
                    loss_k[k] += float(losses.distillation_loss(
                        logits, y, temperature=T, **soft).total)  # fmt: skip

    where = (torch.cuda.get_device_name(device) if device.type == "cuda"
             else f"{platform.machine()}, {torch.get_num_threads()} threads")  # fmt: skip
    print(f"# {where}, bf16 {args.bf16}, torch "
          f"{torch.__version__}; {source}; student {student_conf.hidden_layers} x "
          f"{student_conf.hidden_dim}, {student_conf.num_pdfs} pdfs; batch "
          f"{args.batch_size}, {args.steps} steps x {args.reps} passes; T={T:g}")  # fmt: skip
    base = seconds["plain cross-entropy"]
    print("| objective | ms per step | ratio to plain CE |\n|---|---|---|")
    for name, sec in seconds.items():
        print(f"| {name} | {1000 * sec:.1f} | {sec / base:.2f} |")
    print(f"\ncache build (whole store, {store.num_frames} frames): " + ", ".join(
        f"k={k} {cache_seconds[k]:.1f} s" for k in caches))  # fmt: skip
    print("\n| soft targets | kd loss (sum over batches) | relative difference to online |")
    print("|---|---|---|")
    print(f"| online ensemble | {loss_online:.4f} | 0 |")
    for k in caches:
        rel = (loss_k[k] - loss_online) / loss_online
        name = "dense cache (all pdfs)" if opened[k].dense else f"top-{k} cache"
        print(f"| {name} | {loss_k[k]:.4f} | {rel:+.2e} |")


if __name__ == "__main__":
    main()
