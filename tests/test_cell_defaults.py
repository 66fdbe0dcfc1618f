"""What the cells start from and what their options do where no other test looks: the
documented initialisations, IndRNN's recurrent dropout, the decoder stack's dropout
between layers only, its ReLU RNN, and defaults that must agree with the config's."""

from __future__ import annotations

import inspect
import math

import pytest
import torch

import rnnkit
from rnnkit.cells.stacked import StackedCell
from rnnkit.config import config_from_dict
from rnnkit.search import beam_search

H = 64  # 4·64·64 draws: the largest lies within 1 % of the bound


@pytest.mark.parametrize(
    "cell",
    [rnnkit.RNNCell, rnnkit.LSTMCell, rnnkit.GRUCell, rnnkit.LayerNormLSTMCell, rnnkit.MGUCell],
)
def test_weights_start_uniform_within_one_over_root_h(cell):
    """U(-1/√H, 1/√H), as torch.nn (docs/cells.md): inside the bound, and reaching it."""
    torch.manual_seed(0)
    c = cell(H, H)
    bound = 1 / math.sqrt(H)
    for name in ("weight_ih", "weight_hh"):
        w = getattr(c, name).detach()
        assert float(w.abs().max()) <= bound
        assert float(w.abs().max()) > 0.98 * bound, name
        assert abs(float(w.mean())) < 0.05 * bound  # centred


def test_layer_norm_starts_as_the_identity_map():
    """Every LayerNorm gain starts at 1 and the cell's own LN bias at 0 (Ba et al. 2016):
    at the start the normalisation only centres and scales."""
    c = rnnkit.LayerNormLSTMCell(5, H)
    for name, p in c.named_parameters():
        if name.endswith("_gain"):
            assert torch.equal(p, torch.ones_like(p)), name
        elif name.startswith("ln_"):
            assert torch.equal(p, torch.zeros_like(p)), name
    assert {n for n, _ in c.named_parameters() if n.startswith("ln_")} >= {"ln_cell_bias"}


def test_indrnn_recurrent_weights_start_in_zero_one():
    """IndRNN's u starts U(0, 1) (docs/cells.md: Li et al. 2018 keep |u| ≤ 1, and a
    negative u would flip each step's sign)."""
    torch.manual_seed(0)
    u = rnnkit.IndRNNCell(5, 4096).weight_hh.detach()
    assert float(u.min()) >= 0 and float(u.max()) <= 1
    assert float(u.min()) < 0.01 and float(u.max()) > 0.99


def test_indrnn_recurrent_dropout_drops_what_enters_u():
    """recurrent_dropout on an IndRNN layer masks h_{t-1} before u ⊙ h: in training two
    draws give different outputs (nothing else in the layer is random), in evaluation
    the layer is deterministic."""
    torch.manual_seed(0)
    m = rnnkit.IndRNN(3, 8, recurrent_dropout=0.5)
    x = torch.randn(6, 2, 3)
    m.train()
    torch.manual_seed(1)
    a = m(x)[0]
    torch.manual_seed(2)
    b = m(x)[0]
    assert not torch.allclose(a[1:], b[1:])
    assert torch.equal(a[0], b[0])  # step 1 reads h_0 = 0: no mask shows there
    m.eval()
    assert torch.equal(m(x)[0], m(x)[0])


def test_stack_dropout_is_between_layers_only():
    """StackedCell's dropout is applied to a layer's output entering the next layer
    (as torch.nn's ``dropout``), never to the stack's own input: one layer in training
    equals the same layer in evaluation."""
    torch.manual_seed(0)
    s = StackedCell("LSTM", 5, 7, num_layers=1, dropout=0.9)
    x, h, c = torch.randn(3, 5), torch.randn(3, 1, 7), torch.randn(3, 1, 7)
    out_train = s.train().step(x, h, c)[0]
    out_eval = s.eval().step(x, h, c)[0]
    assert torch.equal(out_train, out_eval)
    two = StackedCell("LSTM", 5, 7, num_layers=2, dropout=0.9).train()
    torch.manual_seed(1)
    a = two.step(x, h.repeat(1, 2, 1), c.repeat(1, 2, 1))[0]
    torch.manual_seed(2)
    b = two.step(x, h.repeat(1, 2, 1), c.repeat(1, 2, 1))[0]
    assert not torch.equal(a, b)  # (and with two layers, it is there)


@pytest.mark.parametrize("fused", [True, False])
def test_stacked_relu_rnn_is_relu(fused):
    """StackedCell("RNN", nonlinearity="relu"): h = relu(...) ≥ 0, the RNNCell's step."""
    torch.manual_seed(0)
    s = StackedCell("RNN", 4, 6, num_layers=2, nonlinearity="relu")
    x, h = torch.randn(8, 4), torch.randn(8, 2, 6)
    top, new_h, _, _ = s.step(x, h, None, fused=fused)
    assert float(new_h.min()) >= 0 and float(new_h.max()) > 0
    cell = rnnkit.RNNCell(4, 6, nonlinearity="relu")
    cell.load_state_dict(s.cells[0].state_dict())
    assert torch.allclose(new_h[:, 0], cell(x, h[:, 0]), atol=1e-6)


def test_defaults_agree_with_the_config():
    """A search called from Python uses the config's defaults: beam_search's length
    penalty α is decode.length_penalty's default; LuongAttention's score is
    model.luong_score's default (the Luong et al. 2015 'general')."""
    cfg = config_from_dict({})
    alpha = inspect.signature(beam_search).parameters["length_penalty_alpha"].default
    assert alpha == cfg.decode.length_penalty
    assert rnnkit.LuongAttention(4, 4).score == cfg.model.luong_score
