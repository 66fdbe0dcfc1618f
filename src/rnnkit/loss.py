"""The training loss of the encoder-decoder: cross-entropy over the real target tokens;
and the distribution the searches choose outputs from.

The loss is also importable from :mod:`rnnkit.model`, where it lived first.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["token_loss", "sequence_loss", "output_log_probs"]


def token_loss(logits: Tensor, target: Tensor, pad_id: int, label_smoothing: float = 0.0) -> Tensor:
    """Cross-entropy summed over the real target tokens (padding ignored).

    Args:
        logits: ``(B, T, V)``; target: ``(B, T)`` ids y_1 .. y_T (EOS included).
        label_smoothing: ε of Szegedy et al. 2016: the target distribution is
            (1 - ε) one-hot + ε uniform.
    """
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]),
        target.reshape(-1),
        ignore_index=pad_id,
        reduction="sum",
        label_smoothing=label_smoothing,
    )


def sequence_loss(
    logits: Tensor, target: Tensor, pad_id: int, label_smoothing: float = 0.0
) -> tuple[Tensor, int]:
    """:func:`token_loss` and the number of real tokens (read back from the device);
    divide for the per-token loss."""
    return token_loss(logits, target, pad_id, label_smoothing), int((target != pad_id).sum())


def output_log_probs(logits: Tensor, pad_id: int, bos_id: int) -> Tensor:
    """log p(y_t | y_<t, x) over the vocabulary (float32, last dimension) with ``<pad>``
    and ``<s>`` at -inf: never outputs (padding is no token, BOS only starts the
    decoder's input; label smoothing gives both a little mass). Their mass is left out,
    not renormalised, so a score is still the model's log-probability of its tokens, as
    ``rnnkit score`` computes it."""
    logp = torch.log_softmax(logits.float(), -1)
    logp[..., pad_id] = float("-inf")  # (scalar fills: no host copy, CUDA-graph safe)
    logp[..., bos_id] = float("-inf")
    return logp
