"""--device of translate / evaluate / serve and train.device: what the machine has runs,
what it lacks is a one-line error naming the option or key (never a traceback)."""

from __future__ import annotations

from pathlib import Path

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
