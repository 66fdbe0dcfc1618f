"""The ``variants`` experiment in its --quick form, and its verdict on made-up rows.

The quick run trains tiny models for seconds, so only properties are checked, never
scores: a row per (cell, T), medians between minima and maxima, Multi30k rows for every
LSTM variant (when the corpus is there), PNG figures linked from the Markdown, and a
verdict that says what the rows say.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from rnnkit.experiments import Report, run_experiment
from rnnkit.experiments import variants as v
from rnnkit.experiments.attention_length import missing_multi30k, multi30k_dir

PNG = b"\x89PNG\r\n\x1a\n"
HAVE_MULTI30K = missing_multi30k(multi30k_dir(None)) is None


def _is_png(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 1000 and path.read_bytes()[:8] == PNG


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[Report, Path]:
    out = tmp_path_factory.mktemp("variants")
    return run_experiment("variants", out, quick=True), out


def test_a_row_per_cell_and_length(quick: tuple[Report, Path]) -> None:
    rows = [r for r in quick[0].rows if r["task"] == "adding"]
    keys = sorted((r["cell"], r["T"]) for r in rows)
    assert keys == sorted((c, T) for c in v.CELLS for T in v.QUICK.lengths)
    assert len(v.CELLS) == 8 and {"LSTM", "LSTM fb=1", "GRU", "IndRNN"} <= set(v.CELLS)
    for r in rows:
        assert 0 <= r["MSE min"] <= r["MSE median"] <= r["MSE max"]
        solved, seeds = map(int, r["solved"].split("/"))
        assert seeds == len(v.QUICK.seeds) and 0 <= solved <= seeds
        if r["diverged"] == 0:
            assert math.isfinite(r["MSE max"])
        if seeds == 1:
            assert solved == int(r["MSE median"] < v.lm.SOLVED)


def test_multi30k_rows(quick: tuple[Report, Path]) -> None:
    rows = [r for r in quick[0].rows if r["task"] == "multi30k"]
    if not HAVE_MULTI30K:
        assert not rows and "Part 2 skipped" in quick[0].markdown
        return
    assert [r["cell"] for r in rows] == [name for name, _, _ in v.TRANSLATION]
    for r in rows:
        assert r["steps"] > 0 and 0 <= r["test BLEU"] <= 100 and r["curve"]
        assert r["95 % lo"] <= r["Δ test vs LSTM"] <= r["95 % hi"]
    assert rows[0]["Δ test vs LSTM"] == 0.0  # the LSTM against itself


def test_figures_and_markdown(quick: tuple[Report, Path]) -> None:
    report, out = quick
    assert len(report.figures) == 2 + HAVE_MULTI30K
    assert all(_is_png(f) and f.parent == out for f in report.figures)
    md = report.markdown
    assert md.startswith("## ") and "rnnkit experiment variants --quick" in md
    assert "### Verdict (of a --quick run" in md and "| T | cell | MSE median |" in md
    assert "Jozefowicz" in md and "Greff" in md
    for f in report.figures:
        assert f"({f.name})" in md
    for cell in v.CELLS:
        assert f"| {cell} |" in md


def _row(cell: str, T: int, mses: list[float]) -> dict:
    return {
        "task": "adding",
        "cell": cell,
        "T": T,
        "MSE min": min(mses),
        "MSE max": max(mses),
        "solved": f"{sum(m < v.lm.SOLVED for m in mses)}/{len(mses)}",
    }


SOLVED, FAILED, HALF = [0.001, 0.002, 0.003], [0.15, 0.16, 0.17], [0.001, 0.1, 0.16]


def _rows(at_400: dict[str, list[float]]) -> list[dict]:
    """Every cell solves T = 100; at T = 400 as given (default: fails)."""
    return [_row(c, 100, SOLVED) for c in v.CELLS] + [
        _row(c, 400, at_400.get(c, FAILED)) for c in v.CELLS
    ]


def test_compare_needs_complete_separation() -> None:
    rows = _rows({"CIFG": SOLVED, "MGU": HALF, "GRU": [0.001, 0.149, 0.149]})
    assert v.compare(rows, "CIFG", "LSTM", 400) == "better"
    assert v.compare(rows, "LSTM", "CIFG", 400) == "worse"
    assert v.compare(rows, "MGU", "LSTM", 400) == "tied"  # one seed overlaps
    assert v.compare(rows, "CIFG", "LSTM", 100) == "tied"  # both solve it
    # one seed solved, the others a hair below the LSTM's failures: failures tie
    assert v.compare(rows, "GRU", "LSTM", 400) == "tied"


def test_verdict_forget_bias_closes_the_gap() -> None:
    text = v.verdict(_rows({"GRU": SOLVED, "LSTM fb=1": SOLVED}), [])
    assert "The GRU is ahead of the LSTM at T = 400" in text
    assert "forget bias 1 closes it at T = 400: on the adding problem, the claim holds" in text
    text = v.verdict(_rows({"GRU": SOLVED}), [])
    assert "forget bias 1 leaves it at T = 400: on the adding problem, within" in text
    text = v.verdict(_rows({}), [])
    assert "no gap to close" in text
    nothing = [_row(r["cell"], r["T"], FAILED) for r in _rows({})]
    text = v.verdict(nothing, [])
    assert "No cell solves a seed at any length" in text and "no gap to close" not in text


def test_verdict_greff_follows_the_rows() -> None:
    text = v.verdict(_rows({}), [])
    assert "No LSTM variant beats the LSTM here" in text
    text = v.verdict(_rows({"peephole": SOLVED}), [])
    assert "peephole better at T = 400" in text
    assert "Against Greff et al.'s finding, peephole on the adding problem beat" in text
    mt = [{"cell": "CIFG", "test BLEU": 30.0, "Δ test vs LSTM": 2.0, "95 % lo": 0.5,
           "95 % hi": 3.5}]  # fmt: skip
    text = v.verdict(_rows({}), mt)
    assert "CIFG on Multi30k test BLEU beat the LSTM" in text
