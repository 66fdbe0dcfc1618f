"""The ``rnnkit`` sub-commands: each ``cmd_NAME(args)`` calls the library and returns an
exit status; the parser and the error handling are in :mod:`rnnkit.cli`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rnnkit.checkpoint import Bundle
    from rnnkit.sampling import Sampling
    from rnnkit.search import Decoding


class UsageError(Exception):
    """A problem with the user's input, reported in one line."""


def positive_int(text: str) -> int:
    """argparse type: an integer ≥ 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer ≥ 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer ≥ 1, got {value}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite number ≥ 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number ≥ 0, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number ≥ 0, got {text}")
    return value


def read_text(path: str | None) -> list[str]:
    """Lines of a UTF-8 file (stdin when ``path`` is None or ``-``), newlines stripped."""
    name = "<stdin>" if path in (None, "-") else path
    try:
        data = sys.stdin.buffer.read() if name == "<stdin>" else Path(name).read_bytes()
    except OSError as e:
        raise UsageError(f"{name}: {e.strerror}") from None
    raw = data.split(b"\n")
    if raw and raw[-1] == b"":
        raw.pop()
    return [_decoded(b, name, n) for n, b in enumerate(raw, 1)]


def _decoded(raw: bytes, name: str, n: int) -> str:
    """Line ``n`` of ``name`` as text (its line ending stripped), or a UsageError."""
    try:
        return raw.decode("utf-8").removesuffix("\n").removesuffix("\r")
    except UnicodeDecodeError as e:
        raise UsageError(f"{name}:{n}: invalid UTF-8 (byte 0x{raw[e.start]:02x})") from None


def write_text(path: str | None, lines: Sequence[str]) -> None:
    """Write lines to ``path`` atomically, or to stdout when ``path`` is None or ``-``."""
    text = "".join(line + "\n" for line in lines)
    if path in (None, "-"):
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, out)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


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


def torchrun_command(args: argparse.Namespace) -> list[str]:
    """``rnnkit train ... --nproc N`` as the torchrun command that runs N processes."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += ["--nproc-per-node", str(args.nproc), "-m", "rnnkit", "train", args.config]
    for item in args.set:
        cmd += ["--set", item]
    if args.out:
        cmd += ["--out", args.out]
    if args.resume:
        cmd.append("--resume")
    return cmd


def cmd_train(args: argparse.Namespace) -> int:
    from rnnkit.config import load_config
    from rnnkit.train import train

    cfg = load_config(args.config, args.set)  # a bad config fails here, not in N processes
    if args.nproc > 1:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise UsageError("--nproc: already one of several processes (torchrun)")
        sys.stdout.flush()
        sys.stderr.flush()
        cmd = torchrun_command(args)
        os.execv(cmd[0], cmd)  # torchrun takes this process's place (and its signals)
    out = args.out or str(Path("runs") / Path(args.config).stem)
    result = train(
        cfg,
        out,
        resume=args.resume,
        config_dir=Path(args.config).resolve().parent,
        log=_log,
        progress=True,
    )
    return 130 if result.stopped == "interrupted" else 0


def cmd_average(args: argparse.Namespace) -> int:
    from rnnkit.checkpoint import average_checkpoints, save_checkpoint

    payload = average_checkpoints(args.checkpoints)
    save_checkpoint(args.out, payload)
    steps = ", ".join(str(s) for s in payload["averaged"])
    _log(f"averaged {len(args.checkpoints)} checkpoints (steps {steps}) into {args.out}")
    return 0


def _bundle(path: str, device: str = "auto") -> Bundle:
    """The checkpoint at ``path`` on ``device`` (``--device``: auto = a GPU when there is one)."""
    from rnnkit.checkpoint import load_bundle
    from rnnkit.train import pick_device

    return load_bundle(path, device=pick_device(device, "--device"))


def _models(paths: list[str], device: str = "auto") -> tuple[Bundle, Decoding]:
    """One checkpoint: its bundle and model; several: the first's bundle and the ensemble
    of all (they must share vocabularies and tokenizers)."""
    from rnnkit.ensemble import load_ensemble
    from rnnkit.train import pick_device

    if len(paths) == 1:
        bundle = _bundle(paths[0], device)
        return bundle, bundle.model
    bundle, ensemble = load_ensemble(paths, device=pick_device(device, "--device"))
    _log(f"ensemble of {len(paths)} models (their probabilities averaged at every step)")
    return bundle, ensemble


def add_device(parser: argparse.ArgumentParser) -> None:
    """``--device`` of the commands that load a checkpoint to translate."""
    parser.add_argument(
        "--device",
        default="auto",
        help="where the model runs: auto (a GPU when there is one), cpu, cuda, cuda:N "
        "(default: auto)",
    )


def cmd_translate(args: argparse.Namespace) -> int:
    from rnnkit.translate import as_json, translate_lines

    interactive = args.input in (None, "-") and args.output in (None, "-") and sys.stdin.isatty()
    lines = [] if interactive else read_text(args.input)
    sampling = _sampling(args)
    bundle, model = _models(args.checkpoint, args.device)
    beam = args.beam if args.beam is not None else bundle.config.decode.beam_size
    if args.n_best > max(beam, 1) and sampling is None:
        raise UsageError(f"--n-best {args.n_best} exceeds the beam size {beam}")

    def translated(lines: list[str], first: int = 0) -> list[str]:
        with sentence_bar(len(lines)) as bar:  # none for one typed line
            results = translate_lines(
                bundle,
                lines,
                args.beam,
                args.batch_size,
                args.n_best,
                args.length_penalty,
                progress=bar,
                model=model,
                sampling=sampling,
                coverage_penalty=args.coverage_penalty,
            )
        if args.json:  # one JSON object per line, as the server's entries
            return [
                json.dumps(as_json(r, alternatives=args.n_best > 1), ensure_ascii=False)
                for r in results
            ]
        if args.n_best > 1:  # Moses-style n-best: index ||| text ||| score
            return [
                f"{first + i} ||| {t.text} ||| {t.score:.4f}"
                for i, r in enumerate(results)
                for t in r
            ]
        return [r[0].text for r in results]

    if interactive:
        return _interactive(translated)
    write_text(args.output, translated(lines))
    return 0


def _sampling(args: argparse.Namespace) -> Sampling | None:
    """``--sample`` and its options as a :class:`Sampling` (None without ``--sample``)."""
    from rnnkit.sampling import Sampling

    given = [
        f"--{k.replace('_', '-')}"
        for k, default in (("temperature", 1.0), ("top_k", 0), ("top_p", 1.0), ("seed", 1))
        if getattr(args, k) != default
    ]
    if not args.sample:
        if given:
            raise UsageError(f"{given[0]} needs --sample")
        return None
    for flag in ("beam", "length_penalty", "coverage_penalty"):
        if getattr(args, flag) is not None:
            name = flag.replace("_", "-")
            raise UsageError(f"--sample draws instead of searching: leave out --{name}")
    try:
        return Sampling(args.temperature, args.top_k, args.top_p, args.seed)
    except ValueError as e:
        raise UsageError(f"--{str(e).replace('_', '-')}") from None


@contextmanager
def sentence_bar(total: int) -> Iterator[Callable[[int], None] | None]:
    """A progress callback drawing a bar of ``total`` sentences on stderr when it is a
    terminal and the work is long enough to want one (None otherwise)."""
    from rnnkit.progress import progress_bar

    bar = progress_bar(total >= 200, total, 0, unit="sent")
    if bar is None or bar.disable:
        yield None
        return
    try:
        yield bar.update
    finally:
        bar.close()


def _interactive(translated: Callable[[list[str], int], list[str]]) -> int:
    """A terminal on stdin: each line translated as soon as it is typed, until Ctrl-D
    (a line that is not UTF-8 is said so on stderr and gives an empty line)."""
    _log("rnnkit translate: type a sentence and press Enter (Ctrl-D to end)")
    n = 0
    while raw := sys.stdin.buffer.readline():
        try:
            line = _decoded(raw, "<stdin>", n + 1)
        except UsageError as e:
            _log(f"rnnkit: error: {e}")
            line = ""
        write_text(None, translated([line], n))
        n += 1
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from rnnkit.evaluate import group_by_source, score
    from rnnkit.translate import translate_lines

    src, refs = read_text(args.src), [read_text(f) for f in args.ref]
    for name, ref in zip(args.ref, refs):
        if len(src) != len(ref):
            raise UsageError(f"{args.src} has {len(src)} lines but {name} has {len(ref)}")
    line_of = list(range(len(src)))
    if args.group_sources:
        src, refs, line_of = group_by_source(src, refs)
    bundle, model = _models(args.checkpoint, args.device)
    t0 = time.perf_counter()
    with sentence_bar(len(src)) as bar:
        results = translate_lines(
            bundle,
            src,
            args.beam,
            args.batch_size,
            length_penalty=args.length_penalty,
            progress=bar,
            model=model,
            coverage_penalty=args.coverage_penalty,
        )
    hyps = [r[0].text for r in results]
    seconds = time.perf_counter() - t0  # translation alone, the model loaded
    if args.output:  # one line per input line, also when lines were grouped
        write_text(args.output, [hyps[j] for j in line_of])
    result = score(hyps, refs[0], lowercase=args.lowercase, extra_references=refs[1:])
    if args.group_sources:
        result["lines"] = len(line_of)
    if len(args.checkpoint) > 1:
        result["models"] = len(args.checkpoint)
    result["beam"] = args.beam if args.beam is not None else bundle.config.decode.beam_size
    lp = bundle.config.decode.length_penalty
    result["length_penalty"] = args.length_penalty if args.length_penalty is not None else lp
    cp = bundle.config.decode.coverage_penalty
    result["coverage_penalty"] = args.coverage_penalty if args.coverage_penalty is not None else cp
    result["translate_seconds"] = round(seconds, 3)
    print(json.dumps(result, indent=2))
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from rnnkit.scoring import score_pairs, summary

    src, tgt = read_text(args.src), read_text(args.tgt)
    if len(src) != len(tgt):
        raise UsageError(f"{args.src} has {len(src)} lines but {args.tgt} has {len(tgt)}")
    bundle, model = _models(args.checkpoint, args.device)
    with sentence_bar(len(src)) as bar:
        scores = score_pairs(bundle, src, tgt, args.batch_size, model=model, progress=bar)
    write_text(
        args.output,
        [f"{s.log_prob / s.tokens if args.normalize else s.log_prob:.4f}" for s in scores],
    )
    total = summary(scores)
    _log(
        f"scored {total['pairs']} pairs, {total['tokens']} target tokens: log-probability "
        f"{total['log_prob']:.2f}, {total['nll_per_token']:.4f} nats per token, "
        f"perplexity {total['perplexity']:.2f}"
    )
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from rnnkit.inspect import run_inspect

    corpus = read_text(args.corpus) if args.corpus else None
    result = run_inspect(
        args.checkpoint, args.sentence, args.out, corpus=corpus, top_units=args.units, log=_log
    )
    print(f"translation: {result.translation}")
    for f in result.files:
        print(f"wrote {f}")
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    from rnnkit.experiments import EXPERIMENTS, run_experiment, update_results

    if args.name not in EXPERIMENTS:
        raise UsageError(f"unknown experiment {args.name!r} (known: {', '.join(EXPERIMENTS)})")
    out = Path(args.out or Path("runs") / "experiments" / args.name)
    report = run_experiment(args.name, out, quick=args.quick, log=_log, data_dir=args.data_dir)
    results = args.results or (out / "RESULTS.md" if args.quick else Path("docs") / "RESULTS.md")
    update_results(results, args.name, report.markdown)
    print(report.markdown)
    print(f"\nsection '{args.name}' of {results} regenerated; figures in {out}")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from rnnkit.data import fetch_multi30k, fetch_tatoeba

    if args.corpus == "tatoeba":
        files = fetch_tatoeba(args.out, from_path=args.from_dir)
    else:
        files = fetch_multi30k(args.out, from_dir=args.from_dir)
    for f in files:
        _log(f"wrote {f}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import runpy

    script = Path(__file__).resolve().parents[2] / "bench" / "layers.py"
    if not script.is_file():
        raise UsageError(f"{script}: benchmark script not found (run from a source checkout)")
    sys.argv = [str(script)] + (["--quick"] if args.quick else [])
    runpy.run_path(str(script), run_name="__main__")
    return 0
