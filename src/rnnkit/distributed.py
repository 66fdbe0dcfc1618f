"""Several processes, one model: ``rnnkit train`` under torchrun (DistributedDataParallel).

    torchrun --standalone --nproc_per_node N -m rnnkit train CONFIG --out DIR
    rnnkit train CONFIG --out DIR --nproc N        # the same (rnnkit.launcher)

What a run means does not change with the number of processes N (the ranks):

- the config's batch is the *global* batch. Every rank builds the same list of
  length-bucketed batches from the same seed and takes rows ``rank, rank + N, ...`` of
  each (:func:`shard`);
- every rank's summed loss is divided by the global batch's target-token count, and the
  gradients are *summed* over the ranks (:func:`_sum_hook`, not DDP's mean), so the
  update is the one that one process computes on the whole batch, and N ranks take
  exactly the optimizer steps that one process takes;
- a rank left without a row (a last batch of fewer sentences than ranks) computes the
  loss of a borrowed row times zero: it joins the all-reduce and adds nothing.

Backend gloo on CPU, NCCL on CUDA with one GPU per rank (``cuda:LOCAL_RANK``). Rank 0
alone writes checkpoints, logs and validation output; the others wait for its
validation result, which they need for the learning-rate schedule and early stopping.
Collectives time out after ``RNNKIT_DIST_TIMEOUT`` seconds (default 1800: a validation
on rank 0 must fit in it); the launcher ends the whole job as soon as one rank fails.

Fault injection, for the tests only: ``RNNKIT_FAULT=RANK@STEP`` makes that rank raise
a ``RuntimeError`` when it starts update STEP.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import gc
import math
import os
import random
import signal
import sys
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel

from rnnkit.config import ConfigError
from rnnkit.data import Batch
from rnnkit.devices import pick_device as pick_device  # (importable from here)

__all__ = [
    "Dist",
    "no_sync",
    "pick_device",
    "restore_rng",
    "rng_state",
    "seed_rank",
    "set_rng_state",
    "setup",
    "shard",
    "wrap",
]

FAULT_ENV = "RNNKIT_FAULT"
TIMEOUT_ENV = "RNNKIT_DIST_TIMEOUT"
BACKEND_ENV = "RNNKIT_DIST_BACKEND"  # nccl | gloo; default: nccl on CUDA, gloo on the CPU


def rng_state() -> dict[str, Any]:
    """This process's torch (and CUDA) and Python RNG states."""
    s: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        s["cuda"] = torch.cuda.get_rng_state_all()
    return s


def set_rng_state(s: dict[str, Any]) -> None:
    torch.set_rng_state(s["torch"])
    random.setstate(s["python"])
    if "cuda" in s and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def seed_rank(seed: int, d: Dist) -> None:
    """Ranks other than 0 draw their own dropout masks (DDP starts every rank from rank
    0's weights, so the model was built from ``seed`` everywhere)."""
    if d.rank > 0:
        torch.manual_seed(seed + 1_000_003 * d.rank)
        random.seed(seed + 1_000_003 * d.rank)


def restore_rng(states: list[dict[str, Any]], d: Dist) -> bool:
    """This rank's RNG states from a checkpoint's (one per rank that wrote it).

    Returns:
        False when another number of processes wrote them: rank 0 then takes the first,
        the other ranks keep theirs, and dropout masks differ from an uninterrupted run.
    """
    if len(states) == d.world:
        set_rng_state(states[d.rank])
        return True
    if d.main:
        set_rng_state(states[0])
    return False


@dataclass
class Dist:
    """This process's place in the job; with ``world == 1`` every method is a no-op."""

    rank: int = 0
    world: int = 1
    fault_step: int | None = None  # RNNKIT_FAULT: raise when this rank starts this update

    @property
    def on(self) -> bool:
        return self.world > 1

    def resumed_note(self, wrote: int) -> str | None:
        """What ``--resume`` says when ``wrote`` processes wrote ``last.pt`` (None: as
        many as now)."""
        if wrote == self.world:
            return None
        return (
            f"note: last.pt was written by {wrote} process{'es' * (wrote > 1)}, this run has "
            f"{self.world}: it goes on from there, with other dropout masks than one of "
            f"{wrote} would draw"
        )

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes."""
        return self.rank == 0

    def sum(self, x: Tensor) -> Tensor:
        """``x`` summed over the ranks (a new tensor)."""
        x = x.detach().clone()
        if self.on:
            dist.all_reduce(x)
        return x

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on one."""
        return bool(self.sum(torch.tensor(float(flag), device=_collective_device())) > 0)

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.on:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0, device=_collective_device())
        return box[0]

    def gather(self, obj: Any) -> list[Any] | None:
        """Every rank's ``obj``, in rank order, on rank 0 (None on the others)."""
        if not self.on:
            return [obj]
        out: list[Any] | None = [None] * self.world if self.main else None
        dist.gather_object(obj, out, dst=0)
        return out

    def check_fault(self, step: int) -> None:
        if self.fault_step == step:
            raise RuntimeError(f"injected fault ({FAULT_ENV}) on rank {self.rank} at step {step}")

    def close(self) -> None:
        """Leave the job: wait for the others, then destroy the process group (after
        the DDP wrapper: a gloo thread outliving its group aborts the process)."""
        if self.on and dist.is_initialized():
            gc.collect()
            dist.barrier()
            dist.destroy_process_group()


def _collective_device() -> torch.device:
    """Where small tensors of a collective live: NCCL needs them on this rank's GPU."""
    if dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _fault_step(rank: int) -> int | None:
    spec = os.environ.get(FAULT_ENV, "")
    if not spec:
        return None
    where, _, step = spec.partition("@")
    if not (where.strip().isdigit() and step.strip().isdigit()):
        raise ConfigError(f"{FAULT_ENV}={spec}: RANK@STEP, two whole numbers (e.g. 1@3)")
    return int(step) if int(where) == rank else None


def dist_timeout() -> float:
    """Seconds a collective (and the first rendezvous) waits: ``RNNKIT_DIST_TIMEOUT``, by
    default 1800. Raises :class:`ConfigError` for a value that is not a number in
    (0, 10^7]."""
    raw = os.environ.get(TIMEOUT_ENV, "1800")
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds <= 1e7:  # (nan fails too)
        raise ConfigError(f"{TIMEOUT_ENV}={raw}: seconds, a number > 0 (default 1800)")
    return seconds


LAUNCHED_ENV = "RNNKIT_NPROC"  # set by rnnkit.launcher for the processes it starts

# Seconds a process that saw another stop waits before it exits (the launcher, torchrun's
# agent, then sees the process that failed first alone, and reports that one).
PEER_LOST_WAIT = 2.0


def peer_error(e: RuntimeError) -> str | None:
    """One line for what a collective raises when another process stopped or hung
    (under torchrun; "" for a stop under ``--nproc``, whose launcher reports the process
    that stopped), else None."""
    rank, world = os.environ.get("RANK", "0"), int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and "by peer" in str(e):  # ("" under --nproc: the launcher says it)
        launched = os.environ.get(LAUNCHED_ENV) == "1"
        return "" if launched else f"process {rank}: another process stopped (see its error)"
    if world > 1 and "timed out" in str(e).lower():
        return (
            f"process {rank}: another process did not answer within {TIMEOUT_ENV} "
            "seconds (it hung or stopped)"
        )
    return None


def leave_group() -> None:
    """Leave the process group, if in one (best effort, on the way out: a process that
    exits in it may have its gloo threads abort it, and torchrun then blames it)."""
    try:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    except Exception:  # noqa: BLE001
        pass


def check_environment(device_name: str = "auto", world: int = 2) -> None:
    """``RNNKIT_DIST_TIMEOUT``, ``RNNKIT_DIST_BACKEND`` and ``train.device`` as
    :func:`setup` will read them in ``world`` processes (a :class:`ConfigError` before
    any process starts)."""
    dist_timeout()
    _backend(pick_device(device_name), device_name, world)


def cores_note(device_name: str, world: int) -> str | None:
    """A note when ``world`` processes training on the CPU outnumber its cores (each
    takes one thread: they share the cores, which is slower than one per core)."""
    if pick_device(device_name).type != "cpu":
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if not cores or world <= cores:
        return None
    return (
        f"note: --nproc {world} on {cores} CPU core(s): the processes share the cores "
        f"(one thread each); at most {cores} is faster"
    )


def _backend(device: torch.device, device_name: str, world: int) -> str:
    """The backend of ``world`` ranks training on ``device`` (``train.device`` is
    ``device_name``): nccl on CUDA, gloo elsewhere, unless ``RNNKIT_DIST_BACKEND`` says."""
    if device.type == "cuda" and device.index is not None:
        raise ConfigError(
            f"train.device={device_name} names one GPU, but {world} processes train: "
            "use cuda or auto (each rank takes cuda:LOCAL_RANK)"
        )
    backend = os.environ.get(BACKEND_ENV) or ("nccl" if device.type == "cuda" else "gloo")
    if backend not in ("nccl", "gloo") or (backend == "nccl" and device.type != "cuda"):
        why = "" if backend != "nccl" else f" (nccl needs CUDA; this run trains on {device})"
        cuda = ", or nccl on CUDA" if device.type == "cuda" or backend != "nccl" else ""
        raise ConfigError(f"{BACKEND_ENV}={backend}: use gloo{cuda}{why}")
    return backend


def _end_with_launcher() -> None:
    """Have Linux send this rank SIGTERM when its launcher dies: torchrun starts ranks in
    sessions of their own, so a SIGKILLed launcher left them training on, writing into
    the run folder. (Elsewhere: nothing.)"""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before the call took effect
        os.kill(os.getpid(), signal.SIGTERM)


def setup(device_name: str) -> tuple[Dist, torch.device]:
    """Join the job torchrun started (``WORLD_SIZE`` > 1 in the environment), or not.

    Args:
        device_name: ``train.device``. ``auto`` and ``cuda`` give each rank the GPU
            ``cuda:LOCAL_RANK`` (NCCL); ``cpu`` or no GPU give gloo. With
            ``RNNKIT_DIST_BACKEND=gloo`` ranks may share GPUs (round robin), e.g. two
            ranks on a one-GPU machine for a correctness run.
    Returns:
        this process's :class:`Dist` and its device.
    Raises:
        ConfigError: ``cuda:N`` with several ranks (each rank takes its own GPU).
    """
    from rnnkit.job import rank_and_world

    rank, world = rank_and_world()
    raw = os.environ.get("LOCAL_RANK", "0")
    if not raw.isdigit():
        raise ConfigError(f"LOCAL_RANK={raw}: a whole number (torchrun sets it)")
    local_rank = int(raw)
    if world <= 1:
        return Dist(), pick_device(device_name)
    device = pick_device(device_name)
    backend = _backend(device, device_name, world)
    if device.type == "cuda":
        gpus = torch.cuda.device_count()
        if local_rank >= gpus and backend == "nccl":  # NCCL refuses two ranks on one GPU
            raise ConfigError(
                f"process {local_rank} of this machine has no GPU of its own ({gpus} GPU(s)): "
                f"start at most {gpus} per machine, or set {BACKEND_ENV}=gloo to share them"
            )
        device = torch.device("cuda", local_rank % gpus)
        torch.cuda.set_device(device)
    timeout = datetime.timedelta(seconds=dist_timeout())
    _end_with_launcher()
    dist.init_process_group(backend, timeout=timeout)
    return Dist(rank, world, _fault_step(rank)), device


def _sum_hook(group, bucket):  # type: ignore[no-untyped-def]
    """All-reduce a bucket of gradients as a sum (DDP's default divides by N).

    No annotations: DDP checks them at run time, and postponed (string) annotations
    fail that check."""
    work = dist.all_reduce(bucket.buffer(), group=group, async_op=True)
    return work.get_future().then(lambda fut: fut.value()[0])


def wrap(model: torch.nn.Module, d: Dist, device: torch.device) -> torch.nn.Module:
    """``model`` in DistributedDataParallel (gradients summed) when several ranks
    train; ``model`` itself otherwise. DDP starts every rank from rank 0's weights."""
    if not d.on:
        return model
    ids = [device.index] if device.type == "cuda" else None
    ddp = DistributedDataParallel(model, device_ids=ids)
    ddp.register_comm_hook(None, _sum_hook)
    return ddp


def no_sync(net: torch.nn.Module, skip: bool) -> contextlib.AbstractContextManager[Any]:
    """DDP's ``no_sync()`` when ``skip`` (an accumulated batch that is not the last):
    the gradients add up locally and are all-reduced once, with the last one."""
    if skip and isinstance(net, DistributedDataParallel):
        return net.no_sync()
    return contextlib.nullcontext()


def shard(batch: Batch, rank: int, world: int, pad_id: int) -> tuple[Batch, bool]:
    """This rank's share of a global batch: rows ``rank, rank + world, ...``, padding
    trimmed to the widest of them (``ntokens`` counts the share's target tokens).

    Returns:
        (the share, True) or, when the batch has no row for this rank, (its first row,
        False): a stand-in whose loss the caller multiplies by zero.
    """
    if world == 1:
        return batch, True
    rows = torch.arange(rank, len(batch), world)
    real = len(rows) > 0
    if not real:
        rows = torch.arange(1)
    src_lengths = batch.src_lengths[rows]
    tgt = batch.tgt[rows]
    tgt = tgt[:, : int((tgt != pad_id).sum(1).max())]  # (B_r, T_r)
    share = Batch(
        src=batch.src[rows, : int(src_lengths.max())],  # (B_r, S_r)
        src_lengths=src_lengths,
        tgt=tgt,
        indices=batch.indices[rows],
        ntokens=int((tgt[:, 1:] != pad_id).sum()),
    )
    return share, real
