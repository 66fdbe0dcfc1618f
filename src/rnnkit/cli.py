"""The ``rnnkit`` command line: thin; it parses arguments and calls the library.

Errors in what the user gave (config, data, checkpoint, input text) end with a one-line
``rnnkit: error: ...`` on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator, Sequence

from rnnkit.cli_commands import UsageError as UsageError  # (importable from here)

# Names defined here before the split stay importable from rnnkit.cli.
from rnnkit.cli_commands import positive_int as positive_int
from rnnkit.cli_commands import read_text as read_text
from rnnkit.cli_commands import write_text as write_text
from rnnkit.cli_errors import run_command
from rnnkit.cli_parsers import build_parser as build_parser

__all__ = ["console", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """``rnnkit ARGV``: the command's exit status; its errors as one line each
    (:func:`rnnkit.cli_errors.run_command`)."""
    seen: list[int] = []
    with _noting_ctrl_c(seen):
        try:
            return run_command(build_parser().parse_args(argv))
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


@contextlib.contextmanager
def _noting_ctrl_c(seen: list[int]) -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt as Python's own handler does, and is noted in
    ``seen`` (where Python's handler is the one in place, in the main thread)."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return

    def noted(signum: int, frame: object) -> None:
        seen.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, noted)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGINT) is noted:  # (a command may have set its own)
            signal.signal(signal.SIGINT, signal.default_int_handler)


def console() -> int:
    """The ``rnnkit`` command (and ``python -m rnnkit``): :func:`main` of ``sys.argv``.
    Once the command is over, Ctrl-C is ignored while Python shuts down: a second or
    third Ctrl-C after an interrupted run had stopped landed in torch's exit handlers as
    "Exception ignored in atexit callback" and a traceback, and the status was SIGINT's."""
    try:
        return main()
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


if __name__ == "__main__":
    sys.exit(console())
