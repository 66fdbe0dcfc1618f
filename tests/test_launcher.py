"""``rnnkit train --nproc N``: torchrun's agent in rnnkit's process (rnnkit.launcher).

What the job says and its exit status: the error of the process that failed first,
once, without torchrun's report or log lines; 130 after Ctrl-C, 143 after SIGTERM,
with no traceback and no process left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_distributed import (
    JOB_TIMEOUT,
    dates,
    finish,
    job_env,
    job_pids,
    kill_job,
    progress_step,
    write_yaml,
)

from rnnkit.launcher import failure_report, first_failure

pytestmark = pytest.mark.serial  # jobs of three processes on a timeout: not beside other tests

TORCHRUN_WORDS = ("torch/distributed/elastic", "ChildFailedError", "Root Cause", "exitcode")


def nproc_job(cfg: Path, out: Path, **env: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "rnnkit", "train", str(cfg), "--out", str(out), "--nproc", "2"]
    return subprocess.Popen(cmd, env=job_env(**env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip


def wait_until_training(proc: subprocess.Popen[str], out: Path) -> None:
    """Until the job's last.pt holds step 10 or more (both processes are training)."""
    deadline = time.monotonic() + JOB_TIMEOUT
    while progress_step(out / "last.pt") < 10:
        assert proc.poll() is None and time.monotonic() < deadline, "the job did not start"
        time.sleep(0.05)


def failure(exitcode: int, timestamp: int, local_rank: int = 0) -> SimpleNamespace:
    return SimpleNamespace(exitcode=exitcode, timestamp=timestamp, local_rank=local_rank)


def test_the_failure_reported_is_the_first_then_an_exit_then_the_first_seen():
    assert first_failure({1: failure(1, 100), 0: failure(-15, 100)})[0] == 1
    assert first_failure({2: failure(-6, 100), 1: failure(2, 100)})[0] == 1  # a signal last
    assert first_failure({2: failure(2, 100), 1: failure(1, 101)})[0] == 2
    # a tie on the second: the first torch saw (its dict's order), not the lowest rank (a
    # SIGTERM sent to process 1, then the agent's to process 0: "process 0 was killed")
    assert first_failure({1: failure(-15, 100), 0: failure(-15, 100)})[0] == 1
    assert first_failure({2: failure(2, 100), 1: failure(1, 100)})[0] == 2
    # process 0's own error (it said it; another meeting it waits before it exits)
    assert first_failure({1: failure(1, 100), 0: failure(1, 101)})[0] == 0
    # the SIGTERMs of the agent stopping the others are not the cause (they tied on the
    # second and the lowest rank won: "process 0 was killed by SIGTERM", status 143)
    assert first_failure({1: failure(-9, 100), 0: failure(-15, 100)})[0] == 1
    assert first_failure({0: failure(-15, 100)})[0] == 0


def test_what_a_failure_says_and_the_status_it_gives():
    assert failure_report(0, 2, 2, "") == ("", 2)  # process 0 said it on the terminal
    assert failure_report(1, 2, 2, "rnnkit: error: x") == ("rnnkit: error: x", 2)
    assert failure_report(1, 4, 1, "") == ("rnnkit: error: process 1 of 4 ended with status 1", 1)
    assert failure_report(0, 2, -9, "") == (
        "rnnkit: error: process 0 of 2 was killed by SIGKILL",
        137,
    )
    text, status = failure_report(3, 4, -6, "terminate called")
    assert text.splitlines() == [
        "terminate called",
        "rnnkit: error: process 3 of 4 was killed by SIGABRT",
    ]
    assert status == 134


@pytest.mark.parametrize("rank", [0, 1])
def test_a_failing_process_is_said_once_without_torchruns_report(tmp_path, rank):
    """Under `os.execv` into torchrun, a failure was the process's error, the other's
    'another process stopped', torchrun's log lines and its 'ChildFailedError' report,
    status 1; process 1's error said after process 0's, so torchrun often blamed 0."""
    cfg_path = write_yaml(tmp_path / "cfg.yaml", dates())
    out = tmp_path / "out"
    code, err = finish(nproc_job(cfg_path, out, RNNKIT_FAULT=f"{rank}@3"), out)
    assert code == 1, err[-3000:]
    assert err.count(f"RuntimeError: injected fault (RNNKIT_FAULT) on rank {rank} at step 3") == 1
    assert not [w for w in TORCHRUN_WORDS if w in err], err[-3000:]
    assert "another process stopped" not in err  # (the launcher names the one that did)
    time.sleep(0.2)
    assert not job_pids(str(out))


@pytest.mark.parametrize("sig, status", [(signal.SIGTERM, 143)])
def test_ctrl_c_or_sigterm_ends_the_job_with_the_shells_status(tmp_path, sig, status):
    """Ctrl-C (SIGINT to the terminal's process group) made torchrun exit 1 with a
    traceback. Now 130 (143 for SIGTERM), process 0's line, no traceback, nothing left.
    (Ctrl-C: in the test after this one, which stops a job before its first checkpoint.)"""
    long = dates(max_steps=100_000, max_epochs=100_000, validate_every=1000)
    cfg_path = write_yaml(tmp_path / "cfg.yaml", long)
    out = tmp_path / "out"
    proc = nproc_job(cfg_path, out)
    try:
        wait_until_training(proc, out)
        os.killpg(proc.pid, sig) if sig == signal.SIGINT else proc.send_signal(sig)
        code, err = finish(proc, out)
    finally:
        kill_job(str(out))
    assert code == status, err[-3000:]
    assert "Traceback" not in err and not [w for w in TORCHRUN_WORDS if w in err], err[-3000:]
    if sig == signal.SIGINT:
        assert "interrupted at step" in err
    else:
        assert "rnnkit: stopped by SIGTERM" in err
    time.sleep(0.2)
    assert not job_pids(str(out))


@pytest.mark.parametrize("sig", [signal.SIGKILL])
def test_a_process_killed_by_a_signal_is_named_with_its_signal(tmp_path, sig):
    """Process 1 SIGKILLed (the OOM killer): reported as "process 0 was killed by
    SIGTERM", status 143 (the agent's own SIGTERM to process 0 won the tie). SIGTERMed,
    so too until a tie went to the failure torch saw first, not the lowest rank (checked
    on a real job once: "process 1 of 2 was killed by SIGTERM"; kept to the unit test
    above, for the time a job takes here)."""
    long = dates(max_steps=100_000, max_epochs=100_000, validate_every=1000)
    cfg_path = write_yaml(tmp_path / "cfg.yaml", long)
    out = tmp_path / "out"
    proc = nproc_job(cfg_path, out)
    try:
        wait_until_training(proc, out)
        os.kill(local_rank_pid(str(out), 1), sig)
        code, err = finish(proc, out)
    finally:
        kill_job(str(out))
    name = signal.Signals(sig).name
    assert code == 128 + sig, err[-3000:]
    assert err.strip().splitlines()[-1] == f"rnnkit: error: process 1 of 2 was killed by {name}"
    assert "another process stopped" not in err and "Traceback" not in err


def test_ctrl_c_before_the_first_checkpoint_says_what_can_be_done(tmp_path, capsys):
    """Under several processes Ctrl-C writes no last.pt; before the first checkpoint it
    promised "--resume continues from the last checkpoint", and --resume then said there
    was none while a plain start said the folder held a run (best.pt): no way on."""
    from rnnkit.cli import main

    long = dates(max_steps=100_000, max_epochs=100_000, validate_every=100_000)
    cfg_path = write_yaml(tmp_path / "cfg.yaml", {**long, "train": {**long["train"],
                          "checkpoint_every": 100_000, "log_every": 1}})  # fmt: skip
    out = tmp_path / "out"
    proc = nproc_job(cfg_path, out)
    try:
        deadline = time.monotonic() + JOB_TIMEOUT
        while not (out / "log.csv").is_file() or len((out / "log.csv").read_text().split()) < 3:
            assert proc.poll() is None and time.monotonic() < deadline, "the job did not start"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
        code, err = finish(proc, out)
    finally:
        kill_job(str(out))
    assert code == 130, err[-3000:]
    assert "Traceback" not in err and not [w for w in TORCHRUN_WORDS if w in err], err[-3000:]
    assert "before the first checkpoint (train.checkpoint_every: 100000): nothing to " in err
    time.sleep(0.2)
    assert not job_pids(str(out))
    assert (out / "best.pt").is_file() and not (out / "last.pt").exists()
    args = ["train", str(cfg_path), "--out", str(out)]
    assert main([*args, "--resume"]) == 2
    said = capsys.readouterr().err
    assert "its run stopped before its first: nothing to resume; --overwrite starts" in said
    assert main(args) == 2
    said = capsys.readouterr().err
    assert "holds a run already (" in said and "--resume" not in said, said


def test_an_error_every_process_meets_is_said_once(tmp_path):
    """A loss that diverges on both processes was said twice in 1 run of 5."""
    cfg_path = write_yaml(tmp_path / "cfg.yaml", dates(lr=1e30, max_steps=40))
    out = tmp_path / "out"
    code, err = finish(nproc_job(cfg_path, out), out)
    assert code == 1, err[-3000:]
    assert err.count("rnnkit: error:") == 1 and "became nan" in err, err[-3000:]


def local_rank_pid(marker: str, rank: int) -> int:
    """The pid of the job's process with LOCAL_RANK ``rank``."""
    for pid in job_pids(marker):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"LOCAL_RANK={rank}".encode() in env:
            return pid
    raise AssertionError(f"no process with LOCAL_RANK={rank}")
