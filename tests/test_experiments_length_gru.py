"""The quick versions of the experiments `attention-length` and `lstm-vs-gru`.

They train tiny models for seconds, so only properties are checked, never scores:
rows for both models, bucket counts that add up to the test set, scores on their
scales, non-empty PNG figures, the GRU/LSTM recurrent-weight ratio of exactly 3/4,
and a Markdown section that holds the tables and the command that regenerates it.
"""

from fractions import Fraction
from pathlib import Path

import pytest

from rnnkit.evaluate import score
from rnnkit.experiments import run_experiment
from rnnkit.experiments.attention_length import (
    DATES,
    MODELS,
    MULTI30K,
    missing_multi30k,
    multi30k_dir,
    slope,
    verdict,
)
from rnnkit.experiments.lstm_vs_gru import at_time, learning_curve, paired_bootstrap

PNG = b"\x89PNG\r\n\x1a\n"
HAVE_MULTI30K = missing_multi30k(multi30k_dir(None)) is None


def _png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == PNG


@pytest.fixture(scope="module")
def length_report(tmp_path_factory: pytest.TempPathFactory):
    return run_experiment("attention-length", tmp_path_factory.mktemp("length"), quick=True)


@pytest.fixture(scope="module")
def gru_report(tmp_path_factory: pytest.TempPathFactory):
    return run_experiment("lstm-vs-gru", tmp_path_factory.mktemp("gru"), quick=True)


def test_attention_length_rows_cover_the_test_set(length_report) -> None:
    tasks = {"dates": DATES["quick"].test} | ({"multi30k": MULTI30K["quick"].test}
                                              if HAVE_MULTI30K else {})  # fmt: skip
    assert {r["task"] for r in length_report.rows} == set(tasks)
    for task, n_test in tasks.items():
        for model in MODELS.values():
            rows = [r for r in length_report.rows if r["task"] == task and r["model"] == model]
            assert rows, (task, model)
            assert sum(r["count"] for r in rows) == n_test
            assert all(0.0 <= r["bleu"] <= 100.0 for r in rows)
            if task == "dates":
                assert all(0.0 <= r["exact"] <= 1.0 for r in rows)


def test_attention_length_report_and_figure(length_report) -> None:
    md = length_report.markdown
    assert "OMP_NUM_THREADS=1 rnnkit experiment attention-length --quick" in md
    assert "| source length | sentences |" in md and "**Verdict** (of a --quick run: its tiny" in md
    assert ("Multi30k de→en from" in md) if HAVE_MULTI30K else ("Skipped:" in md)
    (figure,) = length_report.figures
    _png(figure)
    assert f"]({figure.name})" in md


def test_attention_length_skips_missing_multi30k(tmp_path: Path) -> None:
    folder = multi30k_dir(tmp_path)
    reason = missing_multi30k(folder)
    assert reason is not None and str(folder) in reason and "train.de" in reason


def test_slope_of_a_straight_line() -> None:
    rows = [{"count": c, "mean_len": x, "y": 50 - 2 * x} for c, x in ((5, 1), (1, 2), (9, 4))]
    assert slope(rows, "y", per=10) == pytest.approx(-20)


def _bucket_rows(scores: dict[str, list[float]]) -> list[dict]:
    return [
        {"model": MODELS[m], "bucket": f"{10 * i}-{10 * i + 9}", "count": 50,
         "mean_len": 10 * i + 5, "bleu": y}
        for m, ys in scores.items() for i, y in enumerate(ys)
    ]  # fmt: skip


def test_verdict_is_read_off_the_numbers() -> None:
    falls = _bucket_rows({"bahdanau": [30, 30, 29], "none": [25, 18, 10]})
    assert verdict("multi30k", falls, "bleu").startswith("Yes:")
    flat = _bucket_rows({"bahdanau": [30, 30, 30], "none": [20, 21, 20]})
    assert verdict("multi30k", flat, "bleu").startswith("No: neither")
    reverse = _bucket_rows({"bahdanau": [30, 20, 10], "none": [20, 20, 19]})
    assert verdict("multi30k", reverse, "bleu").startswith("No: here the attention model")
    far = _bucket_rows({"bahdanau": [99, 99, 99], "none": [5, 6, 5]})
    assert "far behind at every length" in verdict("multi30k", far, "bleu")


def test_lstm_vs_gru_parameters_and_rows(gru_report) -> None:
    tasks = {r["task"] for r in gru_report.rows}
    assert "dates" in tasks and (("multi30k" in tasks) == HAVE_MULTI30K)
    for task in tasks:
        by_cell = {r["cell"]: r for r in gru_report.rows if r["task"] == task}
        assert set(by_cell) == {"LSTM", "GRU"}
        gru, lstm = by_cell["GRU"], by_cell["LSTM"]
        recurrent = Fraction(gru["recurrent parameters"], lstm["recurrent parameters"])
        assert recurrent == Fraction(3, 4)
        # the rest of the model is the same size for both cells
        rest = [r["all parameters"] - r["recurrent parameters"] for r in (gru, lstm)]
        assert rest[0] == rest[1] > 0
        for r in (gru, lstm):
            assert r["steps"] > 0 and r["target tok/s (run)"] > 0 and r["steps/s (bench)"] > 0
            assert 0.0 <= r["test BLEU"] <= 100.0 and 0.0 <= r["test exact %"] <= 100.0
            dev = [v for k, v in r.items() if k.startswith("dev BLEU")]
            assert len(dev) == 2 and all(0.0 <= v <= 100.0 for v in dev)


def test_lstm_vs_gru_report_and_figure(gru_report) -> None:
    md = gru_report.markdown
    assert "OMP_NUM_THREADS=1 rnnkit experiment lstm-vs-gru --quick" in md
    assert "| task | cell | recurrent parameters | all parameters |" in md
    assert "(exactly 3/4)" in md and "Chung et al." in md
    (figure,) = gru_report.figures
    _png(figure)
    assert f"]({figure.name})" in md


def test_learning_curve_takes_validation_time_out(tmp_path: Path) -> None:
    # 1 s per 10 steps; the validation at step 20 took 5 s and shows in the next interval
    log = tmp_path / "log.csv"
    log.write_text(
        "step,epoch,split,loss,ppl,lr,tokens_per_s,bleu,chrf,elapsed_s\n"
        "10,1,train,1,1,1,100,,,1.0\n"
        "20,1,train,1,1,1,100,,,2.0\n"
        "20,1,dev,1,1,,,5.0,9,2.0\n"
        "30,1,train,1,1,1,100,,,8.0\n"
        "40,1,train,1,1,1,100,,,9.0\n"
        "40,1,dev,1,1,,,7.0,9,9.0\n"
    )
    curve, speed = learning_curve(log)
    assert [r["step"] for r in curve] == [20, 40]
    assert speed == {"tokens_per_s": 100.0, "steps_per_s": pytest.approx(10.0)}
    assert [r["train_s"] for r in curve] == pytest.approx([2.0, 4.0])
    assert at_time(curve, 3.0)["bleu"] == 5.0 and at_time(curve, 4.0)["bleu"] == 7.0


def test_paired_bootstrap_agrees_with_corpus_scores() -> None:
    refs = [
        "a small dog runs across the green grass",
        "two men are sitting at a wooden table",
        "a woman in a red coat walks down the street",
        "children play football in the park",
    ] * 5
    good = [r.replace("small", "little") for r in refs]
    poor = [" ".join(r.split()[:4]) for r in refs]
    d, lo, hi = paired_bootstrap(good, poor, refs, "bleu", samples=200)
    assert d == pytest.approx(score(good, refs)["bleu"] - score(poor, refs)["bleu"])
    assert 0 < lo <= d <= hi
    assert paired_bootstrap(good, good, refs, "bleu", samples=50) == (0.0, 0.0, 0.0)
    half = refs[:10] + poor[10:]
    assert paired_bootstrap(refs, half, refs, "exact", samples=50)[0] == pytest.approx(50.0)


def test_the_lstm_vs_gru_conclusion_names_no_empty_list():
    """With every task on one side it said "differs insignificantly on no task and
    significantly ... on dates, multi30k" and "GRU faster on dates, multi30k, slower on
    no task"."""
    from rnnkit.experiments.lstm_vs_gru_report import _conclusion

    def task(ci: tuple[float, float, float], gru_pace: float) -> dict:
        bench = lambda v: {"bench": {"auto": {"steps_per_s": v}}}  # noqa: E731
        return {"gru": {"vs_lstm": {"bleu": ci}, **bench(gru_pace)}, "lstm": bench(1.0)}

    apart = _conclusion(
        {"dates": task((2.0, 1.0, 3.0), 1.2), "multi30k": task((-1, -2, -0.5), 1.1)}
    )
    assert (
        "differs significantly (test-set bootstrap, one seed) on dates, multi30k: unlike" in apart
    )
    assert "Training steps: GRU faster (> 5 %) on dates, multi30k;" in apart
    assert "no task" not in apart and "insignificantly" not in apart and "slower" not in apart
    mixed = _conclusion({"dates": task((0.1, -1, 1), 0.9), "multi30k": task((2, 1, 3), 1.0)})
    assert (
        "insignificantly on dates and significantly (test-set bootstrap, one seed) on "
        "multi30k: only partly consistent" in mixed
    )
    assert "Training steps: GRU slower (> 5 %) on dates, within 5 % on multi30k;" in mixed
    same = _conclusion({"dates": task((0.1, -1, 1), 1.0)})
    assert "differs insignificantly on dates: consistent with Chung" in same


@pytest.mark.parametrize("name", ["attention-length", "lstm-vs-gru"])
def test_a_ctrl_c_in_a_model_stops_the_experiment(name, tmp_path, monkeypatch, capsys):
    """train() stops at a Ctrl-C and returns; the experiment went on with the next model
    and wrote RESULTS.md comparing a 14-step model with whole ones (exit 0)."""
    import rnnkit.train
    from rnnkit.cli import main
    from rnnkit.position import TrainResult

    calls = []

    def interrupted(cfg, out_dir, **kw):
        calls.append(out_dir)
        return TrainResult(14, 0.0, "interrupted")

    monkeypatch.setattr(rnnkit.train, "train", interrupted)
    assert main(["experiment", name, "--quick", "--out", str(tmp_path)]) == 130
    assert len(calls) == 1 and not (tmp_path / "RESULTS.md").exists()
    assert capsys.readouterr().err.endswith("rnnkit: interrupted\n")
