"""The encoder-decoder on static shapes: the teacher-forced loss and greedy decoding;
on CUDA the decoder's whole loop, one graph per bucket.

Batches are padded to buckets of B, S and T: padded rows are a one-token source of
padding (length 1, so attention has something to attend to) and a target of padding,
which the loss ignores; padded target steps lie after every real one, and the decoder
never looks ahead, so the real logits are those of the unpadded batch. Greedy decoding
runs every sentence to the bucket's length instead of dropping finished ones from the
batch: a finished sentence keeps writing EOS and adds nothing to its score, so no step
asks the host whether all are done.

The encoder runs before the graph, as it would anyway (torch's fused kernels when the
engine is auto or native, on packed sequences; the explicit engine through its own
per-bucket graph): its outputs are the graph's inputs, and in training their gradients
flow back out of it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from rnnkit.graphs import capture
from rnnkit.graphs.buckets import bucket, pad_to, rows
from rnnkit.loss import output_log_probs
from rnnkit.model import EncoderOutput, Seq2Seq, token_loss

__all__ = ["loss_sum", "greedy_tokens", "encoded", "decoding", "call_decoder"]


def encoded(model: Seq2Seq, src: Tensor, src_lengths: Tensor) -> EncoderOutput:
    """The encoder's output for src ``(B, S)`` padded to its bucket ``(Bb, Sb)``."""
    B, S = src.shape
    Bb, Sb = rows(B), bucket(S)
    src_p = pad_to(pad_to(src, Sb, 1, model.pad_id), Bb, 0, model.pad_id)
    # lengths stay on the CPU, as the encoder's layers want them (packing, checks); they
    # reach the GPU by non-blocking copies, so no host synchronisation
    return model.encode(src_p, pad_to(src_lengths.cpu().long(), Bb, 0, 1))


def decoding(
    model: Seq2Seq, src: Tensor, src_lengths: Tensor, limits: list[int]
) -> tuple[EncoderOutput, Tensor, int]:
    """What decoding on static shapes starts from: the encoder's output on the bucket,
    the length limits ``(Bb,)`` on the device (1 for padded rows) and the number of
    steps, ``max(limits)`` rounded up to its bucket."""
    enc = encoded(model, src, src_lengths)
    lim = torch.tensor(limits).to(src.device, non_blocking=True)
    return enc, pad_to(lim, enc.states.shape[0], 0, 1), bucket(max(limits))


def call_decoder(
    model: Seq2Seq,
    key: tuple,
    enc: EncoderOutput,
    extra: tuple[Tensor, ...],
    run: Callable[[EncoderOutput, tuple[Tensor, ...]], tuple[Tensor, ...]],
) -> tuple[Tensor, ...]:
    """``run(enc, extra)`` through the model's graph for ``key``: the encoder output's
    tensors and ``extra`` are the graph's inputs."""
    parts = (enc.states, enc.mask, enc.final) + (() if enc.keys is None else (enc.keys,))
    n = len(parts)

    def fn(*args: Tensor) -> tuple[Tensor, ...]:
        keys = args[3] if n == 4 else None
        return run(EncoderOutput(args[0], args[1], args[2], keys, None), args[n:])

    return capture.call(model, key, fn, parts + extra)


def loss_sum(
    model: Seq2Seq, src: Tensor, src_lengths: Tensor, tgt: Tensor, label_smoothing: float = 0.0
) -> Tensor:
    """Summed cross-entropy of the teacher-forced pass, as :func:`rnnkit.model.token_loss`.

    Args:
        src: ``(B, S)`` ids, src_lengths ``(B,)``; tgt: ``(B, T)`` BOS y_1 .. y_{T-1} EOS.
    Returns:
        the loss summed over the real target tokens (a scalar that backpropagates).
    """
    enc = encoded(model, src, src_lengths)
    Tb = bucket(tgt.shape[1] - 1) + 1
    tgt_p = pad_to(pad_to(tgt, Tb, 1, model.pad_id), enc.states.shape[0], 0, model.pad_id)

    def run(enc: EncoderOutput, extra: tuple[Tensor, ...]) -> tuple[Tensor]:
        (tgt,) = extra
        logits, _ = model.teacher_forced(enc, tgt[:, :-1])
        return (token_loss(logits, tgt[:, 1:], model.pad_id, label_smoothing),)

    return call_decoder(model, ("loss", label_smoothing), enc, (tgt_p,), run)[0]


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
    enc, lim, T = decoding(model, src, src_lengths, limits)
    n = lim.shape[0]

    def run(enc: EncoderOutput, extra: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        (lim,) = extra
        state = model.init_state(enc)
        y = torch.full((n,), model.bos_id, dtype=torch.long, device=lim.device)
        done = torch.zeros(n, dtype=torch.bool, device=lim.device)
        scores = torch.zeros(n, device=lim.device)
        ids, att = [], []
        for t in range(T):
            step = model.decode_step(y, state, enc)
            best, y = output_log_probs(step.logits, model.pad_id, model.bos_id).max(-1)
            scores = scores + best.masked_fill(done, 0.0)
            y = y.masked_fill(done, model.eos_id)
            ids.append(y)
            if step.attention is not None:
                att.append(step.attention.masked_fill(done.unsqueeze(1), 0.0))
            done = done | (y == model.eos_id) | (lim <= t + 1)
            state = step.state
        return (torch.stack(ids, 1), scores, *((torch.stack(att, 1),) if att else ()))

    outs = call_decoder(model, ("greedy", T), enc, (lim,), run)
    return outs[0][:B], outs[1][:B], (outs[2][:B] if len(outs) > 2 else None)
