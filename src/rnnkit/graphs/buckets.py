"""Bucket sizes for static shapes, and the padding that goes with them.

Time steps (and source positions) go to :func:`bucket`, batch rows to :func:`rows`.

A size is rounded up to the next rung of a ladder whose steps grow with it (8 up to 64,
then 16 up to 128, 32 up to 256, ...: an eighth of the next power of two), so padding
adds less than a quarter of the work and few distinct shapes (graphs) exist: T ≤ 128
gives 12 buckets.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["bucket", "rows", "pad_to", "held_steps"]


def bucket(n: int) -> int:
    """The bucket of size n ≥ 1: a multiple of 8 up to 64, beyond that a multiple of an
    eighth of the next power of two (65..128 → 16, 129..256 → 32, ...)."""
    step = 8 if n <= 64 else (1 << (n - 1).bit_length()) // 8
    return max(8, -(-n // step) * step)


def rows(n: int) -> int:
    """The bucket of a batch of n ≥ 1 rows: the next power of two, at least 8.

    Coarser than :func:`bucket`: token-based batching makes B vary from batch to batch,
    every (B, S, T) bucket is a capture of its own, and on a GPU the time of these
    launch-bound steps hardly grows with the rows; 1..512 rows give 7 buckets."""
    return max(8, 1 << (n - 1).bit_length())


def pad_to(x: Tensor, size: int, dim: int, value: float = 0.0) -> Tensor:
    """``x`` padded at the end of ``dim`` to ``size`` (``x`` itself when it fits)."""
    extra = size - x.shape[dim]
    if extra == 0:
        return x
    pad = [0, 0] * (x.dim() - 1 - dim % x.dim()) + [0, extra]
    return F.pad(x, pad, value=value)


def held_steps(lengths: Tensor, T: int, dtype: torch.dtype) -> Tensor:
    """``(T, B, 1)``: 1 on the steps at or past each length (the held ones), else 0."""
    steps = torch.arange(T, device=lengths.device).unsqueeze(1)  # (T, 1)
    return (steps >= lengths.unsqueeze(0)).to(dtype).unsqueeze(-1)
