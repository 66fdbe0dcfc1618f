"""The HTTP API of ``rnnkit serve``: FastAPI over a :class:`~rnnkit.serve.batcher.Batcher`.

Endpoints: ``GET /health``, ``GET /info``, ``POST /translate``, ``GET /metrics``
(Prometheus text), ``GET /`` (the page), ``/docs`` (OpenAPI). Every error is JSON
``{"detail": message}``: 400 undecodable body, 401 API key, 403 sent by a page of
another site (:func:`~rnnkit.serve.request.check_origin`), 413 too big, 422 malformed
request, 500 model failure (that batch only), 503 queue full (with ``Retry-After``),
408 a body not all in within 15 s. A request whose client disconnects is dropped from the
queue; responses are serialised off the event loop.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import json
import logging
import math
import time
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import torch
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.routing import APIRoute
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.exceptions import HTTPException as StarletteHTTPException

from rnnkit.checkpoint import Bundle
from rnnkit.ensemble import Ensemble
from rnnkit.serve import MAX_BEAM
from rnnkit.serve.batcher import Batcher, QueueFull
from rnnkit.serve.page import page_html
from rnnkit.serve.request import (
    ApiError,
    Settings,
    TranslateRequest,
    check_key,
    check_origin,
    error_response,
    parse_request,
    read_body,
)
from rnnkit.serve.schema import (
    Error,
    Health,
    TranslateResponse,
    add_security,
    docs_html,
    errors,
)
from rnnkit.serve.served import Loader, Refused, Served, refusal
from rnnkit.serve.translator import Decode

__all__ = ["Settings", "TranslateRequest", "create_app"]


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


def _refused(metrics: Metrics, access: bool, client: Any, status: int) -> None:
    """Count (and log) a request refused before its head was read in full (400, 408,
    431 of :mod:`rnnkit.serve.protocol`): no method or path known."""
    metrics.requests.labels("other", str(status)).inc()
    if access:
        _access({"client": client, "method": "-", "path": "-"}, status, 0.0)


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
    return error_response(e.status, e.message, e.headers)


async def _http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
    headers = e.headers
    if e.status_code == 405:  # Allow: every route's methods at this path (HEAD has its own)
        path = request.url.path
        methods = {
            m for r in request.app.routes if isinstance(r, APIRoute) and r.path_regex.match(path)
            for m in (r.methods or ())
        }  # fmt: skip
        headers = {**(headers or {}), "Allow": ", ".join(sorted(methods))}
    return error_response(e.status_code, str(e.detail), headers)


def _dumps(content: Any) -> bytes:
    """JSON as ``JSONResponse`` renders it; a nan or infinite number (a diverged model's
    score or attention) as null, which JSON has, rather than a 500."""
    try:
        text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except ValueError:
        return _dumps(_finite(content))
    return text.encode()


def _finite(x: Any) -> Any:
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


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

    app = FastAPI(
        title="rnnkit serve", lifespan=lifespan, version="0.1.0", docs_url=None, redoc_url=None
    )
    if s.api_key is not None:
        add_security(app, ("/translate", "/info"))
    app.state.reload, app.state.batcher, app.state.settings = served.reload, batcher, s
    app.state.refused = functools.partial(_refused, metrics, s.access_log)
    metrics.queue.set_function(lambda: batcher.depth)  # read at each scrape
    app.add_middleware(_Count, metrics=metrics, access=settings.access_log)

    app.add_exception_handler(ApiError, _api_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]

    stopped = {"model": Error, "description": "the batch worker has stopped: restart"}

    @app.get("/health", responses={200: {"model": Health}, 503: stopped})
    async def health() -> JSONResponse:
        if not batcher.alive:  # the worker thread died: nothing would be translated
            return error_response(503, "the batch worker has stopped; restart the server")
        return JSONResponse({"status": "ok"})

    @app.get("/info", responses=errors(401))
    async def get_info(request: Request) -> dict[str, Any]:
        check_key(request, s.api_key)
        return served.now.about

    @app.get("/metrics", response_class=PlainTextResponse)
    async def get_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        return HTMLResponse(page_html())

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(docs_html(app.title))

    for path, endpoint in (("/health", health), ("/info", get_info), ("/metrics", get_metrics),
                           ("/", page), ("/docs", docs)):  # fmt: skip
        app.add_api_route(path, endpoint, methods=["HEAD"], include_in_schema=False)  # uptime

    body_schema = {
        "required": True,
        "content": {"application/json": {"schema": TranslateRequest.model_json_schema()}},
    }

    @app.post(
        "/translate",
        openapi_extra={"requestBody": body_schema},
        responses={
            200: {"model": TranslateResponse},
            **errors(400, 401, 403, 408, 413, 415, 422, 500, 503),
        },
    )
    async def translate(request: Request) -> Response:
        check_origin(request)
        check_key(request, s.api_key)
        req, texts = parse_request(await read_body(request, s.max_body, s.body_timeout_s), s)
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
