"""``train.precision``: the forward pass in float32, or autocast to bfloat16 / float16.

- ``fp32``: no autocast.
- ``bf16``: :func:`torch.autocast` with bfloat16 (float32's range: no loss scaling).
- ``fp16``: autocast with float16 and a :class:`torch.amp.GradScaler`, which multiplies
  the loss before backward so small gradients survive float16, unscales them before
  clipping, and skips an update whose gradients overflowed (lowering the scale).

Autocast runs the matrix products around the recurrence (attention, the output layer)
in the low dtype and keeps reductions such as the cross-entropy in float32. Every
recurrent layer and decoder cell of rnnkit, whatever its engine, runs in its weights'
dtype with autocast off (:func:`outside_autocast`): the recurrence is where rounding
accumulates over T steps, and torch's own kernels under autocast differ by device and
dtype (on the CPU, ``torch.nn.LSTM`` on a padded batch fails inside oneDNN under fp16,
and under bf16 too where the CPU lacks bf16 support (this project's 2-core machine;
elsewhere it returned bfloat16), while on packed input it returns float32). Autocast's
weight cache is off: CUDA graphs (:mod:`rnnkit.graphs`) cannot capture it, and a
recurrent model reuses few casts.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, TypeVar, cast

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

__all__ = ["PRECISIONS", "Precision", "outside_autocast", "to_dtype"]

F = TypeVar("F", bound=Callable[..., Any])
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


def outside_autocast(method: F) -> F:
    """A recurrent module's ``method(self, input, *args)`` run with autocast off and its
    floating tensor arguments cast to the module's dtype when autocast is on for the
    device of ``input`` (a tensor or PackedSequence)."""

    @functools.wraps(method)
    def run(self: nn.Module, input: Any, *args: Any, **kwargs: Any) -> Any:
        device = (input.data if isinstance(input, PackedSequence) else input).device
        if not torch.is_autocast_enabled(device.type):
            return method(self, input, *args, **kwargs)
        dt = next(self.parameters()).dtype
        with torch.autocast(device.type, enabled=False):
            kwargs = {k: to_dtype(v, dt) for k, v in kwargs.items()}  # hx= too
            return method(self, to_dtype(input, dt), *to_dtype(args, dt), **kwargs)

    return cast(F, run)


def to_dtype(obj: Any, dtype: torch.dtype) -> Any:
    """Floating tensors in ``obj`` (a tensor, PackedSequence, tuple, list or None) cast."""
    if isinstance(obj, Tensor):
        return obj.to(dtype) if obj.is_floating_point() else obj
    if isinstance(obj, PackedSequence):
        return obj._replace(data=obj.data.to(dtype))
    if isinstance(obj, (tuple, list)):
        return type(obj)(to_dtype(o, dtype) for o in obj)
    return obj
