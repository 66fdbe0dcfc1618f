"""--device of translate / evaluate / serve and train.device: what the machine has runs,
what it lacks is a one-line error naming the option or key (never a traceback); and
translate on a terminal: line by line, and a progress bar on long input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import test_cli
import torch
from test_cli import one_line_error, run_cli, write_lines

NO_CUDA = not torch.cuda.is_available()
checkpoint = test_cli.checkpoint  # test_cli's fixtures, under their names
one_thread = test_cli.one_thread


def test_translate_and_evaluate_on_the_cpu(checkpoint, tmp_path, capsys):
    src = write_lines(tmp_path / "src.txt", ["a b c", "", "d e"])
    status, out, _ = run_cli(capsys, "translate", checkpoint, "--input", src, "--device", "cpu")
    assert status == 0 and len(out.splitlines()) == 3
    status, out, _ = run_cli(
        capsys, "evaluate", checkpoint, "--src", src, "--ref", src, "--device", "cpu"
    )
    assert status == 0 and '"bleu"' in out


@pytest.mark.parametrize(
    "device, words",
    [
        ("xyz", "--device=xyz: use auto, cpu, cuda, cuda:N or mps"),
        pytest.param(
            "cuda",
            "--device=cuda: this machine has no CUDA GPU",
            marks=pytest.mark.skipif(not NO_CUDA, reason="has CUDA"),
        ),  # fmt: skip
        ("cuda:99", "--device=cuda:99: this machine has"),
    ],
)
@pytest.mark.parametrize("command", ["translate", "evaluate", "serve"])
def test_a_device_this_machine_lacks(checkpoint, tmp_path, capsys, command, device, words):
    src = write_lines(tmp_path / "src.txt", ["a b c"])
    extra = {"translate": ["--input", src], "evaluate": ["--src", src, "--ref", src]}
    args = [command, checkpoint, *extra.get(command, []), "--device", device]
    status, _, err = run_cli(capsys, *args)
    assert status == 2
    assert one_line_error(err).startswith(f"rnnkit: error: {words}")


def test_train_device_this_machine_lacks(tmp_path, capsys):
    cfg = Path(__file__).resolve().parents[1] / "configs" / "dates.yaml"
    out = tmp_path / "run"
    status, _, err = run_cli(capsys, "train", cfg, "--out", out, "--set", "train.device=cuda:99")
    assert status == 2
    assert one_line_error(err).startswith("rnnkit: error: train.device=cuda:99: this machine has")
    assert not (out / "last.pt").exists()


def test_translate_on_a_terminal_answers_each_line_as_typed(checkpoint, tmp_path):
    """stdin a terminal (a pty here): each line's translation comes before the next line
    is typed, an invalid line is said so and answered by an empty line, Ctrl-D ends (0)."""
    import os
    import pty
    import select
    import subprocess
    import sys

    from rnnkit.checkpoint import load_bundle
    from rnnkit.translate import translate_lines

    want = [r[0].text for r in translate_lines(load_bundle(checkpoint), ["a b c", "d e"])]
    master, slave = pty.openpty()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rnnkit", "translate", str(checkpoint), "--device", "cpu"],
        stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    os.close(slave)
    try:

        def answer() -> str:
            assert select.select([proc.stdout], [], [], 60)[0], "no answer within 60 s"
            return proc.stdout.readline().decode().rstrip("\n")

        for line, expected in [(b"a b c", want[0]), (b"\xff", ""), (b"d e", want[1])]:
            os.write(master, line + b"\n")
            assert answer() == expected
        os.write(master, b"\x04")  # Ctrl-D at the start of a line: end of input
        assert proc.wait(60) == 0
        err = proc.stderr.read().decode()
        assert "type a sentence" in err and "<stdin>:2: invalid UTF-8 (byte 0xff)" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        os.close(master)


def stderr_on_a_pty(cmd: list[str], rows: int, cols: int, stdout: Any) -> bytes:
    """What ``cmd`` shows on a terminal of ``rows`` x ``cols`` that is its stderr."""
    import fcntl
    import os
    import pty
    import select
    import struct
    import subprocess
    import termios

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=stdout, stderr=slave, env=env)
    os.close(slave)
    shown = b""
    try:
        while select.select([master], [], [], 60)[0]:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
        assert proc.wait(60) == 0, shown.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        os.close(master)
    return shown


def test_a_long_translation_shows_a_bar_on_a_terminal_and_nothing_elsewhere(checkpoint, tmp_path):
    """stderr a terminal: a bar of sentences; stderr a file: no bar; the output the same."""
    import os
    import subprocess
    import sys

    src = write_lines(tmp_path / "src.txt", [f"a b {i % 7}" for i in range(300)])
    cmd = [sys.executable, "-m", "rnnkit", "translate", str(checkpoint), "--input", str(src)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out_tty = tmp_path / "tty.txt"
    shown = stderr_on_a_pty([*cmd, "--output", str(out_tty)], 24, 100, subprocess.DEVNULL)
    assert b"300/300" in shown and b"sent/s" in shown
    plain = subprocess.run(cmd, capture_output=True, env=env, timeout=120)
    assert plain.returncode == 0 and b"sent/s" not in plain.stderr
    assert plain.stdout.decode().splitlines() == out_tty.read_text().splitlines()


@pytest.mark.parametrize("rows, cols", [(24, 100), (0, 0)])
def test_train_on_a_terminal_shows_a_bar_or_step_lines(tmp_path, rows, cols):
    """A terminal with a size gets tqdm's bar; one left at 0 rows or columns (some container
    and CI ptys, where tqdm draws nothing) gets the step lines a log file gets."""
    import subprocess
    import sys

    sets = {
        "data.task": "copy", "data.task_size": 60, "data.task_dev": 4, "data.task_test": 4,
        "model.hidden_size": 8, "model.emb_size": 8, "train.batch_size": 16,
        "train.max_steps": 6, "train.log_every": 2, "train.validate_every": 100,
        "train.checkpoint_every": 100, "train.max_minutes": 0, "train.device": "cpu",
    }  # fmt: skip
    cfg = Path(__file__).resolve().parents[1] / "configs" / "dates.yaml"
    cmd = [sys.executable, "-m", "rnnkit", "train", str(cfg), "--out", str(tmp_path / "run")]
    cmd += [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
    shown = stderr_on_a_pty(cmd, rows, cols, subprocess.DEVNULL).decode(errors="replace")
    sized = rows > 0 and cols > 0
    assert ("step/s" in shown) == sized, shown
    assert ("step 4 epoch" in shown) != sized, shown
