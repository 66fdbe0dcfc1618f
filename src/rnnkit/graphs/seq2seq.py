"""The encoder-decoder on static shapes: the teacher-forced loss and greedy decoding,
each one graph per bucket on CUDA (the per-step decoder loop included).

Batches are padded to buckets of B, S and T: padded rows are a one-token source of
padding (length 1, so attention has something to attend to) and a target of padding,
which the loss ignores; padded target steps lie after every real one, and the decoder
never looks ahead, so the real logits are those of the unpadded batch. Greedy decoding
runs every sentence to the bucket's length instead of dropping finished ones from the
batch: a finished sentence keeps writing EOS and adds nothing to its score, so no step
asks the host whether all are done.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnkit.graphs import capture
from rnnkit.graphs.buckets import bucket, pad_to
from rnnkit.model import Seq2Seq

__all__ = ["loss_sum", "greedy_tokens"]


def _pad_source(model: Seq2Seq, src: Tensor, src_lengths: Tensor) -> tuple[Tensor, Tensor]:
    """src ``(B, S)`` → ``(Bb, Sb)`` and lengths ``(Bb,)`` on src's device."""
    B, S = src.shape
    Bb, Sb = bucket(B), bucket(S)
    src_p = pad_to(pad_to(src, Sb, 1, model.pad_id), Bb, 0, model.pad_id)
    lens = src_lengths.to(src.device, torch.long, non_blocking=True)
    return src_p, pad_to(lens, Bb, 0, 1)


def loss_sum(
    model: Seq2Seq, src: Tensor, src_lengths: Tensor, tgt: Tensor, label_smoothing: float = 0.0
) -> Tensor:
    """Summed cross-entropy of the teacher-forced pass, as :func:`rnnkit.model.sequence_loss`.

    Args:
        src: ``(B, S)`` ids, src_lengths ``(B,)``; tgt: ``(B, T)`` BOS y_1 .. y_{T-1} EOS.
    Returns:
        the loss summed over the real target tokens (a scalar that backpropagates).
    """
    src_p, lens = _pad_source(model, src, src_lengths)
    Tb = bucket(tgt.shape[1] - 1) + 1
    tgt_p = pad_to(pad_to(tgt, Tb, 1, model.pad_id), src_p.shape[0], 0, model.pad_id)

    def fn(src: Tensor, lens: Tensor, tgt: Tensor) -> tuple[Tensor]:
        logits, _ = model(src, lens, tgt[:, :-1])
        loss = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]),
            tgt[:, 1:].reshape(-1),
            ignore_index=model.pad_id,
            reduction="sum",
            label_smoothing=label_smoothing,
        )
        return (loss,)

    key = ("loss", label_smoothing)
    return capture.call(model, key, fn, (src_p, lens, tgt_p))[0]


@torch.no_grad()
def greedy_tokens(
    model: Seq2Seq, src: Tensor, src_lengths: Tensor, limits: list[int]
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Greedy decoding of the whole bucket for ``max(limits)`` steps (rounded up).

    Args:
        src ``(B, S)``, src_lengths ``(B,)``; limits: each sentence's maximum output length.
    Returns:
        ids ``(B, Tb)`` (EOS after each sentence's end), summed log-probabilities ``(B,)``
        and attention ``(B, Tb, Sb)`` (zero after each end) or None.
    """
    B = src.shape[0]
    src_p, lens = _pad_source(model, src, src_lengths)
    lim = pad_to(torch.tensor(limits).to(src.device, non_blocking=True), src_p.shape[0], 0, 1)
    T = bucket(max(limits))

    def fn(src: Tensor, lens: Tensor, lim: Tensor) -> tuple[Tensor, ...]:
        enc = model.encode(src, lens)
        state = model.init_state(enc)
        n = src.shape[0]
        y = torch.full((n,), model.bos_id, dtype=torch.long, device=src.device)
        done = torch.zeros(n, dtype=torch.bool, device=src.device)
        scores = torch.zeros(n, device=src.device)
        ids, att = [], []
        for t in range(T):
            step = model.decode_step(y, state, enc)
            best, y = torch.log_softmax(step.logits.float(), -1).max(-1)
            scores = scores + best.masked_fill(done, 0.0)
            y = y.masked_fill(done, model.eos_id)
            ids.append(y)
            if step.attention is not None:
                att.append(step.attention.masked_fill(done.unsqueeze(1), 0.0))
            done = done | (y == model.eos_id) | (lim <= t + 1)
            state = step.state
        return (torch.stack(ids, 1), scores, *((torch.stack(att, 1),) if att else ()))

    outs = capture.call(model, ("greedy", T), fn, (src_p, lens, lim))
    return outs[0][:B], outs[1][:B], (outs[2][:B] if len(outs) > 2 else None)
