"""Static shapes and CUDA graphs: the explicit engine at the GPU's pace.

On a GPU the explicit engine is bound by kernel launches: every time step is a dozen
small kernels, each a few microseconds of host work. A CUDA graph records the kernels
of a whole forward (and of the hand-written backward) once and replays them with one
launch; the price is static shapes. So this package

- rounds T and B up to a few bucket sizes (:mod:`rnnkit.graphs.buckets`) and pads the
  batch: padded rows have length 0, padded steps lie past every length;
- handles lengths by holding each state past its sequence's length (a mask, the same
  arithmetic as zoneout, see :func:`rnnkit.unroll.freeze`) instead of indexing the last
  step, so no tensor shape and no Python value depends on the data (no host sync);
- runs the layer through a per-bucket cache of graphed callables on CUDA
  (:mod:`rnnkit.graphs.capture`); elsewhere the same padded, masked code runs eagerly.

Which layers take this path is set by :func:`set_mode` (or ``RNNKIT_GRAPHS``; for a
block of one thread, :func:`mode`):
``"auto"`` (default) the explicit engine on CUDA, ``"on"`` also on the CPU (the same
code, eagerly: the tests prove it equal to the plain explicit engine there), ``"off"``
never.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["MODES", "set_mode", "get_mode", "mode", "active"]

MODES = ("auto", "on", "off")
_mode = os.environ.get("RNNKIT_GRAPHS") or "auto"  # (set but empty, as env files leave it)
_block = threading.local()  # .mode: the innermost mode() block's, in this thread


def set_mode(value: str) -> None:
    """The process's mode (each thread's, outside its :func:`mode` blocks): ``"auto"``:
    static shapes and CUDA graphs for the explicit engine on CUDA; ``"on"``: static
    shapes on every device (graphs where CUDA); ``"off"``: never."""
    global _mode
    _check(value)
    _mode = value


def _check(value: str) -> None:
    if value not in MODES:
        raise ValueError(f"graphs mode must be one of {', '.join(MODES)}; got {value!r}")


def get_mode() -> str:
    """This thread's mode: its innermost :func:`mode` block's, else the process's."""
    inside = getattr(_block, "mode", None)
    if inside is not None:
        return str(inside)
    if _mode not in MODES:
        raise ValueError(f"RNNKIT_GRAPHS must be one of {', '.join(MODES)}; got {_mode!r}")
    return _mode


@contextmanager
def mode(value: str) -> Iterator[None]:
    """``with rnnkit.graphs.mode("on"): ...``: the mode for a block, in this thread alone
    (a block in another thread changed it for both, and could leave it set for good); a
    bad ``RNNKIT_GRAPHS`` is refused before the block, not after it."""
    _check(value)
    get_mode()
    before = getattr(_block, "mode", None)
    _block.mode = value
    try:
        yield
    finally:
        _block.mode = before


def active(device: torch.device, mode: str | None = None) -> bool:
    """Whether the explicit engine takes the static-shape path on ``device`` (in ``mode``,
    by default the current one)."""
    m = mode or get_mode()
    return m == "on" or (m == "auto" and device.type == "cuda")


_SUBMODULES = ("beam", "buckets", "capture", "seq2seq", "static")


def __getattr__(name: str) -> object:
    """The submodules load on first use (``rnnkit.graphs.capture.clear()`` after a bare
    ``import rnnkit``, as docs/gpu.md writes it)."""
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
