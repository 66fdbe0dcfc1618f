"""``rnnkit inspect``: record one sentence's translation and write its figures
(:mod:`rnnkit.inspect_plots`: attention, gates, gate saturation) and a self-contained
HTML page (:mod:`rnnkit.inspect_html`); the figures' functions are importable from here too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from rnnkit.figures import save_figure, undrawable
from rnnkit.inspect_plots import (
    GATE_PANELS,
    MAX_TOKENS,
    gate_panels,
    part_slug,
    plot_attention,
    plot_gates,
    plot_saturation,
    top_units,
)
from rnnkit.record import Recording, SatKey

__all__ = [
    "GATE_PANELS",
    "MAX_TOKENS",
    "gate_panels",
    "InspectResult",
    "plot_attention",
    "plot_gates",
    "plot_saturation",
    "run_inspect",
    "save_figure",
    "top_units",
]


@dataclass
class InspectResult:
    """What :func:`run_inspect` produced."""

    translation: str
    files: list[Path]
    recording: Recording
    saturation: dict[SatKey, tuple[Tensor, Tensor]] | None = None


def run_inspect(
    checkpoint: str | Path,
    sentence: str,
    out_dir: str | Path,
    corpus: Sequence[str] | None = None,
    top_units: int = 16,
    log: Callable[[str], None] | None = None,
    device: str = "cpu",
    beam: int | None = None,
) -> InspectResult:
    """``rnnkit inspect``: record one sentence and write its figures and HTML page.

    Writes to ``out_dir``: ``attention.png`` (models with attention),
    ``gates_<part>.png`` per encoder layer and direction and per decoder layer,
    ``saturation.png`` when a ``corpus`` is given (models with sigmoid gates), and
    ``inspect.html``, which embeds all of them and the recorded numbers.

    Args:
        checkpoint: a checkpoint written by ``rnnkit train``.
        sentence: raw source text.
        corpus: source lines for the gate saturation statistics.
        top_units: units shown per gate panel (those that change most).
        log: receives progress lines.
        beam: the translation recorded is the one ``translate`` gives with this beam
            size (default: the checkpoint's ``decode.beam_size``): greedy search's for
            1, else beam search's best, which the decoder then reads.
    Raises:
        CheckpointError: the checkpoint is missing or unreadable.
        DataError: an empty sentence or corpus, a sentence of more than
            :data:`MAX_TOKENS` source tokens, ``top_units`` < 1, or an ``out_dir`` that
            cannot be a folder. The output is cut at :data:`MAX_TOKENS` tokens too.
    """
    from rnnkit.atomic import check_folder, make_folder, together
    from rnnkit.checkpoint import load_bundle
    from rnnkit.data import DataError
    from rnnkit.inspect_html import write_html
    from rnnkit.record import max_output_len, record_translation, source_ids
    from rnnkit.translate import beam_too_wide

    say = log or (lambda _msg: None)
    if top_units < 1:
        raise DataError(f"inspect: the number of units shown must be at least 1, got {top_units}")
    if not sentence.strip():
        raise DataError("inspect: the sentence is empty")
    if corpus is not None and not any(line.strip() for line in corpus):
        raise DataError("inspect: the corpus has no non-empty line")
    out = Path(out_dir)
    check_folder(out, "inspect: ")
    bundle = load_bundle(checkpoint, device=device, engine="explicit")
    n_src = len(source_ids(bundle, sentence)[1])  # </s> included
    if n_src - 1 > MAX_TOKENS:
        raise DataError(
            f"inspect: the sentence has {n_src - 1} source tokens; at most {MAX_TOKENS} are "
            "allowed, as inspect draws every token in its figures"
        )
    k = bundle.config.decode.beam_size if beam is None else beam  # as translate decodes
    if wide := beam_too_wide(bundle, beam):
        raise DataError(f"inspect: {wide}")
    earlier = (out / "inspect.html").is_file()  # an inspect wrote here: its figures may go
    make_folder(out, "inspect: ")
    limit = min(max_output_len(bundle, n_src), MAX_TOKENS)
    rec = record_translation(bundle, sentence, k, max_len=limit)
    if len(rec.out_tokens) == MAX_TOKENS and rec.out_tokens[-1] != "</s>":
        say(f"note: the output is cut at {MAX_TOKENS} tokens (inspect draws every token)")
    if boxes := undrawable(sentence + rec.translation):
        say(f"note: the figures' font has no glyph for {' '.join(boxes[:12])}: boxes there "
            "(inspect.html shows the text)")  # fmt: skip
    with together():  # all of the figures and the page, or (a full disk) none of them
        figures, sat = _draw(rec, bundle, sentence, out, corpus, top_units, say)
        page = write_html(rec, out / "inspect.html", figures, sat, sentence=sentence)
    files = [*figures.values(), page]
    if earlier:
        _remove_stale(out, files)
    return InspectResult(rec.translation, files, rec, sat)


def _draw(
    rec: Recording,
    bundle: Any,
    sentence: str,
    out: Path,
    corpus: Sequence[str] | None,
    top_units: int,
    say: Callable[[str], None],
) -> tuple[dict[str, Path], dict[SatKey, tuple[Tensor, Tensor]] | None]:
    """The figures of :func:`run_inspect` by name, and the saturation statistics."""
    from rnnkit.record import saturation

    figures: dict[str, Path] = {}
    if rec.attention is not None:
        figures["attention"] = plot_attention(
            rec.src_tokens,
            rec.out_tokens,
            rec.attention,
            out / "attention.png",
            title=f"attention: {_clip(sentence.strip())} → {_clip(rec.translation)}",
        )
    for part in rec.gates:
        figures[part_slug(part)] = plot_gates(
            rec, part, out / f"gates_{part_slug(part)}.png", top_units
        )
    sat = None
    if corpus is not None:
        n = sum(1 for line in corpus if line.strip())
        say(f"gate saturation over {n} sentences")
        sat = saturation(bundle, corpus)
        if sat:
            figures["saturation"] = plot_saturation(
                sat, out / "saturation.png", f"{rec.cell} gate saturation over {n} sentences"
            )
        elif rec.cell == "RNN":
            say("note: a vanilla RNN has no sigmoid gates; no saturation plot")
        else:
            say(
                f"note: {rec.cell} has no gate named as a sigmoid gate is (input, forget, "
                "output, reset, update) and declares none (its Cell class's sigmoid); "
                "no saturation plot"
            )
    return figures, sat


def _clip(text: str, n: int = 60) -> str:
    """``text`` cut to ``n`` characters, with an ellipsis when it was cut."""
    return text if len(text) <= n else text[: n - 1] + "…"


def _remove_stale(out: Path, written: list[Path]) -> None:
    """The figures an earlier inspect left in ``out`` that this one did not draw (another
    model's attention.png beside a model without attention, gates of other layers): they
    would pass for this sentence's. Only inspect's own names are touched, and only in a
    folder an inspect wrote before (its inspect.html): a saturation.png of the user's own
    in another folder was deleted."""
    for path in [out / "attention.png", out / "saturation.png", *out.glob("gates_*.png")]:
        if path not in written and path.is_file():
            path.unlink()
