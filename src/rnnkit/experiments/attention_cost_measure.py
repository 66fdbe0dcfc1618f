"""Measurements for ``attention-cost``: decoder step and sentence times, bytes held, fits.

The timing (CPU time of the one working thread, and wall time), the memory (bytes held
from the tensors' sizes, peak bytes of one step from the torch profiler) and the
least-squares fits of the growth in S that :mod:`rnnkit.experiments.attention_cost`
reports and plots.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import Tensor

from rnnkit.model import EncoderOutput, Seq2Seq

FULL_S = (10, 25, 50, 100, 200, 400)
QUICK_S = (10, 50, 100)
SIZES = {"vocab": 8000, "emb": 256, "hidden": 256, "batch": 32}  # vocab as configs/multi30k
STYLES = ("bahdanau", "none")
MiB = 2**20


def build_model(attention: str, seed: int = 0) -> Seq2Seq:
    """An untrained GRU encoder-decoder (bidirectional encoder) in eval mode."""
    torch.manual_seed(seed)
    V, E, H = SIZES["vocab"], SIZES["emb"], SIZES["hidden"]
    model = Seq2Seq(V, V, E, H, cell="gru", attention=attention, dropout=0.0, emb_dropout=0.0)
    return model.eval()


def held_bytes(enc: EncoderOutput, attention: bool) -> int:
    """Bytes the decoder must keep for the whole sentence to run its steps.

    With attention: the states h ``(B, S, 2H)``, the projected keys U h ``(B, S, H)`` and
    the mask ``(B, S)``; without: the summary C ``(B, 2H)``. From the tensors' sizes.
    """
    needed = [enc.states, enc.keys, enc.mask] if attention else [enc.final]
    return sum(t.numel() * t.element_size() for t in needed if t is not None)


def step_peak_bytes(model: Seq2Seq, y: Tensor, state: dict, enc: EncoderOutput) -> int:
    """Peak bytes of tensors allocated during one ``decode_step`` (torch profiler).

    Allocations and frees of each operator, in the order they ran, summed; the peak of
    that running sum. Tensors that existed before the step are not counted.
    """
    from torch.profiler import ProfilerActivity, profile

    with _no_stderr(), torch.no_grad():  # (kineto's C++ prints "USDT: ... profiler_start")
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            model.decode_step(y, state, enc)
    events = sorted(prof.events(), key=lambda e: e.time_range.start)
    live = peak = 0
    for e in events:
        live += e.self_cpu_memory_usage
        peak = max(peak, live)
    return int(peak)


@contextmanager
def _no_stderr() -> Iterator[None]:
    """File descriptor 2 on /dev/null for the block (what C++ code writes there too)."""
    if sys.stderr is not None:
        sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # (fd 2 closed: nothing is written anywhere)
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _source(S: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """Random source ids ``(B, S)`` (no padding) and lengths ``(B,)``."""
    B = SIZES["batch"]
    src = torch.randint(4, SIZES["vocab"], (B, S), generator=gen)
    return src, torch.full((B,), S, dtype=torch.long)


def _clock() -> tuple[float, float]:
    """(CPU time of this thread, wall time). With one torch thread every operator runs
    on the calling thread, so its CPU time is the work done, whatever else the machine
    is running; the wall time also counts the time spent waiting for a core."""
    return time.thread_time(), time.perf_counter()


def _since(t0: tuple[float, float]) -> tuple[float, float]:
    cpu, wall = _clock()
    return cpu - t0[0], wall - t0[1]


def _time_step(model: Seq2Seq, y: Tensor, state: dict, enc: EncoderOutput) -> tuple[float, float]:
    t0 = _clock()
    model.decode_step(y, state, enc)
    return _since(t0)


def _time_sentence(model: Seq2Seq, src: Tensor, lengths: Tensor, T: int) -> tuple[float, float]:
    """Encode, then T greedy steps (the argmax is fed back; no early stop)."""
    t0 = _clock()
    enc = model.encode(src, lengths)
    state = model.init_state(enc)
    y = torch.full((src.shape[0],), model.bos_id, dtype=torch.long)
    for _ in range(T):
        step = model.decode_step(y, state, enc)
        y, state = step.logits.argmax(-1), step.state
    return _since(t0)


def _median_ms(times: list[tuple[float, float]], which: int) -> float:
    return 1e3 * statistics.median(t[which] for t in times)


@torch.no_grad()
def measure(S: int, models: dict[str, Seq2Seq], step_repeats: int, sent_repeats: int) -> list[dict]:
    """One row per decoder style at source length S (T = S output steps per sentence).

    The styles are timed alternately, repeat by repeat, so that a slow spell of the
    machine hits both alike; each time is the median of its repeats.
    """
    src, lengths = _source(S, torch.Generator().manual_seed(S))
    y = torch.full((src.shape[0],), 2, dtype=torch.long)
    encs = {k: m.encode(src, lengths) for k, m in models.items()}
    states = {k: m.init_state(encs[k]) for k, m in models.items()}
    steps: dict[str, list[tuple[float, float]]] = {k: [] for k in models}
    sents: dict[str, list[tuple[float, float]]] = {k: [] for k in models}
    for k, m in models.items():  # warm-up
        for _ in range(3):
            _time_step(m, y, states[k], encs[k])
    for _ in range(step_repeats):
        for k, m in models.items():
            steps[k].append(_time_step(m, y, states[k], encs[k]))
    for _ in range(sent_repeats):
        for k, m in models.items():
            sents[k].append(_time_sentence(m, src, lengths, T=S))
    return [
        {
            "S": S,
            "attention": k,
            "step ms": _median_ms(steps[k], 0),
            "step wall ms": _median_ms(steps[k], 1),
            "sentence ms": _median_ms(sents[k], 0),
            "sentence wall ms": _median_ms(sents[k], 1),
            "held MiB": held_bytes(encs[k], k != "none") / MiB,
            "step peak MiB": step_peak_bytes(m, y, states[k], encs[k]) / MiB,
        }
        for k, m in models.items()
    ]


def fit(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Least squares y ≈ X·coef; returns (coef, R²)."""
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ coef
    total = float(((y - y.mean()) ** 2).sum())
    return coef, (1.0 - float((resid**2).sum()) / total) if total > 0 else float("nan")


def growth(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Fitted growth per decoder style.

    Per step: t = a + b·S (b in µs per source token). Per sentence with T = S:
    t = p·S + q·S² (q in µs per S·T). Also the log-log slope of the sentence time
    (its exponent in S), overall and between the two largest S, that of the extra time
    attention adds to a sentence, and the step time's ratio between the largest and
    smallest S.
    """
    out = {}
    for style in STYLES:
        rs = sorted((r for r in rows if r["attention"] == style), key=lambda r: r["S"])
        S = np.array([r["S"] for r in rs], dtype=float)
        step = np.array([r["step ms"] for r in rs]) * 1e3  # µs
        sent = np.array([r["sentence ms"] for r in rs]) * 1e3
        (a, b), r2_step = fit(np.stack([np.ones_like(S), S], 1), step)
        (p, q), r2_sent = fit(np.stack([S, S**2], 1), sent)
        slope = float(np.polyfit(np.log(S), np.log(sent), 1)[0])
        out[style] = {
            "a_us": float(a),
            "b_us": float(b),
            "r2_step": r2_step,
            "p_us": float(p),
            "q_us": float(q),
            "r2_sent": r2_sent,
            "loglog": slope,
            "step_ratio": float(step[-1] / step[0]),
            "quad_share": float(q * S[-1] ** 2 / sent[-1]),
            "loglog_last": float(np.log(sent[-1] / sent[-2]) / np.log(S[-1] / S[-2])),
        }
    (S1, e1), (S2, e2) = _extra_ms(rows)[-2:]
    slope = float(np.log(e2 / e1) / np.log(S2 / S1)) if e1 > 0 and e2 > 0 else float("nan")
    out["bahdanau"]["extra_loglog"] = slope  # between the two largest S
    return out


def _extra_ms(rows: list[dict]) -> list[tuple[float, float]]:
    """(S, sentence time with attention minus without) for each S: attention's own cost."""
    by = {(r["S"], r["attention"]): r["sentence ms"] for r in rows}
    lengths = sorted({r["S"] for r in rows})
    return [(float(S), by[S, "bahdanau"] - by[S, "none"]) for S in lengths]
