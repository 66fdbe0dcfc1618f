"""Helpers of the serve tests: a tiny trained dates model (once per session) and a real
``rnnkit serve`` process on a free 127.0.0.1 port, always stopped."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
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


def serving(ckpt: Path, *args: str, timeout: float = 60.0) -> Any:
    """``rnnkit serve ckpt --port 0 *args`` until it prints its URL; yields (url, process).
    On exit: SIGTERM, then SIGKILL if it has not stopped within 30 s."""
    return started(str(ckpt), *args, timeout=timeout)
