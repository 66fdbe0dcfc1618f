"""The HTTP API of ``rnnkit serve``: FastAPI over a :class:`~rnnkit.serve.batcher.Batcher`.

Endpoints: ``GET /health``, ``GET /info``, ``POST /translate``, ``GET /metrics``
(Prometheus text), ``GET /`` (the page), ``/docs`` (OpenAPI). Every error is JSON
``{"detail": message}``: 400 undecodable body, 401 API key, 413 too big, 422 malformed
request, 500 model failure (that batch only), 503 queue full (with ``Retry-After``),
408 a body not all in within 15 s. A request whose client disconnects is dropped from the
queue; responses are serialised off the event loop.
"""

from __future__ import annotations

import asyncio
import datetime
import hmac
import json
import logging
import time
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import torch
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from rnnkit.checkpoint import Bundle
from rnnkit.ensemble import Ensemble
from rnnkit.serve import MAX_BEAM
from rnnkit.serve.batcher import Batcher, QueueFull
from rnnkit.serve.page import page_html
from rnnkit.serve.served import Loader, Refused, Served, refusal
from rnnkit.serve.translator import Decode

__all__ = ["Settings", "TranslateRequest", "create_app"]


@dataclass
class Settings:
    """The limits and defaults of one server (the ``rnnkit serve`` options)."""

    beam: int | None = None  # default beam; None: the checkpoint's decode.beam_size
    max_batch: int = 32
    max_wait_ms: float = 5.0
    max_queue: int = 256
    max_chars: int = 1000
    max_texts: int = 64
    api_key: str | None = None
    timeout_s: float = 120.0  # a request never waits longer than this for its batch
    body_timeout_s: float = 15.0  # a body that takes longer to arrive in full: 408
    access_log: bool = False  # a line per request on the rnnkit.serve.access logger

    @property
    def max_body(self) -> int:
        """Bytes a request body may have: every text at its longest, JSON-escaped (an
        emoji is 12 bytes as ``\\ud83d\\ude00``)."""
        return 12 * self.max_chars * self.max_texts + 64 * 1024


class TranslateRequest(BaseModel):
    """``{"text": ...}`` or ``{"texts": [...]}``, and the decode options."""

    model_config = ConfigDict(extra="forbid", strict=True)

    text: str | None = None
    texts: list[str] | None = None
    beam: int | None = Field(None, ge=1, le=MAX_BEAM, description="1 = greedy")
    n_best: int = Field(1, ge=1, le=MAX_BEAM, description="alternatives, ≤ beam")
    attention: bool = False
    gates: bool = False
    replace_unk: bool = Field(False, description="each <unk> as the source token attended most")


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


class Metrics:
    """The Prometheus series of one server, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "rnnkit_requests", "HTTP requests by path and status", ["path", "status"], registry=r
        )
        self.latency = Histogram(
            "rnnkit_request_seconds", "request latency", ["path"], registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )  # fmt: skip
        self.queue = Gauge("rnnkit_queue_depth", "requests waiting for the model", registry=r)
        self.batch = Histogram(
            "rnnkit_batch_size", "sentences per model call", registry=r,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
        )  # fmt: skip
        self.reloads = Counter(
            "rnnkit_reloads", "checkpoint reloads (SIGHUP) by result", ["result"], registry=r
        )
        for result in ("ok", "error"):  # listed at 0 before the first reload
            self.reloads.labels(result)


def _parse(body: bytes, s: Settings) -> tuple[TranslateRequest, list[str]]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ApiError(400, f"the body is not valid UTF-8 ({e.reason} at byte {e.start})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ApiError(
            422, f"malformed JSON: {e.msg} at line {e.lineno} column {e.colno}"
        ) from None
    except RecursionError:
        raise ApiError(422, "malformed JSON: nested too deeply") from None
    except ValueError as e:  # e.g. an integer of more digits than Python converts
        raise ApiError(422, f"malformed JSON: {str(e)[:160]}") from None
    try:
        req = TranslateRequest.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "body"
        raise ApiError(422, f"{where}: {first['msg']}") from None
    if (req.text is None) == (req.texts is None):
        raise ApiError(422, 'give exactly one of "text" and "texts"')
    texts = [req.text] if req.text is not None else req.texts or []
    if len(texts) > s.max_texts:
        raise ApiError(413, f"{len(texts)} texts; at most {s.max_texts} (--max-texts)")
    for i, t in enumerate(texts):
        if len(t) > s.max_chars:
            raise ApiError(413, f"text {i} has {len(t)} characters; at most {s.max_chars}")
        try:
            t.encode("utf-8")
        except UnicodeEncodeError as e:  # JSON lets "\ud800" through; Unicode does not
            raise ApiError(422, f"text {i}: a lone surrogate at character {e.start}") from None
    chars = sum(len(t) for t in texts)
    if req.gates and chars > s.max_chars:  # every gate of every token: megabytes per text
        raise ApiError(
            413, f'"gates": at most {s.max_chars} characters in all (--max-chars); got {chars}'
        )
    return req, texts


async def _read_body(request: Request, limit: int, timeout: float) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"the body has {declared} bytes; at most {limit}")
    chunks, size = [], 0
    parts = request.stream().__aiter__()
    deadline = asyncio.get_running_loop().time() + timeout  # for the whole body: a slow
    while True:  # drip of a byte at a time holds a connection as long as a stop does
        try:
            left = deadline - asyncio.get_running_loop().time()
            chunk = await asyncio.wait_for(parts.__anext__(), max(left, 0.0))
        except StopAsyncIteration:
            break
        except asyncio.TimeoutError:
            raise ApiError(408, f"the body did not arrive within {timeout:g} s") from None
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the body is over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _check_key(request: Request, key: str | None) -> None:
    if key is None:
        return
    auth = request.headers.get("authorization", "")
    given = auth[7:].strip() if auth.lower().startswith("bearer ") else None
    given = given or request.headers.get("x-api-key")
    # headers arrive as latin-1: their bytes, compared with the key's UTF-8 bytes
    raw = given.encode("latin-1", "replace") if given else b""
    if not raw or not hmac.compare_digest(raw, key.encode("utf-8")):
        raise ApiError(
            401,
            "a valid API key is needed: Authorization: Bearer KEY or X-API-Key",
            {"WWW-Authenticate": "Bearer"},
        )


class _Count:
    """Pure ASGI middleware: count every response by path and status, time it, and with
    ``access`` log it: ``TIME CLIENT "METHOD PATH" STATUS MS ms``."""

    PATHS = frozenset({"/", "/health", "/info", "/translate", "/metrics"})

    def __init__(self, app: Any, metrics: Metrics, access: bool = False) -> None:
        self.app, self.metrics, self.access = app, metrics, access

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), [500]
        path = scope["path"] if scope["path"] in self.PATHS else "other"

        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.metrics.requests.labels(path, str(status[0])).inc()
            took = time.perf_counter() - start
            self.metrics.latency.labels(path).observe(took)
            if self.access:
                _access(scope, status[0], took)


ACCESS_LOG = logging.getLogger("rnnkit.serve.access")


def _access(scope: Any, status: int, took: float) -> None:
    """One access-log line; the path and query are percent-encoded again (a decoded
    ``%0A`` would start a forged line, a raw ``"`` end the quoted field)."""
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")
    client = scope.get("client")
    who = client[0] if client else "-"
    path = urllib.parse.quote(scope["path"], safe="/")
    raw = scope.get("query_string", b"").decode("latin-1")  # (a raw " would end the field)
    query = "?" + urllib.parse.quote(raw, safe="/?&=%+:@,;") if raw else ""
    line = f'{now.replace("+00:00", "Z")} {who} "{scope["method"]} {path}{query}" {status}'
    ACCESS_LOG.info("%s %.1f ms", line, took * 1000)


def _limits(s: Settings) -> dict[str, Any]:
    return {
        "max_batch": s.max_batch, "max_wait_ms": s.max_wait_ms, "max_queue": s.max_queue,
        "max_chars": s.max_chars, "max_texts": s.max_texts, "max_body_bytes": s.max_body,
        "max_beam": MAX_BEAM, "auth": s.api_key is not None,
    }  # fmt: skip


async def _gone(request: Request) -> None:
    """Return when the client disconnects (the body has been read: the next message is
    the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _answer(
    request: Request, batcher: Batcher, texts: list[str], opts: Decode, timeout: float
) -> Any:
    """Queue ``texts`` and await their batch: 503 when the queue is full or no answer
    comes in time, 422 when the model now served cannot take the options (reloaded),
    500 when the model fails on the batch; a client that disconnects takes its request
    out of the queue (499, logged only)."""
    try:
        future = batcher.submit(texts, opts)
    except QueueFull as e:
        raise ApiError(503, f"busy: {e}; retry shortly", {"Retry-After": "1"}) from None
    watch = asyncio.ensure_future(_gone(request))
    try:
        done, _ = await asyncio.wait(
            {future, watch}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if future in done:
            return future.result()
        if watch in done:
            raise ApiError(499, "the client closed the connection")
        raise ApiError(503, f"no answer within {timeout:g} s", {"Retry-After": "1"})
    except ApiError:
        raise
    except Refused as e:
        raise ApiError(422, str(e)) from None
    except Exception as e:
        raise ApiError(500, f"the model failed on this batch: {type(e).__name__}: {e}") from None
    finally:  # a request given up on stays queued, cancelled: the worker skips it
        watch.cancel()
        future.cancel()


def _batcher(served: Served, s: Settings, metrics: Metrics) -> Batcher:
    threads = torch.get_num_threads()  # the worker runs with the threads of its creator
    return Batcher(
        served.translate,  # type: ignore[arg-type]
        s.max_batch,
        s.max_wait_ms / 1000,
        s.max_queue,
        on_batch=metrics.batch.observe,
        on_start=lambda: torch.set_num_threads(threads),
    )


async def _api_error(request: Request, e: ApiError) -> JSONResponse:
    return _error(e.status, e.message, e.headers)


async def _http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
    return _error(e.status_code, str(e.detail), e.headers)  # 405's Allow


def _dumps(content: Any) -> bytes:
    """JSON as ``JSONResponse`` renders it."""
    return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def create_app(
    bundle: Bundle,
    settings: Settings,
    checkpoint: str = "",
    ensemble: Ensemble | None = None,
    loader: Loader | None = None,
) -> FastAPI:
    """The server for ``bundle`` (or for ``ensemble``, whose members share ``bundle``'s
    vocabularies); the batcher's worker starts and stops with the app. ``loader`` reads
    the checkpoints again: ``app.state.reload()`` then serves what it returns (SIGHUP)."""
    s = settings
    metrics = Metrics()
    served = Served(
        bundle,
        ensemble,
        checkpoint,
        s.beam,
        _limits(s),
        loader,
        on_reload=lambda ok: metrics.reloads.labels("ok" if ok else "error").inc(),
    )
    batcher = _batcher(served, s, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        yield
        await asyncio.to_thread(batcher.close)  # queued requests are answered first

    app = FastAPI(title="rnnkit serve", lifespan=lifespan, version="0.1.0")
    app.state.reload, app.state.batcher = served.reload, batcher
    metrics.queue.set_function(lambda: batcher.depth)  # read at each scrape
    app.add_middleware(_Count, metrics=metrics, access=settings.access_log)

    app.add_exception_handler(ApiError, _api_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]

    @app.get("/health")
    async def health() -> JSONResponse:
        if not batcher.alive:  # the worker thread died: nothing would be translated
            return _error(503, "the batch worker has stopped; restart the server")
        return JSONResponse({"status": "ok"})

    @app.get("/info")
    async def get_info(request: Request) -> dict[str, Any]:
        _check_key(request, s.api_key)
        return served.now.about

    @app.get("/metrics")
    async def get_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        return HTMLResponse(page_html())

    for path, endpoint in (("/health", health), ("/info", get_info), ("/metrics", get_metrics),
                           ("/", page)):  # fmt: skip
        app.add_api_route(path, endpoint, methods=["HEAD"], include_in_schema=False)  # uptime

    body_schema = {
        "content": {"application/json": {"schema": TranslateRequest.model_json_schema()}}
    }

    @app.post("/translate", openapi_extra={"requestBody": body_schema})
    async def translate(request: Request) -> Response:
        _check_key(request, s.api_key)
        req, texts = _parse(await _read_body(request, s.max_body, s.body_timeout_s), s)
        m = served.now
        beam = req.beam if req.beam is not None else m.default_beam
        if req.n_best > max(beam, 1):
            raise ApiError(422, f"n_best {req.n_best} exceeds the beam size {beam}")
        opts = Decode(beam, req.n_best, req.attention, req.gates, req.replace_unk)
        if why := refusal(m, opts):
            raise ApiError(422, why)
        results = await _answer(request, batcher, texts, opts, s.timeout_s)
        body = await asyncio.to_thread(_dumps, {"translations": results})  # off the loop
        return Response(body, media_type="application/json")

    return app
