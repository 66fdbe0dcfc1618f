"""``rnnkit serve`` as a child process on a free port, for scripts, benchmarks and tests.

    with started("runs/demo/best.pt", "--beam", "5") as (url, proc):
        httpx.post(url + "translate", json={"text": "9th of May, 2018"})

The server is stopped on exit however the block ends: SIGTERM (it answers what is
queued and exits), then SIGKILL if it is still there after ``stop_timeout`` seconds.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

__all__ = ["started"]

_URL = re.compile(r"(http://127\.0\.0\.1:\d+/)")


@contextmanager
def started(
    checkpoint: str | Sequence[str],
    *args: str,
    timeout: float = 60.0,
    stop_timeout: float = 30.0,
) -> Iterator[tuple[str, subprocess.Popen]]:
    """``rnnkit serve checkpoint --port 0 *args`` on 127.0.0.1 with one torch thread
    (several checkpoints: their ensemble); yields (its URL, the process) once it prints
    the URL. A server that exits or stays silent for ``timeout`` seconds raises
    RuntimeError with what it printed."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    paths = [checkpoint] if isinstance(checkpoint, str) else list(checkpoint)
    cmd = [sys.executable, "-m", "rnnkit", "serve", *paths, "--host", "127.0.0.1"]
    proc = subprocess.Popen(
        [*cmd, "--port", "0", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, env=env,
    )  # fmt: skip
    try:
        yield _url(proc, timeout), proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def _url(proc: subprocess.Popen, timeout: float) -> str:
    """The URL the server prints when it listens (its output read up to that line)."""
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
        m = _URL.search(line)
        if m:
            return m.group(1)
    raise RuntimeError("rnnkit serve did not start:\n" + "".join(seen[-20:]))
