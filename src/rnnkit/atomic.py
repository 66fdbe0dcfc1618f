"""Writing a file so that a reader never sees half of it, and a failure leaves nothing
behind: a temp file beside the target, then ``os.replace``.

What a user's path may be, and what happens:

- a regular file or a new name: replaced atomically; an existing file keeps its mode, a
  new one gets ``0o666`` less the umask (as ``open`` would make it);
- a symlink: the file it points to is replaced (the link stays a link);
- a device, FIFO or other special file (``/dev/null``, a named pipe, ``>(gzip > x.gz)``),
  or a file reached through ``/dev`` or ``/proc`` (``/dev/stdout`` redirected to a
  file): written into (appended to), not replaced;
- a folder, a missing folder that cannot be made, no permission: :class:`OutputError`,
  one line naming the path (the CLI prints it as ``rnnkit: error: ...``).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import signal
import stat
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

__all__ = [
    "OutputError",
    "check_folder",
    "check_writable",
    "link_trouble",
    "make_folder",
    "no_ctrl_c",
    "signals_held",
    "together",
    "written_bytes",
    "write_atomically",
]


class OutputError(ValueError):
    """An output path that cannot be written, named with the reason."""


def _umask() -> int:
    """This process's umask, read without changing it where Linux tells it."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (briefly process-wide)
    os.umask(mask)
    return mask


_SYSTEM = ("/dev/", "/proc/")  # /dev/stdout -> /proc/self/fd/1 -> whatever fd 1 is


def _existing_parent(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _target(path: str | Path) -> tuple[Path, os.stat_result | None, bool]:
    """The file to write, its stat (None for a new file), and whether it is written into
    (a special file, or a file reached through /dev or /proc, e.g. ``/dev/stdout``
    redirected to a file) rather than replaced (a symlink to a regular or missing file is
    resolved, the file it names replaced)."""
    p = Path(path)
    try:
        st: os.stat_result | None = os.stat(p)  # through links
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise OutputError(f"{path}: cannot write ({e.strerror})") from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        return p, st, True
    real = Path(os.path.realpath(p)) if p.is_symlink() else p
    system = str(p.absolute()).startswith(_SYSTEM) or str(real).startswith(_SYSTEM)
    return (p, st, True) if st is not None and system else (real, st, False)


def _standard_stream(st: os.stat_result | None) -> Any:
    """``sys.stdout`` / ``sys.stderr`` when ``st`` is the file that fd 1 / 2 is (given as
    ``/dev/stdout``, ``/proc/self/fd/1`` or its own name), else None."""
    for fd, stream in ((1, sys.stdout), (2, sys.stderr)):
        try:
            mine = os.fstat(fd)
        except OSError:
            continue
        if (
            st is not None
            and stream is not None
            and (mine.st_dev, mine.st_ino) == (st.st_dev, st.st_ino)
        ):
            return stream
    return None


def link_trouble(path: str | Path) -> str:
    """Why a symbolic link leads nowhere ("a symbolic link: too many levels of symbolic
    links", "...: no such file or directory"), or "" for anything else."""
    if not Path(path).is_symlink():
        return ""
    try:
        os.stat(path)
    except OSError as e:
        return f"a symbolic link: {str(e.strerror).lower()}"
    return ""


def check_folder(out: str | Path, prefix: str = "") -> None:
    """Raise :class:`OutputError` (``prefix`` before the message) for an output folder
    that cannot be made: a file, or a path through a file."""
    out = Path(out)
    if why := link_trouble(out):  # (mkdir said "File exists")
        raise OutputError(f"{prefix}{out}: cannot make this folder ({why})")
    parent = _existing_parent(out)
    if parent == out and not out.is_dir():
        raise OutputError(f"{prefix}{out}: is a file, not a folder")
    if not parent.is_dir():
        raise OutputError(f"{prefix}{out}: cannot make this folder ({parent} is a file)")


def make_folder(out: str | Path, prefix: str = "") -> None:
    """``mkdir -p out``, or :class:`OutputError` saying why not."""
    check_folder(out, prefix)
    try:
        Path(out).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{prefix}{out}: cannot make this folder ({e.strerror})") from None


def check_writable(path: str | Path) -> None:
    """Raise :class:`OutputError` now for a path :func:`write_atomically` could not write
    (before long work whose result would be lost): a folder, or a parent that is a file."""
    _checked(path)


def _checked(path: str | Path) -> tuple[Path, os.stat_result | None, bool]:
    """:func:`_target`, after the checks of :func:`check_writable`."""
    real, st, into = _target(path)
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise OutputError(f"{path}: is a folder, not a file")
    if str(path).endswith(("/", os.sep)):  # (Path() drops the slash: a file "outdir" was made)
        raise OutputError(f"{path}: names a folder (it ends with /); give a file name")
    if into:
        return real, st, into
    parent = _existing_parent(real.parent)
    if not parent.is_dir():
        raise OutputError(f"{path}: cannot write ({parent} is not a folder)")
    if not os.access(parent, os.W_OK | os.X_OK):  # the temp file and the rename need it
        why = f"{parent} is on a read-only file system" if _read_only(parent) else None
        raise OutputError(f"{path}: cannot write ({why or f'no permission in {parent}'})")
    return real, st, into


def _read_only(folder: Path) -> bool:
    """Whether ``folder`` is on a file system mounted read-only."""
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # (no statvfs: Windows)
        return False


def write_atomically(
    path: str | Path, write: Callable[[IO[Any]], object], binary: bool = False
) -> None:
    """Write ``path`` with ``write(f)`` (see the module docstring for what ``path`` may be)."""
    real, st, into = _checked(path)
    mode, enc = ("wb", None) if binary else ("w", "utf-8")
    std = _standard_stream(st) if into else None
    if std is not None:  # /dev/stdout: through our own stdout, which shares the shell's
        write(std.buffer if binary else std)  # offset (a file opened again wrote over it)
        std.flush()
        return
    try:
        if into:  # /dev/null, a pipe, /dev/stdout (appended to, as `>>` would want)
            with open(real, mode.replace("w", "a"), encoding=enc) as f:
                write(f)
            return
        real.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{real.name}.", suffix=".tmp", dir=real.parent)
    except OSError as e:
        raise OutputError(f"{path}: cannot write ({e.strerror})") from None
    batch = _batch.get()
    try:
        with os.fdopen(fd, mode, encoding=enc) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, stat.S_IMODE(st.st_mode) if st is not None else 0o666 & ~_umask())
        if batch is not None:  # put in place with the others (together())
            if real in batch:  # (written again: the last write is the one)
                Path(batch[real]).unlink(missing_ok=True)
            batch[real], tmp = tmp, ""
            return
        os.replace(tmp, real)
    except OSError as e:
        raise OutputError(f"{path}: cannot write ({e.strerror})") from None
    except RuntimeError as e:  # torch.save's zip writer: the OSError (a full disk) inside
        cause = e.__context__
        if not isinstance(cause, OSError):
            raise
        raise OutputError(f"{path}: cannot write ({cause.strerror})") from None
    finally:
        if tmp:
            Path(tmp).unlink(missing_ok=True)


_batch: contextvars.ContextVar[dict[Path, str] | None] = contextvars.ContextVar(
    "rnnkit_atomic_batch", default=None
)


@contextlib.contextmanager
def together() -> Iterator[None]:
    """The files :func:`write_atomically` writes inside are put in place together when
    the block ends, or none of them if it raises: a full disk at the third figure of
    ``inspect`` left the first two new beside an old page. Read one back inside with
    :func:`written_bytes`."""
    pending: dict[Path, str] = {}
    token = _batch.set(pending)
    try:
        yield
    except BaseException:
        for tmp in pending.values():
            Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        _batch.reset(token)
    for i, (real, tmp) in enumerate(pending.items()):
        try:
            os.replace(tmp, real)
        except OSError as e:
            for left in list(pending.values())[i:]:
                Path(left).unlink(missing_ok=True)
            raise OutputError(f"{real}: cannot write ({e.strerror})") from None


def written_bytes(path: str | Path) -> bytes:
    """What ``path`` holds, or will hold once the :func:`together` block around ends."""
    pending = _batch.get() or {}
    real = Path(os.path.realpath(path)) if Path(path).is_symlink() else Path(path)
    return Path(pending.get(real, path)).read_bytes()


@contextlib.contextmanager
def no_ctrl_c() -> Iterator[None]:
    """Ctrl-C (SIGINT) and SIGTERM ignored inside: for the last checkpoint of an
    interrupted run, which a second Ctrl-C would cut short (the file is written
    atomically, so an earlier one stays, but the steps since are lost). Only in the main
    thread; elsewhere a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    term = signal.signal(signal.SIGTERM, signal.SIG_IGN)  # (train's SIGTERM is a Ctrl-C)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler if before is None else before)
        signal.signal(signal.SIGTERM, signal.SIG_DFL if term is None else term)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Ctrl-C (SIGINT) and SIGTERM that arrive inside are held to its end, then delivered
    to the handlers in place: for a checkpoint write. torch's zip writer turned a Ctrl-C
    in the middle of ``torch.save`` into a RuntimeError, so training's Ctrl-C handler never
    ran and an interrupted run lost its ``last.pt``. Only in the main thread; elsewhere a
    no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []

    def hold(got: int, frame: object) -> None:
        held.append(got)

    # Nested so that a signal whose own handler is back in place, and raises, between two
    # of these calls still leaves the other handler put back (it was left holding).
    before_int = signal.signal(signal.SIGINT, hold)
    try:
        before_term = signal.signal(signal.SIGTERM, hold)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if before_term is None else before_term)
    finally:
        signal.signal(
            signal.SIGINT, signal.default_int_handler if before_int is None else before_int
        )
    for got in sorted(set(held), reverse=True):  # SIGTERM first: a stop by the system says so
        signal.raise_signal(got)  # (a handler that raises ends the loop: fine)
