#!/usr/bin/env bash
# The GPU figures of bench/RESULTS.md in one run, on one CUDA GPU (issue 18, item 4):
# the paper preset's training throughput and MFU against a bf16 dense matmul of the
# same run, without and with --bf16 / --compile / --fused-optimizer, at the preset's
# batch of 512 and larger; host vs on-GPU splicing; the distillation step's cost with
# 10 paper-size teachers online and from a cache. Run from the repo root:
#   bash bench/gpu.sh [OUT_DIR]
# (asr_distill importable: installed, or the repo root on PYTHONPATH).
set -uo pipefail
out=${1:-.}
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
t=(python3 bench/train_throughput.py --preset paper --device cuda --steps 200)
"${t[@]}" --modes fp32,bf16,bf16+fused,bf16+compile+fused --batch-size 512 --splice device \
  2>&1 | tee "$out/paper_modes.txt"
"${t[@]}" --modes bf16+fused --batch-size 512 --splice host 2>&1 | tee "$out/paper_host.txt"
"${t[@]}" --modes bf16+compile+fused --batch-size 2048,8192 --splice device \
  2>&1 | tee "$out/paper_batch.txt"
python3 bench/distill_cost.py --device cuda --bf16 --shape paper --batch-size 512 \
  --steps 20 --reps 3 --ks 50 --num-frames 20000 2>&1 | tee "$out/paper_distill.txt"
