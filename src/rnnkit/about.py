"""What a trained model is: the description ``GET /info`` serves and ``rnnkit info``
prints (architecture, vocabularies, decoding defaults; for a file also how far it was
trained)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from rnnkit.cells.names import CELLS
from rnnkit.checkpoint import Bundle, CheckpointError, bundle_of, load_checkpoint
from rnnkit.config_schema import LOWER_IS_BETTER
from rnnkit.ensemble import Ensemble
from rnnkit.position import check_progress

__all__ = ["checkpoint_info", "model_info", "rerunnable_config"]


def model_info(bundle: Bundle, checkpoint: str, ensemble: Ensemble | None = None) -> dict[str, Any]:
    """What ``GET /info`` tells: the model (the first of an ensemble; ``models`` counts
    them, ``parameters`` adds them up), its vocabularies and the decode defaults."""
    decoding = bundle.model if ensemble is None else ensemble
    cfg = bundle.config
    m, d = cfg.model, cfg.decode
    known = cfg.data.task is None  # a built-in task's sides are named "src" / "tgt"
    return {
        "checkpoint": checkpoint,
        "step": bundle.step,
        "source_language": cfg.data.src if known else None,
        "target_language": cfg.data.tgt if known else None,
        "task": cfg.data.task,
        # a built-in cell's kind (LSTM, LayerNormLSTM, ...); a custom one as the config
        # names it (module:Class), which loading the model needs importable
        "cell": bundle.model.decoder.kind if m.cell in CELLS else m.cell,
        "cell_kwargs": dict(m.cell_kwargs),  # (reset_after, nonlinearity, eps, ...)
        "attention": m.attention,
        "encoder_layers": m.enc_layers,
        "decoder_layers": m.dec_layers,
        "bidirectional": m.bidirectional,
        "embedding_size": m.emb_size,
        "hidden_size": m.hidden_size,
        "models": 1 if ensemble is None else len(ensemble.members),
        "parameters": sum(p.numel() for p in decoding.parameters()),
        "source_vocab_size": len(bundle.src_vocab),
        "target_vocab_size": len(bundle.tgt_vocab),
        "tokenizer": cfg.data.tokenizer,
        "decode": {
            "beam": d.beam_size,
            "length_penalty": d.length_penalty,
            "coverage_penalty": d.coverage_penalty,
            "max_len_a": d.max_len_a,
            "max_len_b": d.max_len_b,
        },
    }


def checkpoint_info(path: str | Path) -> dict[str, Any]:
    """:func:`model_info` of the checkpoint at ``path``, plus ``training``: its step,
    epoch, best dev score so far (by ``train.early_stopping_metric``; with its step and
    dev BLEU), training minutes, ``ema_decay`` (> 0: the weights are a moving average),
    the number of ``processes`` that trained it and whether ``--resume`` can continue from it (an
    averaged or kept ``step-*.pt`` file holds weights only), or ``averaged``:
    the steps whose weights it averages; and ``file_mb``."""
    path = Path(path)
    ckpt = load_checkpoint(path)
    out = model_info(bundle_of(ckpt, path), path.name)  # the file is read once
    progress = ckpt.get("progress", {})
    try:
        check_progress(progress)
    except ValueError as e:
        if progress != {}:  # (a file of weights only has none)
            raise CheckpointError(f"{path}: {e}") from None
    out["training"] = {
        "step": int(ckpt.get("step", 0)),
        "epoch": int(progress["epoch"]) + 1 if "epoch" in progress else None,
        **_best(ckpt),
        "minutes": round(progress["elapsed"] / 60, 1) if "elapsed" in progress else None,
        "resumable": "optimizer" in ckpt,
        "processes": ckpt.get("processes"),  # that wrote it (None: weights only, or older)
        # > 0: the weights are the moving average of the run's (train.ema_decay)
        "ema_decay": float((ckpt.get("config") or {}).get("train", {}).get("ema_decay", 0.0)),
    }
    if ckpt.get("averaged"):
        out["averaged"] = list(ckpt["averaged"])
    out["file_mb"] = round(path.stat().st_size / 2**20, 1)
    return out


def _best(ckpt: dict[str, Any]) -> dict[str, Any]:
    """The best validation so far: its dev BLEU, metric, value and step (None before one)."""
    progress = ckpt.get("progress") or {}
    metric = (ckpt.get("config") or {}).get("train", {}).get("early_stopping_metric", "bleu")
    seen = progress.get("best", -math.inf) > -math.inf
    bleu = progress.get("best_bleu", progress.get("best") if metric == "bleu" else None)
    return {
        "best_dev_bleu": bleu if seen else None,
        "early_stopping_metric": metric,
        "best_dev": (-1 if metric in LOWER_IS_BETTER else 1) * progress["best"] if seen else None,
        "best_step": progress.get("best_step") if seen else None,
    }


def rerunnable_config(ckpt: dict[str, Any]) -> dict[str, Any]:
    """The config of ``ckpt`` (a checkpoint read), as ``rnnkit info --config`` writes it:
    relative paths were found from the run's folders, kept in the checkpoint, so relative
    corpus paths get that base as ``data.data_dir`` and a relative ``train.init_from``
    its absolute path: the config trains again from any folder of this machine."""
    config = ckpt.get("config")
    if not isinstance(config, dict):
        raise CheckpointError("checkpoint lacks 'config'")
    found = ckpt.get("found_at")
    found = found if isinstance(found, dict) else {}
    data, base = config.get("data"), found.get("data_dir")
    if isinstance(data, dict) and isinstance(base, str):  # (a task: its sp_model alone)
        train = data.get("train")
        paths = [*(train if isinstance(train, list) else [train])]
        paths += [data.get(k) for k in ("dev", "test", "sp_model")]
        if any(_relative(p) for p in paths):
            config = {**config, "data": {**data, "data_dir": base}}
    t, parent = config.get("train"), found.get("init_from")
    if isinstance(t, dict) and isinstance(parent, str) and _relative(t.get("init_from")):
        config = {**config, "train": {**t, "init_from": parent}}
    return config


def _relative(path: Any) -> bool:
    return isinstance(path, str) and bool(path) and not Path(path).expanduser().is_absolute()
