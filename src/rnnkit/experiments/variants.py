"""Experiment ``variants``: recurrent-cell variants on the adding problem and Multi30k.

Two published claims about LSTM variants are put to the test:

- Jozefowicz, Zaremba & Sutskever (2015), "An Empirical Exploration of Recurrent
  Network Architectures": initialising the LSTM's forget-gate bias to 1 closes most
  of the gap between the LSTM and the GRU.
- Greff, Srivastava, Koutník, Steunebrink & Schmidhuber (2017), "LSTM: A Search Space
  Odyssey": no variant significantly improves on the vanilla LSTM (coupled input and
  forget gates, CIFG, and dropping the peepholes cost nothing); the forget gate and
  the output activation are its critical parts.

Part 1 trains every cell on the adding problem of :mod:`long_memory` (same model,
data and protocol; one budget for all). Part 2 trains one Multi30k de→en
encoder-decoder (the small setting of :mod:`lstm_vs_gru`) per LSTM variant, each for
the same wall time, and scores dev and test BLEU (greedy).
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from rnnkit.checkpoint import load_bundle
from rnnkit.data import adding_batch
from rnnkit.evaluate import score
from rnnkit.experiments import long_memory as lm
from rnnkit.experiments import lstm_vs_gru as vg
from rnnkit.experiments.attention_length import missing_multi30k, multi30k_dir
from rnnkit.experiments.common import (
    QUICK_NOTE,
    QUICK_VERDICT,
    Report,
    machine,
    markdown_table,
    train_whole,
)
from rnnkit.layers import GRU, LSTM
from rnnkit.recurrent import CIFGLSTM, MGU, IndRNN, LayerNormLSTM, PeepholeLSTM
from rnnkit.train import load_pairs
from rnnkit.translate import translate_lines

__all__ = ["run", "summarise", "verdict", "CELLS", "FULL", "QUICK"]

NAME = "variants"


def _stock(layer: type, **kw: Any) -> lm.Layer:
    return lambda i, h: layer(i, h, batch_first=True, engine="auto", **kw)


# name → layer factory (input_size, hidden) for the adding problem
LAYERS: dict[str, lm.Layer] = {
    "LSTM": _stock(LSTM),
    "LSTM fb=1": _stock(LSTM, forget_bias=1.0),
    "LN-LSTM": _stock(LayerNormLSTM),
    "peephole": _stock(PeepholeLSTM),
    "CIFG": _stock(CIFGLSTM),
    "GRU": _stock(GRU),
    "MGU": _stock(MGU),
    "IndRNN": _stock(IndRNN),
}
CELLS = tuple(LAYERS)
GREFF = ("peephole", "CIFG", "LN-LSTM")  # architectural LSTM variants
OTHERS = ("GRU", "MGU", "IndRNN")
COLORS = dict(zip(CELLS, ("tab:blue", "tab:cyan", "tab:purple", "tab:green", "tab:olive",
                          "tab:orange", "tab:red", "tab:gray")))  # fmt: skip

FULL = lm.Setting((100, 200, 400), (0, 1, 2), 64, 500, 50, 1e-2, 1.0, 500, 50)
QUICK = lm.Setting((10, 20), (0,), 16, 30, 16, 1e-2, 1.0, 100, 10)

# Multi30k: (name, model.cell, model.forget_bias)
TRANSLATION = (
    ("LSTM", "lstm", None),
    ("LSTM fb=1", "lstm", 1.0),
    ("LN-LSTM", "layernorm_lstm", None),
    ("peephole", "peephole_lstm", None),
    ("CIFG", "cifg_lstm", None),
)
MULTI30K = {
    "full": vg.Setting(128, 192, 10**6, 50, 25, dev=250, vocab=4000, lr=2e-3, dropout=0.2,
                       minutes=3.5),
    "quick": vg.Setting(16, 16, 6, 3, 3, train=300, dev=10, test=30, vocab=300, lr=2e-3,
                        minutes=0.2),
}  # fmt: skip


# ---------------------------------------------------------------- part 1: adding problem


def adding(s: lm.Setting, log: vg.Log) -> list[dict]:
    """Train every (T, seed, cell) of ``s`` from scratch; the runs of
    :func:`long_memory.train_one`, plus ``diverged`` (a non-finite test MSE)."""
    runs = []
    for T in s.lengths:
        test = adding_batch(s.n_test, T, torch.Generator().manual_seed(1_000_000 + T))
        for seed in s.seeds:
            for cell in CELLS:
                r = lm.train_one(cell, T, seed, s, test, LAYERS)
                r["diverged"] = not math.isfinite(r["mse"])
                runs.append(r)
                log(f"T={T} seed={seed} {cell}: test MSE {r['mse']:.4g} ({r['seconds']:.0f} s)")
    return runs


def summarise(runs: list[dict], s: lm.Setting) -> list[dict]:
    """One row per (T, cell): median / min / max final test MSE over seeds (a diverged
    run counts as +inf), seeds solved, steps to solve (median), steps and seconds."""
    rows = []
    for T in s.lengths:
        for cell in CELLS:
            these = [r for r in runs if r["cell"] == cell and r["T"] == T]
            mses = [r["mse"] if math.isfinite(r["mse"]) else math.inf for r in these]
            first = [r["solved_at"] for r in these if r["solved_at"] is not None]
            rows.append({
                "task": "adding", "T": T, "cell": cell, "MSE median": statistics.median(mses),
                "MSE min": min(mses), "MSE max": max(mses),
                "solved": f"{sum(m < lm.SOLVED for m in mses)}/{len(mses)}",
                "steps to solve": f"{statistics.median(first):.0f}" if first else "—",
                "steps run": f"{statistics.fmean(r['steps'] for r in these):.0f}",
                "s / run": statistics.fmean(r["seconds"] for r in these),
                "diverged": sum(r["diverged"] for r in these),
            })  # fmt: skip
    return rows


# ---------------------------------------------------------------- part 2: Multi30k


def translation(s: vg.Setting, out: Path, folder: Path, log: vg.Log) -> tuple[list[dict], str]:
    """One encoder-decoder per LSTM variant, each trained for ``s.minutes`` of wall time
    (validations included); rows with steps, dev BLEU curve, test BLEU and its paired
    bootstrap difference from the LSTM. Also returns a sentence about the data."""
    data, about = vg._task_data("multi30k", s, out, folder)
    res: dict[str, dict[str, Any]] = {}
    for name, cell, fb in TRANSLATION:
        run_dir = out / (f"multi30k-{cell}" + ("-fb1" if fb else ""))
        shutil.rmtree(run_dir, ignore_errors=True)  # from scratch, never resumed
        log(f"[multi30k] training {name} for {s.minutes:g} min")
        cfg = vg._config(data, s, cell)
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, forget_bias=fb))
        result = train_whole(cfg, run_dir, log)
        bundle = load_bundle(run_dir / "last.pt")
        test = load_pairs(cfg)["test"]
        hyps = [t[0].text for t in translate_lines(bundle, [x for x, _ in test], beam_size=1)]
        refs = [y for _, y in test]
        curve, _ = vg.learning_curve(run_dir / "log.csv")
        res[name] = {"steps": result.steps, "curve": curve, "hyps": hyps,
                     "test": score(hyps, refs)["bleu"]}  # fmt: skip
    common = min(r["curve"][-1]["train_s"] for r in res.values())
    rows = []
    for name, r in res.items():
        d, lo, hi = vg.paired_bootstrap(r["hyps"], res["LSTM"]["hyps"], refs, "bleu")
        rows.append({
            "task": "multi30k", "cell": name, "steps": r["steps"],
            "training s": round(r["curve"][-1]["train_s"]),
            "dev BLEU (final)": r["curve"][-1]["bleu"],
            f"dev BLEU @ {common:.0f} s": vg.at_time(r["curve"], common)["bleu"],
            "test BLEU": r["test"], "Δ test vs LSTM": d, "95 % lo": lo, "95 % hi": hi,
            "curve": r["curve"],
        })  # fmt: skip
    return rows, about


# ---------------------------------------------------------------- reading the numbers


def _solved(r: dict) -> int:
    return int(r["solved"].split("/")[0])


def compare(rows: list[dict], a: str, b: str, T: int) -> str:
    """``a`` against ``b`` at length T: "better" when ``a`` solves more seeds and every
    seed of ``a`` ends below every seed of ``b``, unsolved runs counting as equal (their
    MSEs near the baseline are noise, and early stopping makes those of solved runs
    meaningless when both solve every seed). That needs every seed of ``a`` solved; for
    n against n seeds it is the most a one-sided rank test can say, p = 1 / C(2n, n)
    (1/20 for 3). "worse" the other way round; else "tied"."""
    ra, rb = (next(r for r in rows if r["cell"] == c and r["T"] == T) for c in (a, b))
    key = lambda m: min(m, lm.SOLVED)  # noqa: E731  every unsolved run ties at the threshold
    if _solved(ra) > _solved(rb) and key(ra["MSE max"]) < key(rb["MSE min"]):
        return "better"
    if _solved(ra) < _solved(rb) and key(ra["MSE min"]) > key(rb["MSE max"]):
        return "worse"
    return "tied"


def _Ts(Ts: list[int]) -> str:
    return "T = " + ", ".join(map(str, Ts))


def _jozefowicz(rows: list[dict], mt: list[dict]) -> str:
    lengths = sorted({r["T"] for r in rows})
    k = {(r["cell"], r["T"]): _solved(r) for r in rows}
    n = rows[0]["solved"].split("/")[1]
    gap = [T for T in lengths if k["GRU", T] > k["LSTM", T]]
    counts = "; ".join(
        f"T = {T}: LSTM {k['LSTM', T]}/{n}, LSTM fb=1 {k['LSTM fb=1', T]}/{n}, "
        f"GRU {k['GRU', T]}/{n}"
        for T in lengths
    )
    text = f"Seeds solved — {counts}. "
    if not any(k.values()):
        text += (
            "No cell solves a seed at any length in this budget, so the run does not test the claim"
        )
    elif not gap:
        text += (
            "The LSTM solves as many seeds as the GRU at every length, so there is no gap to close"
        )
        better = [T for T in lengths if k["LSTM fb=1", T] > k["LSTM", T]]
        text += f"; forget bias 1 adds solved seeds at {_Ts(better)}" if better else ""
    else:
        closed = [T for T in gap if k["LSTM fb=1", T] >= k["GRU", T]]
        narrowed = [T for T in gap if k["LSTM", T] < k["LSTM fb=1", T] < k["GRU", T]]
        kept = [T for T in gap if k["LSTM fb=1", T] <= k["LSTM", T]]
        verbs = (("closes it", closed), ("narrows it", narrowed), ("leaves it", kept))
        parts = [f"{verb} at {_Ts(Ts)}" for verb, Ts in verbs if Ts]
        text += f"The GRU is ahead of the LSTM at {_Ts(gap)}; forget bias 1 " + ", ".join(parts)
        if closed and not kept and not narrowed:
            text += ": on the adding problem, the claim holds here"
        elif closed or narrowed:
            text += ": on the adding problem, the claim holds in part"
        else:
            text += ": on the adding problem, within this step budget, the claim does not hold"
    hurt = [T for T in lengths if k["LSTM fb=1", T] < k["LSTM", T]]
    text += f"; forget bias 1 solves fewer seeds than torch's init at {_Ts(hurt)}" if hurt else ""
    text += "."
    fb = next((r for r in mt if r["cell"] == "LSTM fb=1"), None)
    if fb is not None:
        text += " On Multi30k (no GRU in this part) " + _bleu_call(fb) + "."
    return text


def _bleu_call(r: dict) -> str:
    d, lo, hi = r["Δ test vs LSTM"], r["95 % lo"], r["95 % hi"]
    call = "not significant" if lo <= 0 <= hi else ("better" if d > 0 else "worse")
    return (
        f"{r['cell']} scores {r['test BLEU']:.2f} test BLEU, {d:+.2f} against the LSTM "
        f"(95 % bootstrap interval {lo:+.2f} to {hi:+.2f}: {call})"
    )


def _greff(rows: list[dict], mt: list[dict]) -> str:
    lengths = sorted({r["T"] for r in rows})
    calls = {c: {T: compare(rows, c, "LSTM", T) for T in lengths} for c in GREFF + OTHERS}

    def said(cells: tuple[str, ...]) -> str:
        out = []
        for c in cells:
            better = [T for T in lengths if calls[c][T] == "better"]
            worse = [T for T in lengths if calls[c][T] == "worse"]
            bits = [f"better at {_Ts(better)}"] * bool(better)
            bits += [f"worse at {_Ts(worse)}"] * bool(worse)
            out.append(f"{c} {', '.join(bits) if bits else 'tied at every T'}")
        return "; ".join(out)

    winners = [c for c in GREFF if "better" in calls[c].values()]
    mt_wins = [r["cell"] for r in mt if r["cell"] in GREFF and r["95 % lo"] > 0]
    text = f"Adding problem, against the LSTM: {said(GREFF)}"
    if mt:
        text += ". Multi30k: " + "; ".join(_bleu_call(r) for r in mt if r["cell"] in GREFF)
    if not winners and not mt_wins:
        text += ". No LSTM variant beats the LSTM here, as Greff et al. found"
    else:
        where = [f"{', '.join(winners)} on the adding problem"] * bool(winners)
        where += [f"{', '.join(mt_wins)} on Multi30k test BLEU"] * bool(mt_wins)
        text += f". Against Greff et al.'s finding, {'; '.join(where)} beat the LSTM"
        text += " (Multi30k: one training run per cell; its interval covers the choice of "
        text += "test sentences, not training noise, so it overstates the evidence)" * bool(mt_wins)
    losers = [c for c in GREFF if "worse" in calls[c].values()]
    if losers:
        text += f" ({', '.join(losers)} fall behind it at some T)"
    return (
        text + f". Outside their set: {said(OTHERS)}. Every variant here keeps a forget "
        "gate (CIFG ties it to the input gate) and the tanh output activation, so this run "
        "does not test which parts are critical."
    )


def verdict(rows: list[dict], mt: list[dict]) -> str:
    """The two claims, read off the adding-problem rows and the Multi30k rows."""
    n = int(rows[0]["solved"].split("/")[1])
    return (
        f"- **Jozefowicz et al. 2015** (forget bias 1 closes the LSTM-GRU gap): "
        f"{_jozefowicz(rows, mt)}\n- **Greff et al. 2017** (no variant significantly beats "
        f"the LSTM): {_greff(rows, mt)}\n\n*better / worse* on the adding problem: more seeds "
        "solved and every seed's final MSE on one side of every LSTM seed's, unsolved runs "
        "counting as equal (so *better* needs every seed solved), the strongest "
        f"result {n} seed(s) against {n} allow (one-sided rank test p = "
        f"{1 / math.comb(2 * n, n):.2g}); anything less is *tied*. With {n} seed(s), none of "
        "this is significant in the usual two-sided sense (p < 0.05)."
    )


# ---------------------------------------------------------------- figures and report


def plot_translation(mt: list[dict], path: Path) -> Path:
    """Dev BLEU against training seconds and against steps, one line per variant."""
    plt = lm._pyplot()
    from rnnkit.figures import save_figure

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.9))
    for r in mt:
        y = [p["bleu"] for p in r["curve"]]
        for ax, key in zip(axes, ("train_s", "step")):
            ax.plot([p[key] for p in r["curve"]], y, "o-", ms=3, color=COLORS[r["cell"]],
                    label=r["cell"])  # fmt: skip
    for ax, xlabel in zip(axes, ("training time (s, single thread)", "update step")):
        ax.set(xlabel=xlabel, ylabel="dev BLEU (greedy)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Multi30k de→en: LSTM variants, equal wall time each")
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def run(out_dir: Path, quick: bool, log: vg.Log, data_dir: Path | None = None) -> Report:
    """Part 1 (adding problem), part 2 (Multi30k, skipped with a reason when absent)."""
    t0, cpu0 = time.perf_counter(), time.process_time()
    s = QUICK if quick else FULL
    runs = adding(s, log)
    rows = summarise(runs, s)
    t_adding = time.perf_counter() - t0
    folder = multi30k_dir(data_dir)
    skipped = missing_multi30k(folder)
    mt: list[dict] = []
    about = ""
    ms = MULTI30K["quick" if quick else "full"]
    if skipped is None:
        mt, about = translation(ms, out_dir, folder, log)
    else:
        log(f"skipping Multi30k: {skipped}")
    figures = [
        lm.plot_curves(runs, s, out_dir / "variants_curves.png", CELLS, COLORS),
        lm.plot_final(runs, s, out_dir / "variants_final.png", CELLS, COLORS),
    ] + ([plot_translation(mt, out_dir / "variants_multi30k.png")] if mt else [])
    links = [f.name for f in figures]  # (rnnkit experiment places them by the page)
    table = markdown_table(rows, [k for k in rows[0] if k not in ("task", "diverged")])
    mt_table = markdown_table(mt, [k for k in mt[0] if k not in ("task", "curve")]) if mt else ""
    log(table + "\n\n" + mt_table)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    cmd = f"rnnkit experiment {NAME}" + (" --quick" if quick else "")
    n_div = sum(r["diverged"] for r in rows)
    md = f"""## Recurrent variants: forget bias, peepholes, CIFG, layer norm, GRU, MGU, IndRNN

Two claims: Jozefowicz et al. (2015) — initialising the LSTM's forget-gate bias to 1
closes the gap between the LSTM and the GRU; Greff et al. (2017, "LSTM: A Search Space
Odyssey") — no variant significantly improves on the vanilla LSTM; the forget gate and
the output activation are what matter. Cells: `rnnkit.LSTM` (torch's init; this is
Greff et al.'s *NP*, no-peephole, variant), `LSTM fb=1` (`forget_bias=1.0`: the
forget-gate biases sum to 1), `LayerNormLSTM`, `PeepholeLSTM` (Greff et al.'s
*vanilla*), `CIFGLSTM`, `GRU`, `MGU`, `IndRNN` (relu, u ~ U(0, 1)).
{QUICK_NOTE if quick else ""}

- Command: `{cmd}` ({seconds / 60:.1f} min wall time, {cpu / 60:.1f} min CPU; the adding
  problem {t_adding / 60:.1f} min), single-threaded.
- Machine: {machine()}; shared with other jobs, so seconds are indicative.
- Part 1, the adding problem (protocol of `long-memory`): T = {", ".join(map(str, s.lengths))};
  hidden {s.hidden}, a linear read-out of the final state; the same budget for every
  cell: at most {s.steps} steps of Adam (lr {s.lr:g} for all, IndRNN included;
  {n_div} run(s) diverged) on {s.batch} fresh sequences, gradient norm clipped at
  {s.clip:g}; seeds {", ".join(map(str, s.seeds))}; test MSE on {s.n_test} held-out
  sequences every {s.eval_every} steps, stopping once below {lm.DONE:.5f}. *Solved*:
  final test MSE below baseline / 10 = {lm.SOLVED:.4f} (baseline 1/6: always predict 1).
  LSTM and GRU run torch's fused kernels, the others rnnkit's Python step loop, so
  *s / run* compares implementations as much as cells.
""" + (
        f"""- Part 2, {about}; E={ms.emb}, H={ms.hidden}, Bahdanau attention, bidirectional
  encoder, lr {ms.lr:g}, dropout {ms.dropout:g}, seed 1; each model trains for
  {ms.minutes:g} min of wall time (validations included; *training s* leaves them out),
  dev BLEU (greedy) every {ms.validate_every} steps; test BLEU greedy, with a 95 % paired
  bootstrap interval of its difference from the LSTM (test-sentence sampling only,
  one training seed).
"""
        if mt
        else f"- Part 2 skipped: {skipped if skipped else ''}.\n"
    )
    md += f"\n### Adding problem\n\n{table}\n\n![curves]({links[0]})\n![final MSE]({links[1]})\n"
    if mt:
        md += f"\n### Multi30k de→en\n\n{mt_table}\n\n![dev BLEU]({links[2]})\n"
    heading = "### Verdict" + (f" {QUICK_VERDICT}" if quick else "")
    md += f"\n{heading}\n\n{verdict(rows, mt)}\n"
    return Report(NAME, md, rows=rows + mt, figures=figures, seconds=seconds)
