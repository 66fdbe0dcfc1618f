"""``rnnkit experiment NAME``: its run, and the checks of what it writes and reads made
before it (a full run takes up to an hour)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rnnkit.atomic import OutputError, check_writable
from rnnkit.cli.commands import _log
from rnnkit.cli.text import UsageError

__all__ = ["cmd_experiment"]


def cmd_experiment(args: argparse.Namespace) -> int:
    from rnnkit.experiments import EXPERIMENTS, place_figures, run_experiment, update_results

    if args.name not in EXPERIMENTS:
        raise UsageError(f"unknown experiment {args.name!r} (known: {', '.join(EXPERIMENTS)})")
    out = Path(args.out or Path("runs") / "experiments" / args.name)
    results = args.results or (out / "RESULTS.md" if args.quick else Path("docs") / "RESULTS.md")
    if args.results or not args.quick:  # (--quick's own lies in --out, checked by the run)
        _check_results(Path(results), out)  # before the run, whose report it receives
    if args.data_dir is not None:
        _check_data_dir(args.name, Path(args.data_dir))
    report = run_experiment(args.name, out, quick=args.quick, log=_log, data_dir=args.data_dir)
    markdown = place_figures(report, results)  # its figures where the page links them
    update_results(results, args.name, markdown)
    print(markdown)
    print(f"\nsection '{args.name}' of {results} regenerated; figures in {out}")
    return 0


def _check_results(path: Path, out: Path) -> None:
    """``--results``: a file that can be written and, when it is there, read as UTF-8
    (its other sections are kept), and the ``figures/`` folder beside it that receives
    the figures when they are not there already; each was checked after the whole run."""
    check_writable(path)
    figures = path.parent / "figures"
    if path.resolve().parent != out.resolve():  # (else place_figures links them in place)
        try:
            check_writable(figures / "figure.png")
        except OutputError as e:
            raise UsageError(f"--results {path}: its figures go into {figures}/: {e}") from None
    if path.exists():
        try:
            path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"--results {path}: not UTF-8 text") from None
        except OSError as e:
            raise UsageError(f"--results {path}: cannot be read ({e.strerror})") from None


def _check_data_dir(name: str, data_dir: Path) -> None:
    """``--data-dir``: a folder, holding Multi30k when the experiment reads it (given
    and without it, the experiment skipped its Multi30k part and said so in the section
    it wrote over the published one)."""
    from rnnkit.experiments import USES_MULTI30K
    from rnnkit.experiments.attention_length import multi30k_dir, multi30k_gaps

    if not data_dir.is_dir():
        raise UsageError(f"--data-dir {data_dir}: not a folder")
    folder = multi30k_dir(data_dir)
    if name in USES_MULTI30K and (gaps := multi30k_gaps(folder)):
        raise UsageError(
            f"--data-dir {data_dir}: Multi30k not found in {folder} (missing "
            f"{', '.join(gaps)}): rnnkit data multi30k --out DIR/multi30k fetches it"
        )
