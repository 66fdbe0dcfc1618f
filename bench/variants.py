"""Speed of rnnkit's variant layers and regularisers, measured in one process.

Prints one table: for each comparison "candidate / reference", size and mode, the
median time of the reference and the ratio candidate / reference, for a training step
(forward + backward of ``out.sum()``, layers in train mode) and for inference (forward
under no_grad, layers in eval mode):

  a) ``LayerNormLSTM`` (explicit engine) / ``torch.nn.LSTM``: the price of the norms
     (also against torch.nn.LSTM with oneDNN off: on x86 CPUs its default is oneDNN's
     fused LSTM kernel, which no layer of separate operations can match);
  b) the autograd loop a user would write for the same LayerNorm LSTM / ``LayerNormLSTM``
     (same weights; checked to give the same outputs before it is timed);
  c) ``Recurrent(MyLSTMCell)``, the worked example of docs/cells.md, / ``rnnkit.LSTM``
     (explicit engine): the price of the custom-cell API;
  d) ``rnnkit.LSTM`` and ``GRU`` (explicit) with one of zoneout, recurrent_dropout,
     weight_drop / the same layer with none.

The candidates of a comparison are interleaved in each repeat (as bench/layers.py does),
so that a noisy machine hurts each alike. One torch thread unless --threads says so.

    python bench/variants.py [--repeats N] [--quick] [--threads N]
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import rnnkit
from rnnkit.cli.commands import positive_int

# torch.backends.mkldnn.flags() warns of Intel GPUs on every CPU build (oneDNN off for
# the reference column): not this benchmark's concern
warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")

SIZES = [(50, 64, 512), (100, 16, 128)]  # (T, B, I = H)
MODES = ("train", "infer")
REGULARISERS = {"zoneout": 0.1, "recurrent_dropout": 0.25, "weight_drop": 0.5}
ROWS = [  # (label, group, candidate, reference): the ratio is candidate / reference
    ("LayerNormLSTM / torch.nn.LSTM", "layernorm", "LayerNormLSTM", "torch.nn.LSTM"),
    ("LayerNormLSTM / torch.nn.LSTM, no oneDNN", "layernorm", "LayerNormLSTM", "no oneDNN"),
    ("autograd loop / LayerNormLSTM", "layernorm", "loop", "LayerNormLSTM"),
    ("Recurrent(MyLSTMCell) / LSTM explicit", "custom", "Recurrent(MyLSTMCell)", "LSTM"),
    *(
        (f"{kind} {reg} / none", kind, reg, "none")
        for kind in ("LSTM", "GRU")
        for reg in REGULARISERS
    ),
]
SAME_FUNCTION = {
    "layernorm": ("loop", "LayerNormLSTM"),
    "custom": ("Recurrent(MyLSTMCell)", "LSTM"),
}
DOCS = Path(__file__).resolve().parent.parent / "docs" / "cells.md"


def target(label: str, size: tuple[int, int, int], mode: str) -> tuple[str, float] | None:
    """The goal for a row: ("≤", r) for a ceiling on the ratio, ("≥", r) for a floor."""
    if label == "LayerNormLSTM / torch.nn.LSTM":
        return ("≤", 1.6 if size == (50, 64, 512) else 3.0)
    if label.endswith("no oneDNN"):  # what the separate operations cost: measured, no goal
        return None
    if label == "autograd loop / LayerNormLSTM":  # in training never slower than the
        # user's own loop; 2× cannot be reached: the loop makes the same matrix products
        return ("≥", 1.0) if mode == "train" else None
    if label.startswith("Recurrent("):
        return ("≤", 1.3)
    return ("≤", 1.2)


class LoopLayerNormLSTM(nn.Module):
    """The layer-normalised LSTM as a user would write it: one autograd step per t.

        (i, f, g, o) = LN(W_ih x_t)·γ_ih + b_ih + LN(W_hh h_{t-1})·γ_hh + b_hh
        c_t = σ(f) c_{t-1} + σ(i) tanh(g);  h_t = σ(o) tanh(LN(c_t)·γ_c + β_c)

    Parameters under ``rnnkit.LayerNormLSTM``'s names, so its state_dict loads here.
    """

    def __init__(self, input_size: int, hidden_size: int, eps: float = 1e-5) -> None:
        super().__init__()
        H, self.eps = hidden_size, eps
        self.weight_ih_l0 = nn.Parameter(torch.randn(4 * H, input_size) / H**0.5)
        self.weight_hh_l0 = nn.Parameter(torch.randn(4 * H, H) / H**0.5)
        self.bias_ih_l0 = nn.Parameter(torch.zeros(4 * H))
        self.bias_hh_l0 = nn.Parameter(torch.zeros(4 * H))
        self.ln_ih_gain_l0 = nn.Parameter(torch.ones(4 * H))
        self.ln_hh_gain_l0 = nn.Parameter(torch.ones(4 * H))
        self.ln_cell_gain_l0 = nn.Parameter(torch.ones(H))
        self.ln_cell_bias_l0 = nn.Parameter(torch.zeros(H))

    def forward(self, x: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """x ``(T, B, I)`` → output ``(T, B, H)``, ``(h_n, c_n)`` ``(1, B, H)``."""
        T, B, _ = x.shape
        H = self.weight_hh_l0.shape[1]
        hs, cs = [x.new_zeros(B, H)], [x.new_zeros(B, H)]
        for t in range(T):
            gi = F.layer_norm(
                F.linear(x[t], self.weight_ih_l0),
                (4 * H,),
                self.ln_ih_gain_l0,
                self.bias_ih_l0,
                self.eps,
            )
            gh = F.layer_norm(
                F.linear(hs[-1], self.weight_hh_l0),
                (4 * H,),
                self.ln_hh_gain_l0,
                self.bias_hh_l0,
                self.eps,
            )
            i, f, g, o = (gi + gh).chunk(4, dim=1)
            c = torch.sigmoid(f) * cs[-1] + torch.sigmoid(i) * torch.tanh(g)
            c_norm = F.layer_norm(c, (H,), self.ln_cell_gain_l0, self.ln_cell_bias_l0, self.eps)
            hs.append(torch.sigmoid(o) * torch.tanh(c_norm))
            cs.append(c)
        return torch.stack(hs[1:]), (hs[-1][None], cs[-1][None])


def my_lstm_cell() -> type[rnnkit.Cell]:
    """``MyLSTMCell`` from the first python block of docs/cells.md, as the docs define it."""
    match = re.search(r"```python\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S)
    if match is None:
        raise SystemExit(f"no ```python block in {DOCS}")
    namespace: dict[str, object] = {"__name__": "cells_md"}
    exec(compile(match.group(1), str(DOCS), "exec"), namespace)
    return namespace["MyLSTMCell"]  # type: ignore[return-value]


class WithoutOneDNN(nn.Module):
    """``torch.nn.LSTM`` run with oneDNN off: torch's own cell loop. On x86 CPUs the LSTM
    otherwise runs oneDNN's fused kernel, which no layer of separate operations (the
    norms need them) can match."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        with torch.backends.mkldnn.flags(enabled=False):
            return self.inner(x)


def build(group: str, H: int) -> dict[str, nn.Module]:
    """The modules of one comparison group, the reference's weights loaded where they fit."""
    torch.manual_seed(0)
    if group == "layernorm":
        ln = rnnkit.LayerNormLSTM(H, H, engine="explicit")
        loop = LoopLayerNormLSTM(H, H)
        loop.load_state_dict(ln.state_dict())
        ref = nn.LSTM(H, H)
        return {
            "torch.nn.LSTM": ref,
            "no oneDNN": WithoutOneDNN(ref),
            "LayerNormLSTM": ln,
            "loop": loop,
        }
    if group == "custom":
        lstm = rnnkit.LSTM(H, H, engine="explicit")
        mine = rnnkit.Recurrent(my_lstm_cell(), H, H, engine="explicit")
        mine.load_state_dict(lstm.state_dict())
        return {"LSTM": lstm, "Recurrent(MyLSTMCell)": mine}
    layer = getattr(rnnkit, group)  # LSTM or GRU
    mods = {"none": layer(H, H, engine="explicit")}
    for reg, value in REGULARISERS.items():
        mods[reg] = layer(H, H, engine="explicit", **{reg: value})
        mods[reg].load_state_dict(mods["none"].state_dict())
    return mods


def check_same_function(mods: dict[str, nn.Module], x: Tensor, a: str, b: str) -> None:
    """The fairness check: a and b give the same outputs and final states."""
    with torch.no_grad():
        (out_a, (h_a, c_a)), (out_b, (h_b, c_b)) = mods[a](x), mods[b](x)
    for got, want in ((out_a, out_b), (h_a, h_b), (c_a, c_b)):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5, msg=f"{a} ≠ {b}")


def _step(module: nn.Module, x: Tensor, mode: str) -> None:
    if mode == "train":
        out, _ = module(x)
        out.sum().backward()
    else:
        with torch.no_grad():
            module(x)


def measure(mods: dict[str, nn.Module], x: Tensor, repeats: int) -> dict[str, dict[str, float]]:
    """Median seconds per call of each module: {name: {mode: s}}, candidates interleaved."""
    times: dict[str, dict[str, list[float]]] = {n: {m: [] for m in MODES} for n in mods}
    for mode in MODES:
        for m in mods.values():
            m.train(mode == "train")
            _step(m, x, mode)  # warm up
        for _ in range(repeats):
            for name, m in mods.items():
                t0 = time.perf_counter()
                _step(m, x, mode)
                times[name][mode].append(time.perf_counter() - t0)
    return {n: {m: statistics.median(t[m]) for m in MODES} for n, t in times.items()}


def run_size(size: tuple[int, int, int], repeats: int) -> list[str]:
    """Measure every group at one size, print its rows; return the missed targets."""
    T, B, H = size
    torch.manual_seed(0)
    x = torch.randn(T, B, H, requires_grad=True)
    results = {}
    for group in dict.fromkeys(g for _, g, _, _ in ROWS):
        mods = build(group, H)
        if group in SAME_FUNCTION:
            check_same_function(mods, x.detach(), *SAME_FUNCTION[group])
        results[group] = measure(mods, x, repeats)
    misses = []
    for label, group, cand, ref in ROWS:
        for mode in MODES:
            base = results[group][ref][mode]
            ratio = results[group][cand][mode] / base
            goal, mark = target(label, size, mode), ""
            if goal:
                op, value = goal
                ok = ratio <= value if op == "≤" else ratio >= value
                mark = f"{op} {value:g} {'✓' if ok else '✗'}"
                if not ok:
                    misses.append(f"{label} {','.join(map(str, size))} {mode}: {ratio:.2f}")
            sz = ",".join(map(str, size))
            print(f"{label:40} {sz:>10} {mode:5} {base * 1e3:9.2f} {ratio:7.2f}  {mark}")
    return misses


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--repeats", type=positive_int, default=15, help="timed calls per module (default 15)"
    )
    ap.add_argument("--quick", action="store_true", help="the small size, 3 repeats (a smoke run)")
    ap.add_argument(
        "--threads", type=positive_int, default=1, help="torch threads (default 1, pinned)"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sizes = SIZES[1:] if args.quick else SIZES
    repeats = 3 if args.quick else args.repeats
    n = torch.get_num_threads()
    pinned = " (pinned by default; --threads N)" if args.threads == 1 else ""
    print(f"torch {torch.__version__}, {n} thread{'s' * (n != 1)}{pinned}, median of {repeats}")
    print(
        f"{'candidate / reference':40} {'T,B,H':>10} {'mode':5} {'ref ms':>9} {'ratio':>7}  target"
    )
    misses = [m for size in sizes for m in run_size(size, repeats)]
    print(
        "targets: LayerNormLSTM / torch.nn ≤ 1.6× at 50,64,512 and ≤ 3× at 100,16,128; "
        "autograd loop / LayerNormLSTM ≥ 1× (train; the 2× once asked for is out of reach: "
        "docs/cells.md#speed); Recurrent(MyLSTMCell) / LSTM ≤ 1.3×; "
        "regulariser / none ≤ 1.2×"
    )
    print("missed: " + ("; ".join(misses) if misses else "none"))
    skipped = [s for s in SIZES if s not in sizes]
    if skipped:  # (--quick): a target not measured is not met either
        print("not measured: " + "; ".join(",".join(map(str, s)) for s in skipped))


if __name__ == "__main__":
    main()
