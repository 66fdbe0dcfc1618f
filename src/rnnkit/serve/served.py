"""The model a server translates with, replaced whole when its checkpoints are read again
(``rnnkit serve`` on SIGHUP, as nginx and gunicorn reload): a batch already running
finishes on the model it started with, the next one takes the new model, and a reload
that fails (a missing or half-written file) leaves the current model serving."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rnnkit.checkpoint import Bundle
from rnnkit.ensemble import Ensemble
from rnnkit.serve.translator import Decode, info, translate_batch
from rnnkit.translate import beam_too_wide

__all__ = ["Loaded", "Refused", "Served", "refusal"]

Loader = Callable[[], tuple[Bundle, "Ensemble | None"]]


@dataclass(frozen=True)
class Loaded:
    """One loaded model and what ``GET /info`` says of it."""

    bundle: Bundle
    ensemble: Ensemble | None
    about: dict[str, Any]
    default_beam: int


class Refused(ValueError):
    """The options of a batch cannot be served by the model now current (see
    :func:`refusal`): a 422, not a model failure."""


def refusal(m: Loaded, opts: Decode) -> str | None:
    """Why ``m`` cannot translate with ``opts``, or None."""
    if opts.beam > len(m.bundle.tgt_vocab):
        return (
            f'"beam" {opts.beam} exceeds the target vocabulary ({len(m.bundle.tgt_vocab)} tokens)'
        )
    if opts.gates and m.ensemble is not None:
        return f'"gates" need one model; this server runs an ensemble of {m.about["models"]}'
    if opts.replace_unk and m.bundle.config.model.attention == "none":
        return '"replace_unk" copies the source token attended to: the model has no attention'
    return None


# what a reload did; ``rnnkit serve`` writes it on stderr (the library only logs it)
RELOAD_LOG = logging.getLogger("rnnkit.serve.reload")


class Served:
    """The current :class:`Loaded` (``now``, replaced in one assignment) and its reload."""

    def __init__(
        self,
        bundle: Bundle,
        ensemble: Ensemble | None,
        checkpoint: str,
        beam: int | None,
        limits: dict[str, Any],
        loader: Loader | None = None,
        on_reload: Callable[[bool], None] = lambda _ok: None,
    ) -> None:
        self.checkpoint, self.beam, self.limits = checkpoint, beam, limits
        self.loader, self.on_reload = loader, on_reload
        self.now = self._loaded(bundle, ensemble)
        self._lock = threading.Lock()  # one reload at a time

    def _loaded(self, bundle: Bundle, ensemble: Ensemble | None) -> Loaded:
        beam = self.beam if self.beam is not None else bundle.config.decode.beam_size
        about = info(bundle, self.checkpoint, ensemble)
        about["decode"]["beam"] = beam
        # each model's training step (null: an ensemble built in Python, steps unknown)
        steps = [bundle.step] if ensemble is None else ensemble.steps
        about["steps"] = None if steps is None else list(steps)
        about["limits"] = self.limits
        return Loaded(bundle, ensemble, about, beam)

    def translate(self, texts: list[str], opts: Decode) -> list[dict[str, Any]]:
        """One batch, on the model current when it starts."""
        m = self.now
        if why := refusal(m, opts):  # checked again: a reload may have come in between
            raise Refused(why)
        return translate_batch(m.bundle, texts, opts, m.ensemble)

    def reload(self) -> bool:
        """Read the checkpoints again and serve them; False (and the current model kept)
        when there is no loader or loading fails."""
        if self.loader is None:
            return False
        with self._lock:
            step = self.now.bundle.step
            try:
                bundle, ensemble = self.loader()
                if wide := beam_too_wide(bundle, self.beam):  # (served, every request
                    raise ValueError(wide)  # without "beam" was a 422)
            except Exception as e:  # the server must outlive a bad file
                RELOAD_LOG.warning(
                    "rnnkit serve: reload failed, still serving step %s: %s", step, e
                )
                self.on_reload(False)
                return False
            self.now = self._loaded(bundle, ensemble)
            RELOAD_LOG.info(
                "rnnkit serve: reloaded %s (step %s → %s)", self.checkpoint, step, bundle.step
            )
            self.on_reload(True)
            return True
