"""Experiment ``lstm-vs-gru``: parameters, speed and quality of LSTM and GRU models.

Chung et al. (2014), "Empirical Evaluation of Gated Recurrent Neural Networks on
Sequence Modeling", found the GRU comparable to the LSTM (both well ahead of the tanh
RNN), with neither better on every task. The GRU has three gate blocks (r, z, n) to the
LSTM's four (i, f, g, o), so at equal sizes its recurrent weights are exactly 3/4 of
the LSTM's.

Two attention encoder-decoders (bidirectional encoder, Bahdanau attention) of equal
embedding and hidden sizes, one with LSTM cells and one with GRU cells, are trained
from scratch for the same number of updates on the same data: (a) dates with long
inputs, characters in, ISO date out; (b) Multi30k de→en with BPE, when the corpus is
there. Reported: recurrent and total parameter counts; training speed, from the runs'
``log.csv`` and from a benchmark that alternates LSTM and GRU steps on the same batches
(so both see the same machine load); dev BLEU at the same number of steps and at the
same training time, test scores, and learning curves.
"""

from __future__ import annotations

import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rnnkit.checkpoint import Bundle, build_model, load_bundle
from rnnkit.config import Config, config_from_dict
from rnnkit.data import encode_pairs, make_batches, read_lines, write_lines
from rnnkit.evaluate import exact_match, score
from rnnkit.experiments.attention_length import missing_multi30k, multi30k_dir
from rnnkit.experiments.common import QUICK_NOTE, QUICK_VERDICT, Report, machine, train_whole
from rnnkit.experiments.lstm_vs_gru_report import (
    CELLS,
    _conclusion,
    _rows,
    _tables,
    at_time,
    compare,
    learning_curve,
    paired_bootstrap,
    plot,
    verdict,
)
from rnnkit.model import Seq2Seq, sequence_loss
from rnnkit.train import load_pairs
from rnnkit.translate import translate_lines

__all__ = [
    "run",
    "recurrent_parameters",
    "learning_curve",
    "at_time",
    "paired_bootstrap",
    "CELLS",
    "compare",
    "plot",
    "verdict",
]

NAME = "lstm-vs-gru"
Log = Callable[[str], None]


@dataclass(frozen=True)
class Setting:
    """One task's data, sizes and budget; the LSTM and the GRU share it."""

    emb: int  # embedding size E
    hidden: int  # hidden size H
    steps: int  # updates per model
    validate_every: int  # a multiple of log_every
    log_every: int
    train: int | None = None  # training pairs (None: the whole corpus)
    dev: int = 200
    test: int | None = None  # test pairs (None: the whole test set)
    vocab: int = 0  # BPE vocabulary size (0: characters)
    lr: float = 3e-3
    dropout: float = 0.1
    minutes: float = 0.0  # a safety cap on each model's training time (0: none)
    bench_rounds: int = 8  # alternating timed steps per cell and engine
    long: bool = True  # dates: wrap the date in filler clauses


DATES = {
    "full": Setting(32, 96, 500, 50, 25, train=30000, test=1000, minutes=4.0),
    "quick": Setting(16, 24, 30, 10, 5, train=300, dev=20, test=60, bench_rounds=2, long=False),
}
MULTI30K = {
    "full": Setting(128, 192, 600, 100, 50, dev=250, vocab=4000, lr=2e-3, dropout=0.2,
                    minutes=6.0, bench_rounds=5),
    "quick": Setting(16, 16, 10, 10, 5, train=600, dev=20, test=100, vocab=400, lr=2e-3,
                     bench_rounds=2),
}  # fmt: skip


def recurrent_parameters(model: Seq2Seq) -> int:
    """Weights and biases of the recurrent layers (encoder RNN and decoder cells)."""
    return sum(p.numel() for n, p in model.named_parameters() if ".rnn." in f".{n}")


def _config(data: dict[str, Any], s: Setting, cell: str) -> Config:
    return config_from_dict(
        {
            "data": {**data, "max_len": 400},
            "model": {"cell": cell, "emb_size": s.emb, "hidden_size": s.hidden,
                      "attention": "bahdanau", "dropout": s.dropout, "emb_dropout": 0.0},
            "train": {"batch_tokens": 3000, "lr": s.lr, "scheduler": "none",
                      "label_smoothing": 0.0, "max_epochs": 1000, "patience": 0,
                      "max_steps": s.steps, "max_minutes": s.minutes,
                      "validate_every": s.validate_every, "log_every": s.log_every,
                      "checkpoint_every": 10**6, "seed": 1, "device": "cpu"},
            "decode": {"beam_size": 1, "max_len_a": 0.0 if data.get("task") else 1.5,
                       "max_len_b": 12 if data.get("task") else 10, "batch_size": 100},
        }
    )  # fmt: skip


def benchmark(cfg: Config, bundle: Bundle, rounds: int) -> dict[tuple[str, str], dict[str, float]]:
    """Training-step time of fresh LSTM and GRU models on the same batches.

    The four (cell, engine) models take turns on each batch, so a change in machine
    load hits all of them alike. Engines: ``auto`` (torch's fused kernels, what the
    training runs use) and ``explicit`` (rnnkit's readable cells).

    Returns:
        ``{(cell, engine): {"steps_per_s", "tokens_per_s"}}`` from the median step.
    """
    pairs = load_pairs(cfg)["train"][:20000]
    b = bundle
    examples = encode_pairs(pairs, b.src_tokenizer, b.tgt_tokenizer, b.src_vocab, b.tgt_vocab)
    batches = make_batches(examples, cfg.train.batch_tokens, None, True, 1, b.src_vocab.pad_id)
    batches = [batches[i % len(batches)] for i in range(rounds + 1)]
    runs: dict[tuple[str, str], tuple[Seq2Seq, torch.optim.Optimizer, list]] = {}
    for cell in CELLS:
        for engine in ("auto", "explicit"):
            c = config_from_dict({"model": {**vars(cfg.model), "cell": cell, "engine": engine}})
            torch.manual_seed(1)
            model = build_model(c, len(b.src_vocab), len(b.tgt_vocab)).train()
            runs[cell, engine] = (model, torch.optim.Adam(model.parameters(), lr=1e-4), [])
    for i, batch in enumerate(batches):
        for model, opt, times in runs.values():
            t = time.perf_counter()
            logits, _ = model(batch.src, batch.src_lengths, batch.tgt[:, :-1])
            loss, n = sequence_loss(logits, batch.tgt[:, 1:], b.tgt_vocab.pad_id)
            opt.zero_grad(set_to_none=True)
            (loss / n).backward()
            opt.step()
            if i > 0:  # the first round warms up
                times.append((time.perf_counter() - t, n))
    out = {}
    for key, (_, _, times) in runs.items():
        out[key] = {
            "steps_per_s": 1 / statistics.median(t for t, _ in times),
            "tokens_per_s": statistics.median(n / t for t, n in times),
        }
    return out


def _task_data(task: str, s: Setting, out: Path, folder: Path) -> tuple[dict[str, Any], str]:
    """The data section of the config, and a sentence about it."""
    if task == "dates":
        dates = {
            "task": "dates",
            "task_size": s.train,
            "task_dev": s.dev,
            "task_test": s.test,
            "task_options": {"long": s.long},
            "tokenizer": "char",
        }
        return dates, (
            f"the `dates` task (`task_options: {{long: {str(s.long).lower()}}}`): {s.train} "
            f"training / {s.dev} dev / {s.test} test pairs, seed 1, character tokens"
        )
    data: dict[str, Any] = {"tokenizer": "bpe", "vocab_size": s.vocab, "src": "de", "tgt": "en"}
    n = {}
    for split, source, size in (
        ("train", "train", s.train),
        ("dev", "val", s.dev),
        ("test", "test2016", s.test),
    ):
        de, en = (
            read_lines(folder / f"{source}.de")[:size],
            read_lines(folder / f"{source}.en")[:size],
        )
        prefix = out / "data" / f"m30k-{split}"
        write_lines(f"{prefix}.de", de)
        write_lines(f"{prefix}.en", en)
        data[split], n[split] = str(prefix), len(de)
    return data, (
        f"Multi30k de→en from `{folder}`: {n['train']} training pairs, the first {n['dev']} of "
        f"val for validation, {n['test']} of test2016 for test; joint sentencepiece BPE "
        f"({s.vocab})"
    )


def _run_task(
    task: str, s: Setting, data: dict[str, Any], out: Path, log: Log
) -> dict[str, dict[str, Any]]:
    """Train the LSTM and the GRU on one task and measure them."""
    res: dict[str, dict[str, Any]] = {}
    for cell in CELLS:
        run_dir = out / f"{task}-{cell}"
        shutil.rmtree(run_dir, ignore_errors=True)  # from scratch, never resumed
        log(f"[{task}] training the {cell.upper()} model")
        cfg = _config(data, s, cell)
        result = train_whole(cfg, run_dir, log)
        bundle = load_bundle(run_dir / "last.pt")
        test = load_pairs(cfg)["test"]
        hyps = [t[0].text for t in translate_lines(bundle, [x for x, _ in test], beam_size=1)]
        refs = [y for _, y in test]
        curve, speed = learning_curve(run_dir / "log.csv")
        res[cell] = {
            "cfg": cfg,
            "bundle": bundle,
            "steps": result.steps,
            "curve": curve,
            "speed": speed,
            "recurrent": recurrent_parameters(bundle.model),
            "total": sum(p.numel() for p in bundle.model.parameters()),
            "test_bleu": score(hyps, refs)["bleu"],
            "test_exact": exact_match(hyps, refs),
            "hyps": hyps,
        }
    gru_hyps, lstm_hyps = res["gru"].pop("hyps"), res["lstm"].pop("hyps")
    res["gru"]["vs_lstm"] = {
        "bleu": paired_bootstrap(gru_hyps, lstm_hyps, refs, "bleu"),
        "exact": paired_bootstrap(gru_hyps, lstm_hyps, refs, "exact"),
    }
    log(f"[{task}] timing LSTM and GRU steps in turn on the same batches")
    bench = benchmark(res["lstm"]["cfg"], res["lstm"]["bundle"], s.bench_rounds)
    for cell in CELLS:
        res[cell]["bench"] = {engine: bench[cell, engine] for engine in ("auto", "explicit")}
        del res[cell]["bundle"]
    return res


# ---------------------------------------------------------------- the run


def run(out_dir: Path, quick: bool, log: Log, data_dir: Path | None) -> Report:
    """Train an LSTM and a GRU model per task, time them, compare, plot, report."""
    t0 = time.time()
    key = "quick" if quick else "full"
    folder = multi30k_dir(data_dir)
    skipped = missing_multi30k(folder)
    settings = {"dates": DATES[key]}
    if skipped is None:
        settings["multi30k"] = MULTI30K[key]
    else:
        log(f"skipping Multi30k: {skipped}")
    results, cmps, about = {}, {}, {}
    rows: list[dict[str, Any]] = []
    for task, s in settings.items():
        data, about[task] = _task_data(task, s, out_dir, folder)
        results[task] = _run_task(task, s, data, out_dir, log)
        cmps[task] = compare(results[task])
        rows += _rows(task, results[task], cmps[task])
    figure = plot(results, out_dir / f"{NAME}.png")
    link = figure.name  # (rnnkit experiment places it beside the results page)
    seconds = time.time() - t0
    params, speed, *quality = _tables(rows)
    log("\n\n".join([params, speed, *quality]))
    lines = _header(quick, seconds, settings, about)
    lines += ["### Parameters", "", params, "", "### Training speed", "", speed, "", "### Quality"]
    lines += [x for table in quality for x in ("", table)]
    heading = "### Verdict" + (f" {QUICK_VERDICT}" if quick else "")
    lines += ["", f"![LSTM vs GRU learning curves]({link})", "", heading, ""]
    lines += [f"- {task}: {verdict(task, results[task], cmps[task])}" for task in results]
    if skipped:
        lines += [f"- Multi30k skipped: {skipped}."]
    lines += ["", _conclusion(results)]
    return Report(NAME, "\n".join(lines) + "\n", rows=rows, figures=[figure], seconds=seconds)


def _header(quick: bool, seconds: float, settings: dict[str, Setting], about: dict) -> list[str]:
    cmd = f"OMP_NUM_THREADS=1 rnnkit experiment {NAME}" + (" --quick" if quick else "")
    lines = [
        "## LSTM vs GRU (`lstm-vs-gru`)",
        "",
        "Two encoder-decoders with Bahdanau attention and a bidirectional encoder, equal in "
        "every size, one built of LSTM cells and one of GRU cells, trained from scratch for "
        "the same number of updates on the same data (same seed, batches and learning rate; "
        "Adam, no label smoothing; fused torch kernels). Chung et al. (2014) found the two "
        "comparable; the GRU has 3 gate blocks (r, z, n) to the LSTM's 4 (i, f, g, o)."
        + (" " + QUICK_NOTE
           if quick else ""),
        "",
        f"- Command: `{cmd}`",
        f"- Machine: {machine()}; every timing is single-threaded, on a machine shared with "
        "other jobs",
        f"- Wall time: {seconds / 60:.1f} min",
    ]  # fmt: skip
    for task, s in settings.items():
        lines.append(
            f"- {task}: {about[task]}; E={s.emb}, H={s.hidden}, {s.steps} steps per model"
            + (f" (or {s.minutes:g} min, whichever comes first)" if s.minutes else "")
            + f", lr {s.lr:g}, dropout {s.dropout:g}, dev BLEU (greedy) every "
            f"{s.validate_every} steps"
        )
    lines += [
        "",
        "`(run)`: from the training run's `log.csv`, median over log intervals without a "
        "validation. `(bench)`: fresh models of both cells take turns on the same training "
        "batches (so both see the same machine load), median step; `explicit cells` runs "
        "rnnkit's readable cells instead of torch's fused kernels. `training s` leaves out "
        "the time spent validating. Test scores are of the final model, greedy decoding; "
        "their 95 % paired bootstrap intervals (Koehn 2004) cover the sampling of test "
        "sentences, not training randomness (one seed per cell).",
        "",
    ]
    return lines
