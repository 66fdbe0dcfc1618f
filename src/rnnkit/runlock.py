"""One run folder, one training process: a lock on ``DIR/.lock`` while a run trains.

Two ``rnnkit train`` into the same ``--out`` (or a ``--resume`` while the run still
trains) used to both run to the end, their rows interleaved in ``log.csv`` and their
checkpoints overwriting each other. The process that writes (rank 0 under torchrun)
holds an exclusive ``flock`` on the folder's ``.lock`` for as long as it trains; another
is refused in one line naming the process. The kernel drops the lock when the process
ends, however it ends, so a killed run leaves nothing to clean up by hand.

Taking the lock also removes what a killed run's atomic writes left: hidden
``.NAME.*.tmp`` files (:func:`rnnkit.atomic.write_atomically`), a checkpoint's size each.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from rnnkit.atomic import OutputError, make_folder

try:
    import fcntl
except ImportError:  # Windows: no lock (nothing else changes)
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK", "claimed", "holder", "remove_temporaries"]

LOCK = ".lock"


def _busy(out: Path, pid: str) -> OutputError:
    who = f"pid {pid}" if pid else "another process"
    return OutputError(
        f"--out {out}: a run is training there now ({who}); wait for it to end, "
        "or give another --out"
    )


def holder(out: str | Path) -> str | None:
    """The pid (or "") of a process training in ``out`` now; None when none is."""
    path = Path(out) / LOCK
    if fcntl is None or not path.is_file():
        return None
    try:
        with open(path, "a+", encoding="utf-8") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                return f.read().strip()
            fcntl.flock(f, fcntl.LOCK_UN)
    except OSError:
        return None
    return None


def remove_temporaries(out: Path) -> None:
    """The ``.NAME.*.tmp`` files that writes killed half-way left in ``out``."""
    for tmp in out.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            tmp.unlink()


@contextlib.contextmanager
def claimed(out: str | Path, writer: bool = True) -> Iterator[None]:
    """Make ``out`` and hold its lock while the block runs (``writer``: this process
    writes the run; the others of a torchrun job take nothing). Raises
    :class:`OutputError` when the folder cannot be made or another process trains there."""
    out = Path(out)
    make_folder(out, "--out ")
    if not writer or fcntl is None:
        yield
        return
    try:
        f: IO[str] = open(out / LOCK, "a+", encoding="utf-8")  # noqa: SIM115 (held below)
    except OSError as e:
        raise OutputError(f"--out {out}: cannot write ({e.strerror})") from None
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
    except BlockingIOError:
        f.seek(0)
        pid = f.read().strip()
        f.close()
        raise _busy(out, pid) from None
    except OSError as e:
        f.close()
        raise OutputError(f"--out {out}: cannot write ({e.strerror})") from None
    try:
        remove_temporaries(out)
        yield
    finally:
        f.close()  # (the lock goes with it)
