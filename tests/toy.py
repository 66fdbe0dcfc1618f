"""The reverse task for model and search tests: batches, a short training loop, exact match.

A source is n symbols drawn from 4..V-1 followed by EOS; the target is the same symbols
reversed: ``BOS y_1 .. y_n EOS``. Special ids: PAD=0, UNK=1, BOS=2, EOS=3.
"""

from __future__ import annotations

import random
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor

from rnnkit.checkpoint import Bundle, build_model, save_checkpoint
from rnnkit.config import config_from_dict, config_to_dict
from rnnkit.data import Vocab, WordTokenizer
from rnnkit.model import Seq2Seq, sequence_loss
from rnnkit.search import greedy_search

PAD, UNK, BOS, EOS = 0, 1, 2, 3


def reverse_batch(
    rng: random.Random, B: int, lo: int, hi: int, V: int
) -> tuple[Tensor, Tensor, Tensor]:
    """B pairs with n ~ U{lo..hi} symbols: src ``(B, S)``, src_lengths ``(B,)``, tgt ``(B, T)``.

    ``src`` is ``x_1 .. x_n EOS`` padded with PAD, ``tgt`` is ``BOS x_n .. x_1 EOS`` padded.
    """
    ns = [rng.randint(lo, hi) for _ in range(B)]
    S = max(ns) + 1
    src = torch.full((B, S), PAD, dtype=torch.long)
    tgt = torch.full((B, S + 1), PAD, dtype=torch.long)
    for b, n in enumerate(ns):
        x = [rng.randint(4, V - 1) for _ in range(n)]
        src[b, : n + 1] = torch.tensor(x + [EOS])
        tgt[b, : n + 2] = torch.tensor([BOS] + x[::-1] + [EOS])
    return src, torch.tensor(ns) + 1, tgt


@contextmanager
def one_thread() -> Iterator[None]:
    """Run with one intra-op thread: these matrices are tiny, and two threads on a busy
    two-core machine spend their time waiting for each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_reverse(
    model: Seq2Seq,
    seed: int,
    steps: int,
    lo: int,
    hi: int,
    batch_size: int = 64,
    lr: float = 3e-3,
    clip: float = 1.0,
) -> Seq2Seq:
    """Adam on the per-token cross-entropy of fresh reverse batches, the learning rate
    decayed linearly to zero (the end point is then a converged model rather than one
    snapshot of an oscillation); returns the model in eval mode."""
    V = model.W_out.out_features
    rng = random.Random(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    decay = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1 - k / steps)
    model.train()
    with one_thread():
        for _ in range(steps):
            src, lengths, tgt = reverse_batch(rng, batch_size, lo, hi, V)
            logits, _ = model(src, lengths, tgt[:, :-1])
            loss, n = sequence_loss(logits, tgt[:, 1:], PAD)
            opt.zero_grad()
            (loss / n).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            decay.step()
    return model.eval()


def exact_match(model: Seq2Seq, seed: int, n: int, lo: int, hi: int) -> float:
    """Share of n held-out sources whose greedy output is exactly the reversed source."""
    V = model.W_out.out_features
    src, lengths, tgt = reverse_batch(random.Random(seed), n, lo, hi, V)
    with one_thread():
        hyps = greedy_search(model, src, lengths, max_len_a=1.0, max_len_b=2)
    refs = [[y for y in row if y not in (PAD, BOS, EOS)] for row in tgt.tolist()]
    return sum(h.tokens == r for h, r in zip(hyps, refs)) / n


WORDS = "a b c d e f g h".split()


def word_bundle(
    seed: int = 0, cell: str = "gru", words: list[str] = WORDS, lowercase: bool = False
) -> Bundle:
    """An untrained word-level model over ``words`` as a translation bundle (beam 3,
    outputs of at most |x| + 3 tokens, batches of 4)."""
    cfg = config_from_dict(
        {
            "data": {"task": "reverse", "tokenizer": "word", "lowercase": lowercase},
            "model": {"cell": cell, "emb_size": 8, "hidden_size": 12, "dropout": 0.0},
            "decode": {"beam_size": 3, "max_len_a": 1.0, "max_len_b": 3, "batch_size": 4},
        }
    )
    vocab = Vocab.build([words])
    torch.manual_seed(seed)
    model = build_model(cfg, len(vocab), len(vocab)).eval()
    tok = WordTokenizer()
    return Bundle(cfg, model, tok, tok, vocab, vocab, 0)


def save_bundle(b: Bundle, path: Path) -> Path:
    """``b`` as a checkpoint that ``rnnkit translate`` reads."""
    save_checkpoint(
        path,
        {
            "config": config_to_dict(b.config),
            "model": b.model.state_dict(),
            "src_tokenizer": b.src_tokenizer.to_state(),
            "tgt_tokenizer": b.tgt_tokenizer.to_state(),
            "src_vocab": b.src_vocab.to_state(),
            "tgt_vocab": b.tgt_vocab.to_state(),
            "step": 0,
        },
    )
    return path


@contextmanager
def reaped(proc: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    """``proc``, killed and waited for if it still runs when the block ends: a test that
    fails leaves no process behind."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
