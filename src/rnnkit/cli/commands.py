"""The ``rnnkit`` sub-commands: each ``cmd_NAME(args)`` calls the library and returns an
exit status; the parser and the error handling are in :mod:`rnnkit.cli`, the commands
that decode (translate, evaluate, score) in :mod:`rnnkit.cli.decode`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from rnnkit.atomic import check_writable
from rnnkit.cli.text import UsageError as UsageError  # (importable from here, as before)
from rnnkit.cli.text import read_text as read_text
from rnnkit.cli.text import text_chunks as text_chunks
from rnnkit.cli.text import write_text as write_text
from rnnkit.job import rank_and_world
from rnnkit.runlock import refuse_if_busy, run_files

if TYPE_CHECKING:
    from rnnkit.checkpoint import Bundle


def positive_int(text: str) -> int:
    """argparse type: an integer from 1 to 2**31 - 1 (10^20 overflowed in torch)."""
    return _int_from(text, 1)


def non_negative_int(text: str) -> int:
    """argparse type: an integer from 0 to 2**31 - 1."""
    return _int_from(text, 0)


def positive_ints(text: str) -> list[int]:
    """argparse type: comma-separated integers from 1 (``50,64,512``)."""
    try:
        return [positive_int(v.strip()) for v in text.split(",")]
    except argparse.ArgumentTypeError as e:
        raise argparse.ArgumentTypeError(f"{e} (in {text!r})") from None


def _int_from(text: str, low: int) -> int:
    """argparse type: an integer from ``low`` to 2**31 - 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer ≥ {low}, got {text!r}") from None
    if not low <= value <= 2**31 - 1:
        raise argparse.ArgumentTypeError(
            f"expected an integer from {low} to 2147483647, got {value}"
        )
    return value


def _finite_float(text: str, zero: bool) -> float:
    """argparse type: a finite number > 0 (≥ 0 when ``zero``)."""
    wanted = "≥ 0" if zero else "> 0"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number {wanted}, got {text!r}") from None
    if not (0 <= value if zero else 0 < value) or not value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number {wanted}, got {text}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    return _finite_float(text, zero=False)


def non_negative_float(text: str) -> float:
    """argparse type: a finite number ≥ 0."""
    return _finite_float(text, zero=True)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class _TrainLog:
    """train's lines, on stderr. A stderr that takes no more (its pipe's reader gone:
    ``2>&1 | head``, a ``| tee`` stopped by the same Ctrl-C; a closed terminal) stops the
    run as Ctrl-C does, saving ``last.pt`` (so ``--resume`` continues), with status 141,
    a writer's that SIGPIPE stopped; nothing more is said. (The BrokenPipeError ended the
    run where it was, exit 0, with the steps since the last checkpoint lost; one while
    saving an interrupted run's last.pt stopped the save.)"""

    def __init__(self) -> None:
        self.lost = False  # stderr takes no more lines
        self.stopped_run = False  # ... and that stopped the run

    def __call__(self, msg: str) -> None:
        if self.lost:
            return
        try:
            print(msg, file=sys.stderr, flush=True)
        except (OSError, ValueError):
            self.lost = True
            if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # (ignored: saving)
                self.stopped_run = True
                raise KeyboardInterrupt from None


# ------------------------------------------------------------------------- commands


def cmd_demo(args: argparse.Namespace) -> int:
    from rnnkit.demo import run_demo

    result = run_demo(args.out, max_minutes=args.minutes, log=_log, progress=True)
    print()
    for src, hyp in result.examples:
        print(f"  {src:30} → {hyp}")
    print(f"accuracy: {result.accuracy:.3f}")
    print(f"attention heatmap: {result.heatmap}")
    print(f"checkpoint: {result.checkpoint}")
    return 0


def train_arguments(args: argparse.Namespace) -> list[str]:
    """The arguments of ``rnnkit train`` that each of ``--nproc N``'s processes gets."""
    cmd = [args.config]
    for item in args.set:
        cmd += ["--set", item]
    if args.out:
        cmd += ["--out", args.out]
    if args.resume:
        cmd.append("--resume")
    if args.overwrite:  # (process 0 removes the old run once the new one has started)
        cmd.append("--overwrite")
    return cmd


def _check_out(out: Path, resume: bool, overwrite: bool) -> None:
    """``--out`` of ``rnnkit train``: a folder (or a new one) that holds no other run,
    unless ``--overwrite``, whose run's files ``train`` removes once the new run has
    passed its checks and data work (a failed start left the folder without them)."""
    if resume and overwrite:
        raise UsageError("--resume continues the run in --out, --overwrite replaces it: not both")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: is a file, not a folder")
    first = rank_and_world()[0] == 0
    if first:
        refuse_if_busy(out)  # (a --resume or --overwrite of a run that trains now too)
    held = run_files(out)  # (kept steps alone are a run's too)
    if first and resume and not (out / "last.pt").is_file():
        there = (
            "there is no such folder: nothing to resume; without --resume a run starts"
            if not out.is_dir()
            # (a run of several processes stopped before its first checkpoint)
            else "its run stopped before its first: nothing to resume; --overwrite starts again"
            if held
            else "no run saved one there: nothing to resume; without --resume a run starts"
        )
        raise UsageError(f"{out / 'last.pt'}: checkpoint not found ({there})")
    if resume or not held:
        return
    if not overwrite:
        steps = [f.name for f in held if f.name.startswith("step-")]
        names = [f.name for f in held if not f.name.startswith("step-")] + steps[:1]
        resumable = "--resume continues it, " if (out / "last.pt").is_file() else ""
        raise UsageError(
            f"--out {out}: holds a run already ({', '.join(names)}); {resumable}"
            "--overwrite starts again in its place, or give another --out"
        )


def cmd_train(args: argparse.Namespace) -> int:
    from rnnkit.config import load_config
    from rnnkit.corpus_checks import check_corpora
    from rnnkit.train import train

    rank_and_world()  # torchrun's variables, read as setup will read them
    cfg = load_config(args.config, args.set)  # a bad config fails here, not in N processes
    source = " ".join([args.config, *(f"--set {o}" for o in args.set or [])])  # as config's
    check_corpora(cfg, Path(args.config).resolve().parent, source)  # not in N processes
    out = args.out or str(Path("runs") / Path(args.config).stem)
    _check_out(Path(out), args.resume, args.overwrite)
    if args.nproc > 1:
        if rank_and_world()[1] > 1:
            raise UsageError("--nproc: already one of several processes (torchrun)")
        from rnnkit.distributed import check_environment, cores_note

        check_environment(cfg.train.device, args.nproc)  # here, not once in each process
        if note := cores_note(cfg.train.device, args.nproc):
            print(note, file=sys.stderr)
        from rnnkit.launcher import launch

        sys.stdout.flush()
        sys.stderr.flush()
        return launch(train_arguments(args), args.nproc)
    terminated: list[int] = []
    log = _TrainLog()
    try:
        # SIGTERM (SLURM preemption, docker stop, systemd, timeout) stops one process as
        # Ctrl-C does, saving last.pt (it ended the run at once, the steps since lost);
        # status 143. Under torchrun the launcher stops every process.
        with as_ctrl_c(signal.SIGTERM, terminated, rank_and_world()[1] == 1):
            result = train(
                cfg,
                out,
                resume=args.resume,
                config_dir=Path(args.config).resolve().parent,
                log=log,
                progress=True,
                overwrite=args.overwrite,
            )
    except KeyboardInterrupt:
        if log.stopped_run:
            return 141
        if not terminated:
            raise
        print("rnnkit: terminated", file=sys.stderr)  # (before training had started)
        return 143
    if result.stopped != "interrupted":
        return 0
    return 141 if log.stopped_run else 143 if terminated else 130


@contextlib.contextmanager
def as_ctrl_c(signum: int, seen: list[int], when: bool = True) -> Iterator[None]:
    """Inside, signal ``signum`` raises KeyboardInterrupt as Ctrl-C does, and is noted in
    ``seen`` (``when`` it applies, in the main thread; elsewhere a no-op). The handler
    before is put back unless the block set one of its own."""
    if not when or threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(got: int, frame: object) -> None:
        seen.append(got)
        raise KeyboardInterrupt

    before = signal.signal(signum, interrupt)
    try:
        yield
    finally:
        if signal.getsignal(signum) is interrupt:
            signal.signal(signum, before)


def cmd_average(args: argparse.Namespace) -> int:
    from rnnkit.checkpoint import save_checkpoint
    from rnnkit.runs import average_checkpoints

    check_writable(args.out)
    out = os.path.realpath(args.out)  # (Path.resolve raised on a symlink loop: a traceback)
    if any(os.path.realpath(c) == out for c in args.checkpoints):  # (it was replaced, rc 0)
        raise UsageError(f"--out {args.out}: is one of the checkpoints averaged; give another")
    payload = average_checkpoints(args.checkpoints)
    save_checkpoint(args.out, payload)
    steps = payload["averaged"]  # an averaged input counts as the checkpoints it averages
    n = f"{len(steps)} checkpoint" + "s" * (len(steps) != 1)
    which = "steps " * (len(steps) != 1) or "step "
    _log(f"averaged {n} ({which}{', '.join(map(str, steps))}) into {args.out}")
    return 0


def _bundle(path: str, device: str = "auto") -> Bundle:
    """The checkpoint at ``path`` on ``device`` (``--device``: auto = a GPU when there is one)."""
    from rnnkit.checkpoint import load_bundle
    from rnnkit.train import pick_device

    return load_bundle(path, device=pick_device(device, "--device"))


def add_device(parser: argparse.ArgumentParser) -> None:
    """``--device`` of the commands that load a checkpoint to translate."""
    parser.add_argument(
        "--device",
        default="auto",
        help="where the model runs: auto (a CUDA GPU when there is one, else cpu), cpu, "
        "cuda, cuda:N, mps (default: auto)",
    )


def cmd_info(args: argparse.Namespace) -> int:
    if args.embeddings:
        from rnnkit.checkpoint import load_bundle
        from rnnkit.pretrained import vector_lines

        b = load_bundle(args.checkpoint, device="cpu")
        src = args.embeddings == "src"
        embed = (b.model.encoder if src else b.model.decoder).embed.weight
        write_text(None, vector_lines(embed, b.src_vocab if src else b.tgt_vocab))
        return 0
    if args.config:
        from rnnkit.about import rerunnable_config
        from rnnkit.checkpoint import CheckpointError, load_checkpoint
        from rnnkit.config_checks import dump_yaml

        try:
            config = rerunnable_config(load_checkpoint(args.checkpoint))
        except CheckpointError as e:
            raise CheckpointError(f"{args.checkpoint}: {e}") from None
        print(dump_yaml(config), end="")
        return 0
    from rnnkit.about import checkpoint_info

    print(json.dumps(checkpoint_info(args.checkpoint), indent=2))
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from rnnkit.inspect import run_inspect

    corpus = read_text(args.corpus) if args.corpus else None
    # the sentence as UTF-8, as the text of files and stdin is read (where Python decodes
    # the command line in ASCII, its letters arrived as surrogates that matplotlib refused)
    sentence = os.fsencode(args.sentence).decode("utf-8", "replace")
    result = run_inspect(
        args.checkpoint, sentence, args.out, corpus=corpus, top_units=args.units,
        log=_log, beam=args.beam,
    )  # fmt: skip
    print(f"translation: {result.translation}")
    for f in result.files:
        print(f"wrote {f}")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from rnnkit.data import fetch_multi30k, fetch_tatoeba

    # a source given with --from replaces what an earlier run left; a download keeps
    # the files already there that read well (no need to fetch them again)
    overwrite = args.from_dir is not None
    if args.corpus == "tatoeba":
        fetch_tatoeba(args.out, from_path=args.from_dir, overwrite=overwrite, log=_log)
    else:
        fetch_multi30k(args.out, from_dir=args.from_dir, overwrite=overwrite, log=_log)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import runpy

    beside = Path(__file__).resolve().parents[3] / "bench" / "layers.py"  # (src/rnnkit/cli/)
    here = Path("bench") / "layers.py"  # (an installed package lies in site-packages)
    script = next((p for p in (beside, here) if p.is_file()), None)
    if script is None:
        raise UsageError(
            "bench/layers.py is part of the source checkout, not of the installed package: "
            "run rnnkit bench in the checkout's folder (or python bench/layers.py there)"
        )
    sys.argv = [str(script)] + (["--quick"] if args.quick else [])
    runpy.run_path(str(script), run_name="__main__")
    return 0


def out_of_memory(e: BaseException) -> str:
    """One line for an allocation that failed (torch's own message is a C++ assertion)."""
    wanted = re.search(r"allocate (\d+) bytes|Tried to allocate ([\d.]+ \w+)", str(e))
    size = ""
    if wanted:
        size = f" ({int(wanted[1]) / 2**30:.1f} GiB)" if wanted[1] else f" ({wanted[2]})"
    return (f"out of memory: an allocation{size} failed; try a smaller model (model.hidden_size, "
            "emb_size, enc_layers, dec_layers), train.batch_tokens / batch_size, or when "
            "translating --batch-size / --beam, and for a very long input line a shorter "
            "output bound (--max-len-a / --max-len-b) or the line split")  # fmt: skip


_PIP_NAMES = {"yaml": "pyyaml", "prometheus_client": "prometheus-client"}  # import → pip


def missing_package(e: ModuleNotFoundError, command: str) -> str | None:
    """One line for a dependency that is not installed (None for a module of rnnkit's)."""
    top = (e.name or "").split(".")[0]
    if not top or top == "rnnkit":
        return None
    package = _PIP_NAMES.get(top, top)
    return (
        f"{command} needs the Python package {package}, which is not installed "
        f"(pip install {package})"
    )
