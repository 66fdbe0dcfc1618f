"""What a custom cell may hold and declare: submodules and buffers become the layer's,
train / eval reach the cell, a narrower output state stacks, bad declarations are clear
errors when the cell is made; and the stock layers' guards (forget_bias without bias,
second derivatives of the explicit engine, ``hx=`` under autocast)."""

from __future__ import annotations

from typing import NamedTuple

import pytest
import torch
from torch import Tensor, nn

import rnnkit

I, H, T, B = 3, 5, 4, 2


class _Hidden(NamedTuple):
    hidden: Tensor


class NormCell(rnnkit.Cell):
    """h = tanh(LayerNorm(W x + U h) · scale), with its own dropout on the input sum."""

    Gates = _Hidden

    def __init__(self, input_size, hidden_size, bias=True, **kw):
        super().__init__(input_size, hidden_size, bias, **kw)
        self.norm = nn.LayerNorm(hidden_size)
        self.drop = nn.Dropout(0.5)
        self.register_buffer("scale", torch.full((hidden_size,), 2.0))

    def step(self, gi, state):
        h = torch.tanh(self.norm(self.drop(gi + self.hh(state[0]))) * self.scale)
        if self.training:  # a cell may read its own mode (not only its submodules')
            h = h + 1e-3 * torch.rand_like(h)
        return (h,), _Hidden(h)


def by_hand(layer: rnnkit.Recurrent, x: Tensor) -> Tensor:
    """Two stacked layers of NormCell written out with the layer's own tensors (eval)."""
    for k in range(2):
        norm = getattr(layer, f"norm_l{k}")
        h, outs = x.new_zeros(x.shape[1], H), []
        for t in range(x.shape[0]):
            a = x[t] @ getattr(layer, f"weight_ih_l{k}").T + getattr(layer, f"bias_ih_l{k}")
            a = a + h @ getattr(layer, f"weight_hh_l{k}").T + getattr(layer, f"bias_hh_l{k}")
            h = torch.tanh(norm(a) * getattr(layer, f"scale_l{k}"))
            outs.append(h)
        x = torch.stack(outs)
    return x


def test_submodules_and_buffers_are_the_layers():
    torch.manual_seed(0)
    layer = rnnkit.Recurrent(NormCell, I, H, num_layers=2)
    names = {n for n, _ in layer.named_parameters()}
    assert {"norm_l0.weight", "norm_l0.bias", "norm_l1.weight"} <= names
    assert {"scale_l0", "scale_l1"} <= set(layer.state_dict())
    with torch.no_grad():  # what the state dict holds is what the step reads
        layer.norm_l1.weight.mul_(3.0)
        layer.scale_l0.fill_(0.5)
    layer.eval()
    x = torch.randn(T, B, I)
    torch.testing.assert_close(layer(x)[0], by_hand(layer, x))
    layer.train()
    layer(x)[0].sum().backward()
    assert layer.norm_l0.weight.grad is not None and layer.norm_l0.weight.grad.abs().sum() > 0

    double = layer.double().eval()
    assert double.scale_l1.dtype == torch.float64 and double.norm_l0.weight.dtype == torch.float64
    torch.testing.assert_close(double(x.double())[0], by_hand(double, x.double()))
    fresh = rnnkit.Recurrent(NormCell, I, H, num_layers=2).double().eval()
    fresh.load_state_dict(double.state_dict())
    assert torch.equal(fresh(x.double())[0], double(x.double())[0])


def test_eval_reaches_the_cells():
    torch.manual_seed(0)
    layer = rnnkit.Recurrent(NormCell, I, H)
    x = torch.randn(T, B, I)
    assert not torch.equal(layer(x)[0], layer(x)[0])  # the cell's dropout in training
    layer.eval()
    assert all(not cell.training for cell, _, _ in layer._cells)
    assert torch.equal(layer(x)[0], layer(x)[0])
    layer.train()
    assert all(cell.training and cell.drop.training for cell, _, _ in layer._cells)


class _ProjGates(NamedTuple):
    cell: Tensor
    hidden: Tensor


class ProjCell(rnnkit.Cell):
    """c = tanh(W x + U h + b) of width H; h = P c of width 2 (a projected output)."""

    Gates = _ProjGates
    state = ("hidden", "cell")

    def parameter_shapes(self):
        shapes = super().parameter_shapes()
        shapes["weight_hh"] = (self.hidden_size, 2)
        shapes["weight_hr"] = (2, self.hidden_size)
        return shapes

    def state_size(self, name):
        return 2 if name == "hidden" else self.hidden_size

    def step(self, gi, state):
        c = torch.tanh(gi + self.hh(state[0]))
        h = c @ self.weight_hr.T
        return (h, c), _ProjGates(c, h)


def test_a_narrower_output_state_stacks():
    layer = rnnkit.Recurrent(ProjCell, I, H, num_layers=2, bidirectional=True)
    assert layer.weight_ih_l1.shape == (H, 2 * 2) and layer.weight_ih_l1_reverse.shape == (H, 4)
    out, (h, c) = layer(torch.randn(T, B, I))
    assert out.shape == (T, B, 4) and h.shape == (4, B, 2) and c.shape == (4, B, H)


class _TwoStates(NamedTuple):
    hidden: Tensor
    memory: Tensor


class MemoryCell(rnnkit.Cell):
    Gates = _TwoStates
    state = ("hidden", "memory")

    def step(self, gi, state):
        m = 0.5 * state[1] + torch.tanh(gi + self.hh(state[0]))
        return (torch.tanh(m), m), _TwoStates(torch.tanh(m), m)


def test_a_zoneout_pair_needs_a_state_named_cell():
    with pytest.raises(ValueError, match=r"zoneout=\(z_c, z_h\) needs a cell with a cell state"):
        rnnkit.Recurrent(MemoryCell, I, H, zoneout=(0.9, 0.0))
    rnnkit.Recurrent(MemoryCell, I, H, zoneout=0.1)  # one rate for both: fine


def _cell(**declarations: object) -> type:
    body = {"Gates": _Hidden, "step": lambda self, gi, s: ((gi,), _Hidden(gi)), **declarations}
    return type("Declared", (rnnkit.Cell,), body)


@pytest.mark.parametrize(
    ("declarations", "says"),
    [
        ({"state": "hidden"}, "Declared.state must be a non-empty tuple of state names"),
        ({"state": ()}, "Declared.state must be a non-empty tuple"),
        ({"Gates": None}, "Declared must declare Gates, a NamedTuple"),
        ({"state": ("hidden", "cell")}, r"Gates must have a field for each state name; "),
        ({"chunks": 0}, "Declared.chunks must be a positive integer"),
        ({"sigmoid": "hidden"}, r"Declared.sigmoid must be a tuple of Gates fields \('hidden',\)"),
        ({"sigmoid": ("rate",)}, "Declared.sigmoid must be a tuple of Gates fields"),
    ],
)
def test_bad_declarations_fail_when_the_cell_is_made(declarations, says):
    cls = _cell(**declarations)
    for make in (lambda: cls(I, H), lambda: rnnkit.Recurrent(cls, I, H)):
        with pytest.raises(TypeError, match=says):
            make()


class _TorchStyleInit(rnnkit.Cell):
    """An __init__ without **kw, as torch.nn code writes one."""

    Gates = _Hidden

    def __init__(self, input_size, hidden_size, bias=True, scale=1.0):
        super().__init__(input_size, hidden_size, bias)
        self.scale = scale

    def step(self, gi, state):
        h = torch.tanh(self.scale * gi + self.hh(state[0]))
        return (h,), _Hidden(h)


def test_a_cell_without_kw_runs_and_device_or_dtype_for_it_are_named():
    """Recurrent passed device=None and dtype=None to every cell: one whose __init__ has
    no **kw failed with "__init__() got an unexpected keyword argument 'device'"."""
    out, _ = rnnkit.Recurrent(_TorchStyleInit, I, H, scale=0.5)(torch.randn(5, B, I))
    assert out.shape == (5, B, H)
    for kw in ({"device": "cpu"}, {"dtype": torch.float64}):
        name = next(iter(kw))
        with pytest.raises(TypeError, match=f"_TorchStyleInit.__init__ takes no {name}= "):
            rnnkit.Recurrent(_TorchStyleInit, I, H, **kw)


def test_cell_alone_checks_what_its_step_returns():
    bare = _cell(step=lambda self, gi, s: (torch.tanh(gi), _Hidden(torch.tanh(gi))))
    with pytest.raises(ValueError, match=r"Declared.step must return \(new_state, gates\)"):
        bare(I, H)(torch.randn(B, I))


def test_recurrent_takes_flatten_parameters_as_torch_code_calls_it():
    layer = rnnkit.Recurrent(NormCell, I, H)
    layer.flatten_parameters()  # a no-op, as generic torch.nn RNN code calls it


def test_forget_bias_without_bias_is_refused_by_every_engine():
    for engine in ("auto", "native", "explicit", "reference"):
        with pytest.raises(ValueError, match="LSTM: forget_bias needs bias=True"):
            rnnkit.LSTM(I, H, bias=False, forget_bias=1.0, engine=engine)


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_second_derivatives_of_the_explicit_engine_are_an_error(kind):
    """The hand-written backward builds no graph: a gradient penalty through it would be
    zero (the LSTM's was, silently); now it says what to use, and 'reference' gives the
    penalty torch.nn gives."""
    torch.manual_seed(0)
    ref = getattr(nn, kind)(I, H, dtype=torch.float64)
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)

    def penalty_grad(m: nn.Module) -> Tensor:
        (g,) = torch.autograd.grad(m(x)[0].sum(), x, create_graph=True)
        (w,) = torch.autograd.grad(g.pow(2).sum(), m.weight_hh_l0)
        return w

    want = penalty_grad(ref)
    for engine in ("explicit", "reference"):
        m = getattr(rnnkit, kind)(I, H, dtype=torch.float64, engine=engine)
        m.load_state_dict(ref.state_dict())
        if engine == "explicit":
            with pytest.raises(RuntimeError, match="engine='reference'"):
                penalty_grad(m)
        else:
            torch.testing.assert_close(penalty_grad(m), want)


def test_hx_by_keyword_is_cast_under_autocast_as_positional_hx_is():
    m = rnnkit.LSTM(I, H)
    x = torch.randn(T, B, I)
    h0 = (torch.zeros(1, B, H, dtype=torch.bfloat16), torch.zeros(1, B, H, dtype=torch.bfloat16))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        by_position, by_keyword = m(x, h0), m(x, hx=h0)
    assert torch.equal(by_position[0], by_keyword[0]) and by_keyword[0].dtype == torch.float32


class _HC(NamedTuple):
    hidden: Tensor
    cell: Tensor


class _ForgotChunks(rnnkit.Cell):
    """An LSTM step that splits gi in four, its class not saying so (chunks = 1)."""

    state, Gates = ("hidden", "cell"), _HC

    def step(self, gi, state):
        i, f, g, o = (gi + self.hh(state[0])).sigmoid().chunk(4, dim=1)
        c = f * state[1] + i * g
        return (o * c.tanh(), c), _HC(o * c.tanh(), c)


class _IntCell(rnnkit.LSTMCell):
    def step(self, gi, state):
        (h, c), g = super().step(gi, state)
        return (h, (c > 0).long()), g


def test_a_step_that_fails_at_first_is_told_the_sizes_it_was_given():
    """torch's size mismatch (or too few blocks to unpack) in the user's own line named
    neither chunks nor the cell."""
    for h, error, says in (
        (8, RuntimeError, r"The size of tensor a \(2\) must match .*"),
        (5, ValueError, r"not enough values to unpack \(expected 4, got 3\)"),
    ):
        sizes = f"\\(it was given gi \\(2, {h}\\) = \\(B, chunks·H\\) with chunks = 1, H = {h}, "
        sizes += f"and the state hidden \\(2, {h}\\), cell \\(2, {h}\\)\\)$"
        layer, cell = rnnkit.Recurrent(_ForgotChunks, I, h), _ForgotChunks(I, h)
        for module, x in ((layer, torch.randn(T, B, I)), (cell, torch.randn(B, I))):
            with pytest.raises(error, match="^_ForgotChunks.step: " + says + " " + sizes):
                module(x)


def test_a_state_of_another_dtype_is_named_with_or_without_autograd():
    """An int64 state was kept with autograd and copied into float buffers without."""
    layer = rnnkit.Recurrent(_IntCell, I, H)
    for grad in (True, False):
        with (
            torch.set_grad_enabled(grad),
            pytest.raises(
                ValueError,
                match="_IntCell.step: state 'cell' must keep its dtype torch.float32, got "
                "torch.int64",
            ),
        ):
            layer(torch.randn(T, B, I))


class _BiasNeeded(NormCell):
    def __init__(self, input_size, hidden_size, bias):  # as the docs build cells
        super().__init__(input_size, hidden_size, bias)


def test_the_decoder_builds_cells_as_the_docs_say():
    """cell_class(input_size, hidden_size, bias, **cell_kwargs): the decoder left bias out."""
    from rnnkit.model import Seq2Seq

    model = Seq2Seq(10, 10, 4, H, cell=_BiasNeeded)
    assert model.decoder.rnn.cells[0].bias is True


@pytest.mark.parametrize(
    "make, says",
    [
        (lambda: rnnkit.GRU(I, H, forget_bias=1.0), "GRU takes no keyword 'forget_bias': it"),
        (lambda: rnnkit.RNN(I, H, forget_bias=1.0), "RNN takes no keyword 'forget_bias'"),
        (lambda: rnnkit.MGU(I, H, engine="native"), "^MGU: engine must be auto, explicit or"),
        (lambda: rnnkit.LayerNormLSTM(I, H, proj_size=2), "^LayerNormLSTM: LayerNormLSTMCell t"),
        (lambda: rnnkit.Recurrent(NormCell, I, H, engine="x"), r"^Recurrent\(NormCell\): engine"),
    ],
)  # fmt: skip
def test_layers_are_named_as_they_were_called(make, says):
    """GRU's forget_bias was torch's "RNNBase.__init__() got an unexpected keyword"; a
    variant was called Recurrent(MGUCell)."""
    with pytest.raises((TypeError, ValueError), match=says):
        make()
