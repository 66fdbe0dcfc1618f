"""The CUDA path of torchrun training: 2 ranks against 1 process on the same device.

The dates task, dropout 0, 40 updates: one process, then two ranks (torchrun) that
share the device, then the largest parameter difference between the two ``last.pt``
(equal to float rounding when the ranks take the one process's updates). On one GPU
the ranks share it over gloo (``RNNKIT_DIST_BACKEND=gloo``: NCCL refuses two ranks on
one GPU); with two or more GPUs, ``--backend nccl`` puts each rank on its own. On a
machine without CUDA it runs on the CPU (a dry run of the script).

    python bench/ddp_cuda.py [--backend gloo|nccl] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from rnnkit.checkpoint import load_checkpoint


def config(device: str) -> dict:
    return {
        "data": {"task": "dates", "task_size": 161, "task_dev": 16, "task_test": 16},
        "model": {"emb_size": 16, "hidden_size": 32, "dropout": 0.0, "emb_dropout": 0.0},
        "train": {  # as tests/test_distributed.py: a last batch of one sentence included
            "batch_size": 16,
            "lr": 0.003,
            "scheduler": "none",
            "max_steps": 40,
            "validate_every": 40,
            "checkpoint_every": 40,
            "log_every": 10,
            "patience": 0,
            "device": device,
            "graphs": "off",  # the DDP path alone
        },
        "decode": {"beam_size": 1, "max_len_a": 0.0, "max_len_b": 12},
    }


def run(cmd: list[str], env: dict[str, str], timeout: float = 240) -> float:
    t0 = time.time()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return time.time() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--backend", choices=("gloo", "nccl"), default="gloo")
    ap.add_argument("--out", help="keep the runs here (default: a temporary folder)")
    args = ap.parse_args()
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        ap.error(f"--out {args.out}: is a file, not a folder")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    work = Path(args.out or tempfile.mkdtemp(prefix="ddp_cuda_"))
    work.mkdir(parents=True, exist_ok=True)
    cfg = work / "dates.yaml"
    cfg.write_text(yaml.safe_dump(config(device)), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RNNKIT_DIST_TIMEOUT": "60"}
    env["NVIDIA_TF32_OVERRIDE"] = "0"  # float32 on both sides (cuDNN would take TF32)
    env["RNNKIT_DIST_BACKEND"] = args.backend
    train = [sys.executable, "-m", "rnnkit", "train", str(cfg), "--out"]
    t1 = run([*train, str(work / "one")], env)
    t2 = run([*train, str(work / "two"), "--nproc", "2"], env)  # torchrun --standalone
    a = load_checkpoint(work / "one" / "last.pt")["model"]
    b = load_checkpoint(work / "two" / "last.pt")["model"]
    diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    print(f"device {device}, backend {args.backend}: 1 process {t1:.1f} s, 2 ranks {t2:.1f} s")
    # a report, not a verdict: on a GPU the halves' kernels may sum in another order
    # (the CPU test asserts ≤ 1e-5; 4e-6 was seen there)
    verdict = "equal within 1e-5" if diff <= 1e-5 else "NOT within 1e-5"
    print(f"max parameter difference after 40 updates: {diff:.2e} ({verdict})")


if __name__ == "__main__":
    main()
