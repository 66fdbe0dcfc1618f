"""Experiment ``attention-length``: does a model without attention lose long sentences?

Cho et al. (2014) found that the basic RNN encoder-decoder, which squeezes the whole
source into one fixed-length vector C, degrades quickly as sentences grow; Bahdanau et
al. (2015, Fig. 2) showed that with attention (RNNsearch) BLEU holds up on long ones.

Two encoder-decoders of the same size (bidirectional GRU encoder, GRU decoder, same
embedding and hidden sizes) differ only in ``model.attention``: ``bahdanau``, or
``none`` (the decoder reads C = [h→_S; h←_1] at every step, Cho et al. 2014). Both are
trained from scratch for the same number of updates on the same data, decoded greedily
and scored per source-length bucket on:

(a) dates of every length: a plain date ("9 may 2018") or one inside a sentence of
    filler clauses (:func:`rnnkit.data.sample_date` with ``long=True``), characters in,
    ISO date out; exact match and BLEU per source length in characters (encoder steps);
(b) Multi30k de→en with a joint BPE vocabulary; BLEU per source length in words.
"""

from __future__ import annotations

import os
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnnkit.checkpoint import load_bundle
from rnnkit.config import Config, config_from_dict
from rnnkit.data import read_lines, sample_date, write_lines
from rnnkit.evaluate import bucket_scores, exact_match, score, word_count
from rnnkit.experiments.attention_length_report import (
    MODELS,
    UNITS,
    _bucket_table,
    _summary_table,
    plot,
    slope,
    verdict,
)
from rnnkit.experiments.common import QUICK_NOTE, Report, machine, train_whole, verdict_heading
from rnnkit.translate import translate_lines

__all__ = [
    "run",
    "multi30k_dir",
    "missing_multi30k",
    "multi30k_gaps",
    "dates_splits",
    "MODELS",
    "UNITS",
    "plot",
    "slope",
    "verdict",
]

NAME = "attention-length"
Log = Callable[[str], None]
Pair = tuple[str, str]
MULTI30K_FILES = [f"{s}.{lang}" for s in ("train", "val", "test2016") for lang in ("de", "en")]


@dataclass(frozen=True)
class Setting:
    """One part's data, sizes and budget; both models of the part share it."""

    train: int | None  # training pairs (None: the whole corpus)
    dev: int  # validation pairs
    test: int | None  # test pairs scored (None: the whole test set)
    emb: int  # embedding size E
    hidden: int  # hidden size H
    edges: tuple[int, ...]  # source-length bucket boundaries
    steps: int = 0  # update budget per model
    minutes: float = 0.0  # a safety cap on each model's training time (0: none)
    batch_tokens: int = 3000
    validate_every: int = 1000
    vocab: int = 0  # BPE vocabulary size (0: characters)
    lr: float = 3e-3
    dropout: float = 0.1
    out_len: tuple[float, int] = (1.5, 10)  # decode.max_len_a, decode.max_len_b


DATES = {
    "full": Setting(30000, 200, 1000, 32, 96, (40, 70, 90, 110, 130, 160, 190), steps=2000,
                    minutes=5.0, validate_every=250, batch_tokens=4000, out_len=(0.0, 12)),
    "quick": Setting(300, 20, 120, 16, 16, (40, 90, 130), steps=25, out_len=(0.0, 12)),
}  # fmt: skip
MULTI30K = {
    "full": Setting(None, 300, None, 128, 192, (7, 9, 11, 13, 15, 18), steps=600,
                    minutes=6.5, validate_every=200, batch_tokens=2500, vocab=4000, lr=2e-3,
                    dropout=0.2),
    "quick": Setting(800, 20, 150, 16, 16, (9, 12, 15), steps=10, vocab=400, lr=2e-3),
}  # fmt: skip


def multi30k_dir(data_dir: Path | None) -> Path:
    """Where Multi30k should be: ``data_dir/multi30k`` (or ``data_dir`` itself when it
    holds the files), else ``$RNNKIT_DATA/multi30k``, else ``../shared/data/multi30k``
    from the current folder, else from a source checkout holding this module (an
    installed package's location means nothing)."""
    if data_dir is not None:
        base = Path(data_dir).expanduser()
        return base if (base / "train.de").is_file() else base / "multi30k"
    env = os.environ.get("RNNKIT_DATA")
    if env:
        return Path(env).expanduser() / "multi30k"
    here = Path("..") / "shared" / "data" / "multi30k"
    checkout = Path(__file__).resolve().parents[3]
    beside = checkout.parent / "shared" / "data" / "multi30k"
    if (here / "train.de").is_file() or not (checkout / "pyproject.toml").is_file():
        return here
    return beside


def multi30k_gaps(folder: Path) -> list[str]:
    """The files of Multi30k that ``folder`` lacks."""
    return [f for f in MULTI30K_FILES if not (folder / f).is_file()]


def missing_multi30k(folder: Path) -> str | None:
    """Why Multi30k in ``folder`` cannot be used, or None when it is all there."""
    missing = multi30k_gaps(folder)
    if not missing:
        return None
    return (
        f"Multi30k not found in `{folder}` (missing {', '.join(missing)}); pass `--data-dir` "
        "or set RNNKIT_DATA (`rnnkit data multi30k --out DIR/multi30k` fetches it)"
    )


def dates_splits(n_train: int, n_dev: int, n_test: int, seed: int) -> dict[str, list[Pair]]:
    """Dates of every length: a fifth written plainly, the rest inside filler clauses
    (``max_filler`` 0 to 3). Dev and test sources never occur in train."""
    rng = random.Random(seed)

    def draw() -> Pair:
        k = rng.randint(-1, 3)  # -1: a plain date
        source, target, _ = sample_date(rng, long=k >= 0, max_filler=max(k, 0))
        return source, target

    held: set[str] = set()
    out: dict[str, list[Pair]] = {}
    for split, n in (("test", n_test), ("dev", n_dev), ("train", n_train)):
        pairs: list[Pair] = []
        while len(pairs) < n:
            pair = draw()
            if pair[0] in held:
                continue
            if split != "train":
                held.add(pair[0])
            pairs.append(pair)
        out[split] = pairs
    return out


def _write_pairs(prefix: Path, pairs: Sequence[Pair], src: str, tgt: str) -> str:
    write_lines(f"{prefix}.{src}", [s for s, _ in pairs])
    write_lines(f"{prefix}.{tgt}", [t for _, t in pairs])
    return str(prefix)


def _config(data: dict[str, Any], s: Setting, attention: str) -> Config:
    # explicit cells: on CPU, torch's fused GRU backward is several times slower than the
    # LSTM's on long packed inputs (see lstm-vs-gru), and would halve the dates budget
    return config_from_dict(
        {
            "data": {**data, "max_len": 400},
            "model": {"cell": "gru", "emb_size": s.emb, "hidden_size": s.hidden,
                      "attention": attention, "dropout": s.dropout, "emb_dropout": 0.0,
                      "engine": "explicit"},
            "train": {"batch_tokens": s.batch_tokens, "lr": s.lr, "scheduler": "none",
                      "label_smoothing": 0.0, "max_epochs": 1000, "patience": 0,
                      "validate_every": s.validate_every, "checkpoint_every": 10**6,
                      "log_every": 50, "seed": 1, "device": "cpu", "max_steps": s.steps,
                      "max_minutes": s.minutes},
            "decode": {"beam_size": 1, "max_len_a": s.out_len[0], "max_len_b": s.out_len[1],
                       "batch_size": 100},
        }
    )  # fmt: skip


def _train_and_score(
    task: str,
    data: dict[str, Any],
    s: Setting,
    test: list[Pair],
    out: Path,
    log: Log,
    key: Callable[[str], int],
    exact: bool,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Train both models on one task; per-bucket rows and one summary row per model."""
    srcs, refs = [s for s, _ in test], [t for _, t in test]
    rows: list[dict[str, Any]] = []
    summary: list[dict[str, Any]] = []
    for attention, label in MODELS.items():
        run_dir = out / f"{task}-{attention}"
        shutil.rmtree(run_dir, ignore_errors=True)  # from scratch, never resumed
        log(f"[{task}] training {label}")
        t0 = time.time()
        result = train_whole(_config(data, s, attention), run_dir, log)
        seconds = time.time() - t0
        bundle = load_bundle(run_dir / "last.pt")
        hyps = [t[0].text for t in translate_lines(bundle, srcs, beam_size=1)]
        for b in bucket_scores(srcs, hyps, refs, edges=s.edges, key=key):
            idx = [i for i, x in enumerate(srcs) if _inside(key(x), b["lo"], b["hi"])]
            row = {"task": task, "model": label, **b}
            row["mean_len"] = sum(key(srcs[i]) for i in idx) / len(idx)
            if exact:
                row["exact"] = exact_match([hyps[i] for i in idx], [refs[i] for i in idx])
            rows.append(row)
        total: dict[str, Any] = {
            "task": task,
            "model": label,
            "parameters": sum(p.numel() for p in bundle.model.parameters()),
            "steps": result.steps,
            "stopped": result.stopped,
            "train_min": round(seconds / 60, 2),
            "test_bleu": score(hyps, refs)["bleu"],
        }
        if exact:
            total["test_exact"] = exact_match(hyps, refs)
        summary.append(total)
    return rows, summary


def _budget(s: Setting) -> str:
    cap = f" (or {s.minutes:g} min, whichever comes first)" if s.minutes else ""
    return (
        f"{s.steps} updates of at most {s.batch_tokens} tokens per model{cap}, Adam lr "
        f"{s.lr:g}, dropout {s.dropout:g}, greedy decoding"
    )


def _inside(n: int, lo: int, hi: int | None) -> bool:
    return lo <= n and (hi is None or n <= hi)


def _dates_part(out: Path, quick: bool, log: Log) -> tuple[list[dict], list[dict], str]:
    s = DATES["quick" if quick else "full"]
    splits = dates_splits(s.train or 0, s.dev, s.test or 0, seed=1)
    data_dir = out / "data"
    data = {
        "tokenizer": "char",
        "train": _write_pairs(data_dir / "dates-train", splits["train"], "src", "tgt"),
        "dev": _write_pairs(data_dir / "dates-dev", splits["dev"], "src", "tgt"),
    }
    rows, summary = _train_and_score("dates", data, s, splits["test"], out, log, len, True)
    lengths = [len(x) for x, _ in splits["test"]]
    about = (
        f"{s.train} training / {s.dev} dev / {s.test} test pairs generated with seed 1 "
        f"(a fifth plain dates, the rest inside a sentence of 2-8 filler clauses; test sources "
        f"{min(lengths)}-{max(lengths)} characters, never seen in training); character "
        f"tokens; E={s.emb}, H={s.hidden}; {_budget(s)}. Unlike a sentence, a longer source "
        "here carries no more information (one date), only more filler"
    )
    return rows, summary, about


def _multi30k_part(out: Path, quick: bool, log: Log, folder: Path) -> tuple[list, list, str]:
    s = MULTI30K["quick" if quick else "full"]
    take = lambda lines, n: lines if n is None else lines[:n]  # noqa: E731
    test_de, test_en = (take(read_lines(folder / f"test2016.{x}"), s.test) for x in ("de", "en"))
    val = list(zip(read_lines(folder / "val.de"), read_lines(folder / "val.en")))[: s.dev]
    if s.train is None:
        train_prefix = str(folder / "train")
    else:
        pairs = list(zip(read_lines(folder / "train.de"), read_lines(folder / "train.en")))
        train_prefix = _write_pairs(out / "data" / "m30k-train", pairs[: s.train], "de", "en")
    data = {
        "tokenizer": "bpe",
        "vocab_size": s.vocab,
        "src": "de",
        "tgt": "en",
        "train": train_prefix,
        "dev": _write_pairs(out / "data" / "m30k-dev", val, "de", "en"),
    }
    test = list(zip(test_de, test_en))
    rows, summary = _train_and_score("multi30k", data, s, test, out, log, word_count, False)
    n_train = len(read_lines(f"{train_prefix}.de"))
    about = (
        f"Multi30k de→en from `{folder}`: {n_train} training pairs, the first {len(val)} of val "
        f"for validation, {len(test)} sentences of test2016 scored; joint sentencepiece BPE "
        f"({s.vocab}); E={s.emb}, H={s.hidden}; {_budget(s)}"
    )
    return rows, summary, about


# ---------------------------------------------------------------- the run


def run(out_dir: Path, quick: bool, log: Log, data_dir: Path | None) -> Report:
    """Train the four models (two without Multi30k), score them by length, plot, report."""
    t0 = time.time()
    rows: list[dict[str, Any]] = []
    summary: list[dict[str, Any]] = []
    parts: dict[str, list[dict[str, Any]]] = {}
    about: dict[str, str] = {}
    r, s, about["dates"] = _dates_part(out_dir, quick, log)
    rows, summary, parts["dates"] = rows + r, summary + s, r
    folder = multi30k_dir(data_dir)
    skipped = missing_multi30k(folder)
    if skipped is None:
        r, s, about["multi30k"] = _multi30k_part(out_dir, quick, log, folder)
        rows, summary, parts["multi30k"] = rows + r, summary + s, r
    else:
        log(f"skipping Multi30k: {skipped}")
    figure = plot(parts, out_dir / f"{NAME}.png")
    link = figure.name  # (rnnkit experiment places it beside the results page)
    seconds = time.time() - t0
    for task in parts:
        log(f"{task}:\n" + _bucket_table(parts[task], task == "dates"))
    md = _markdown(quick, parts, summary, about, skipped, link, seconds)
    return Report(NAME, md, rows=rows, figures=[figure], seconds=seconds)


def _markdown(
    quick: bool,
    parts: dict[str, list[dict[str, Any]]],
    summary: list[dict[str, Any]],
    about: dict[str, str],
    skipped: str | None,
    link: str,
    seconds: float,
) -> str:
    cmd = f"OMP_NUM_THREADS=1 rnnkit experiment {NAME}" + (" --quick" if quick else "")
    lines = [
        "## Attention and sentence length (`attention-length`)",
        "",
        "Two encoder-decoders of the same size (bidirectional GRU encoder, GRU decoder, "
        "same embedding and hidden sizes) that differ only in attention: Bahdanau "
        "attention (RNNsearch, Bahdanau et al. 2015), or none, where the decoder reads the "
        "final encoder state C at every step (RNN encoder-decoder, Cho et al. 2014). Both "
        "are trained from scratch with the same budget (the same number of updates, unless "
        "the same time cap comes first) on the same data, decoded greedily, and scored per "
        "source-length bucket, as in Bahdanau et al. 2015, Fig. 2. The recurrent layers run "
        "on rnnkit's explicit cells (`model.engine: explicit`)."
        + (" " + QUICK_NOTE if quick else ""),
        "",
        f"- Command: `{cmd}`",
        f"- Machine: {machine()} (all timings single-threaded)",
        f"- Wall time: {seconds / 60:.1f} min",
        "",
    ]
    titles = {"dates": "(a) Dates with long inputs", "multi30k": "(b) Multi30k de→en"}
    for task, rows in parts.items():
        exact = task == "dates"
        mine = [s for s in summary if s["task"] == task]
        lines += [
            f"### {titles[task]}",
            "",
            about[task] + ".",
            "",
            _summary_table(mine),
            "",
            _bucket_table(rows, exact),
            "",
            verdict_heading(quick) + " " + verdict(task, rows, "exact" if exact else "bleu"),
            "",
        ]
    if skipped:
        lines += ["### (b) Multi30k de→en", "", f"Skipped: {skipped}.", ""]
    lines += [
        f"![Score against source length, with and without attention]({link})",
        "",
        "Slopes are count-weighted least-squares fits of the score against each bucket's "
        "mean source length; `parameters` counts every weight, attention included; "
        "`train_min` includes the periodic dev validation.",
    ]
    return "\n".join(lines) + "\n"
