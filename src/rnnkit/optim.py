"""Optimizer and learning-rate schedule of a training run.

The schedule is linear warm-up over ``train.warmup_steps``, then either a decay by
``decay_factor`` after ``lr_patience`` + 1 validations without a better dev score
(``plateau``, as torch's ReduceLROnPlateau in "max" mode, on ``early_stopping_metric``:
BLEU by default, loss and perplexity negated), or ``lr·√(warmup / step)``
(``inverse_sqrt``, Vaswani et al. 2017), or constant (``none``).
"""

from __future__ import annotations

import math

import torch

from rnnkit.config import Config
from rnnkit.model import Seq2Seq

__all__ = ["Schedule", "check_schedule", "make_optimizer"]


class Schedule:
    """Learning rate: linear warm-up, then plateau decay (on the dev score) or 1/√step."""

    def __init__(self, cfg: Config, optimizer: torch.optim.Optimizer) -> None:
        self.t, self.opt = cfg.train, optimizer
        self.scale, self.bad, self.best = 1.0, 0, -math.inf

    def lr(self, step: int) -> float:
        t = self.t
        warm = min(1.0, step / t.warmup_steps) if t.warmup_steps else 1.0
        if t.scheduler == "inverse_sqrt" and step > t.warmup_steps:
            return t.lr * math.sqrt(max(t.warmup_steps, 1) / step)
        floor = t.min_lr if t.scheduler == "plateau" and step > t.warmup_steps else 0.0
        return max(t.lr * warm * self.scale, floor)  # (min_lr: the plateau decay's floor)

    def set(self, step: int) -> float:
        lr = self.lr(step)
        for g in self.opt.param_groups:
            g["lr"] = lr
        return lr

    def validated(self, score: float) -> None:
        """A validation's dev score (higher is better)."""
        if self.t.scheduler != "plateau":
            return
        if score > self.best:
            self.best, self.bad = score, 0
        else:
            self.bad += 1
            if self.bad > self.t.lr_patience:
                self.scale, self.bad = self.scale * self.t.decay_factor, 0

    def state_dict(self) -> dict[str, float]:
        return {"scale": self.scale, "bad": self.bad, "best": self.best}

    def load_state_dict(self, s: dict[str, float]) -> None:
        check_schedule(s)
        self.scale, self.bad, self.best = float(s["scale"]), int(s["bad"]), float(s["best"])


def check_schedule(s: object) -> None:
    """Raise ValueError, naming the entry, unless ``s`` is what
    :meth:`Schedule.state_dict` writes."""
    if not isinstance(s, dict):
        raise ValueError(f"is a {type(s).__name__}, not a mapping")
    for key in ("scale", "bad", "best"):
        value = s.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{key} is {value!r}, not a number")
        if math.isnan(value) or (key != "best" and not 0 <= value < math.inf):
            raise ValueError(f"{key} is {value!r}, not a number >= 0")


def make_optimizer(cfg: Config, model: Seq2Seq) -> torch.optim.Optimizer:
    """The optimizer ``cfg.train`` names, over every parameter of ``model``."""
    t = cfg.train
    if t.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
    return cls(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
