"""Checkpoints: one file holds what translating needs (config, tokenizers, vocabularies,
weights) and what resuming needs (optimizer, scheduler, RNG states, data position).

Files are written atomically (a temp file in the same folder, then ``os.replace``), so
a run killed mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rnnkit.config import Config, ConfigError, config_from_dict
from rnnkit.data import Tokenizer, Vocab, tokenizer_from_state
from rnnkit.model import Seq2Seq, resolve_cell

__all__ = [
    "CheckpointError",
    "Bundle",
    "save_checkpoint",
    "load_checkpoint",
    "build_model",
    "load_bundle",
    "bundle_of",
    "average_checkpoints",
    "check_resumable",
    "load_initial",
    "kept_checkpoints",
]

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
    """Write ``payload`` (plus a format tag) to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, **payload}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint; a missing, truncated or foreign file is a :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except (
        RuntimeError,
        EOFError,
        pickle.UnpicklingError,
        zipfile.BadZipFile,
        OSError,
        ValueError,
    ) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{path}: not a readable rnnkit checkpoint (truncated or corrupt: {first})"
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
    """Raise :class:`ConfigError` when ``model.cell`` names a cell that cannot be had."""
    try:
        resolve_cell(cfg.model.cell)
    except ValueError as e:
        raise ConfigError(f"model: {e}") from None


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
        zoneout=m.zoneout,
        recurrent_dropout=m.recurrent_dropout,
        weight_drop=m.weight_drop,
        tgt_embed_init=m.tgt_embed_init,
        regularise=m.regularise,
    )


def load_bundle(
    path: str | Path, device: str | torch.device = "cpu", engine: str | None = None
) -> Bundle:
    """Load a checkpoint for translation, in eval mode on ``device``.

    ``engine`` overrides the configured one (``"explicit"`` to record gates).
    """
    return bundle_of(load_checkpoint(path), path, device, engine)


def bundle_of(
    ckpt: dict[str, Any],
    path: str | Path,
    device: str | torch.device = "cpu",
    engine: str | None = None,
) -> Bundle:
    """:func:`load_bundle` of a checkpoint already read from ``path``."""
    try:
        cfg = config_from_dict(ckpt["config"], source=str(path))
        if engine is not None:
            cfg.model.engine = engine
        src_vocab = Vocab.from_state(ckpt["src_vocab"])
        tgt_vocab = Vocab.from_state(ckpt["tgt_vocab"])
        model = build_model(cfg, len(src_vocab), len(tgt_vocab))
        model.load_state_dict(ckpt["model"])
        bundle = Bundle(
            cfg,
            model.to(device).eval(),
            tokenizer_from_state(ckpt["src_tokenizer"]),
            tokenizer_from_state(ckpt["tgt_tokenizer"]),
            src_vocab,
            tgt_vocab,
            int(ckpt.get("step", 0)),
        )
    except KeyError as e:
        raise CheckpointError(f"{path}: checkpoint lacks {e}") from None
    return bundle


def average_checkpoints(paths: list[str | Path]) -> dict[str, Any]:
    """The element-wise mean of the weights of ``paths`` (Junczys-Dowmunt et al. 2016;
    OpenNMT's and fairseq's checkpoint averaging), as a translation-only payload.

    All checkpoints must come from the same model: the same model config and vocabularies
    (a :class:`CheckpointError` names the first that differs). Tokenizers, vocabularies
    and config are those of the last; ``step`` is the last one's and ``averaged`` lists
    the steps averaged.
    """
    if not paths:
        raise CheckpointError("no checkpoints to average")
    ckpts = [load_checkpoint(p) for p in paths]
    first, last = Path(paths[0]), ckpts[-1]
    for path, ck in zip(paths[1:], ckpts[1:]):
        for key in ("src_vocab", "tgt_vocab"):
            if ck.get(key) != ckpts[0].get(key):
                raise CheckpointError(f"{path}: {key} differs from {first}'s")
        if ck.get("config", {}).get("model") != ckpts[0].get("config", {}).get("model"):
            raise CheckpointError(f"{path}: model config differs from {first}'s")
        _same_start(path, ck, first, ckpts[0])
    states = [ck["model"] for ck in ckpts]
    for path, state in zip(paths, states):
        if state.keys() != states[-1].keys():
            raise CheckpointError(f"{path}: weights differ in names from {paths[-1]}'s")
    mean: dict[str, torch.Tensor] = {}
    for name, ref in states[-1].items():
        if not torch.is_floating_point(ref):
            mean[name] = ref  # integer buffers: the last checkpoint's
            continue
        total = torch.zeros(ref.shape, dtype=torch.float64, device=ref.device)
        for path, state in zip(paths, states):
            t = state[name]
            if t.shape != ref.shape:
                raise CheckpointError(f"{path}: weights differ in shape from {paths[-1]}'s")
            total += t.to(torch.float64)
        mean[name] = (total / len(states)).to(ref.dtype)
    out = {k: last[k] for k in TRANSLATION_KEYS if k in last}
    out["model"] = mean
    steps = [int(ck.get("step", 0)) for ck in ckpts]
    out.update(step=steps[-1], averaged=steps)
    return out


def _same_start(path: str | Path, ck: dict[str, Any], first: Path, ck0: dict[str, Any]) -> None:
    """Refuse to average checkpoints of runs that started from other weights: another
    ``train.seed`` (another initialisation), unless both fine-tuned one parent
    (``train.init_from``). Their weights lie in unrelated places; their mean is noise."""
    t, t0 = ck.get("config", {}).get("train", {}), ck0.get("config", {}).get("train", {})
    init, init0 = t.get("init_from"), t0.get("init_from")
    if t.get("seed") != t0.get("seed") and not (init and init == init0):
        raise CheckpointError(
            f"{path}: from another run than {first} (train.seed {t.get('seed')} there, "
            f"{t0.get('seed')} here): the weights of independent runs do not average; "
            "translate with them as an ensemble instead (rnnkit translate A.pt B.pt)"
        )


# model keys that shape the parameters: a checkpoint resumes only into the same ones
_SHAPE_KEYS = (
    "cell", "emb_size", "hidden_size", "enc_layers", "dec_layers", "bidirectional",
    "attention", "luong_score", "bridge", "tie_embeddings",
)  # fmt: skip


def check_resumable(
    saved: dict[str, Any], cfg: Config, path: str | Path, fine_tune: bool = False
) -> None:
    """Raise :class:`CheckpointError` when the checkpoint at ``path`` (its config dict
    ``saved``) holds a model of another shape than ``cfg`` describes, or vocabularies that
    ``cfg`` cannot train with (``fine_tune``: for ``train.init_from``, not ``--resume``)."""
    how, fix = (
        ("train.init_from", "give the model section of that run")
        if fine_tune
        else ("--resume", "resume with that config, or train into a new --out")
    )
    was, now = saved.get("model", {}), dataclasses.asdict(cfg.model)
    changed = [k for k in _SHAPE_KEYS if k in was and was[k] != now[k]]
    if changed:
        diff = ", ".join(f"model.{k} {was[k]!r} there, {now[k]!r} here" for k in changed)
        raise CheckpointError(f"{path}: {how} needs the model it was trained with ({diff}); {fix}")
    if cfg.data.bpe_dropout and not saved.get("data", {}).get("bpe_dropout"):
        raise CheckpointError(
            f"{path}: trained without data.bpe_dropout, its vocabularies lack the pieces "
            f"of dropped merges; {'fine-tune' if fine_tune else 'resume'} without it"
            + ("" if fine_tune else ", or train into a new --out")
        )
    metric = saved.get("train", {}).get("early_stopping_metric", "bleu")
    if not fine_tune and metric != cfg.train.early_stopping_metric:
        raise CheckpointError(
            f"{path}: trained with train.early_stopping_metric {metric}, which its best.pt and "
            f"patience count in; resume with it, or train into a new --out (train.init_from)"
        )
    lower = bool(saved.get("data", {}).get("lowercase", False))
    if fine_tune and lower != cfg.data.lowercase:
        raise CheckpointError(
            f"{path}: trained with data.lowercase {str(lower).lower()}; its tokenizers and "
            "vocabularies need the same"
        )


def kept_checkpoints(out: str | Path) -> list[Path]:
    """The ``step-STEP.pt`` files in ``out``, oldest step first."""
    found = []
    for path in Path(out).glob("step-*.pt"):
        step = path.stem.removeprefix("step-")
        if step.isdigit():
            found.append((int(step), path))
    return [path for _, path in sorted(found)]


def load_initial(path: str | Path, cfg: Config) -> dict[str, Any]:
    """The checkpoint that ``train.init_from`` names, checked against ``cfg``: a new run
    starts from its weights, tokenizers and vocabularies (fine-tuning)."""
    ckpt = load_checkpoint(path)
    for key in TRANSLATION_KEYS:
        if key not in ckpt:
            raise CheckpointError(f"{path}: checkpoint lacks {key!r}")
    check_resumable(ckpt["config"], cfg, path, fine_tune=True)
    return ckpt
