"""Reading the numbers of ``attention-length``: slopes, verdicts, figure and tables.

Each model's score against the mean source length of each bucket, fitted by a
count-weighted least-squares slope; the verdict that compares the two slopes; the
figure of Bahdanau et al. (2015, Fig. 2); the Markdown tables of the report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rnnkit.experiments.common import markdown_table

MODELS = {"bahdanau": "attention (Bahdanau)", "none": "no attention (Cho)"}
UNITS = {"dates": ("characters", 100), "multi30k": ("words", 10)}  # slope per this many


def slope(rows: list[dict[str, Any]], metric: str, per: float) -> float:
    """Count-weighted least-squares slope of ``metric`` against bucket mean length, per
    ``per`` length units (0 for a single bucket)."""
    w = [r["count"] for r in rows]
    x = [r["mean_len"] for r in rows]
    y = [r[metric] for r in rows]
    n = sum(w)
    mx, my = sum(a * b for a, b in zip(w, x)) / n, sum(a * b for a, b in zip(w, y)) / n
    sxx = sum(a * (b - mx) ** 2 for a, b in zip(w, x))
    sxy = sum(a * (b - mx) * (c - my) for a, b, c in zip(w, x, y))
    return per * sxy / sxx if sxx > 0 else 0.0


def verdict(task: str, rows: list[dict[str, Any]], metric: str, margin: float = 0.5) -> str:
    """Whether the model without attention loses more with length, from the table.

    A model degrades when its slope (score per length unit, on a 0-100 scale) is below
    ``-margin``; it degrades more than the other when its slope is also lower by more
    than ``margin``, and lower relative to its own mean score too."""
    unit, per = UNITS[task]
    name = "exact match %" if metric == "exact" else "BLEU"
    parts, fit = [], {}
    for attention, label in MODELS.items():
        mine = [{**r, "y": (100 if metric == "exact" else 1) * r[metric]} for r in rows
                if r["model"] == label]  # fmt: skip
        b = slope(mine, "y", per)
        mean = sum(r["y"] * r["count"] for r in mine) / sum(r["count"] for r in mine)
        fit[attention] = (b, b / mean if mean > 0 else 0.0, mean)
        parts.append(
            f"{label}: {mine[0]['y']:.1f} ({mine[0]['bucket']} {unit}) → {mine[-1]['y']:.1f} "
            f"({mine[-1]['bucket']}), mean {mean:.1f}, slope {b:+.2f} per {per} {unit} "
            f"({fit[attention][1]:+.0%} of its mean)"
        )
    (ba, ra, ma), (bn, rn, mn) = fit["bahdanau"], fit["none"]
    if max(ma, mn) < 1.0:
        answer = "Inconclusive: neither model learnt the task within the budget."
    elif bn < -margin and bn < ba - margin and rn < ra:
        answer = "Yes: the model without attention degrades more as the source grows."
    elif ba < -margin and ba < bn - margin and ra < rn:
        answer = "No: here the attention model degrades more as the source grows."
    elif min(ba, bn) >= -margin:
        answer = "No: neither model's score falls as the source grows."
    else:
        answer = "No clear difference: both models lose about alike as the source grows."
    if mn < 0.5 * ma:
        answer += (
            f" Without attention the model is far behind at every length (mean {mn:.1f} vs "
            f"{ma:.1f}): the gap is not a matter of length."
        )
    return f"{answer} {name} by source length — " + "; ".join(parts) + "."


def plot(parts: dict[str, list[dict[str, Any]]], path: Path) -> Path:
    """Score against source length, one line per model (Bahdanau et al. 2015, Fig. 2)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rnnkit.figures import save_figure

    fig, axes = plt.subplots(1, len(parts), figsize=(6.2 * len(parts), 4.4), squeeze=False)
    for ax, (task, rows) in zip(axes[0], parts.items()):
        metric = "exact" if task == "dates" else "bleu"
        for label, style in zip(MODELS.values(), ("o-", "s--")):
            mine = [r for r in rows if r["model"] == label]
            y = [100 * r[metric] if metric == "exact" else r[metric] for r in mine]
            ax.plot(range(len(mine)), y, style, label=label, linewidth=2, markersize=6)
        first = [r for r in rows if r["model"] == MODELS["bahdanau"]]
        ax.set_xticks(range(len(first)))
        ax.set_xticklabels([f"{r['bucket']}\nn={r['count']}" for r in first], fontsize=8)
        unit = UNITS[task][0]
        title = "dates of every length, test set" if task == "dates" else "Multi30k de→en, test2016"
        ax.set_title(title)
        ax.set_xlabel(f"source length ({unit}; n = sentences in the bucket)")
        ax.set_ylabel("exact match (%)" if metric == "exact" else "BLEU (greedy)")
        ax.set_ylim(bottom=0, top=105 if metric == "exact" else None)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Score against source length, with and without attention")
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)


def _bucket_table(rows: list[dict[str, Any]], exact: bool) -> str:
    att, none = MODELS["bahdanau"], MODELS["none"]
    table = []
    for r in (r for r in rows if r["model"] == att):
        other = next(o for o in rows if o["model"] == none and o["bucket"] == r["bucket"])
        line: dict[str, Any] = {"source length": r["bucket"], "sentences": r["count"]}
        if exact:
            line["exact % attention"] = 100 * r["exact"]
            line["exact % no attention"] = 100 * other["exact"]
        line["BLEU attention"] = r["bleu"]
        line["BLEU no attention"] = other["bleu"]
        table.append(line)
    return markdown_table(table)


def _summary_table(summary: list[dict[str, Any]]) -> str:
    keys = ["model", "parameters", "steps", "stopped", "train_min", "test_bleu"]
    rows = []
    for s in summary:
        row = {k: s[k] for k in keys}
        if "test_exact" in s:
            row["test exact %"] = 100 * s["test_exact"]
        rows.append(row)
    return markdown_table(rows)
