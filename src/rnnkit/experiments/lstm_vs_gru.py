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

import csv
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch
from sacrebleu.metrics import BLEU

from rnnkit.checkpoint import Bundle, build_model, load_bundle
from rnnkit.config import Config, config_from_dict
from rnnkit.data import encode_pairs, make_batches, read_lines, write_lines
from rnnkit.evaluate import exact_match, score
from rnnkit.experiments.attention_length import missing_multi30k, multi30k_dir
from rnnkit.experiments.common import Report, machine, markdown_table
from rnnkit.model import Seq2Seq, sequence_loss
from rnnkit.train import load_pairs, train
from rnnkit.translate import translate_lines

__all__ = ["run", "recurrent_parameters", "learning_curve", "at_time", "paired_bootstrap"]

NAME = "lstm-vs-gru"
Log = Callable[[str], None]
CELLS = ("lstm", "gru")


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
        result = train(cfg, run_dir, log=log, progress=False)
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


# ---------------------------------------------------------------- reading the numbers


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
        f"{cmp['lstm']['same_steps']:.1f}; after {cmp['seconds']:.0f} s of training: GRU "
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

    from rnnkit.inspect import save_figure

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
            f"dev BLEU @ {cmp['seconds']:.0f} s": cmp[cell]["same_time"],
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
    link = figure.name
    if not quick:  # the results page shows the full run's figure from docs/figures/
        (Path("docs") / "figures").mkdir(parents=True, exist_ok=True)
        shutil.copy2(figure, Path("docs") / "figures" / figure.name)
        link = f"figures/{figure.name}"
    seconds = time.time() - t0
    params, speed, *quality = _tables(rows)
    log("\n\n".join([params, speed, *quality]))
    lines = _header(quick, seconds, settings, about)
    lines += ["### Parameters", "", params, "", "### Training speed", "", speed, "", "### Quality"]
    lines += [x for table in quality for x in ("", table)]
    lines += ["", f"![LSTM vs GRU learning curves]({link})", "", "### Verdict", ""]
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
        + (" **Quick version**: tiny models and data; the numbers only test the code."
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


def _conclusion(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    same = [t for t in results if _ci_has_zero(results[t]["gru"]["vs_lstm"]["bleu"])]
    apart = [t for t in results if t not in same]
    faster = [t for t in results if _pace(results[t], "auto") > 1.05]
    slower = [t for t in results if _pace(results[t], "auto") < 0.95]
    quality = (
        f"Test BLEU of the GRU and the LSTM model differs insignificantly on "
        f"{', '.join(same) or 'no task'}"
        + (
            f" and significantly (test-set bootstrap, one seed) on {', '.join(apart)}"
            if apart
            else ""
        )
        + (": consistent with" if not apart else ": only partly consistent with")
        + " Chung et al. (2014), who found the two comparable."
    )
    return (
        f"**Conclusion.** {quality} Training steps: GRU faster (> 5 %) on "
        f"{', '.join(faster) or 'no task'}, slower on {', '.join(slower) or 'no task'}; the "
        "3/4 recurrent weights are only part of the model (embeddings, attention and the "
        "output layer cost the same for both)."
    )


def _ci_has_zero(ci: tuple[float, float, float]) -> bool:
    return ci[1] <= 0 <= ci[2]
