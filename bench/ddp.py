"""Training throughput of 1 process against N processes (torchrun, DDP) on one machine.

The Multi30k recipe (configs/multi30k_de_en.yaml) for a fixed number of updates, each
process on one thread: target tokens per second of the whole job, the scaling efficiency
(tok/s of N processes / (N x tok/s of one)), and where the time of an update goes: one
process on a 1/N batch (the compute of one rank's share), and the all-reduce of a
gradient as large as the model, timed alone on the same backend.

    python bench/ddp.py [--nproc 2] [--steps 40] [--data-dir ../shared/data]

Needs DATA/multi30k (``rnnkit data multi30k --out DATA/multi30k``); says so and exits 0
without it. The dev set is cut to 32 sentences so the one validation stays short.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from rnnkit.checkpoint import load_checkpoint
from rnnkit.cli.commands import positive_int
from rnnkit.config import load_config

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "multi30k_de_en.yaml"


def train_job(
    nproc: int, steps: int, data: Path, work: Path, batch_tokens: int
) -> tuple[float, float, Path]:
    """Train ``steps`` updates in ``nproc`` processes; (tok/s, s/update) after the first
    logged interval (warm-up), and the output folder."""
    dev = work / "dev"
    for lang in ("de", "en"):
        lines = (data / "multi30k" / f"val.{lang}").read_text(encoding="utf-8").splitlines()
        (work / f"dev.{lang}").write_text("\n".join(lines[:32]) + "\n", encoding="utf-8")
    out = work / f"run{nproc}-{batch_tokens}"
    sets = [
        f"data.data_dir={data}",
        f"data.dev={dev}",
        f"train.max_steps={steps}",
        f"train.log_every={max(steps // 4, 1)}",
        f"train.validate_every={steps}",
        f"train.checkpoint_every={steps}",
        "decode.beam_size=1",
        f"train.batch_tokens={batch_tokens}",
    ]
    cmd = [sys.executable, "-m", "rnnkit", "train", str(CONFIG), "--out", str(out)]
    cmd += [a for s in sets for a in ("--set", s)] + ["--nproc", str(nproc)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    if proc.returncode != 0:
        sys.exit(f"training with {nproc} process(es) failed:\n{proc.stderr[-3000:]}")
    with open(out / "log.csv", newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "train"]
    tokens = seconds = 0.0
    for prev, row in zip(rows, rows[1:]):  # the first interval holds the warm-up
        dt = float(row["elapsed_s"]) - float(prev["elapsed_s"])
        tokens, seconds = tokens + float(row["tokens_per_s"]) * dt, seconds + dt
    updates = int(rows[-1]["step"]) - int(rows[0]["step"])
    return tokens / seconds, seconds / updates, out


def _allreduce_worker(rank: int, world: int, numel: int, port: int, result: Path) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    x = torch.ones(numel)
    dist.all_reduce(x)  # warm-up
    times = []
    for _ in range(5):
        dist.barrier()
        t0 = time.perf_counter()
        dist.all_reduce(x)
        times.append(time.perf_counter() - t0)
    if rank == 0:
        result.write_text(str(sorted(times)[len(times) // 2]))
    dist.destroy_process_group()


def allreduce_seconds(world: int, numel: int, work: Path) -> float:
    """Median time of one gloo all-reduce of ``numel`` float32 among ``world`` processes."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = work / "allreduce.txt"
    mp.spawn(_allreduce_worker, args=(world, numel, port, result), nprocs=world)
    return float(result.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--nproc", type=positive_int, default=2, help="processes of the parallel job")
    ap.add_argument("--steps", type=positive_int, default=40, help="updates per job")
    ap.add_argument(
        "--data-dir",
        default=os.environ.get("RNNKIT_DATA") or str(ROOT.parent / "shared" / "data"),
        help="folder holding multi30k/ (default: RNNKIT_DATA, then ../shared/data)",
    )
    args = ap.parse_args()
    data = Path(args.data_dir).resolve()
    if not (data / "multi30k" / "train.de").is_file():
        print(f"skipped: {data / 'multi30k'} not found (rnnkit data multi30k --out DIR)")
        return
    print(
        f"torch {torch.__version__}; {os.cpu_count()} CPUs; Multi30k recipe "
        f"({CONFIG.name}), {args.steps} updates, one thread per process"
    )
    with tempfile.TemporaryDirectory(prefix="rnnkit-ddp-") as tmp:
        work = Path(tmp)
        full = load_config(CONFIG).train.batch_tokens
        tps1, step1, out = train_job(1, args.steps, data, work, full)
        tpsn, stepn, _ = train_job(args.nproc, args.steps, data, work, full)
        _, share, _ = train_job(1, args.steps, data, work, full // args.nproc)
        state = load_checkpoint(out / "last.pt")["model"]
        # tied embeddings: one tensor under two names, all-reduced once
        numel = sum({v.data_ptr(): v.numel() for v in state.values()}.values())
        ar = allreduce_seconds(args.nproc, numel, work)
    print(f"{'processes':>9} {'tok/s':>8} {'s/update':>9}")
    print(f"{1:9d} {tps1:8.0f} {step1:9.3f}")
    print(f"{args.nproc:9d} {tpsn:8.0f} {stepn:9.3f}")
    print(f"speed-up {tpsn / tps1:.2f}x; scaling efficiency {tpsn / (args.nproc * tps1):.0%}")
    print(f"an update of the {args.nproc}-process job, {stepn:.3f} s:")
    print(
        f"  compute of one share (1 process, batch_tokens {full // args.nproc}): "
        f"{share:.3f} s ({share / stepn:.0%})"
    )
    print(
        f"  all-reduce of the gradients ({numel / 1e6:.1f} M float32, gloo): "
        f"{ar:.3f} s ({ar / stepn:.0%})"
    )
    rest = stepn - share - ar
    print(f"  the rest (waiting for the slower rank, shared memory bandwidth): {rest:.3f} s")


if __name__ == "__main__":
    main()
