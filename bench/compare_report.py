"""bench/compare_joeynmt.py's report: the tables of rnnkit against Joey NMT that it prints
and writes into docs/RESULTS.md (speed rounds' medians, and the equal-wall-clock quality
run)."""

from __future__ import annotations

import os
import time
from typing import Any

ROWS = [
    # key, label, higher is better, goal for rnnkit/Joey
    ("train_tok_s", "training, target tokens/s", True, 2.0),
    ("greedy_sent_s", "translation greedy, sentences/s", True, 2.0),
    ("beam5_sent_s", "translation beam 5, sentences/s", True, 3.0),
    # decoding time grows with output length: words written per second allow for that
    ("greedy_words_s", "translation greedy, output words/s", True, None),
    ("beam5_words_s", "translation beam 5, output words/s", True, None),
    ("rss_train", "peak RSS training, GiB", False, None),
    ("rss_greedy", "peak RSS greedy translation, GiB", False, None),
    ("rss_beam5", "peak RSS beam-5 translation, GiB", False, None),
    # what was translated: the first run's model, scored (lowercased BLEU, words per line)
    ("greedy_bleu", "test2016 BLEU of that model, greedy (lowercased)", True, None),
    ("beam5_bleu", "test2016 BLEU of that model, beam 5 (lowercased)", True, None),
    ("greedy_words", "words per greedy translation (references: 11.9)", True, None),
    ("beam5_words", "words per beam-5 translation", True, None),
]


def table(med: dict[str, dict[str, float]], head: str) -> str:
    lines = [
        head,
        "",
        "| measure | rnnkit | Joey NMT | rnnkit / Joey | goal |",
        "|---|---:|---:|---:|---|",
    ]
    for key, label, _higher, goal in ROWS:
        if key not in med["rnnkit"] or key not in med["joey"]:
            continue
        a, b = med["rnnkit"][key], med["joey"][key]
        g = f"≥ {goal:.1f}" + (" ✓" if a / b >= goal else " ✗") if goal else ""
        lines.append(f"| {label} | {a:,.2f} | {b:,.2f} | {a / b:.2f} | {g} |")
    return "\n".join(lines)


def quality_table(q: dict[str, Any], config: str) -> str:
    import torch

    def row(label: str, a: float, b: float, fmt: str, goal: str = "") -> str:
        ratio = f"{a / b:.2f}" if b else "–"
        return f"| {label} | {a:{fmt}} | {b:{fmt}} | {ratio} | {goal} |"

    m = f"{q['minutes']:g}"
    ok = "rnnkit ≥ 30 " + ("✓" if q["rnnkit"] >= 30 else "✗")
    return "\n".join(
        [
            f"Both recipes trained side by side for {m} minutes of wall time, "
            f"{q['threads']:g} torch thread(s) each, torch {torch.__version__}, "
            f"{os.cpu_count()} CPUs ({time.strftime('%Y-%m-%d')}); rnnkit: `{config}`, "
            "Joey NMT: the architecture of the speed runs at its learning rate 3e-4. "
            "Dev BLEU (greedy, lowercased) of the better of each one's best checkpoint and "
            "its weights at the stop.",
            "",
            "| measure | rnnkit | Joey NMT | rnnkit / Joey | goal |",
            "|---|---:|---:|---:|---|",
            row(f"dev BLEU after {m} min (greedy, lowercased)", q["rnnkit"], q["joey"], ".2f", ok),
            row(f"updates in {m} min", q["rnnkit_updates"], q["joey_updates"], ",.0f"),
            row("peak RSS training, GiB", q["rnnkit_rss"], q["joey_rss"], ".2f"),
        ]
    )
