"""Checking config values: a field's annotation and metadata checks, named in one-line errors.

The generic half of :mod:`rnnkit.config`: :func:`_field` declares a dataclass field with
its checks, :func:`_check` enforces them on a value, and the YAML reader rejects
duplicate keys. Nothing here knows the config's sections.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import operator
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import field
from typing import Any

import yaml


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


# ---------------------------------------------------------------- checking values


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


_KINDS = {bool: "a bool (true or false)", int: "an int", float: "a float", str: "a string"}
_KINDS[dict] = "a mapping with string keys"
_KINDS[list] = "a list of strings"  # the one list type the config has
# A float field also takes a string such as "1e-3" (a dict built in Python, or YAML read
# by plain PyYAML, whose YAML 1.1 makes it a string; our reader makes it a float).
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
        if value is None and nullable:
            return None
        kinds = [a for a in args if a is not type(None)]  # "X | None", "str | list[str]"
        tp = next((a for a in kinds if _is_kind(value, a)), kinds[0])
        if len(kinds) > 1 and not _is_kind(value, tp):
            null = " or null" if nullable else ""
            wanted = " or ".join(_KINDS[typing.get_origin(a) or a] for a in kinds)
            raise ConfigError(f"{source}: {name} must be {wanted}{null}, got {value!r}")
    kind = typing.get_origin(tp) or tp
    if kind is float and isinstance(value, str) and _FLOAT_RE.fullmatch(value.strip()):
        value = float(value)
    if kind is str and isinstance(value, bool) and {"on", "off"} <= set(meta.get("choices", ())):
        value = "on" if value else "off"  # YAML 1.1 reads a bare on / off as a bool
    if not _is_kind(value, tp):
        null = " or null" if nullable else ""
        finite = "a finite float" if kind is float and isinstance(value, float) else _KINDS[kind]
        quote = ""
        if kind is str and isinstance(value, bool):  # data.src: no (Norwegian) is false
            quote = " (YAML reads a bare yes, no, on, off, true or false as a bool: quote it)"
        if kind is int and isinstance(value, float) and value.is_integer():  # max_steps: 1e5
            _check_range(int(value), kind, meta, name, source)  # (1e19: not worth writing out)
            _check_meta(int(value), meta, name, source, nullable)
            quote = f" (write an int without a dot or exponent: {int(value)})"
        raise ConfigError(f"{source}: {name} must be {finite}{null}, got {value!r}{quote}")
    if kind is float:
        value = float(value)
    _check_range(value, kind, meta, name, source)
    if kind is dict or kind is list:
        value = copy.deepcopy(value)
    if kind is list:  # the checks apply to each item
        for item in value:
            _check_meta(item, meta, name, source, nullable)
        if meta.get("nonempty") and not value:
            raise ConfigError(f"{source}: {name} must not be an empty list")
        return value
    _check_meta(value, meta, name, source, nullable)
    return value


# Numbers beyond these overflowed in torch after the work had started (a hidden_size of
# 10^20, a max_len_b that broke the first validation, an lr of 1e39 at the first step).
INT_LIMIT = 2**31 - 1
FLOAT_LIMIT = 3.4e38  # float32's largest finite values, about


def _check_range(value: Any, kind: Any, meta: Mapping[str, Any], name: str, source: str) -> None:
    """An int within ±INT_LIMIT (unless its field sets its own upper bound), a float
    within ±FLOAT_LIMIT."""
    if kind is int and "le" not in meta and "lt" not in meta and abs(value) > INT_LIMIT:
        raise ConfigError(f"{source}: {name} must be within ±{INT_LIMIT}, got {value}")
    if kind is float and abs(value) > FLOAT_LIMIT:
        raise ConfigError(
            f"{source}: {name} must be within ±{FLOAT_LIMIT:g} (float32), got {value!r}"
        )


def _is_kind(value: Any, tp: Any) -> bool:
    kind = typing.get_origin(tp) or tp
    if kind is list:  # list[X]: a list of X
        (item,) = typing.get_args(tp)
        return isinstance(value, list) and all(_is_kind(v, item) for v in value)
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
        lower = isinstance(value, str) and value.lower() in meta["choices"]
        hint = f" (the names are lower case: {value.lower()!r})" if lower else ""
        raise ConfigError(f"{source}: {name} must be one of {allowed}{null}; got {value!r}{hint}")
    if "pattern" in meta and not re.fullmatch(meta["pattern"], value):
        raise ConfigError(f"{source}: {name} must be {meta['pattern_help']}{null}; got {value!r}")
    if meta.get("nonempty") and not value.strip():
        none = " (null, or left out, for none)" if nullable else ""
        raise ConfigError(f"{source}: {name} must not be empty{none}")
    if any(not op(value, meta[key]) for key, _, op in _BOUNDS if key in meta):
        bounds = " and ".join(f"{sym} {meta[key]}" for key, sym, _ in _BOUNDS if key in meta)
        raise ConfigError(f"{source}: {name} must be {bounds}, got {value!r}")


# ---------------------------------------------------------------- names


def _hint(word: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, known, n=1)
    return f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(known)})"


def _kind_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


# ---------------------------------------------------------------- YAML


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key given twice in one mapping (YAML keeps the last);
    a merge key (``<<: *defaults``) is no key of its own, and the keys given beside it
    override those it brings (YAML's rule)."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
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


# Numbers as YAML 1.2 reads them, not PyYAML's YAML 1.1: ``010`` is ten (not octal eight),
# ``1:30`` is a string (not the sexagesimal 90), ``1e-3`` and ``1e3`` are floats (1.1 wants
# a dot), and ``0o17`` is octal. ``0x1f``, ``0b101``, ``1_000``, ``.inf`` read as before.
_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_INT = re.compile(
    r"^(?:[-+]?[0-9][0-9_]*|[-+]?0o[0-7][0-7_]*|[-+]?0x[0-9a-fA-F][0-9a-fA-F_]*|[-+]?0b[01][01_]*)$"
)
_EXP = r"(?:[eE][-+]?[0-9]+)?"
_FLOAT = re.compile(
    rf"^(?:[-+]?[0-9][0-9_]*\.[0-9_]*{_EXP}|[-+]?\.[0-9][0-9_]*{_EXP}"
    r"|[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)
_UniqueKeyLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_INT_TAG, _FLOAT_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_UniqueKeyLoader.add_implicit_resolver(_INT_TAG, _INT, list("-+0123456789"))
_UniqueKeyLoader.add_implicit_resolver(_FLOAT_TAG, _FLOAT, list("-+0123456789."))


def _construct_int(loader: yaml.SafeLoader, node: Any) -> int:
    text = str(loader.construct_scalar(node)).replace("_", "")
    digits = text.lstrip("+-")
    sign = -1 if text.startswith("-") else 1
    base = {"0o": 8, "0x": 16, "0b": 2}.get(digits[:2].lower(), 10)
    return sign * int(digits[2:] if base != 10 else digits, base)


_UniqueKeyLoader.add_constructor(_INT_TAG, _construct_int)


class _Dumper(yaml.SafeDumper):
    """Writes YAML that :func:`_parse_yaml` reads back as written: a string our reader
    would take for a number is quoted (PyYAML's dumper knows YAML 1.1's numbers only,
    so ``"1e3"`` went out bare and came back a float)."""


_Dumper.yaml_implicit_resolvers = {
    first: list(resolvers) for first, resolvers in _UniqueKeyLoader.yaml_implicit_resolvers.items()
}


def dump_yaml(data: Any) -> str:
    """``data`` as block YAML, keys in their order, Unicode as it is."""
    text: str = yaml.dump(
        data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False
    )
    return text


def _parse_yaml(text: str, source: str) -> Any:
    try:
        value = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: no arbitrary objects
        _walk(value, source, {}, set())
        return value
    except RecursionError:  # (PyYAML's constructor recurses: [[[[...]]]] 5000 deep)
        raise ConfigError(f"{source}: not a config (nested too deeply)") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        detail = " ".join(f"{where}{problem}".split())
        raise ConfigError(f"{source}: not valid YAML ({detail})") from None


# the values a config may hold once its aliases are expanded (nested mappings of 9 aliases
# 10 deep are 9^10: walking them hung; what the config's sections take is far fewer)
MAX_VALUES = 100_000


def _walk(value: Any, source: str, sizes: dict[int, int], inside: set[int]) -> int:
    """How many values ``value`` holds with its aliases expanded (each shared mapping or
    list counted once per use, walked once); a ConfigError for an alias that holds itself
    (a cycle), for more than :data:`MAX_VALUES`, and for a glued pair:
    ``{nonlinearity:sigmoid}`` is YAML for a key "nonlinearity:sigmoid" without a value
    (a flow mapping needs a space after the colon); the error would have said the cell
    takes no keyword "nonlinearity:sigmoid"."""
    if not isinstance(value, (dict, list)):
        return 1
    if id(value) in sizes:
        return sizes[id(value)]
    if id(value) in inside:  # (a RecursionError traceback)
        raise ConfigError(f"{source}: an alias refers to the mapping or list that holds it")
    inside.add(id(value))
    n = 1
    for key, v in value.items() if isinstance(value, dict) else enumerate(value):
        if v is None and isinstance(key, str) and ":" in key.strip(":"):
            k, _, rest = key.partition(":")
            raise ConfigError(
                f"{source}: {key!r} is a key without a value; YAML needs a space after "
                f"the colon: {{{k}: {rest}}}"
            )
        n += _walk(v, source, sizes, inside)
        if n > MAX_VALUES:
            raise ConfigError(
                f"{source}: more than {MAX_VALUES} values once its aliases are expanded"
            )
    inside.discard(id(value))
    sizes[id(value)] = n
    return n


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
