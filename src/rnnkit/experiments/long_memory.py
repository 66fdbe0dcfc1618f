"""Experiment ``long-memory``: the adding problem, plain RNN against LSTM and GRU.

The adding problem (Hochreiter & Schmidhuber 1997; protocol of Le et al. 2015,
arXiv 1504.00941, and Arjovsky et al. 2016, arXiv 1511.06464): a sequence of T pairs
(value ~ U(0, 1), marker); two markers are 1, one in each half; the target is the sum
of the two marked values. The model reads the whole sequence and predicts from its
final hidden state::

    h_T = RNN(x_1..x_T)          rnnkit.RNN / LSTM / GRU
    ŷ   = w^T h_T + b            mean squared error against y

Predicting 1 whatever the input gives MSE = Var(u_1 + u_2) = 2/12 ≈ 0.167: a model
beats it only by carrying the first marked value across at least T/2 steps. A run
counts as solved when its test MSE is below a tenth of that, 0.0167.

The claim under test (Hochreiter & Schmidhuber 1997; Bengio et al. 1994): a plain
RNN's gradient through h_t = tanh(W x_t + U h_{t-1}) vanishes over long gaps, so it
cannot learn the task beyond short T; the LSTM's additive cell state
c_t = f ⊙ c_{t-1} + i ⊙ g (and the GRU's h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}) keeps it.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from rnnkit.data import adding_batch
from rnnkit.experiments.common import (
    QUICK_NOTE,
    Report,
    duration,
    machine,
    markdown_table,
    verdict_heading,
)
from rnnkit.layers import GRU, LSTM, RNN

NAME = "long-memory"
CELLS = ("RNN", "LSTM", "GRU")
BASELINE = 1.0 / 6.0  # MSE of always predicting 1: Var(u_1 + u_2), u ~ U(0, 1)
SOLVED = BASELINE / 10.0
DONE = BASELINE / 100.0  # a run that gets here stops: the rest of its budget cannot matter


@dataclass(frozen=True)
class Setting:
    """One budget, the same for every cell: at most ``steps`` steps of ``batch`` sequences
    of Adam at ``lr``; the test MSE every ``eval_every`` steps."""

    lengths: tuple[int, ...]
    seeds: tuple[int, ...]
    hidden: int
    steps: int
    batch: int
    lr: float
    clip: float
    n_test: int
    eval_every: int


FULL = Setting((10, 20, 50, 100, 200, 400), (0, 1, 2), 64, 1000, 50, 1e-2, 1.0, 1000, 100)
QUICK = Setting((10, 20), (0,), 32, 150, 32, 1e-2, 1.0, 200, 25)


Layer = Callable[[int, int], nn.Module]  # (input_size, hidden) → a batch_first layer


def _layer(cls: type[nn.Module]) -> Layer:
    return lambda i, h: cls(i, h, batch_first=True, engine="auto")  # type: ignore[call-arg]


LAYERS: dict[str, Layer] = {"RNN": _layer(RNN), "LSTM": _layer(LSTM), "GRU": _layer(GRU)}


class AddingModel(nn.Module):
    """A recurrent layer (engine "auto") and a linear read-out of its final state.

    ``layers`` maps a cell name to its layer factory (default :data:`LAYERS`)."""

    def __init__(self, cell: str, hidden: int, layers: Mapping[str, Layer] = LAYERS) -> None:
        super().__init__()
        self.rnn = layers[cell](2, hidden)
        self.readout = nn.Linear(hidden, 1)

    def forward(self, x: Tensor) -> Tensor:
        """x ``(B, T, 2)`` → ŷ ``(B,)``."""
        out = self.rnn(x)[0]  # (B, T, H)
        return self.readout(out[:, -1]).squeeze(-1)


@torch.no_grad()
def held_out_mse(model: AddingModel, x: Tensor, y: Tensor, chunk: int = 500) -> float:
    """Mean squared error on a held-out set, ``chunk`` sequences at a time."""
    model.eval()
    total = sum(
        float(((model(x[i : i + chunk]) - y[i : i + chunk]) ** 2).sum())
        for i in range(0, len(y), chunk)
    )
    model.train()
    return total / len(y)


def train_one(
    cell: str,
    T: int,
    seed: int,
    s: Setting,
    test: tuple[Tensor, Tensor],
    layers: Mapping[str, Layer] = LAYERS,
) -> dict:
    """Train one model from scratch; returns its test-MSE curve and final MSE.

    The seed fixes the initial weights and the stream of training batches, which is
    the same for every cell at that seed. Training stops early once the test MSE is
    below :data:`DONE` (baseline / 100), or is no longer finite (diverged).
    """
    torch.manual_seed(seed)
    model = AddingModel(cell, s.hidden, layers)
    opt = torch.optim.Adam(model.parameters(), lr=s.lr)
    gen = torch.Generator().manual_seed(10_000 + seed)
    curve = [(0, held_out_mse(model, *test))]
    start = time.perf_counter()
    for step in range(1, s.steps + 1):
        x, y = adding_batch(s.batch, T, gen)
        loss = ((model(x) - y) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), s.clip)
        opt.step()
        if step % s.eval_every == 0 or step == s.steps:
            curve.append((step, held_out_mse(model, *test)))
            if curve[-1][1] < DONE or not math.isfinite(curve[-1][1]):
                break
    solved_at = next((k for k, m in curve if m < SOLVED), None)
    return {
        "cell": cell,
        "T": T,
        "seed": seed,
        "curve": curve,
        "mse": curve[-1][1],
        "steps": curve[-1][0],
        "solved_at": solved_at,
        "seconds": time.perf_counter() - start,
    }


def summarise(runs: list[dict], s: Setting) -> list[dict]:
    """One row per (cell, T): final test MSE over seeds and how many seeds solved it."""
    rows = []
    for T in s.lengths:
        for cell in CELLS:
            these = [r for r in runs if r["cell"] == cell and r["T"] == T]
            mses = [r["mse"] for r in these]
            solved = sum(m < SOLVED for m in mses)
            first = [r["solved_at"] for r in these if r["solved_at"] is not None]
            rows.append(
                {
                    "T": T,
                    "cell": cell,
                    "MSE mean": statistics.fmean(mses),
                    "MSE min": min(mses),
                    "MSE max": max(mses),
                    "solved (< 0.0167)": f"{solved}/{len(mses)}",
                    "steps to solve": f"{statistics.fmean(first):.0f}" if first else "—",
                    "steps run": f"{statistics.fmean(r['steps'] for r in these):.0f}",
                    "train s / run": statistics.fmean(r["seconds"] for r in these),
                }
            )
    return rows


COLORS = {"RNN": "tab:gray", "LSTM": "tab:blue", "GRU": "tab:orange"}


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _reference_lines(ax) -> None:  # type: ignore[no-untyped-def]
    ax.axhline(BASELINE, color="black", ls="--", lw=1, label="baseline (predict 1)")
    ax.axhline(SOLVED, color="green", ls=":", lw=1, label="baseline / 10")


def plot_curves(
    runs: list[dict],
    s: Setting,
    path: Path,
    cells: tuple[str, ...] = CELLS,
    colors: Mapping[str, str] = COLORS,
) -> Path:
    """Test MSE against training step, one panel per T, one line per (cell, seed)."""
    plt = _pyplot()
    n = len(s.lengths)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.3 * cols, 3.6 * rows), squeeze=False)
    for ax, T in zip(axes.flat, s.lengths):
        for cell in cells:
            for i, r in enumerate(x for x in runs if x["cell"] == cell and x["T"] == T):
                steps, mse = zip(*r["curve"])
                label = cell if i == 0 else None
                ax.semilogy(steps, mse, color=colors[cell], alpha=0.8, lw=1.2, label=label)
        _reference_lines(ax)
        ax.set(title=f"T = {T}", xlabel="training step", ylabel="test MSE (log scale)")
        ax.set_ylim(top=2.0)
        ax.grid(alpha=0.3, which="both")
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    handles, labels = axes[0][0].get_legend_handles_labels()  # beside the panels, not on
    fig.legend(handles, labels, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(
        f"Adding problem: test MSE while training (hidden {s.hidden}, batch {s.batch}, "
        f"{len(s.seeds)} seed(s): one line per seed)"
    )
    fig.tight_layout()
    from rnnkit.figures import save_figure

    return save_figure(fig, path, dpi=110)


def plot_final(
    runs: list[dict],
    s: Setting,
    path: Path,
    cells: tuple[str, ...] = CELLS,
    colors: Mapping[str, str] = COLORS,
) -> Path:
    """Final test MSE against T: a dot per seed, a line through the means."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.2, 4.3))
    for cell in cells:
        by_T = [[r["mse"] for r in runs if r["cell"] == cell and r["T"] == T] for T in s.lengths]
        for T, mses in zip(s.lengths, by_T):
            ax.scatter([T] * len(mses), mses, color=colors[cell], s=18, alpha=0.6)
        means = [statistics.fmean(m) for m in by_T]
        ax.plot(s.lengths, means, "o-", color=colors[cell], label=f"{cell} (mean; dots: seeds)")
    _reference_lines(ax)
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="sequence length T",
        ylabel="final test MSE",
        title=f"Adding problem: final test MSE (budget {s.steps} steps)",
    )
    ax.set_xticks(s.lengths, [str(T) for T in s.lengths])
    ax.minorticks_off()
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    from rnnkit.figures import save_figure

    return save_figure(fig, path, dpi=110)


def verdict(rows: list[dict], baselines: Mapping[int, float] | None = None) -> str:
    """Where each cell stops solving the task, from the table; ``baselines``: the test
    set's MSE of predicting 1 per T (default :data:`BASELINE` for every T)."""

    def solved(r: dict) -> bool:  # a majority of seeds below baseline / 10
        k, n = map(int, r["solved (< 0.0167)"].split("/"))
        return 2 * k > n

    lengths = sorted({r["T"] for r in rows})
    ok = {c: [r["T"] for r in rows if r["cell"] == c and solved(r)] for c in CELLS}
    best = {c: min((r for r in rows if r["cell"] == c), key=lambda r: r["MSE mean"]) for c in CELLS}

    def where(c: str) -> str:
        if not ok[c]:
            mse, T = best[c]["MSE mean"], best[c]["T"]
            base = (baselines or {}).get(T, BASELINE)
            than = f"{base / mse:.1f}× below" if mse < base / 1.1 else "no better than"
            than = f"{1 - mse / base:.0%} below" if base / 1.1 <= mse < base else than
            return (
                f"the {c} solves none of the lengths (its best mean MSE, {mse:.3g} at "
                f"T = {T}, is {than} that length's baseline, {base:.3g})"
            )
        fails = [T for T in lengths if T not in ok[c]]
        tail = f", not T = {', '.join(map(str, fails))}" if fails else ", every length tried"
        return f"the {c} solves T = {', '.join(map(str, ok[c]))}{tail}"

    reach = max(ok["RNN"], default=0)
    further = [c for c in ("LSTM", "GRU") if ok[c] and max(ok[c]) > reach]
    if len(further) == 2:
        claim = (
            "The claim holds here: the LSTM and the GRU carry the marked value across "
            "gaps where the plain RNN does not."
        )
    elif further:  # the claim names both gated cells
        other = "GRU" if further == ["LSTM"] else "LSTM"
        claim = (
            f"The claim holds in part: the {further[0]} carries the marked value across "
            f"gaps where the plain RNN does not; the {other} "
            + ("reaches no further than the plain RNN." if ok[other] else "solves none.")
        )
    elif ok["LSTM"] or ok["GRU"]:
        claim = "In this budget the gated cells reach no further than the plain RNN."
    else:
        claim = "No cell learns the task in this budget, so the run does not test the claim."
    unsolved = [T for T in lengths if not any(T in ok[c] for c in CELLS)]
    if unsolved:
        claim += (
            f" No cell solves T = {', '.join(map(str, unsolved))} within the budget "
            f"(a limit of the budget, not necessarily of the cells)."
        )
    return "Over a majority of seeds, " + "; ".join(where(c) for c in CELLS) + ". " + claim


def run(
    out_dir: Path, quick: bool, log: Callable[[str], None], data_dir: Path | None = None
) -> Report:
    """Train every (cell, T, seed), plot, and return the RESULTS.md section."""
    return _run(out_dir, QUICK if quick else FULL, quick, log)


def _run(out_dir: Path, s: Setting, quick: bool, log: Callable[[str], None]) -> Report:
    start, cpu0 = time.perf_counter(), time.process_time()
    runs = []
    baselines = {}
    for T in s.lengths:
        test = adding_batch(s.n_test, T, torch.Generator().manual_seed(1_000_000 + T))
        baselines[T] = float(((test[1] - 1.0) ** 2).mean())
        for seed in s.seeds:
            for cell in CELLS:
                r = train_one(cell, T, seed, s, test)
                runs.append(r)
                log(f"T={T} seed={seed} {cell}: test MSE {r['mse']:.4g} ({r['seconds']:.0f} s)")
    rows = summarise(runs, s)
    figures = [
        plot_curves(runs, s, out_dir / "long_memory_curves.png"),
        plot_final(runs, s, out_dir / "long_memory_final.png"),
    ]
    table = markdown_table(rows)
    log(table)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu0
    command = "rnnkit experiment long-memory" + (" --quick" if quick else "")
    base = ", ".join(f"{b:.3f} (T={T})" for T, b in baselines.items())
    md = f"""## Long memory: the adding problem, RNN against LSTM and GRU

The adding problem (Hochreiter & Schmidhuber 1997; protocol of Le et al. 2015 and
Arjovsky et al. 2016): predict the sum of the two marked values in a sequence of T
(value, marker) pairs, one marker in each half. `rnnkit.RNN` (tanh), `LSTM` and `GRU`
with hidden size {s.hidden} (engine "auto") and a linear read-out of the final state;
MSE, Adam (lr {s.lr:g}), gradient norm clipped at {s.clip:g}, default initialisation.
Equal budget for every cell: at most {s.steps} steps of {s.batch} fresh sequences;
seeds {", ".join(map(str, s.seeds))} (each fixes the initial weights and the batch
stream, the same for every cell). Test MSE on a fixed held-out set of {s.n_test}
sequences per T, every {s.eval_every} steps; a run stops early once it is below
baseline / 100 = {DONE:.5f}, where the rest of its budget could not change the table.
Baseline (always predict 1): MSE 1/6 ≈ {BASELINE:.3f}; on the test sets {base}.
*Solved*: final test MSE below baseline / 10 = {SOLVED:.4f}.

Regenerate: `{command}` ({duration(seconds)} wall time, {duration(cpu)} CPU time,
single-threaded).
Machine: {machine()}.{" " + QUICK_NOTE if quick else ""}

{table}

*MSE mean / min / max*: final test MSE over the seeds; *steps to solve*: the first
evaluation below baseline / 10, averaged over the seeds that got there; *steps run*:
mean steps trained (fewer than {s.steps} when a run stopped early); *train s / run*:
mean wall seconds to train one model.

![learning curves]({figures[0].name})
![final MSE against T]({figures[1].name})

{verdict_heading(quick)} {verdict(rows, baselines)}
"""
    return Report(NAME, md, rows=rows, figures=figures, seconds=seconds)
