"""Figures that show what a model does: attention heatmaps (Bahdanau et al. 2015, Fig. 3).

Figures are written with matplotlib's Agg backend (no display needed), atomically.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from torch import Tensor  # noqa: E402

__all__ = ["plot_attention", "save_figure"]


def save_figure(fig: plt.Figure, path: str | Path, dpi: int = 150) -> Path:
    """Save ``fig`` to ``path`` atomically (temp file, then rename) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        Path(tmp).unlink(missing_ok=True)
    return path


def _label(token: str) -> str:
    """A readable tick label: sentencepiece's ▁ shown as a visible space mark."""
    return {"▁": "␣", "</s>": "</s>"}.get(token, token)


def plot_attention(
    src_tokens: Sequence[str],
    out_tokens: Sequence[str],
    weights: Tensor,
    path: str | Path,
    title: str | None = None,
) -> Path:
    """Heatmap of α: one row per output token, one column per source token.

    Args:
        src_tokens: the S tokens the encoder read (EOS included).
        out_tokens: the T tokens the decoder wrote.
        weights: α ``(T, S)``; each row sums to 1.
        path: where to write the PNG.
    """
    w = weights.detach().float().cpu().numpy()
    T, S = w.shape
    if (T, S) != (len(out_tokens), len(src_tokens)):
        raise ValueError(
            f"attention is {T}×{S} but there are {len(out_tokens)} output and "
            f"{len(src_tokens)} source tokens"
        )
    fig, ax = plt.subplots(figsize=(max(4.0, 0.32 * S + 2), max(3.0, 0.32 * T + 1.5)))
    im = ax.imshow(w, cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(S))
    ax.set_xticklabels([_label(t) for t in src_tokens], rotation=90, fontsize=9)
    ax.set_yticks(range(T))
    ax.set_yticklabels([_label(t) for t in out_tokens], fontsize=9)
    ax.set_xlabel("source tokens")
    ax.set_ylabel("output tokens")
    if title:
        ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="attention weight α")
    return save_figure(fig, path)
