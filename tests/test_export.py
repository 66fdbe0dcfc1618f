"""The layers under torch's graph tools: torch.export, torch.jit.trace, torch.compile.

A model holding an rnnkit layer is exported or traced as one holding a torch.nn layer
would be; the recorded program gives the eager layer's results on other inputs and
lengths of the same shapes (the explicit engine's loop is unrolled over T, so T is fixed).
"""

from __future__ import annotations

import logging

import pytest
import torch
from torch import Tensor, nn

import rnnkit

LAYERS = {
    "lstm-explicit": lambda: rnnkit.LSTM(6, 8, 2, bidirectional=True, engine="explicit"),
    "lstm-auto": lambda: rnnkit.LSTM(6, 8, 2, bidirectional=True),
    "gru-explicit": lambda: rnnkit.GRU(6, 8, bidirectional=True, engine="explicit"),
    "rnn-explicit": lambda: rnnkit.RNN(6, 8, engine="explicit"),
    "layernorm-lstm": lambda: rnnkit.LayerNormLSTM(6, 8, 2, bidirectional=True),
    "mgu": lambda: rnnkit.MGU(6, 8),
}


class WithLengths(nn.Module):
    """The layer called with lengths as a tensor input (what jit.trace records)."""

    def __init__(self, layer: nn.Module, gates: bool) -> None:
        super().__init__()
        self.layer, self.gates = layer, gates

    def forward(self, x: Tensor, lengths: Tensor) -> tuple:
        return self.layer(x, lengths=lengths, return_gates=self.gates)


def flat(result: tuple) -> list[Tensor]:
    out: list[Tensor] = []
    for r in result:
        out.extend([r] if isinstance(r, Tensor) else flat(tuple(r)))
    return out


def inputs(seed: int) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 6, (4,), generator=g)
    lengths[seed % 4] = 5
    return torch.randn(5, 4, 6, generator=g), lengths


def assert_same(got: tuple, want: tuple) -> None:
    got_f, want_f = flat(got), flat(want)
    assert len(got_f) == len(want_f)
    for a, b in zip(got_f, want_f):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("gates", [False, True])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_export_with_lengths_runs_other_lengths(name: str, gates: bool) -> None:
    torch.manual_seed(0)
    layer = WithLengths(LAYERS[name]().eval(), gates)
    program = torch.export.export(layer, inputs(1)).module()
    x, lengths = inputs(2)
    assert_same(program(x, lengths), layer(x, lengths))


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_trace_without_grad_then_train_through_it(name: str) -> None:
    """Traced under no_grad (as for inference), the program still backpropagates: the
    readable loop records no in-place writes that autograd would refuse later."""
    torch.manual_seed(0)
    layer = WithLengths(LAYERS[name](), gates=False)
    with torch.no_grad():
        traced = torch.jit.trace(layer, inputs(1), check_trace=False)
    x, lengths = inputs(2)
    assert_same(traced(x, lengths), layer(x, lengths))
    traced(x, lengths)[0].square().sum().backward()
    got = [p.grad.clone() for p in layer.parameters()]
    layer.zero_grad()
    layer(x, lengths)[0].square().sum().backward()
    for a, p in zip(got, layer.parameters()):
        torch.testing.assert_close(a, p.grad, rtol=1e-5, atol=1e-6)


def test_compile_explicit_engine_forward_and_backward() -> None:
    """torch.compile takes the hand-written backward (an autograd.Function) as it is:
    Dynamo and AOTAutograd, which trace it, are what the default backend runs first;
    inductor's C++ code generation on top is torch's own and took 44 s (a cold cache) on
    a two-core machine."""
    torch.manual_seed(0)
    layer = rnnkit.LSTM(6, 8, engine="explicit")
    x, lengths = inputs(3)
    x.requires_grad_(True)
    out = torch.compile(layer, backend="aot_eager")(x, lengths=lengths)[0]
    out.square().sum().backward()
    got = [x.grad.clone()] + [p.grad.clone() for p in layer.parameters()]
    x.grad, _ = None, layer.zero_grad()
    layer(x, lengths=lengths)[0].square().sum().backward()
    want = [x.grad] + [p.grad for p in layer.parameters()]
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_compile_with_lengths_warns_of_nothing_and_still_checks_them() -> None:
    """The lengths' range check reads their values; Dynamo used to warn of it ("Graph
    break from `Tensor.item()`", on the "torch._dynamo" logger) on every compiled call with
    lengths. Run eagerly, it is quiet and still refuses a length past T."""
    warned: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = warned.append  # type: ignore[method-assign]
    logging.getLogger("torch._dynamo").addHandler(handler)
    try:
        torch.manual_seed(0)
        compiled = torch.compile(rnnkit.GRU(6, 8, engine="explicit"), backend="aot_eager")
        x, lengths = inputs(4)
        compiled(x, lengths=lengths)
        with pytest.raises(ValueError, match=r"lengths must lie in \[1, 5\], got min \d, max 6"):
            compiled(x, lengths=lengths.clamp(max=4) + 2)
    finally:
        logging.getLogger("torch._dynamo").removeHandler(handler)
    assert [r.getMessage()[:80] for r in warned] == []


FUNC_LAYERS = {
    "lstm-zoneout": lambda engine: rnnkit.LSTM(3, 4, zoneout=0.1, engine=engine),
    "gru": lambda engine: rnnkit.GRU(3, 4, bidirectional=True, engine=engine),
    "rnn": lambda engine: rnnkit.RNN(3, 4, engine=engine),
}


@pytest.mark.parametrize("name", FUNC_LAYERS)
def test_torch_func_transforms_and_forward_ad_give_the_reference_engines_results(name):
    """torch.func.grad of a functional_call, jvp, vmap and forward-mode AD raised on the
    explicit engine ("must override the setup_context staticmethod"; auto too with a
    regulariser): its hand-written backward is autograd's alone. Under them the layer
    runs its readable loop, whose ops torch.func knows."""
    import torch.autograd.forward_ad as fwAD

    torch.manual_seed(0)
    layer = FUNC_LAYERS[name]("explicit").double().eval()
    ref = FUNC_LAYERS[name]("reference").double().eval()
    ref.load_state_dict(layer.state_dict())
    x, t = torch.randn(5, 2, 3, dtype=torch.float64), torch.randn(5, 2, 3, dtype=torch.float64)
    params = {k: v.detach() for k, v in layer.named_parameters()}

    def loss(m: nn.Module):
        return lambda p: torch.func.functional_call(m, p, (x,))[0].pow(2).sum()

    got, want = torch.func.grad(loss(layer))(params), torch.func.grad(loss(ref))(params)
    assert all(torch.allclose(got[k], want[k], atol=1e-12) for k in want)
    with fwAD.dual_level():
        tangent = fwAD.unpack_dual(layer(fwAD.make_dual(x, t))[0]).tangent
        want_tangent = fwAD.unpack_dual(ref(fwAD.make_dual(x, t))[0]).tangent
    assert torch.allclose(tangent, want_tangent, atol=1e-12)
    assert torch.allclose(torch.func.jvp(lambda v: layer(v)[0], (x,), (t,))[1], want_tangent)
    per_sample = torch.func.vmap(lambda v: layer(v)[0], in_dims=1, out_dims=1)(x)
    assert torch.allclose(per_sample, ref(x)[0], atol=1e-12)
