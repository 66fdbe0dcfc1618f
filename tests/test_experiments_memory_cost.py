"""The ``long-memory`` and ``attention-cost`` experiments, run in their --quick form."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch

from rnnkit.data import adding_batch
from rnnkit.experiments import Report, run_experiment, update_results
from rnnkit.experiments import attention_cost as ac
from rnnkit.experiments import long_memory as lm

PNG = b"\x89PNG\r\n\x1a\n"


def _is_png(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 1000 and path.read_bytes()[:8] == PNG


@pytest.fixture(scope="module")
def long_memory(tmp_path_factory: pytest.TempPathFactory) -> tuple[Report, Path]:
    out = tmp_path_factory.mktemp("long-memory")
    return run_experiment("long-memory", out, quick=True), out


@pytest.fixture(scope="module")
def attention_cost(tmp_path_factory: pytest.TempPathFactory) -> tuple[Report, Path]:
    out = tmp_path_factory.mktemp("attention-cost")
    return run_experiment("attention-cost", out, quick=True), out


def test_long_memory_has_a_row_per_cell_and_length(long_memory: tuple[Report, Path]) -> None:
    report, _ = long_memory
    keys = sorted((r["cell"], r["T"]) for r in report.rows)
    assert keys == sorted((c, T) for c in lm.CELLS for T in lm.QUICK.lengths)
    for r in report.rows:
        assert math.isfinite(r["MSE mean"]) and r["MSE mean"] >= 0
        assert 0 <= r["MSE min"] <= r["MSE mean"] <= r["MSE max"]
        solved, seeds = map(int, r["solved (< 0.0167)"].split("/"))
        assert seeds == len(lm.QUICK.seeds) and 0 <= solved <= seeds
        if seeds == 1:
            assert solved == int(r["MSE mean"] < lm.SOLVED)


def test_long_memory_writes_figures_and_markdown(long_memory: tuple[Report, Path]) -> None:
    report, out = long_memory
    assert report.figures and all(_is_png(f) and f.parent == out for f in report.figures)
    md = report.markdown
    assert md.startswith("## ") and "rnnkit experiment long-memory --quick" in md
    assert "**Verdict** (of a --quick run: its tiny" in md and "| T | cell |" in md
    for f in report.figures:
        assert f"({f.name})" in md  # linked beside the quick RESULTS.md


def test_adding_baseline_is_one_sixth() -> None:
    _, y = adding_batch(20000, 10, torch.Generator().manual_seed(0))
    assert abs(float(((y - 1) ** 2).mean()) - lm.BASELINE) < 0.01


def test_verdict_follows_the_numbers() -> None:
    def row(cell: str, T: int, mse: float, solved: str) -> dict:
        return {"cell": cell, "T": T, "MSE mean": mse, "solved (< 0.0167)": solved}

    rows = [
        row("RNN", 10, 0.01, "2/3"),
        row("RNN", 50, 0.17, "0/3"),
        row("LSTM", 10, 0.001, "3/3"),
        row("LSTM", 50, 0.002, "3/3"),
        row("GRU", 10, 0.001, "3/3"),
        row("GRU", 50, 0.16, "1/3"),
    ]
    text = lm.verdict(rows)
    assert "the RNN solves T = 10, not T = 50" in text
    assert "the LSTM solves T = 10, 50, every length tried" in text
    assert "the GRU solves T = 10, not T = 50" in text
    assert "the LSTM carries the marked value" in text  # the GRU reaches no further
    assert "The claim holds in part" in text and "the GRU reaches no further" in text
    lstm_fails = [r if r["cell"] != "LSTM" else {**r, "solved (< 0.0167)": "0/3"} for r in rows]
    gru_carries = [
        r if r["cell"] != "GRU" else {**r, "solved (< 0.0167)": "3/3"} for r in lstm_fails
    ]
    text = lm.verdict(gru_carries)  # (the claim names both gated cells: not "holds")
    assert "The claim holds in part: the GRU carries" in text and "the LSTM solves none." in text
    # a cell that solves nothing is measured against the baseline of its best row's T
    # (0.152 was "1.1× below the baseline" beside a printed baseline of 0.147 at T = 10)
    none = [{**r, "solved (< 0.0167)": "0/3", "MSE mean": 0.152 + r["T"] / 1e4} for r in rows]
    text = lm.verdict(none, {10: 0.147, 50: 0.17})
    assert (
        "its best mean MSE, 0.153 at T = 10, is no better than that length's baseline, 0.147"
        in text
    )
    text = lm.verdict(none, {10: 0.160, 50: 0.17})
    assert "0.153 at T = 10, is 4% below that length's baseline, 0.16)" in text
    text = lm.verdict(none, {10: 0.5, 50: 0.17})
    assert "0.153 at T = 10, is 3.3× below that length's baseline, 0.5)" in text


def test_attention_cost_rows(attention_cost: tuple[Report, Path]) -> None:
    report, out = attention_cost
    rows = report.rows
    assert sorted((r["S"], r["attention"]) for r in rows) == sorted(
        (S, a) for S in ac.QUICK_S for a in ac.STYLES
    )
    for r in rows:
        for k in ("step ms", "step wall ms", "sentence ms", "sentence wall ms"):
            assert r[k] > 0
    att = sorted((r for r in rows if r["attention"] == "bahdanau"), key=lambda r: r["S"])
    assert att[-1]["step ms"] > att[0]["step ms"]
    assert all(_is_png(f) for f in report.figures)
    assert "**Verdict** (of a --quick run: its tiny" in report.markdown


def test_attention_memory_is_exactly_linear_in_source_length(
    attention_cost: tuple[Report, Path],
) -> None:
    report, _ = attention_cost
    B, H = ac.SIZES["batch"], ac.SIZES["hidden"]
    per_token = B * (2 * H + H) * 4 + B  # h (2H floats) + U h (H floats) + mask (1 byte)
    for r in report.rows:
        held = round(r["held MiB"] * ac.MiB)
        if r["attention"] == "bahdanau":
            assert held == per_token * r["S"]
        else:
            assert held == B * 2 * H * 4  # C alone, whatever S


def test_attention_step_grows_with_a_positive_fitted_slope(
    attention_cost: tuple[Report, Path],
) -> None:
    fits = ac.growth(attention_cost[0].rows)
    assert fits["bahdanau"]["b_us"] > 0
    assert fits["bahdanau"]["q_us"] > 0


def test_fit_recovers_a_line_exactly() -> None:
    import numpy as np

    S = np.array([10.0, 50.0, 100.0, 400.0])
    (a, b), r2 = ac.fit(np.stack([np.ones_like(S), S], 1), 3.0 + 0.5 * S)
    assert a == pytest.approx(3.0) and b == pytest.approx(0.5) and r2 == pytest.approx(1.0)


def test_update_results_replaces_only_its_section(tmp_path: Path) -> None:
    path = tmp_path / "RESULTS.md"
    update_results(path, "lstm-vs-gru", "## other\nkeep me")
    update_results(path, "long-memory", "## first version")
    update_results(path, "long-memory", "## second version")
    text = path.read_text(encoding="utf-8")
    assert "keep me" in text and "second version" in text and "first version" not in text
    assert text.count("<!-- experiment:long-memory begin -->") == 1


def test_figures_go_where_the_results_page_links_them(
    attention_cost: tuple[Report, Path], tmp_path: Path
) -> None:
    """A full run rewrote docs/RESULTS.md's tables but left the old figures they link
    (attention-cost and long-memory copied none); --results elsewhere linked figures that
    were not there. Now the page's links resolve, to this run's figures."""
    from rnnkit.experiments import place_figures

    report, out = attention_cost
    page = tmp_path / "docs" / "RESULTS.md"
    (tmp_path / "docs" / "figures").mkdir(parents=True)
    stale = tmp_path / "docs" / "figures" / report.figures[0].name
    stale.write_bytes(b"an earlier run's figure")
    md = place_figures(report, page)
    links = re.findall(r"!\[[^]]*\]\(([^)]+)\)", md)
    assert links == [f"figures/{f.name}" for f in report.figures]
    for link, figure in zip(links, report.figures):
        assert (page.parent / link).read_bytes() == figure.read_bytes()
    beside = place_figures(report, out / "RESULTS.md")  # --quick's page, in its folder
    assert re.findall(r"!\[[^]]*\]\(([^)]+)\)", beside) == [f.name for f in report.figures]


def test_the_memory_measure_prints_nothing(capfd) -> None:
    """torch's profiler (kineto, C++) wrote "USDT: ... profiler_start" / "profiler_stop"
    lines to stderr at every measured step, between the experiment's progress lines."""
    from rnnkit.experiments.attention_cost_measure import step_peak_bytes
    from rnnkit.model import Seq2Seq

    model = Seq2Seq(20, 20, 8, 8).eval()
    enc = model.encode(torch.randint(4, 20, (2, 5)), torch.tensor([5, 5]))
    assert step_peak_bytes(model, torch.tensor([2, 2]), model.init_state(enc), enc) > 0
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
