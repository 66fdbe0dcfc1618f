"""rnnkit: recurrent sequence models with attention, every gate inspectable.

Public API: recurrent cells and layers (drop-in for ``torch.nn``), attention, the
encoder-decoder model and search. Nothing runs at import, and the names below are
imported when first used: ``import rnnkit`` alone imports no torch, so the ``rnnkit``
command's ``--help``, ``--version`` and usage errors answer at once.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what a type checker sees; at run time, __getattr__ below
    from rnnkit.attention import BahdanauAttention, LuongAttention
    from rnnkit.cells import (
        Cell,
        CIFGLSTMCell,
        GRUCell,
        GRUGates,
        IndRNNCell,
        LayerNormGRUCell,
        LayerNormLSTMCell,
        LSTMCell,
        LSTMGates,
        MGUCell,
        MGUGates,
        PeepholeLSTMCell,
        RNNCell,
    )
    from rnnkit.layers import GRU, LSTM, RNN, RNNGates
    from rnnkit.model import Decoder, Encoder, Seq2Seq
    from rnnkit.recurrent import (
        CIFGLSTM,
        MGU,
        IndRNN,
        LayerNormGRU,
        LayerNormLSTM,
        PeepholeLSTM,
        Recurrent,
    )

__version__ = "0.1.0"

__all__ = [
    "RNN",
    "LSTM",
    "GRU",
    "RNNCell",
    "LSTMCell",
    "GRUCell",
    "RNNGates",
    "LSTMGates",
    "GRUGates",
    "MGUGates",
    "Cell",
    "Recurrent",
    "LayerNormLSTM",
    "LayerNormGRU",
    "PeepholeLSTM",
    "CIFGLSTM",
    "MGU",
    "IndRNN",
    "LayerNormLSTMCell",
    "LayerNormGRUCell",
    "PeepholeLSTMCell",
    "CIFGLSTMCell",
    "MGUCell",
    "IndRNNCell",
    "BahdanauAttention",
    "LuongAttention",
    "Encoder",
    "Decoder",
    "Seq2Seq",
]


_MODULES = ("attention", "cells", "layers", "model", "recurrent")


def __getattr__(name: str) -> Any:
    """A public name's first use imports its module (and torch); so does a submodule's
    (``rnnkit.ensemble.load_ensemble`` after ``import rnnkit``)."""
    found: Any = None
    if name in __all__:
        for module in _MODULES:
            found = getattr(importlib.import_module(f"rnnkit.{module}"), name, None)
            if found is not None:
                break
    elif not name.startswith("_") and importlib.util.find_spec(f"rnnkit.{name}") is not None:
        found = importlib.import_module(f"rnnkit.{name}")
    if found is None:
        raise AttributeError(f"module 'rnnkit' has no attribute {name!r}")
    globals()[name] = found  # (the next use finds it here)
    return found


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
