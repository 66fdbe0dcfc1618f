"""A new run's first weights: a parent checkpoint's (``train.init_from``), or the
model's initialisation with pretrained vectors as embeddings (``model.src_embeddings`` /
``tgt_embeddings``).

The files are in the text format of word2vec, GloVe and fastText (``.vec``): one
``token v_1 ... v_E`` per line, separated by spaces, optionally below a header line
``N E``. A vocabulary token found in the file gets its vector as its initial
embedding; the others (and ``<pad>``, ``<unk>``, ``<s>``, ``</s>``) keep the model's
initialisation. Only lines whose token is in the vocabulary are parsed, so a file of
millions of words costs one pass of reading. With ``tie_embeddings`` the target vectors
also start the output layer. Training then adjusts them like any other weight (as
OpenNMT's ``-src_embeddings`` and Joey NMT's ``load_pretrained`` do).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch

from rnnkit.config import Config, resolve_data_path
from rnnkit.data import DataError, Vocab
from rnnkit.data.vocab import SPECIALS
from rnnkit.model import Seq2Seq

__all__ = ["check_files", "first_weights", "read_vectors", "load_pretrained", "vector_lines"]


def _opened(path: str | Path) -> BinaryIO:
    """``path`` open for reading, or a :class:`DataError` naming it."""
    try:
        return open(path, "rb")
    except OSError as e:
        raise DataError(f"{path}: cannot read the embeddings file ({e.strerror})") from None


def read_vectors(path: str | Path, vocab: Vocab, dim: int) -> dict[int, list[float]]:
    """The vectors of ``path`` for the tokens of ``vocab`` (specials aside), by id; the
    first line of a token counts. Fields are separated by spaces or tabs; the first
    vector's size is checked whatever its token (a file of another size that shares no
    token with the vocabulary is an error, not "0 found").

    Raises:
        DataError: naming the file (and line): missing, not UTF-8, a vector of another
            size than ``dim``, or a value that is not a number.
    """
    found: dict[int, list[float]] = {}
    checked = False  # the first vector's size was checked (every other found one's is)
    with _opened(path) as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8-sig" if n == 1 else "utf-8")  # (a BOM: Notepad's)
            except UnicodeDecodeError:
                raise DataError(f"{path}, line {n}: not UTF-8") from None
            parts = line.split()  # spaces or tabs (no token holds whitespace)
            if not parts:
                continue
            if n == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):  # N E header
                if int(parts[1]) != dim:
                    raise DataError(
                        f"{path}, line 1: vectors of size {parts[1]}, but model.emb_size is {dim}"
                    )
                continue
            wanted = parts[0] in vocab and parts[0] not in SPECIALS
            wanted = wanted and vocab[parts[0]] not in found
            if not wanted and checked:
                continue
            checked = True  # the first vector's size is checked, whatever its token
            if len(parts) - 1 != dim:
                raise DataError(
                    f"{path}, line {n}: {len(parts) - 1} numbers after {parts[0]!r}, but "
                    f"model.emb_size is {dim}"
                )
            if not wanted:
                continue
            i = vocab[parts[0]]
            found[i] = [_number(v) for v in parts[1:]]
            if not all(math.isfinite(v) for v in found[i]):  # nan / inf would be one too
                bad = next(v for v, x in zip(parts[1:], found[i]) if not math.isfinite(x))
                raise DataError(
                    f"{path}, line {n}: {bad!r} (in the vector of {parts[0]!r}) is not a "
                    "finite number"
                )
    if not checked:  # (an empty file, or the wrong one: 0 % found said nothing wrong)
        raise DataError(f"{path}: holds no vectors")
    return found


def _number(text: str) -> float:
    """``float(text)``, nan for what is not a number."""
    try:
        return float(text)
    except ValueError:
        return math.nan


def load_pretrained(
    model: Seq2Seq,
    cfg: Config,
    src_vocab: Vocab,
    tgt_vocab: Vocab,
    config_dir: Path | None = None,
    say: Callable[[str], None] = lambda _m: None,
) -> None:
    """Copy the vectors that ``cfg.model.src_embeddings`` / ``tgt_embeddings`` name into
    the embeddings of ``model`` (paths resolve as corpus paths do); says how many tokens
    of each vocabulary were found."""
    sides = (
        ("source", cfg.model.src_embeddings, src_vocab, model.encoder.embed.weight),
        ("target", cfg.model.tgt_embeddings, tgt_vocab, model.decoder.embed.weight),
    )
    for side, name, vocab, weight in sides:
        if not name:
            continue
        path = resolve_data_path(cfg.data, name, config_dir)
        vectors = read_vectors(path, vocab, weight.shape[1])
        if vectors:
            with torch.no_grad():
                ids = torch.tensor(list(vectors), device=weight.device)
                weight[ids] = torch.tensor(list(vectors.values()), dtype=weight.dtype).to(
                    ids.device
                )
        n = len(vocab) - len(SPECIALS)
        say(
            f"{side} embeddings: {len(vectors):,} of {n:,} tokens from {path} "
            f"({100 * len(vectors) / max(n, 1):.0f}%; the rest keep their initialisation)"
        )
        if not vectors:
            say(
                f"note: no {side} token is in {path}: its tokens must be the vocabulary's "
                f"(data.tokenizer {cfg.data.tokenizer}, lowercase {cfg.data.lowercase})"
            )


def check_files(cfg: Config, config_dir: Path | None = None) -> None:
    """Fail before any data work when a file of ``model.src_embeddings`` /
    ``tgt_embeddings`` cannot be opened (:class:`DataError` naming it)."""
    for key, name in (("src", cfg.model.src_embeddings), ("tgt", cfg.model.tgt_embeddings)):
        if not name:
            continue
        try:
            _opened(resolve_data_path(cfg.data, name, config_dir)).close()
        except DataError as e:
            if Path(name).expanduser().is_absolute():
                raise
            base = resolve_data_path(cfg.data, ".", config_dir)
            raise DataError(
                f"{e} (model.{key}_embeddings {name!r} is relative: taken from {base}, the "
                "base of corpus paths: data.data_dir, RNNKIT_DATA or the config's folder)"
            ) from None


def first_weights(
    model: Seq2Seq,
    cfg: Config,
    parent: dict[str, Any] | None,
    src_vocab: Vocab,
    tgt_vocab: Vocab,
    config_dir: Path | None = None,
    say: Callable[[str], None] = lambda _m: None,
) -> None:
    """A new run's weights: those of ``parent`` (the checkpoint ``train.init_from`` names,
    whose vocabularies the run took), else the model's initialisation with the pretrained
    vectors of :func:`load_pretrained`."""
    if parent is None:
        load_pretrained(model, cfg, src_vocab, tgt_vocab, config_dir, say)
        return
    model.load_state_dict(parent["model"])
    say(
        f"initialised from {cfg.train.init_from} (step {parent.get('step', 0)}): weights, "
        "tokenizers, vocabularies; optimizer and schedule start afresh"
    )
    if cfg.model.src_embeddings or cfg.model.tgt_embeddings:
        say(
            "note: model.src_embeddings / tgt_embeddings are not used: the weights are the parent's"
        )


def vector_lines(weight: torch.Tensor, vocab: Vocab) -> list[str]:
    """An embedding matrix as the text format :func:`read_vectors` reads (a header ``N E``,
    then ``token v_1 ... v_E``; the specials and tokens holding whitespace, such as a
    character model's space, are left out): what ``rnnkit info --embeddings`` writes."""
    rows = [
        (tok, vec)
        for tok, vec in zip(vocab.tokens, weight.detach().float().cpu().tolist())
        if tok not in SPECIALS and tok and not any(c.isspace() for c in tok)
    ]
    return [f"{len(rows)} {weight.shape[1]}"] + [
        f"{tok} {' '.join(f'{v:.6g}' for v in vec)}" for tok, vec in rows
    ]
