"""Helpers of the serve tests: a tiny trained dates model (once per session) and a real
``rnnkit serve`` process on a free 127.0.0.1 port, always stopped."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from rnnkit.cli import main

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


def dates_checkpoint(factory: pytest.TempPathFactory) -> Path:
    """A tiny dates model trained by ``rnnkit train``, shared by the session's serve tests."""
    root = factory.getbasetemp() / "serve-dates"
    ckpt = root / "run" / "last.pt"
    if not ckpt.is_file():
        root.mkdir(parents=True, exist_ok=True)
        cfg = root / "dates.yaml"
        cfg.write_text(yaml.safe_dump(DATES), encoding="utf-8")
        assert main(["train", str(cfg), "--out", str(root / "run")]) == 0
    return ckpt


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@contextmanager
def serving(
    ckpt: Path, *args: str, timeout: float = 60.0
) -> Iterator[tuple[str, subprocess.Popen]]:
    """``rnnkit serve ckpt --port 0 *args`` until it prints its URL; yields (url, process).
    On exit: SIGTERM, then SIGKILL if it has not stopped within 30 s."""
    cmd = [sys.executable, "-m", "rnnkit", "serve", str(ckpt), "--port", "0", *args]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env()
    )
    try:
        url = _wait_url(proc, timeout)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def _wait_url(proc: subprocess.Popen, timeout: float) -> str:
    import selectors

    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline, seen = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
            break
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        m = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
        if m:
            return m.group(1)
    raise AssertionError("rnnkit serve did not start:\n" + "".join(seen))
