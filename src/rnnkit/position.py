"""Where a training run stands (saved in every checkpoint, restored by ``--resume``), and
what :func:`rnnkit.train.train` returns."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Position", "Stop", "TrainResult"]


@dataclass
class TrainResult:
    """What a run ended with (:func:`rnnkit.train.train` returns it)."""

    steps: int
    best_bleu: float  # dev BLEU of best.pt (the best by train.early_stopping_metric)
    stopped: str  # why training ended: max_steps, max_epochs, max_minutes, early_stopping, ...
    history: list[dict[str, Any]] = field(default_factory=list)
    metric: str = "bleu"  # train.early_stopping_metric
    best: float = -math.inf  # its value at best.pt (loss and ppl as they are: lower is better)
    best_step: int = 0


class Stop(Exception):
    """Raised inside the loop when a stopping criterion is met."""


@dataclass
class Position:
    """Where training stands; saved in every checkpoint, restored by ``--resume``."""

    step: int = 0
    epoch: int = 0
    pos: int = 0  # batches of this epoch already done
    best: float = -math.inf  # best dev score (train.early_stopping_metric, higher = better)
    bad: int = 0  # validations since the best one
    elapsed: float = 0.0  # training seconds before this process started
    best_step: int = 0  # the step of best.pt
    best_bleu: float = -math.inf  # its dev BLEU
    validated: int = -1  # the step last validated (a finished run resumed: not again)
    epoch_batches: int = 0  # batches of this epoch (pos == it: the epoch is done; 0: unknown)
