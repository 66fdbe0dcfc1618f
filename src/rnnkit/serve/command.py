"""The ``rnnkit serve`` command: its arguments, and uvicorn run until SIGTERM / Ctrl-C."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import threading
from typing import Any

from rnnkit.cli_commands import add_device, positive_int

__all__ = ["add_parser", "cmd_serve"]


def _wait(text: str) -> float:
    x = float(text)
    if not x >= 0:
        raise argparse.ArgumentTypeError(f"must be ≥ 0, got {text}")
    return x


def add_parser(sub: Any) -> None:
    """Add the ``serve`` sub-command to the sub-parsers ``sub``."""
    s = sub.add_parser(
        "serve",
        help="serve a checkpoint over HTTP: a JSON API with dynamic batching and a web page",
        description="Serve CHECKPOINT (several: their ensemble): GET / (page), GET /health, "
        "GET /info, POST /translate, GET /metrics (Prometheus), /docs (OpenAPI). "
        "Concurrent requests are translated "
        "together in batches. SIGTERM or Ctrl-C: stop accepting, answer what is queued, "
        "exit 0. SIGHUP: read the checkpoints again and serve them (a file that fails to "
        "load leaves the current model serving).",
    )
    s.add_argument(
        "checkpoint", nargs="+", metavar="CHECKPOINT",
        help="a checkpoint written by rnnkit train (.pt); several: an ensemble (their "
        "probabilities averaged at every step; same vocabularies; no gates)",
    )  # fmt: skip
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    s.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0: any free)")
    s.add_argument(
        "--beam", type=positive_int, default=None,
        help="default beam size, 1 = greedy (default: the checkpoint's decode.beam_size)",
    )  # fmt: skip
    add_device(s)
    s.add_argument("--max-batch", type=positive_int, default=32, help="sentences per batch (32)")
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
        "and /info; default: $RNNKIT_API_KEY, else no key",
    )  # fmt: skip
    s.set_defaults(func=cmd_serve)


def _socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from rnnkit.cli_decode import _models
    from rnnkit.serve.app import Settings, create_app

    bundle, ensemble = _models(args.checkpoint, args.device)  # auto: the GPU if there is one
    settings = Settings(
        beam=args.beam,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        max_queue=args.max_queue,
        max_chars=args.max_chars,
        max_texts=args.max_texts,
        api_key=args.api_key or os.environ.get("RNNKIT_API_KEY") or None,
    )
    name = " + ".join(os.path.basename(c) for c in args.checkpoint)
    app = create_app(
        bundle, settings, name, ensemble, lambda: _models(args.checkpoint, args.device)
    )
    try:
        sock = _socket(args.host, args.port)
    except OSError as e:
        from rnnkit.cli import UsageError

        raise UsageError(f"serve: cannot listen on {args.host}:{args.port}: {e.strerror}") from None
    host, port = sock.getsockname()[:2]
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/"

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if not self.should_exit:
                print(f"rnnkit serve: {url} (API docs: {url}docs)", flush=True)

    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=60)
    # uvicorn re-raises the signal that stopped it once it has shut down; a no-op handler
    # then makes a graceful stop exit 0 instead of dying by the signal.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    if hasattr(signal, "SIGHUP"):  # reload in a thread: the event loop keeps answering
        reload = app.state.reload
        signal.signal(signal.SIGHUP, lambda *_: threading.Thread(target=reload).start())
    Server(config).run(sockets=[sock])
    print("rnnkit serve: stopped", file=sys.stderr, flush=True)
    return 0
