"""Reading the numbers of ``lstm-vs-gru``: learning curves, comparisons, verdicts, figure.

The dev rows and training speed of a run's ``log.csv``; the two cells compared at the
same number of steps and the same training time; test-score differences with their
paired bootstrap intervals (Koehn 2004); the sentences, figure and tables of the report.
"""

from __future__ import annotations

import csv
import statistics
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch
from sacrebleu.metrics import BLEU

from rnnkit.experiments.common import markdown_table

CELLS = ("lstm", "gru")


def learning_curve(log_csv: Path) -> tuple[list[dict[str, float]], dict[str, float]]:
    """The dev rows of a ``log.csv`` with ``train_s`` (seconds spent training), and the
    median target tokens/s and steps/s of the log intervals without a validation.

    A validation runs right after the log row of its step, so the log interval that
    follows it also holds its time; that excess over the median interval is taken out
    of every later row, so that ``train_s`` counts training steps only.
    """
    with open(log_csv, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    dev = [r for r in rows if r["split"] == "dev"]
    validated = {int(r["step"]) for r in dev}
    plain: list[tuple[int, int, float, float]] = []  # (from step, to step, s, tokens/s)
    after: list[tuple[int, int, float, float]] = []  # the same, a validation included
    prev_step, prev_t = 0, 0.0
    for r in (r for r in rows if r["split"] == "train"):
        step, t = int(r["step"]), float(r["elapsed_s"])
        span = (prev_step, step, t - prev_t, float(r["tokens_per_s"]))
        (after if prev_step in validated else plain).append(span)
        prev_step, prev_t = step, t
    plain = plain or after or [(0, 1, 0.0, 0.0)]
    per_step = statistics.median(d / (b - a) for a, b, d, _ in plain)
    cost = {a: max(0.0, d - per_step * (b - a)) for a, b, d, _ in after}
    curve = [
        {"step": int(r["step"]), "bleu": float(r["bleu"]),
         "train_s": float(r["elapsed_s"]) - sum(c for a, c in cost.items() if a < int(r["step"]))}
        for r in dev
    ]  # fmt: skip
    speed = {
        "tokens_per_s": statistics.median(tok for *_, tok in plain),
        "steps_per_s": 1 / per_step if per_step else 0.0,
    }
    return curve, speed


def at_time(curve: list[dict[str, float]], seconds: float) -> dict[str, float]:
    """The last dev row reached within ``seconds`` of training (the first if none)."""
    done = [r for r in curve if r["train_s"] <= seconds + 1e-6]
    return done[-1] if done else curve[0]


def compare(res: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Dev BLEU of both cells at the last step both reached and at the training time the
    faster-finishing one took; the GRU/LSTM ratio of recurrent weights."""
    lstm, gru = res["lstm"]["curve"], res["gru"]["curve"]
    common = sorted({r["step"] for r in lstm} & {r["step"] for r in gru})
    step = common[-1] if common else min(lstm[-1]["step"], gru[-1]["step"])
    seconds = min(lstm[-1]["train_s"], gru[-1]["train_s"])
    out: dict[str, Any] = {"step": step, "seconds": seconds}
    for cell, curve in (("lstm", lstm), ("gru", gru)):
        out[cell] = {
            "same_steps": next(r["bleu"] for r in reversed(curve) if r["step"] <= step),
            "same_time": at_time(curve, seconds)["bleu"],
        }
    out["ratio"] = Fraction(res["gru"]["recurrent"], res["lstm"]["recurrent"])
    return out


def paired_bootstrap(
    hyps_a: list[str], hyps_b: list[str], refs: list[str], metric: str, samples: int = 1000
) -> tuple[float, float, float]:
    """Score of ``a`` minus score of ``b`` and its 95 % paired bootstrap interval.

    The test sentences are drawn with replacement ``samples`` times, the same draw for
    both systems (Koehn 2004). ``metric``: ``"bleu"`` (sacrebleu corpus BLEU, as
    :func:`rnnkit.evaluate.score`) or ``"exact"`` (exact-match %).
    """
    bleu = BLEU(effective_order=True)  # only the sentences' n-gram counts are used

    def stats(h: str, r: str) -> list[float]:  # what corpus scores sum over sentences
        if metric == "exact":
            return [float(h.strip() == r.strip())]
        x = bleu.sentence_score(h, [r])
        return [*x.counts, *x.totals, x.sys_len, x.ref_len]

    a, b = (
        torch.tensor([stats(h, r) for h, r in zip(hyps, refs)], dtype=torch.float64)
        for hyps in (hyps_a, hyps_b)
    )  # (N, 10) for BLEU, (N, 1) for exact match

    def corpus(sums: torch.Tensor, n: int) -> float:
        if metric == "exact":
            return 100.0 * float(sums[0]) / n
        v = [int(x) for x in sums.tolist()]
        return float(BLEU.compute_bleu(v[:4], v[4:8], v[8], v[9], smooth_method="exp").score)

    n = len(refs)
    draws = torch.randint(n, (samples, n), generator=torch.Generator().manual_seed(1))
    diffs = sorted(corpus(a[i].sum(0), n) - corpus(b[i].sum(0), n) for i in draws)
    lo, hi = diffs[int(0.025 * samples)], diffs[int(0.975 * samples) - 1]
    return corpus(a.sum(0), n) - corpus(b.sum(0), n), lo, hi


def _difference(name: str, gru: float, lstm: float, ci: tuple[float, float, float]) -> str:
    d, lo, hi = ci
    call = (
        "no significant difference" if lo <= 0 <= hi else ("GRU" if d > 0 else "LSTM") + " better"
    )
    return (
        f"{name} GRU {gru:.2f} vs LSTM {lstm:.2f}, difference {d:+.2f} "
        f"(95 % bootstrap interval {lo:+.2f} to {hi:+.2f}): {call}"
    )


def _pace(res: dict[str, dict[str, Any]], engine: str) -> float:
    """GRU steps/s over LSTM steps/s in the alternating benchmark."""
    gru, lstm = res["gru"]["bench"][engine], res["lstm"]["bench"][engine]
    return float(gru["steps_per_s"] / lstm["steps_per_s"])


def verdict(task: str, res: dict[str, dict[str, Any]], cmp: dict[str, Any]) -> str:
    """Sentences read off the numbers of one task."""
    g, m = res["gru"], res["lstm"]
    ratio, fused, explicit = cmp["ratio"], _pace(res, "auto"), _pace(res, "explicit")
    text = (
        f"GRU/LSTM recurrent weights = {ratio.numerator}/{ratio.denominator}"
        f"{' (exactly 3/4)' if ratio == Fraction(3, 4) else ' (not 3/4!)'}; all parameters "
        f"{g['total']:,} vs {m['total']:,} ({g['total'] / m['total'] - 1:+.1%}). Speed: the "
        f"GRU model does {fused:.2f}× the LSTM model's training steps per second on torch's "
        f"fused kernels and {explicit:.2f}× on rnnkit's explicit cells (alternating benchmark)"
    )
    if fused < 0.8 * explicit:
        text += "; the fused GRU kernel, not the cell, is what is slow here"
    text += (
        f". Dev BLEU at step {cmp['step']}: GRU {cmp['gru']['same_steps']:.1f}, LSTM "
        f"{cmp['lstm']['same_steps']:.1f}; after {_secs(cmp['seconds'])} s of training: GRU "
        f"{cmp['gru']['same_time']:.1f}, LSTM {cmp['lstm']['same_time']:.1f}. "
        + _difference("Test BLEU", g["test_bleu"], m["test_bleu"], g["vs_lstm"]["bleu"])
    )
    if task == "dates":
        exact = (100 * g["test_exact"], 100 * m["test_exact"], g["vs_lstm"]["exact"])
        text += "; " + _difference("test exact match %", *exact)
    return text + "."


def plot(results: dict[str, dict[str, dict[str, Any]]], path: Path) -> Path:
    """Dev BLEU against update step and against training seconds, per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rnnkit.figures import save_figure

    n = len(results)
    fig, axes = plt.subplots(n, 2, figsize=(11, 3.8 * n), squeeze=False)
    titles = {"dates": "dates", "multi30k": "Multi30k de→en"}
    for row, (task, res) in zip(axes, results.items()):
        for cell, style in zip(CELLS, ("o-", "s--")):
            curve = res[cell]["curve"]
            y = [r["bleu"] for r in curve]
            row[0].plot([r["step"] for r in curve], y, style, label=cell.upper(), markersize=4)
            row[1].plot([r["train_s"] for r in curve], y, style, label=cell.upper(), markersize=4)
        for ax, xlabel in zip(row, ("update step", "training time (s, single thread)")):
            ax.set_title(f"{titles[task]}: dev BLEU vs {xlabel.split(' (')[0]}")
            ax.set_xlabel(xlabel)
            ax.set_ylabel("dev BLEU (greedy)")
            ax.grid(alpha=0.3)
            ax.legend()
    fig.suptitle("LSTM vs GRU encoder-decoders with attention, equal sizes")
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)


def _rows(task: str, res: dict[str, dict[str, Any]], cmp: dict[str, Any]) -> list[dict]:
    """One row per cell, keyed by the column names of the report's tables."""
    rows = []
    for cell in CELLS:
        r, auto = res[cell], res[cell]["bench"]["auto"]
        rows.append({
            "task": task, "cell": cell.upper(), "recurrent parameters": r["recurrent"],
            "all parameters": r["total"],
            "target tok/s (run)": round(r["speed"]["tokens_per_s"]),
            "steps/s (run)": r["speed"]["steps_per_s"],
            "target tok/s (bench)": round(auto["tokens_per_s"]),
            "steps/s (bench)": auto["steps_per_s"],
            "steps/s (bench, explicit cells)": r["bench"]["explicit"]["steps_per_s"],
            "steps": r["steps"], "training s": round(r["curve"][-1]["train_s"], 1),
            f"dev BLEU @ step {cmp['step']}": cmp[cell]["same_steps"],
            f"dev BLEU @ {_secs(cmp['seconds'])} s": cmp[cell]["same_time"],
            "test BLEU": r["test_bleu"], "test exact %": 100 * r["test_exact"],
        })  # fmt: skip
    return rows


def _tables(rows: list[dict[str, Any]]) -> list[str]:
    """Parameters, speed, and one quality table per task (its own step and time columns)."""
    tables = [
        markdown_table(rows, ["task", "cell", "recurrent parameters", "all parameters"]),
        markdown_table(rows, ["task", "cell", *(k for k in rows[0] if "/s" in k)]),
    ]
    for task in dict.fromkeys(r["task"] for r in rows):
        mine = [r for r in rows if r["task"] == task]
        keys = ["cell", "steps", "training s", *(k for k in mine[0] if k.startswith("dev"))]
        keys += ["test BLEU"] + (["test exact %"] if task == "dates" else [])
        tables.append(f"{task}:\n\n" + markdown_table(mine, keys))
    return tables


def _conclusion(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    same = [t for t in results if _ci_has_zero(results[t]["gru"]["vs_lstm"]["bleu"])]
    apart = [t for t in results if t not in same]
    faster = [t for t in results if _pace(results[t], "auto") > 1.05]
    slower = [t for t in results if _pace(results[t], "auto") < 0.95]
    even = [t for t in results if t not in faster and t not in slower]
    differs = [
        f"insignificantly on {', '.join(same)}" if same else "",
        f"significantly (test-set bootstrap, one seed) on {', '.join(apart)}" if apart else "",
    ]
    agrees = "consistent with" if not apart else "only partly consistent with" if same else "unlike"
    quality = (
        "Test BLEU of the GRU and the LSTM model differs "
        + " and ".join(d for d in differs if d)
        + f": {agrees} Chung et al. (2014), who found the two comparable."
    )
    pace = [
        f"GRU faster (> 5 %) on {', '.join(faster)}" if faster else "",
        f"GRU slower (> 5 %) on {', '.join(slower)}" if slower else "",
        f"within 5 % on {', '.join(even)}" if even else "",
    ]
    return (
        f"**Conclusion.** {quality} Training steps: {', '.join(p for p in pace if p)}; the "
        "3/4 recurrent weights are only part of the model (embeddings, attention and the "
        "output layer cost the same for both)."
    )


def _secs(x: float) -> str:
    """Seconds as a label: tenths below 10 s (a --quick run trains for under one)."""
    return f"{x:.1f}" if x < 10 else f"{x:.0f}"


def _ci_has_zero(ci: tuple[float, float, float]) -> bool:
    return ci[1] <= 0 <= ci[2]
