"""``train.early_stopping_metric``: the dev score that picks ``best.pt``, counts towards
``patience`` and drives the plateau schedule (bleu, chrf, accuracy, loss, ppl); and the
exact-match ``accuracy`` that validation, ``log.csv`` and ``rnnkit evaluate`` report."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from test_train import one_thread, read_log, tiny, write_yaml  # noqa: F401 (fixture)

import rnnkit.validation as validation
from rnnkit.about import checkpoint_info
from rnnkit.checkpoint import CheckpointError, load_bundle, load_checkpoint
from rnnkit.cli import main
from rnnkit.config import ConfigError, config_from_dict
from rnnkit.data.tasks import task_splits
from rnnkit.evaluate import score
from rnnkit.train import train

# Scripted dev results, one per validation: the metrics disagree on which is best.
#   loss / ppl best at validation 4, bleu at 5, chrf at 2, accuracy at 3.
SCRIPT = [
    {"loss": 3.0, "bleu": 10.0, "chrf": 30.0, "accuracy": 0.1},
    {"loss": 2.0, "bleu": 30.0, "chrf": 60.0, "accuracy": 0.2},
    {"loss": 2.5, "bleu": 20.0, "chrf": 40.0, "accuracy": 0.5},
    {"loss": 1.0, "bleu": 5.0, "chrf": 50.0, "accuracy": 0.3},
    {"loss": 1.5, "bleu": 40.0, "chrf": 20.0, "accuracy": 0.4},
    {"loss": 4.0, "bleu": 1.0, "chrf": 1.0, "accuracy": 0.0},
]
BEST = {"loss": 4, "ppl": 4, "bleu": 5, "chrf": 2, "accuracy": 3}


def scripted(monkeypatch: pytest.MonkeyPatch, script: list[dict[str, float]]) -> list[Any]:
    """Validation returns the rows of ``script`` in turn (each also written to log.csv
    as usual); returns the list of the model's weights at each validation."""
    calls: list[Any] = []

    def fake(bundle, dev, step, epoch, csv_log, history, say, elapsed):  # noqa: ANN001
        row = {"step": step, "epoch": epoch + 1, "split": "dev", **script[len(calls)]}
        row["ppl"] = math.exp(row["loss"])
        calls.append({k: v.clone() for k, v in bundle.model.state_dict().items()})
        csv_log.write(row)
        history.append(row)
        return row

    monkeypatch.setattr("rnnkit.train.validate_and_log", fake)
    return calls


def run(tmp_path: Path, name: str, **train_keys: Any) -> Any:
    keys = {"max_steps": 60, "validate_every": 10, "checkpoint_every": 10, **train_keys}
    return train(config_from_dict(tiny(train=keys)), tmp_path / name)


@pytest.mark.parametrize("metric", ["bleu", "chrf", "accuracy", "loss", "ppl"])
def test_best_checkpoint_is_the_best_validation_by_the_metric(tmp_path, monkeypatch, metric):
    weights = scripted(monkeypatch, SCRIPT)
    result = run(tmp_path, metric, early_stopping_metric=metric)
    k = BEST[metric]  # 1-based validation
    assert (result.metric, result.best_step, result.steps) == (metric, 10 * k, 60)
    want = SCRIPT[k - 1]["loss"] if metric == "loss" else SCRIPT[k - 1].get(metric)
    if metric == "ppl":
        want = math.exp(SCRIPT[k - 1]["loss"])
    assert result.best == pytest.approx(want)
    assert result.best_bleu == SCRIPT[k - 1]["bleu"]  # the dev BLEU of best.pt
    best = load_checkpoint(tmp_path / metric / "best.pt")
    assert best["step"] == 10 * k
    for name, tensor in best["model"].items():  # the weights of that validation
        assert torch.equal(tensor, weights[k - 1][name]), name
    info = checkpoint_info(tmp_path / metric / "last.pt")["training"]
    assert info["early_stopping_metric"] == metric
    assert (info["best_step"], info["best_dev_bleu"]) == (10 * k, SCRIPT[k - 1]["bleu"])
    assert info["best_dev"] == pytest.approx(want)


@pytest.mark.parametrize(
    ("metric", "stop"), [("loss", 70), ("bleu", 80), ("chrf", 50), ("accuracy", 60)]
)
def test_patience_counts_validations_without_a_gain_in_the_metric(
    tmp_path, monkeypatch, metric, stop
):
    scripted(monkeypatch, SCRIPT + [SCRIPT[-1]] * 4)
    result = run(tmp_path, metric, max_steps=200, patience=3, early_stopping_metric=metric)
    assert (result.stopped, result.steps) == ("early_stopping", stop)


def test_plateau_schedule_follows_the_metric(tmp_path, monkeypatch):
    # loss 3, 2, 2.5, 1, 1.5, 4: with lr_patience 0 it decays after validations 3, 5, 6;
    # on BLEU (10, 30, 20, 5, 40, 1) after 3, 4, 6
    lrs = {}
    for metric in ("loss", "bleu"):
        scripted(monkeypatch, [*SCRIPT, SCRIPT[-1]])  # the last: at the end, step 61
        result = run(
            tmp_path,
            metric,
            max_steps=61,
            log_every=1,
            lr=0.01,
            lr_patience=0,
            min_lr=0.0,
            early_stopping_metric=metric,
        )
        lrs[metric] = [r["lr"] for r in result.history if r["split"] == "train"]
    at = [1, 11, 21, 31, 41, 51, 61]  # the step after each validation
    halvings = {m: [round(math.log2(0.01 / lrs[m][s - 1])) for s in at] for m in lrs}
    assert halvings == {"loss": [0, 0, 0, 1, 1, 2, 3], "bleu": [0, 0, 0, 1, 2, 2, 3]}


def test_dev_rows_report_accuracy_and_a_real_run_keeps_the_best(tmp_path):
    result = run(tmp_path, "real", max_steps=40, early_stopping_metric="accuracy")
    dev = [r for r in read_log(tmp_path / "real") if r["split"] == "dev"]
    assert len(dev) == 4 and all(0.0 <= float(r["accuracy"]) <= 1.0 for r in dev)
    accuracy = [float(r["accuracy"]) for r in dev]
    k = accuracy.index(max(accuracy))  # the first best
    assert (result.best_step, result.best) == (int(dev[k]["step"]), accuracy[k])
    assert result.best_bleu == pytest.approx(float(dev[k]["bleu"]))


def test_metric_scores_count_higher_as_better():
    bundle_row = {"loss": 1.0, "bleu": 1.0, "chrf": 1.0, "accuracy": 0.25}
    assert validation.metric_score(bundle_row, "loss") == -1.0
    assert validation.metric_score(bundle_row, "accuracy") == 0.25
    for metric in ("bleu", "chrf", "accuracy", "loss", "ppl"):
        assert (
            validation.metric_value(validation.metric_score({metric: 2.5}, metric), metric) == 2.5
        )
    assert validation.describe_best("bleu", 38.123, 5, 38.123) == "dev BLEU 38.12"
    assert validation.describe_best("loss", 1.23456, 300, 30.0) == (
        "dev loss 1.235 (step 300, BLEU 30.00)"
    )


def test_score_reports_accuracy_against_any_reference():
    hyps = ["a b", "C d", " e f ", "g h"]
    refs = ["a b", "c d", "e f", "x"]
    assert score(hyps, refs)["accuracy"] == 0.5  # case counts, surrounding spaces do not
    assert score(hyps, refs, lowercase=True)["accuracy"] == 0.75
    # a second stream: "g h" matches there; "" in a further stream is no reference
    assert score(hyps, refs, extra_references=[["", "", "", "g h"]])["accuracy"] == 0.75
    assert score(["", "x"], ["", "y"], extra_references=[["", ""]])["accuracy"] == 0.5


def test_an_unknown_metric_is_an_error_naming_the_key():
    with pytest.raises(ConfigError, match="early_stopping_metric"):
        config_from_dict(tiny(train={"early_stopping_metric": "bluer"}))


def test_resume_refuses_another_metric(tmp_path, monkeypatch):
    scripted(monkeypatch, SCRIPT)
    run(tmp_path, "r", max_steps=20, early_stopping_metric="loss")
    cfg = config_from_dict(tiny(train={"max_steps": 40, "validate_every": 10}))
    with pytest.raises(CheckpointError, match="early_stopping_metric loss"):
        train(cfg, tmp_path / "r", resume=True)


def test_evaluate_prints_accuracy(tmp_path, capsys):
    out = tmp_path / "e"
    config = write_yaml(tmp_path / "c.yaml", tiny(train={"max_steps": 20}))
    assert main(["train", str(config), "--out", str(out)]) == 0
    src = [" ".join("abcd"[(i + j) % 4] for j in range(3)) for i in range(4)]
    (tmp_path / "src.txt").write_text("\n".join(src) + "\n", encoding="utf-8")
    capsys.readouterr()
    args = ["evaluate", str(out / "best.pt"), "--src", str(tmp_path / "src.txt")]
    assert main([*args, "--ref", str(tmp_path / "src.txt"), "--output", str(tmp_path / "h")]) == 0
    result = json.loads(capsys.readouterr().out)
    hyps = (tmp_path / "h").read_text(encoding="utf-8").splitlines()
    assert result["accuracy"] == sum(h == s for h, s in zip(hyps, src)) / 4
    # references: the model's own outputs for two lines, something else for the others
    refs = [hyps[0], hyps[1], "zzz", "zzz"]
    (tmp_path / "ref.txt").write_text("\n".join(refs) + "\n", encoding="utf-8")
    assert main([*args, "--ref", str(tmp_path / "ref.txt")]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == 0.5


def test_dev_loss_is_on_text_lowercased_as_training_saw_it(tmp_path):
    """With data.lowercase, dev text is lowercased before it is encoded for the loss (as
    translate and score do): cased dev words were <unk>s, a wrong loss / ppl that picks
    best.pt under early_stopping_metric loss."""
    data = {"lowercase": True, "tokenizer": "bpe", "vocab_size": 40}  # sentencepiece keeps case
    cfg = tiny(data=data, train={"max_steps": 20, "validate_every": 20})
    train(config_from_dict(cfg), tmp_path / "r")
    bundle = load_bundle(tmp_path / "r" / "best.pt")
    dev = task_splits("copy", 300, 20, 20, bundle.config.train.seed)["dev"]
    upper = [(s.upper(), t.upper()) for s, t in dev]
    assert upper != dev
    lower, cased = validation.validate(bundle, dev), validation.validate(bundle, upper)
    assert cased["loss"] == pytest.approx(lower["loss"], rel=1e-6)
    assert cased["hyps"] == lower["hyps"]


def test_resuming_an_early_stopped_run_stops_again_before_any_update(tmp_path, monkeypatch):
    """--resume of a run that stopped on patience trains nothing more (it trained another
    validate_every updates each time, and could write a new best.pt); a higher
    patience on resume does continue."""
    calls = scripted(monkeypatch, SCRIPT + [SCRIPT[-1]] * 6)
    keys = {"max_steps": 200, "validate_every": 10, "checkpoint_every": 10, "patience": 3}
    cfg = config_from_dict(tiny(train=keys))
    first = train(cfg, tmp_path / "r")
    assert (first.stopped, first.steps) == ("early_stopping", 80)
    seen, rows = len(calls), read_log(tmp_path / "r")
    last = load_checkpoint(tmp_path / "r" / "last.pt")
    again = train(cfg, tmp_path / "r", resume=True)
    assert (again.stopped, again.steps) == ("early_stopping", 80) and len(calls) == seen
    assert read_log(tmp_path / "r") == rows
    assert same_progress(load_checkpoint(tmp_path / "r" / "last.pt"), last)
    more = config_from_dict(tiny(train={**keys, "patience": 4}))
    assert train(more, tmp_path / "r", resume=True).steps == 90


def test_resuming_a_finished_run_validates_it_no_more(tmp_path, monkeypatch):
    """A run that ended off the validation grid (max_steps 65, validate_every 10) was
    validated at its last step; resuming it again and again adds no dev row and counts
    no validation without a gain (each one did, and decayed a plateau schedule)."""
    calls = scripted(monkeypatch, SCRIPT + [SCRIPT[-1]] * 6)
    keys = {"max_steps": 65, "validate_every": 10, "checkpoint_every": 10, "patience": 0,
            "scheduler": "plateau", "lr_patience": 0}  # fmt: skip
    cfg = config_from_dict(tiny(train=keys))
    assert train(cfg, tmp_path / "r").steps == 65
    assert len(calls) == 7  # steps 10, ..., 60 and 65
    before = load_checkpoint(tmp_path / "r" / "last.pt")
    rows = read_log(tmp_path / "r")
    for _ in range(2):
        assert train(cfg, tmp_path / "r", resume=True).steps == 65
    after = load_checkpoint(tmp_path / "r" / "last.pt")
    assert len(calls) == 7 and read_log(tmp_path / "r") == rows
    assert same_progress(after, before) and after["scheduler"] == before["scheduler"]


def same_progress(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """The same position but for ``elapsed`` (the resumed process's seconds count)."""
    return {**a["progress"], "elapsed": 0} == {**b["progress"], "elapsed": 0}
