"""Which process of a job this is, from the variables torchrun sets (read without
torch: the command line's error handling reads them too)."""

from __future__ import annotations

import os

__all__ = ["JobError", "rank_and_world"]


class JobError(ValueError):
    """A variable of torchrun's that makes no sense (said as one line, status 2)."""


def rank_and_world() -> tuple[int, int]:
    """This process's ``RANK`` and ``WORLD_SIZE`` (torchrun sets both; 0 and 1 without
    it). Raises :class:`JobError` for a value that is not a whole number, or a
    ``RANK`` missing or not below ``WORLD_SIZE`` in a job of several processes."""
    values = {}
    for name, default in (("WORLD_SIZE", "1"), ("RANK", "0")):
        raw = os.environ.get(name, default)
        try:
            values[name] = int(raw)
        except ValueError:
            raise JobError(f"{name}={raw}: a whole number (torchrun sets it)") from None
    world, rank = values["WORLD_SIZE"], values["RANK"]
    if world < 1:
        raise JobError(f"WORLD_SIZE={world}: at least 1 (torchrun sets it)")
    if world > 1 and "RANK" not in os.environ:
        raise JobError(f"WORLD_SIZE={world} but no RANK: torchrun sets both")
    if not 0 <= rank < world:
        raise JobError(f"RANK={rank}: from 0 to WORLD_SIZE - 1 = {world - 1}")
    return rank, world
