"""Helpers of the serve tests: a tiny trained dates model (once per version of the code)
and a real ``rnnkit serve`` process on a free 127.0.0.1 port, always stopped."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from rnnkit.cli import main
from rnnkit.serve.launch import started

DATES = {
    "data": {"task": "dates", "task_size": 3000, "task_dev": 50, "task_test": 50,
             "tokenizer": "char"},
    "model": {"cell": "gru", "emb_size": 24, "hidden_size": 48, "bidirectional": True,
              "attention": "bahdanau", "dropout": 0.0, "emb_dropout": 0.0},
    "train": {"batch_size": 32, "lr": 0.01, "scheduler": "none", "max_steps": 300,
              "validate_every": 300, "checkpoint_every": 300, "log_every": 100,
              "device": "cpu", "seed": 1},
    "decode": {"beam_size": 1, "max_len_a": 0.0, "max_len_b": 12, "batch_size": 64},
}  # fmt: skip


def dates_checkpoint() -> Path:
    """A tiny dates model trained by ``rnnkit train``, shared by the serve tests.

    Trained once for every test process of every session of the same code (the two
    xdist workers and the serial session of ``make test``): it is kept in a cache folder
    named by a digest of rnnkit's source, torch's version and the config, so a change
    to any of them trains it again."""
    key = hashlib.sha256(_source_digest() + yaml.safe_dump(DATES).encode()).hexdigest()[:16]
    cache = Path(tempfile.gettempdir()) / f"rnnkit-test-cache-{os.getuid()}"
    cache.mkdir(mode=0o700, exist_ok=True)
    root = cache / f"dates-{key}"
    with open(cache / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one trains, the others wait for its model
        if not (root / "run" / "last.pt").is_file():
            _forget_old(cache, keep=root)
            fresh = Path(tempfile.mkdtemp(dir=cache, prefix="dates-training-"))
            cfg = fresh / "dates.yaml"
            cfg.write_text(yaml.safe_dump(DATES), encoding="utf-8")
            assert main(["train", str(cfg), "--out", str(fresh / "run")]) == 0
            shutil.rmtree(root, ignore_errors=True)  # a half-written one (a killed session)
            fresh.rename(root)
        os.utime(root)  # in use: not old
    return root / "run" / "last.pt"


def _source_digest() -> bytes:
    import rnnkit

    h = hashlib.sha256(torch.__version__.encode())
    src = Path(rnnkit.__file__).parent
    for path in sorted(src.rglob("*.py")):
        h.update(str(path.relative_to(src)).encode() + b"\0" + path.read_bytes())
    return h.digest()


def _forget_old(cache: Path, keep: Path, days: float = 1.0) -> None:
    """Models of other code, untouched for ``days`` (no session can still be reading them)."""
    for old in cache.glob("dates-*"):
        if old != keep and time.time() - old.stat().st_mtime > 86400 * days:
            shutil.rmtree(old, ignore_errors=True)


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def serving(ckpt: Path, *args: str, timeout: float = 60.0) -> Any:
    """``rnnkit serve ckpt --port 0 *args`` until it prints its URL; yields (url, process).
    On exit: SIGTERM, then SIGKILL if it has not stopped within 30 s."""
    return started(str(ckpt), *args, timeout=timeout)
