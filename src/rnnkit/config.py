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
import difflib
import math
import operator
import os
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

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

# The built-in tasks of rnnkit.data.tasks.TASKS, repeated so that config stays light.
TASK_NAMES = ("dates", "copy", "reverse", "sort")
# The cells of rnnkit.model.CELLS, likewise; "module:Class" names a custom rnnkit.Cell.
CELL_NAMES = (
    "rnn",
    "lstm",
    "gru",
    "layernorm_lstm",
    "layernorm_gru",
    "peephole_lstm",
    "cifg_lstm",
    "mgu",
    "indrnn",
)
CUSTOM_CELL = r"[A-Za-z_][\w.]*:[A-Za-z_]\w*"


class ConfigError(ValueError):
    """A bad config. The message is one line: ``<source>: <what is wrong>``."""


def _field(default: Any, **checks: Any) -> Any:
    """A dataclass field whose metadata holds its checks: ``choices``, ``gt``, ``ge``,
    ``lt``, ``le``, ``pattern`` (+ ``pattern_help``), ``nonempty``."""
    return field(default=default, metadata=checks)


def _validate_fields(obj: Any, source: str) -> None:
    for f in dataclasses.fields(obj):
        name = f"{obj.section}.{f.name}"
        value = _check(getattr(obj, f.name), _hints(type(obj))[f.name], f.metadata, name, source)
        setattr(obj, f.name, value)


@dataclass
class DataConfig:
    """Where the sentence pairs come from and how they are tokenised."""

    section: ClassVar[str] = "data"

    # built-in synthetic task (dates, copy, reverse, sort); when set, no files are read
    task: str | None = _field(None, choices=TASK_NAMES)
    task_size: int = _field(20000, gt=0)  # training pairs generated for the task
    task_dev: int = _field(500, gt=0)  # dev pairs generated for the task
    task_test: int = _field(1000, gt=0)  # test pairs generated for the task
    task_options: dict[str, Any] = field(default_factory=dict)  # kwargs of the task generator
    data_dir: str | None = None  # base directory of relative corpus paths (resolve_data_path)
    train: str | None = None  # PREFIX of PREFIX.<src> / PREFIX.<tgt>, or a TSV file
    dev: str | None = None  # dev corpus, given as train is
    test: str | None = None  # test corpus, given as train is
    src: str = _field("src", nonempty=True)  # source-side file suffix (language code)
    tgt: str = _field("tgt", nonempty=True)  # target-side file suffix (language code)
    format: str = _field("parallel", choices=("parallel", "tsv"))  # two aligned files or a TSV
    src_col: int = _field(0, ge=0)  # TSV column of the source side
    tgt_col: int = _field(1, ge=0)  # TSV column of the target side
    # without dev (/ test) files: pairs held out of train, split by source sentence
    dev_size: int = _field(0, ge=0)
    test_size: int = _field(0, ge=0)
    tokenizer: str = _field("bpe", choices=("bpe", "unigram", "word", "char"))  # token unit
    vocab_size: int = _field(8000, gt=0)  # subword vocabulary size (bpe, unigram)
    # one subword model for both sides (each side's vocabulary: the pieces it uses)
    joint_vocab: bool = True
    lowercase: bool = False  # lowercase all text before tokenising
    max_len: int = _field(100, gt=0)  # training pairs longer (in tokens) on either side are dropped
    sp_model: str | None = None  # an existing sentencepiece model to use instead of training one

    def __post_init__(self) -> None:
        _validate_fields(self, "<DataConfig>")


@dataclass
class ModelConfig:
    """The encoder-decoder: cell, sizes, attention, regularisation."""

    section: ClassVar[str] = "model"

    # recurrent cell of both sides: a built-in name or module:Class (a custom rnnkit.Cell)
    cell: str = _field(
        "gru", choices=CELL_NAMES, or_pattern=(CUSTOM_CELL, "module:Class (a custom rnnkit.Cell)")
    )
    emb_size: int = _field(256, gt=0)  # embedding size E
    hidden_size: int = _field(256, gt=0)  # hidden size H of every recurrent layer
    enc_layers: int = _field(1, gt=0)  # stacked encoder layers
    dec_layers: int = _field(1, gt=0)  # stacked decoder layers
    bidirectional: bool = True  # bidirectional encoder (Bahdanau et al. 2015)
    attention: str = _field("bahdanau", choices=("bahdanau", "luong", "none"))  # "none": Cho 2014
    luong_score: str = _field("general", choices=("dot", "general", "concat"))  # Luong score fn
    bridge: str = _field("learned", choices=("learned", "zeros"))  # decoder initial state
    dropout: float = _field(0.3, ge=0, lt=1)  # dropout between layers and before the output
    emb_dropout: float = _field(0.1, ge=0, lt=1)  # dropout on embeddings
    tie_embeddings: bool = False  # share the target embedding with the output projection
    # LSTM family: the forget-gate biases sum to this at initialisation (null: torch's init)
    forget_bias: float | None = None
    # regularisers of the encoder's recurrent layers (they make it run the explicit engine)
    zoneout: float = _field(0.0, ge=0, lt=1)  # each unit keeps its previous value w.p. z
    recurrent_dropout: float = _field(0.0, ge=0, lt=1)  # one mask per sequence on h into W_hh
    weight_drop: float = _field(0.0, ge=0, lt=1)  # DropConnect on W_hh, per forward
    # recurrent kernels: auto, explicit (readable cells), native (torch fused), reference
    engine: str = _field("auto", choices=("auto", "explicit", "native", "reference"))

    def __post_init__(self) -> None:
        _validate_fields(self, "<ModelConfig>")


@dataclass
class TrainConfig:
    """Batching, optimiser, schedule, budgets, validation and checkpoints."""

    section: ClassVar[str] = "train"

    batch_tokens: int = _field(4000, gt=0)  # bound on sentences x padded width per batch
    batch_size: int | None = _field(None, gt=0)  # bound on sentences per batch (null: none)
    optimizer: str = _field("adam", choices=("adam", "adamw", "sgd"))  # optimiser
    lr: float = _field(1e-3, gt=0)  # peak learning rate
    weight_decay: float = _field(0.0, ge=0)  # L2 (adam, sgd) or decoupled (adamw) decay
    clip: float = _field(1.0, ge=0)  # gradient-norm clipping threshold (0 = off)
    warmup_steps: int = _field(0, ge=0)  # linear warm-up from 0 to lr over these steps
    scheduler: str = _field("plateau", choices=("plateau", "inverse_sqrt", "none"))  # lr decay
    decay_factor: float = _field(0.5, gt=0, lt=1)  # plateau: lr *= decay_factor
    lr_patience: int = _field(2, ge=0)  # plateau: validations without gain before a decay
    min_lr: float = _field(1e-5, ge=0)  # plateau: the lr never decays below this
    label_smoothing: float = _field(0.1, ge=0, lt=1)  # mass spread over the vocabulary
    teacher_forcing: float = _field(1.0, ge=0, le=1)  # probability of feeding the gold token
    # batches whose gradients add up to one update (loss / their target tokens together)
    accumulate: int = _field(1, gt=0)
    max_steps: int = _field(0, ge=0)  # stop after this many updates (0 = no limit)
    max_epochs: int = _field(20, ge=1)  # stop after this many passes over the data
    max_minutes: float = _field(0.0, ge=0)  # stop after this much wall time (0 = no limit)
    validate_every: int = _field(500, gt=0)  # updates between dev evaluations
    checkpoint_every: int = _field(500, gt=0)  # updates between checkpoints
    keep_checkpoints: int = _field(0, ge=0)  # also keep the last N as step-STEP.pt (0 = none)
    patience: int = _field(5, ge=0)  # early stop after this many validations w/o dev-BLEU gain
    log_every: int = _field(50, gt=0)  # updates between log lines
    seed: int = _field(1, ge=0)  # seed of torch, python and data-order randomness
    # auto (cuda, then mps, then cpu), cpu, cuda, cuda:N, mps
    device: str = _field(
        "auto", pattern=r"auto|cpu|mps|cuda(:\d+)?", pattern_help="auto, cpu, cuda, cuda:N or mps"
    )

    def __post_init__(self) -> None:
        _validate_fields(self, "<TrainConfig>")


@dataclass
class DecodeConfig:
    """Search at translation and validation time."""

    section: ClassVar[str] = "decode"

    beam_size: int = _field(5, ge=1)  # 1 = greedy
    length_penalty: float = _field(1.0, ge=0)  # beam length-normalisation strength (0 = none)
    max_len_a: float = _field(1.5, ge=0)  # output limit: max_len_a * source tokens + max_len_b
    max_len_b: int = _field(10, ge=0)  # output limit: additive part
    batch_size: int = _field(64, gt=0)  # sentences translated at once
    # beam: stop a sentence only when no alive hypothesis can still win (slower); false:
    # when none wins at the current length (OpenNMT's and Joey NMT's rule)
    exact: bool = False

    def __post_init__(self) -> None:
        _validate_fields(self, "<DecodeConfig>")


@dataclass
class Config:
    """A whole run: the four sections, each defaulted."""

    data: DataConfig = field(default_factory=DataConfig)  # corpora and tokenisation
    model: ModelConfig = field(default_factory=ModelConfig)  # architecture
    train: TrainConfig = field(default_factory=TrainConfig)  # training loop
    decode: DecodeConfig = field(default_factory=DecodeConfig)  # search


_SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "decode": DecodeConfig,
}


# ---------------------------------------------------------------- checking values


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


_KINDS = {bool: "a bool (true or false)", int: "an int", float: "a float", str: "a string"}
_KINDS[dict] = "a mapping with string keys"
# PyYAML (YAML 1.1) reads 1e-3 as a string; a float field takes such a literal.
_FLOAT_RE = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")
_BOUNDS: tuple[tuple[str, str, Any], ...] = (
    ("gt", ">", operator.gt),
    ("ge", ">=", operator.ge),
    ("lt", "<", operator.lt),
    ("le", "<=", operator.le),
)


def _check(value: Any, tp: Any, meta: Mapping[str, Any], name: str, source: str) -> Any:
    """``value`` checked against type ``tp`` and the field's ``meta`` checks; an int
    given to a float field comes back as a float."""
    nullable = False
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        nullable = type(None) in args
        (tp,) = [a for a in args if a is not type(None)]  # only "X | None" is used
        if value is None:
            return None
    kind = typing.get_origin(tp) or tp
    if kind is float and isinstance(value, str) and _FLOAT_RE.fullmatch(value.strip()):
        value = float(value)
    if not _is_kind(value, kind):
        null = " or null" if nullable else ""
        finite = "a finite float" if kind is float and isinstance(value, float) else _KINDS[kind]
        raise ConfigError(f"{source}: {name} must be {finite}{null}, got {value!r}")
    if kind is float:
        value = float(value)
    if kind is dict:
        value = copy.deepcopy(value)
    _check_meta(value, meta, name, source, nullable)
    return value


def _is_kind(value: Any, kind: type) -> bool:
    if kind is bool or kind is str:
        return isinstance(value, kind)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return (
            isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        )
    if kind is dict:
        return isinstance(value, dict) and all(isinstance(k, str) for k in value)
    raise TypeError(f"config field type {kind!r} is not supported")


def _check_meta(
    value: Any, meta: Mapping[str, Any], name: str, source: str, nullable: bool
) -> None:
    null = " (or null)" if nullable else ""
    custom = meta.get("or_pattern")
    if "choices" in meta and value not in meta["choices"]:
        if custom and isinstance(value, str) and re.fullmatch(custom[0], value):
            return
        allowed = ", ".join(meta["choices"]) + (f", or {custom[1]}" if custom else "")
        raise ConfigError(f"{source}: {name} must be one of {allowed}{null}; got {value!r}")
    if "pattern" in meta and not re.fullmatch(meta["pattern"], value):
        raise ConfigError(f"{source}: {name} must be {meta['pattern_help']}{null}; got {value!r}")
    if meta.get("nonempty") and not value.strip():
        raise ConfigError(f"{source}: {name} must not be empty")
    if any(not op(value, meta[key]) for key, _, op in _BOUNDS if key in meta):
        bounds = " and ".join(f"{sym} {meta[key]}" for key, sym, _ in _BOUNDS if key in meta)
        raise ConfigError(f"{source}: {name} must be {bounds}, got {value!r}")


def _check_cross(cfg: Config, source: str) -> None:
    """Checks that involve two fields."""
    lstm_family = ("lstm", "layernorm_lstm", "peephole_lstm", "cifg_lstm")
    cell = cfg.model.cell
    if cfg.model.forget_bias is not None and cell in CELL_NAMES and cell not in lstm_family:
        raise ConfigError(
            f"{source}: model.forget_bias applies to the LSTM family "
            f"({', '.join(lstm_family)}), not to model.cell={cell}"
        )
    if cfg.decode.max_len_a == 0 and cfg.decode.max_len_b == 0:
        raise ConfigError(f"{source}: decode.max_len_a and decode.max_len_b are both 0")
    if cfg.train.scheduler == "plateau" and cfg.train.min_lr > cfg.train.lr:
        raise ConfigError(
            f"{source}: train.min_lr ({cfg.train.min_lr:g}) must not exceed "
            f"train.lr ({cfg.train.lr:g}) with the plateau scheduler"
        )


def validate_config(cfg: Config, source: str = "<config>") -> Config:
    """Check every field of ``cfg`` again (after code changed it) and the cross-field
    rules; returns ``cfg`` (float fields normalised). Raises :class:`ConfigError`."""
    for name in _SECTIONS:
        _validate_fields(getattr(cfg, name), source)
    _check_cross(cfg, source)
    return cfg


# ---------------------------------------------------------------- names


def _hint(word: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, known, n=1)
    return f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(known)})"


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


def _kind_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


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
    text: str = yaml.safe_dump(
        config_to_dict(cfg), sort_keys=False, allow_unicode=True, default_flow_style=False
    )
    return text


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key given twice in one mapping (YAML keeps the last)."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key; SafeLoader reports it below
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
        return super().construct_mapping(node, deep)


def _parse_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: no arbitrary objects
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        detail = " ".join(f"{where}{problem}".split())
        raise ConfigError(f"{source}: not valid YAML ({detail})") from None


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
    if path is None:
        return apply_overrides(Config(), overrides, source="<defaults>")
    source = str(path)
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{source}: is a directory, not a config file")
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{source}: config file not found") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: not valid UTF-8") from None
    except OSError as e:
        raise ConfigError(f"{source}: cannot read ({e.strerror})") from None
    cfg = config_from_dict(_parse_yaml(text, source), source)
    env = os.environ.get("RNNKIT_DATA")
    if env:  # the environment replaces the file's data_dir; --set still wins
        cfg.data.data_dir = env
    return apply_overrides(cfg, overrides, source=source)


def apply_overrides(cfg: Config, overrides: Sequence[str], source: str = "<config>") -> Config:
    """A validated copy of ``cfg`` with ``section.key=value`` overrides applied in order.

    A dotted path past a mapping field sets one entry (``data.task_options.long=true``).
    ``source`` names ``cfg``'s origin in messages about two fields at once.

    Raises:
        ConfigError: naming the override, e.g. ``--set train.lr=abc: train.lr must be a
            float, got 'abc'``.
    """
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


def _set_entry(mapping: dict[str, Any], path: Sequence[str], value: Any) -> dict[str, Any]:
    """A copy of ``mapping`` with ``mapping[path[0]][path[1]]... = value``."""
    out = copy.deepcopy(mapping)
    node = out
    for step in path[:-1]:
        if not isinstance(node.get(step), dict):
            node[step] = {}
        node = node[step]
    node[path[-1]] = value
    return out


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
