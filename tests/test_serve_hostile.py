"""rnnkit serve against a hostile environment: a log stream that blocks or breaks, a
client gone half-way through its body, a reload the server's options cannot serve, a
path that is not UTF-8, an empty --host."""

from __future__ import annotations

import io
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_serve import running, running_app
from test_serve_guards import HEAD_100, _connect
from toy import one_thread, reaped, word_bundle

from rnnkit.serve.app import Settings, create_app
from rnnkit.serve.command import _LineWriter, short_names


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with one_thread():
        yield


def test_a_log_stream_that_blocks_never_holds_the_server() -> None:
    """``serve --access-log | sleep``: once 64 KiB filled the pipe, the event loop
    blocked writing the next line; every endpoint and SIGTERM waited for ever."""
    release = threading.Event()

    class Blocked(io.StringIO):
        def write(self, text: str) -> int:
            release.wait(10)
            return super().write(text)

    stream = Blocked()
    log = logging.getLogger("rnnkit.test.blocked")
    log.addHandler(_LineWriter(stream, queued=3))
    log.setLevel(logging.INFO)
    log.propagate = False
    start = time.monotonic()
    for i in range(100):  # (3 wait, the rest are dropped)
        log.info("line %d", i)
    assert time.monotonic() - start < 1.0
    release.set()
    log.handlers[0].flush()
    assert stream.getvalue().splitlines()[:1] == ["line 0"]


def test_a_log_stream_that_breaks_is_said_once(capfd: Any) -> None:
    """``serve --access-log | head -1``: 55 lines of "--- Logging error ---" per request."""

    class Broken(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    log = logging.getLogger("rnnkit.test.broken")
    writer = _LineWriter(Broken())
    log.addHandler(writer)
    log.setLevel(logging.INFO)
    log.propagate = False
    for i in range(5):
        log.info("line %d", i)
    writer.flush()
    time.sleep(0.1)
    err = capfd.readouterr().err
    assert err.count("log lines are no longer written") == 1 and "Logging error" not in err


def test_a_client_gone_half_way_through_its_body_is_499() -> None:
    """It was a starlette ClientDisconnect traceback on stderr and a 500 in the metrics."""
    with running(word_bundle()) as url:
        with _connect(url) as s:
            s.sendall(HEAD_100 + b'{"text": "')
        time.sleep(0.5)
        metrics = httpx.get(url + "/metrics", timeout=10).text
    assert 'rnnkit_requests_total{path="/translate",status="499"} 1.0' in metrics
    assert 'status="500"' not in metrics


def test_a_reload_whose_vocabulary_is_narrower_than_beam_is_refused() -> None:
    """With --beam 20 and a new checkpoint of 12 target tokens, the reload was logged as
    done and every request without its own beam was a 422 from then on."""
    small, bundle = word_bundle(), word_bundle(words=[*"abcdefgh", *"ijklmnop"])
    beam = len(small.tgt_vocab) + 1
    assert beam <= len(bundle.tgt_vocab)
    app = create_app(bundle, Settings(beam=beam), "m.pt", None, lambda: (small, None))
    with running_app(app) as url:
        assert not app.state.reload()
        reply = httpx.post(url + "/translate", json={"text": "a b"}, timeout=30)
        metrics = httpx.get(url + "/metrics", timeout=10).text
    assert reply.status_code == 200, reply.text
    assert 'rnnkit_reloads_total{result="error"} 1.0' in metrics


def test_a_checkpoint_path_that_is_not_utf8_is_named_with_replacement_characters() -> None:
    """/info was a 500 (pydantic: surrogates not allowed)."""
    assert short_names([os.fsdecode(b"/tmp/bad\xff.pt")]) == ["bad\ufffd.pt"]


def test_an_empty_host_is_a_usage_error(capsys: Any) -> None:
    """``--host "$UNSET"`` listened on every interface without a word."""
    from rnnkit.cli import main

    assert main(["serve", "any.pt", "--host", ""]) == 2
    assert "--host: empty" in capsys.readouterr().err


def test_a_checkpoint_written_over_in_place_is_refused(tmp_path: Any) -> None:
    """torch.load checks no checksum: a best.pt written over in place (``rsync --inplace``,
    ``dd conv=notrunc``) while the server reloaded it served a mixture of two models."""
    import struct
    import zipfile

    from toy import save_bundle

    from rnnkit.checkpoint import CheckpointError, load_checkpoint

    path = save_bundle(word_bundle(), tmp_path / "m.pt")
    with zipfile.ZipFile(path) as z:
        tensors = [i for i in z.infolist() if "/data/" in i.filename]
        info = max(tensors, key=lambda i: i.file_size)  # a tensor's bytes
    with open(path, "r+b") as f:
        f.seek(info.header_offset)
        name, extra = struct.unpack("<26xHH", f.read(30))
        f.seek(info.header_offset + 30 + name + extra + info.file_size // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(CheckpointError, match=r"does not match its checksum"):
        load_checkpoint(path)


def catches(pid: int, sig: int, timeout: float = 30.0) -> None:
    """Wait until process ``pid`` has a handler for ``sig`` (Linux: /proc/PID/status,
    the SigCgt mask) and has not yet imported torch (its memory maps)."""
    deadline = time.monotonic() + timeout
    while True:
        mask = re.search(r"^SigCgt:\s*([0-9a-f]+)", Path(f"/proc/{pid}/status").read_text(), re.M)
        assert mask is not None, "no SigCgt line in /proc/PID/status"
        if int(mask.group(1), 16) >> (sig - 1) & 1:
            break
        assert time.monotonic() < deadline, f"no handler for signal {sig} in {timeout} s"
        time.sleep(0.005)
    assert "libtorch" not in Path(f"/proc/{pid}/maps").read_text(), "torch was loaded first"


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux's /proc")
@pytest.mark.parametrize(
    ("sig", "status", "says"), [("SIGHUP", 0, "reloaded"), ("SIGTERM", 0, "stopped")]
)
def test_a_signal_in_the_first_second_is_taken_as_documented(
    tmp_path: Any, sig: str, status: int, says: str
) -> None:
    """The handlers came after torch's import: a SIGHUP in the first two seconds killed the
    server (status 129), a SIGTERM ended it by the signal instead of "stopped", status 0."""
    import signal
    import subprocess
    import sys

    from serve_util import env
    from toy import save_bundle

    path = save_bundle(word_bundle(), tmp_path / "m.pt")
    argv = [sys.executable, "-m", "rnnkit", "serve", str(path), "--port", "0"]
    proc = subprocess.Popen(
        argv, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    with reaped(proc):
        # as soon as the handler is in place (torch not yet imported): before it, at the
        # interpreter's start, no program can catch a signal (a fixed sleep of 0.3 s was
        # too short on a loaded machine: the default action ended the process)
        catches(proc.pid, getattr(signal, sig))
        proc.send_signal(getattr(signal, sig))
        if sig == "SIGHUP":
            assert proc.stdout is not None and proc.stdout.readline().startswith(
                "rnnkit serve: http"
            )
            time.sleep(1.0)  # (the reload asked for while loading runs as the server starts)
            proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == status, err
    assert says in err and "Traceback" not in err, err


@pytest.mark.parametrize("framing", ["chunked", "declared"])
def test_a_body_refused_as_too_big_closes_its_connection(framing: str) -> None:
    """After the 413 of a chunked body the server went on reading and dropping what the
    client sent, as long as it sent (2 GiB in 3 s). (A declared length too long was
    closed already, by uvicorn: kept so.)"""
    head = b"POST /translate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    head += b"Transfer-Encoding: chunked\r\n\r\n" if framing == "chunked" else b""
    head += b"Content-Length: 1000000000\r\n\r\n" if framing == "declared" else b""
    piece = b"4000\r\n" + b"x" * 0x4000 + b"\r\n" if framing == "chunked" else b"x" * 0x4000
    with running(word_bundle(), max_chars=1, max_texts=1) as url:  # (64 KiB at most)
        with _connect(url) as s:
            s.sendall(head)
            stop, sent = threading.Event(), [0]

            def feed() -> None:
                try:
                    while not stop.is_set() and sent[0] < 1 << 30:
                        sent[0] += s.send(piece)
                except OSError:
                    pass  # (closed by the server)

            feeder = threading.Thread(target=feed, daemon=True)
            feeder.start()
            reply, end = b"", time.monotonic() + 5
            try:
                while time.monotonic() < end and (got := s.recv(65536)):
                    reply += got
                closed = time.monotonic() < end
            except OSError:  # (a reset: closed too)
                closed = True
            stop.set()
            feeder.join(10)
    assert reply.startswith(b"HTTP/1.1 413") and b"connection: close" in reply.lower()
    assert closed, f"the connection stayed open; {sent[0] >> 20} MiB sent"


def test_info_of_an_ensemble_gives_each_members_step(tmp_path: Any) -> None:
    """/info's ``step`` was the first member's alone: after a SIGHUP, which files
    answered could not be told."""
    import torch
    from toy import save_bundle

    from rnnkit.checkpoint import load_checkpoint
    from rnnkit.ensemble import load_ensemble

    paths = [save_bundle(word_bundle(seed), tmp_path / f"m{seed}.pt") for seed in (0, 1)]
    ck = load_checkpoint(paths[1])
    torch.save({**ck, "step": 300}, paths[1])
    bundle, ens = load_ensemble(paths)
    with running_app(create_app(bundle, Settings(), "m0.pt + m1.pt", ens)) as url:
        info = httpx.get(url + "/info", timeout=10).json()
    assert (info["step"], info["steps"], info["models"]) == (0, [0, 300], 2)
    with running(word_bundle()) as url:
        assert httpx.get(url + "/info", timeout=10).json()["steps"] == [0]
