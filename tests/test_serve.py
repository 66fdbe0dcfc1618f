"""rnnkit serve: every endpoint, every error code, auth, dynamic batching that answers
as one-by-one translation does, a model error that fails only its batch, SIGTERM."""

from __future__ import annotations

import asyncio
import copy
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
import uvicorn
from serve_util import env, serving
from toy import one_thread

import rnnkit.serve.served as served
from rnnkit.checkpoint import Bundle
from rnnkit.ensemble import Ensemble
from rnnkit.serve.app import Settings, create_app
from rnnkit.serve.protocol import uvicorn_config
from rnnkit.translate import translate_lines

DATES = ["9th of May, 2018", "5/9/18", "sun, 25 dec 2005", "March 3 1999", "12.07.2011"]


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with one_thread():
        yield


@contextmanager
def running(bundle: Bundle, ensemble: Ensemble | None = None, **settings: Any) -> Iterator[str]:
    """The app served by uvicorn in a thread on a free 127.0.0.1 port; stopped on exit."""
    with running_app(create_app(bundle, Settings(**settings), "dates.pt", ensemble)) as url:
        yield url


@contextmanager
def running_app(app: Any) -> Iterator[str]:
    """``app`` served by uvicorn in a thread on a free 127.0.0.1 port; stopped on exit."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn_config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


@pytest.fixture(scope="module")
def url(bundle: Bundle) -> Iterator[str]:
    with one_thread(), running(bundle, max_chars=50, max_texts=8) as u:
        yield u


def post(url: str, body: Any, **kw: Any) -> httpx.Response:
    return httpx.post(url + "/translate", json=body, timeout=30, **kw)


def test_health_info_page_docs(url: str, bundle: Bundle) -> None:
    assert httpx.get(url + "/health", timeout=10).json() == {"status": "ok"}
    info = httpx.get(url + "/info", timeout=10).json()
    assert info["cell"] == "GRU" and info["attention"] == "bahdanau"
    assert info["hidden_size"] == 48 and info["encoder_layers"] == 1
    assert info["parameters"] == sum(p.numel() for p in bundle.model.parameters())
    assert info["source_vocab_size"] == len(bundle.src_vocab)
    assert info["target_vocab_size"] == len(bundle.tgt_vocab)
    assert info["decode"]["beam"] == 1 and info["limits"]["max_texts"] == 8
    page = httpx.get(url + "/", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "wireGates" in page.text and 'id="src"' in page.text
    assert 'src="http' not in page.text and 'href="http' not in page.text  # no CDN
    assert httpx.get(url + "/docs", timeout=10).status_code == 200
    spec = httpx.get(url + "/openapi.json", timeout=10).json()
    assert {"/health", "/info", "/translate", "/metrics"} <= set(spec["paths"])
    missing = httpx.get(url + "/nowhere", timeout=10)
    assert missing.status_code == 404 and "detail" in missing.json()


def test_translate_order_count_empty(url: str, bundle: Bundle) -> None:
    texts = ["", DATES[0], "  ", DATES[1], DATES[2], ""]
    got = post(url, {"texts": texts}).json()["translations"]
    want = translate_lines(bundle, texts, 1)
    assert len(got) == len(texts)
    assert [g["text"] for g in got] == [w[0].text for w in want]
    for i in (0, 2, 5):
        assert got[i]["text"] == "" and got[i]["target_tokens"] == []
    one = post(url, {"text": DATES[3]}).json()["translations"]
    assert len(one) == 1 and one[0]["text"] == translate_lines(bundle, [DATES[3]], 1)[0][0].text
    assert post(url, {"texts": []}).json() == {"translations": []}


def test_attention_shape_and_nbest(url: str) -> None:
    body = {"texts": [DATES[0], ""], "beam": 4, "n_best": 3, "attention": True}
    t, empty = post(url, body).json()["translations"]
    src, tgt, att = t["source_tokens"], t["target_tokens"], t["attention"]
    assert src[-1] == "</s>" and tgt[-1] == "</s>"  # (target + EOS) × (source + EOS)
    assert len(att) == len(tgt) and all(len(row) == len(src) for row in att)
    assert all(abs(sum(row) - 1) < 1e-3 for row in att)
    alts = t["alternatives"]
    assert len(alts) == 3 and alts[0]["text"] == t["text"] and alts[0]["score"] == t["score"]
    assert [a["score"] for a in alts] == sorted((a["score"] for a in alts), reverse=True)
    assert empty["text"] == "" and empty["attention"] == []
    assert "attention" not in post(url, {"text": DATES[0]}).json()["translations"][0]


def test_gates(url: str) -> None:
    t = post(url, {"text": DATES[1], "gates": True}).json()["translations"][0]
    g = t["gates"]
    assert g["cell"] == "GRU" and g["src"] == t["source_tokens"]
    keys = {p["key"] for p in g["parts"]}
    assert keys == {"encoder_l0_forward", "encoder_l0_backward", "decoder_l0"}
    for p in g["parts"]:
        n = len(g["src"] if p["tokens"] == "src" else g["out"])
        assert set(p["gates"]) == {"reset", "update", "candidate", "hidden"}
        for rows in p["gates"].values():
            assert len(rows) == n and all(len(r) == g["units_sent"] <= 64 for r in rows)
    empty = post(url, {"text": "", "gates": True}).json()["translations"][0]
    assert empty["gates"] is None


@pytest.mark.parametrize(
    "body, status",
    [
        (b"{not json", 422),
        (b'{"text": 5}', 422),
        (b'{"texts": "a"}', 422),
        (b'{"texts": ["a", 1]}', 422),
        (b"[]", 422),
        (b"{}", 422),
        (b'{"text": "a", "texts": ["b"]}', 422),
        (b'{"text": "a", "colour": 1}', 422),
        (b'{"text": "a", "beam": 0}', 422),
        (b'{"text": "a", "beam": 33}', 422),
        (b'{"text": "a", "beam": 2, "n_best": 3}', 422),
        (b'{"text": "a", "n_best": 0}', 422),
        (b'{"text": "a", "attention": "yes"}', 422),
        (b'{"text": "\xff\xfe"}', 400),
        (json.dumps({"text": "x" * 51}).encode(), 413),
        (json.dumps({"texts": ["a"] * 9}).encode(), 413),
        (b'{"text": "' + b" " * 3_000_000 + b'"}', 413),
    ],
)
def test_errors_are_json(url: str, body: bytes, status: int) -> None:
    r = httpx.post(url + "/translate", content=body, timeout=30)
    assert r.status_code == status, r.text
    assert isinstance(r.json()["detail"], str) and r.json()["detail"]


def test_auth(bundle: Bundle) -> None:
    with running(bundle, api_key="s3cret") as url:
        body = {"text": DATES[0]}
        assert post(url, body).status_code == 401
        assert post(url, body, headers={"Authorization": "Bearer nope"}).status_code == 401
        assert httpx.get(url + "/info", timeout=10).status_code == 401
        assert post(url, body, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert post(url, body, headers={"X-API-Key": "s3cret"}).status_code == 200
        assert httpx.get(url + "/info", headers={"X-API-Key": "s3cret"}, timeout=10).is_success
        assert httpx.get(url + "/health", timeout=10).status_code == 200


def _metric(text: str, name: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line.startswith(name):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


async def _concurrent(url: str, bodies: list[Any]) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=60) as client:
        return await asyncio.gather(*(client.post(url + "/translate", json=b) for b in bodies))


@pytest.mark.parametrize("beam", [1, 3])
def test_batching_answers_as_one_by_one(bundle: Bundle, beam: int) -> None:
    texts = [DATES[i % len(DATES)] + ("" if i < 5 else f" {i}") for i in range(24)]
    alone = [translate_lines(bundle, [t], beam)[0][0] for t in texts]
    with running(bundle, max_wait_ms=100, max_batch=16) as url:
        bodies: list[Any] = [{"text": t, "beam": beam} for t in texts[:12]]
        bodies += [{"texts": texts[i : i + 3], "beam": beam} for i in range(12, 24, 3)]
        responses = asyncio.run(_concurrent(url, bodies))
        metrics = httpx.get(url + "/metrics", timeout=10).text
    got = [t for r in responses for t in r.json()["translations"]]
    assert [r.status_code for r in responses] == [200] * len(bodies)
    assert len(got) == len(texts)
    for g, a in zip(got, alone):
        assert g["text"] == a.text and g["score"] == pytest.approx(a.score, abs=1e-4)
    sizes = _metric(metrics, "rnnkit_batch_size_")
    assert sizes["rnnkit_batch_size_sum"] == len(texts)
    assert sizes["rnnkit_batch_size_count"] < len(bodies)  # some model calls took > 1 request
    assert sizes['rnnkit_batch_size_bucket{le="1.0"}'] < sizes["rnnkit_batch_size_count"]
    assert 'rnnkit_requests_total{path="/translate",status="200"}' in metrics
    assert "rnnkit_queue_depth" in metrics and "rnnkit_request_seconds_bucket" in metrics


def _slow(real: Any, delay: float) -> Any:
    def run(bundle: Bundle, texts: list[str], *rest: Any) -> Any:
        time.sleep(delay)
        return real(bundle, texts, *rest)

    return run


def test_queue_full_is_503_with_retry_after(bundle: Bundle, monkeypatch: Any) -> None:
    monkeypatch.setattr(served, "translate_batch", _slow(served.translate_batch, 0.3))
    with running(bundle, max_queue=2, max_batch=1, max_wait_ms=0) as url:
        responses = asyncio.run(_concurrent(url, [{"text": DATES[0]}] * 10))
        assert httpx.get(url + "/health", timeout=10).status_code == 200
    codes = [r.status_code for r in responses]
    assert set(codes) == {200, 503} and codes.count(200) >= 2, codes
    for r in responses:
        if r.status_code == 503:
            assert r.headers["retry-after"] == "1" and "busy" in r.json()["detail"]


def test_model_error_fails_its_batch_only(bundle: Bundle, monkeypatch: Any) -> None:
    real = served.translate_batch

    def run(b: Bundle, texts: list[str], *rest: Any) -> Any:
        if "boom" in texts:
            raise RuntimeError("the model broke")
        return real(b, texts, *rest)

    monkeypatch.setattr(served, "translate_batch", run)
    with running(bundle, max_wait_ms=0) as url:
        bad = post(url, {"texts": [DATES[0], "boom"]})
        assert bad.status_code == 500 and "the model broke" in bad.json()["detail"]
        assert post(url, {"text": DATES[0]}).json()["translations"][0]["text"]


def test_cli_help_lists_the_options() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "rnnkit", "serve", "--help"],
        capture_output=True, text=True, timeout=60, env=env(),
    ).stdout  # fmt: skip
    for flag in ["--host", "--port", "--beam", "--max-batch", "--max-wait-ms", "--max-queue",
                 "--max-chars", "--max-texts", "--api-key", "RNNKIT_API_KEY",
                 "--access-log"]:  # fmt: skip
        assert flag in out


def test_cli_serves_env_key_and_stops_gracefully_on_sigterm(ckpt: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("RNNKIT_API_KEY", "k")
    with serving(ckpt, "--beam", "5", "--access-log") as (url, proc):
        assert url.startswith("http://127.0.0.1:")
        assert httpx.post(url + "translate", json={"text": "a"}, timeout=10).status_code == 401
        head = {"X-API-Key": "k"}
        box: list[httpx.Response] = []
        body = {"texts": [f"{d} {i}" for d in DATES for i in range(12)]}
        worker = threading.Thread(
            target=lambda: box.append(
                httpx.post(url + "translate", json=body, headers=head, timeout=60)
            )  # fmt: skip
        )
        worker.start()
        time.sleep(0.3)  # the request is in: SIGTERM must let it finish
        proc.send_signal(signal.SIGTERM)
        worker.join(60)
        assert proc.wait(60) == 0
        log = proc.printed()
    assert box and box[0].status_code == 200 and len(box[0].json()["translations"]) == 60
    access = [line.split(" ", 2)[1:] for line in log if line.startswith("20")]
    assert [a[0] for a in access] == ["127.0.0.1", "127.0.0.1"], log  # --access-log
    assert re.fullmatch(r'"POST /translate" 401 [\d.]+ ms', access[0][1]), access
    assert re.fullmatch(r'"POST /translate" 200 [\d.]+ ms', access[1][1]), access


def test_ctrl_c_twice_stops_at_once_without_a_traceback(ckpt: Path) -> None:
    """The second Ctrl-C (while the first answered what was queued) made uvicorn cut the
    model's thread off mid-batch: 500s, nine tracebacks and an abort (status 134)."""
    with serving(ckpt) as (url, proc):
        body = {"texts": [f"{d} {i}" for d in DATES for i in range(12)], "beam": 5}
        box: list[Any] = []

        def ask() -> None:
            try:
                box.append(httpx.post(url + "translate", json=body, timeout=60).status_code)
            except httpx.HTTPError as e:  # the connection closed: a forced stop
                box.append(type(e).__name__)

        workers = [threading.Thread(target=ask) for _ in range(16)]  # seconds of batches
        for w in workers:
            w.start()
        time.sleep(0.4)
        proc.send_signal(signal.SIGINT)  # answer what is queued...
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)  # ...no: stop now
        assert proc.wait(30) == 130
        for w in workers:
            w.join(60)
        printed = proc.printed()
    assert "rnnkit serve: stopped at once (Ctrl-C twice)" in printed, printed
    assert not [line for line in printed if "Traceback" in line or "terminate" in line]
    assert len(box) == 16 and 500 not in box, box


def test_a_talkative_server_is_not_stalled_by_its_own_output(ckpt: Path) -> None:
    """launch.started read the server's output only up to its URL: once the pipe held
    64 KiB of access log, the server blocked writing its next line and answered no more."""
    long = "x" * 4000  # each access-log line holds the path and query: 4 kB
    with serving(ckpt, "--access-log") as (url, proc), httpx.Client(timeout=20) as client:
        for i in range(40):  # 160 kB of log, beyond any pipe's buffer
            assert client.get(f"{url}health?q={long}{i}").status_code == 200, i
        time.sleep(0.5)  # the last lines on their way
        lines = [line for line in proc.printed() if "/health?q=" in line]
    assert len(lines) == 40 and f'{long}39" 200 ' in lines[-1]


def test_cli_busy_port_is_a_one_line_error(ckpt: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        r = subprocess.run(
            [sys.executable, "-m", "rnnkit", "serve", str(ckpt), "--port", port],
            capture_output=True, text=True, timeout=60, env=env(),
        )  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().startswith("rnnkit: error: serve: cannot listen on 127.0.0.1:")


def test_a_port_in_use_leaves_no_socket_open() -> None:
    import gc
    import warnings

    from rnnkit.serve.command import _socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always", ResourceWarning)
            with pytest.raises(OSError):
                _socket("127.0.0.1", taken.getsockname()[1])
            gc.collect()
    assert not [w for w in seen if issubclass(w.category, ResourceWarning)]


def test_a_request_given_up_on_costs_no_model_time():
    """A request whose future is already settled when its batch comes (it timed out, its
    client went away) is not translated; the others in the batch are."""
    import asyncio
    import threading

    from rnnkit.serve.batcher import Batcher

    gate, seen = threading.Event(), []

    def run(texts, options):
        gate.wait(10)
        seen.append(list(texts))
        return [t.upper() for t in texts]

    async def scenario():
        b = Batcher(run, max_batch=8, max_wait=0.0, max_queue=8)
        b.start()
        first = b.submit(["a"], "o")  # the worker takes it and waits at the gate
        await asyncio.sleep(0.2)
        gone, kept = b.submit(["b"], "o"), b.submit(["c"], "o")
        gone.cancel()
        gate.set()
        answers = await asyncio.wait_for(asyncio.gather(first, kept), 10)
        await asyncio.to_thread(b.close)
        return answers

    assert asyncio.run(scenario()) == [["A"], ["C"]]
    assert seen == [["a"], ["c"]]


def test_launch_reports_a_server_that_does_not_start(tmp_path: Path) -> None:
    """rnnkit.serve.launch.started raises with what the server printed, leaves no process."""
    from rnnkit.serve.launch import started

    with pytest.raises(RuntimeError, match="checkpoint not found"):
        with started(str(tmp_path / "missing.pt"), timeout=60):
            pass


def test_an_ensemble_serves_its_mean_distribution_without_gates(bundle: Bundle) -> None:
    other = copy.deepcopy(bundle.model)
    with torch.no_grad():  # a second member that disagrees a little
        for w in other.parameters():
            w.add_(0.05 * torch.randn_like(w))
    ens = Ensemble([bundle.model, other]).eval()
    with running(bundle, ens, beam=2) as u:
        info = httpx.get(u + "/info", timeout=10).json()
        assert (info["models"], info["steps"]) == (2, None)  # (built here: steps unknown)
        assert info["parameters"] == 2 * sum(p.numel() for p in bundle.model.parameters())
        got = post(u, {"texts": DATES, "n_best": 2}).json()["translations"]
        want = translate_lines(bundle, DATES, 2, n_best=2, model=ens)
        assert [g["text"] for g in got] == [w[0].text for w in want]
        assert [g["score"] for g in got] == pytest.approx([w[0].score for w in want], abs=1e-5)
        assert [a["text"] for a in got[0]["alternatives"]] == [w.text for w in want[0]]
        refused = post(u, {"text": DATES[0], "gates": True})
        assert refused.status_code == 422
        assert "need one model" in refused.json()["detail"]
