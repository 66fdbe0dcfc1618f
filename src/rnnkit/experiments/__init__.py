"""Experiments that reproduce what the field says about RNN, LSTM, GRU and attention.

Each experiment is a module with ``run(out_dir: Path, quick: bool, log, data_dir) ->
Report``: it trains from scratch, prints a table (through ``log``), writes figures into
``out_dir`` and returns its section of ``docs/RESULTS.md`` as Markdown (figures linked
by file name). ``rnnkit experiment NAME`` runs one, places its figures by the results
page (:func:`place_figures`) and regenerates that section (between its markers) in place.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

import torch

from rnnkit.atomic import make_folder
from rnnkit.experiments.common import Report, place_figures, update_results

__all__ = [
    "EXPERIMENTS",
    "USES_MULTI30K",
    "Report",
    "place_figures",
    "run_experiment",
    "update_results",
]

# name → module under rnnkit.experiments
EXPERIMENTS = {
    "long-memory": "long_memory",
    "attention-length": "attention_length",
    "lstm-vs-gru": "lstm_vs_gru",
    "attention-cost": "attention_cost",
    "variants": "variants",
}
# those with a Multi30k part (skipped, and said so, when the corpus is not found)
USES_MULTI30K = ("attention-length", "lstm-vs-gru", "variants")


def run_experiment(
    name: str,
    out_dir: str | Path,
    quick: bool = False,
    log: Callable[[str], None] | None = None,
    data_dir: str | Path | None = None,
) -> Report:
    """Run experiment ``name``; figures go to ``out_dir``. Raises KeyError for a bad name."""
    if name not in EXPERIMENTS:
        raise KeyError(f"unknown experiment {name!r} (known: {', '.join(EXPERIMENTS)})")
    import matplotlib  # noqa: F401 (every experiment draws: missing, say so before measuring)

    module = importlib.import_module(f"rnnkit.experiments.{EXPERIMENTS[name]}")
    out = Path(out_dir)
    make_folder(out, "--out ")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # timings and budgets assume one thread (the reports say so)
    try:
        report: Report = module.run(
            out,
            quick=quick,
            log=log or (lambda _m: None),
            data_dir=None if data_dir is None else Path(data_dir),
        )
    finally:
        torch.set_num_threads(threads)
    return report
