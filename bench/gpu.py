"""Speed on a GPU: the explicit engine on static shapes and CUDA graphs, against cuDNN.

For LSTM, GRU and LayerNormLSTM (against cuDNN's LSTM) at several sizes, the median
time of cuDNN (``engine="native"``) and the ratios to it of the explicit engine with
graphs (``rnnkit.graphs`` mode auto on CUDA) and without (mode off), for a training
step (forward + backward) and for inference. Then the encoder-decoder of the Multi30k
recipe on random batches: target tokens per second of a training step and sentences
per second of greedy and beam-5 decoding, today's path (no graphs) against the static
one (the decoder loop one graph per bucket). TF32 is off (``--tf32``: on) so that
both sides do the same float32 arithmetic. Runs are interleaved.

On a machine without CUDA the same code runs on the CPU with graphs mode "on" (the
static path, eagerly): a dry run of the script, its ratios mean nothing for a GPU.

``--fuse`` adds LayerNormLSTM with its cell steps compiled by torch.compile (the
element-wise gate math fused), inside the graphs: whether fusing pays there.

    python bench/gpu.py [--repeats N] [--quick] [--size T,B,H] [--tf32] [--fuse] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable

import torch

import rnnkit
from rnnkit import graphs
from rnnkit.cli.commands import positive_int, positive_ints
from rnnkit.graphs.seq2seq import loss_sum
from rnnkit.loss import token_loss
from rnnkit.model import Seq2Seq
from rnnkit.search import beam_search, greedy_search

SIZES = [(50, 64, 512), (100, 16, 128), (200, 128, 1024)]  # (T, B, I = H)
TARGETS = {  # issue 14: graphs / cuDNN, train and infer
    ("LSTM", (50, 64, 512)): 1.5,
    ("GRU", (50, 64, 512)): 1.5,
    ("LSTM", (100, 16, 128)): 3.0,
    ("GRU", (100, 16, 128)): 3.0,
    ("LayerNormLSTM", (50, 64, 512)): 2.0,
}


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def timed(
    fns: dict[str, Callable[[], object]], repeats: int, dev: torch.device
) -> dict[str, float]:
    """Median seconds of each function, interleaved, after two warm-up calls each."""
    for f in fns.values():
        f()
        f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            _sync(dev)
            t0 = time.perf_counter()
            f()
            _sync(dev)
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def _layer_call(
    m: torch.nn.Module, x: torch.Tensor, train: bool, mode: str
) -> Callable[[], object]:
    def call() -> object:
        with graphs.mode(mode):
            if train:
                out = m(x)[0]
                out.sum().backward()
                return None
            with torch.no_grad():
                return m(x)[0]

    return call


def compiled_steps(m: torch.nn.Module) -> torch.nn.Module:
    """``m`` (a :class:`rnnkit.Recurrent`) with each cell's step compiled by
    torch.compile: its element-wise gate math fused into a few kernels (the question
    of issue 14: does fusing pay inside a CUDA graph?)."""
    for cell, _, _ in m._cells:
        cell.step = torch.compile(cell.step, dynamic=False)  # type: ignore[method-assign]
    return m


KINDS = ("LSTM", "GRU", "LayerNormLSTM")


def layers(
    sizes: list,
    repeats: int,
    dev: torch.device,
    on: str,
    fuse: bool = False,
    kinds: tuple[str, ...] = KINDS,
) -> list[dict]:
    rows = []
    for kind in kinds:
        for T, B, H in sizes:
            if kind == "LayerNormLSTM" and H > 512:
                continue
            torch.manual_seed(0)
            base = "LSTM" if kind == "LayerNormLSTM" else kind
            ref = getattr(rnnkit, base)(H, H, engine="native").to(dev)
            if kind == "LayerNormLSTM":
                mine = rnnkit.LayerNormLSTM(H, H).to(dev)
            else:
                mine = getattr(rnnkit, kind)(H, H, engine="explicit").to(dev)
                mine.load_state_dict(ref.state_dict())
            x = torch.randn(T, B, H, device=dev, requires_grad=True)
            fused = None
            if fuse and kind == "LayerNormLSTM":
                fused = compiled_steps(rnnkit.LayerNormLSTM(H, H).to(dev))
                fused.load_state_dict(mine.state_dict())
            for train in (True, False):
                calls = {
                    "cudnn": _layer_call(ref, x, train, "off"),
                    "graphs": _layer_call(mine, x, train, on),
                    "eager": _layer_call(mine, x, train, "off"),
                }
                if fused is not None:
                    calls["fused"] = _layer_call(fused, x, train, on)
                t = timed(calls, repeats, dev)
                rows.append(
                    {
                        "layer": kind,
                        "size": [T, B, H],
                        "mode": "train" if train else "infer",
                        "cudnn_ms": t["cudnn"] * 1e3,
                        "graphs_x": t["graphs"] / t["cudnn"],
                        "eager_x": t["eager"] / t["cudnn"],
                        "target": TARGETS.get((kind, (T, B, H))),
                    }
                )
                r = rows[-1]
                if "fused" in t:
                    r["fused_x"] = t["fused"] / t["cudnn"]
                fused_col = f"{r['fused_x']:9.2f}" if "fused_x" in r else f"{'-':>9}"
                print(
                    f"{kind:13} {','.join(map(str, r['size'])):>12} {r['mode']:5} "
                    f"{r['cudnn_ms']:9.2f} {r['graphs_x']:9.2f} {r['eager_x']:9.2f}"
                    + (f" {fused_col}" if fuse else "")
                    + (f"   (target ≤ {r['target']})" if r["target"] else ""),
                    flush=True,
                )
    return rows


def _batch(B: int, S: int, T: int, V: int, dev: torch.device) -> tuple:
    g = torch.Generator().manual_seed(0)
    src = torch.randint(4, V, (B, S), generator=g)
    lengths = torch.randint(S // 2, S + 1, (B,), generator=g)
    lengths[0] = S
    src[torch.arange(S) >= lengths[:, None]] = 0
    tgt = torch.randint(4, V, (B, T), generator=g)
    tgt[:, 0] = 2
    return src.to(dev), lengths, tgt.to(dev)


def seq2seq(repeats: int, dev: torch.device, on: str, quick: bool) -> dict:
    """The Multi30k recipe's model (GRU 512, Bahdanau, BPE 8000) on random batches, the
    same model (engine auto) with graphs off (today) and on (static); ``quick``: a
    small one."""
    V, B, S, T = (500, 8, 10, 10) if quick else (8000, 128, 16, 17)
    E, H = (64, 128) if quick else (256, 512)
    torch.manual_seed(0)
    model = Seq2Seq(V, V, E, H, cell="gru", tie_embeddings=True).to(dev)
    src, lengths, tgt = _batch(B, S, T, V, dev)
    ntok = int((tgt[:, 1:] != 0).sum())

    def with_mode(mode: str, f: Callable[[], object]) -> Callable[[], object]:
        def call() -> object:
            with graphs.mode(mode):
                return f()

        return call

    def step_today() -> None:
        logits, _ = model(src, lengths, tgt[:, :-1])
        token_loss(logits, tgt[:, 1:], 0).backward()  # as the trainer: no count read back

    def step_static() -> None:
        loss_sum(model, src, lengths, tgt).backward()

    t = timed(
        {"today": with_mode("off", step_today), "static": with_mode(on, step_static)}, repeats, dev
    )
    model.eval()
    greedy = lambda: greedy_search(model, src, lengths, 1.0, 5)  # noqa: E731
    beam = lambda: beam_search(model, src, lengths, 5, 1.0, 1.0, 5)  # noqa: E731
    g = timed({"today": with_mode("off", greedy), "static": with_mode(on, greedy)}, repeats, dev)
    b = timed({"today": with_mode("off", beam), "static": with_mode(on, beam)}, repeats, dev)
    res = {
        "train_tok_s_today": ntok / t["today"],
        "train_tok_s_static": ntok / t["static"],
        "greedy_sent_s_today": B / g["today"],
        "greedy_sent_s_static": B / g["static"],
        "beam5_sent_s_today": B / b["today"],
        "beam5_sent_s_static": B / b["static"],
    }
    print(
        f"seq2seq train step ({B} sentences, {ntok} target tokens): "
        f"{res['train_tok_s_today']:,.0f} tok/s today, {res['train_tok_s_static']:,.0f} static "
        f"({t['today'] / t['static']:.2f}×)"
    )
    for name, r in (("greedy", g), ("beam 5", b)):
        print(
            f"{name} decoding: {B / r['today']:,.0f} sentences/s today, "
            f"{B / r['static']:,.0f} static ({r['today'] / r['static']:.2f}×)"
        )
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeats", type=positive_int, default=20, help="timed calls per candidate")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="one size, a small seq2seq model, 3 repeats (a smoke run)",
    )
    ap.add_argument("--tf32", action="store_true", help="let cuDNN and cuBLAS use TF32")
    ap.add_argument("--json", help="also write the numbers to this JSON file")
    ap.add_argument("--layers", nargs="+", choices=KINDS, default=list(KINDS))
    ap.add_argument("--no-seq2seq", action="store_true", help="the layers' table alone")
    ap.add_argument(
        "--size", type=positive_ints, help="one size T,B,H instead of the table's (e.g. 50,64,512)"
    )
    ap.add_argument(
        "--fuse",
        action="store_true",
        help="also LayerNormLSTM with torch.compile'd cell steps, with graphs ('fused ×')",
    )
    args = ap.parse_args()
    if args.size and len(args.size) != 3:
        ap.error(f"--size: three integers T,B,H, got {len(args.size)}")
    cuda = torch.cuda.is_available()
    dev = torch.device("cuda" if cuda else "cpu")
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = args.tf32
    on = "auto" if cuda else "on"
    sizes = SIZES[1:2] if args.quick else SIZES
    if args.size:
        t, b, h = args.size
        sizes = [(t, b, h)]
    repeats = 3 if args.quick else args.repeats
    name = torch.cuda.get_device_name() if cuda else "CPU (dry run: graphs mode 'on', eager)"
    print(
        f"torch {torch.__version__}, {name}, "
        f"TF32 {'on' if args.tf32 else 'off'}, median of {repeats}"
    )
    print(
        f"{'layer':13} {'T,B,H':>12} {'mode':5} {'cuDNN ms':>9} {'graphs ×':>9} {'eager ×':>9}"
        + (f" {'fused ×':>9}" if args.fuse else "")
    )
    rows = layers(sizes, repeats, dev, on, args.fuse, tuple(args.layers))
    write_json(args.json, name, rows, {})  # (a run cut short keeps the layers' table)
    misses = [
        f"{r['layer']} {r['size']} {r['mode']}: {r['graphs_x']:.2f} > {r['target']}"
        for r in rows
        if r["target"] and r["graphs_x"] > r["target"]
    ]
    print("missed: " + ("; ".join(misses) if misses else "none"))
    measured = {(r["layer"], tuple(r["size"])) for r in rows}
    skipped = [f"{k} {','.join(map(str, s))}" for k, s in TARGETS if (k, s) not in measured]
    if skipped:  # (--quick, --size, --layers): a target not measured is not met either
        print("not measured: " + "; ".join(skipped))
    s2s = {} if args.no_seq2seq else seq2seq(repeats, dev, on, args.quick)
    write_json(args.json, name, rows, s2s)


def write_json(path: str | None, device: str, rows: list, s2s: dict) -> None:
    """The numbers so far into ``path`` (replaced whole), if one was given."""
    if path:
        tmp = f"{path}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"device": device, "layers": rows, "seq2seq": s2s}, f, indent=1)
        os.replace(tmp, path)


if __name__ == "__main__":
    main()
