"""Recurrent cells: one time step each, gates named (STYLE rule 2: no time loop here).

- :mod:`~rnnkit.cells.base`: :class:`Cell`, the API every cell follows;
- :mod:`~rnnkit.cells.stock`: RNN, LSTM and GRU, drop-ins for the torch.nn cells;
- :mod:`~rnnkit.cells.layernorm`: layer-normalised LSTM and GRU;
- :mod:`~rnnkit.cells.gated`: peephole LSTM, CIFG LSTM, MGU, IndRNN;
- :mod:`~rnnkit.cells.regularisers`: zoneout, recurrent dropout, weight drop;
- :mod:`~rnnkit.cells.stacked`: a stack of cells stepped together (the decoder).
"""

from rnnkit.cells.base import Cell, State
from rnnkit.cells.gated import CIFGLSTMCell, IndRNNCell, MGUCell, MGUGates, PeepholeLSTMCell
from rnnkit.cells.layernorm import LayerNormGRUCell, LayerNormLSTMCell
from rnnkit.cells.regularisers import Regularisers
from rnnkit.cells.stacked import StackedCell
from rnnkit.cells.stock import GRUCell, GRUGates, LSTMCell, LSTMGates, RNNCell, RNNGates

__all__ = [
    "Cell",
    "State",
    "RNNCell",
    "LSTMCell",
    "GRUCell",
    "RNNGates",
    "LSTMGates",
    "GRUGates",
    "LayerNormLSTMCell",
    "LayerNormGRUCell",
    "PeepholeLSTMCell",
    "CIFGLSTMCell",
    "MGUCell",
    "MGUGates",
    "IndRNNCell",
    "Regularisers",
    "StackedCell",
]
