"""How ``rnnkit`` ends: each command's errors as one line on stderr and an exit status
(2 a bad input, 1 an error, 130 Ctrl-C), and what one of several processes (torchrun,
``--nproc``) does on its way out so that the job reports the process that failed first."""

from __future__ import annotations

import argparse
import errno
import sys
import time
from typing import Any

from rnnkit.cli.commands import UsageError, missing_package, out_of_memory
from rnnkit.job import JobError, rank_and_world

__all__ = ["OTHER_RANK_WAIT", "run_command"]

# Seconds a process other than process 0 of several waits before it exits on an error:
# an error every process meets (a diverged loss) is then seen first in process 0, which
# has said it on the terminal, and not said again from another's log.
OTHER_RANK_WAIT = 1.0


def _say(message: object) -> None:
    print(f"rnnkit: error: {message}", file=sys.stderr)


def _other_rank() -> bool:
    try:
        rank, world = rank_and_world()
    except JobError:  # (said by the command)
        return False
    return world > 1 and rank != 0


def run_command(args: argparse.Namespace) -> int:
    """Run the parsed command ``args.func(args)``; see the module docstring."""
    status = 1
    try:
        status = _run(args)
        return status
    except ModuleNotFoundError as e:  # a declared dependency missing (a broken install)
        said = missing_package(e, args.command)
        if said is None:
            raise
        _say(said)
        return 1
    finally:
        if status not in (0, 130) and _other_rank():  # (an uncaught error too)
            time.sleep(OTHER_RANK_WAIT)


class StdoutError(OSError):
    """Standard output could not be written (closed, or its disk full)."""


class _Stdout:
    """``sys.stdout`` while a command runs: a write that fails raises :class:`StdoutError`
    (said as one line), a closed pipe stays a BrokenPipeError (``| head``: status 0)."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def _call(self, method: str, *args: Any) -> Any:
        if self.stream is None:  # started with stdout closed (>&-)
            raise StdoutError("cannot write to standard output: it is closed")
        try:
            return getattr(self.stream, method)(*args)
        except BrokenPipeError:
            raise
        except OSError as e:
            raise StdoutError(f"cannot write to standard output: {e.strerror or e}") from None

    def write(self, text: str) -> int:
        return int(self._call("write", text))

    def flush(self) -> None:
        self._call("flush")

    def isatty(self) -> bool:
        return self.stream is not None and bool(self.stream.isatty())

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def _run(args: argparse.Namespace) -> int:
    stdout, sys.stdout = sys.stdout, _Stdout(sys.stdout)  # type: ignore[assignment]
    try:
        return _run_command(args)
    finally:
        sys.stdout = stdout


# A write that failed for the disk, not for the path given (status 1, as for standard
# output; a path that cannot be written, a bad input, is 2): full, over quota, failing.
_DEVICE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG}


def _device_failed(e: BaseException) -> bool:
    """``e`` raised over an OSError of the disk: its cause or context, or theirs (torch's
    zip writer turns a full disk into a RuntimeError: the OSError is a level deeper)."""
    seen = e.__cause__ or e.__context__
    for _ in range(8):  # (a few levels down the chain at most)
        if seen is None:
            return False
        if isinstance(seen, OSError) and seen.errno in _DEVICE_ERRNOS:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _run_command(args: argparse.Namespace) -> int:
    from rnnkit import graphs
    from rnnkit.atomic import OutputError
    from rnnkit.checkpoint import CheckpointError
    from rnnkit.config import ConfigError
    from rnnkit.data import DataError
    from rnnkit.update import Diverged

    try:
        graphs.get_mode()  # RNNKIT_GRAPHS: a bad value is an error before any work
    except ValueError as e:
        _say(e)
        return 2
    try:
        return int(args.func(args))
    except (UsageError, ConfigError, DataError, CheckpointError, OutputError, JobError) as e:
        _say(e)
        return 1 if _device_failed(e) else 2
    except Diverged as e:
        _say(e)
        return 1
    except KeyboardInterrupt:
        print("rnnkit: interrupted", file=sys.stderr)
        return 130
    except MemoryError as e:
        _say(out_of_memory(e))
        return 1
    except RuntimeError as e:  # under torchrun: a peer that stopped breaks the collectives
        if "can't allocate memory" in str(e) or "out of memory" in str(e):  # torch's words
            _say(out_of_memory(e))
            return 1
        from rnnkit.distributed import PEER_LOST_WAIT, peer_error

        said = peer_error(e)
        if said is None:
            raise
        if said:  # (under --nproc the launcher says which process stopped, and why)
            _say(said)
        time.sleep(PEER_LOST_WAIT)  # so that the launcher sees the process that failed first
        return 1
    except BrokenPipeError:
        return 0
    except StdoutError as e:
        _say(e)
        return 1
    finally:  # under torchrun (rnnkit.distributed made the group): leave it, so that
        if "rnnkit.distributed" in sys.modules:  # no gloo thread aborts this process
            from rnnkit.distributed import leave_group

            leave_group()
