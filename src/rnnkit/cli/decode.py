"""The ``rnnkit`` sub-commands that decode with a trained model: ``translate``, ``evaluate``
and ``score`` (one checkpoint or an ensemble); the others are in :mod:`rnnkit.cli.commands`.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from rnnkit.cli.commands import _bundle, _log
from rnnkit.cli.text import (
    UsageError,
    check_output,
    decoded_line,
    is_stream,
    line_count,
    read_text,
    text_chunks,
    write_text,
)

if TYPE_CHECKING:
    from rnnkit.checkpoint import Bundle
    from rnnkit.ensemble import Ensemble
    from rnnkit.sampling import Sampling
    from rnnkit.translate import Translation


def _models(paths: list[str], device: str = "auto") -> tuple[Bundle, Ensemble | None]:
    """One checkpoint: its bundle and None; several: the first's bundle and the ensemble
    of all (they must share vocabularies and tokenizers). The second is what the
    ``model=`` of :func:`rnnkit.translate.translate_lines` takes (None: the bundle's)."""
    from rnnkit.ensemble import load_ensemble
    from rnnkit.train import pick_device

    if len(paths) == 1:
        return _bundle(paths[0], device), None
    bundle, ensemble = load_ensemble(paths, device=pick_device(device, "--device"))
    _log(f"ensemble of {len(paths)} models (their probabilities averaged at every step)")
    return bundle, ensemble


SCORING_NOTE_LINES = 10_000  # evaluate says it is scoring from here on (seconds of work)


def cmd_translate(args: argparse.Namespace) -> int:
    from rnnkit.translate import CHUNK, translate_stream

    stdin = args.input in (None, "-")
    interactive = stdin and args.output in (None, "-") and bool(sys.stdin and sys.stdin.isatty())
    check_output(args.output, {"checkpoint": args.checkpoint, "--input": [args.input or "-"]})
    total: int | None = None  # lines: a file is read once before the work (its errors, its bar)
    if not interactive and not is_stream(args.input):  # (a pipe is read once, as it comes)
        total = line_count(args.input)
    sampling = _sampling(args)
    bundle, model = _models(args.checkpoint, args.device)
    bundle = _with_limits(bundle, args)
    beam = args.beam if args.beam is not None else bundle.config.decode.beam_size
    if args.n_best > max(beam, 1) and sampling is None:
        raise UsageError(f"--n-best {args.n_best} exceeds the beam size {beam}")
    device = next((model or bundle.model).parameters()).device
    generator = None if sampling is None else sampling.generator(device)  # one stream for all

    def translated(
        chunks: Iterable[list[str]],
        total: int | None,
        first: int = 0,
        emit: Callable[[list[str]], None] | None = None,
    ) -> list[str]:
        """The output lines of ``chunks`` (``total`` lines, None: not known); with
        ``emit``, each chunk's go there as it is done."""
        out: list[str] = []
        with sentence_bar(total) as bar:  # none for one typed line
            done_chunks = translate_stream(
                bundle,
                chunks,
                **_search_options(args, bundle),
                n_best=args.n_best,
                progress=bar,
                model=model,
                sampling=sampling,
                generator=generator,
            )
            for results in done_chunks:  # only the text of a chunk is kept
                done = _formatted(results, args, first)
                first += len(results)
                if emit is None:
                    out.extend(done)
                else:
                    emit(done)
        return out

    if interactive:
        return _interactive(translated)
    ended: list[bool] = []  # stdin's chunks end also where it pauses (a program waits)
    chunks = text_chunks(args.input, CHUNK, arrived=True, on_end=lambda: ended.append(True))
    if total is None:  # stdin: all of it when it ends with the first chunk, else not known
        head = next(chunks, [])
        chunks, total = itertools.chain([head], chunks), len(head) if ended else None
    if args.output in (None, "-"):  # a pipe reads each chunk as it is done (and keeps it)
        translated(chunks, total, emit=lambda done: write_text(None, done))
    else:  # a file is replaced whole, or not at all (Ctrl-C keeps the old one)
        write_text(args.output, translated(chunks, total))
    return 0


def _with_limits(bundle: Bundle, args: argparse.Namespace) -> Bundle:
    """``bundle`` with ``--max-len-a`` / ``--max-len-b`` in its decode settings."""
    from rnnkit.translate import decode_limits

    try:
        decode = decode_limits(bundle.config.decode, args.max_len_a, args.max_len_b)
    except ValueError:  # (argparse took each one's type and range: both 0 is what is left)
        raise UsageError("--max-len-a and --max-len-b: the output limit A·|x| + B is 0") from None
    return dataclasses.replace(bundle, config=dataclasses.replace(bundle.config, decode=decode))


def _search_options(args: argparse.Namespace, bundle: Bundle) -> dict[str, Any]:
    """The options translate and evaluate share, as ``translate_lines`` takes them;
    those the model cannot have are a UsageError."""
    from rnnkit.translate import beam_too_wide

    beam, wide = args.beam or bundle.config.decode.beam_size, beam_too_wide(bundle, args.beam)
    if wide and not getattr(args, "sample", False):  # (--beam 100000: 14 GB)
        raise UsageError(wide)
    if bundle.config.model.attention == "none":  # nothing attended to copy or to cover
        if args.replace_unk:
            raise UsageError("--replace-unk: the model has no attention to copy from")
        cover = args.coverage_penalty
        if cover is None:
            cover = bundle.config.decode.coverage_penalty
        if cover and beam > 1:
            raise UsageError("--coverage-penalty: the model has no attention to measure")
    return {
        "beam_size": args.beam,
        "batch_size": args.batch_size,
        "length_penalty": args.length_penalty,
        "coverage_penalty": args.coverage_penalty,
        "replace_unk": args.replace_unk,
    }


def _formatted(results: list[list[Translation]], args: argparse.Namespace, first: int) -> list[str]:
    """What ``rnnkit translate`` writes for ``results`` (of lines ``first``, ``first`` + 1, ...)."""
    from rnnkit.translate import as_json

    if args.json:  # one JSON object per line, as the server's entries
        return [
            json.dumps(as_json(r, alternatives=args.n_best > 1), ensure_ascii=False)
            for r in results
        ]
    if args.n_best > 1:  # Moses-style n-best: index ||| text ||| score
        return [
            f"{first + i} ||| {t.text} ||| {t.score:.4f}" for i, r in enumerate(results) for t in r
        ]
    return [r[0].text for r in results]


def _sampling(args: argparse.Namespace) -> Sampling | None:
    """``--sample`` and its options as a :class:`Sampling` (None without ``--sample``)."""
    from rnnkit.sampling import Sampling

    defaults: dict[str, Any] = {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "seed": 1}
    given = [f"--{k.replace('_', '-')}" for k in defaults if getattr(args, k) is not None]
    if not args.sample:  # (an option given at its default value too: it does nothing)
        if given:
            raise UsageError(f"{given[0]} needs --sample")
        return None
    for flag in ("beam", "length_penalty", "coverage_penalty"):
        if getattr(args, flag) is not None:
            name = flag.replace("_", "-")
            raise UsageError(f"--sample draws instead of searching: leave out --{name}")
    try:
        return Sampling(**{k: d if getattr(args, k) is None else getattr(args, k)
                           for k, d in defaults.items()})  # fmt: skip
    except ValueError as e:
        raise UsageError(f"--{str(e).replace('_', '-')}") from None


@contextmanager
def sentence_bar(total: int | None) -> Iterator[Callable[[int], None] | None]:
    """A progress callback drawing a bar of ``total`` sentences (None: an unknown number,
    more than a chunk) on stderr when it is a terminal and the work is long enough to
    want one (None otherwise)."""
    from rnnkit.progress import progress_bar

    bar = progress_bar(total is None or total >= 200, total, 0, unit="sent")
    if bar is None or bar.disable:
        yield None
        return
    try:
        yield bar.update
    finally:
        bar.close()


def _interactive(translated: Callable[[list[list[str]], int, int], list[str]]) -> int:
    """A terminal on stdin: each line translated as soon as it is typed, until Ctrl-D
    (a line that is not UTF-8 is said so on stderr and gives an empty line)."""
    _log("rnnkit translate: type a sentence and press Enter (Ctrl-D to end)")
    n = 0
    while raw := sys.stdin.buffer.readline():
        try:
            line = decoded_line(raw, "<stdin>", n + 1)
        except UsageError as e:
            _log(f"rnnkit: error: {e}")
            line = ""
        write_text(None, translated([[line]], 1, n))
        n += 1
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from rnnkit.evaluate import bucket_scores, group_by_source, score
    from rnnkit.translate import CHUNK, translate_chunks

    check_output(
        args.output, {"checkpoint": args.checkpoint, "--src": [args.src], "--ref": args.ref}
    )
    src = read_text(args.src, need_lines=True)  # nothing to score is an error
    refs = [read_text(f, need_lines=True) for f in args.ref]
    for name, ref in zip(args.ref, refs):
        if len(src) != len(ref):
            raise UsageError(f"{args.src} has {len(src)} lines but {name} has {len(ref)}")
    line_of = list(range(len(src)))
    if args.group_sources:
        src, refs, line_of = group_by_source(src, refs)
    bundle, model = _models(args.checkpoint, args.device)
    bundle = _with_limits(bundle, args)
    t0 = time.perf_counter()
    hyps: list[str] = []
    with sentence_bar(len(src)) as bar:
        for results in translate_chunks(
            bundle, src, CHUNK, **_search_options(args, bundle), progress=bar, model=model
        ):
            hyps.extend(r[0].text for r in results)  # only the text of a chunk is kept
    seconds = time.perf_counter() - t0  # translation alone, the model loaded
    if args.output:  # one line per input line, also when lines were grouped
        write_text(args.output, [hyps[j] for j in line_of])
    if len(hyps) >= SCORING_NOTE_LINES:  # sacreBLEU's BLEU and chrF take a while there
        _log(f"scoring {len(hyps)} lines (BLEU, chrF{', by length' if args.by_length else ''})")
    result = score(hyps, refs[0], lowercase=args.lowercase, extra_references=refs[1:])
    if args.group_sources:
        result["lines"] = len(line_of)
    if args.by_length:  # BLEU per source length in words (Bahdanau et al. 2015, Fig. 2)
        result["by_length"] = bucket_scores(
            src, hyps, refs[0], lowercase=args.lowercase, extra_references=refs[1:]
        )
    if len(args.checkpoint) > 1:
        result["models"] = len(args.checkpoint)
    result["beam"] = args.beam if args.beam is not None else bundle.config.decode.beam_size
    lp = bundle.config.decode.length_penalty
    result["length_penalty"] = args.length_penalty if args.length_penalty is not None else lp
    cp = bundle.config.decode.coverage_penalty
    result["coverage_penalty"] = args.coverage_penalty if args.coverage_penalty is not None else cp
    result["max_len_a"] = bundle.config.decode.max_len_a
    result["max_len_b"] = bundle.config.decode.max_len_b
    if args.replace_unk:
        result["replace_unk"] = True
    result["translate_seconds"] = round(seconds, 3)
    print(json.dumps(result, indent=2))
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from rnnkit.scoring import score_pairs, totals
    from rnnkit.translate import CHUNK

    check_output(
        args.output, {"checkpoint": args.checkpoint, "--src": [args.src], "--tgt": [args.tgt]}
    )
    total = _same_lengths(args.src, args.tgt)  # files: read once before the work
    bundle, model = _models(args.checkpoint, args.device)
    kept: list[str] = []  # for an --output file, written whole at the end
    pairs, tokens, log_prob = 0, 0, 0.0
    with sentence_bar(total) as bar:
        for src, tgt in _pair_chunks(args.src, args.tgt, CHUNK):
            scores = score_pairs(bundle, src, tgt, args.batch_size, model=model, progress=bar)
            lines = [
                f"{s.log_prob / s.tokens if args.normalize else s.log_prob:.4f}" for s in scores
            ]
            if args.output in (None, "-"):  # a pipe reads each chunk as it is done
                write_text(None, lines)
            else:
                kept.extend(lines)
            pairs += len(scores)
            tokens += sum(s.tokens for s in scores)
            log_prob += sum(s.log_prob for s in scores)
    if pairs == 0:  # (stdin or a pipe: known only now)
        raise UsageError(
            f"{'<stdin>' if '-' in (args.src, args.tgt) else args.src}: no pairs to score"
        )
    if args.output not in (None, "-"):
        write_text(args.output, kept)
    t = totals(pairs, tokens, log_prob)
    _log(
        f"scored {t['pairs']} pairs, {t['tokens']} target tokens: log-probability "
        f"{t['log_prob']:.2f}, {t['nll_per_token']:.4f} nats per token, "
        f"perplexity {t['perplexity']:.2f}"
    )
    return 0


def _same_lengths(src: str, tgt: str) -> int | None:
    """The number of pairs when both are files (read once: their errors come before any
    work), a UsageError when they differ; None when one is stdin (checked as it is read)."""
    if src == tgt == "-":
        raise UsageError("--src and --tgt cannot both be stdin (-)")
    if is_stream(src) or is_stream(tgt):  # (a pipe is read once, as it comes)
        return None
    n_src, n_tgt = line_count(src), line_count(tgt)
    if n_src != n_tgt:
        raise UsageError(f"{src} has {n_src} lines but {tgt} has {n_tgt}")
    if n_src == 0:  # (as evaluate: nothing to score is an error, not a perplexity of 1)
        raise UsageError(f"{src}: file is empty")
    return n_src


def _pair_chunks(src: str, tgt: str, size: int) -> Iterator[tuple[list[str], list[str]]]:
    """The lines of ``src`` and ``tgt``, ``size`` pairs at a time, read as they are asked
    for; a UsageError when one ends first (stdin's length is not known before)."""
    for a, b in itertools.zip_longest(text_chunks(src, size), text_chunks(tgt, size)):
        if a is None or b is None or len(a) != len(b):
            short, other = (src, tgt) if len(a or []) < len(b or []) else (tgt, src)
            name = {"-": "<stdin>"}
            raise UsageError(
                f"{name.get(short, short)} has fewer lines than {name.get(other, other)}"
            )
        yield a, b
