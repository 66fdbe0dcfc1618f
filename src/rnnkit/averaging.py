"""Checkpoint averaging (``rnnkit average``): the element-wise mean of the weights of
several checkpoints of one run, each averaged input counting as the steps it holds."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from rnnkit.checkpoint import (
    TRANSLATION_KEYS,
    CheckpointError,
    bundle_of,
    config_of,
    load_checkpoint,
    step_of,
    weights_of,
)
from rnnkit.config import Config

__all__ = ["average_checkpoints", "steps_held"]


def average_checkpoints(paths: list[str | Path]) -> dict[str, Any]:
    """The element-wise mean of the weights of ``paths`` (Junczys-Dowmunt et al. 2016;
    OpenNMT's and fairseq's checkpoint averaging), as a translation-only payload.

    All checkpoints must come from the same model: the same model config and vocabularies
    (a :class:`CheckpointError` names the first that differs). An averaged input counts as
    the checkpoints it averages (its weight in the mean is their number), so averaging
    ``avg(30, 60)`` with step 80 equals averaging 30, 60 and 80; a step that two inputs
    hold (``avg(30, 60)`` with step 60, or one file twice) is refused. Tokenizers, vocabularies
    and config are those of the last; ``step`` is the last one's and ``averaged`` lists
    every step averaged.
    """
    if not paths:
        raise CheckpointError("no checkpoints to average")
    first = Path(paths[0])
    last = load_checkpoint(first)  # one checkpoint in memory at a time, beside the sums
    cfgs, steps = [config_of(last, first)], [steps_held(last, first)]
    vocabs = {key: last.get(key) for key in ("src_vocab", "tgt_vocab")}
    total = _weighted(weights_of(last, first), len(steps[0]), None, first)
    for path in paths[1:]:
        del last  # (the previous checkpoint goes before the next comes)
        last = load_checkpoint(path)
        cfg = config_of(last, path)
        for key, vocab in vocabs.items():
            if last.get(key) != vocab:
                raise CheckpointError(f"{path}: {key} differs from {first}'s")
        if cfg.model != cfgs[0].model:
            key = next(
                f.name
                for f in dataclasses.fields(cfg.model)
                if getattr(cfg.model, f.name) != getattr(cfgs[0].model, f.name)
            )
            raise CheckpointError(
                f"{path}: model.{key} is {getattr(cfg.model, key)!r} here and "
                f"{getattr(cfgs[0].model, key)!r} in {first}: only checkpoints of one model "
                "average"
            )
        _same_start(path, cfg, first, cfgs[0])
        cfgs.append(cfg)
        steps.append(steps_held(last, path))
        total = _weighted(weights_of(last, path), len(steps[-1]), total, path, first)
    _no_step_twice(paths, steps, cfgs)
    n = sum(map(len, steps))
    like = weights_of(last, paths[-1])  # the dtypes of the last
    mean = {
        k: (t / n).to(like[k].dtype)
        if t.dtype == torch.float64 and torch.is_floating_point(like[k])
        else t
        for k, t in total.items()
    }
    out = {k: last[k] for k in TRANSLATION_KEYS if k in last}
    out.update(model=mean, step=step_of(last, paths[-1]), averaged=[s for ss in steps for s in ss])
    bundle_of(out, paths[-1])  # the average translates: its config, vocabularies, tokenizers
    return out


def _weighted(
    state: dict[str, torch.Tensor],
    n: int,
    total: dict[str, torch.Tensor] | None,
    path: str | Path,
    first: str | Path = "",
) -> dict[str, torch.Tensor]:
    """``total`` plus ``n`` × the floating weights of ``state`` in float64 (integer
    buffers: the latest's); names and shapes must be those of ``total``."""
    if total is None:
        return {
            k: n * t.to(torch.float64) if torch.is_floating_point(t) else t
            for k, t in state.items()
        }
    if state.keys() != total.keys():
        raise CheckpointError(f"{path}: weights differ in names from {first}'s")
    for k, t in state.items():
        if t.shape != total[k].shape:
            raise CheckpointError(f"{path}: weights differ in shape from {first}'s")
        total[k] = total[k] + n * t.to(torch.float64) if torch.is_floating_point(t) else t
    return total


def steps_held(ckpt: dict[str, Any], path: str | Path) -> list[int]:
    """The steps whose weights ``ckpt`` holds: those it averages, or its own."""
    steps = ckpt.get("averaged", [step_of(ckpt, path)])
    if not isinstance(steps, list) or not steps or not all(type(s) is int for s in steps):
        raise CheckpointError(f"{path}: averaged is not a list of steps")
    return steps


def _no_step_twice(paths: list[str | Path], steps: list[list[int]], cfgs: list[Config]) -> None:
    """Refuse a step of one run that two inputs hold (a file given twice, an average
    given with one of the checkpoints it already averages): it would count twice in the
    mean. One run: the same model, data, seed and parent (budgets, device, logging may
    change on resume; children of one parent with other settings share step numbers)."""
    seen: list[tuple[int, Any, str | Path]] = []
    for path, held, cfg in zip(paths, steps, cfgs):
        run = (dataclasses.asdict(cfg.model), dataclasses.asdict(cfg.data),
               cfg.train.seed, cfg.train.init_from)  # fmt: skip
        for step in held:
            twice = next((p for s, r, p in seen if s == step and r == run), None)
            if twice is not None:
                raise CheckpointError(
                    f"{path}: step {step} is already in {twice} (it would count twice)"
                )
        seen += [(step, run, path) for step in held]


def _same_start(path: str | Path, cfg: Config, first: Path, cfg0: Config) -> None:
    """Refuse to average checkpoints of runs that started from other weights: another
    ``train.seed`` (another initialisation), unless both fine-tuned one parent
    (``train.init_from``). Their weights lie in unrelated places; their mean is noise."""
    t, t0 = cfg.train, cfg0.train
    if t.seed != t0.seed and not (t.init_from and t.init_from == t0.init_from):
        raise CheckpointError(
            f"{path}: from another run than {first} (train.seed {t.seed} there, "
            f"{t0.seed} here): the weights of independent runs do not average; "
            "translate with them as an ensemble instead (rnnkit translate A.pt B.pt)"
        )
