"""Checkpoints across runs: what ``--resume`` and ``train.init_from`` accept and the kept
``step-STEP.pt`` files (:mod:`rnnkit.checkpoint` reads and writes one; their average is
:mod:`rnnkit.averaging`'s, importable from here too)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rnnkit.averaging import average_checkpoints, steps_held
from rnnkit.checkpoint import (
    CheckpointError,
    bundle_of,
    load_checkpoint,
)
from rnnkit.config import Config, resolve_data_path
from rnnkit.distributed import Dist, restore_rng, rng_state, set_rng_state
from rnnkit.ema import training_weights
from rnnkit.optim import check_schedule
from rnnkit.position import Position, check_progress
from rnnkit.progress import check_meters

__all__ = [
    "average_checkpoints",
    "changed_keys",
    "check_resumable",
    "found_at",
    "kept_checkpoints",
    "load_entry",
    "load_initial",
    "restore_run",
]


# model keys that shape the parameters, and cell_kwargs (the same shapes, another
# function: reset_after, nonlinearity): a checkpoint resumes only into the same ones
_SHAPE_KEYS = (
    "cell", "emb_size", "hidden_size", "enc_layers", "dec_layers", "bidirectional",
    "attention", "luong_score", "bridge", "tie_embeddings", "cell_kwargs",
)  # fmt: skip


def check_resumable(
    saved: dict[str, Any],
    cfg: Config,
    path: str | Path,
    fine_tune: bool = False,
    ckpt: dict[str, Any] | None = None,
) -> None:
    """Raise :class:`CheckpointError` when the checkpoint at ``path`` (its config dict
    ``saved``) holds a model of another shape than ``cfg`` describes, or vocabularies that
    ``cfg`` cannot train with (``fine_tune``: for ``train.init_from``, not ``--resume``),
    or (``--resume``, the read ``ckpt``) holds weights only, or entries that do not load,
    or was made by other tokenizer settings."""
    if ckpt is not None:
        _check_full(ckpt, path)
    if not fine_tune:
        was_data, now_data = saved.get("data", {}), dataclasses.asdict(cfg.data)
        moved = [k for k in _TOKENIZER_KEYS if k in was_data and was_data[k] != now_data[k]]
        if moved:
            diff = ", ".join(f"data.{k} {was_data[k]!r} there, {now_data[k]!r} here" for k in moved)
            raise CheckpointError(
                f"{path}: --resume keeps its tokenizers and vocabularies ({diff}); resume "
                "with that config, or train into a new --out (train.init_from)"
            )
        _check_same_data(saved, cfg, path, ckpt)
    how, fix = (
        ("train.init_from", "give the model section of that run")
        if fine_tune
        else ("--resume", "resume with that config, or train into a new --out")
    )
    was, now = saved.get("model", {}), dataclasses.asdict(cfg.model)
    changed = [k for k in _SHAPE_KEYS if k in was and was[k] != now[k]]
    if changed:
        diff = ", ".join(f"model.{k} {was[k]!r} there, {now[k]!r} here" for k in changed)
        raise CheckpointError(f"{path}: {how} needs the model it was trained with ({diff}); {fix}")
    if cfg.data.bpe_dropout and not saved.get("data", {}).get("bpe_dropout"):
        raise CheckpointError(
            f"{path}: trained without data.bpe_dropout, its vocabularies lack the pieces "
            f"of dropped merges; {'fine-tune' if fine_tune else 'resume'} without it"
            + ("" if fine_tune else ", or train into a new --out")
        )
    metric = saved.get("train", {}).get("early_stopping_metric", "bleu")
    if not fine_tune and metric != cfg.train.early_stopping_metric:
        raise CheckpointError(
            f"{path}: trained with train.early_stopping_metric {metric}, which its best.pt and "
            f"patience count in; resume with it, or train into a new --out (train.init_from)"
        )
    lower = bool(saved.get("data", {}).get("lowercase", False))
    if fine_tune and lower != cfg.data.lowercase:
        raise CheckpointError(
            f"{path}: trained with data.lowercase {str(lower).lower()}; its tokenizers and "
            "vocabularies need the same"
        )


_TOKENIZER_KEYS = (
    "tokenizer",
    "vocab_size",
    "joint_vocab",
    "min_freq",
    "max_vocab",
    "sp_model",
    "lowercase",
)  # fmt: skip  (what made a run's tokenizers and vocabularies)


# what the run's data is: the built-in task's pairs, the held-out split (both drawn with
# train.seed), the order of every epoch's batches
_RUN_KEYS = ("train.seed", "data.task", "data.task_size", "data.task_dev", "data.task_test",
             "data.task_options", "data.dev_size", "data.test_size")  # fmt: skip
# what makes an epoch's batches, which the saved position counts into
_EPOCH_KEYS = ("train.batch_size", "train.batch_tokens", "data.max_len")


def _check_same_data(
    saved: dict[str, Any], cfg: Config, path: str | Path, ckpt: dict[str, Any] | None
) -> None:
    """--resume with other data or, in mid-epoch, other batches than the run's: the pairs
    (and the dev set that ``best.pt`` was chosen on) would be others, or the saved
    position would count into other batches (some pairs trained twice, some never)."""
    now = dataclasses.asdict(cfg)
    at = ckpt.get("progress", {}) if ckpt is not None else {}
    pos, epoch, batches = at.get("pos", 0), at.get("epoch", 0), at.get("epoch_batches", 0)
    mid_epoch = pos > 0 and not (batches and pos >= batches)  # (0: older, not known)
    tasks = bool(saved.get("data", {}).get("task") or cfg.data.task)
    for key in _RUN_KEYS + (_EPOCH_KEYS if mid_epoch else ()):
        section, name = key.split(".")
        if name.startswith("task_") and not tasks:  # no task: its sizes mean nothing
            continue
        if name in ("dev_size", "test_size") and tasks:  # a task generates its dev and test
            continue
        was = saved.get(section, {})
        if name in was and was[name] != now[section][name]:
            what = f"{key} {was[name]!r} there, {now[section][name]!r} here"
            if key in _EPOCH_KEYS:
                raise CheckpointError(
                    f"{path}: --resume continues {pos} batches into epoch {epoch + 1}, whose "
                    f"batches its settings made ({what}); resume with them (train.max_epochs "
                    f"{epoch + 1} stops at the epoch's end), then change them"
                )
            raise CheckpointError(
                f"{path}: --resume needs the run's data and its order ({what}); resume with "
                "that config, or train into a new --out (train.init_from)"
            )


def _check_full(ckpt: dict[str, Any], path: str | Path) -> None:
    """Refuse a checkpoint that holds weights only (no optimizer, schedule, RNG states or
    data position: an average, a kept step file) or that does not load."""
    if "optimizer" not in ckpt:
        what = "a kept step-*.pt file"
        if "averaged" in ckpt:
            what = f"an average of steps {', '.join(map(str, steps_held(ckpt, path)))}"
        raise CheckpointError(
            f"{path}: holds weights only ({what}) and cannot be resumed; "
            "start a new run from it with train.init_from"
        )
    for key in ("scheduler", "progress", "rng"):
        if key not in ckpt:
            raise CheckpointError(f"{path}: checkpoint lacks {key!r}, which --resume needs")
    try:
        check_progress(ckpt["progress"])
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from None
    load_entry(path, "optimizer", _check_optimizer, ckpt["optimizer"])
    load_entry(path, "scheduler", check_schedule, ckpt["scheduler"])
    key, rngs = _rng_entry(ckpt)
    load_entry(path, key, _check_rng, rngs)
    if "meters" in ckpt:  # (older files have none)
        load_entry(path, "meters", check_meters, ckpt["meters"])
    bundle_of(ckpt, path)
    ema = ckpt.get("ema")
    if ema is not None:  # train.ema_decay: the weights that train, beside the average
        updates = ema.get("updates") if isinstance(ema, dict) else None
        if isinstance(updates, bool) or not isinstance(updates, int):
            raise CheckpointError(f"{path}: its ema entry is not the one rnnkit writes")
        bundle_of({**ckpt, "model": ema.get("weights")}, f"{path} (ema weights)")


def _check_optimizer(state: Any) -> None:
    """The outline of a torch optimizer's state (the model's parameters, which its
    groups must fit, are built later; ``load_entry`` guards that load too)."""
    if not isinstance(state, dict) or not isinstance(state.get("state"), dict):
        raise ValueError("not a torch optimizer's state")
    groups = state.get("param_groups")
    if not (isinstance(groups, list) and all(isinstance(g, dict) for g in groups)):
        raise ValueError("its param_groups are not a list of groups")


def _check_rng(states: Any) -> None:
    """Each of ``states`` set as this process's RNG states, then undone."""
    if not isinstance(states, list) or not states:
        raise ValueError("not a list of RNG states")
    before = rng_state()
    try:
        for s in states:
            set_rng_state(s)
    finally:
        set_rng_state(before)


def _rng_entry(ckpt: dict[str, Any]) -> tuple[str, Any]:
    """The RNG states ``--resume`` restores: every rank's, or (older files) ``rng`` alone."""
    if ckpt.get("rng_ranks"):
        return "rng_ranks", ckpt["rng_ranks"]
    return "rng", [ckpt["rng"]]


def changed_keys(saved: dict[str, Any], now: dict[str, Any], most: int = 4) -> str:
    """``section.key was → now`` for each key whose value differs between two config
    dicts (at most ``most``, then how many more); "" when none does."""
    moved = [
        f"{section}.{key} {saved.get(section, {}).get(key)!r} → {value!r}"
        for section, keys in now.items()
        for key, value in keys.items()
        if isinstance(saved.get(section), dict) and saved[section].get(key) != value
    ]
    more = f", and {len(moved) - most} more" if len(moved) > most else ""
    return ", ".join(moved[:most]) + more


def found_at(cfg: Config, config_dir: Path | None) -> dict[str, str | None]:
    """Where a run found its relative paths, absolute (kept in its checkpoints): the
    base of its corpus paths and ``data.sp_model`` (none for a task without one), and
    its ``train.init_from``."""
    t, d = cfg.train, cfg.data
    base = None if d.task and not d.sp_model else str(resolve_data_path(d, ".", config_dir))
    return {
        "data_dir": base,
        "init_from": str(Path(t.init_from).resolve()) if t.init_from else None,
    }


def load_entry(path: str | Path, entry: str, load: Callable[[Any], Any], state: Any) -> Any:
    """``load(state)`` (returned), ``state`` being the ``entry`` of the checkpoint at ``path`` that
    ``--resume`` restores (optimizer, schedule, RNG, scaler): a state that does not load
    (edited by hand, or broken) is a :class:`CheckpointError` naming the file and entry."""
    try:
        return load(state)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError) as e:
        why = f"lacks {e}" if isinstance(e, KeyError) else str(e)
        raise CheckpointError(f"{path}: its {entry} entry does not load ({why})") from None


def restore_run(
    ckpt: dict[str, Any], path: Path, model: Any, opt: Any, sched: Any, dist: Dist
) -> tuple[Position, int]:
    """``--resume``: the checkpoint ``ckpt`` read from ``path`` loaded into the training
    weights, the optimizer and the schedule, and this rank's RNG states restored. Returns
    where the run stood, and how many processes wrote it (if not as many as run now, only
    rank 0 takes the saved RNG states). An entry that does not load is a CheckpointError."""
    model.load_state_dict(training_weights(ckpt))
    load_entry(path, "optimizer", opt.load_state_dict, ckpt["optimizer"])
    load_entry(path, "scheduler", sched.load_state_dict, ckpt["scheduler"])
    saved = ckpt["progress"]  # (no best_bleu before the metric could be chosen)
    at = Position(**{"best_bleu": saved["best"], **saved})
    key, rngs = _rng_entry(ckpt)
    load_entry(path, key, lambda r: restore_rng(r, dist), rngs)
    return at, len(rngs)


def kept_checkpoints(out: str | Path) -> list[Path]:
    """The ``step-STEP.pt`` files in ``out``, oldest step first."""
    found = []
    for path in Path(out).glob("step-*.pt"):
        step = path.stem.removeprefix("step-")
        if step.isdigit():
            found.append((int(step), path))
    return [path for _, path in sorted(found)]


def load_initial(path: str | Path, cfg: Config) -> dict[str, Any]:
    """The checkpoint that ``train.init_from`` names, checked against ``cfg``: a new run
    starts from its weights, tokenizers and vocabularies (fine-tuning)."""
    ckpt = load_checkpoint(path)
    bundle_of(ckpt, path)  # its entries load: a broken parent fails here, in one line
    check_resumable(ckpt["config"], cfg, path, fine_tune=True)
    return ckpt
