"""What every experiment shares: its report, the machine line, and RESULTS.md sections."""

from __future__ import annotations

import os
import platform
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

import torch

from rnnkit.atomic import write_atomically

if TYPE_CHECKING:
    from rnnkit.config import Config
    from rnnkit.position import TrainResult

__all__ = [
    "QUICK_NOTE",
    "QUICK_VERDICT",
    "Report",
    "duration",
    "verdict_heading",
    "machine",
    "markdown_table",
    "place_figures",
    "train_whole",
    "update_results",
]


# what a --quick run says of itself and of its verdict: its tiny budget tests the code
QUICK_NOTE = "**Quick version**: tiny models, data and budget; the numbers only test the code."
QUICK_VERDICT = "(of a --quick run: its tiny models, data and budget test the code, not the claim)"


def verdict_heading(quick: bool) -> str:
    """``**Verdict.**``, or for a --quick run one that says what its verdict is worth."""
    return f"**Verdict** {QUICK_VERDICT}." if quick else "**Verdict.**"


def duration(seconds: float) -> str:
    """``42 s`` under two minutes, else ``3.1 min``."""
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


@dataclass
class Report:
    """One experiment's outcome.

    ``markdown`` is the body of its RESULTS.md section (tables, figure links, the
    verdict); ``figures`` are the files it wrote; ``rows`` the table as dicts.
    """

    name: str
    markdown: str
    rows: list[dict] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    seconds: float = 0.0


def machine() -> str:
    """One line naming the machine the numbers come from."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    n = torch.get_num_threads()
    return (
        f"{cpu}, {os.cpu_count()} cores, {n} torch thread{'s' * (n != 1)}, {dev}; "
        f"torch {torch.__version__}, Python {platform.python_version()}; "
        f"{time.strftime('%Y-%m-%d')}"
    )


def markdown_table(rows: list[dict], columns: list[str] | None = None) -> str:
    """Rows of dicts as a Markdown table (floats with 4 significant digits)."""
    if not rows:
        return ""
    cols = columns or list(rows[0])
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def update_results(path: str | Path, name: str, markdown: str) -> Path:
    """Replace the section of experiment ``name`` in ``path`` (created if missing).

    A section lies between ``<!-- experiment:NAME begin -->`` and
    ``<!-- experiment:NAME end -->``; a missing one is appended. Written atomically.
    """
    path = Path(path)
    begin, end = f"<!-- experiment:{name} begin -->", f"<!-- experiment:{name} end -->"
    block = f"{begin}\n{markdown.strip()}\n{end}"
    text = path.read_text(encoding="utf-8") if path.exists() else "# Results\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _m: block, text)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    write_atomically(path, lambda f: f.write(text))
    return path


def place_figures(report: Report, results: str | Path) -> str:
    """``report.markdown`` with its figure links (the figures' file names) made to work
    from the results page at ``results``: figures already beside it (``--quick``'s page
    lies in its output folder) are linked by name; others are copied into the page's
    ``figures/`` folder (``docs/figures/`` for ``docs/RESULTS.md``), each atomically, and
    linked there, so that a regenerated section never shows an earlier run's figures."""
    md, home = report.markdown, Path(results).resolve().parent
    for figure in report.figures:
        if figure.resolve().parent == home:
            continue
        target = home / "figures" / figure.name
        write_atomically(target, _copier(figure), binary=True)
        md = md.replace(f"]({figure.name})", f"](figures/{figure.name})")
    return md


def _copier(source: Path) -> Callable[[IO[bytes]], None]:
    def copy(f: IO[bytes]) -> None:
        with source.open("rb") as src:
            shutil.copyfileobj(src, f)

    return copy


def train_whole(cfg: Config, run_dir: Path, log: Callable[[str], None]) -> TrainResult:
    """:func:`rnnkit.train.train` for an experiment: a Ctrl-C that stopped the run stops the
    experiment (KeyboardInterrupt), which went on with the next model and compared a run
    cut short with whole ones."""
    from rnnkit.train import train

    result = train(cfg, run_dir, log=log, progress=False)
    if result.stopped == "interrupted":
        raise KeyboardInterrupt
    return result
