"""Figures that show what a model does, and ``rnnkit inspect``.

- the attention heatmap: source × output tokens (Bahdanau et al. 2015, Fig. 3);
- gate heatmaps: for each encoder layer and direction and each decoder layer, the gates
  over time of the units that change most (LSTM forget / input / output gates and cell
  state, GRU update / reset gates and candidate), tokens on the time axis;
- gate saturation: per layer, each unit of each sigmoid gate placed by the fraction of
  steps it spends left-saturated (< 0.1) and right-saturated (> 0.9) over a corpus
  (Karpathy, Johnson & Fei-Fei 2015, arXiv 1506.02078, Fig. 3);
- :func:`run_inspect` writes all of them and a self-contained HTML page
  (:mod:`rnnkit.inspect_html`).

Figures are written with matplotlib's Agg backend (no display needed), atomically.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from rnnkit.figures import save_figure, undrawable  # noqa: E402
from rnnkit.record import Part, Recording, SatKey  # noqa: E402

__all__ = [
    "GATE_PANELS",
    "MAX_TOKENS",
    "gate_panels",
    "InspectResult",
    "plot_attention",
    "plot_gates",
    "plot_saturation",
    "run_inspect",
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


@dataclass
class InspectResult:
    """What :func:`run_inspect` produced."""

    translation: str
    files: list[Path]
    recording: Recording
    saturation: dict[SatKey, tuple[Tensor, Tensor]] | None = None


def run_inspect(
    checkpoint: str | Path,
    sentence: str,
    out_dir: str | Path,
    corpus: Sequence[str] | None = None,
    top_units: int = 16,
    log: Callable[[str], None] | None = None,
    device: str = "cpu",
    beam: int | None = None,
) -> InspectResult:
    """``rnnkit inspect``: record one sentence and write its figures and HTML page.

    Writes to ``out_dir``: ``attention.png`` (models with attention),
    ``gates_<part>.png`` per encoder layer and direction and per decoder layer,
    ``saturation.png`` when a ``corpus`` is given (models with sigmoid gates), and
    ``inspect.html``, which embeds all of them and the recorded numbers.

    Args:
        checkpoint: a checkpoint written by ``rnnkit train``.
        sentence: raw source text.
        corpus: source lines for the gate saturation statistics.
        top_units: units shown per gate panel (those that change most).
        log: receives progress lines.
        beam: the translation recorded is the one ``translate`` gives with this beam
            size (default: the checkpoint's ``decode.beam_size``): greedy search's for
            1, else beam search's best, which the decoder then reads.
    Raises:
        CheckpointError: the checkpoint is missing or unreadable.
        DataError: an empty sentence or corpus, a sentence of more than
            :data:`MAX_TOKENS` source tokens, ``top_units`` < 1, or an ``out_dir`` that
            cannot be a folder. The output is cut at :data:`MAX_TOKENS` tokens too.
    """
    from rnnkit.atomic import check_folder, make_folder, together
    from rnnkit.checkpoint import load_bundle
    from rnnkit.data import DataError
    from rnnkit.inspect_html import write_html
    from rnnkit.record import max_output_len, record_translation, source_ids

    say = log or (lambda _msg: None)
    if top_units < 1:
        raise DataError(f"inspect: the number of units shown must be at least 1, got {top_units}")
    if not sentence.strip():
        raise DataError("inspect: the sentence is empty")
    if corpus is not None and not any(line.strip() for line in corpus):
        raise DataError("inspect: the corpus has no non-empty line")
    out = Path(out_dir)
    check_folder(out, "inspect: ")
    bundle = load_bundle(checkpoint, device=device, engine="explicit")
    n_src = len(source_ids(bundle, sentence)[1])  # </s> included
    if n_src - 1 > MAX_TOKENS:
        raise DataError(
            f"inspect: the sentence has {n_src - 1} source tokens; at most {MAX_TOKENS} are "
            "allowed, as inspect draws every token in its figures"
        )
    k = bundle.config.decode.beam_size if beam is None else beam  # as translate decodes
    if k > len(bundle.tgt_vocab):
        raise DataError(
            f"inspect: --beam {k} exceeds the target vocabulary ({len(bundle.tgt_vocab)})"
        )
    make_folder(out, "inspect: ")
    limit = min(max_output_len(bundle, n_src), MAX_TOKENS)
    rec = record_translation(bundle, sentence, k, max_len=limit)
    if len(rec.out_tokens) == MAX_TOKENS and rec.out_tokens[-1] != "</s>":
        say(f"note: the output is cut at {MAX_TOKENS} tokens (inspect draws every token)")
    if boxes := undrawable(sentence + rec.translation):
        say(f"note: the figures' font has no glyph for {' '.join(boxes[:12])}: boxes there "
            "(inspect.html shows the text)")  # fmt: skip
    with together():  # all of the figures and the page, or (a full disk) none of them
        figures, sat = _draw(rec, bundle, sentence, out, corpus, top_units, say)
        page = write_html(rec, out / "inspect.html", figures, sat, sentence=sentence)
    files = [*figures.values(), page]
    _remove_stale(out, files)
    return InspectResult(rec.translation, files, rec, sat)


def _draw(
    rec: Recording,
    bundle: Any,
    sentence: str,
    out: Path,
    corpus: Sequence[str] | None,
    top_units: int,
    say: Callable[[str], None],
) -> tuple[dict[str, Path], dict[SatKey, tuple[Tensor, Tensor]] | None]:
    """The figures of :func:`run_inspect` by name, and the saturation statistics."""
    from rnnkit.record import saturation

    figures: dict[str, Path] = {}
    if rec.attention is not None:
        figures["attention"] = plot_attention(
            rec.src_tokens,
            rec.out_tokens,
            rec.attention,
            out / "attention.png",
            title=f"attention: {_clip(sentence.strip())} → {_clip(rec.translation)}",
        )
    for part in rec.gates:
        figures[part_slug(part)] = plot_gates(
            rec, part, out / f"gates_{part_slug(part)}.png", top_units
        )
    sat = None
    if corpus is not None:
        n = sum(1 for line in corpus if line.strip())
        say(f"gate saturation over {n} sentences")
        sat = saturation(bundle, corpus)
        if sat:
            figures["saturation"] = plot_saturation(
                sat, out / "saturation.png", f"{rec.cell} gate saturation over {n} sentences"
            )
        elif rec.cell == "RNN":
            say("note: a vanilla RNN has no sigmoid gates; no saturation plot")
        else:
            say(
                f"note: {rec.cell} has no gate named as a sigmoid gate is (input, forget, "
                "output, reset, update) and declares none (its Cell class's sigmoid); "
                "no saturation plot"
            )
    return figures, sat


def _clip(text: str, n: int = 60) -> str:
    """``text`` cut to ``n`` characters, with an ellipsis when it was cut."""
    return text if len(text) <= n else text[: n - 1] + "…"


def _remove_stale(out: Path, written: list[Path]) -> None:
    """The figures an earlier inspect left in ``out`` that this one did not draw (another
    model's attention.png beside a model without attention, gates of other layers): they
    would pass for this sentence's. Only inspect's own names are touched."""
    for path in [out / "attention.png", out / "saturation.png", *out.glob("gates_*.png")]:
        if path not in written and path.is_file():
            path.unlink()
