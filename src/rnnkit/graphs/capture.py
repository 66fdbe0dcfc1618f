"""A cache of CUDA graphs per owner and bucket; eager execution everywhere else.

``call(owner, key, fn, args)`` runs ``fn(*args)`` (a function of tensors returning a
tuple of tensors, reading ``owner``'s parameters). On CUDA the first call of a key
captures it and later calls replay it:

- with autograd (training): :func:`torch.cuda.make_graphed_callables` records the
  forward and the backward as two graphs behind one autograd node; ``owner``'s
  parameters are inputs of both, so their gradients arrive as usual (copied out of the
  graph's buffers), and the optimizer may update them in place between replays;
- without (``torch.no_grad()``, evaluation, decoding): one forward graph.

A graph replays into the same memory, so what it returns is copied out, and a second
forward of the same graph before the first one's backward has run would overwrite the
activations that backward needs: that call runs eagerly instead. A key that cannot be
captured (an operation CUDA graphs refuse) warns once and stays eager.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable
from typing import Any, cast

import torch
from torch import Tensor, nn

__all__ = ["call", "clear", "captured"]

Fn = Callable[..., tuple[Tensor, ...]]
_cache: weakref.WeakKeyDictionary[nn.Module, dict[tuple, Any]] = weakref.WeakKeyDictionary()
_capturing = False


def _graphable(x: Tensor) -> bool:
    """Whether calls with ``x`` are captured (CUDA tensors; tests stand in for CUDA)."""
    return x.is_cuda


def captured(owner: nn.Module) -> int:
    """How many graphs ``owner`` holds (0 off CUDA)."""
    return sum(e is not None for e in _cache.get(owner, {}).values())


def clear(owner: nn.Module | None = None) -> None:
    """Drop the graphs of ``owner`` (of every owner when None), e.g. to free their memory."""
    if owner is None:
        _cache.clear()
    else:
        _cache.pop(owner, None)


def call(owner: nn.Module, key: tuple, fn: Fn, args: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """``fn(*args)``, through a CUDA graph for ``key`` when the arguments are on CUDA."""
    if not _graphable(args[0]) or _capturing:  # a graph inside one being made: part of it
        return fn(*args)
    grad = torch.is_grad_enabled() and (
        any(a.requires_grad for a in args) or any(p.requires_grad for p in owner.parameters())
    )
    key = (
        key,
        grad,
        owner.training,
        tuple((a.shape, a.dtype, a.requires_grad) for a in args),
        tuple(p.data_ptr() for p in owner.parameters()),  # moved or replaced: capture anew
        torch.is_autocast_enabled("cuda") and torch.get_autocast_dtype("cuda"),
    )
    graphs = _cache.setdefault(owner, {})
    if key not in graphs:
        graphs[key] = _capture(owner, fn, args, grad)
    entry = graphs[key]
    return fn(*args) if entry is None else entry(args)


def _capture(owner: nn.Module, fn: Fn, args: tuple[Tensor, ...], grad: bool) -> Any:
    global _capturing
    _capturing = True  # warm-up runs and the capture itself: inner calls run inline
    # torch.cuda.graph's exit ends the capture before it restores the stream: a capture
    # that fails would leave its side stream current for all that follows
    stream = torch.cuda.current_stream() if torch.cuda.is_available() else None
    try:
        return _Training(owner, fn, args) if grad else _Inference(fn, args)
    except Exception as e:  # noqa: BLE001 - any failure to capture means: run eagerly
        warnings.warn(
            f"rnnkit.graphs: could not capture {type(owner).__name__} in a CUDA graph "
            f"({type(e).__name__}: {e}); running it eagerly",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    finally:
        _capturing = False
        if stream is not None:
            torch.cuda.set_stream(stream)


def record(fn: Fn, static: tuple[Tensor, ...]) -> tuple[Any, tuple[Tensor, ...]]:
    """A CUDA graph of ``fn(*static)`` and its outputs (which each replay rewrites)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm up (cuBLAS handles, allocator) off the graph
        for _ in range(2):
            fn(*static)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outputs = fn(*static)
    return graph, outputs


class _Inference:
    """One forward graph: static inputs copied in, outputs copied out."""

    def __init__(self, fn: Fn, args: tuple[Tensor, ...]) -> None:
        self.static = tuple(a.detach().clone() for a in args)
        self.graph, self.outputs = record(fn, self.static)

    def __call__(self, args: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        for s, a in zip(self.static, args):
            s.copy_(a)
        self.graph.replay()
        return tuple(o.clone() for o in self.outputs)


class _OwnGradients(torch.autograd.Function):
    """The identity on parameters, whose backward hands on copies of their gradients: a
    graph's gradient buffers are rewritten by its next replay, and autograd would
    otherwise keep them as ``.grad`` (so two backward passes before an update, as in
    gradient accumulation, would overwrite the first)."""

    @staticmethod
    def forward(ctx: Any, *params: Tensor) -> tuple[Tensor, ...]:
        return tuple(p.view_as(p) for p in params)  # same memory: the graph reads it in place

    @staticmethod
    def backward(ctx: Any, *grads: Tensor) -> tuple[Tensor | None, ...]:
        return tuple(None if g is None else g.clone() for g in grads)


class _Training:
    """Forward and backward graphs behind one autograd node, and the guard against a
    second forward before the first one's backward.

    ``owner``'s parameters are passed as inputs (after ``fn``'s own, which ignores
    them: it reads the very same tensors from ``owner``), so the captured backward
    computes their gradients; the optimizer updates them in place between replays."""

    def __init__(self, owner: nn.Module, fn: Fn, args: tuple[Tensor, ...]) -> None:
        self.fn, self.params = fn, tuple(owner.parameters())
        n = len(args)
        sample = tuple(a.detach().clone().requires_grad_(a.requires_grad) for a in args)
        self.graphed = torch.cuda.make_graphed_callables(
            lambda *a: fn(*a[:n]), sample + self.params, allow_unused_input=True
        )
        self.last: weakref.ref[_Token] = weakref.ref(_Token())  # dead: nothing pending

    def _pending(self) -> bool:
        token = self.last()
        return token is not None and token.open

    def __call__(self, args: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        if self._pending():
            return self.fn(*args)
        params = _OwnGradients.apply(*self.params)
        token = _Token()
        self.last = weakref.ref(token)
        outs = tuple(o.clone() for o in cast(Any, self.graphed)(*args, *params))
        return _Watch.apply(token, *outs)


class _Token:
    """Lives as long as a replay's autograd graph; closed once its backward has run."""

    open = True


class _Watch(torch.autograd.Function):
    """The identity on a replay's outputs; its graph node holds the replay's token and
    closes it when the gradient passes (the graph's buffers are free again)."""

    @staticmethod
    def forward(ctx: Any, token: _Token, *outs: Tensor) -> tuple[Tensor, ...]:
        ctx.token = token
        return tuple(o.view_as(o) for o in outs)

    @staticmethod
    def backward(ctx: Any, *grads: Tensor) -> tuple[Any, ...]:
        ctx.token.open = False
        return (None, *grads)
