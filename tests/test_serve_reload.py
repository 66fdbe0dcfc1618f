"""``rnnkit serve`` reads its checkpoints again on SIGHUP: the new model answers the next
requests and ``/info``; a file that fails to load leaves the current model serving."""

from __future__ import annotations

import copy
import re
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import torch
from serve_util import serving
from test_serve import _one_thread, running_app  # noqa: F401 (an autouse fixture)

from rnnkit.checkpoint import Bundle, CheckpointError, load_bundle, load_checkpoint, save_checkpoint
from rnnkit.serve.app import Settings, create_app
from rnnkit.translate import translate_lines

DATES = ["9th of May, 2018", "5/9/18", "sun, 25 dec 2005"]


def other_model(ckpt: Path, step: int) -> Bundle:
    """The checkpoint's model with other weights (so it translates differently) and step."""
    torch.manual_seed(step)
    b = copy.copy(load_bundle(ckpt))
    b.model = copy.deepcopy(b.model)
    with torch.no_grad():
        for p in b.model.parameters():
            p.add_(0.5 * torch.randn_like(p))
    b.step = step
    return b


def texts(url: str) -> list[str]:
    r = httpx.post(f"{url}/translate", json={"texts": DATES, "beam": 1}, timeout=30)
    assert r.status_code == 200, r.text
    return [t["text"] for t in r.json()["translations"]]


def reloads(url: str, result: str) -> float:
    m = re.search(
        rf'rnnkit_reloads_total{{result="{result}"}} (\S+)', httpx.get(f"{url}/metrics").text
    )
    return float(m.group(1)) if m else 0.0


def test_reload_swaps_the_model_and_a_failed_one_keeps_it(ckpt: Path, caplog: Any) -> None:
    caplog.set_level("INFO", logger="rnnkit.serve.reload")
    first, second = load_bundle(ckpt), other_model(ckpt, 4242)
    loads: list[Any] = [(second, None), CheckpointError("m.pt: truncated")]

    def loader() -> Any:
        nxt = loads.pop(0)
        if isinstance(nxt, Exception):
            raise nxt
        return nxt

    app = create_app(first, Settings(), "m.pt", None, loader)
    want = [[t[0].text for t in translate_lines(b, DATES, 1)] for b in (first, second)]
    assert want[0] != want[1]
    with running_app(app) as url:
        assert httpx.get(f"{url}/info").json()["step"] == first.step
        assert texts(url) == want[0]
        assert app.state.reload() is True
        assert httpx.get(f"{url}/info").json()["step"] == 4242
        assert texts(url) == want[1]
        assert reloads(url, "ok") == 1
        assert app.state.reload() is False  # the loader fails: the second model stays
        assert httpx.get(f"{url}/info").json()["step"] == 4242
        assert texts(url) == want[1]
        assert reloads(url, "error") == 1
    said = [(r.name, r.levelname, r.getMessage()) for r in caplog.records]
    assert (
        "rnnkit.serve.reload",
        "INFO",
        f"rnnkit serve: reloaded m.pt (step {first.step} → 4242)",
    ) in said
    failed = "rnnkit serve: reload failed, still serving step 4242: m.pt: truncated"
    assert ("rnnkit.serve.reload", "WARNING", failed) in said


def test_without_a_loader_reload_does_nothing(ckpt: Path) -> None:
    app = create_app(load_bundle(ckpt), Settings(), "m.pt")
    assert app.state.reload() is False


def wait_for(check: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_sighup_reloads_the_files_of_a_running_server(ckpt: Path, tmp_path: Path) -> None:
    served = tmp_path / "m.pt"
    served.write_bytes(ckpt.read_bytes())
    with serving(served) as (root, proc):
        url = root.rstrip("/")
        before = texts(url)
        assert httpx.get(f"{url}/info").json()["step"] == load_bundle(ckpt).step
        new = load_checkpoint(ckpt)
        new["step"] = 777
        torch.manual_seed(777)
        new["model"] = {k: v + 0.5 * torch.randn_like(v) for k, v in new["model"].items()}
        save_checkpoint(served, new)  # atomic, as rnnkit train writes
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: httpx.get(f"{url}/info").json()["step"] == 777)
        assert texts(url) != before
        served.write_bytes(b"not a checkpoint")  # a broken file: keep serving step 777
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: reloads(url, "error") == 1)
        assert httpx.get(f"{url}/info").json()["step"] == 777
        assert len(texts(url)) == len(DATES)
        assert proc.poll() is None
        said = [line for line in proc.printed() if "reload" in line]
    assert said[0] == f"rnnkit serve: reloaded m.pt (step {load_bundle(ckpt).step} → 777)"
    assert said[1].startswith("rnnkit serve: reload failed, still serving step 777: ")
