"""The custom-cell API: a cell is one step of a recurrence, its gates named.

A cell declares three things and implements one method:

- ``Gates``: a NamedTuple of everything one step computes that is worth looking at,
  the state included (LSTM: ``input forget candidate output cell hidden``);
- ``state``: the names of the ``Gates`` fields carried to the next step, the output
  ``hidden`` first (LSTM: ``("hidden", "cell")``);
- ``chunks``: G, the number of H-sized blocks of the input projection, so that
  ``weight_ih`` is ``(G·H, I)`` and ``weight_hh`` ``(G·H, H)``, gates stacked in the
  order of the equations;
- ``step(gi, state) -> (new_state, gates)``: one step, given the input projection
  ``gi = W_ih x_t + b_ih`` ``(B, G·H)`` that the layer computes for all T steps at
  once (one matrix product) and the state, a tuple of ``(B, H)`` tensors.

The recurrent product goes through :meth:`Cell.hh` (``W_hh h + b_hh``), so that a
layer can apply recurrent dropout to the h entering it and DropConnect to ``W_hh``
without the cell knowing. :class:`rnnkit.Recurrent` unrolls any cell over time with
lengths, stacking, bidirectionality, regularisers and gate traces.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Cell", "State", "check_declarations", "check_step", "first_step"]

State = tuple[Tensor, ...]  # one (B, H) tensor per name in Cell.state


class Cell(nn.Module):
    """Base class of every rnnkit cell: parameters as ``torch.nn`` lays them out.

    Parameters are created from :meth:`parameter_shapes` (``weight_ih (G·H, I)``,
    ``weight_hh (G·H, H)``, ``bias_ih``, ``bias_hh`` and whatever a subclass adds) and
    initialised by :meth:`reset_parameters`, U(-1/√H, 1/√H) as torch.nn does.

    Calling a cell runs one step from raw input: ``h, state = cell(x_t, state)``.
    """

    Gates: ClassVar[Any]  # a NamedTuple class; its fields name the step's activations
    state: ClassVar[tuple[str, ...]] = ("hidden",)
    chunks: ClassVar[int] = 1
    # the Gates fields squashed by σ into (0, 1): inspect's saturation and heatmap scale;
    # None: the fields named input, forget, output, reset or update
    sigmoid: ClassVar[tuple[str, ...] | None] = None

    recurrent_mask: Tensor | None = None  # (B, H) set by a layer for recurrent dropout
    weight_ih: Tensor
    weight_hh: Tensor
    bias_ih: Tensor | None
    bias_hh: Tensor | None

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_declarations(type(self))
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        for name, shape in self.parameter_shapes().items():
            self.register_parameter(
                name, nn.Parameter(torch.empty(shape, device=device, dtype=dtype))
            )
        for name in ("bias_ih", "bias_hh"):
            if not bias and name not in self._parameters:
                self.register_parameter(name, None)
        self.reset_parameters()

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """Name → shape of every parameter, in ``state_dict`` order. Extend to add some."""
        GH, I, H = self.chunks * self.hidden_size, self.input_size, self.hidden_size
        shapes: dict[str, tuple[int, ...]] = {"weight_ih": (GH, I), "weight_hh": (GH, H)}
        if self.bias:
            shapes.update(bias_ih=(GH,), bias_hh=(GH,))
        return shapes

    def reset_parameters(self) -> None:
        """U(-1/√H, 1/√H) for every parameter, as torch.nn does. Override for others."""
        bound = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0.0
        for name in self.parameter_shapes():
            nn.init.uniform_(getattr(self, name), -bound, bound)

    # ------------------------------------------------------------------ the step

    def project(self, x: Tensor) -> Tensor:
        """The input projection ``W_ih x + b_ih``: ``(..., I)`` → ``(..., G·H)``.

        A layer calls it once on all T steps ``(T, B, I)``.
        """
        return F.linear(x, self.weight_ih, self.bias_ih)

    def hh(self, h: Tensor, blocks: slice | int | None = None, bias: bool = True) -> Tensor:
        """The recurrent projection ``W_hh h + b_hh`` ``(B, G·H)``; ``blocks`` selects gate
        blocks (``slice(2, 3)`` or ``2``: the third H rows), ``bias=False`` leaves out b_hh.
        Recurrent dropout, when a layer sets it, multiplies the h entering here by its
        per-sequence mask."""
        if self.recurrent_mask is not None:
            h = h * self.recurrent_mask
        w, b = self.weight_hh, (self.bias_hh if bias else None)
        if blocks is not None:
            start, stop = gate_blocks(self, blocks)
            H = self.hidden_size
            rows = slice(start * H, stop * H)
            w, b = w[rows], (None if b is None else b[rows])
        return F.linear(h, w, b)

    def step(self, gi: Tensor, state: State) -> tuple[State, Any]:
        """One step: gi ``(B, G·H)``, state ``(B, H)`` tensors → new state, ``Gates``."""
        raise NotImplementedError(f"{type(self).__name__} must implement step(gi, state)")

    def zero_state(self, batch: int, like: Tensor) -> State:
        """A state of zeros, ``(B, H)`` per state name, on ``like``'s device and dtype."""
        return tuple(like.new_zeros(batch, self.state_size(n)) for n in self.state)

    def state_size(self, name: str) -> int:
        """Width of state ``name`` (H unless a cell says otherwise, e.g. a projection)."""
        return self.hidden_size

    def batched(self, x: Tensor, state: Any) -> tuple[Tensor, State, bool]:
        """x ``(B, I)`` or unbatched ``(I,)`` and its state (a tensor, a tuple or None:
        zeros) as ``(B, I)`` and a tuple of ``(B, ·)``, checked as torch.nn's cells check
        them (same messages), and whether x came unbatched."""
        name = type(self).__name__
        if x.dim() not in (1, 2):
            raise ValueError(f"{name}: Expected input to be 1D or 2D, got {x.dim()}D instead")
        unbatched = x.dim() == 1
        x = x.unsqueeze(0) if unbatched else x
        if x.shape[1] != self.input_size:
            raise RuntimeError(
                f"input has inconsistent input_size: got {x.shape[1]} expected {self.input_size}"
            )
        if state is None:
            return x, self.zero_state(x.shape[0], x), unbatched
        state = tuple(state) if isinstance(state, (tuple, list)) else (state,)
        if len(state) != len(self.state):
            raise ValueError(
                f"{name}: expected {len(self.state)} state tensor(s), got {len(state)}"
            )
        for k, s in enumerate(state):
            which = f"hx[{k}]" if len(state) > 1 else "hidden"
            if s.dim() not in (1, 2):
                raise ValueError(f"{name}: Expected {which} to be 1D or 2D, got {s.dim()}D instead")
            if unbatched and s.dim() != 1:  # (torch.nn: "hidden0 has inconsistent hidden_size")
                raise RuntimeError(f"{name}: unbatched 1-D input needs a 1-D {which}, got 2-D")
        state = tuple(s.unsqueeze(0) for s in state) if unbatched else state
        for k, (s, n) in enumerate(zip(state, self.state)):
            if s.dim() != 2 or s.shape[0] != x.shape[0]:
                raise RuntimeError(
                    f"Input batch size {x.shape[0]} doesn't match hidden{k} batch size {s.shape[0]}"
                )
            if s.shape[1] != self.state_size(n):
                raise RuntimeError(
                    f"hidden{k} has inconsistent hidden_size: got {s.shape[1]}, "
                    f"expected {self.state_size(n)}"
                )
        return x, state, unbatched

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """One step from raw input: x ``(B, I)`` (or ``(I,)``) → ``(h, state)``."""
        x, state, unbatched = self.batched(x, state)
        new, _ = first_step(self, self.project(x), state)
        new = tuple(s.squeeze(0) for s in new) if unbatched else new
        return new[0], new

    def extra_repr(self) -> str:
        """``3, 4`` and each keyword of ``__init__`` kept on the cell under its own name
        that is not at its default (``nonlinearity=relu``, ``eps=0.001``), as torch.nn's
        cells show theirs."""
        s = f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")
        for name, default in _keyword_defaults(type(self)).items():
            value = getattr(self, name, default)
            try:
                differs = bool(value != default)
            except Exception:  # (a tensor, or a value without a plain ==: left out)
                differs = False
            if differs:
                s += f", {name}={value if isinstance(value, str) else repr(value)}"
        return s


def gate_blocks(cell: Cell, blocks: slice | int) -> tuple[int, int]:
    """The gate blocks ``[start, stop)`` that ``blocks`` names among the cell's chunks."""
    name, G = f"{type(cell).__name__}.hh", cell.chunks
    if isinstance(blocks, int) and not isinstance(blocks, bool):
        if not -G <= blocks < G:
            raise IndexError(f"{name}: gate block {blocks} out of range for {G} block(s)")
        start = blocks % G
        return start, start + 1
    if not isinstance(blocks, slice):
        raise TypeError(
            f"{name}: blocks must be a slice of gate blocks (slice(start, stop)) or an int, "
            f"got {type(blocks).__name__}"
        )
    start, stop, stride = blocks.indices(G)
    if stride != 1 or start >= stop:
        raise ValueError(
            f"{name}: blocks must be consecutive gate blocks, at least one "
            f"(slice(start, stop) within {G}), got {blocks}"
        )
    return start, stop


def init_parameters(cls: type) -> tuple[list[inspect.Parameter], bool]:
    """The parameters of ``cls.__init__`` and of the ``__init__`` s it hands ``**kw`` on
    to along its classes, the most derived first; and whether every one of them takes
    ``**kw`` (then any keyword may be taken)."""
    found: list[inspect.Parameter] = []
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            params = list(inspect.signature(vars(klass)["__init__"]).parameters.values())
            found += params
            if not any(p.kind is p.VAR_KEYWORD for p in params):
                return found, False
    return found, True


def _keyword_defaults(cls: type) -> dict[str, Any]:
    """The keywords of the cell's ``__init__`` chain with their defaults, the most derived
    class's first; not the sizes, bias, device, dtype."""
    found: dict[str, Any] = {}
    for p in init_parameters(cls)[0]:
        if p.default is not p.empty and p.name not in _NOT_SHOWN:
            found.setdefault(p.name, p.default)
    return found


_NOT_SHOWN = frozenset({"input_size", "hidden_size", "bias", "device", "dtype"})


def check_declarations(cls: type) -> None:
    """Raise ``TypeError`` when a cell class's ``state``, ``Gates``, ``chunks`` or
    ``sigmoid`` is not what the API says (checked when a cell is made, before any step)."""
    name = cls.__name__
    state = getattr(cls, "state", None)
    if not (isinstance(state, tuple) and state and all(isinstance(n, str) for n in state)):
        raise TypeError(
            f"{name}.state must be a non-empty tuple of state names, the output first, "
            f"e.g. ('hidden',) or ('hidden', 'cell'); got {state!r}"
        )
    fields = getattr(getattr(cls, "Gates", None), "_fields", None)
    if fields is None:
        raise TypeError(
            f"{name} must declare Gates, a NamedTuple class naming what one step computes "
            f"(its state {state} included)"
        )
    if missing := [n for n in state if n not in fields]:
        raise TypeError(f"{name}.Gates must have a field for each state name; missing {missing}")
    chunks = getattr(cls, "chunks", None)
    if isinstance(chunks, bool) or not isinstance(chunks, int) or chunks < 1:
        raise TypeError(
            f"{name}.chunks must be a positive integer (gate blocks in weight_ih); got {chunks!r}"
        )
    sigmoid = getattr(cls, "sigmoid", None)
    if sigmoid is not None and not (
        isinstance(sigmoid, tuple) and all(isinstance(n, str) and n in fields for n in sigmoid)
    ):
        raise TypeError(f"{name}.sigmoid must be a tuple of Gates fields {fields}; got {sigmoid!r}")


def first_step(cell: Cell, gi: Tensor, state: State) -> tuple[State, Any]:
    """``cell.step(gi, state)`` checked by :func:`check_step`; an error from the step's
    arithmetic (torch's size mismatch, an unpacking of too few) is given the sizes it was handed,
    which it does not name: a ``chunks`` that does not match the blocks ``step`` splits
    ``gi`` into shows as a mismatch of two widths in the user's own line."""
    try:
        out = cell.step(gi, state)
    except (RuntimeError, ValueError) as e:  # (a chunk(4) of too few: "not enough values")
        if type(e) not in (RuntimeError, ValueError):  # (out of memory and the like)
            raise
        H, G = cell.hidden_size, type(cell).chunks
        raise type(e)(
            f"{type(cell).__name__}.step: {e} (it was given gi {tuple(gi.shape)} = (B, "
            f"chunks·H) with chunks = {G}, H = {H}, and the state "
            f"{', '.join(f'{k} {tuple(s.shape)}' for k, s in zip(cell.state, state))})"
        ) from e
    return check_step(cell, out, state)


def check_step(cell: Cell, out: Any, state: State) -> tuple[State, Any]:
    """A cell's first step returned what the API says, ``(new_state, gates)``: one tensor
    per declared state, each the shape of the state it replaces, and gates with a field
    per state name, every field a ``(B, ·)`` tensor. Returns the two."""
    name = type(cell).__name__
    if not isinstance(out, tuple) or len(out) != 2:
        got = f"a tuple of {len(out)}" if isinstance(out, tuple) else type(out).__name__
        raise ValueError(f"{name}.step must return (new_state, gates); got {got}")
    new, gates = out
    if not isinstance(new, tuple) or len(new) != len(state):
        got = f"{len(new)} tensor(s)" if isinstance(new, tuple) else type(new).__name__
        raise ValueError(
            f"{name}.step must return (new_state, gates) with new_state a tuple of "
            f"{len(state)} tensor(s) {cell.state}; got {got}"
        )
    for key, s, old in zip(cell.state, new, state):
        if not isinstance(s, Tensor) or s.shape != old.shape:
            shape = tuple(s.shape) if isinstance(s, Tensor) else type(s).__name__
            raise ValueError(
                f"{name}.step: state {key!r} must keep its shape {tuple(old.shape)}, got {shape}"
            )
        for what in ("dtype", "device"):  # (an int state copied into float buffers, or not)
            if getattr(s, what) != getattr(old, what):
                raise ValueError(
                    f"{name}.step: state {key!r} must keep its {what} {getattr(old, what)}, "
                    f"got {getattr(s, what)}"
                )
    fields = getattr(gates, "_fields", None)
    if fields is None or not set(cell.state) <= set(fields):
        hint = (
            f"return {name}.Gates(...), not a plain {type(gates).__name__}"
            if fields is None
            else f"the gates returned have the fields {tuple(fields)}"
        )
        raise ValueError(
            f"{name}.step must return its gates as a NamedTuple with fields for "
            f"{cell.state} ({hint}); got {type(gates).__name__}"
        )
    declared = type(cell).Gates
    if not isinstance(gates, declared):  # static shapes rebuild the trace as a Gates
        raise ValueError(
            f"{name}.step must return its gates as {name}.Gates ({declared.__name__}); "
            f"got {type(gates).__name__} (a subclass that declares other gates needs its "
            "own step)"
        )
    B = state[0].shape[0]
    for field, g in zip(fields, gates):  # recorded over time and masked past each length
        if not isinstance(g, Tensor) or g.dim() != 2 or g.shape[0] != B:
            shape = tuple(g.shape) if isinstance(g, Tensor) else type(g).__name__
            raise ValueError(
                f"{name}.step: gate {field!r} must be a (B, ·) tensor, B = {B}; got {shape}"
            )
    return new, gates


def strip(cell: Cell) -> list[str]:
    """Take the parameters and buffers off ``cell`` (a layer owns them under torch.nn
    names) and return their names; :func:`bind` hands tensors back for one forward pass."""
    names = list(cell._parameters) + list(cell._buffers)
    for name in names:
        cell._parameters.pop(name, None)
        cell._buffers.pop(name, None)
        object.__setattr__(cell, name, None)
    return names


def bind(cell: Cell, tensors: dict[str, Tensor | None], mask: Tensor | None = None) -> Cell:
    """A copy of the stripped ``cell`` that holds its tensors (and recurrent-dropout mask)
    for one pass: the layer's own cell stays bare, so calls of one layer from several
    threads each step their own copy. While torch.compile / torch.export trace (one
    thread, and no ``copy`` in a graph), the cell itself, which :func:`unbind` clears."""
    if torch.compiler.is_compiling():
        bound = cell
    else:  # (not copy.copy: a parametrized cell refuses pickling's hooks, and a
        bound = object.__new__(type(cell))  # __getstate__ may leave attributes out)
        bound.__dict__.update(cell.__dict__)
    for name, t in tensors.items():
        object.__setattr__(bound, name, t)
    object.__setattr__(bound, "recurrent_mask", mask)
    return bound


def unbind(cell: Cell, names: list[str]) -> None:
    """Drop what :func:`bind` gave, so no tensor outlives the pass on a hidden cell."""
    for name in names:
        object.__setattr__(cell, name, None)
    object.__setattr__(cell, "recurrent_mask", None)
