"""Typed configuration: dataclasses loaded from YAML, overridden with ``--set``, validated.

A config file has up to four sections, each optional; a missing key keeps its default::

    data:
      task: dates            # or train: /data/multi30k/train, src: de, tgt: en
    model:
      cell: lstm
      attention: bahdanau
    train:
      max_steps: 3000
    decode:
      beam_size: 5

On the command line ``--set section.key=value`` overrides one value; the value is read
as YAML (``train.lr=5e-4``, ``model.attention=none``, ``data.task=null``,
``data.task_options={long: true}``; ``data.task_options.long=true`` sets one entry).

Every value is checked against its field's annotation (an int is not a bool, a float
field also takes an int), its allowed choices and its range. Anything wrong raises
:class:`ConfigError` with one line that names the source and the key, e.g.
``configs/x.yaml: unknown key 'model.hiden_size' (did you mean 'hidden_size'?)``.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rnnkit.config_checks import (
    ConfigError,
    _check,
    _hint,
    _hints,
    _kind_name,
    _parse_yaml,
    _set_entry,
    dump_yaml,
)
from rnnkit.config_schema import (
    _SECTIONS,
    Config,
    DataConfig,
    DecodeConfig,
    ModelConfig,
    TrainConfig,
    _check_cross,
    validate_config,
)
from rnnkit.config_schema import TASK_NAMES as TASK_NAMES  # tests compare it with TASKS

__all__ = [
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "TrainConfig",
    "DecodeConfig",
    "Config",
    "load_config",
    "config_from_dict",
    "config_to_dict",
    "dump_config",
    "apply_overrides",
    "validate_config",
    "resolve_data_path",
]

# ---------------------------------------------------------------- names


def _section_class(name: Any, source: str) -> type:
    if name not in _SECTIONS:
        raise ConfigError(
            f"{source}: unknown section {str(name)!r}{_hint(str(name), list(_SECTIONS))}"
        )
    return _SECTIONS[name]


def _names(cls: Any) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _field_of(cls: Any, key: Any, source: str) -> dataclasses.Field[Any]:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if key in fields:
        return fields[key]
    word = str(key)
    owners = [name for name, other in _SECTIONS.items() if word in _names(other)]
    hint = f" (did you mean '{owners[0]}.{word}'?)" if owners else _hint(word, list(fields))
    raise ConfigError(f"{source}: unknown key '{cls.section}.{word}'{hint}")


# ---------------------------------------------------------------- loading


def config_from_dict(d: Mapping[str, Any] | None, source: str = "<dict>") -> Config:
    """Build and validate a :class:`Config` from nested mappings (a parsed YAML file).

    Args:
        d: ``{section: {key: value}}``; missing sections and keys keep their defaults.
            ``None`` (an empty file) gives the defaults.
        source: names the origin in error messages (the file name).

    Raises:
        ConfigError: not a mapping, an unknown section or key, a wrong type or value.
    """
    if d is None:
        d = {}
    if not isinstance(d, Mapping):
        raise ConfigError(
            f"{source}: top level must be a mapping of sections ({', '.join(_SECTIONS)}), "
            f"got {_kind_name(d)}"
        )
    sections: dict[str, Any] = {}
    for name, body in d.items():
        cls = _section_class(name, source)
        body = {} if body is None else body
        if not isinstance(body, Mapping):
            raise ConfigError(
                f"{source}: section '{name}' must be a mapping, got {_kind_name(body)}"
            )
        kwargs = {}
        for key, value in body.items():
            f = _field_of(cls, key, source)
            kwargs[key] = _check(value, _hints(cls)[key], f.metadata, f"{name}.{key}", source)
        sections[name] = cls(**kwargs)
    cfg = Config(**sections)
    _check_cross(cfg, source)
    return cfg


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """``cfg`` as plain nested dicts; ``config_from_dict`` and YAML round-trip it."""
    return dataclasses.asdict(cfg)


def dump_config(cfg: Config) -> str:
    """``cfg`` as YAML text, sections and keys in declaration order."""
    return dump_yaml(config_to_dict(cfg))


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> Config:
    """Read a YAML config, apply ``--set`` overrides, validate.

    Args:
        path: the YAML file; ``None`` starts from the defaults.
        overrides: ``"section.key=value"`` strings, applied in order; the value is
            parsed as YAML.

    Raises:
        ConfigError: a missing or unreadable file, invalid YAML, a malformed override,
            an unknown section or key, a wrong type or value. The message is one line
            and names the file (or the override) and the key.
    """
    cfg = Config() if path is None else _read_config(path)
    env = os.environ.get("RNNKIT_DATA")
    if env:  # the environment replaces the file's data_dir; --set still wins
        cfg.data.data_dir = env
    source = "<defaults>" if path is None else str(path)
    return apply_overrides(cfg, overrides, source=source)


def _read_config(path: str | Path) -> Config:
    source, p = str(path), Path(path)
    if p.is_dir():
        raise ConfigError(f"{source}: is a directory, not a config file")
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        hint = ""
        if p.parts[:1] == ("configs",):  # the README's examples, run outside the checkout
            hint = " (the shipped configs are in the source checkout's configs/ folder)"
        raise ConfigError(f"{source}: config file not found{hint}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: not valid UTF-8") from None
    except OSError as e:
        raise ConfigError(f"{source}: cannot read ({e.strerror})") from None
    return config_from_dict(_parse_yaml(text, source), source)


def apply_overrides(cfg: Config, overrides: Sequence[str], source: str = "<config>") -> Config:
    """A validated copy of ``cfg`` with ``section.key=value`` overrides applied in order.

    A dotted path past a mapping field sets one entry (``data.task_options.long=true``).
    ``source`` names ``cfg``'s origin in messages about two fields at once.

    Raises:
        ConfigError: naming the override, e.g. ``--set train.lr=abc: train.lr must be a
            float, got 'abc'``.
    """
    if isinstance(overrides, str):  # (each character would be taken as an override)
        raise ConfigError(f"overrides must be a list of section.key=value strings: [{overrides!r}]")
    cfg = copy.deepcopy(cfg)
    for item in overrides:
        where = f"--set {item}"
        dotted, eq, text = item.partition("=")
        parts = dotted.strip().split(".")
        if not eq or len(parts) < 2 or not all(parts):
            owners = [s for s, c in _SECTIONS.items() if parts[0] in _names(c)]
            hint = (
                f" (did you mean '{owners[0]}.{item.strip()}'?)"
                if len(parts) == 1 and owners
                else ""
            )
            raise ConfigError(f"{where}: expected section.key=value, e.g. train.lr=0.0005{hint}")
        name, key, *entry = parts
        cls = _section_class(name, where)
        f = _field_of(cls, key, where)
        tp = _hints(cls)[key]
        section = getattr(cfg, name)
        value = _parse_yaml(text, where)
        if entry:
            if typing.get_origin(tp) is not dict:
                raise ConfigError(f"{where}: {name}.{key} is not a mapping, cannot set {dotted!r}")
            value = _set_entry(getattr(section, key), entry, value)
        setattr(section, key, _check(value, tp, f.metadata, f"{name}.{key}", where))
    if overrides:
        source = " ".join([source, *(f"--set {o}" for o in overrides)])
    _check_cross(cfg, source)
    return cfg


# ---------------------------------------------------------------- paths


def resolve_data_path(cfg: DataConfig, path: str | Path, config_dir: Path | None = None) -> Path:
    """Where a corpus path of the config points, as an absolute path.

    ``~`` is expanded; an absolute path is returned as is. A relative path is joined
    to the first base that is set (no file-system search, so the answer does not
    depend on which files happen to exist):

    1. ``cfg.data_dir`` (itself, when relative, taken from the current directory, as a
       ``--data-dir`` flag would be); :func:`load_config` sets it from ``RNNKIT_DATA``
       when that is set, and ``--set data.data_dir=DIR`` overrides both;
    2. the environment variable ``RNNKIT_DATA`` (when set and not empty);
    3. ``config_dir``, the directory of the config file;
    4. the current directory.

    Args:
        cfg: the data section.
        path: a path from the config (``train``, ``dev``, ``test``, ``sp_model``).
        config_dir: the directory of the config file, if there is one.
    """
    p = Path(path).expanduser()
    if p.is_absolute():
        return p
    env = os.environ.get("RNNKIT_DATA")
    if cfg.data_dir:
        base = Path(cfg.data_dir)
    elif env:
        base = Path(env)
    elif config_dir is not None:
        base = Path(config_dir)
    else:
        base = Path.cwd()
    return (base.expanduser() / p).absolute()
