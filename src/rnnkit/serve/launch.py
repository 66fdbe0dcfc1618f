"""``rnnkit serve`` as a child process on a free port, for scripts, benchmarks and tests.

    with started("runs/demo/best.pt", "--beam", "5") as (url, proc):
        httpx.post(url + "translate", json={"text": "9th of May, 2018"})

The server is stopped on exit however the block ends: SIGTERM (it answers what is
queued and exits), then SIGKILL if it is still there after ``stop_timeout`` seconds.
What it prints after its URL is read as it comes (a full pipe would stall the server at
its next log line); ``proc.printed()`` gives the last lines.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

__all__ = ["Server", "started"]

_URL = re.compile(r"(http://127\.0\.0\.1:\d+/)")
KEPT = 10_000  # lines of the server's output kept for printed()


class Server(subprocess.Popen):  # type: ignore[type-arg]
    """The server's process. Once it has printed its URL, a thread reads the rest of
    its output as it comes and keeps the last :data:`KEPT` lines."""

    def drain(self) -> None:
        self._kept: deque[str] = deque(maxlen=KEPT)
        self._reader = threading.Thread(target=self._read, daemon=True, name="serve-output")
        self._reader.start()

    def _read(self) -> None:
        assert self.stdout is not None
        for line in self.stdout:
            self._kept.append(line.rstrip("\n"))

    def printed(self) -> list[str]:
        """The lines printed after the URL (all of them once the server has exited)."""
        if self.poll() is not None:
            self._reader.join(10)
        return list(self._kept)


@contextmanager
def started(
    checkpoint: str | Sequence[str],
    *args: str,
    timeout: float = 60.0,
    stop_timeout: float = 30.0,
) -> Iterator[tuple[str, Server]]:
    """``rnnkit serve checkpoint --port 0 *args`` on 127.0.0.1 with one torch thread
    (several checkpoints: their ensemble); yields (its URL, the process) once it prints
    the URL. A server that exits or stays silent for ``timeout`` seconds raises
    RuntimeError with what it printed."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    paths = [checkpoint] if isinstance(checkpoint, str) else list(checkpoint)
    cmd = [sys.executable, "-m", "rnnkit", "serve", *paths, "--host", "127.0.0.1"]
    proc = Server(
        [*cmd, "--port", "0", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, env=env,
    )  # fmt: skip
    try:
        url = _url(proc, timeout)
        proc.drain()
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        reader = getattr(proc, "_reader", None)
        if reader is not None:
            reader.join(10)
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
