"""bench/variants.py: a smoke run (--quick) prints every row, the targets and the misses.
Speed itself is never asserted: the numbers depend on the machine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

REGULARISERS = ("zoneout", "recurrent_dropout", "weight_drop")
LABELS = [
    "LayerNormLSTM / torch.nn.LSTM",
    "LayerNormLSTM / torch.nn.LSTM, no oneDNN",
    "autograd loop / LayerNormLSTM",
    "Recurrent(MyLSTMCell) / LSTM explicit",
    *(f"{kind} {reg} / none" for kind in ("LSTM", "GRU") for reg in REGULARISERS),
]


def subprocess_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def test_quick_run_prints_every_row_and_the_targets() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "variants.py"), "--quick"],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("torch ") and "1 thread" in lines[0]
    rows = {}
    for line in lines[2:-3]:
        label, rest = line[:40].strip(), line[40:].split()
        size, mode, ref_ms, ratio = rest[:4]
        rows[label, size, mode] = (float(ref_ms), float(ratio))
    expected = {(label, "100,16,128", mode) for label in LABELS for mode in ("train", "infer")}
    assert set(rows) == expected
    assert all(ms > 0 and ratio > 0 for ms, ratio in rows.values())
    assert lines[-3].startswith("targets: ")
    assert lines[-2].startswith("missed: ")
    assert lines[-1] == "not measured: 50,64,512"  # (it said "missed: none" of it)
    assert "Traceback" not in proc.stderr
