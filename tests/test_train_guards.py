"""What stops training with a clear error before it writes anything wrong: a loss that
becomes nan or inf (fp32 and bf16; fp16's scaler skips such updates by design), and
--resume into a model of another shape."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from test_train import one_thread, tiny, write_yaml  # noqa: F401 - one_thread: a fixture

import rnnkit.cells
import rnnkit.update as update_module
from rnnkit.checkpoint import load_checkpoint
from rnnkit.cli import main
from rnnkit.config import config_from_dict
from rnnkit.train import train
from rnnkit.update import Diverged


def poison_from(monkeypatch: pytest.MonkeyPatch, call: int, value: float = math.nan) -> None:
    """From the ``call``-th batch on, the loss is ``value`` (as a diverged model's is)."""
    calls = {"n": 0}
    loss = update_module.token_loss

    def token_loss(*args: Any, **kw: Any) -> Any:
        calls["n"] += 1
        out = loss(*args, **kw)
        return out * value if calls["n"] >= call else out

    monkeypatch.setattr(update_module, "token_loss", token_loss)


def finite(path: Path) -> bool:
    return all(torch.isfinite(t).all() for t in load_checkpoint(path)["model"].values())


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_diverged_loss_stops_before_the_next_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: float
) -> None:
    d = tiny(
        train={"max_steps": 30, "log_every": 100, "checkpoint_every": 10, "validate_every": 10}
    )
    poison_from(monkeypatch, 13, value)  # update 13: the first non-finite loss
    with pytest.raises(Diverged, match="after step 10 \\(seen at step 20\\)"):
        train(config_from_dict(d), tmp_path / "run")
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    assert last["step"] == 10 and finite(tmp_path / "run" / "last.pt")
    assert finite(tmp_path / "run" / "best.pt")


def test_a_run_that_fails_closes_its_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """log.csv (and TensorBoard's writer) were closed only when training stopped as
    planned: a run that diverged left them open (Python's API keeps going after it)."""
    import rnnkit.progress as progress

    logs: list[Any] = []
    init = progress.CsvLog.__init__

    def opened(self: Any, *args: Any, **kw: Any) -> None:
        init(self, *args, **kw)
        logs.append(self)

    monkeypatch.setattr(progress.CsvLog, "__init__", opened)
    poison_from(monkeypatch, 3)
    d = tiny(train={"max_steps": 30, "log_every": 100, "checkpoint_every": 5})
    with pytest.raises(Diverged):
        train(config_from_dict(d), tmp_path / "run")
    assert len(logs) == 1 and logs[0].f.closed


def test_log_line_shows_it_then_the_command_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tiny(train={"max_steps": 30, "log_every": 5, "checkpoint_every": 10})
    cfg = write_yaml(tmp_path / "cfg.yaml", d)
    poison_from(monkeypatch, 7)
    assert main(["train", str(cfg), "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("rnnkit: error: the training loss became nan or inf after step 5")
    with open(tmp_path / "run" / "log.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "train"]
    assert [r["step"] for r in rows] == ["5", "10"] and rows[-1]["loss"] == "nan"
    assert not (tmp_path / "run" / "last.pt").exists()  # no checkpoint came before it


def test_bf16_is_checked_and_finite_runs_are_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = tiny(train={"max_steps": 12, "precision": "bf16", "checkpoint_every": 5})
    assert train(config_from_dict(d), tmp_path / "ok").stopped == "max_steps"
    poison_from(monkeypatch, 3)
    with pytest.raises(Diverged, match="after step 0 \\(seen at step 5\\)"):
        train(config_from_dict(d), tmp_path / "bad")


def test_resume_into_another_model_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tiny(train={"max_steps": 5})
    cfg = write_yaml(tmp_path / "cfg.yaml", d)
    out = tmp_path / "run"
    assert main(["train", str(cfg), "--out", str(out)]) == 0
    before = (out / "last.pt").read_bytes()
    capsys.readouterr()
    status = main(
        ["train", str(cfg), "--out", str(out), "--resume", "--set", "model.hidden_size=24",
         "--set", "train.max_steps=10"]
    )  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1
    assert err[0].startswith(f"rnnkit: error: {out / 'last.pt'}: --resume needs the model")
    assert "model.hidden_size 16 there, 24 here" in err[0]
    assert (out / "last.pt").read_bytes() == before
    # what does not shape the parameters may change: dropout
    assert main(
        ["train", str(cfg), "--out", str(out), "--resume", "--set", "model.dropout=0.0",
         "--set", "train.max_steps=10"]
    ) == 0  # fmt: skip
    assert load_checkpoint(out / "last.pt")["step"] == 10


def test_a_built_in_task_writes_its_dev_and_test_pairs_beside_the_checkpoints(tmp_path):
    """README's `rnnkit evaluate runs/dates/best.pt --src runs/dates/test.src --ref
    runs/dates/test.tgt` needs the task's held-out pairs as files."""
    from rnnkit.data.tasks import task_splits

    cfg = config_from_dict(tiny(train={"max_steps": 2, "validate_every": 2}))
    train(cfg, tmp_path, log=lambda _: None)
    splits = task_splits("copy", 300, 20, 20, cfg.train.seed)
    for split in ("dev", "test"):
        for side, suffix in ((0, "src"), (1, "tgt")):
            lines = (tmp_path / f"{split}.{suffix}").read_text(encoding="utf-8").splitlines()
            assert lines == [p[side] for p in splits[split]]


@pytest.mark.parametrize(
    ("cell", "kwargs", "seen"),
    [
        ("layernorm_lstm", {"eps": 0.01}, lambda c: c.eps == 0.01),
        ("gru", {"reset_after": False}, lambda c: c.reset_after is False),
        ("indrnn", {"nonlinearity": "tanh"}, lambda c: c.nonlinearity == "tanh"),
    ],
)
def test_cell_kwargs_reach_both_sides_and_the_checkpoint(
    tmp_path: Path, cell: str, kwargs: dict[str, Any], seen: Any
) -> None:
    """A config could not pass a keyword to its cell (a LayerNorm eps, Cho's GRU, a tanh
    IndRNN, a custom cell's own): model.cell_kwargs reaches encoder and decoder, and a
    checkpoint's model is built with it again."""
    from rnnkit.checkpoint import load_bundle

    d = tiny(model={"cell": cell, "cell_kwargs": kwargs}, train={"max_steps": 2})
    train(config_from_dict(d), tmp_path / "run")
    model = load_bundle(tmp_path / "run" / "best.pt").model
    assert seen(model.decoder.rnn.cells[0])
    rnn = model.encoder.rnn
    encoder_cell = rnn._cells[0][0] if hasattr(rnn, "_cells") else rnn
    assert seen(encoder_cell)


class FilledCell(rnnkit.cells.RNNCell):
    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, start: Any = 0.0):
        self.start = start
        super().__init__(input_size, hidden_size, bias)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        with torch.no_grad():
            self.bias_ih.fill_(self.start)


def test_cell_kwargs_that_the_cell_does_not_take_are_named() -> None:
    from rnnkit.checkpoint import check_cell
    from rnnkit.config import ConfigError, load_config

    cases = [
        (["model.cell=gru", "model.cell_kwargs={foo: 1}"], "^model.cell_kwargs.foo: GRUCell takes"),
        (["model.cell=lstm", "model.cell_kwargs={forget_bias: 1}"], "set by model.forget_bias"),
        (["model.cell=mgu", "model.cell_kwargs={hidden_size: 8}"], "hidden_size: set by the model"),
        (["model.cell=layernorm_gru", "model.cell_kwargs={eps: -1}"], "eps must be a number ≥ 0"),
        # an engine that cannot serve the options: a traceback at step 1, the old run of
        # an --overwrite already removed
        (
            ["model.engine=native", "model.cell_kwargs={reset_after: false}"],
            "engine='native' cannot serve reset_after=False",
        ),
        (["model.engine=native", "model.zoneout=0.1"], "engine='native' cannot serve zoneout"),
        (['model.cell_kwargs={reset_after: "false"}'], "reset_after must be True or False"),
        # YAML's key "nonlinearity:sigmoid": the cell was said to take no such keyword
        (
            ["model.cell=indrnn", "model.cell_kwargs={nonlinearity:sigmoid}"],
            r"'nonlinearity:sigmoid' is a key without a value; YAML needs a space after the "
            r"colon: \{nonlinearity: sigmoid\}$",
        ),
        # torch's fill_() of a string lists its overloads on five lines, naming no cell
        (
            ["model.cell=test_train_guards:FilledCell", "model.cell_kwargs={start: abc}"],
            r"^model: test_train_guards:FilledCell \(model.cell_kwargs \{'start': 'abc'\}\): "
            r"fill_\(\) received an invalid combination of arguments - got \(str\), but "
            r"expected one of: …$",
        ),
    ]
    for sets, says in cases:
        with pytest.raises(ConfigError, match=says):
            check_cell(load_config(None, ["data.task=dates", *sets]))
