"""Checkpoints: one file holds what translating needs (config, tokenizers, vocabularies,
weights) and what resuming needs (optimizer, scheduler, RNG states, data position).

Files are written atomically (a temp file in the same folder, then ``os.replace``), so
a run killed mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from pickle import UnpicklingError
from typing import Any

import torch

from rnnkit.atomic import link_trouble, signals_held, write_atomically
from rnnkit.cells.stacked import STOCK
from rnnkit.config import Config, ConfigError, config_from_dict
from rnnkit.data import DataError, Tokenizer, Vocab, tokenizer_from_state
from rnnkit.devices import pick_device
from rnnkit.model import Seq2Seq, resolve_cell
from rnnkit.recurrent import unknown_keywords

__all__ = [
    "CheckpointError",
    "Bundle",
    "save_checkpoint",
    "load_checkpoint",
    "build_model",
    "load_bundle",
    "bundle_of",
]

_IN_RUNS = ("average_checkpoints", "check_resumable", "load_initial", "kept_checkpoints")


def __getattr__(name: str) -> Any:
    """The checkpoint functions across runs live in :mod:`rnnkit.runs` (also importable
    from here, as before)."""
    if name in _IN_RUNS:
        from rnnkit import runs

        return getattr(runs, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


FORMAT = "rnnkit-checkpoint-1"

# What translating needs; a kept or averaged checkpoint holds only these (no optimizer).
TRANSLATION_KEYS = ("config", "model", "src_tokenizer", "tgt_tokenizer", "src_vocab", "tgt_vocab")


class CheckpointError(ValueError):
    """A checkpoint that is missing, truncated or not rnnkit's (one-line message)."""


@dataclass
class Bundle:
    """A trained model with everything needed to turn text into text."""

    config: Config
    model: Seq2Seq
    src_tokenizer: Tokenizer
    tgt_tokenizer: Tokenizer
    src_vocab: Vocab
    tgt_vocab: Vocab
    step: int


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` (plus a format tag) to ``path`` atomically; a Ctrl-C or SIGTERM
    meanwhile is delivered once the file is written (:func:`rnnkit.atomic.signals_held`)."""
    with signals_held():
        write_atomically(path, lambda f: torch.save({"format": FORMAT, **payload}, f), binary=True)


def _damaged_entry(path: Path) -> str | None:
    """The first entry of the checkpoint's zip whose bytes do not match their CRC-32, or
    None. torch.load checks none: a file written over in place (``rsync --inplace``, a
    copy into a file being served and reloaded) loaded as a mixture of two models' weights.
    A file that is no zip at all is left to torch.load to describe."""
    try:
        with zipfile.ZipFile(path) as z:
            return z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError):
        return None


def _check_kind(path: Path) -> None:
    """A file that is neither a zip archive (what torch.save writes) nor a pickle (its
    old format) is no torch file at all: a text file was said to be "refused by the safe
    unpickler, as loading other objects could run code"."""
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except PermissionError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror})") from None
    if head and not head.startswith((b"PK\x03\x04", b"\x80")):
        raise CheckpointError(
            f"{path}: not a torch checkpoint (neither a zip archive, what torch.save writes, "
            f"nor a pickle: it starts with {head!r})"
        )


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint; a missing, truncated or foreign file is a :class:`CheckpointError`,
    and so is one that holds more than tensors and plain data (what rnnkit writes): torch's
    ``weights_only`` unpickler refuses it, since unpickling other objects can run code."""
    path = Path(path)
    if path.is_dir():  # a run folder: its checkpoints are in it
        inside = [f.name for f in (path / "best.pt", path / "last.pt") if f.is_file()]
        hint = f" (give a checkpoint in it: {path / inside[0]})" if inside else ""
        raise CheckpointError(f"{path}: is a folder, not a checkpoint{hint}")
    if not path.is_file():
        why = link_trouble(path)
        raise CheckpointError(f"{path}: checkpoint not found{f' ({why})' if why else ''}")
    if (entry := _damaged_entry(path)) is not None:  # (torch reads no checksum)
        raise CheckpointError(
            f"{path}: not a readable rnnkit checkpoint (corrupt: its entry {entry} does not "
            "match its checksum; written over in place while it was read?)"
        )
    _check_kind(path)
    try:
        with warnings.catch_warnings():  # torch warns of a foreign file: refused or read anyway
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except PermissionError as e:  # a good file this user may not read: not "corrupt"
        raise CheckpointError(f"{path}: cannot read ({e.strerror})") from None
    except Exception as e:  # torch's safe unpickler meets garbage with whatever it trips on
        why = str(e).rpartition("WeightsUnpickler error:")[2].strip().split(". Please")[0]
        why = why.split(". This is an internal miniz error")[0]  # (and 250 characters more)
        how = "truncated or corrupt"
        if isinstance(e, UnpicklingError):  # what anything but tensors and plain data meets
            how = "refused by the safe unpickler, as loading other objects could run code"
        raise CheckpointError(
            f"{path}: not a readable rnnkit checkpoint ({how}: "
            f"{type(e).__name__}{': ' + why.splitlines()[0] if why else ''})"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an rnnkit checkpoint")
    return ckpt


def build_model(cfg: Config, src_vocab_size: int, tgt_vocab_size: int) -> Seq2Seq:
    """The Seq2Seq that ``cfg.model`` describes."""
    m = cfg.model
    try:
        return _seq2seq(m, src_vocab_size, tgt_vocab_size)
    except ValueError as e:  # a custom model.cell that cannot be had, or does not fit
        raise ConfigError(f"model: {e}") from None


def check_cell(cfg: Config) -> None:
    """Raise :class:`ConfigError` when ``model.cell`` names a cell that cannot be had or
    does not fit an encoder-decoder (more than two states, a state not ``hidden_size``
    wide, an option it lacks, a custom step that breaks the cell API, an engine that
    cannot serve it): a model of 8-token vocabularies is built and run on one sentence to
    see, with the random number generator left as it was."""
    custom = False
    try:
        kind = resolve_cell(cfg.model.cell)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"model: {e}") from None
    cls = STOCK[kind] if isinstance(kind, str) else kind  # (the decoder's cell)
    if unknown := unknown_keywords(cls, cfg.model.cell_kwargs):
        raise ConfigError(f"model.cell_kwargs.{unknown[0]}: {cls.__name__} takes no such keyword")
    try:
        custom = not isinstance(kind, str)
        with torch.random.fork_rng(devices=[]):
            model = _seq2seq(cfg.model, 8, 8)
            # one sentence, in training mode as step 1 runs: a custom step that breaks the
            # cell API, or an engine that cannot serve the cell's options, fails here
            with torch.no_grad():
                model.train()(torch.tensor([[4, 3]]), torch.tensor([2]), torch.tensor([[2, 4]]))
    except (ValueError, TypeError) as e:  # TypeError: a custom cell's own signature
        if not custom or getattr(kind, "__name__", "") in str(e):
            raise ConfigError(f"model: {_one_line(e)}") from None
        raise ConfigError(f"model: {_custom(cfg)}: {_one_line(e)}") from None
    except RuntimeError as e:  # its step's arithmetic (shapes that do not fit)
        if not custom:
            raise
        raise ConfigError(f"model: {_custom(cfg)}: {_one_line(e)}") from None


def _custom(cfg: Config) -> str:
    """A custom cell as an error names it: with its keywords, which its ``__init__``
    may have failed on (torch's ``fill_()`` of a string names neither)."""
    kw = cfg.model.cell_kwargs
    return f"{cfg.model.cell}" + (f" (model.cell_kwargs {kw})" if kw else "")


def _one_line(e: Exception) -> str:
    """torch's errors of an overloaded function list every overload on lines of their
    own: the first line, for the one-line error."""
    lines = str(e).strip().splitlines() or [type(e).__name__]
    return lines[0] + (" …" if len(lines) > 1 else "")


def _seq2seq(m: Any, src_vocab_size: int, tgt_vocab_size: int) -> Seq2Seq:
    return Seq2Seq(
        src_vocab_size,
        tgt_vocab_size,
        emb_size=m.emb_size,
        hidden_size=m.hidden_size,
        cell=m.cell,
        enc_layers=m.enc_layers,
        dec_layers=m.dec_layers,
        bidirectional=m.bidirectional,
        attention=m.attention,
        luong_score=m.luong_score,
        bridge=m.bridge,
        dropout=m.dropout,
        emb_dropout=m.emb_dropout,
        tie_embeddings=m.tie_embeddings,
        engine=m.engine,
        forget_bias=m.forget_bias,
        cell_kwargs=m.cell_kwargs,
        zoneout=m.zoneout,
        recurrent_dropout=m.recurrent_dropout,
        weight_drop=m.weight_drop,
        tgt_embed_init=m.tgt_embed_init,
        regularise=m.regularise,
    )


def load_bundle(
    path: str | Path, device: str | torch.device = "cpu", engine: str | None = None
) -> Bundle:
    """Load a checkpoint for translation, in eval mode on ``device`` (``"auto"``: CUDA
    when present; one this machine lacks is a ConfigError that says so).

    ``engine`` overrides the configured one (``"explicit"`` to record gates).
    """
    device = pick_device(str(device), "device")  # (a torch.device too: one this machine lacks)
    return bundle_of(load_checkpoint(path), path, device, engine)


def bundle_of(
    ckpt: dict[str, Any],
    path: str | Path,
    device: str | torch.device = "cpu",
    engine: str | None = None,
) -> Bundle:
    """:func:`load_bundle` of a checkpoint already read from ``path``; an entry that is
    missing or malformed is a :class:`CheckpointError` that names ``path`` and the entry."""
    for key in TRANSLATION_KEYS:
        if key not in ckpt:
            raise CheckpointError(f"{path}: checkpoint lacks {key!r}")
    cfg = config_of(ckpt, path)
    if engine is not None:
        cfg.model.engine = engine
    try:
        resolve_cell(cfg.model.cell)  # a custom cell's module: importable here?
    except ValueError as e:
        raise CheckpointError(
            f"{path}: model.{e}; its module must be importable (run from the folder that "
            "holds it, or add that folder to PYTHONPATH)"
        ) from None
    src_vocab, tgt_vocab = _vocab(ckpt, "src_vocab", path), _vocab(ckpt, "tgt_vocab", path)
    model = build_model(cfg, len(src_vocab), len(tgt_vocab))
    sizes = f"{len(src_vocab)} and {len(tgt_vocab)} tokens"
    _load_weights(model, weights_of(ckpt, path), path, sizes)
    return Bundle(
        cfg,
        model.to(device).eval(),
        _tokenizer(ckpt, "src_tokenizer", path),
        _tokenizer(ckpt, "tgt_tokenizer", path),
        src_vocab,
        tgt_vocab,
        step_of(ckpt, path),
    )


def _vocab(ckpt: dict[str, Any], key: str, path: str | Path) -> Vocab:
    state = ckpt[key]
    tokens = state.get("tokens") if isinstance(state, dict) else None
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        raise CheckpointError(f"{path}: {key} is not a vocabulary (a list of tokens)")
    try:
        return Vocab.from_state(state)
    except DataError as e:  # specials not first, a duplicate token
        raise CheckpointError(f"{path}: {key}: {str(e).removeprefix('vocab: ')}") from None


def _tokenizer(ckpt: dict[str, Any], key: str, path: str | Path) -> Tokenizer:
    state = ckpt[key]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: {key} is a {type(state).__name__}, not a tokenizer state")
    try:
        return tokenizer_from_state(state)
    except KeyError as e:
        raise CheckpointError(f"{path}: {key} lacks {e}") from None
    except (DataError, TypeError, RuntimeError) as e:  # an unknown kind, a model that won't parse
        why = (
            str(e).strip().partition("\n")[0].removeprefix("tokenizer state: ") or type(e).__name__
        )
        raise CheckpointError(f"{path}: {key} does not rebuild a tokenizer: {why}") from None


def weights_of(ckpt: dict[str, Any], path: str | Path) -> dict[str, torch.Tensor]:
    """The checkpoint's ``model`` entry, checked to map names to tensors."""
    if "model" not in ckpt:
        raise CheckpointError(f"{path}: checkpoint lacks 'model'")
    state = ckpt["model"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: model is a {type(state).__name__}, not a dict of weights")
    for name, t in state.items():
        if not isinstance(t, torch.Tensor):
            raise CheckpointError(f"{path}: weight {name!r} is a {type(t).__name__}, not a tensor")
    return state


def _load_weights(model: Seq2Seq, state: dict[str, Any], path: str | Path, sizes: str) -> None:
    """``model.load_state_dict(state)``, or a :class:`CheckpointError` that names the first
    weight that does not fit (``sizes``: the vocabularies' sizes, for the message)."""
    want = model.state_dict()
    wrong = [
        f"{k} is {tuple(state[k].shape)} there, {tuple(w.shape)} in the model"
        for k, w in want.items()
        if k in state and state[k].shape != w.shape
    ]
    wrong += [f"{k} is missing" for k in want if k not in state]
    wrong += [f"{k} is not in the model" for k in state if k not in want]
    if wrong:
        more = f" (and {len(wrong) - 1} more)" if len(wrong) > 1 else ""
        raise CheckpointError(
            f"{path}: its weights do not fit the model that its config and vocabularies "
            f"({sizes}) describe: {wrong[0]}{more}"
        )
    bad = [k for k, w in state.items() if w.is_floating_point() and not torch.isfinite(w).all()]
    if bad:  # every translation would be <unk>s scored nan, and beam search would fail
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        raise CheckpointError(
            f"{path}: weights that are not finite numbers ({bad[0]}{more}): the run diverged "
            "before this checkpoint; use an earlier one"
        )
    model.load_state_dict(state)


def step_of(ckpt: dict[str, Any], path: str | Path) -> int:
    """The checkpoint's training step, checked to be an integer."""
    step = ckpt.get("step", 0)
    if isinstance(step, bool) or not isinstance(step, int):
        raise CheckpointError(f"{path}: step is a {type(step).__name__}, not an integer")
    return step


def config_of(ckpt: dict[str, Any], path: str | Path) -> Config:
    """The checkpoint's config, validated (errors name ``path``)."""
    if "config" not in ckpt:
        raise CheckpointError(f"{path}: checkpoint lacks 'config'")
    saved = ckpt["config"]
    if isinstance(saved, dict):  # written before configs refused it: it never applied
        model, decode = saved.get("model") or {}, saved.get("decode") or {}
        if model.get("attention") == "none" and decode.get("coverage_penalty"):
            saved = {**saved, "decode": {**decode, "coverage_penalty": 0.0}}
    try:
        return config_from_dict(saved, source=str(path))
    except ConfigError as e:  # the checks across sections do not name the source
        raise ConfigError(str(e) if str(e).startswith(f"{path}: ") else f"{path}: {e}") from None
