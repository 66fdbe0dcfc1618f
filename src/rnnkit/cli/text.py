"""The text a command reads and writes: UTF-8 lines from a file or stdin, read a chunk at
a time (a pipe's as they arrive), and lines written to stdout or atomically to a file;
:class:`UsageError` for what the user gave that cannot be read."""

from __future__ import annotations

import os
import select
import stat
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import IO

from rnnkit.atomic import OutputError, check_writable, write_atomically

__all__ = [
    "UsageError",
    "check_output",
    "decoded_line",
    "is_stream",
    "line_count",
    "read_text",
    "text_chunks",
    "write_text",
]

# a pipe that has sent lines and then nothing for this long: they are a chunk of their own
# (a program that writes a line and waits for its translation gets it)
QUIET_S = 0.05


class UsageError(Exception):
    """A problem with the user's input, reported in one line."""


def read_text(path: str | None, need_lines: bool = False) -> list[str]:
    """Lines of a UTF-8 file (stdin when ``path`` is None or ``-``), newlines stripped and a
    byte-order mark at the start dropped, as training reads corpora; ``need_lines``: an
    empty file is a UsageError."""
    lines = [line for chunk in text_chunks(path, 1 << 16) for line in chunk]
    if need_lines and not lines:
        raise UsageError(f"{'<stdin>' if path in (None, '-') else path}: file is empty")
    return lines


def is_stream(path: str | None) -> bool:
    """Whether ``path`` is stdin or a file read once as it comes, not a regular file: a
    pipe (``<(cmd)``, ``/dev/stdin``, a named pipe) or a device. Such an input is never
    read twice (a second read found a pipe empty, or waited on a named pipe for ever)."""
    if path in (None, "-"):
        return True
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except OSError:  # (missing: text_chunks names it)
        return False


def check_output(output: str | None, inputs: dict[str, list[str]]) -> None:
    """Before the work: an ``--output`` file that cannot be written (an OutputError, see
    :func:`rnnkit.atomic.check_writable`), or that is one of the command's inputs (a
    checkpoint, a source or reference file), which it would replace (a UsageError)."""
    if output in (None, "-"):
        return
    try:
        check_writable(output)
    except OutputError as e:  # (it named the path alone)
        raise OutputError(f"--output {e}") from None
    if not os.path.isfile(output):  # (a pipe, /dev/null: written into, not replaced)
        return
    for flag, paths in inputs.items():
        for path in paths:
            if path != "-" and os.path.exists(path) and os.path.samefile(output, path):
                raise UsageError(f"--output {output}: is the {flag} {path}; give another file")


def line_count(path: str) -> int:
    """The lines of a file, read (and checked, as :func:`text_chunks` does) once before
    the work: its errors come before any output, and its size gives the bar an end."""
    return sum(len(chunk) for chunk in text_chunks(path, 1 << 16))


def text_chunks(
    path: str | None,
    size: int,
    arrived: bool = False,
    on_end: Callable[[], None] | None = None,
) -> Iterator[list[str]]:
    """The lines of :func:`read_text`, ``size`` at a time, read as they are asked for:
    the memory of one chunk (reading a file whole took ~4× its size), and the first lines
    of a pipe can be worked on before it ends. Gzip, UTF-16, a NUL byte and invalid UTF-8
    are a DataError / UsageError naming the line where they are met.

    Args:
        arrived: stdin's chunks end also where its input pauses (nothing more for
            :data:`QUIET_S`): the lines a program sent, and waits on, are not held back
            until ``size`` more come.
        on_end: called when the end of the input is read (before its last chunk).
    """
    from rnnkit.data.corpus import CR_ALONE, check_text_bytes

    name = "<stdin>" if path in (None, "-") else str(path)
    if name == "<stdin>" and sys.stdin is None:  # (started with stdin closed: `<&-`)
        raise UsageError("<stdin>: stdin is closed; give the input as a file")
    stdin = name == "<stdin>"
    try:
        f = sys.stdin.buffer if stdin else open(name, "rb")  # noqa: SIM115
    except OSError as e:
        raise UsageError(f"{name}: {e.strerror}") from None
    pipe = arrived and (stdin or is_stream(name))  # a pipe as it arrives
    lines = _arriving(f) if pipe else ((r, True) for r in f)
    try:
        chunk: list[str] = []
        n = 0
        for raw, more in lines:  # (split at b"\n" only, as bytes.split: a lone \r stays)
            n += 1
            if n == 1 or b"\0" in raw:  # gzip and UTF-16 show at the start, NULs anywhere
                check_text_bytes(raw, name, first_line=n)
            if n == 1 and not raw.endswith(b"\n") and raw.count(b"\r") > 1:  # (as train:
                raise UsageError(f"{name}: {CR_ALONE}")  # its lines went as one, status 0)
            chunk.append(decoded_line(raw, name, n))
            if len(chunk) == size or not more:
                yield chunk
                chunk = []
        if on_end is not None:
            on_end()
        if chunk:
            yield chunk
    except OSError as e:  # (a directory: IsADirectoryError at the first read)
        raise UsageError(f"{name}: {e.strerror}") from None
    finally:
        if not stdin:
            f.close()


def _arriving(f: IO[bytes]) -> Iterator[tuple[bytes, bool]]:
    """Each line of ``f`` (stdin) as its bytes arrive, with whether more of the input is
    there already (or comes within :data:`QUIET_S`); read from its file descriptor, the
    whole of what has arrived at a time. Without one (a stand-in stream): line by line."""
    try:
        fd = f.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation: both of the last
        yield from ((raw, True) for raw in f)
        return
    parts: list[bytes] = []  # of the line not yet ended (a long one arrives in parts)
    while data := os.read(fd, 1 << 16):
        *ended, rest = data.split(b"\n")
        if ended:
            ended[0] = b"".join([*parts, ended[0]])
            parts = []
        if rest:
            parts.append(rest)
        more = _readable(fd)  # (a line begun and not ended does not hold back those before)
        for k, line in enumerate(ended):
            yield line + b"\n", more or k < len(ended) - 1
    if parts:
        yield b"".join(parts), False


def _readable(fd: int) -> bool:
    """Whether ``fd`` has input (or its end) within :data:`QUIET_S`."""
    try:
        return bool(select.select([fd], [], [], QUIET_S)[0])
    except (OSError, ValueError):  # not a descriptor select takes
        return True


def decoded_line(raw: bytes, name: str, n: int) -> str:
    """Line ``n`` of ``name`` as text (its line ending and a byte-order mark at its start
    stripped), or a UsageError."""
    try:
        text = raw.decode("utf-8").removesuffix("\n").removesuffix("\r")
    except UnicodeDecodeError as e:
        raise UsageError(f"{name}:{n}: invalid UTF-8 (byte 0x{raw[e.start]:02x})") from None
    return text.removeprefix("\ufeff")  # (on a later line: files joined by cat)


def write_text(path: str | None, lines: Sequence[str]) -> None:
    """Write lines to ``path`` atomically (:mod:`rnnkit.atomic`), or to stdout when
    ``path`` is None or ``-``."""
    text = "".join(line + "\n" for line in lines)
    if path in (None, "-"):
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    write_atomically(path, lambda f: f.write(text))
