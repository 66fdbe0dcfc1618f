"""rnnkit serve against abuse: bodies that broke the JSON parser or the encoder, gate
output that would run to gigabytes, bodies that stop arriving, clients that leave,
a reload that changes what a queued request can have, HTTP details (HEAD, Allow,
WWW-Authenticate), keys a browser cannot send, and serve options out of range."""

from __future__ import annotations

import asyncio
import copy
import gzip
import json
import re
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from test_serve import DATES, _slow, post, running, running_app
from toy import one_thread

import rnnkit.serve.served as served
from rnnkit.checkpoint import Bundle
from rnnkit.serve.app import Settings, create_app


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with one_thread():
        yield


@pytest.mark.parametrize(
    "body, says",
    [
        (b'{"text": "\\ud800"}', "text 0: a lone surrogate at character 0"),
        (b'{"text": "a", "beam": ' + b"9" * 5000 + b"}", "malformed JSON: a number of thou"),
        (b'{"text": ' + b"[" * 20_000 + b"]" * 20_000 + b"}", "nested too deeply"),
        # JSON leaves a key given twice open (Python keeps the last, others the first)
        (b'{"text": "5/9/18", "beam": 1, "beam": 5}', 'malformed JSON: the key "beam" twice'),
    ],
)
def test_bodies_that_broke_the_parser_are_422(bundle: Bundle, body: bytes, says: str) -> None:
    with running(bundle) as url:
        r = httpx.post(url + "/translate", content=body, timeout=30)
        assert r.status_code == 422 and says in r.json()["detail"], r.text
        assert post(url, {"text": DATES[0]}).status_code == 200  # and the server goes on


def test_gates_take_at_most_max_chars_in_all(bundle: Bundle) -> None:
    with running(bundle, max_chars=40, max_texts=8) as url:
        ok = post(url, {"texts": ["5/9/18"] * 6, "gates": True})  # 36 characters
        assert ok.status_code == 200
        r = post(url, {"texts": ["5/9/18"] * 7, "gates": True})
        assert r.status_code == 413 and '"gates": at most 40 characters' in r.json()["detail"]
        assert post(url, {"texts": ["5/9/18"] * 7}).status_code == 200  # without gates: fine


# the head of a request whose body, it says, has 100 bytes
HEAD_100 = (
    b"POST /translate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Content-Length: 100\r\n\r\n"
)


def _connect(url: str) -> socket.socket:
    return socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=10)


def test_a_body_that_stops_arriving_is_408(bundle: Bundle) -> None:
    with running(bundle, body_timeout_s=0.5) as url:
        with _connect(url) as s:
            s.sendall(HEAD_100 + b'{"text": ')
            reply = s.recv(65536).decode()
        assert reply.startswith("HTTP/1.1 408") and "did not arrive within 0.5 s" in reply


def test_a_body_that_drips_in_is_408(bundle: Bundle) -> None:
    """A byte every 0.2 s never leaves a gap as long as the timeout; the whole body must
    still arrive within it, or a few slow clients hold every connection."""
    with running(bundle, body_timeout_s=1.0) as url:
        with _connect(url) as s:
            s.sendall(HEAD_100)
            s.settimeout(0.2)
            reply = b""
            for byte in b'{"text": "' + b"x" * 80:  # 81 bytes: 16 s at this pace
                try:
                    s.sendall(bytes([byte]))
                    reply = s.recv(65536)
                except (TimeoutError, OSError):
                    continue
                if reply:
                    break
        assert reply.decode().startswith("HTTP/1.1 408"), reply


def test_a_client_that_leaves_costs_no_model_time(bundle: Bundle, monkeypatch: Any) -> None:
    seen: list[list[str]] = []
    slow = _slow(served.translate_batch, 1.5)

    def run(b: Bundle, texts: list[str], *rest: Any) -> Any:
        seen.append(list(texts))
        return slow(b, texts, *rest)

    monkeypatch.setattr(served, "translate_batch", run)

    async def leave(client: httpx.AsyncClient, url: str, i: int) -> None:
        with pytest.raises(httpx.TimeoutException):
            await client.post(url + "/translate", json={"text": f"gone {i}"})

    async def scenario(url: str) -> int:
        async with httpx.AsyncClient(timeout=30) as client:
            first = asyncio.ensure_future(client.post(url + "/translate", json={"text": "first"}))
            await asyncio.sleep(0.2)  # the worker is busy with it for 1.5 s
            async with httpx.AsyncClient(timeout=0.3) as impatient:  # all gone by then
                await asyncio.gather(*(leave(impatient, url, i) for i in range(5)))
            last = await client.post(url + "/translate", json={"text": "last"})
            await first
            return last.status_code

    with running(bundle, max_batch=1, max_wait_ms=0) as url:
        assert asyncio.run(scenario(url)) == 200
        metrics = httpx.get(url + "/metrics", timeout=10).text
    assert seen == [["first"], ["last"]]
    assert 'rnnkit_requests_total{path="/translate",status="499"} 5.0' in metrics


def test_a_reload_that_removes_attention_refuses_queued_replace_unk(
    bundle: Bundle, monkeypatch: Any
) -> None:
    """The endpoint checks the model current when the request arrives; the batch checks
    again, on the model it runs (a SIGHUP may have come in between): 422, not 500."""
    plain = copy.copy(bundle)
    plain.config = copy.deepcopy(bundle.config)
    plain.config.model.attention = "none"
    monkeypatch.setattr(served, "translate_batch", _slow(served.translate_batch, 0.6))
    app = create_app(
        bundle, Settings(max_batch=1, max_wait_ms=0), "m.pt", None, lambda: (plain, None)
    )

    async def scenario(url: str) -> tuple[httpx.Response, httpx.Response]:
        async with httpx.AsyncClient(timeout=30) as client:
            first = asyncio.ensure_future(client.post(url + "/translate", json={"text": "a"}))
            await asyncio.sleep(0.2)  # the worker is busy with it, on the first model
            body = {"text": "x", "replace_unk": True}
            queued = asyncio.ensure_future(client.post(url + "/translate", json=body))
            await asyncio.sleep(0.1)  # accepted by the endpoint: the model has attention
            assert await asyncio.to_thread(app.state.reload)
            return await first, await queued

    with running_app(app) as url:
        first, queued = asyncio.run(scenario(url))
    assert first.status_code == 200
    assert queued.status_code == 422, queued.text
    assert '"replace_unk" copies the source token' in queued.json()["detail"]


def test_http_details(bundle: Bundle) -> None:
    with running(bundle, api_key="k3y") as url:
        for path in ("/health", "/", "/metrics"):
            assert httpx.head(url + path, timeout=10).status_code == 200
        wrong = httpx.delete(url + "/health", timeout=10)
        assert wrong.status_code == 405 and wrong.headers["allow"] == "GET, HEAD"  # (was GET)
        assert httpx.head(url + "/docs", timeout=10).status_code == 200  # (was 405)
        assert httpx.delete(url + "/translate", timeout=10).headers["allow"] == "POST"
        spec = httpx.get(url + "/openapi.json", timeout=10).json()
        said = spec["paths"]["/health"]["get"]["responses"]["503"]["description"]
        assert "worker has stopped" in said  # (it said "busy: the queue is full")
        denied = post(url, {"text": "a"})
        assert denied.status_code == 401 and denied.headers["www-authenticate"] == "Bearer"
        assert post(url, {"text": DATES[0]}, headers={"X-API-Key": "k3y"}).status_code == 200
        metrics = httpx.get(url + "/metrics", timeout=10).text
    assert 'rnnkit_reloads_total{result="ok"} 0.0' in metrics
    assert 'rnnkit_reloads_total{result="error"} 0.0' in metrics


@pytest.mark.parametrize(
    "args, says",
    [
        (["--port", "70000"], "--port: must be a port number from 0 to 65535"),
        (["--port", "²"], "--port: must be a port number from 0 to 65535"),  # (invalid _port)
        (["--max-wait-ms", "abc"], "--max-wait-ms: must be a number of ms"),  # (invalid _wait)
        (["--api-key", ""], "--api-key: an empty key; leave the option out"),  # (no key at all)
        (["--max-wait-ms", "inf"], "--max-wait-ms: must be a number of ms from 0 to 60000"),
        (["--beam", "100"], "--beam: must be at most 32"),
        # the page cannot send it (a browser's fetch refuses a header beyond Latin-1 and
        # sends é as one byte, curl as two): refused before anything loads
        (["--api-key", "clé"], "--api-key: a key of printable ASCII characters"),
        (["--api-key", " k "], "--api-key: a key of printable ASCII characters"),
    ],
)
def test_serve_options_out_of_range_are_usage_errors(args: list[str], says: str, capsys) -> None:
    """(In this process: ``python -m rnnkit`` runs the same ``main``.)"""
    from rnnkit.cli import main

    try:
        status = main(["serve", "any.pt", *args])
    except SystemExit as e:  # argparse's usage error
        status = e.code
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err and says in err, err


def test_bodies_the_parser_should_not_chew_on(bundle: Bundle) -> None:
    """410,000 texts (under the body limit) were a 422 after pydantic had listed each
    wrong item, holding the event loop 1.5 s; a malformed Origin was a 500 with a
    traceback, before the key was asked for; a BOM before the JSON a 422; a gzipped body
    'not valid UTF-8'."""
    with running(bundle, api_key="k") as url:
        many = b'{"texts": [' + b",".join([b"0"] * 410_000) + b"]}"
        r = httpx.post(url + "/translate", content=many, headers={"X-API-Key": "k"}, timeout=30)
        assert r.status_code == 413 and r.json()["detail"].startswith("410000 texts; at most 64")
        odd = {"Origin": "http://[::1", "X-API-Key": "k"}
        r = httpx.post(url + "/translate", json={"text": DATES[0]}, headers=odd, timeout=30)
        assert r.status_code == 403 and "another site (http://[::1)" in r.json()["detail"]
        key = {"X-API-Key": "k"}
        body = json.dumps({"text": DATES[0]}).encode()
        r = httpx.post(url + "/translate", content=b"\xef\xbb\xbf" + body, headers=key, timeout=30)
        assert r.status_code == 200 and r.json()["translations"][0]["text"]
        zipped = {**key, "Content-Encoding": "gzip"}
        r = httpx.post(url + "/translate", content=gzip.compress(body), headers=zipped, timeout=30)
        assert r.status_code == 415 and r.json()["detail"] == (
            "Content-Encoding: gzip: send the body uncompressed"
        )


def test_an_empty_key_variable_is_refused_as_an_empty_key_option(monkeypatch, capsys) -> None:
    """RNNKIT_API_KEY= (a variable meant to hold the key, unset) served with no key."""
    from rnnkit.cli import main

    monkeypatch.setenv("RNNKIT_API_KEY", "")
    assert main(["serve", "any.pt"]) == 2
    assert "RNNKIT_API_KEY is set but empty; unset it" in capsys.readouterr().err


def test_health_says_when_the_worker_is_gone(bundle: Bundle) -> None:
    app = create_app(bundle, Settings(), "m.pt")
    with running_app(app) as url:
        assert httpx.get(url + "/health", timeout=10).json() == {"status": "ok"}
        app.state.batcher.close()  # the worker thread ends, as if it had died
        r = httpx.get(url + "/health", timeout=10)
        assert r.status_code == 503 and "batch worker has stopped" in r.json()["detail"]


def test_access_log_has_a_line_per_request_and_no_forged_ones(bundle: Bundle, caplog) -> None:
    with caplog.at_level("INFO", logger="rnnkit.serve.access"):
        with running(bundle, access_log=True) as url:
            assert post(url, {"text": DATES[0]}).status_code == 200
            assert (
                httpx.get(url + "/x%0A2026-01-01T00:00:00Z 6.6.6.6 forged?q=1").status_code == 404
            )
            with _connect(url) as s:  # a raw " in the query, which httptools lets through
                s.sendall(b'GET /health?a"b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
                assert s.recv(65536).startswith(b"HTTP/1.1 200")
    lines = [r.getMessage() for r in caplog.records if r.name == "rnnkit.serve.access"]
    assert len(lines) == 3, lines
    assert re.fullmatch(r"\S+Z 127\.0\.0\.1 \"POST /translate\" 200 [\d.]+ ms", lines[0])
    assert '"GET /x%0A2026-01-01T00%3A00%3A00Z%206.6.6.6%20forged?q=1" 404' in lines[1]
    assert '"GET /health?a%22b" 200' in lines[2], lines


def test_no_access_log_by_default(bundle: Bundle, caplog) -> None:
    with caplog.at_level("INFO", logger="rnnkit.serve.access"):
        with running(bundle) as url:
            assert post(url, {"text": DATES[0]}).status_code == 200
    assert not [r for r in caplog.records if r.name == "rnnkit.serve.access"]


def test_gates_are_those_of_the_translation_the_answer_gives() -> None:
    """With a beam, "gates" are recorded with the decoder reading beam search's best
    output (they were greedy search's, of another translation than the entry's)."""
    import random

    from toy import WORDS, word_bundle

    from rnnkit.serve.translator import Decode, translate_batch
    from rnnkit.translate import translate_lines

    bundle = word_bundle()  # untrained: beam 3 and greedy differ on 5 of these 20 texts
    rng = random.Random(0)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 6))) for _ in range(20)]
    entries = translate_batch(bundle, texts, Decode(3, 1, True, True))
    greedy = [t[0].out_tokens for t in translate_lines(bundle, texts, 1)]
    assert sum(e["target_tokens"] != g for e, g in zip(entries, greedy)) > 0
    for entry in entries:
        assert entry["gates"]["out"] == entry["target_tokens"]
        decoder = next(p for p in entry["gates"]["parts"] if p["tokens"] == "out")
        assert all(len(rows) == len(entry["target_tokens"]) for rows in decoder["gates"].values())


@pytest.mark.parametrize(
    ("paths", "names"),
    [
        (["runs/a/best.pt", "runs/b/best.pt"], ["a/best.pt", "b/best.pt"]),
        (["/x/a/m/best.pt", "/y/a/m/best.pt"], ["x/a/m/best.pt", "y/a/m/best.pt"]),
        (["runs/a/best.pt", "runs/a/last.pt"], ["best.pt", "last.pt"]),
        (["m.pt", "./m.pt"], ["m.pt", "m.pt"]),  # one file twice
        (["dates.pt"], ["dates.pt"]),
    ],
)
def test_an_ensemble_names_its_members_apart(paths: list[str], names: list[str]) -> None:
    """/info called two runs' best.pt files "best.pt + best.pt"."""
    from rnnkit.serve.command import short_names

    assert short_names(paths) == names
