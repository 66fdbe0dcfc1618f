"""Experiment ``attention-cost``: what attention costs per decoder step and per sentence.

At decoder step t Bahdanau attention scores the state against every encoder state
(Bahdanau et al. 2015, arXiv 1409.0473)::

    e_tj = v^T tanh(W s_{t-1} + U h_j)      j = 1..S
    α_tj = softmax_j(e_tj),   c_t = Σ_j α_tj h_j

so one step costs a + b·S (the recurrent cell and the output layer, a, do not depend
on S), and a sentence of T steps costs T·(a + b·S): S·T, that is S² when T grows with S.
The decoder without attention (Cho et al. 2014) reads a fixed summary C of the
source, so its step cost is flat in S. It must also keep h_1..h_S and U h_1..U h_S for
the whole sentence, where the plain decoder keeps C alone.

Measured here on untrained models of the same sizes, on the CPU, single-threaded:
(a) the median time of one ``decode_step``, (b) the time of a whole sentence (encode,
then T = S greedy steps with no early stop), (c) the bytes attention holds (from the
tensors' sizes) and the peak tensor bytes allocated during one step (torch profiler).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from rnnkit.experiments.attention_cost_measure import (
    FULL_S,
    QUICK_S,
    SIZES,
    STYLES,
    MiB,
    _extra_ms,
    build_model,
    fit,
    growth,
    held_bytes,
    measure,
    step_peak_bytes,
)
from rnnkit.experiments.common import Report, machine, markdown_table, verdict_heading

__all__ = [
    "FULL_S",
    "MiB",
    "NAME",
    "QUICK_S",
    "SIZES",
    "STYLES",
    "build_model",
    "fit",
    "growth",
    "held_bytes",
    "measure",
    "plot_memory",
    "plot_time",
    "run",
    "step_peak_bytes",
    "verdict",
]

NAME = "attention-cost"


COLORS = {"bahdanau": "tab:red", "none": "tab:blue"}
LABELS = {"bahdanau": "Bahdanau attention", "none": "no attention"}


# (the model is the full one here: a quick run measures fewer lengths, fewer times)
QUICK_COST_NOTE = (
    "**Quick version**: the full model at fewer source lengths, fewer repeats; the numbers "
    "only test the code."
)


def _by_style(rows: list[dict]) -> dict[str, list[dict]]:
    return {
        s: sorted((r for r in rows if r["attention"] == s), key=lambda r: r["S"]) for s in STYLES
    }


def plot_time(rows: list[dict], fits: dict, path: Path) -> Path:
    """Per-step time against S with the fitted lines; per-sentence time, log-log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rnnkit.figures import save_figure

    by = _by_style(rows)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    for s in STYLES:
        S = np.array([r["S"] for r in by[s]], dtype=float)
        f = fits[s]
        ax1.plot(S, [r["step ms"] for r in by[s]], "o", color=COLORS[s], label=LABELS[s])
        fitted = (f["a_us"] + f["b_us"] * S) / 1e3
        text = f"fit a + b·S: b = {f['b_us']:.2f} µs/token, R² = {f['r2_step']:.3f}"
        ax1.plot(S, fitted, "-", color=COLORS[s], alpha=0.6, label=text)
        text = f"{LABELS[s]} (log-log slope {f['loglog']:.2f} overall)"
        ax2.loglog(S, [r["sentence ms"] for r in by[s]], "o-", color=COLORS[s], label=text)
    extra = [(S, e) for S, e in _extra_ms(rows) if e > 0]
    if extra:
        slope = fits["bahdanau"]["extra_loglog"]
        text = f"extra time of attention (slope {slope:.2f} at the two largest S)"
        ax2.loglog(*zip(*extra), "^-", color="tab:purple", label=text)
    S = np.array([r["S"] for r in by["bahdanau"]], dtype=float)
    t0 = by["bahdanau"][0]["sentence ms"]
    for k, ls in ((1, ":"), (2, "--")):
        ax2.loglog(S, t0 * (S / S[0]) ** k, ls, color="gray", label=f"slope {k} (∝ S{'¹²'[k - 1]})")
    ax1.set(
        xlabel="source length S (tokens)",
        ylabel="CPU time of one decoder step (ms)",
        title=f"Per decoder step (batch {SIZES['batch']})",
        ylim=(0, None),
    )
    ax2.set(
        xlabel="source length S = output length T (log scale)",
        ylabel="CPU time per batch of sentences (ms, log scale)",
        title=f"Per batch of {SIZES['batch']} sentences: encode + T = S greedy steps",
    )
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def plot_memory(rows: list[dict], path: Path) -> Path:
    """Bytes held for the sentence (analytic) and peak bytes of one step (profiler)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rnnkit.figures import save_figure

    by = _by_style(rows)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for s in STYLES:
        S = [r["S"] for r in by[s]]
        held = [r["held MiB"] for r in by[s]]
        peak = [r["step peak MiB"] for r in by[s]]
        ax.plot(S, held, "o-", color=COLORS[s], label=f"{LABELS[s]}: held for the sentence")
        ax.plot(S, peak, "s--", color=COLORS[s], label=f"{LABELS[s]}: peak within one step")
    ax.set(
        xlabel="source length S (tokens)",
        ylabel=f"MiB (batch of {SIZES['batch']})",
        title="Memory that decoding needs",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def verdict(rows: list[dict], fits: dict) -> str:
    """The conclusion, in words, from the measured numbers."""
    att, none = fits["bahdanau"], fits["none"]
    S = sorted({r["S"] for r in rows})
    linear = att["b_us"] > 0 and att["r2_step"] >= 0.9
    flat = abs(none["step_ratio"] - 1.0) < 0.25
    step = (
        f"Per step, attention's time {'grows linearly' if linear else 'does not grow clearly'} "
        "in S: "
        f"{att['b_us']:.2f} µs per source token on top of {att['a_us'] / 1e3:.2f} ms "
        f"(R² = {att['r2_step']:.3f}); from S = {S[0]} to S = {S[-1]} a step becomes "
        f"{att['step_ratio']:.1f}× slower. Without attention the step is "
        + ("flat" if flat else "not flat")
        + f" ({none['step_ratio']:.2f}× over the same range, b = {none['b_us']:.2f} µs/token)."
    )
    agrees = att["q_us"] > 0 and abs(att["q_us"] / att["b_us"] - 1) < 0.5 if linear else False
    sent = (
        f" Per sentence with T = S, attention's time fits p·S + q·S² with "
        f"q = {att['q_us']:.2f} µs per S·T (R² = {att['r2_sent']:.3f}); the per-step slope "
        f"predicts q = b = {att['b_us']:.2f}"
        + (", which it matches" if agrees else ", which it does not match")
        + f". Between S = {S[-2]} and {S[-1]}, the extra time attention adds to a sentence "
        f"grows with log-log slope {att['extra_loglog']:.2f} (2 is S·T = S²), the whole "
        f"sentence's time with slope {att['loglog_last']:.2f} against "
        f"{none['loglog_last']:.2f} without attention; the S² term is "
        f"{100 * att['quad_share']:.0f}% of the time at S = {S[-1]}"
    )
    if att["extra_loglog"] > 1.7 and att["quad_share"] >= 0.5:
        sent += (
            ": the cost per sentence is quadratic in S when T grows with S, while the "
            "decoder without attention stays linear."
        )
    elif att["extra_loglog"] > 1.7:
        sent += (
            ": attention's own cost is quadratic, but at these lengths the per-step "
            "constant (cell and output layer) still carries most of the time."
        )
    else:
        sent += ": the quadratic growth does not show clearly at these lengths."
    big = [r for r in rows if r["S"] == S[-1]]
    held = {r["attention"]: r["held MiB"] for r in big}
    mem = (
        f" Memory: attention holds {held['bahdanau'] / S[-1] * 1024:.0f} KiB per source "
        f"token for a batch of {SIZES['batch']} ({held['bahdanau']:.1f} MiB at S = {S[-1]}), "
        f"exactly linear in S; the plain decoder holds {held['none'] * 1024:.0f} KiB whatever S."
    )
    return step + sent + mem


def run(
    out_dir: Path, quick: bool, log: Callable[[str], None], data_dir: Path | None = None
) -> Report:
    """Measure, fit, plot; return the RESULTS.md section."""
    return _run(out_dir, quick, log)


def _run(out_dir: Path, quick: bool, log: Callable[[str], None]) -> Report:
    start, cpu0 = time.perf_counter(), time.process_time()
    lengths = QUICK_S if quick else FULL_S
    step_repeats, sent_repeats = (15, 1) if quick else (50, 3)
    models = {s: build_model(s) for s in STYLES}
    params = {s: sum(p.numel() for p in m.parameters()) for s, m in models.items()}
    rows = []
    for S in lengths:
        rows += measure(S, models, step_repeats, sent_repeats)
        att, none = rows[-2], rows[-1]
        log(
            f"S={S}: step {att['step ms']:.2f} / {none['step ms']:.2f} ms, sentence "
            f"{att['sentence ms']:.0f} / {none['sentence ms']:.0f} ms (attention / none)"
        )
    fits = growth(rows)
    figures = [
        plot_time(rows, fits, out_dir / "attention_cost_time.png"),
        plot_memory(rows, out_dir / "attention_cost_memory.png"),
    ]
    table = markdown_table(rows)
    log(table)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu0
    command = "rnnkit experiment attention-cost" + (" --quick" if quick else "")
    fit_rows = [
        {
            "attention": s,
            "step a (ms)": f["a_us"] / 1e3,
            "step b (µs/token)": f["b_us"],
            "R² step": f["r2_step"],
            "sentence q (µs/(S·T))": f["q_us"],
            "R² sentence": f["r2_sent"],
            "log-log slope": f["loglog"],
        }
        for s, f in fits.items()
    ]
    V, E, H, B = (SIZES[k] for k in ("vocab", "emb", "hidden", "batch"))
    runs = f"{sent_repeats} run" + "s" * (sent_repeats != 1)
    md = f"""## Attention cost: time and memory against source length

The cost of attention as sources grow, measured: Bahdanau attention against
the same encoder-decoder without attention (GRU, bidirectional encoder, embeddings {E},
hidden {H}, vocabulary {V}; {params["bahdanau"]:,} and {params["none"]:,} parameters;
untrained, eval mode, batch {B}), for source lengths S = {", ".join(map(str, lengths))}.
*step ms*: median of {step_repeats} `decode_step` calls (with the output projection);
*sentence ms*: median of {runs} over a batch of {B} sentences (encode, then T = S greedy
steps, no early stop). Times are the CPU time of the one thread that does all the work (one torch
thread), which does not count the time spent waiting for a core on this shared
machine; the *wall* columns are the wall-clock medians of the same calls. The fits use
the CPU times. *held MiB*: what the decoder keeps for the sentence, from the tensors' sizes (with
attention h (B, S, 2H) + U h (B, S, H) + mask; without, C (B, 2H)); *step peak MiB*:
peak tensor bytes allocated during one step (torch profiler). Single-threaded.

Regenerate: `{command}` ({seconds:.0f} s wall time, {cpu:.0f} s CPU time, single-threaded).
Machine: {machine()}.{" " + QUICK_COST_NOTE if quick else ""}

{table}

Fitted growth (step: t = a + b·S; sentence: t = p·S + q·S²):

{markdown_table(fit_rows)}

![time per step and per sentence]({figures[0].name})
![memory]({figures[1].name})

{verdict_heading(quick)} {verdict(rows, fits)}
"""
    return Report(NAME, md, rows=rows, figures=figures, seconds=seconds)
