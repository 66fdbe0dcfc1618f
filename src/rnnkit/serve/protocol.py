"""HTTP/1.1 for ``rnnkit serve``: uvicorn's httptools protocol with the bounds it lacks
on a request's head (the request line and headers), and its refusals as JSON.

uvicorn reads a head of any size (100 MB of headers were taken in one request) and for
any time (a client that connects and sends nothing, or a header a byte a minute, holds
its connection for ever). Here a head may have ``max_head_bytes`` (else 431) and must
arrive within ``head_timeout_s`` of the connection or of its first byte (else 408, or
the connection is closed if nothing came). uvicorn's own 400 for a malformed request is
``{"detail": ...}`` like every other error. Each refusal closes its connection and is
told to ``on_refused(client, status)`` (the metrics and the access log).
"""

from __future__ import annotations

import asyncio
import http
import json
from collections.abc import Callable
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["bounded_protocol", "uvicorn_config"]

Refused = Callable[[Any, int], None]


def uvicorn_config(app: FastAPI, **kwargs: Any) -> uvicorn.Config:
    """uvicorn's configuration for an app of :func:`rnnkit.serve.app.create_app`: its
    settings' bounds on a request's head, its refusals counted by the app."""
    s = app.state.settings
    protocol = bounded_protocol(s.max_head_bytes, s.head_timeout_s, app.state.refused)
    return uvicorn.Config(app, http=protocol, **kwargs)


def bounded_protocol(
    max_head_bytes: int, head_timeout_s: float, on_refused: Refused | None = None
) -> type[asyncio.Protocol]:
    """The protocol class to give ``uvicorn.Config(http=...)``."""

    class Bounded(_Bounded):
        pass

    Bounded.max_head, Bounded.head_timeout = max_head_bytes, head_timeout_s
    Bounded.on_refused = staticmethod(on_refused or (lambda client, status: None))
    return Bounded


class _Bounded(HttpToolsProtocol):
    max_head: int
    head_timeout: float
    on_refused: Refused

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_bytes, self._parsed, self._reading_head = 0, 0, True
        self._refused = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)  # (the parser's callbacks below mark where the head ends)
        if not self._reading_head or self.transport.is_closing():
            return
        self._head_bytes += len(data)  # (a chunk is at most 256 KiB: the most held past it)
        if self._head_bytes > self.max_head:
            self._refuse(431, f"the request's headers are over {self.max_head} bytes")
        elif self._head_timer is None:
            self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes, self._parsed, self._reading_head = 0, 0, True

    # Once refused, the rest of the chunk being parsed is dropped: the connection is
    # closing, nothing more comes (raising would stop the parser, but uvicorn logs a
    # warning for it).
    def on_url(self, url: bytes) -> None:
        if not self._refused:
            self._count(len(url))
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._refused:
            self._count(len(name) + len(value) + 4)  # (": " and CRLF)
            super().on_header(name, value)

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._refused:
            super().on_message_complete()

    def _count(self, size: int) -> None:
        """Bound the head parsed so far: a head that came in one chunk with its end (the
        count of chunks in data_received sees only heads still arriving)."""
        self._parsed += size
        if self._parsed > self.max_head:
            self._refuse(431, f"the request's headers are over {self.max_head} bytes")

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._disarm()
        if not self._refused:
            super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        self._refuse(400, msg.rstrip("."))

    def _arm(self) -> None:
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_late)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if not self._reading_head or self.transport.is_closing():
            return
        if self._head_bytes == 0:  # nothing sent since connecting: closed as an idle
            self.transport.close()  # keep-alive connection is
            return
        self._refuse(408, f"the request's headers did not arrive within {self.head_timeout:g} s")

    def _refuse(self, status: int, message: str) -> None:
        if self._refused:
            return
        self._disarm()
        self._reading_head, self._refused = False, True
        body = json.dumps({"detail": message}).encode()
        phrase = http.HTTPStatus(status).phrase
        head = [f"HTTP/1.1 {status} {phrase}".encode()]
        head += [name + b": " + value for name, value in self.server_state.default_headers]
        head += [
            b"content-type: application/json",
            b"content-length: " + str(len(body)).encode(),
            b"connection: close",
        ]
        self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        self.transport.close()
        self.on_refused(self.client, status)
