"""The ``rnnkit serve`` command: its arguments, and uvicorn run until SIGTERM / Ctrl-C."""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import queue
import signal
import socket
import sys
import threading
import time
from typing import Any

from rnnkit.cli.commands import UsageError, add_device, positive_int
from rnnkit.serve import MAX_BEAM

__all__ = ["add_parser", "cmd_serve"]


def _wait(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        x = math.nan
    if not (math.isfinite(x) and 0 <= x <= 60_000):
        raise argparse.ArgumentTypeError(f"must be a number of ms from 0 to 60000, got {text}")
    return x


def _port(text: str) -> int:
    if not (text.isascii() and text.isdigit() and int(text) <= 65535):
        raise argparse.ArgumentTypeError(f"must be a port number from 0 to 65535, got {text}")
    return int(text)


def _beam(text: str) -> int:
    k = positive_int(text)
    if k > MAX_BEAM:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_BEAM}, got {text}")
    return k


def add_parser(sub: Any) -> None:
    """Add the ``serve`` sub-command to the sub-parsers ``sub``."""
    s = sub.add_parser(
        "serve",
        help="serve a checkpoint over HTTP: a JSON API with dynamic batching and a web page",
        description="Serve CHECKPOINT (several: their ensemble): GET / (page), GET /health, "
        "GET /info, POST /translate, GET /metrics (Prometheus), /docs (OpenAPI). "
        "Concurrent requests are translated "
        "together in batches. SIGTERM or Ctrl-C: stop accepting, answer what is queued, "
        "exit 0 (Ctrl-C twice: stop at once, 130). SIGHUP: read the checkpoints again "
        "and serve them (a file that fails to load leaves the current model serving).",
    )
    s.add_argument(
        "checkpoint", nargs="+", metavar="CHECKPOINT",
        help="a checkpoint written by rnnkit train (.pt); several: an ensemble (their "
        "probabilities averaged at every step; same vocabularies; no gates)",
    )  # fmt: skip
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    s.add_argument("--port", type=_port, default=8000, help="port (default: 8000; 0: any free)")
    s.add_argument(
        "--beam", type=_beam, default=None,
        help=f"default beam size, 1 = greedy, at most {MAX_BEAM} and the target vocabulary "
        "(default: the checkpoint's decode.beam_size)",
    )  # fmt: skip
    add_device(s)
    s.add_argument(
        "--max-batch", type=positive_int, default=32,
        help="most sentences per model call (32); a request of more goes alone",
    )  # fmt: skip
    s.add_argument(
        "--max-wait-ms", type=_wait, default=5.0,
        help="how long a batch waits for more requests, in ms (default: 5)",
    )  # fmt: skip
    s.add_argument(
        "--max-queue", type=positive_int, default=256,
        help="requests waiting at most; beyond, 503 with Retry-After (default: 256)",
    )  # fmt: skip
    s.add_argument(
        "--max-chars", type=positive_int, default=1000, help="characters per text (1000)"
    )
    s.add_argument("--max-texts", type=positive_int, default=64, help="texts per request (64)")
    s.add_argument(
        "--api-key", default=None,
        help="require this key (Authorization: Bearer KEY or X-API-Key: KEY) on /translate "
        "and /info; default: $RNNKIT_API_KEY (set but empty: an error), else no key",
    )  # fmt: skip
    s.add_argument(
        "--access-log", action="store_true",
        help='a line per request on stdout: TIME CLIENT "METHOD PATH" STATUS MS ms',
    )  # fmt: skip
    s.set_defaults(func=cmd_serve, early=_early_signals)


def short_names(paths: list[str]) -> list[str]:
    """Each path's last components, as few as tell the paths apart (``runs/a/best.pt``
    and ``runs/b/best.pt``: ``a/best.pt`` and ``b/best.pt``): what ``/info`` calls the
    checkpoint, or the members of an ensemble. The same file twice keeps one name."""
    files = [tuple(os.path.normpath(os.path.abspath(p)).split(os.sep)) for p in paths]
    for n in range(1, max(map(len, files)) + 1):
        names = ["/".join(f[-n:]) for f in files]
        if all(len({f for f, m in zip(files, names) if m == name}) == 1 for name in names):
            break
    # (a path that is not UTF-8 came as surrogates: /info's JSON could not carry them)
    return [os.fsencode(name).decode("utf-8", "replace") for name in names]


def _socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except BaseException:  # (a port in use: the caller's one-line error, no socket left open)
        sock.close()
        raise
    return sock


def api_key(args: argparse.Namespace) -> str | None:
    """``--api-key``, else ``$RNNKIT_API_KEY``, else None. A key is printable ASCII: an
    HTTP header carries bytes, and a browser cannot send other characters in one (the
    page could not have used a key the server accepts from curl)."""
    if args.api_key == "":  # (--api-key "$UNSET": a server open to all, unsaid)
        raise UsageError("--api-key: an empty key; leave the option out for a server without one")
    if args.api_key is None and os.environ.get("RNNKIT_API_KEY") == "":
        raise UsageError("RNNKIT_API_KEY is set but empty; unset it for a server without a key")
    key = args.api_key or os.environ.get("RNNKIT_API_KEY") or None
    where = "--api-key" if args.api_key else "RNNKIT_API_KEY"
    if key is not None and not (key.isascii() and key.isprintable() and key == key.strip()):
        raise UsageError(
            f"{where}: a key of printable ASCII characters without spaces at its ends "
            "(HTTP headers carry no other)"
        )
    return key


class _LineWriter(logging.Handler):
    """Lines written by a thread of their own, so that a stream that blocks (a pipe that
    nobody reads: ``serve --access-log | sleep``) never stops the event loop (it froze the
    server, SIGTERM included); lines beyond ``queued`` waiting are dropped. A stream that
    fails (``| head -1``: 55 lines of "Logging error" per request) is said once on stderr
    and written to no more."""

    def __init__(self, stream: Any, queued: int = 10_000) -> None:
        super().__init__()
        self.stream, self.lines = stream, queue.Queue[str](queued)
        self.setFormatter(logging.Formatter("%(message)s"))
        self.writer = threading.Thread(target=self._write, daemon=True, name="rnnkit-log")
        self.writer.start()

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(queue.Full):
            self.lines.put_nowait(self.format(record) + "\n")

    def _write(self) -> None:
        while True:
            line = self.lines.get()
            try:
                self.stream.write(line)
                self.stream.flush()
            except (OSError, ValueError) as e:  # (a closed pipe, a full disk)
                with contextlib.suppress(OSError, ValueError):
                    print(f"rnnkit serve: log lines are no longer written ({e})", file=sys.stderr)
                return

    def flush(self) -> None:
        """Wait (a second at most) until the lines queued so far are written."""
        deadline = time.monotonic() + 1.0
        while self.writer.is_alive() and not self.lines.empty() and time.monotonic() < deadline:
            time.sleep(0.005)


def _log_to(log: logging.Logger, stream: Any) -> None:
    log.addHandler(_LineWriter(stream))
    log.setLevel(logging.INFO)
    log.propagate = False


class _Stopped(Exception):
    """SIGTERM before the server was up."""


def _raise_stopped(*_: Any) -> None:
    raise _Stopped


def _early_signals(args: argparse.Namespace) -> None:
    """As soon as the arguments are read (torch takes seconds to import before the command
    runs): a SIGTERM or SIGHUP then is noted, for :func:`cmd_serve` (they killed the
    process in its first two seconds, SIGHUP with status 129)."""
    args.hup, args.term = threading.Event(), threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: args.term.set())
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda *_: args.hup.set())


def cmd_serve(args: argparse.Namespace) -> int:
    """Load, listen, serve until SIGTERM / Ctrl-C (exit 0). A SIGTERM while the
    checkpoints load also exits 0; a SIGHUP then reads them again as the server starts."""
    term = getattr(args, "term", None) or threading.Event()
    hup = getattr(args, "hup", None) or threading.Event()
    api_key(args)  # before the checkpoints load
    if not args.host.strip():  # (--host "$UNSET" listened on every interface, unsaid)
        raise UsageError("--host: empty; give 127.0.0.1, or 0.0.0.0 to listen on every interface")
    signal.signal(signal.SIGTERM, _raise_stopped)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda *_: hup.set())
    try:
        if term.is_set():  # (before this command ran)
            raise _Stopped
        return _serve(args, hup)
    except _Stopped:
        print("rnnkit serve: stopped", file=sys.stderr, flush=True)
        return 0


def _serve(args: argparse.Namespace, hup: threading.Event) -> int:
    import uvicorn

    from rnnkit.cli.decode import _models
    from rnnkit.serve.app import ACCESS_LOG, Settings, create_app
    from rnnkit.serve.protocol import uvicorn_config
    from rnnkit.serve.served import RELOAD_LOG
    from rnnkit.translate import beam_too_wide

    bundle, ensemble = _models(args.checkpoint, args.device)  # auto: the GPU if there is one
    if wide := beam_too_wide(bundle, args.beam):  # (else every request without "beam": 422)
        raise UsageError(wide)
    settings = Settings(
        beam=args.beam,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        max_queue=args.max_queue,
        max_chars=args.max_chars,
        max_texts=args.max_texts,
        api_key=api_key(args),
        access_log=args.access_log,
    )
    if args.access_log:
        _log_to(ACCESS_LOG, sys.stdout)
    _log_to(RELOAD_LOG, sys.stderr)
    name = " + ".join(short_names(args.checkpoint))
    app = create_app(
        bundle, settings, name, ensemble, lambda: _models(args.checkpoint, args.device)
    )
    try:
        sock = _socket(args.host, args.port)
    except OSError as e:
        raise UsageError(f"serve: cannot listen on {args.host}:{args.port}: {e.strerror}") from None
    host, port = sock.getsockname()[:2]
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/"

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if not self.should_exit:
                with contextlib.suppress(OSError):  # (stdout closed: it serves all the same)
                    print(f"rnnkit serve: {url} (API docs: {url}docs)", flush=True)

        def handle_exit(self, sig: int, frame: Any) -> None:
            """A second Ctrl-C while the first answers what is queued: stop at once. (In
            uvicorn's forced stop the model thread was cut off mid-batch: tracebacks,
            500s and an abort by the C++ runtime.)"""
            if self.should_exit and sig == signal.SIGINT:
                print("rnnkit serve: stopped at once (Ctrl-C twice)", file=sys.stderr, flush=True)
                os._exit(130)
            super().handle_exit(sig, frame)

    # a request waits at most timeout_s for its batch: a stop answers every one in flight
    grace = int(settings.timeout_s + 10)
    config = uvicorn_config(app, log_level="warning", timeout_graceful_shutdown=grace)
    # uvicorn re-raises the signal that stopped it once it has shut down; this handler
    # then makes a graceful stop exit 0 instead of dying by the signal (and a signal
    # before uvicorn has its own handlers stops the server the same way).
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _raise_stopped)
    if hasattr(signal, "SIGHUP"):  # reload in a thread: the event loop keeps answering
        reload = app.state.reload
        signal.signal(signal.SIGHUP, lambda *_: threading.Thread(target=reload).start())
        if hup.is_set():  # asked for while loading
            threading.Thread(target=reload).start()
    Server(config).run(sockets=[sock])
    raise _Stopped  # (said once, by cmd_serve)
