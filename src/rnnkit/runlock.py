"""One run folder, one training process: a lock on ``DIR/.lock`` while a run trains.

Two ``rnnkit train`` into the same ``--out`` (or a ``--resume`` while the run still
trains) used to both run to the end, their rows interleaved in ``log.csv`` and their
checkpoints overwriting each other. The process that writes (rank 0 under torchrun)
holds an exclusive ``flock`` on the folder's ``.lock`` for as long as it trains; another
is refused in one line naming the process. The kernel drops the lock when the process
ends, however it ends, so a killed run leaves nothing to clean up by hand.

Taking the lock also removes what a killed run's atomic writes left: hidden
``.NAME.XXXXXXXX.tmp`` files (:func:`rnnkit.atomic.write_atomically`), a checkpoint's size each.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from rnnkit.atomic import OutputError, make_folder

try:
    import fcntl
except ImportError:  # Windows: no lock (temp files are still removed)
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "LOCK",
    "claimed",
    "holder",
    "refuse_if_busy",
    "remove_run",
    "remove_temporaries",
    "run_files",
]

LOCK = ".lock"
_NO_LOCKS = {errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL}


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


def refuse_if_busy(out: str | Path) -> None:
    """Raise :class:`OutputError` when a process trains in ``out`` now (before a command
    removes or replaces files there)."""
    pid = holder(out)
    if pid is not None:
        raise _busy(Path(out), pid)


def run_files(out: Path) -> list[Path]:
    """The checkpoints of a run in ``out``: ``last.pt``, ``best.pt``, the kept steps."""
    named = [out / "last.pt", out / "best.pt", *sorted(out.glob("step-*.pt"))]
    return [f for f in named if f.is_file()]


def remove_run(out: Path) -> None:
    """A run's files in ``out`` (its checkpoints, ``log.csv``, TensorBoard events, its
    vocabularies and sentencepiece models) and the temp files of killed writes, for a
    run that starts again in its place (a word-level run kept a BPE run's models)."""
    made = [
        out / f"{side}_{name}" for side in ("src", "tgt") for name in ("vocab.txt", "spm.model")
    ]
    events = out.glob("tensorboard/events.out.tfevents.*")
    for old in [*run_files(out), out / "log.csv", *events, *made]:
        old.unlink(missing_ok=True)
    remove_temporaries(out)


# the temp files rnnkit.atomic makes for what a run writes: ".NAME." + tempfile's 8 random
# characters + ".tmp", NAME a run's file (a user's own ".notes.tmp" in the folder, or
# ".paper.20240101.tmp", is no business of ours: both were removed)
_RUN_FILE = r"(last|best|step-\d+)\.pt|log\.csv|(src|tgt)_(vocab\.txt|spm\.model)|(dev|test)\.[^.]+"
_TEMPORARY = re.compile(rf"\.({_RUN_FILE})\.[a-z0-9_]{{8}}\.tmp")


def remove_temporaries(out: Path) -> None:
    """The ``.NAME.XXXXXXXX.tmp`` files that writes killed half-way left in ``out``."""
    for tmp in out.glob(".*.tmp"):
        if _TEMPORARY.fullmatch(tmp.name):
            with contextlib.suppress(OSError):
                tmp.unlink()


@contextlib.contextmanager
def claimed(out: str | Path, writer: bool = True) -> Iterator[None]:
    """Make ``out`` and hold its lock while the block runs (``writer``: this process
    writes the run; the others of a torchrun job take nothing). Raises
    :class:`OutputError` when the folder cannot be made or another process trains there."""
    out = Path(out)
    new = not out.exists()
    make_folder(out, "--out ")
    if not writer:
        yield
        return
    if fcntl is None:  # (Windows)
        remove_temporaries(out)
        yield
        return
    try:
        f: IO[str] = open(out / LOCK, "a+", encoding="utf-8")  # noqa: SIM115 (held below)
    except OSError as e:
        raise OutputError(f"--out {out}: cannot write ({e.strerror})") from None
    _lock(f, out)
    done = False
    try:
        remove_temporaries(out)
        yield
        done = True
    finally:
        f.close()  # (the lock goes with it)
        if new and not done:  # a start that failed leaves no folder of its own making
            _remove_if_bare(out)


def _remove_if_bare(out: Path) -> None:
    """Remove ``out`` when it holds nothing but the lock file (what a failed start made)."""
    try:
        if [p.name for p in out.iterdir()] == [LOCK]:
            (out / LOCK).unlink()
            out.rmdir()
    except OSError:
        pass


def _lock(f: IO[str], out: Path) -> None:
    """Take the lock on the open ``f`` and write this process's pid in it; closes ``f``
    and raises :class:`OutputError` when another process holds it. On a file system
    without locks (NFS without lockd, Lustre's noflock) the run goes on unguarded."""
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        pid = f.read().strip()
        f.close()
        raise _busy(out, pid) from None
    except OSError as e:
        if e.errno in _NO_LOCKS:
            return
        f.close()
        raise OutputError(f"--out {out}: cannot lock {LOCK} ({e.strerror})") from None
    try:
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
    except OSError as e:
        f.close()
        raise OutputError(f"--out {out}: cannot write ({e.strerror})") from None
