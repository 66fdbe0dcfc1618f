"""The training loss of the encoder-decoder: cross-entropy over the real target tokens.

Also importable from :mod:`rnnkit.model`, where it lived first.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = ["token_loss", "sequence_loss"]


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
