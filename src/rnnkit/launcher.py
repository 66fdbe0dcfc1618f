"""``rnnkit train ... --nproc N``: torchrun's engine run in this process.

The processes are started by torch.distributed's elastic agent, the one ``torchrun
--standalone --nproc-per-node N`` runs, with the same environment (``RANK``,
``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` / ``PORT``; ``OMP_NUM_THREADS=1``
unless set), but in this process rather than in torchrun's, so that what the job
says and how it ends are rnnkit's:

- process 0 writes to this terminal (its progress, its lines, its errors); the
  others' stderr goes to a temporary file, said here only if one of them fails first
  (so an error all processes meet is said once, not N times); a process that sees
  another stop says nothing (:func:`first_failure` says which one stopped, and why);
- the exit status is the first failed process's (2 for a bad input, 1 for an error,
  128 + the signal's number for one killed by a signal), 130 after Ctrl-C, 143 after
  SIGTERM, with one line of ours at most and no traceback;
- torchrun's own report and log lines are not printed.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from rnnkit.distributed import LAUNCHED_ENV


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _said_by(log_dir: Path, local_rank: int) -> str:
    """What process ``local_rank`` wrote to its stderr (its file under ``log_dir``)."""
    for path in log_dir.glob(f"*/attempt_*/{local_rank}/stderr.log"):
        return path.read_text(encoding="utf-8", errors="replace").strip()
    return ""


def _quiet_torchrun() -> None:
    """torchrun's log lines ("Sending process ... closing signal", "failed (exitcode: 1)
    ...") are not printed: what went wrong is said by the process or by us."""
    for name in ("torch.distributed.elastic", "torch.distributed.launcher"):
        logger = logging.getLogger(name)
        logger.addHandler(logging.NullHandler())
        logger.propagate = False  # (torch's own handler sits on the "torch" logger)


def first_failure(failures: dict[int, Any]) -> tuple[int, Any]:
    """The failure to report of the processes that failed (``ProcessFailure`` by global
    rank). Process 0 when it exited on an error of its own: it has said it on the
    terminal (another process that meets the same error waits before it exits:
    :data:`rnnkit.cli.errors.OTHER_RANK_WAIT`). Else the first one seen (torch's
    timestamps are whole seconds: on a tie, the first in ``failures``, which torch fills
    as its polls see them, the agent's SIGTERMs to the others after), one that exited
    before one killed by a signal, leaving out the SIGTERMs of the agent stopping the
    others when there is another failure. (A process that sees another stop waits 2 s
    before it exits: :data:`rnnkit.distributed.PEER_LOST_WAIT`.)"""
    if 0 in failures and failures[0].exitcode > 0:
        return 0, failures[0]
    stopped = {r: f for r, f in failures.items() if f.exitcode != -signal.SIGTERM}
    pool = stopped or failures
    # (min keeps the first of equals: the lowest rank had won every tie, so a SIGTERM
    # sent to process 1 was said to have killed process 0, which the agent stopped)
    return min(pool.items(), key=lambda kv: (kv[1].timestamp, kv[1].exitcode < 0))


def failure_report(rank: int, nproc: int, exitcode: int, said: str) -> tuple[str, int]:
    """What to print (may be empty) and the status to exit with, for the process that
    failed first: ``exitcode`` is negative for a signal; ``said`` is its stderr, if it
    went to a file (process 0's went to the terminal, so it is said already)."""
    if exitcode < 0:
        line = f"rnnkit: error: process {rank} of {nproc} was killed by {_signal_name(-exitcode)}"
        return "\n".join(s for s in (said, line) if s), 128 - exitcode
    if said:
        return said, exitcode
    if rank == 0:  # its error is on the terminal above
        return "", exitcode
    return f"rnnkit: error: process {rank} of {nproc} ended with status {exitcode}", exitcode


def launch(train_args: list[str], nproc: int) -> int:
    """Run ``python -m rnnkit train *train_args`` in ``nproc`` processes (as ``torchrun
    --standalone --nproc-per-node nproc`` would) and return the job's exit status."""
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, SignalException, Std
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    _quiet_torchrun()
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # as torchrun does for N > 1
    os.environ[LAUNCHED_ENV] = "1"  # a process that sees another stop leaves it to us
    with tempfile.TemporaryDirectory(prefix="rnnkit-nproc-") as tmp:
        log_dir = Path(tmp)
        logs = DefaultLogsSpecs(log_dir=tmp, redirects={k: Std.ERR for k in range(1, nproc)})
        config = LaunchConfig(
            min_nodes=1,
            max_nodes=1,
            nproc_per_node=nproc,
            run_id=str(uuid.uuid4()),
            rdzv_backend="c10d",
            rdzv_endpoint="localhost:0",
            max_restarts=0,
            monitor_interval=0.1,
            logs_specs=logs,
        )
        try:
            elastic_launch(config, sys.executable)("-m", "rnnkit", "train", *train_args)
        except ChildFailedError as e:
            rank, failure = first_failure(e.failures)
            said = _said_by(log_dir, failure.local_rank) if failure.local_rank else ""
            text, status = failure_report(rank, nproc, failure.exitcode, said)
            if text:
                print(text, file=sys.stderr)
            return status
        except SignalException as e:
            if e.sigval != signal.SIGINT:
                print(f"rnnkit: stopped by {_signal_name(e.sigval)}", file=sys.stderr)
            return 128 + int(e.sigval)
    return 0
