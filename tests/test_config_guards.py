"""Configs that must not get past loading: YAML aliases that explode or hold
themselves, a language suffix with a path in it, empty paths taken for none."""

from __future__ import annotations

import re

import pytest

from rnnkit.config import ConfigError, apply_overrides, config_from_dict, load_config


def _bomb(depth: int) -> str:
    """Nested mappings of 9 aliases each, ``depth`` deep: 9^depth values expanded."""
    lines = ["l0: &l0 {" + ", ".join(f"k{i}: 1" for i in range(9)) + "}"]
    for d in range(1, depth):
        lines.append(f"l{d}: &l{d} {{" + ", ".join(f"k{i}: *l{d - 1}" for i in range(9)) + "}")
    return "\n".join(lines) + f"\ndata: {{task: copy, task_options: *l{depth - 1}}}\n"


@pytest.mark.parametrize(
    "text, says",
    [
        # 9^6 values: past the bound, and walked in a second without it (10 deep hung)
        (_bomb(6), "more than 100000 values once its aliases are expanded"),
        ("data: &d {task: copy, task_options: *d}\n", "an alias refers to the mapping or list"),
        ("model: &m {cell_kwargs: {x: [*m]}}\n", "an alias refers to the mapping or list"),
        ("a: " + "[" * 5000 + "]" * 5000 + "\n", "not a config (nested too deeply)"),
    ],
)
def test_aliases_that_explode_or_hold_themselves_are_refused(tmp_path, text, says):
    """A self-referencing alias or 5000 nested lists were RecursionError tracebacks."""
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match="^" + re.escape(f"{path}: {says}")):
        load_config(path)


@pytest.mark.parametrize("value", ["../x", "/../../ESC", "de/x", ".de", "d e"])
def test_a_language_suffix_names_no_path(tmp_path, value):
    """data.src "../x" wrote the held-out dev.../test... files outside the run folder."""
    with pytest.raises(ConfigError, match=r"data.src must be a file suffix such as de"):
        apply_overrides(config_from_dict({"data": {"task": "copy"}}), [f"data.src={value}"])


@pytest.mark.parametrize(
    "key", ["data.sp_model", "train.init_from", "model.src_embeddings", "data.data_dir",
            "data.dev", "data.test"],
)  # fmt: skip
def test_an_empty_path_is_refused_not_taken_for_none(key):
    """data.sp_model "" trained a tokenizer of its own and train.init_from "" trained from
    scratch, without a word; data.test "" looked for a file named after the folder."""
    with pytest.raises(ConfigError, match=rf"{key} must not be empty \(null, or left out"):
        apply_overrides(config_from_dict({"data": {"task": "copy"}}), [f'{key}=""'])
