"""docs/usage.md "From Python", executed from the page (smaller and shorter), so the
functions it shows keep their names, arguments and results."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def snippet() -> str:
    page = (ROOT / "docs" / "usage.md").read_text(encoding="utf-8")
    section = page.split("## From Python", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "no python block under 'From Python'"
    return match.group(1)


def test_from_python_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = snippet()
    small = '"train.max_steps=30", "data.task_size=2000", "model.hidden_size=32"'
    assert '"train.max_steps=300"' in code
    code = code.replace('"train.max_steps=300"', small)
    code = code.replace('"configs/dates.yaml"', repr(str(ROOT / "configs" / "dates.yaml")))
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "docs/usage.md", "exec"), scope)  # noqa: S102 - our own page
    assert (tmp_path / "runs" / "dates" / "best.pt").is_file()
    assert scope["result"].steps == 30 and scope["result"].stopped == "max_steps"
    hyps = scope["hyps"]
    assert [len(h) for h in hyps] == [2, 1, 2]  # n_best 2; an empty line has one ""
    assert scope["best"][1] == ""
    top = scope["top"]
    assert top.attention.shape == (len(top.out_tokens), len(top.src_tokens))


def test_the_config_reference_lists_every_key_with_its_default() -> None:
    """docs/usage.md's config block is every field of the schema at its default: a key
    added, renamed or given another default without the page fails here."""
    import yaml

    from rnnkit.config import config_to_dict
    from rnnkit.config_schema import Config

    page = (ROOT / "docs" / "usage.md").read_text(encoding="utf-8")
    section = page.split("## Configs", 1)[1]
    match = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert match, "no yaml block under 'Configs'"
    assert yaml.safe_load(match.group(1)) == config_to_dict(Config())
