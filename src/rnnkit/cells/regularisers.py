"""Regularisers of the recurrence, applied by a layer around any cell's step.

- zoneout (Krueger et al. 2016, arXiv 1606.01305): in training each unit of each state
  keeps its previous value with probability z, a fresh Bernoulli mask per step and unit,
  ``s_t = d ⊙ s_{t-1} + (1 - d) ⊙ s̃_t``; in evaluation the expectation, d = z.
  ``zoneout=(z_c, z_h)`` gives the cell state and the hidden state their own rates.
- recurrent dropout (Gal & Ghahramani 2016, arXiv 1512.05287): one mask per sequence on
  the h entering ``W_hh`` (through :meth:`Cell.hh`), the same at every step; none in
  evaluation. Inverted: kept units are scaled by 1 / (1 - p).
- weight drop (DropConnect on ``W_hh``; Merity et al. 2017, arXiv 1708.02182): a fresh
  mask on the recurrent weights per forward call in training, scaled by 1 / (1 - p).
  The parameter itself is never touched: the masked copy is what the step reads.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["Regularisers", "check_rate"]

ZoneMask = Tensor | float | None  # (T, B, H) masks in training, z in evaluation, None: off


def check_rate(value: object, what: str, owner: str) -> float:
    """``value`` as a probability in [0, 1) (a dropout or zoneout rate), or a ValueError
    naming ``owner`` and ``what``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{owner}: {what} must be a probability in [0, 1), got {value!r}")
    return float(value)


_NAMES = ("zoneout", "recurrent_dropout", "weight_drop")


@dataclass(frozen=True)
class Regularisers:
    """The three regularisers of one layer; all zero: none."""

    zoneout_c: float = 0.0
    zoneout_h: float = 0.0
    recurrent_dropout: float = 0.0
    weight_drop: float = 0.0

    @classmethod
    def make(
        cls,
        zoneout: float | tuple[float, float] = 0.0,
        recurrent_dropout: float = 0.0,
        weight_drop: float = 0.0,
        owner: str = "layer",
        cell_state: bool = True,
    ) -> Regularisers:
        """Validated rates; ``zoneout`` a float or ``(z_c, z_h)`` (cells with a cell state)."""
        if isinstance(zoneout, (tuple, list)):
            if len(zoneout) != 2:
                raise ValueError(f"{owner}: zoneout must be z or (z_c, z_h), got {zoneout!r}")
            if not cell_state:
                raise ValueError(
                    f"{owner}: zoneout=(z_c, z_h) needs a cell with a cell state; give one rate"
                )
            z_c, z_h = (check_rate(z, "zoneout", owner) for z in zoneout)
        else:
            z_c = z_h = check_rate(zoneout, "zoneout", owner)
        return cls(
            z_c,
            z_h,
            check_rate(recurrent_dropout, "recurrent_dropout", owner),
            check_rate(weight_drop, "weight_drop", owner),
        )

    def first_on(self) -> str | None:
        """The name of the first regulariser set (``"zoneout"``, ...), None when none is."""
        on = (self.zoneout_c or self.zoneout_h, self.recurrent_dropout, self.weight_drop)
        return next((n for n, v in zip(_NAMES, on) if v), None)

    def keywords(self) -> str:
        """``", zoneout=0.1, weight_drop=0.5"``: the keywords that set these, for a repr."""
        s = ""
        if self.zoneout_c or self.zoneout_h:
            same = self.zoneout_c == self.zoneout_h
            s += f", zoneout={self.zoneout_h if same else (self.zoneout_c, self.zoneout_h)}"
        for k in ("recurrent_dropout", "weight_drop"):
            if getattr(self, k):
                s += f", {k}={getattr(self, k)}"
        return s

    def zone(
        self, names: tuple[str, ...], states: tuple[Tensor, ...], T: int, training: bool
    ) -> list[ZoneMask] | None:
        """Per state: the per-step keep masks ``(T, B, H)`` (training) or z (evaluation)."""
        if not (self.zoneout_c or self.zoneout_h):
            return None
        masks: list[ZoneMask] = []
        for name, s in zip(names, states):
            z = self.zoneout_c if name == "cell" else self.zoneout_h
            if not z:
                masks.append(None)
            elif training:
                masks.append(torch.bernoulli(s.new_full((T, *s.shape), z)))
            else:
                masks.append(z)
        return masks

    def recurrent_mask(self, h: Tensor, training: bool) -> Tensor | None:
        """One inverted-dropout mask ``(B, H)`` for the h entering W_hh, or None."""
        p = self.recurrent_dropout
        if not (training and p):
            return None
        return torch.bernoulli(h.new_full(h.shape, 1 - p)) / (1 - p)

    def drop_weight(self, w: Tensor, training: bool) -> Tensor:
        """``W_hh`` with DropConnect in training (a new tensor; ``w`` is not modified)."""
        return F.dropout(w, self.weight_drop, training=True) if training and self.weight_drop else w
