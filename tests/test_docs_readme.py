"""README's Python blocks, executed in order from the page, and the values their comments
state: the examples a first-time user copies keep working."""

from __future__ import annotations

import re
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def blocks() -> list[str]:
    page = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", page, re.S)


def test_readme_python_runs_as_written_and_says_true() -> None:
    code = blocks()
    assert len(code) >= 2, "README lost its Python examples"
    scope: dict = {"__name__": "readme"}
    exec(compile(code[0], "README.md block 1", "exec"), scope)  # noqa: S102
    # the layers: a torch.nn.LSTM state dict loads; with batch_first, gates are (L·D, B, T, H)
    comment = re.search(r"gates\.forget\.shape\s+# \(L·D, B, T, H\) = \(([\d, ]+)\)", code[0])
    assert comment, "block 1 no longer states the shape of the gates"
    stated = tuple(int(v) for v in comment.group(1).split(","))
    assert tuple(scope["gates"].forget.shape) == stated == (4, 3, 5, 16)
    assert torch.all(scope["gates"].forget[:, 1, 2:] == 0)  # zero past length 2
    for k, block in enumerate(code[1:], 2):
        exec(compile(block, f"README.md block {k}", "exec"), scope)  # noqa: S102
    # cells beyond the stock three: the parameter names the comment lists
    listed = re.search(r"list\(ln\.state_dict\(\)\)\[:5\]\s+# (.*)", code[1])
    assert listed and list(scope["ln"].state_dict())[:5] == listed.group(1).split(", ")
