"""What translate / evaluate / score do with the paths they are given: a pipe given by
name is read once, as stdin is; an --output that is one of the inputs is refused;
--output /dev/stdout goes through stdout; a closed stdin is an error only when read."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from toy import one_thread, save_bundle, word_bundle  # noqa: F401 (fixture)

from rnnkit.cli import main
from rnnkit.translate import translate_lines

SRC = Path(__file__).resolve().parents[1] / "src"
LINES = ["a b c", "", "d e", "f g h a b"]


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return save_bundle(word_bundle(), tmp_path / "m.pt")


def pipe_of(text: str) -> str:
    """A pipe that holds ``text``, named as the shell names ``<(printf ...)``."""
    r, w = os.pipe()
    threading.Thread(target=lambda: (os.write(w, text.encode()), os.close(w)), daemon=True).start()
    return f"/dev/fd/{r}"


def test_a_pipe_given_by_name_is_translated_line_for_line(model, capsys):
    """`--input <(cmd)` or /dev/stdin printed nothing and exited 0: the file was read
    once to count its lines, and the pipe was empty the second time."""
    want = [r[0].text for r in translate_lines(word_bundle(), LINES)]
    assert main(["translate", str(model), "--input", pipe_of("\n".join(LINES) + "\n")]) == 0
    assert capsys.readouterr().out.splitlines() == want


def test_score_reads_two_pipes(model, tmp_path, capsys):
    """`score --src <(...) --tgt FILE` said the pipe "has fewer lines than" the file."""
    (tmp_path / "t.txt").write_text("a\nb\nc\nd\n", encoding="utf-8")
    src = pipe_of("\n".join(LINES) + "\n")
    assert main(["score", str(model), "--src", src, "--tgt", str(tmp_path / "t.txt")]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 4
    tgt = pipe_of("a\n")
    assert main(["score", str(model), "--src", pipe_of(""), "--tgt", tgt]) == 2
    assert "has fewer lines than" in capsys.readouterr().err  # (one ended first)


@pytest.mark.parametrize("command", ["translate", "evaluate", "score"])
def test_an_output_that_is_an_input_is_refused_and_left_as_it_was(model, tmp_path, capsys, command):
    """`translate m.pt --output m.pt` replaced the model with 23 bytes of text, and
    `evaluate --output REF` the reference with the hypotheses."""
    text = tmp_path / "s.txt"
    text.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    before = model.read_bytes(), text.read_bytes()
    inputs = {
        "translate": ["--input", str(text)],
        "evaluate": ["--src", str(text), "--ref", str(text)],
        "score": ["--src", str(text), "--tgt", str(text)],
    }[command]
    for output, what in ((model, "checkpoint"), (text, "--")):
        assert main([command, str(model), *inputs, "--output", str(output)]) == 2
        assert f"--output {output}: is the {what}" in capsys.readouterr().err
    assert (model.read_bytes(), text.read_bytes()) == before


def test_dev_stdout_shares_the_shells_stdout_and_a_closed_stdin_is_said(model, tmp_path):
    """`{ echo BEGIN; rnnkit translate ... --output /dev/stdout; echo END; } > f` lost the
    first translation under END (the file was opened again, at its own offset); with
    stdin closed (`<&-`), translate --input FILE was a traceback, and reading stdin one."""
    text = tmp_path / "s.txt"
    text.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    rnnkit = f"{sys.executable} -m rnnkit translate {model}"
    script = (
        f"{{ echo BEGIN; {rnnkit} --input {text} --output /dev/stdout; echo END; }} > out.txt; "
        f"{rnnkit} --input {text} <&- > closed.txt; echo $? >> closed.txt; "
        f"{rnnkit} <&- 2> err.txt; echo $? >> err.txt"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    subprocess.run(["sh", "-c", script], cwd=tmp_path, env=env, timeout=180, check=True)
    want = [r[0].text for r in translate_lines(word_bundle(), LINES)]
    assert (tmp_path / "out.txt").read_text().splitlines() == ["BEGIN", *want, "END"]
    assert (tmp_path / "closed.txt").read_text().splitlines() == [*want, "0"]
    err = (tmp_path / "err.txt").read_text().splitlines()
    assert err == ["rnnkit: error: <stdin>: stdin is closed; give the input as a file", "2"]


def test_an_output_name_ending_in_a_slash_is_refused(model, tmp_path, capsys):
    """`--output outdir/` (a folder not there yet) wrote a file named outdir."""
    text = tmp_path / "s.txt"
    text.write_text("a b\n", encoding="utf-8")
    out = f"{tmp_path / 'outdir'}/"
    assert main(["translate", str(model), "--input", str(text), "--output", out]) == 2
    assert "names a folder (it ends with /)" in capsys.readouterr().err
    assert not (tmp_path / "outdir").exists()


def test_output_limits_for_one_call(tmp_path, capsys):
    """--max-len-a / --max-len-b as fairseq's and OpenNMT's: the checkpoint's decode
    limits for one call (they could be changed only by training again)."""
    model = save_bundle(word_bundle(seed=1), tmp_path / "m1.pt")  # (long outputs, greedy)
    text = tmp_path / "s.txt"
    text.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    assert main(["translate", str(model), "--input", str(text), "--beam", "1"]) == 0
    free = [len(line.split()) for line in capsys.readouterr().out.splitlines()]
    assert max(free) > 1
    assert main(["translate", str(model), "--input", str(text), "--beam", "1",
                 "--max-len-a", "0", "--max-len-b", "2"]) == 0  # fmt: skip
    assert [min(n, 2) for n in free] == [
        len(x.split()) for x in capsys.readouterr().out.splitlines()
    ]
    assert main(["evaluate", str(model), "--src", str(text), "--ref", str(text),
                 "--max-len-b", "2"]) == 0  # fmt: skip
    result = __import__("json").loads(capsys.readouterr().out)
    assert (result["max_len_a"], result["max_len_b"]) == (word_bundle().config.decode.max_len_a, 2)
    assert main(["translate", str(model), "--max-len-a", "0", "--max-len-b", "0"]) == 2
    assert "the output limit A·|x| + B is 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["translate", str(model), "--max-len-b", "-1"])
    assert "expected an integer from 0 to 2147483647, got -1" in capsys.readouterr().err


def test_an_output_that_cannot_be_replaced_is_no_clash(model, capsys):
    """/dev/null as input and output was refused as "the --input /dev/null" (so was a
    terminal as /dev/stdin and /dev/stdout): only a regular file would be replaced."""
    assert main(["translate", str(model), "--input", "/dev/null", "--output", "/dev/null"]) == 0


def test_a_symbolic_link_that_loops_or_names_nothing_is_said_as_such(model, tmp_path, capsys):
    """``average`` met a symlink loop with a RuntimeError traceback (Path.resolve), and
    every command called a link to nowhere "checkpoint not found" with no word of the link."""
    (tmp_path / "loop_a").symlink_to(tmp_path / "loop_b")
    (tmp_path / "loop_b").symlink_to(tmp_path / "loop_a")
    (tmp_path / "gone.pt").symlink_to(tmp_path / "nothing.pt")
    out = str(tmp_path / "avg.pt")
    assert main(["average", str(model), str(tmp_path / "loop_a"), "--out", out]) == 2
    assert main(["info", str(tmp_path / "gone.pt")]) == 2
    assert main(["inspect", str(model), "a b", "--out", str(tmp_path / "loop_a")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3, err
    assert err[2].endswith(
        "cannot make this folder (a symbolic link: too many levels of symbolic links)"
    )
    assert err[0].endswith(
        "loop_a: checkpoint not found (a symbolic link: too many levels of symbolic links)"
    )
    assert err[1].endswith(
        "gone.pt: checkpoint not found (a symbolic link: no such file or directory)"
    )


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full here")
def test_a_full_disk_is_status_1_and_a_path_that_cannot_be_written_2(model, tmp_path, capsys):
    """A full disk is a failure of the machine, as on standard output (status 1); a
    path that cannot be written is the caller's to change (2). Both were 2."""
    text = tmp_path / "s.txt"
    text.write_text("a b\n", encoding="utf-8")
    assert main(["translate", str(model), "--input", str(text), "--output", "/dev/full"]) == 1
    assert "/dev/full: cannot write (No space left on device)" in capsys.readouterr().err
    under_a_file = str(text / "out.txt")
    assert main(["translate", str(model), "--input", str(text), "--output", under_a_file]) == 2
    assert "cannot" in capsys.readouterr().err


def test_a_disk_that_fills_during_a_checkpoint_write_is_status_1(
    model, tmp_path, monkeypatch, capsys
):
    """torch's zip writer turns the full disk into a RuntimeError, the OSError a level
    deeper: `average` (and train's last.pt) still exited 2."""
    import errno

    import rnnkit.checkpoint as checkpoint_module

    def full(obj: object, f: object) -> None:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("PytorchStreamWriter failed writing file data/0") from None

    import torch

    other = tmp_path / "m2.pt"
    torch.save({**torch.load(model, weights_only=True), "step": 1}, other)
    monkeypatch.setattr(checkpoint_module.torch, "save", full)
    out = tmp_path / "avg.pt"
    assert main(["average", str(model), str(other), "--out", str(out)]) == 1
    assert "cannot write (No space left on device)" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    "argv, says",
    [
        (["train", "c.yaml", "--out", ""], "--out: an empty path ('')"),  # (trained in runs/c)
        (["inspect", "m.pt", "a b", "--out", ""], "--out: an empty path ('')"),  # (into .)
        (["translate", "m.pt", "--output", ""], "--output: an empty path ('')"),  # (": is a")
        (["translate", "m.pt", "--input", ""], "--input: an empty path ('')"),
        (["average", "m.pt", "--out", ""], "--out: an empty path ('')"),
        (["evaluate", "m.pt", "--src", "s", "--ref", ""], "--ref: an empty path among ['']"),
        (["translate", "", "--input", "f"], "CHECKPOINT: an empty path among ['']"),
    ],
)
def test_an_empty_path_is_a_usage_error(argv, says, tmp_path, capsys, monkeypatch):
    """An unset shell variable (--out "$OUT") was taken as no option at all, or named as
    ':'; nothing is read or written before the error."""
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert capsys.readouterr().err == f"rnnkit: error: {says}\n"
    assert not any(tmp_path.iterdir())
