"""Checkpoints: one file holds what translating needs (config, tokenizers, vocabularies,
weights) and what resuming needs (optimizer, scheduler, RNG states, data position).

Files are written atomically (a temp file in the same folder, then ``os.replace``), so
a run killed mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from pathlib import Path
from pickle import UnpicklingError
from typing import Any

import torch

from rnnkit.atomic import write_atomically
from rnnkit.config import Config, ConfigError, config_from_dict
from rnnkit.data import DataError, Tokenizer, Vocab, tokenizer_from_state
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
    write_atomically(path, lambda f: torch.save({"format": FORMAT, **payload}, f), binary=True)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint; a missing, truncated or foreign file is a :class:`CheckpointError`,
    and so is one that holds more than tensors and plain data (what rnnkit writes): torch's
    ``weights_only`` unpickler refuses it, since unpickling other objects can run code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        with warnings.catch_warnings():  # torch warns of a foreign file: refused or read anyway
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch's safe unpickler meets garbage with whatever it trips on
        why = str(e).rpartition("WeightsUnpickler error:")[2].strip().split(". Please")[0]
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
    """:func:`load_bundle` of a checkpoint already read from ``path``; an entry that is
    missing or malformed is a :class:`CheckpointError` that names ``path`` and the entry."""
    for key in TRANSLATION_KEYS:
        if key not in ckpt:
            raise CheckpointError(f"{path}: checkpoint lacks {key!r}")
    cfg = config_from_dict(ckpt["config"], source=str(path))
    if engine is not None:
        cfg.model.engine = engine
    src_vocab, tgt_vocab = _vocab(ckpt, "src_vocab", path), _vocab(ckpt, "tgt_vocab", path)
    model = build_model(cfg, len(src_vocab), len(tgt_vocab))
    sizes = f"{len(src_vocab)} and {len(tgt_vocab)} tokens"
    _load_weights(model, _weights(ckpt, path), path, sizes)
    return Bundle(
        cfg,
        model.to(device).eval(),
        _tokenizer(ckpt, "src_tokenizer", path),
        _tokenizer(ckpt, "tgt_tokenizer", path),
        src_vocab,
        tgt_vocab,
        _step(ckpt, path),
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


def _weights(ckpt: dict[str, Any], path: str | Path) -> dict[str, torch.Tensor]:
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
    model.load_state_dict(state)


def _step(ckpt: dict[str, Any], path: str | Path) -> int:
    step = ckpt.get("step", 0)
    if isinstance(step, bool) or not isinstance(step, int):
        raise CheckpointError(f"{path}: step is a {type(step).__name__}, not an integer")
    return step


def average_checkpoints(paths: list[str | Path]) -> dict[str, Any]:
    """The element-wise mean of the weights of ``paths`` (Junczys-Dowmunt et al. 2016;
    OpenNMT's and fairseq's checkpoint averaging), as a translation-only payload.

    All checkpoints must come from the same model: the same model config and vocabularies
    (a :class:`CheckpointError` names the first that differs). An averaged input counts as
    the checkpoints it averages (its weight in the mean is their number), so averaging
    ``avg(30, 60)`` with step 80 equals averaging 30, 60 and 80. Tokenizers, vocabularies
    and config are those of the last; ``step`` is the last one's and ``averaged`` lists
    every step averaged.
    """
    if not paths:
        raise CheckpointError("no checkpoints to average")
    ckpts = [load_checkpoint(p) for p in paths]
    cfgs = [_config(ck, p) for ck, p in zip(ckpts, paths)]
    first, last = Path(paths[0]), ckpts[-1]
    for path, ck, cfg in zip(paths[1:], ckpts[1:], cfgs[1:]):
        for key in ("src_vocab", "tgt_vocab"):
            if ck.get(key) != ckpts[0].get(key):
                raise CheckpointError(f"{path}: {key} differs from {first}'s")
        if cfg.model != cfgs[0].model:
            raise CheckpointError(f"{path}: model config differs from {first}'s")
        _same_start(path, cfg, first, cfgs[0])
    states = [_weights(ck, p) for ck, p in zip(ckpts, paths)]
    for path, state in zip(paths, states):
        if state.keys() != states[-1].keys():
            raise CheckpointError(f"{path}: weights differ in names from {paths[-1]}'s")
    steps = [_steps(ck, p) for ck, p in zip(ckpts, paths)]
    mean: dict[str, torch.Tensor] = {}
    for name, ref in states[-1].items():
        if not torch.is_floating_point(ref):
            mean[name] = ref  # integer buffers: the last checkpoint's
            continue
        total = torch.zeros(ref.shape, dtype=torch.float64, device=ref.device)
        for path, state, n in zip(paths, states, map(len, steps)):
            t = state[name]
            if t.shape != ref.shape:
                raise CheckpointError(f"{path}: weights differ in shape from {paths[-1]}'s")
            total += n * t.to(torch.float64)
        mean[name] = (total / sum(map(len, steps))).to(ref.dtype)
    out = {k: last[k] for k in TRANSLATION_KEYS if k in last}
    out.update(model=mean, step=_step(last, paths[-1]), averaged=[s for ss in steps for s in ss])
    bundle_of(out, paths[-1])  # the average translates: its config, vocabularies, tokenizers
    return out


def _config(ckpt: dict[str, Any], path: str | Path) -> Config:
    if "config" not in ckpt:
        raise CheckpointError(f"{path}: checkpoint lacks 'config'")
    return config_from_dict(ckpt["config"], source=str(path))


def _steps(ckpt: dict[str, Any], path: str | Path) -> list[int]:
    """The steps whose weights ``ckpt`` holds: those it averages, or its own."""
    steps = ckpt.get("averaged", [_step(ckpt, path)])
    if not isinstance(steps, list) or not steps or not all(type(s) is int for s in steps):
        raise CheckpointError(f"{path}: averaged is not a list of steps")
    return steps


def _same_start(path: str | Path, cfg: Config, first: Path, cfg0: Config) -> None:
    """Refuse to average checkpoints of runs that started from other weights: another
    ``train.seed`` (another initialisation), unless both fine-tuned one parent
    (``train.init_from``). Their weights lie in unrelated places; their mean is noise."""
    t, t0 = cfg.train, cfg0.train
    if t.seed != t0.seed and not (t.init_from and t.init_from == t0.init_from):
        raise CheckpointError(
            f"{path}: from another run than {first} (train.seed {t.seed} there, "
            f"{t0.seed} here): the weights of independent runs do not average; "
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
    ``cfg`` cannot train with (``fine_tune``: for ``train.init_from``, not ``--resume``),
    or (``--resume``) holds weights only, or entries that do not load."""
    if not fine_tune and Path(path).is_file():  # (a rank on another machine may lack it)
        _check_full(load_checkpoint(path), path)
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


def _check_full(ckpt: dict[str, Any], path: str | Path) -> None:
    """Refuse a checkpoint that holds weights only (no optimizer, schedule, RNG states or
    data position: an average, a kept step file) or that does not load."""
    if "optimizer" not in ckpt:
        what = "a kept step-*.pt file"
        if "averaged" in ckpt:
            what = f"an average of steps {', '.join(map(str, _steps(ckpt, path)))}"
        raise CheckpointError(
            f"{path}: holds weights only ({what}) and cannot be resumed; "
            "start a new run from it with train.init_from"
        )
    for key in ("scheduler", "progress", "rng"):
        if key not in ckpt:
            raise CheckpointError(f"{path}: checkpoint lacks {key!r}, which --resume needs")
    bundle_of(ckpt, path)


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
    bundle_of(ckpt, path)  # its entries load: a broken parent fails here, in one line
    check_resumable(ckpt["config"], cfg, path, fine_tune=True)
    return ckpt
