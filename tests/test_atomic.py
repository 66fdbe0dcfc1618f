"""Output files: atomic replacement that writes through symlinks and into pipes, keeps
modes and the umask, fails in one line leaving no temp file; ``rnnkit train`` into a
folder that holds a run."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest
from test_cli import run_cli
from test_train import one_thread, read_log, tiny, write_yaml

from rnnkit.atomic import OutputError, check_writable, write_atomically

assert one_thread  # an autouse fixture of test_train


def write(path: Path | str, text: str) -> None:
    write_atomically(path, lambda f: f.write(text))


def test_a_symlink_stays_and_its_file_is_replaced(tmp_path: Path) -> None:
    real, link = tmp_path / "real.txt", tmp_path / "link.txt"
    real.write_text("old\n")
    link.symlink_to(real.name)
    write(link, "new\n")
    assert link.is_symlink() and real.read_text() == "new\n"


def test_a_fifo_is_written_into_not_replaced(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    write(fifo, "through the pipe\n")
    reader.join(10)
    assert got == ["through the pipe\n"] and stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_modes_follow_the_umask_or_the_file(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write(tmp_path / "new.txt", "x")
        assert stat.S_IMODE(os.stat(tmp_path / "new.txt").st_mode) == 0o644
        kept = tmp_path / "kept.txt"
        kept.write_text("y")
        kept.chmod(0o640)
        write(kept, "z")
        assert stat.S_IMODE(os.stat(kept).st_mode) == 0o640 and kept.read_text() == "z"
    finally:
        os.umask(old)


def test_unwritable_paths_are_one_line_errors_and_leave_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "a_folder"
    folder.mkdir()
    afile = tmp_path / "a_file"
    afile.write_text("")
    for path, says in (
        (folder, "is a folder, not a file"),
        (afile / "x.txt", "[Nn]ot a (directory|folder)"),
    ):
        with pytest.raises(OutputError, match=says):
            check_writable(path)
        with pytest.raises(OutputError, match=says):
            write(path, "x")
    with pytest.raises(OutputError, match="boom"):  # a failing writer: no temp file stays

        def fail(f: object) -> None:
            raise OutputError("boom")

        write_atomically(tmp_path / "out.txt", fail)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "a_folder"]


def test_a_read_only_file_system_is_said_as_such(tmp_path: Path, monkeypatch) -> None:
    """It was "no permission in DIR", which sends one to chmod (root in a container with a
    read-only mount, too)."""

    class ReadOnly:
        f_flag = os.ST_RDONLY

    monkeypatch.setattr(os, "access", lambda *args, **kw: False)  # (as EROFS answers)
    monkeypatch.setattr(os, "statvfs", lambda path: ReadOnly())
    said = rf"cannot write \({tmp_path} is on a read-only file system\)"
    with pytest.raises(OutputError, match=said):
        write(tmp_path / "x.txt", "x")
    monkeypatch.setattr(os, "statvfs", lambda path: os.statvfs_result((0,) * 11))
    with pytest.raises(OutputError, match=rf"cannot write \(no permission in {tmp_path}\)"):
        write(tmp_path / "x.txt", "x")


def test_translate_into_a_folder_fails_before_translating(tmp_path: Path, capsys) -> None:
    (tmp_path / "in.txt").write_text("a b\n")
    (tmp_path / "out").mkdir()
    code, _, err = run_cli(
        capsys,
        "translate",
        "missing.pt",
        "--input",
        tmp_path / "in.txt",
        "--output",
        tmp_path / "out",
    )
    assert (
        code == 2
        and err.strip() == f"rnnkit: error: --output {tmp_path / 'out'}: is a folder, not a file"
    )


def test_train_into_a_folder_holding_a_run_needs_overwrite(tmp_path: Path, capsys) -> None:
    cfg = write_yaml(tmp_path / "cfg.yaml", tiny(train={"max_steps": 6, "validate_every": 6}))
    out = tmp_path / "run"
    assert run_cli(capsys, "train", cfg, "--out", out)[0] == 0
    first = read_log(out)
    code, _, err = run_cli(capsys, "train", cfg, "--out", out)
    assert code == 2 and "holds a run already" in err and "--overwrite" in err
    assert read_log(out) == first  # untouched
    kept = {f.name: f.read_bytes() for f in out.iterdir() if f.is_file()}
    for bad in ("train.init_from=nowhere.pt", "model.src_embeddings=/nowhere.vec"):
        # a start that fails its checks deleted the run first (a typo cost a trained model)
        code, _, err = run_cli(capsys, "train", cfg, "--out", out, "--overwrite", "--set", bad)
        assert code == 2 and "nowhere" in err
        assert {f.name: f.read_bytes() for f in out.iterdir() if f.is_file()} == kept
    # vectors that fail only once the data is read: the new run's vocabularies and
    # held-out pairs were written over the old run's, which stayed (a folder of two runs)
    vec = tmp_path / "bad.vec"
    vec.write_text("a 0 0\nb x 0\n", encoding="utf-8")
    new_data = ["--set", "data.task_dev=7", "--set", "data.task_size=150"]
    code, _, err = run_cli(capsys, "train", cfg, "--out", out, "--overwrite", *new_data,
                           "--set", f"model.src_embeddings={vec}")  # fmt: skip
    assert code == 2 and f"{vec}, line" in err
    assert {f.name: f.read_bytes() for f in out.iterdir() if f.is_file()} == kept
    (out / "src_spm.model").write_bytes(b"an old BPE run's model")  # (this run is word-level)
    (out / "step-99.pt").write_bytes(b"an old kept checkpoint")
    (out / "tensorboard").mkdir(exist_ok=True)  # where progress.py's SummaryWriter writes
    (out / "tensorboard" / "events.out.tfevents.1.old").write_bytes(b"old events")
    assert run_cli(capsys, "train", cfg, "--out", out, "--overwrite")[0] == 0
    assert [r["step"] for r in read_log(out)] == [r["step"] for r in first]  # a new log
    assert not (out / "step-99.pt").exists() and not (out / "src_spm.model").exists()
    assert (out / "src_vocab.txt").is_file()  # (written again after the removal)
    assert not (out / "tensorboard" / "events.out.tfevents.1.old").exists()
    code, _, err = run_cli(capsys, "train", cfg, "--out", cfg)
    assert code == 2 and err.strip().endswith("is a file, not a folder")


def test_dev_stdout_redirected_to_a_file_is_written_into(tmp_path: Path) -> None:
    """``--output /dev/stdout >> all.txt``: the file keeps what it had (it was replaced)."""
    import subprocess
    import sys

    out = tmp_path / "all.txt"
    out.write_text("earlier line\n")
    code = (
        "from rnnkit.atomic import write_atomically as w; "
        "w('/dev/stdout', lambda f: f.write('new\\n'))"
    )
    with open(out, "a") as f:
        subprocess.run([sys.executable, "-c", code], stdout=f, check=True, timeout=60)
    assert out.read_text() == "earlier line\nnew\n"
