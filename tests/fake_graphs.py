"""A stand-in for CUDA graphs, so the training wrapper of rnnkit.graphs.capture runs on
the CPU: ``torch.cuda.make_graphed_callables`` as it behaves, run eagerly."""

from __future__ import annotations

import torch

REPLAYS: list[int] = []


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
            with torch.enable_grad():
                held["outs"] = fn(*static)
            return tuple(o.detach() for o in held["outs"])

        @staticmethod
        def backward(ctx, *grads):
            pairs = [(o, g) for o, g in zip(held["outs"], grads) if o.requires_grad]
            wrt = [s for s in static if s.requires_grad]
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
        self.outputs = fn(*static)

    def replay(self):
        REPLAYS.append(1)
        for out, new in zip(self.outputs, self.fn(*self.static)):
            out.copy_(new)


def fake_record(fn, static):
    graph = FakeGraph(fn, static)
    return graph, graph.outputs
