"""Cell names as configs give them (``model.cell``): the built-in names and
``"module:Class"`` for a custom :class:`~rnnkit.cells.base.Cell`."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from typing import Any

from rnnkit.cells.base import Cell
from rnnkit.cells.gated import CIFGLSTMCell, IndRNNCell, MGUCell, PeepholeLSTMCell
from rnnkit.cells.layernorm import LayerNormGRUCell, LayerNormLSTMCell

__all__ = ["CELLS", "resolve_cell", "cell_options"]

# config name → a stock kind (torch.nn layout, fused kernels) or a Cell class
CELLS: dict[str, str | type[Cell]] = {
    "rnn": "RNN",
    "lstm": "LSTM",
    "gru": "GRU",
    "layernorm_lstm": LayerNormLSTMCell,
    "layernorm_gru": LayerNormGRUCell,
    "peephole_lstm": PeepholeLSTMCell,
    "cifg_lstm": CIFGLSTMCell,
    "mgu": MGUCell,
    "indrnn": IndRNNCell,
}


def _import(module: str) -> Any:
    """``module`` imported from ``sys.path``, else from the current folder, as ``python
    -m rnnkit`` finds it (the installed ``rnnkit`` command has no current folder on its
    path: a cell module beside the config was "No module named ...")."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        here = os.getcwd()
        if e.name != module.split(".")[0] or here in sys.path or "" in sys.path:
            raise
        sys.path.append(here)  # last: nothing installed is shadowed
        return importlib.import_module(module)


def resolve_cell(name: str | type[Cell]) -> str | type[Cell]:
    """A cell name of :data:`CELLS`, ``"module:Class"`` for a custom :class:`Cell`
    (imported here), or such a class itself. Raises ValueError naming what is wrong."""
    if isinstance(name, type) and issubclass(name, Cell):
        return name
    if not isinstance(name, str):
        raise ValueError(
            f"cell must be one of {', '.join(CELLS)}, module:Class or a subclass of "
            f"rnnkit.Cell; got {name!r}"
        )
    if name in CELLS:
        return CELLS[name]
    if ":" not in name:
        lower = f" (the names are lower case: {name.lower()!r})" if name.lower() in CELLS else ""
        raise ValueError(
            f"cell must be one of {', '.join(CELLS)} or module:Class; got {name!r}{lower}"
        )
    module, _, attr = name.partition(":")
    try:
        cls = getattr(_import(module), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cell {name!r}: cannot import it ({e})") from None
    except Exception as e:  # noqa: BLE001  (the module's own error: a SyntaxError, ...)
        raise ValueError(f"cell {name!r}: cannot import it ({type(e).__name__}: {e})") from None
    if not (isinstance(cls, type) and issubclass(cls, Cell)):
        raise ValueError(f"cell {name!r} is not a subclass of rnnkit.Cell")
    return cls


def cell_options(cell: str | type[Cell], forget_bias: float | None) -> dict[str, Any]:
    """``forget_bias`` for the cells that take it (the LSTM family)."""
    if forget_bias is None:
        return {}
    lstm_family = cell == "LSTM" or (
        isinstance(cell, type) and "forget_bias" in inspect.signature(cell).parameters
    )
    if not lstm_family:
        name = cell if isinstance(cell, str) else cell.__name__
        raise ValueError(f"forget_bias applies to the LSTM family, not to {name}")
    return {"forget_bias": forget_bias}
