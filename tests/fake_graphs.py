"""A stand-in for CUDA graphs, so the training wrapper of rnnkit.graphs.capture runs on
the CPU: ``torch.cuda.make_graphed_callables`` as it behaves, run eagerly. What a real
capture refuses is refused here too: a captured function that reads a tensor's value on
the host (``bool(t)``, ``t.item()``, ``t.cpu()``, ...) raises :class:`HostSync`."""

from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode

REPLAYS: list[int] = []

HOST_READS = {"__bool__", "item", "tolist", "__int__", "__float__", "__index__", "nonzero"}
HOST_READS |= {"cpu", "numpy", "masked_select"}


class HostSync(AssertionError):
    """A captured function read a tensor on the host: on a GPU it waits for the device
    at each step, and a CUDA graph cannot capture it (the capture fails)."""


class NoHostReads(TorchFunctionMode):
    """Within it, a torch function that reads a tensor's value on the host is a HostSync."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in HOST_READS:
            raise HostSync(f"{name} inside a function captured in a CUDA graph")
        return func(*args, **(kwargs or {}))


def fake_make_graphed_callables(fn, sample_args, allow_unused_input=False):
    """torch.cuda.make_graphed_callables as it behaves, run eagerly: the sample args are
    the static inputs (new args copied into them unless they are the same memory), and
    backward returns the same gradient buffers every time, overwritten in place."""
    static = sample_args
    buffers = [torch.zeros_like(a) if a.requires_grad else None for a in static]
    held = {}

    class Graphed(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *inputs):
            REPLAYS.append(1)
            for s, i in zip(static, inputs):
                if s.data_ptr() != i.data_ptr():
                    s.detach().copy_(i)
            with torch.enable_grad(), NoHostReads():
                held["outs"] = fn(*static)
            return tuple(o.detach() for o in held["outs"])

        @staticmethod
        def backward(ctx, *grads):
            pairs = [(o, g) for o, g in zip(held["outs"], grads) if o.requires_grad]
            wrt = [s for s in static if s.requires_grad]
            with NoHostReads():  # (the backward pass is captured too)
                got = iter(
                    torch.autograd.grad(
                        [o for o, _ in pairs], wrt, [g for _, g in pairs], allow_unused=True
                    )
                )
            result = []
            for s, buf in zip(static, buffers):
                g = next(got) if s.requires_grad else None
                if g is not None:
                    buf.copy_(g)
                result.append(None if g is None else buf.detach())
            return tuple(result)

    return lambda *args: Graphed.apply(*args)


class FakeGraph:
    """A recorded ``fn(*static)`` whose replay runs it again and writes the results into
    the outputs of the recording, in place, as a CUDA graph's replay does."""

    def __init__(self, fn, static):
        self.fn, self.static = fn, static
        with NoHostReads():
            self.outputs = fn(*static)

    def replay(self):
        REPLAYS.append(1)
        with NoHostReads():
            again = self.fn(*self.static)
        for out, new in zip(self.outputs, again):
            out.copy_(new)


def fake_record(fn, static):
    graph = FakeGraph(fn, static)
    return graph, graph.outputs
