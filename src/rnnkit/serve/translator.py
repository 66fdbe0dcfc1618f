"""What the server's worker thread runs: texts → JSON-ready translations.

One call translates a whole batch with :func:`rnnkit.translate.translate_lines` (one
search over all its sentences); with ``gates`` it also records each sentence's gates
with :func:`rnnkit.record.record` (the decoder reading the answer's best translation, so
the gates are those of that translation, as ``rnnkit inspect`` records them) in the shape of
:func:`rnnkit.inspect_html.page_data`, at most :data:`MAX_GATE_UNITS` units per gate.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from rnnkit.about import model_info as info
from rnnkit.checkpoint import Bundle
from rnnkit.ensemble import Ensemble
from rnnkit.inspect_html import page_data
from rnnkit.record import record_translation
from rnnkit.translate import Translation, as_json, translate_lines

__all__ = ["MAX_GATE_UNITS", "Decode", "info", "translate_batch"]

MAX_GATE_UNITS = 64  # units per gate sent with "gates": true (an H-unit trace is T·H floats)


class Decode(NamedTuple):
    """The options a batch shares (hashable: the batcher groups requests by them)."""

    beam: int
    n_best: int
    attention: bool
    gates: bool
    replace_unk: bool = False


def _entry(nbest: list[Translation], opts: Decode) -> dict[str, Any]:
    return as_json(nbest, opts.attention, alternatives=opts.n_best > 1)


def gates_of(
    bundle: Bundle, text: str, best: Translation | None = None, beam: int = 1
) -> dict[str, Any] | None:
    """The gate traces of ``text`` as the inspect page draws them, the decoder reading
    ``best`` (greedy decoding's output when None); None for a blank text."""
    if not text.strip():
        return None
    rec = record_translation(bundle, text, beam if best is not None else 1, best=best)
    units = 0
    for traces in rec.gates.values():
        for name, values in traces.items():
            units = max(units, values.shape[-1])
            traces[name] = values[:, :MAX_GATE_UNITS]
    data = page_data(rec)
    del data["attention"], data["translation"]  # the entry has them (of its own search)
    data["units_total"] = units
    data["units_sent"] = min(units, MAX_GATE_UNITS)
    return data


def translate_batch(
    bundle: Bundle, texts: list[str], opts: Decode, ensemble: Ensemble | None = None
) -> list[dict[str, Any]]:
    """Translate ``texts`` in one batch; one JSON-ready entry per text, in order. With an
    ``ensemble`` (its members share ``bundle``'s vocabularies) it decodes; gates need one
    model (the app refuses them for an ensemble)."""
    results = translate_lines(
        bundle,
        texts,
        opts.beam,
        max(1, len(texts)),
        opts.n_best,
        model=ensemble,
        replace_unk=opts.replace_unk,
    )
    entries = [_entry(r, opts) for r in results]
    if opts.gates:  # record() runs without autograd
        for text, entry, nbest in zip(texts, entries, results):
            entry["gates"] = gates_of(bundle, text, nbest[0] if nbest else None, opts.beam)
    return entries
