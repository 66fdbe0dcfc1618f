"""User errors found by a review as a user, each one line: a model without attention
asked to copy or cover, task options the task lacks, numbers out of range, devices
rnnkit does not run on, a data.sp_model that is missing or not a model."""

from __future__ import annotations

import errno
import io
import re
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
from test_cli import one_line_error, run_cli
from test_train import one_thread, tiny, write_yaml
from torch import Tensor

from rnnkit.cells import Cell, LSTMCell
from rnnkit.cli import main
from rnnkit.config import ConfigError, config_from_dict
from rnnkit.data import DataError
from rnnkit.data.tasks import make_task, task_splits
from rnnkit.distributed import pick_device
from rnnkit.model import Seq2Seq
from rnnkit.sampling import Sampling

assert one_thread  # an autouse fixture of test_train


def test_coverage_without_attention_is_a_config_error():
    with pytest.raises(ConfigError, match="decode.coverage_penalty needs attention"):
        config_from_dict(tiny(model={"attention": "none"}, decode={"coverage_penalty": 0.5}))


@pytest.fixture(scope="module")
def plain_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny trained model without attention."""
    from rnnkit.train import train

    out = tmp_path_factory.mktemp("plain")
    train(config_from_dict(tiny(model={"attention": "none"}, train={"max_steps": 2})), out)
    return out / "last.pt"


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (["--replace-unk"], "--replace-unk: the model has no attention to copy from"),
        (["--coverage-penalty", "1", "--beam", "2"], "--coverage-penalty: the model has no"),
    ],
)
def test_options_a_model_without_attention_cannot_have(
    plain_model, tmp_path, capsys, options, says
):
    src = tmp_path / "in.txt"
    src.write_text("a b c\n")
    translate = ["translate", plain_model, "--input", src]
    for command in (translate, ["evaluate", plain_model, "--src", src, "--ref", src]):
        code, _, err = run_cli(capsys, *command, *options)
        assert code == 2 and says in one_line_error(err)


@pytest.mark.parametrize(
    ("task", "options", "says"),
    [
        ("dates", {"a": 1}, "data.task_options.a: task dates takes long, max_filler; not 'a'"),
        ("dates", {"max_filler": "abc"}, "data.task_options.max_filler must be an integer"),
        ("dates", {"long": 1}, "data.task_options.long must be true or false"),
        ("copy", {"vocab": 5}, "data.task_options.vocab must be a string of symbols"),
    ],
)
def test_task_options_are_checked(tmp_path, capsys, task, options, says):
    with pytest.raises(DataError, match=says):
        make_task(task, 3, 1, **options)
    with pytest.raises(DataError, match=says):
        task_splits(task, 3, 1, 1, 1, **options)
    cfg = write_yaml(tmp_path / "c.yaml", tiny(data={"task": task, "task_options": options}))
    code, _, err = run_cli(capsys, "train", cfg, "--out", tmp_path / "out", "--nproc", "2")
    assert code == 2 and says in one_line_error(err)  # before any process starts
    assert not (tmp_path / "out").exists()


def test_numbers_out_of_range():
    with pytest.raises(ConfigError, match="train.seed must be >= 0 and <= 9223372036854775807"):
        config_from_dict(tiny(train={"seed": 2**64}))
    with pytest.raises(ValueError, match="temperature must be > 0 and finite"):
        Sampling(temperature=float("inf"))
    with pytest.raises(ValueError, match="seed must be in 0 .. 2\\*\\*63 - 1"):
        Sampling(seed=2**70)


@pytest.mark.parametrize("name", ["xpu", "meta", "vulkan", "nonsense"])
def test_devices_rnnkit_does_not_run_on(name):
    with pytest.raises(ConfigError, match=f"--device={name}: use auto, cpu, cuda, cuda:N or mps"):
        pick_device(name, "--device")


def test_sp_model_missing_or_not_a_model(tmp_path, capsys):
    bad = tmp_path / "bad.model"
    bad.write_text("not a model\n")
    empty = tmp_path / "empty.model"
    empty.write_bytes(b"")  # (a traceback at the first encode)
    for path, says in (
        (tmp_path / "missing.model", "cannot read"),
        (bad, "not a sentencepiece"),
        (empty, "not a sentencepiece model (an empty file)"),
    ):
        cfg = tiny(data={"tokenizer": "bpe", "sp_model": str(path)})
        code, _, err = run_cli(capsys, "train", write_yaml(tmp_path / "c.yaml", cfg), "--out",
                               tmp_path / f"out_{path.stem}")  # fmt: skip
        assert code == 2 and "Traceback" not in err
        assert (
            err.strip().splitlines()[-1].startswith(f"rnnkit: error: data.sp_model {path}: {says}")
        )


def test_a_missing_corpus_fails_before_nproc_starts_processes(tmp_path, capsys):
    d = tiny(data={"task": None, "train": str(tmp_path / "missing"), "dev_size": 5})
    cfg = write_yaml(tmp_path / "c.yaml", d)
    code, _, err = run_cli(capsys, "train", cfg, "--out", tmp_path / "out", "--nproc", "2")
    line = one_line_error(err)
    assert code == 2 and f"{tmp_path / 'missing'}.src: file not found (corpora are looked" in line
    # the way forward is in the line (it said only "file not found"); the fetch command
    # only for a recipe's corpus (test_input_limits)
    assert "--set data.data_dir=DIR" in line and "rnnkit data" not in line


@pytest.mark.parametrize(
    ("error", "size"),
    [
        (
            RuntimeError(
                "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't "
                "allocate memory: you tried to allocate 480000000000 bytes."
            ),
            "447.0 GiB",
        ),  # fmt: skip
        (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has ..."), "2.00 GiB"),
        (MemoryError(), None),
    ],
)
def test_an_allocation_that_fails_is_one_line(tmp_path, capsys, monkeypatch, error, size):
    """torch's words for a model too big for the machine (hidden_size: 200000 on 24 GiB)
    are a C++ assertion under a traceback; a user needs one line that says what to shrink."""

    def too_big(*args, **kwargs):
        raise error

    monkeypatch.setattr("rnnkit.run_state.build_model", too_big)
    cfg = write_yaml(tmp_path / "c.yaml", tiny())
    code, _, err = run_cli(capsys, "train", cfg, "--out", tmp_path / "out")
    line = err.strip().splitlines()[-1]
    assert (
        "Traceback" not in err
        and code == 1
        and line.startswith("rnnkit: error: out of memory: an allocation")
    )
    assert (f"({size}) failed" if size else "allocation failed") in line
    assert "smaller model (model.hidden_size" in line and "train.batch_tokens" in line
    assert "a very long input line a shorter output bound (--max-len-a" in line


def test_a_corpus_setting_that_cannot_work_names_the_config_file(tmp_path, capsys):
    d = tiny(data={"task": None, "train": "c/train", "dev": "c/val", "dev_size": 10})
    cfg = write_yaml(tmp_path / "c.yaml", d)
    code, _, err = run_cli(capsys, "train", cfg, "--out", tmp_path / "out")
    assert code == 2 and one_line_error(err).startswith(
        f"rnnkit: error: {cfg}: data.dev and data.dev_size are both given"
    )
    del d["data"]["dev_size"]  # given on the command line: the message says so
    cfg = write_yaml(tmp_path / "c.yaml", d)
    code, _, err = run_cli(capsys, "train", cfg, "--set", "data.dev_size=5", "--out", tmp_path)
    assert one_line_error(err).startswith(
        f"rnnkit: error: {cfg} --set data.dev_size=5: data.dev and data.dev_size are both given"
    )


@pytest.mark.parametrize("minutes", ["0", "-1", "nan", "inf", "soon"])
def test_demo_minutes_must_be_a_positive_number(tmp_path, capsys, minutes):
    """--minutes 0 trained with no limit (0 is the config's "no limit"); -1 trained no
    step and wrote a best.pt that no command could load."""
    with pytest.raises(SystemExit) as e:
        main(["demo", "--minutes", minutes, "--out", str(tmp_path / "demo")])
    assert e.value.code == 2
    assert "argument --minutes: expected a number > 0" in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()


def test_demo_config_checks_its_time_budget():
    from rnnkit.demo import demo_config

    assert demo_config(0.5).train.max_minutes == 0.5
    with pytest.raises(ConfigError, match="train.max_minutes must be >= 0, got -1"):
        demo_config(-1)


class _Wide(NamedTuple):
    h: Tensor


class WideCell(Cell):
    """Its h is 2H wide: a Recurrent layer takes it; an encoder-decoder cannot."""

    Gates = _Wide
    state = ("h",)

    def parameter_shapes(self):
        return {**super().parameter_shapes(), "weight_hh": (self.hidden_size, 2 * self.hidden_size)}

    def state_size(self, name):
        return 2 * self.hidden_size

    def step(self, gi, state):
        h = torch.tanh(gi + self.hh(state[0])).repeat(1, 2)
        return (h,), _Wide(h)


class _Three(NamedTuple):
    h: Tensor
    cell: Tensor
    extra: Tensor


class ThreeStateCell(Cell):
    Gates = _Three
    state = ("h", "cell", "extra")

    def step(self, gi, state):
        h = torch.tanh(gi + self.hh(state[0]))
        return (h, state[1], state[2]), _Three(h, state[1], state[2])


@pytest.mark.parametrize(
    ("cell", "says"),
    [
        ("WideCell", "model: WideCell: state 'h' is 32 wide; in an encoder-decoder every state "
         "is hidden_size (16) wide"),
        ("ThreeStateCell", "model: ThreeStateCell: a decoder cell carries at most two states"),
    ],
)  # fmt: skip
def test_a_custom_cell_that_does_not_fit_a_model_is_refused_before_any_data_work(
    tmp_path, capsys, cell, says
):
    """A state 2H wide was a RuntimeError from the attention's matmul, and three states a
    late error, both after the tokenizers and held-out files were written."""
    d = tiny(model={"cell": f"test_cli_guards:{cell}", "hidden_size": 16})
    cfg = write_yaml(tmp_path / "c.yaml", d)
    code, _, err = run_cli(capsys, "train", cfg, "--out", tmp_path / "run")
    assert code == 2 and one_line_error(err) == f"rnnkit: error: {says}", err
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())
    with pytest.raises(ValueError, match=re.escape(says.removeprefix("model: "))):
        Seq2Seq(10, 10, 8, 16, cell=globals()[cell])  # the class itself, from Python


def test_seq2seq_takes_a_cell_class_and_names_what_it_cannot_take():
    torch.manual_seed(0)
    by_class = Seq2Seq(10, 10, 8, 16, cell=LSTMCell)
    torch.manual_seed(0)
    by_name = Seq2Seq(10, 10, 8, 16, cell="rnnkit.cells:LSTMCell")
    for (k, a), (_, b) in zip(by_class.state_dict().items(), by_name.state_dict().items()):
        assert torch.equal(a, b), k
    with pytest.raises(ValueError, match="cell must be one of .*subclass of rnnkit.Cell; got 3"):
        Seq2Seq(10, 10, 8, 16, cell=3)  # was: TypeError: argument of type 'int' is not iterable


def test_checking_the_cell_leaves_the_random_numbers_as_they_were():
    from rnnkit.checkpoint import check_cell

    cfg = config_from_dict(tiny())
    torch.manual_seed(0)
    check_cell(cfg)
    after = torch.rand(3)
    torch.manual_seed(0)
    assert torch.equal(after, torch.rand(3))


class _Full(io.StringIO):
    """A standard output on a full disk (> /dev/full), or one whose reader left (| head)."""

    def __init__(self, error: OSError) -> None:
        super().__init__()
        self.error = error

    def write(self, text: str) -> int:
        raise self.error


@pytest.mark.parametrize(
    ("stdout", "status", "says"),
    [
        (_Full(OSError(errno.ENOSPC, "No space left on device")), 1,
         ["rnnkit: error: cannot write to standard output: No space left on device"]),
        (None, 1, ["rnnkit: error: cannot write to standard output: it is closed"]),
        (_Full(BrokenPipeError(errno.EPIPE, "Broken pipe")), 0, []),
    ],
)  # fmt: skip
def test_a_standard_output_that_cannot_be_written_is_one_line(
    plain_model, capsys, monkeypatch, stdout, status, says
):
    """> /dev/full was an OSError traceback, >&- an AttributeError on None.write."""
    monkeypatch.setattr(sys, "stdout", stdout)
    assert main(["info", str(plain_model)]) == status
    assert capsys.readouterr().err.splitlines() == says


def test_ctrl_c_before_the_command_starts_is_status_130(capsys, monkeypatch):
    """Ctrl-C while torch was loading (before the command's own handler) was a
    KeyboardInterrupt traceback."""
    import rnnkit.cli as cli

    def interrupted(*_: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert cli.main(["info", "x.pt"]) == 130
    assert capsys.readouterr().err == "rnnkit: interrupted\n"


# An exit handler registered before the command, so it runs last, as torch's do: Ctrl-C
# (SIGINT) there, after the command's own status was decided.
_CTRL_C_AT_EXIT = """
import atexit, os, signal, sys, time
atexit.register(lambda: (os.kill(os.getpid(), signal.SIGINT), time.sleep(0.5)))
sys.argv = ["rnnkit", "--version"]
import runpy
runpy.run_module("rnnkit", run_name="__main__")
"""


def test_ctrl_c_while_python_shuts_down_after_a_command_is_ignored():
    """A second or third Ctrl-C after an interrupted run had stopped landed in torch's exit
    handlers: "Exception ignored in atexit callback", a traceback, status -SIGINT."""
    done = subprocess.run(
        [sys.executable, "-c", _CTRL_C_AT_EXIT], capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    assert done.stdout.startswith("rnnkit ")


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"WORLD_SIZE": "abc"}, "WORLD_SIZE=abc: a whole number (torchrun sets it)"),
        ({"WORLD_SIZE": "2"}, "WORLD_SIZE=2 but no RANK: torchrun sets both"),
        ({"WORLD_SIZE": "2", "RANK": "x"}, "RANK=x: a whole number (torchrun sets it)"),
        ({"WORLD_SIZE": "2", "RANK": "2"}, "RANK=2: from 0 to WORLD_SIZE - 1 = 1"),
        ({"WORLD_SIZE": "0"}, "WORLD_SIZE=0: at least 1 (torchrun sets it)"),
    ],
)
def test_torchruns_variables_that_make_no_sense_are_one_line(
    tmp_path, capsys, monkeypatch, env, says
):
    """WORLD_SIZE=abc was a ValueError traceback (twice: again in the error handling), and
    WORLD_SIZE=2 without RANK a KeyError."""
    monkeypatch.delenv("RANK", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    cfg = write_yaml(tmp_path / "c.yaml", tiny())
    code, _, err = run_cli(capsys, "train", cfg, "--out", tmp_path / "run")
    assert code == 2 and one_line_error(err) == f"rnnkit: error: {says}", err
    assert not (tmp_path / "run").exists()


def test_a_bad_rnnkit_fault_is_one_line(monkeypatch):
    from rnnkit.distributed import _fault_step

    monkeypatch.setenv("RNNKIT_FAULT", "1@abc")
    with pytest.raises(ConfigError, match="RNNKIT_FAULT=1@abc: RANK@STEP, two whole numbers"):
        _fault_step(1)
    monkeypatch.setenv("RNNKIT_FAULT", "1@3")
    assert (_fault_step(1), _fault_step(0)) == (3, None)


def test_score_of_empty_files_and_a_checkpoint_after_ref(plain_model, tmp_path, capsys):
    """score of empty files said 'scored 0 pairs ... perplexity 1.00' (evaluate refuses
    them); a checkpoint given after --ref was 'the following arguments are required'."""
    empty = tmp_path / "e.txt"
    empty.write_text("", encoding="utf-8")
    assert main(["score", str(plain_model), "--src", str(empty), "--tgt", str(empty)]) == 2
    assert capsys.readouterr().err == f"rnnkit: error: {empty}: file is empty\n"
    with pytest.raises(SystemExit) as done:
        main(["evaluate", "--src", str(empty), "--ref", str(empty), str(plain_model)])
    assert done.value.code == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.endswith(
        f"--ref takes every file after it, {plain_model} too: give the checkpoint first "
        "(rnnkit evaluate CKPT --src F --ref F)"
    )


def test_a_ctrl_c_a_library_swallowed_is_still_an_interruption(monkeypatch, capsys):
    """Ctrl-C in serve's first second landed inside numpy's import, which a library
    caught; the half-made module then failed to import again: "ImportError: cannot load
    module more than once per process", a traceback and status 1."""
    import os
    import signal
    import time

    import rnnkit.cli as cli

    def command(args):
        try:  # a library's broad except around an import
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        except KeyboardInterrupt:
            pass
        raise ImportError("cannot load module more than once per process")

    monkeypatch.setattr(cli, "run_command", command)
    assert cli.main(["info", "x.pt"]) == 130
    assert capsys.readouterr().err == "rnnkit: interrupted\n"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # (as it was)

    def plain(args):
        raise ImportError("a real one")  # no Ctrl-C: the error as it is

    monkeypatch.setattr(cli, "run_command", plain)
    with pytest.raises(ImportError, match="a real one"):
        cli.main(["info", "x.pt"])
