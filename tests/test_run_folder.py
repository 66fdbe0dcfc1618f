"""A run folder under stress: nothing already written is lost or corrupted. log.csv
rewritten atomically on resume (bad rows left out), one training process per folder,
kept steps and demos that are not ours left alone, temp files of killed writes removed,
a full disk or a folder that cannot be made said in one line; and an install's
missing package, a checkpoint it may not read, --version, the experiments' data path."""

from __future__ import annotations

import errno
import resource
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
from test_cli import one_line_error, run_cli
from test_train import one_thread, read_log, tiny, write_yaml  # noqa: F401 (fixture)

from rnnkit import demo
from rnnkit.atomic import OutputError, write_atomically
from rnnkit.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from rnnkit.cli import main
from rnnkit.experiments.attention_length import multi30k_dir
from rnnkit.progress import CsvLog
from rnnkit.runlock import claimed, holder

ROW = "{step},1,train,2.0,7.4,0.01,100.0,,,1.0,,\n"
HEADER = "step,epoch,split,loss,ppl,lr,tokens_per_s,bleu,chrf,elapsed_s,bleu_lc,accuracy\n"


def test_resume_rewrites_log_csv_whole_or_not_at_all(tmp_path):
    """log.csv was emptied, then written back row by row: a kill left it empty, a full
    disk cut it mid-row (and a traceback). Now a temp file replaces it, or nothing does."""
    rows = "".join(ROW.format(step=s) for s in range(1, 4001))
    (tmp_path / "log.csv").write_text(HEADER + rows, encoding="utf-8")
    before = (tmp_path / "log.csv").read_bytes()
    code = "from pathlib import Path; from rnnkit.progress import CsvLog; CsvLog(Path('.'), 3000)"

    def small_disk() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))  # Python ignores SIGXFSZ

    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, preexec_fn=small_disk,
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode != 0 and "OutputError: log.csv: cannot write (File too large)" in r.stderr
    assert (tmp_path / "log.csv").read_bytes() == before
    assert not list(tmp_path.glob(".*.tmp"))
    CsvLog(tmp_path, 3000).close()
    assert len(read_log(tmp_path)) == 3000


@pytest.mark.parametrize("tail", ["x", "34", "oops,1,train\n"])
def test_rows_cut_short_are_left_out_on_resume(tmp_path, tail):
    """A row whose step is not a number crashed --resume (ValueError); a row cut after
    two bytes was kept as step 34 with nothing else."""
    (tmp_path / "log.csv").write_text(HEADER + ROW.format(step=1) + tail, encoding="utf-8")
    CsvLog(tmp_path, 100).close()
    assert [r["step"] for r in read_log(tmp_path)] == ["1"]


def test_tensorboard_drops_what_a_killed_run_logged_after_its_checkpoint(tmp_path, monkeypatch):
    made: list[dict[str, object]] = []

    class Writer:
        def __init__(self, folder: str, **kw: object) -> None:
            made.append(kw)

        def close(self) -> None:
            pass

    fake = types.ModuleType("torch.utils.tensorboard")
    fake.SummaryWriter = Writer  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    CsvLog(tmp_path).close()
    CsvLog(tmp_path, 40).close()
    assert made == [{"purge_step": None}, {"purge_step": 41}]


def test_one_training_process_per_folder(tmp_path, capsys):
    """Two `rnnkit train` into one --out (or a --resume while it trains) both ran to the
    end: log.csv interleaved with NUL bytes, the checkpoints of whichever wrote last."""
    cfg = write_yaml(tmp_path / "c.yaml", tiny(train={"max_steps": 10}))
    out = tmp_path / "run"
    with claimed(out):  # another process would hold it the same way (flock)
        assert holder(out) is not None
        for extra in ([], ["--resume"], ["--overwrite"]):
            assert main(["train", str(cfg), "--out", str(out), *extra]) == 2
            assert "a run is training there now (pid" in capsys.readouterr().err
    assert holder(out) is None  # the kernel drops it with the file (or the process)
    assert main(["train", str(cfg), "--out", str(out)]) == 0
    assert holder(out) is None


def test_kept_steps_count_as_a_run_and_stale_temp_files_go(tmp_path, capsys):
    """A folder with only step-*.pt was taken as empty: keep_checkpoints then deleted the
    user's files and this run's own. Temp files of killed writes piled up forever."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "step-7.pt").write_bytes(b"mine")
    cfg = write_yaml(tmp_path / "c.yaml", tiny(train={"max_steps": 10, "keep_checkpoints": 1}))
    assert main(["train", str(cfg), "--out", str(out)]) == 2
    assert "holds a run already (step-7.pt)" in capsys.readouterr().err
    assert (out / "step-7.pt").read_bytes() == b"mine"
    (out / ".last.pt.abc123_x.tmp").write_bytes(b"half a checkpoint")
    assert main(["train", str(cfg), "--out", str(out), "--overwrite"]) == 0
    assert not list(out.glob(".*.tmp")) and [p.name for p in out.glob("step-*.pt")] == [
        "step-10.pt"
    ]
    (out / ".best.pt.xyz0wlq9.tmp").write_bytes(b"half")
    for mine in (".notes.tmp", ".my.notes.tmp", ".a.b.abcdefg.tmp", ".paper.20240101.tmp"):
        (out / mine).write_text("precious", encoding="utf-8")
    cfg2 = write_yaml(tmp_path / "c2.yaml", tiny(train={"max_steps": 20, "keep_checkpoints": 1}))
    assert main(["train", str(cfg2), "--out", str(out), "--resume"]) == 0
    assert sorted(p.name for p in out.glob(".*.tmp")) == [
        ".a.b.abcdefg.tmp",
        ".my.notes.tmp",
        ".notes.tmp",
        ".paper.20240101.tmp",
    ]


def test_demo_replaces_a_demo_but_not_another_run(tmp_path):
    """`rnnkit demo --out DIR` replaced a trained run's best.pt / last.pt / log.csv."""
    out = tmp_path / "run"
    cfg = write_yaml(tmp_path / "c.yaml", tiny(train={"max_steps": 5}))
    assert main(["train", str(cfg), "--out", str(out)]) == 0
    before = (out / "last.pt").read_bytes()
    with pytest.raises(OutputError, match="holds a run that is not a demo's"):
        demo.run_demo(out, max_minutes=0.01)
    assert (out / "last.pt").read_bytes() == before
    ckpt = load_checkpoint(out / "last.pt")
    ckpt["config"] = {**ckpt["config"], **{k: v for k, v in _demo_sections().items()}}
    save_checkpoint(out / "last.pt", ckpt)
    demo._replace_earlier_demo(out, demo.demo_config())
    assert not (out / "last.pt").exists() and not (out / "log.csv").exists()


def _demo_sections() -> dict[str, object]:
    from rnnkit.config import config_to_dict

    d = config_to_dict(demo.demo_config())
    return {"data": d["data"], "model": d["model"]}


def test_a_full_disk_inside_torch_save_is_one_line(tmp_path):
    """torch.save reports a failed write as a RuntimeError (its zip writer), the
    OSError inside: a 40-line traceback for train / average."""
    target = tmp_path / "last.pt"
    target.write_bytes(b"old")

    def write(f: object) -> None:
        try:
            raise OSError(errno.EFBIG, "File too large")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc]")  # noqa: B904 (as torch)

    with pytest.raises(OutputError, match=r"last.pt: cannot write \(File too large\)"):
        write_atomically(target, write, binary=True)
    assert target.read_bytes() == b"old" and not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("where", ["dangling", "through-a-file"])
def test_an_out_folder_that_cannot_be_made_is_one_line(tmp_path, capsys, where):
    (tmp_path / "afile").write_text("hi")
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    out = tmp_path / ("dangling" if where == "dangling" else "afile/sub")
    cfg = write_yaml(tmp_path / "c.yaml", tiny(train={"max_steps": 1}))
    for args in (["train", str(cfg), "--out", str(out)],
                 ["experiment", "attention-cost", "--quick", "--out", str(out)]):  # fmt: skip
        status, _, err = run_cli(capsys, *args)
        assert status == 2 and one_line_error(err).startswith("rnnkit: error: --out "), err


def test_a_missing_package_is_one_line_before_the_work(tmp_path, capsys, monkeypatch):
    """A broken install gave a traceback; `experiment` measured for seconds and then
    failed on `import matplotlib`, writing nothing."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    assert main(["experiment", "attention-cost", "--quick", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.strip() == (
        "rnnkit: error: experiment needs the Python package matplotlib, which is not "
        "installed (pip install matplotlib)"
    )


def test_a_checkpoint_this_user_may_not_read_is_not_called_corrupt(tmp_path, monkeypatch):
    (tmp_path / "best.pt").write_bytes(b"PK\x03\x04 a good model")  # (begins as a zip)

    def denied(*a: object, **k: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(torch, "load", denied)
    with pytest.raises(CheckpointError, match=r"best.pt: cannot read \(Permission denied\)$"):
        load_checkpoint(tmp_path / "best.pt")
    monkeypatch.setattr(Path, "open", denied)  # (its first bytes are read first)
    with pytest.raises(CheckpointError, match=r"best.pt: cannot read \(Permission denied\)$"):
        load_checkpoint(tmp_path / "best.pt")


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip().startswith("rnnkit 0.")


def test_the_experiments_find_shared_data_from_the_current_folder(tmp_path, monkeypatch):
    """From an installed package the default pointed into the virtual environment
    (<venv>/lib/shared/data); now ../shared/data from the current folder comes first."""
    monkeypatch.delenv("RNNKIT_DATA", raising=False)
    data = tmp_path / "shared" / "data" / "multi30k"
    data.mkdir(parents=True)
    (data / "train.de").write_text("x")
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    assert multi30k_dir(None).resolve() == data.resolve()


def test_a_file_system_without_locks_still_trains_and_windows_still_cleans(tmp_path, monkeypatch):
    """flock failing with ENOSYS (Lustre noflock, NFS without lockd) refused every run
    ("cannot write"); without fcntl (Windows) temp files were kept."""
    import rnnkit.runlock as runlock

    class NoLocks:
        LOCK_EX = LOCK_NB = LOCK_UN = 0

        @staticmethod
        def flock(f: object, how: int) -> None:
            raise OSError(errno.ENOSYS, "Function not implemented")

    for fake in (NoLocks, None):
        out = tmp_path / str(fake)
        out.mkdir()
        (out / ".last.pt.abc_1234.tmp").write_bytes(b"half")
        monkeypatch.setattr(runlock, "fcntl", fake)
        with claimed(out):
            assert not list(out.glob(".*.tmp"))


def test_a_demo_leaves_a_running_demos_files_alone(tmp_path):
    """The demo deleted the checkpoints of a demo training in the folder, then was
    refused by the lock."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pt").write_bytes(b"a demo's checkpoint")
    with claimed(out), pytest.raises(OutputError, match="a run is training there now"):
        demo.run_demo(out, max_minutes=0.01)
    assert (out / "last.pt").read_bytes() == b"a demo's checkpoint"


@pytest.mark.parametrize(
    "module, package", [("yaml", "pyyaml"), ("sentencepiece", "sentencepiece")]
)
def test_a_missing_package_imported_at_start_is_one_line(tmp_path, module, package):
    """pyyaml and sentencepiece are imported before the command runs: still a traceback."""
    code = (
        f"import sys; sys.modules[{module!r}] = None; from rnnkit.cli import main; "
        "sys.exit(main(['info', 'x.pt']))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip() == (
        f"rnnkit: error: info needs the Python package {package}, which is not installed "
        f"(pip install {package})"
    )


def test_a_start_that_fails_leaves_no_folder_of_its_own_making(tmp_path, capsys):
    """`train --resume --out NEW` (no last.pt there) or a bad train.init_from left NEW
    behind holding only a .lock; a folder that was there stays."""
    cfg = write_yaml(tmp_path / "c.yaml", tiny())
    new = tmp_path / "new"
    code, _, err = run_cli(capsys, "train", cfg, "--out", new, "--resume")
    said = f"{new / 'last.pt'}: checkpoint not found (there is no such folder: nothing to resume"
    assert code == 2 and said in one_line_error(err)
    assert not new.exists()
    new.mkdir()  # killed before its first checkpoint: the hint said nothing of --resume
    code, _, err = run_cli(capsys, "train", cfg, "--out", new, "--resume")
    assert (
        code == 2
        and "(no run saved one there: nothing to resume; without --resume a run starts)"
        in one_line_error(err)
    )
    new.rmdir()
    bad = write_yaml(tmp_path / "b.yaml", tiny(train={"init_from": str(tmp_path)}))
    assert run_cli(capsys, "train", bad, "--out", new)[0] == 2 and not new.exists()
    (tmp_path / "mine").mkdir()
    assert run_cli(capsys, "train", bad, "--out", tmp_path / "mine")[0] == 2
    assert (tmp_path / "mine").is_dir()
