"""Training stopped at awkward moments: a Ctrl-C in the middle of a checkpoint write or
of a validation, and a log stream that takes no more lines."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from test_train import (
    assert_same_parameters,
    one_thread,
    progress_step,
    read_log,
    subprocess_env,
    tiny,
    write_yaml,
)
from toy import reaped

import rnnkit.checkpoint as checkpoint_module
import rnnkit.train as train_module
import rnnkit.update as update_module
from rnnkit.checkpoint import load_checkpoint
from rnnkit.config import config_from_dict
from rnnkit.train import train

assert one_thread  # an autouse fixture of test_train


def run_twice(tmp_path: Path, d: dict[str, Any], patch: tuple[Any, str, Any]) -> Any:
    """``d`` trained into tmp_path/a as it is, then into tmp_path/b with ``patch``
    (object, attribute, value) in place: (a, b, b's TrainResult)."""
    a, b = tmp_path / "a", tmp_path / "b"
    train(config_from_dict(d), a, log=lambda _: None)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(*patch)
        result = train(config_from_dict(d), b, log=lambda _: None)
    return a, b, result


def losses(out: Path) -> list[list[str]]:
    """The training rows of a run's log.csv: [step, loss] each."""
    return [[r["step"], r["loss"]] for r in read_log(out) if r["split"] == "train"]


def test_ctrl_c_in_the_middle_of_a_checkpoint_write_still_saves_last_pt(tmp_path):
    """torch's zip writer turned a Ctrl-C inside ``torch.save`` into a RuntimeError
    ("unexpected pos"): the run died with a traceback, and neither last.pt nor the new
    best.pt was written. The write now finishes, then the Ctrl-C stops the run; --resume
    writes the step-STEP.pt the stop cut off (``average`` missed it)."""
    save = torch.save
    writes = {"n": 0}

    def interrupted_save(obj: Any, f: Any) -> None:
        class Slow:  # a file whose second write meets a Ctrl-C (a large checkpoint's)
            def write(self, b: bytes) -> int:
                writes["n"] += 1
                if writes["n"] == 2:
                    signal.raise_signal(signal.SIGINT)
                return int(f.write(b))

            def flush(self) -> None:
                f.flush()

        save(obj, Slow())

    d = tiny(train={"max_steps": 12, "validate_every": 6, "checkpoint_every": 6,
                    "keep_checkpoints": 5})  # fmt: skip
    a, b, result = run_twice(tmp_path, d, (checkpoint_module.torch, "save", interrupted_save))
    assert (result.steps, result.stopped) == (6, "interrupted")
    assert progress_step(b / "best.pt") == 6  # the write that was interrupted
    assert progress_step(b / "last.pt") == 6
    assert not (b / "step-6.pt").exists()
    train(config_from_dict(d), b, resume=True, log=lambda _: None)
    assert sorted(p.name for p in b.glob("step-*.pt")) == ["step-12.pt", "step-6.pt"]
    assert_same_parameters(a / "step-6.pt", b / "step-6.pt")
    assert_same_parameters(a / "last.pt", b / "last.pt")


@pytest.mark.parametrize("when", ["before its row", "after its row", "in the last one"])
def test_a_ctrl_c_in_validation_is_validated_on_resume_as_if_never_stopped(
    tmp_path, monkeypatch, when
):
    """last.pt was saved at the step whose validation the Ctrl-C cut short, and --resume
    went on to the next step: that validation never happened, so the plateau decay, the
    patience count and best.pt all moved (weights 0.013 apart). A Ctrl-C after the dev row
    was written wrote it twice; one in the validation of the last step (not a multiple of
    validate_every) lost the steps since last.pt."""
    d = tiny(
        train={"max_steps": 22, "validate_every": 4, "checkpoint_every": 100, "lr": 0.05,
               "scheduler": "plateau", "lr_patience": 0, "decay_factor": 0.5}
    )  # fmt: skip
    a, b = tmp_path / "a", tmp_path / "b"
    train(config_from_dict(d), a, log=lambda _: None)

    validate = train_module.validate_and_log
    calls, cut = {"n": 0}, 6 if when == "in the last one" else 2

    def ctrl_c_in_one(*args: Any, **kw: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == cut and when != "after its row":
            raise KeyboardInterrupt
        row = validate(*args, **kw)
        if calls["n"] == cut:
            raise KeyboardInterrupt
        return row

    with monkeypatch.context() as m:
        m.setattr(train_module, "validate_and_log", ctrl_c_in_one)
        try:
            result = train(config_from_dict(d), b, log=lambda _: None)
        except KeyboardInterrupt:
            pytest.fail("the Ctrl-C went through: the steps since last.pt were lost")
    step = 22 if when == "in the last one" else 8
    assert (result.steps, result.stopped) == (step, "interrupted")
    assert load_checkpoint(b / "last.pt")["progress"]["step"] == step
    assert load_checkpoint(b / "last.pt")["progress"]["validated"] == step - 4 + (step == 22) * 2
    train(config_from_dict(d), b, resume=True, log=lambda _: None)
    dev = [[r["step"], r["lr"], r["loss"]] for r in read_log(b) if r["split"] == "dev"]
    assert dev == [[r["step"], r["lr"], r["loss"]] for r in read_log(a) if r["split"] == "dev"]
    assert [r[0] for r in dev] == ["4", "8", "12", "16", "20", "22"]
    assert_same_parameters(a / "last.pt", b / "last.pt")
    assert_same_parameters(a / "best.pt", b / "best.pt")


def test_a_log_stream_that_closes_stops_the_run_as_ctrl_c_does(tmp_path):
    """``rnnkit train ... 2>&1 | head``: the BrokenPipeError ended the run where it was,
    exit 0, last.pt not saved. Now last.pt is saved at the step reached, status 141 (a
    writer that SIGPIPE stopped), and --resume continues."""
    d = tiny(train={"max_steps": 0, "max_epochs": 1000, "checkpoint_every": 1000})
    cfg = write_yaml(tmp_path / "cfg.yaml", d)
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "rnnkit", "train", str(cfg), "--out", str(out)]
    proc = subprocess.Popen(argv, env=subprocess_env(), stderr=subprocess.PIPE, text=True)
    with reaped(proc):
        assert proc.stderr is not None
        for line in proc.stderr:  # (the reader stops after the first training row)
            if line.startswith("step 5 "):
                break
        proc.stderr.close()
        assert proc.wait(timeout=120) == 141
    step = progress_step(out / "last.pt")
    assert step >= 10 and step % 5 == 0  # the first row it could not write
    assert len(read_log(out)) == step // 5  # (log.csv has every row)


def test_a_log_stream_closed_while_an_interrupted_run_saves_does_not_stop_the_save(
    tmp_path, monkeypatch
):
    """``rnnkit train | tee log`` and a Ctrl-C that reaches both: tee was gone when the
    run said "interrupted at step N: saving", and that BrokenPipeError stopped the save."""
    from rnnkit.cli.commands import _TrainLog

    stderr = _Stderr()
    monkeypatch.setattr(sys, "stderr", stderr)
    loss, calls = update_module.token_loss, {"n": 0}

    def token_loss(*args: Any, **kw: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 11:  # a Ctrl-C in step 11, which stops tee too
            stderr.closed = True
            raise KeyboardInterrupt
        return loss(*args, **kw)

    monkeypatch.setattr(update_module, "token_loss", token_loss)
    log = _TrainLog()
    d = tiny(train={"max_steps": 40, "validate_every": 100, "checkpoint_every": 100})
    result = train(config_from_dict(d), tmp_path, log=log)
    assert (result.steps, result.stopped) == (10, "interrupted")
    assert log.lost and not log.stopped_run  # (the Ctrl-C stopped it: status 130)
    assert progress_step(tmp_path / "last.pt") == 10
    assert "step 10 " in stderr.text


class _Stderr:
    """A stderr whose reader may go."""

    def __init__(self) -> None:
        self.closed, self.text = False, ""

    def write(self, text: str) -> int:
        if self.closed:
            raise BrokenPipeError(32, "Broken pipe")
        self.text += text
        return len(text)

    def flush(self) -> None:
        if self.closed:
            raise BrokenPipeError(32, "Broken pipe")


@pytest.mark.parametrize("where", ["optimizer", "moving average"])
def test_a_ctrl_c_right_after_the_update_is_counted_with_its_step(tmp_path, where):
    """A Ctrl-C that landed in the optimizer's step (Adam's moments updated, the weights
    not yet, or the weights updated and the step not yet counted) or in the moving
    average's update was saved as it stood: --resume redid the step over a half-applied
    update. The update and its bookkeeping are now one: the Ctrl-C waits for both."""
    import rnnkit.precision as precision_module
    from rnnkit.ema import Ema

    target = (precision_module.Precision, "step") if where == "optimizer" else (Ema, "update")
    original, calls = getattr(*target), {"n": 0}

    def then_ctrl_c(self: Any, *args: Any, **kw: Any) -> Any:
        out = original(self, *args, **kw)
        calls["n"] += 1
        if calls["n"] == 7:
            signal.raise_signal(signal.SIGINT)  # as if it came in the middle of it
        return out

    d = tiny(train={"max_steps": 12, "validate_every": 100, "checkpoint_every": 100,
                    "ema_decay": 0.9})  # fmt: skip
    a, b, result = run_twice(tmp_path, d, (*target, then_ctrl_c))
    assert (result.steps, result.stopped) == (7, "interrupted")
    train(config_from_dict(d), b, resume=True, log=lambda _: None)
    assert_same_parameters(a / "last.pt", b / "last.pt")
    sa, sb = load_checkpoint(a / "last.pt"), load_checkpoint(b / "last.pt")
    assert sa["optimizer"]["state"][0]["step"] == sb["optimizer"]["state"][0]["step"] == 12


def test_the_first_log_row_after_a_resume_averages_the_steps_before_the_stop(tmp_path):
    """A Ctrl-C between two log rows saved last.pt without the losses summed since the
    last row: the first row after --resume averaged only the steps run since (a blip in
    the curve). last.pt now holds the running sums, every rank's."""
    loss, calls = update_module.token_loss, {"n": 0}

    def token_loss(*args: Any, **kw: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 8:  # in step 8: steps 6 and 7 since the row of step 5
            raise KeyboardInterrupt
        return loss(*args, **kw)

    d = tiny(train={"max_steps": 15, "log_every": 5, "validate_every": 100,
                    "checkpoint_every": 100})  # fmt: skip
    a, b, result = run_twice(tmp_path, d, (update_module, "token_loss", token_loss))
    assert result.steps == 7
    train(config_from_dict(d), b, resume=True, log=lambda _: None)

    assert [s for s, _ in losses(b)] == ["5", "10", "15"]
    assert losses(b) == losses(a)


def test_log_sums_saved_by_two_processes_go_to_rank_0_of_one():
    """Resumed by another number of processes, the sums since the last log line are
    rank 0's (the loss summed, the tokens global already); by as many, each rank's own."""
    from rnnkit.distributed import Dist
    from rnnkit.progress import meter_of

    two = [{"loss": torch.tensor(1.5), "tokens": 40, "seconds": 2.0},
           {"loss": torch.tensor(2.25), "tokens": 40, "seconds": 3.0}]  # fmt: skip
    one = meter_of({"meters": two}, Dist())
    assert one is not None and float(one["loss"]) == 3.75 and one["loss"].dtype == torch.float32
    assert (one["tokens"], one["seconds"]) == (40, 3.0)
    assert meter_of({"meters": two[1:]}, Dist()) == two[1]
    assert meter_of({}, Dist()) is None  # (older files)


def test_a_ctrl_c_in_the_update_of_a_logged_step_keeps_its_row(tmp_path):
    """Held to the end of the update, the Ctrl-C came after the step was counted but
    before its log row: the row was lost for good (the next averaged ten steps)."""
    import rnnkit.precision as precision_module

    original, calls = precision_module.Precision.step, {"n": 0}

    def then_ctrl_c(self: Any, *args: Any, **kw: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 5:
            signal.raise_signal(signal.SIGINT)  # held until the update is whole
        return original(self, *args, **kw)

    d = tiny(train={"max_steps": 15, "log_every": 5, "validate_every": 100,
                    "checkpoint_every": 100})  # fmt: skip
    a, b, result = run_twice(tmp_path, d, (precision_module.Precision, "step", then_ctrl_c))
    assert result.steps == 5
    train(config_from_dict(d), b, resume=True, log=lambda _: None)

    assert losses(b) == losses(a) and [s for s, _ in losses(a)] == ["5", "10", "15"]
