"""``train.precision``: the forward pass in float32, or autocast to bfloat16 / float16.

- ``fp32``: no autocast.
- ``bf16``: :func:`torch.autocast` with bfloat16 (float32's range: no loss scaling).
- ``fp16``: autocast with float16 and a :class:`torch.amp.GradScaler`, which multiplies
  the loss before backward so small gradients survive float16, unscales them before
  clipping, and skips an update whose gradients overflowed (lowering the scale).

Autocast runs the matrix products (embeddings' neighbours, attention, the output layer)
in the low dtype and keeps reductions such as the cross-entropy in float32. The explicit
engine's recurrence runs in the weights' dtype with autocast off (see :mod:`rnnkit.fast`);
what torch's fused kernels do under autocast is theirs (on the CPU, ``torch.nn.LSTM``
returns float32). Autocast's weight cache is off: CUDA graphs (:mod:`rnnkit.graphs`)
cannot capture it, and a recurrent model reuses few casts.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["PRECISIONS", "Precision"]

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class Precision:
    """Autocast and (fp16) loss scaling for one training run on ``device``."""

    def __init__(self, name: str, device: torch.device) -> None:
        if name not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {name!r}")
        self.name, self.device = name, device
        self.scaler = torch.amp.GradScaler(device.type) if name == "fp16" else None

    def autocast(self) -> AbstractContextManager[Any]:
        """The context of the forward pass and the loss."""
        return torch.autocast(
            self.device.type,
            dtype=PRECISIONS[self.name],
            enabled=self.name != "fp32",
            cache_enabled=False,
        )

    def backward(self, loss: Tensor) -> None:
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()

    def step(self, opt: torch.optim.Optimizer, model: nn.Module, clip: float) -> None:
        """Clip the (unscaled) gradient norm to ``clip`` (0: no clipping) and update."""
        if self.scaler is not None:
            self.scaler.unscale_(opt)
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        if self.scaler is None:
            opt.step()
        else:
            self.scaler.step(opt)  # skipped when a gradient is inf or nan
            self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        return {} if self.scaler is None else self.scaler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
