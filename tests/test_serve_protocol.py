"""rnnkit serve's bounds on a request's head (rnnkit/serve/protocol.py): headers too big
(431), too slow (408), a connection that sends nothing (closed), a malformed request (a
JSON 400); each refusal counted in /metrics and the access log; and what the bounds
must leave alone (a request the model takes long over, keep-alive, big bodies)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from test_serve import DATES, _slow, post, running
from toy import one_thread

import rnnkit.serve.served as served
from rnnkit.checkpoint import Bundle


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with one_thread():
        yield


def _connect(url: str) -> socket.socket:
    return socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=10)


def _reply(s: socket.socket) -> tuple[str, dict[str, Any]]:
    """The status line and JSON body of the one answer on ``s``, read until the server
    closes the connection (a socket timeout, 10 s, if it does not)."""
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0].decode(), json.loads(body)


def _metrics(url: str) -> str:
    return httpx.get(url + "/metrics", timeout=10).text


@pytest.mark.parametrize("end", [b"", b"\r\n"], ids=["arriving", "whole"])
def test_headers_over_the_bound_are_431_and_the_server_goes_on(
    bundle: Bundle, caplog, end: bytes
) -> None:
    """The head still arriving, or all of it in one piece with the blank line that ends
    it (parsed at once: no chunk of it is seen before its end)."""
    with caplog.at_level("INFO", logger="rnnkit.serve.access"):
        with running(bundle, max_head_bytes=4096, access_log=True) as url:
            with _connect(url) as s:
                big = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 5000 + b"\r\n"
                s.sendall(big + end)
                status, body = _reply(s)
            assert status == "HTTP/1.1 431 Request Header Fields Too Large"
            assert body == {"detail": "the request's headers are over 4096 bytes"}
            big = {"X-Fine": "b" * 3000}  # under the bound: answered
            assert httpx.get(url + "/health", headers=big, timeout=10).status_code == 200
            assert 'rnnkit_requests_total{path="other",status="431"} 1.0' in _metrics(url)
    lines = [r.getMessage() for r in caplog.records if r.name == "rnnkit.serve.access"]
    assert '127.0.0.1 "- -" 431 0.0 ms' in lines[0], lines


def test_headers_sent_in_many_pieces_are_counted_together(bundle: Bundle) -> None:
    """100 headers of 1 KB each, sent one by one: the sum is what is bounded (uvicorn
    alone took 100 MB of them)."""
    with running(bundle, max_head_bytes=16 * 1024) as url:
        with _connect(url) as s:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            try:
                for i in range(100):
                    s.sendall(f"X-{i}: {'c' * 1000}\r\n".encode())
                    time.sleep(0.002)
            except OSError:  # (closed by the server half-way: what is wanted)
                pass
            status, _ = _reply(s)
        assert status.startswith("HTTP/1.1 431")


def test_headers_that_drip_in_are_408(bundle: Bundle) -> None:
    with running(bundle, head_timeout_s=0.5) as url:
        with _connect(url) as s:
            start = time.monotonic()
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # (no blank line: never ends)
            status, body = _reply(s)
            took = time.monotonic() - start
        assert status == "HTTP/1.1 408 Request Timeout"
        assert body == {"detail": "the request's headers did not arrive within 0.5 s"}
        assert 0.4 < took < 5, took
        assert 'rnnkit_requests_total{path="other",status="408"} 1.0' in _metrics(url)


def test_a_connection_that_sends_nothing_is_closed(bundle: Bundle) -> None:
    with running(bundle, head_timeout_s=0.5) as url:
        with _connect(url) as s:
            start = time.monotonic()
            assert s.recv(65536) == b""  # closed, no answer: there was no request
            assert time.monotonic() - start < 5
        assert 'status="408"' not in _metrics(url)


def test_a_malformed_request_is_a_json_400(bundle: Bundle) -> None:
    with running(bundle) as url:
        with _connect(url) as s:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
            status, body = _reply(s)
        assert status == "HTTP/1.1 400 Bad Request"
        assert body == {"detail": "Invalid HTTP request received"}
        assert 'rnnkit_requests_total{path="other",status="400"} 1.0' in _metrics(url)


def test_the_bound_leaves_slow_answers_keep_alive_and_big_bodies_alone(
    bundle: Bundle, monkeypatch: Any
) -> None:
    """The head's clock stops once the head is in: a translation that takes longer than
    it is answered, the next request on the same connection too, and a body of more
    bytes than the head may have is the body's business (its own limit)."""
    monkeypatch.setattr(served, "translate_batch", _slow(served.translate_batch, 1.0))
    with running(bundle, head_timeout_s=0.5, max_head_bytes=2048) as url:
        with httpx.Client(timeout=10) as client:  # one keep-alive connection
            for _ in range(2):
                texts = [DATES[0] + "." * (40 - len(DATES[0]))] * 60
                assert len(json.dumps({"texts": texts})) > 2048
                r = client.post(url + "/translate", json={"texts": texts})
                assert r.status_code == 200 and len(r.json()["translations"]) == 60
                time.sleep(0.3)  # idle between requests: the keep-alive timeout's business
        assert post(url, {"text": DATES[0]}).status_code == 200
        assert 'status="408"' not in _metrics(url)
