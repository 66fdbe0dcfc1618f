"""The ``rnnkit`` command line: thin; it parses arguments and calls the library.

Errors in what the user gave (config, data, checkpoint, input text) end with a one-line
``rnnkit: error: ...`` on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Sequence

from rnnkit.cli.commands import UsageError as UsageError  # (importable from here)
from rnnkit.cli.commands import as_ctrl_c

# Names defined here before the split stay importable from rnnkit.cli.
from rnnkit.cli.commands import positive_int as positive_int
from rnnkit.cli.commands import read_text as read_text
from rnnkit.cli.commands import write_text as write_text
from rnnkit.cli.errors import run_command
from rnnkit.cli.parsers import build_parser as build_parser
from rnnkit.cli.parsers import empty_path

__all__ = ["console", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """``rnnkit ARGV``: the command's exit status; its errors as one line each
    (:func:`rnnkit.cli.errors.run_command`)."""
    seen: list[int] = []  # (where Python's own Ctrl-C handler is the one in place)
    with as_ctrl_c(
        signal.SIGINT, seen, signal.getsignal(signal.SIGINT) is signal.default_int_handler
    ):
        try:
            args = build_parser().parse_args(argv)
            if bad := empty_path(args):
                print(f"rnnkit: error: {bad}", file=sys.stderr)
                return 2
            early = getattr(args, "early", None)  # (serve's signal handlers, before torch)
            if early is None or threading.current_thread() is not threading.main_thread():
                return run_command(args)
            signals = [signal.SIGTERM, *([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])]
            before = {sig: signal.getsignal(sig) for sig in signals}
            try:
                early(args)
                return run_command(args)
            finally:  # (main() called in a process that goes on: its handlers as they were)
                for sig, handler in before.items():
                    signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        except KeyboardInterrupt:  # Ctrl-C while torch loads, before the command's own handler
            print("rnnkit: interrupted", file=sys.stderr)
            return 130
        except Exception:
            if not seen:
                raise
            # a Ctrl-C that a library swallowed in the middle of an import (numpy's, in
            # serve's first second) left a half-made module that failed later: a traceback
            print("rnnkit: interrupted", file=sys.stderr)
            return 130


def console() -> int:
    """The ``rnnkit`` command (and ``python -m rnnkit``): :func:`main` of ``sys.argv``.
    Once the command is over, Ctrl-C is ignored while Python shuts down: a second or
    third Ctrl-C after an interrupted run had stopped landed in torch's exit handlers as
    "Exception ignored in atexit callback" and a traceback, and the status was SIGINT's."""
    _utf8_stdout()
    try:
        status = main()
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    return _leave(status)


def _utf8_stdout() -> None:
    """stdout and stderr in UTF-8, as every file rnnkit writes (and reads: stdin too). Where
    Python's I/O encoding was ASCII or Latin-1 (``PYTHONIOENCODING``, a C locale without
    UTF-8 mode), a translation with a letter it lacks was a UnicodeEncodeError traceback.
    Each keeps its error handler (a C locale's ``surrogateescape`` writes the bytes of a
    path that is not UTF-8 as they came)."""
    for stream in (sys.stdout, sys.stderr):
        encoding = str(getattr(stream, "encoding", "utf-8") or "utf-8")
        if encoding.lower().replace("-", "").replace("_", "") != "utf8":
            with contextlib.suppress(AttributeError, ValueError, OSError):
                stream.reconfigure(encoding="utf-8", errors=stream.errors)  # type: ignore[union-attr]


def _leave(status: int) -> int:
    """End the process now that the command is over, with ``status``. Python's own exit
    then tore torch and the server's libraries down object by object: 0.7-0.9 s of CPU
    after every command (a third of ``import torch``). What that exit does that matters is
    done here, in its order: stop thread pools and wait for threads that are not daemons
    (``threading._shutdown``, as Python's exit does), run the exit handlers
    (``atexit``), flush stdout and stderr; then ``os._exit``."""
    shutdown = getattr(threading, "_shutdown", None)  # what Python's exit calls: the
    if shutdown is not None:  # hooks that stop thread pools, then waits for non-daemon threads
        shutdown()
    else:
        for thread in threading.enumerate():
            if thread is not threading.current_thread() and not thread.daemon:
                thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except BrokenPipeError:  # (``| head``: the reader has what it wanted)
            pass
        except (OSError, ValueError) as e:  # data lost: Python's exit says so with 120
            if stream is sys.stdout:
                print(f"rnnkit: error: cannot write to standard output: {e}", file=sys.stderr)
                status = status or 120
    try:
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass
    os._exit(status)
