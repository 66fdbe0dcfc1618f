"""Training in several processes (torchrun, gloo, two ranks on the CPU): the same updates
as one process, with and without gradient accumulation; an exact resume after SIGKILL;
a rank that fails ends the job. Every job runs under a timeout and leaves no process."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import yaml

from rnnkit.about import checkpoint_info
from rnnkit.checkpoint import build_model, load_checkpoint
from rnnkit.cli import build_parser
from rnnkit.cli.commands import train_arguments
from rnnkit.config import config_from_dict
from rnnkit.data import Vocab, encode_pairs, make_batches
from rnnkit.distributed import shard
from rnnkit.model import sequence_loss
from rnnkit.prepare import build_tokenizers
from rnnkit.train import load_pairs, train

pytestmark = [
    pytest.mark.skipif(
        not (dist.is_available() and dist.is_gloo_available() and Path("/proc/self").is_dir()),
        reason="needs torch.distributed with gloo, and /proc to find a job's processes",
    ),
    pytest.mark.serial,  # jobs of three processes on a timeout: not beside other tests
]

JOB_TIMEOUT = 60  # seconds a two-rank job may take on a busy two-core machine


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def dates(**train_cfg: Any) -> dict[str, Any]:
    """The dates task, small: 161 pairs in batches of 16 make 11 batches an epoch, the
    last one of a single sentence (rank 1 gets no row of it)."""
    return {
        "data": {
            "task": "dates",
            "task_size": 161,
            "task_dev": 16,
            "task_test": 16,
            "tokenizer": "char",
        },
        "model": {"emb_size": 16, "hidden_size": 32, "dropout": 0.0, "emb_dropout": 0.0},
        "train": {
            "batch_size": 16,
            "batch_tokens": 100_000,
            "lr": 0.003,
            "scheduler": "none",
            "label_smoothing": 0.1,
            "max_steps": 40,
            "validate_every": 20,
            "checkpoint_every": 10,
            "log_every": 5,
            "patience": 0,
            "device": "cpu",
            **train_cfg,
        },
        "decode": {"beam_size": 1, "batch_size": 32, "max_len_a": 0.0, "max_len_b": 12},
    }


def write_yaml(path: Path, d: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(d), encoding="utf-8")
    return path


def job_env(**extra: str) -> dict[str, str]:
    # RNNKIT_DIST_TIMEOUT: a collective that waits for a lost rank gives up in 30 s
    return {**os.environ, "OMP_NUM_THREADS": "1", "RNNKIT_DIST_TIMEOUT": "30", **extra}


def job_pids(marker: str) -> list[int]:
    """Processes whose command line contains ``marker`` (torchrun and its workers: they
    run in sessions of their own, so a process group does not find them)."""
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit() and int(p.name) != os.getpid():
            try:
                if marker.encode() in (p / "cmdline").read_bytes():
                    pids.append(int(p.name))
            except OSError:
                continue
    return pids


def kill_job(marker: str) -> None:
    for pid in job_pids(marker):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def torchrun(cfg: Path, out: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += ["--nproc-per-node", "2", "-m", "rnnkit", "train", str(cfg), "--out", str(out)]
    return subprocess.Popen(
        [*cmd, *args],
        env=job_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str], out: Path) -> tuple[int, str]:
    """Wait for a job (at most JOB_TIMEOUT); its exit status and stderr. A job still
    running then is killed, every process of it, and the test fails."""
    try:
        _, err = proc.communicate(timeout=JOB_TIMEOUT)
    except subprocess.TimeoutExpired:
        kill_job(str(out))
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"the job did not end within {JOB_TIMEOUT} s:\n{err[-3000:]}")
    return proc.returncode, err


def read_log(out: Path) -> list[dict[str, str]]:
    with open(out / "log.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def max_difference(a: Path, b: Path) -> float:
    pa, pb = load_checkpoint(a)["model"], load_checkpoint(b)["model"]
    assert pa.keys() == pb.keys()
    return max(float((pa[k] - pb[k]).abs().max()) for k in pa)


def progress_step(path: Path) -> int:
    try:
        return int(torch.load(path, weights_only=False)["progress"]["step"])
    except (FileNotFoundError, EOFError, RuntimeError):
        return -1


# ---------------------------------------------------------------- shares of a batch


def test_shares_of_a_batch_add_up_to_its_loss():
    """Two shares (rows 0, 2, 4, ... and 1, 3, 5, ..., each trimmed to its own widest
    row) hold every row once; their summed losses and token counts are the batch's."""
    cfg = config_from_dict(dates())
    pairs = load_pairs(cfg)["train"]
    src_tok, tgt_tok = build_tokenizers(cfg, pairs)
    sv = Vocab.build(src_tok.encode(s) for s, _ in pairs)
    tv = Vocab.build(tgt_tok.encode(t) for _, t in pairs)
    examples = encode_pairs(pairs, src_tok, tgt_tok, sv, tv)
    batches = make_batches(examples, None, 16, True, 1, sv.pad_id)
    assert any(len(b) == 1 for b in batches)  # the uneven case is here
    torch.manual_seed(0)
    model = build_model(cfg, len(sv), len(tv)).eval()
    for batch in batches[:3] + [b for b in batches if len(b) == 1]:
        logits, _ = model(batch.src, batch.src_lengths, batch.tgt[:, :-1])
        whole, n = sequence_loss(logits, batch.tgt[:, 1:], tv.pad_id)
        shares = [shard(batch, r, 2, sv.pad_id) for r in range(2)]
        real = [s for s, is_real in shares if is_real]
        assert sorted(i for s in real for i in s.indices.tolist()) == sorted(batch.indices.tolist())
        assert sum(s.ntokens for s in real) == batch.ntokens == n
        parts = []
        for s in real:
            assert s.src.shape[1] == int(s.src_lengths.max())
            logits, _ = model(s.src, s.src_lengths, s.tgt[:, :-1])
            parts.append(sequence_loss(logits, s.tgt[:, 1:], tv.pad_id)[0])
        torch.testing.assert_close(sum(parts), whole, rtol=1e-5, atol=1e-5)
        if len(batch) == 1:  # rank 1 gets a stand-in: the batch's first row
            stand_in, is_real = shares[1]
            assert not is_real and stand_in.indices.tolist() == batch.indices[:1].tolist()


def test_nproc_gives_each_process_the_same_arguments():
    args = build_parser().parse_args(
        ["train", "c.yaml", "--set", "train.lr=0.1", "--out", "o", "--resume", "--nproc", "3"]
    )
    assert train_arguments(args) == ["c.yaml", "--set", "train.lr=0.1", "--out", "o", "--resume"]


# ---------------------------------------------------------------- two ranks, one process


@pytest.mark.parametrize("accumulate, alpha", [(1, 0.0), (2, 0.0), (2, 0.2)])
def test_two_ranks_take_the_updates_of_one_process(tmp_path, accumulate, alpha):
    """Dropout 0, 40 updates spanning epochs, a last batch of one sentence: two ranks
    end with the parameters and the loss curve of one process (float32 sums in another
    order: equal to 1e-5). accumulate 1 goes through ``rnnkit train --nproc 2``; alpha:
    subword sampling, each rank drawing the epoch's segmentation from the same seed."""
    d = dates(accumulate=accumulate)
    if alpha:
        d["data"].update(tokenizer="bpe", vocab_size=120, bpe_dropout=alpha)
    cfg_path = write_yaml(tmp_path / "cfg.yaml", d)
    one, two = tmp_path / "one", tmp_path / "two"
    train(config_from_dict(d), one)
    if accumulate == 1:
        cmd = [sys.executable, "-m", "rnnkit", "train", str(cfg_path), "--out", str(two)]
        proc = subprocess.Popen(
            [*cmd, "--nproc", "2"],
            env=job_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    else:
        proc = torchrun(cfg_path, two)
    code, err = finish(proc, two)
    assert code == 0, err[-3000:]
    assert err.count("model: gru encoder-decoder") == 1, err  # rank 0 alone speaks
    assert "x 2 processes" in err
    assert max_difference(one / "last.pt", two / "last.pt") <= 1e-5
    log1, log2 = read_log(one), read_log(two)
    assert [(r["step"], r["split"]) for r in log1] == [(r["step"], r["split"]) for r in log2]
    for r1, r2 in zip(log1, log2):
        assert float(r2["loss"]) == pytest.approx(float(r1["loss"]), rel=1e-5)
    ck1, ck2 = load_checkpoint(one / "last.pt"), load_checkpoint(two / "last.pt")
    assert ck1["progress"]["step"] == ck2["progress"]["step"] == 40
    assert (ck1["progress"]["epoch"], ck1["progress"]["pos"]) == (
        ck2["progress"]["epoch"],
        ck2["progress"]["pos"],
    )
    assert len(ck2["rng_ranks"]) == 2
    assert checkpoint_info(two / "last.pt")["training"]["processes"] == 2
    if accumulate == 1:  # resumed in one process: said, with both counts
        said: list[str] = []
        d["train"]["max_steps"] = 41
        train(config_from_dict(d), two, resume=True, log=said.append)
        assert (
            "note: last.pt was written by 2 processes, this run has 1: it goes on from there, "
            "with other dropout masks than one of 2 would draw"
        ) in said


# ---------------------------------------------------------------- resume, failure


def test_two_rank_resume_after_sigkill_equals_uninterrupted_run(tmp_path):
    """Dropout on (each rank draws its own masks): a job SIGKILLed, torchrun and both
    ranks, after its second checkpoint and resumed ends with the parameters of a job
    that never stopped (the moving average of train.ema_decay, and the weights that
    train); last.pt holds the RNG states of both ranks."""
    d = dates()
    d["model"] |= {"dropout": 0.3, "emb_dropout": 0.1}
    d["train"]["ema_decay"] = 0.9
    cfg_path = write_yaml(tmp_path / "cfg.yaml", d)
    a, b = tmp_path / "a", tmp_path / "b"
    code, err = finish(torchrun(cfg_path, a), a)
    assert code == 0, err[-3000:]

    proc = torchrun(cfg_path, b)
    deadline = time.monotonic() + JOB_TIMEOUT
    while proc.poll() is None and time.monotonic() < deadline:
        if progress_step(b / "last.pt") >= 20:
            kill_job(str(b))  # no handler runs, no final checkpoint
            break
        time.sleep(0.01)
    code, err = finish(proc, b)
    assert not job_pids(str(b))
    step = progress_step(b / "last.pt")
    if code == 0:  # finished before the kill: the resume below must be a no-op
        assert step == 40, err[-3000:]
    else:
        assert code == -signal.SIGKILL and step in (20, 30), (code, step)

    code, err = finish(torchrun(cfg_path, b, "--resume"), b)
    assert code == 0, err[-3000:]
    assert f"resumed from {b / 'last.pt'} at step {step}" in err
    assert progress_step(b / "last.pt") == 40
    assert max_difference(a / "last.pt", b / "last.pt") <= 1e-6  # the averages
    wa, wb = (torch.load(x / "last.pt", weights_only=True)["ema"]["weights"] for x in (a, b))
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa) <= 1e-6


def test_a_failing_rank_ends_the_job_with_its_error(tmp_path):
    """Rank 1 raises at update 3 (RNNKIT_FAULT, read by rnnkit.distributed) while rank 0
    waits in the all-reduce: the job exits non-zero, says why, and leaves no process."""
    cfg_path = write_yaml(tmp_path / "cfg.yaml", dates())
    out = tmp_path / "out"
    t0 = time.monotonic()
    code, err = finish(torchrun(cfg_path, out, RNNKIT_FAULT="1@3"), out)
    assert code != 0
    assert "RuntimeError: injected fault (RNNKIT_FAULT) on rank 1 at step 3" in err
    assert time.monotonic() - t0 < JOB_TIMEOUT
    time.sleep(0.2)
    assert not job_pids(str(out))


def test_more_processes_than_cores_is_noted(monkeypatch):
    """--nproc 40 (a typo) started 40 processes on a 2-core machine without a word."""
    from rnnkit.distributed import cores_note

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert cores_note("cpu", 2) is None
    assert cores_note("cpu", 3) == (
        "note: --nproc 3 on 2 CPU core(s): the processes share the cores (one thread each); "
        "at most 2 is faster"
    )


def test_a_bad_backend_is_a_one_line_error(monkeypatch):
    """RNNKIT_DIST_BACKEND names gloo or (on CUDA) nccl; anything else is refused before
    any process group is made."""
    from rnnkit.config import ConfigError
    from rnnkit.distributed import setup

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    for bad in ("mpi", "nccl"):  # nccl on the CPU
        monkeypatch.setenv("RNNKIT_DIST_BACKEND", bad)
        with pytest.raises(ConfigError, match=f"RNNKIT_DIST_BACKEND={bad}: use gloo"):
            setup("cpu")


@pytest.mark.parametrize("value", ["abc", "0", "-5", "1e30", "nan"])
def test_a_bad_timeout_is_one_line_before_any_process_starts(tmp_path, capsys, value, monkeypatch):
    """RNNKIT_DIST_TIMEOUT was read by each rank: 'abc' a traceback per rank, 0 a C++
    rendezvous error 150 lines long. Now --nproc refuses it before starting torchrun."""
    from rnnkit.cli import main

    monkeypatch.setenv("RNNKIT_DIST_TIMEOUT", value)
    cfg_path = write_yaml(tmp_path / "cfg.yaml", dates())
    assert main(["train", str(cfg_path), "--out", str(tmp_path / "o"), "--nproc", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"rnnkit: error: RNNKIT_DIST_TIMEOUT={value}: seconds, a number > 0 (default 1800)"
    ]
    monkeypatch.setenv("RNNKIT_DIST_TIMEOUT", "30")
    monkeypatch.setenv("RNNKIT_DIST_BACKEND", "mpi")
    assert main(["train", str(cfg_path), "--out", str(tmp_path / "o"), "--nproc", "2"]) == 2
    assert "RNNKIT_DIST_BACKEND=mpi: use gloo" in capsys.readouterr().err
    monkeypatch.setenv("RNNKIT_DIST_BACKEND", "nccl")  # on the CPU: it started 2 processes
    args = ["train", str(cfg_path), "--out", str(tmp_path / "o"), "--nproc", "2"]
    assert main([*args, "--set", "train.device=cpu"]) == 2
    said = "RNNKIT_DIST_BACKEND=nccl: use gloo (nccl needs CUDA; this run trains on cpu)"
    assert capsys.readouterr().err.strip() == f"rnnkit: error: {said}"
    monkeypatch.delenv("RNNKIT_DIST_BACKEND")
    args = ["train", str(cfg_path), "--out", str(tmp_path / "o"), "--nproc", "2", "--resume"]
    assert main(args) == 2
    assert f"{tmp_path / 'o' / 'last.pt'}: checkpoint not found" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_the_ranks_end_when_their_launcher_is_killed(tmp_path):
    """torchrun starts its ranks in sessions of their own: SIGKILL to `rnnkit train
    --nproc 2` (then torchrun in its place) left both training on, writing into the run
    folder. Each rank now asks Linux for SIGTERM when its launcher dies."""
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux's")
    long = dates(max_steps=100_000, max_epochs=100_000, validate_every=1000)
    cfg_path = write_yaml(tmp_path / "cfg.yaml", long)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "rnnkit", "train", str(cfg_path), "--out", str(out)]
    proc = subprocess.Popen([*cmd, "--nproc", "2"], env=job_env(TMPDIR=str(tmp_path)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    # (TMPDIR: the launcher's log folder, which a killed launcher cannot remove)
    try:
        deadline = time.monotonic() + JOB_TIMEOUT
        while progress_step(out / "last.pt") < 10:  # both ranks are training
            assert proc.poll() is None and time.monotonic() < deadline, "the job did not start"
            time.sleep(0.05)
        ranks = [p for p in job_pids(str(out)) if p != proc.pid]
        assert len(ranks) >= 2, ranks
        proc.kill()
        proc.wait(10)
        end = time.monotonic() + 20
        while job_pids(str(out)) and time.monotonic() < end:
            time.sleep(0.1)
        assert not job_pids(str(out)), "ranks outlived their launcher"
    finally:
        kill_job(str(out))
        if proc.poll() is None:
            proc.kill()


def test_a_lost_or_hung_peer_is_one_line(monkeypatch):
    from rnnkit.distributed import peer_error

    hung = RuntimeError("[../gloo/transport/tcp/unbound_buffer.cc:81] Timed out waiting 10000ms")
    lost = RuntimeError("[../gloo/transport/tcp/pair.cc:534] Connection closed by peer")
    assert peer_error(hung) is None  # one process: torch's own error stands
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert peer_error(lost) == "process 1: another process stopped (see its error)"
    said = peer_error(hung)
    assert said is not None and said.startswith("process 1: another process did not answer")
    assert peer_error(RuntimeError("shape mismatch")) is None
