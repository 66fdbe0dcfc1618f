"""What every experiment shares: its report, the machine line, and RESULTS.md sections."""

from __future__ import annotations

import os
import platform
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from rnnkit.atomic import write_atomically

__all__ = ["Report", "machine", "markdown_table", "update_results"]


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
    return (
        f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, {dev}; "
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
