"""bench/serve_load.py, short: a few hundred requests from 32 clients lose nothing, get no
5xx and no malformed answer, and leave the RSS flat; with --max-queue 8 and 64 clients
every request is answered 200 or 503 and /health stays 200."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.serial  # timing and the server's RSS: not beside other tests


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("serve_load", ROOT / "bench" / "serve_load.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["serve_load"] = module
    spec.loader.exec_module(module)
    return module


def test_steady_load_loses_nothing(bench: ModuleType, ckpt: Path) -> None:
    s = bench.steady(str(ckpt), requests=600, clients=32)
    stats = s["stats"]
    assert stats.n == 600 and dict(stats.codes) == {"200": 600}, stats.line()
    assert s["rss_all"] <= 1.10 * s["rss_first"], (s["rss_first"], s["rss_all"])
    assert stats.quantile(0.5) <= stats.quantile(0.9) <= stats.quantile(0.99)


def test_full_queue_gives_503_and_health_stays_up(bench: ModuleType, ckpt: Path) -> None:
    stats, health = bench.saturated(str(ckpt), requests=300, clients=64)
    assert stats.n == 300 and set(stats.codes) <= {"200", "503"}, stats.line()
    assert stats.codes["200"] > 0, stats.line()  # test_serve checks that 503s do come
    assert set(health) == {200}, health


def test_main_prints_the_report(
    bench: ModuleType, ckpt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench.main([str(ckpt), "--requests", "200"]) == 0
    out = capsys.readouterr().out
    assert "req/s" in out and "p99" in out and "RSS after 20" in out and out.strip().endswith("OK")
