"""Figures written to files: saved atomically, and what their font cannot draw said once
by the caller rather than warned about glyph by glyph."""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rnnkit.atomic import write_atomically  # noqa: E402

__all__ = ["save_figure", "undrawable"]


def save_figure(fig: plt.Figure, path: str | Path, dpi: int = 150) -> Path:
    """Save ``fig`` to ``path`` atomically (:mod:`rnnkit.atomic`; the format from the
    suffix) and close it. A character the font lacks is drawn as a box without
    matplotlib's warning per glyph (see :func:`undrawable`)."""
    path = Path(path)
    kind = path.suffix.lstrip(".") or "png"
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from")
            write_atomically(
                path,
                lambda f: fig.savefig(f, format=kind, dpi=dpi, bbox_inches="tight"),
                binary=True,
            )
    finally:
        plt.close(fig)
    return path


def undrawable(text: str) -> list[str]:
    """The characters of ``text`` that the figures' font has no glyph for (CJK in
    DejaVu Sans, matplotlib's font), in order of first appearance."""
    from matplotlib import font_manager, ft2font

    font = font_manager.findfont(font_manager.FontProperties())
    has = ft2font.FT2Font(font).get_charmap()
    return list(dict.fromkeys(c for c in text if not c.isspace() and ord(c) not in has))
