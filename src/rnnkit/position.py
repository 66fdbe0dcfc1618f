"""Where a training run stands (saved in every checkpoint, restored by ``--resume``), and
what :func:`rnnkit.train.train` returns."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Position", "Stop", "TrainResult", "check_progress"]


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


def check_progress(saved: Any) -> None:
    """Raise ValueError, saying which key, unless ``saved`` (a checkpoint's ``progress``)
    is a :class:`Position` as rnnkit writes it: counts are integers >= 0 (``validated``
    >= -1), seconds a finite number >= 0, ``best`` present (older files may lack others)."""
    if not isinstance(saved, dict):
        raise ValueError(f"progress is a {type(saved).__name__}, not a mapping")
    if "best" not in saved:
        raise ValueError("progress lacks 'best'")
    kinds = {f.name: f.type for f in dataclasses.fields(Position)}
    for key, value in saved.items():
        if key not in kinds:
            raise ValueError(f"progress has an unknown key {key!r}")
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if kinds[key] == "int":
            least = -1 if key == "validated" else 0
            if not (number and isinstance(value, int) and value >= least):
                raise ValueError(f"progress.{key} is {value!r}, not an integer >= {least}")
        elif key == "elapsed":
            if not (number and math.isfinite(value) and value >= 0):
                raise ValueError(f"progress.{key} is {value!r}, not a number of seconds >= 0")
        elif not (number and value < math.inf and not math.isnan(value)):
            raise ValueError(f"progress.{key} is {value!r}, not a score (a number or -inf)")
