"""rnnkit: recurrent sequence models with attention, every gate inspectable.

Public API: recurrent cells and layers (drop-in for ``torch.nn``), attention, the
encoder-decoder model and search. Nothing runs at import.
"""

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
