"""rnnkit's own end-to-end speed, for tracking changes: training target tokens per second,
translation sentences per second (greedy and beam), and peak memory, at a few sizes.

Synthetic batches shaped like Multi30k (sources and targets of 8–24 tokens, 64
sentences, a vocabulary of 8,000) so that it needs no corpus.

    python bench/throughput.py [--sizes 128,256,512] [--steps N] [--threads N]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch

from rnnkit.cli.commands import non_negative_int, positive_int, positive_ints
from rnnkit.model import Seq2Seq, sequence_loss
from rnnkit.search import beam_search, greedy_search


def _batch(B: int, V: int, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    S = torch.randint(8, 25, (B,), generator=gen)
    T = torch.randint(8, 25, (B,), generator=gen)
    src = torch.zeros(B, int(S.max()), dtype=torch.long)
    tgt = torch.zeros(B, int(T.max()) + 2, dtype=torch.long)
    for b in range(B):
        src[b, : S[b]] = torch.randint(4, V, (int(S[b]),), generator=gen)
        tgt[b, 0] = 2
        tgt[b, 1 : T[b] + 1] = torch.randint(4, V, (int(T[b]),), generator=gen)
        tgt[b, T[b] + 1] = 3
    return src, S, tgt


def measure(hidden: int, steps: int, V: int = 8000, B: int = 64) -> dict[str, float]:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = Seq2Seq(V, V, emb_size=hidden, hidden_size=hidden, cell="gru", attention="bahdanau")
    opt = torch.optim.Adam(model.parameters(), lr=3e-4)
    batches = [_batch(B, V, gen) for _ in range(steps + 1)]
    model.train()
    times, tokens = [], []
    for i, (src, lens, tgt) in enumerate(batches):
        t0 = time.perf_counter()
        logits, _ = model(src, lens, tgt[:, :-1])
        loss, n = sequence_loss(logits, tgt[:, 1:], 0, 0.1)
        opt.zero_grad()
        (loss / n).backward()
        opt.step()
        if i:  # the first step warms up
            times.append(time.perf_counter() - t0)
            tokens.append(n)
    model.eval()
    src, lens, _ = batches[0]
    dec = {}
    for name, run in (
        ("greedy", lambda: greedy_search(model, src, lens, 1.0, 5)),
        ("beam5", lambda: beam_search(model, src, lens, 5, 1.0, 1.0, 5)),
    ):
        run()
        ts = []
        for _ in range(3):
            t0 = time.perf_counter()
            run()
            ts.append(time.perf_counter() - t0)
        dec[name] = B / statistics.median(ts)
    return {
        "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
        "train_tok_s": sum(tokens) / sum(times),
        "greedy_sent_s": dec["greedy"],
        "beam5_sent_s": dec["beam5"],
        "peak_rss_GiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--sizes", type=positive_ints, default=[128, 256, 512], help="hidden = embedding sizes"
    )
    ap.add_argument("--steps", type=positive_int, default=10, help="timed training steps per size")
    ap.add_argument(
        "--threads", type=non_negative_int, default=0, help="torch threads (0: torch's default)"
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; GRU encoder-decoder, "
        "Bahdanau attention, vocabulary 8,000, batches of 64 sentences"
    )
    print(
        f"{'hidden':>6} {'params M':>9} {'train tok/s':>12} {'greedy sent/s':>14} "
        f"{'beam5 sent/s':>13} {'peak RSS GiB':>13}"
    )
    for h in args.sizes:
        r = measure(h, args.steps)
        print(
            f"{h:6d} {r['params_M']:9.2f} {r['train_tok_s']:12.0f} {r['greedy_sent_s']:14.1f} "
            f"{r['beam5_sent_s']:13.1f} {r['peak_rss_GiB']:13.2f}"
        )
    print("peak RSS is the process's high-water mark so far (it only grows across sizes)")


if __name__ == "__main__":
    main()
