"""An exponential moving average of the weights (``train.ema_decay``; Polyak averaging).

After every update the average moves towards the weights just trained::

    d_n = min(decay, (1 + n) / (10 + n))        (n: updates averaged so far, from 1)
    avg = d_n * avg + (1 - d_n) * weights

The warm-up of ``d_n`` (TensorFlow's ``ExponentialMovingAverage`` with ``num_updates``) lets
the average follow the fast early changes instead of remembering the random start for
``1 / (1 - decay)`` updates. What OpenNMT calls ``-average_decay``, Marian
``--exponential-smoothing`` and fairseq ``--ema-decay``: a smoother point of the same
trajectory, which usually translates better than the last weights, at no training cost.

Training moves the weights as before: the average is only read. Validation scores it
(so ``best.pt`` is chosen by it), and every checkpoint's ``model`` holds it, so
``translate``, ``evaluate``, ``serve``, ``average`` and ``train.init_from`` all take the
averaged weights with no option; the weights that train go to the checkpoint's
``ema`` entry, which ``--resume`` continues from.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["Ema", "training_weights"]


def training_weights(ckpt: dict[str, Any]) -> dict[str, Tensor]:
    """The weights a checkpoint's run was training (its ``model`` is the average when
    the run kept one)."""
    ema = ckpt.get("ema")
    return ema["weights"] if ema else ckpt["model"]


class Ema:
    """The average of ``model``'s floating-point parameters (``decay`` 0: none is kept,
    and every method leaves the model as it is).

    Args:
        model: the module whose parameters are averaged (not a DDP wrapper).
        decay: the weight of the old average, in [0, 1).
        ckpt: a checkpoint to resume from: its average (or, if its run kept none, its
            weights) and its count of updates.
    """

    def __init__(self, model: nn.Module, decay: float, ckpt: dict[str, Any] | None = None):
        self.model, self.decay = model, decay
        self.params = [p for p in model.parameters() if p.is_floating_point()] if decay else []
        self.updates = 0
        self.shadow = [p.detach().clone() for p in self.params]
        if ckpt is not None and decay:
            saved, names = ckpt["model"], {id(p): n for n, p in model.named_parameters()}
            with torch.no_grad():
                for p, s in zip(self.params, self.shadow, strict=True):
                    s.copy_(saved[names[id(p)]])
            self.updates = int(ckpt.get("ema", {}).get("updates", 0))

    @property
    def on(self) -> bool:
        return bool(self.params)

    @torch.no_grad()
    def update(self) -> None:
        """Move the average towards the current weights (after an optimizer step)."""
        if not self.on:
            return
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for s, p in zip(self.shadow, self.params, strict=True):
            s.lerp_(p, 1.0 - d)

    @contextmanager
    def applied(self) -> Iterator[None]:
        """The model holds the average inside the block, its own weights again after it
        (copied in place: CUDA graphs and optimizer state keep their tensors)."""
        if not self.on:
            yield
            return
        with torch.no_grad():
            kept = [p.detach().clone() for p in self.params]
            for p, s in zip(self.params, self.shadow, strict=True):
                p.copy_(s)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, k in zip(self.params, kept, strict=True):
                    p.copy_(k)

    def weights(self) -> dict[str, Tensor]:
        """The model's ``state_dict`` with the average in place of the parameters (its
        own ``state_dict`` when no average is kept)."""
        if not self.on:
            return self.model.state_dict()
        avg = {id(p): s for p, s in zip(self.params, self.shadow, strict=True)}
        state = self.model.state_dict(keep_vars=True)
        return {k: avg.get(id(v), v).detach() for k, v in state.items()}

    def state(self) -> dict[str, Any]:
        """The checkpoint's ``ema`` entry: the weights that train and the count of
        updates (empty when no average is kept)."""
        if not self.on:
            return {}
        return {"ema": {"weights": self.model.state_dict(), "updates": self.updates}}
