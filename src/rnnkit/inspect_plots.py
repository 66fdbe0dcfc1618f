"""Figures that show what a model does (drawn by ``rnnkit inspect``, :mod:`rnnkit.inspect`).

- the attention heatmap: source × output tokens (Bahdanau et al. 2015, Fig. 3);
- gate heatmaps: for each encoder layer and direction and each decoder layer, the gates
  over time of the units that change most (LSTM forget / input / output gates and cell
  state, GRU update / reset gates and candidate), tokens on the time axis;
- gate saturation: per layer, each unit of each sigmoid gate placed by the fraction of
  steps it spends left-saturated (< 0.1) and right-saturated (> 0.9) over a corpus
  (Karpathy, Johnson & Fei-Fei 2015, arXiv 1506.02078, Fig. 3);

Figures are written with matplotlib's Agg backend (no display needed), atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from rnnkit.figures import save_figure  # noqa: E402
from rnnkit.record import Part, Recording, SatKey  # noqa: E402

__all__ = [
    "GATE_PANELS",
    "MAX_TOKENS",
    "gate_panels",
    "part_slug",
    "part_title",
    "plot_attention",
    "plot_gates",
    "plot_saturation",
    "save_figure",
    "top_units",
]

# What a gate heatmap shows, per cell kind, in this order.
GATE_PANELS: dict[str, tuple[str, ...]] = {
    "LSTM": ("forget", "input", "output", "cell"),
    "GRU": ("update", "reset", "candidate"),
    "RNN": ("hidden",),
}
# inspect draws a column per token in every figure and keeps every gate of every step:
# at 150 tokens a figure is some 7000 px wide and a CPU run takes seconds; beyond, the
# labels are unreadable, and a few thousand tokens take minutes and gigabytes.
MAX_TOKENS = 150


_WHAT = {"LSTM": "gates and cell state", "GRU": "gates and candidate", "RNN": "hidden state"}


def gate_panels(cell: str, fields: Sequence[str]) -> list[str]:
    """The traced quantities a gate figure shows, in order: the stock table for the stock
    cells and for any cell with the same gate names (the LSTM and GRU variants), else
    every declared gate but the hidden state (all of them if that is the only one)."""
    if cell in GATE_PANELS:
        return [n for n in GATE_PANELS[cell] if n in fields]
    for kind in ("LSTM", "GRU"):
        if set(GATE_PANELS[kind]) <= set(fields) and len(fields) == _FIELD_COUNT[kind]:
            return list(GATE_PANELS[kind])
    rest = [n for n in fields if n != "hidden"]
    return rest or list(fields)


_FIELD_COUNT = {"LSTM": 6, "GRU": 4}  # fields of LSTMGates / GRUGates
# name, symbol and range of each traced quantity; None: symmetric around 0, data-scaled
_GATE_INFO: dict[str, tuple[str, tuple[float, float] | None]] = {
    "input": ("input gate i", (0.0, 1.0)),
    "forget": ("forget gate f", (0.0, 1.0)),
    "output": ("output gate o", (0.0, 1.0)),
    "reset": ("reset gate r", (0.0, 1.0)),
    "update": ("update gate z", (0.0, 1.0)),
    "candidate": ("candidate", (-1.0, 1.0)),
    "cell": ("cell state c", None),
    "hidden": ("hidden state h", None),
}
_GATE_COLOURS = {
    "input": "tab:green",
    "forget": "tab:blue",
    "output": "tab:red",
    "reset": "tab:purple",
    "update": "tab:orange",
}


def _label(token: str) -> str:
    """A readable tick label: sentencepiece's ▁ shown as a visible space mark."""
    return _plain({"▁": "␣", "</s>": "</s>"}.get(token, token))


def _plain(text: str) -> str:
    """``text`` shown as typed: matplotlib reads ``$...$`` as math (a sentence with two
    dollars lost them and its spaces, and ``$^$`` did not draw at all)."""
    return text.replace("$", r"\$")


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
        ax.set_title(_plain(title), fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="attention weight α")
    return save_figure(fig, path)


def part_title(part: Part) -> str:
    """``("encoder", 0, "backward")`` → ``"encoder layer 0, backward"``."""
    name, layer, direction = part
    return f"{name} layer {layer}" + (f", {direction}" if name == "encoder" else "")


def part_slug(part: Part) -> str:
    """A file-name piece: ``encoder_l0_backward``, ``decoder_l1``."""
    name, layer, direction = part
    return f"{name}_l{layer}" + (f"_{direction}" if name == "encoder" else "")


def top_units(values: Tensor, k: int) -> Tensor:
    """Indices of the ``k`` units whose value changes most over time (largest standard
    deviation over the T steps of ``values (T, H)``), most changing first."""
    spread = values.float().std(0, unbiased=False) if values.shape[0] > 1 else values[0].abs()
    return torch.argsort(spread, descending=True, stable=True)[: min(k, values.shape[1])]


def plot_gates(rec: Recording, part: Part, path: str | Path, units: int = 16) -> Path:
    """Heatmaps of one layer's gates over the sentence: one panel per gate
    (:data:`GATE_PANELS`), rows the ``units`` units that change most in that gate,
    columns the time steps labelled with their tokens, one colour bar per panel.

    Gates in (0, 1) share the scale 0 (shut) … 1 (open); the candidate spans [-1, 1];
    cell and hidden states are scaled to their largest magnitude, blue < 0 < red.
    """
    traces = rec.gates[part]
    names = gate_panels(rec.cell, list(traces))
    tokens = rec.tokens(part)
    T = len(tokens)
    k = min(units, traces[names[0]].shape[1])
    row_h, width = max(1.9, 0.19 * k + 1.3), max(6.0, 0.3 * T + 3.0)
    bar = [1 + 0.1 / (width - 1.5), 0.0, 0.15 / (width - 1.5), 1.0]  # 0.15 in wide, full height
    fig, axes = plt.subplots(
        len(names),
        1,
        figsize=(width, row_h * len(names) + 0.6),
        squeeze=False,
        layout="constrained",
    )
    for ax, name in zip(axes[:, 0], names):
        values = traces[name]  # (T, H)
        idx = top_units(values, k)
        shown = values[:, idx].T.numpy()  # (k, T)
        label, span = _GATE_INFO.get(name, (name, None))
        if name in rec.sigmoid or span == (0.0, 1.0):  # σ gates: the cell's, whatever the name
            span = (0.0, 1.0) if name in rec.sigmoid else None
        if span is None:
            m = float(abs(shown).max()) or 1.0
            span = (-m, m)
        cmap = "viridis" if span == (0.0, 1.0) else "RdBu_r"
        im = ax.imshow(shown, cmap=cmap, vmin=span[0], vmax=span[1], aspect="auto")
        ax.set_yticks(range(len(idx)))
        ax.set_yticklabels([str(int(u)) for u in idx], fontsize=7)
        ax.set_ylabel("unit", fontsize=9)
        H = values.shape[1]
        which = f"the {len(idx)} of {H} units that vary most"
        which = f"all {H} units" if len(idx) == H else which
        which = f"the unit of {H} that varies most" if len(idx) == 1 < H else which
        ax.set_title(f"{label}: {which}, most varying on top", fontsize=9)
        ax.set_xticks(range(T))
        ax.set_xticklabels([_label(t) for t in tokens], rotation=90, fontsize=8)
        fig.colorbar(im, cax=ax.inset_axes(bar), label=label)  # (as tall as its panel)
    axes[-1, 0].set_xlabel(
        "source token read at each step"
        if part[0] == "encoder"
        else "output token written at each step"
    )
    kind = next((k for k, panels in GATE_PANELS.items() if tuple(names) == panels), None)
    what = _WHAT[kind] if kind else ", ".join(names)  # (LayerNormLSTM: an LSTM's panels)
    fig.suptitle(f"{rec.cell} {what}, {part_title(part)}", fontsize=11)
    return save_figure(fig, path)


def plot_saturation(
    fractions: dict[SatKey, tuple[Tensor, Tensor]],
    path: str | Path,
    title: str | None = None,
) -> Path:
    """Saturation scatter (Karpathy et al. 2015, Fig. 3): one panel per layer (and
    encoder direction), one dot per unit and gate at (fraction of steps < 0.1,
    fraction of steps > 0.9). Dots on the diagonal x + y = 1 are always saturated;
    dots near the origin are never.
    """
    parts = sorted({k[:3] for k in fractions}, key=lambda p: (p[0] != "encoder", p[1], p[2]))
    rows = sorted(
        {(p[0], p[2]) for p in parts}, key=lambda r: (r[0] != "encoder", r[1] != "forward")
    )
    cols = max(p[1] for p in parts) + 1
    fig, axes = plt.subplots(
        len(rows), cols, figsize=(3.6 * cols + 0.6, 3.6 * len(rows)), squeeze=False
    )
    for ax in axes.flat:
        ax.set_visible(False)
    for part in parts:
        ax = axes[rows.index((part[0], part[2])), part[1]]
        ax.set_visible(True)
        ax.plot([0, 1], [1, 0], color="0.6", linestyle="--", linewidth=0.8, zorder=0)
        for (p, layer, d, gate), (lf, rf) in fractions.items():
            if (p, layer, d) == part:
                ax.scatter(
                    lf.numpy(),
                    rf.numpy(),
                    s=12,
                    alpha=0.6,
                    color=_GATE_COLOURS.get(gate),
                    label=f"{gate} gate",
                    edgecolors="none",
                )
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_aspect("equal")
        ax.set_xlabel("fraction left-saturated (< 0.1)", fontsize=9)
        ax.set_ylabel("fraction right-saturated (> 0.9)", fontsize=9)
        ax.set_title(part_title(part), fontsize=10)
        ax.legend(fontsize=8, loc="upper right", markerscale=1.5)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return save_figure(fig, path)
