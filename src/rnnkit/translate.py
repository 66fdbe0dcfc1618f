"""Text in, text out: raw UTF-8 lines → tokenizer → ids → search → detokenised lines.

One output per input line, in input order; an empty (or blank) input line gives an
empty output line. Lines are sorted by length internally so that batches waste little
padding.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from rnnkit.checkpoint import Bundle
from rnnkit.config import DecodeConfig
from rnnkit.data import make_src_batches
from rnnkit.data.batching import DECODE_TOKENS
from rnnkit.data.vocab import BOS_ID, EOS_ID, PAD_ID, UNK
from rnnkit.sampling import Sampling, sample_search
from rnnkit.search import Decoding, beam_search, greedy_search, max_lengths

__all__ = ["Translation", "translate_lines", "translate_chunks", "translate_stream", "as_json"]

CHUNK = 10_000  # lines per chunk of translate_chunks


@dataclass
class Translation:
    """One hypothesis of one input line."""

    text: str
    score: float
    src_tokens: list[str]  # what the encoder read (EOS included)
    out_tokens: list[str]  # what the decoder wrote (EOS included when it ended with EOS)
    attention: Tensor | None  # (len(out_tokens), len(src_tokens))
    src_unknown: list[int] = field(default_factory=list)  # src_tokens read as <unk>


def decode_limits(dec: DecodeConfig, a: float | None, b: int | None) -> DecodeConfig:
    """``dec`` with the output limit ``a·|x| + b`` given (a ValueError if it is none)."""
    if a is None and b is None:
        return dec
    a = dec.max_len_a if a is None else a
    b = dec.max_len_b if b is None else b
    if isinstance(a, bool) or not isinstance(a, int | float) or not 0 <= a < math.inf:
        raise ValueError(f"max_len_a must be a finite number ≥ 0, got {a!r}")
    if isinstance(b, bool) or not isinstance(b, int) or b < 0:
        raise ValueError(f"max_len_b must be an int ≥ 0, got {b!r}")
    if a == 0 and b == 0:
        raise ValueError("max_len_a and max_len_b: the output limit a·|x| + b is 0")
    return dataclasses.replace(dec, max_len_a=float(a), max_len_b=b)


def beam_too_wide(bundle: Bundle, beam: int | None) -> str | None:
    """Why a beam of ``beam`` (None: the checkpoint's ``decode.beam_size``) cannot search
    ``bundle``'s target vocabulary, as a command line says it; None when it can."""
    k, n = bundle.config.decode.beam_size if beam is None else beam, len(bundle.tgt_vocab)
    if k <= n:
        return None
    if beam is None:
        return (
            f"the checkpoint's decode.beam_size {k} exceeds its target vocabulary ({n} tokens): "
            f"give --beam K (at most {n})"
        )
    return f"--beam {k} exceeds the target vocabulary ({n} tokens)"


def translate_lines(
    bundle: Bundle,
    lines: Sequence[str],
    beam_size: int | None = None,
    batch_size: int | None = None,
    n_best: int = 1,
    length_penalty: float | None = None,
    progress: Callable[[int], None] | None = None,
    exact: bool | None = None,
    model: Decoding | None = None,
    sampling: Sampling | None = None,
    coverage_penalty: float | None = None,
    replace_unk: bool = False,
    generator: torch.Generator | None = None,
    max_len_a: float | None = None,
    max_len_b: int | None = None,
) -> list[list[Translation]]:
    """Translate ``lines``; for each line its ``n_best`` translations, best first.

    Args:
        beam_size: 1 = greedy; default from the checkpoint's ``decode`` section.
        batch_size: sentences per batch; default from ``decode.batch_size``.
        progress: called with the number of sentences finished after each batch.
        exact: beam search's stopping rule (see :func:`rnnkit.search.beam_search`);
            default from ``decode.exact``.
        model: what decodes instead of ``bundle.model``, e.g. an
            :class:`rnnkit.ensemble.Ensemble` whose members share the bundle's
            tokenizers and vocabularies (:func:`rnnkit.ensemble.load_ensemble`).
        coverage_penalty: β of beam search's coverage penalty; default from
            ``decode.coverage_penalty``.
        sampling: draw ``n_best`` samples per line (:mod:`rnnkit.sampling`) instead of
            searching; ``beam_size`` is then not used.
        generator: the random stream of ``sampling`` (default: a new one from its seed).
        replace_unk: in each text, an output ``<unk>`` becomes the source token it
            attends to most (Luong et al. 2015; OpenNMT's ``-replace_unk``): names and
            numbers a word-level model cannot spell are copied. ``out_tokens`` keep the
            ``<unk>``. Needs a model with attention.
        max_len_a, max_len_b: an output has at most ``a·|x| + b`` tokens (its EOS
            apart); default from ``decode.max_len_a`` / ``max_len_b``.
    """
    dec = decode_limits(bundle.config.decode, max_len_a, max_len_b)
    _check_options(lines, beam_size, batch_size, n_best, length_penalty, coverage_penalty)
    K = dec.beam_size if beam_size is None else beam_size
    if K > len(bundle.tgt_vocab) and sampling is None:
        raise ValueError(f"beam_size {K} exceeds the target vocabulary ({len(bundle.tgt_vocab)})")
    alpha = dec.length_penalty if length_penalty is None else length_penalty
    if n_best > K and sampling is None:
        raise ValueError(f"n_best {n_best} exceeds the beam size {K}")
    model = bundle.model if model is None else model
    if replace_unk and bundle.config.model.attention == "none":
        raise ValueError("replace_unk copies the source token attended to: needs attention")
    device = next(model.parameters()).device
    lower = bundle.config.data.lowercase
    src_tokens = [
        bundle.src_tokenizer.encode(line.lower() if lower else line) if line.strip() else []
        for line in lines
    ]
    ids = [bundle.src_vocab.encode(t, add_eos=True) for t in src_tokens]
    todo = [i for i, t in enumerate(src_tokens) if t]
    results: list[list[Translation]] = [[Translation("", 0.0, [], [], None)] for _ in lines]
    batches = make_src_batches(
        [ids[i] for i in todo],
        batch_size or dec.batch_size,
        bundle.src_vocab.pad_id,
        DECODE_TOKENS,
    )
    eos = bundle.tgt_vocab.eos_id
    # one stream for all batches: a seed gives one output
    if generator is None and sampling is not None:
        generator = sampling.generator(device)
    for batch in batches:
        src, lengths = batch.src.to(device), batch.src_lengths
        with torch.no_grad():
            if sampling is not None:
                hyps = sample_search(
                    model, src, lengths, n_best, sampling, dec.max_len_a, dec.max_len_b, generator
                )
            elif K <= 1:
                hyps = [
                    [h] for h in greedy_search(model, src, lengths, dec.max_len_a, dec.max_len_b)
                ]
            else:
                hyps = beam_search(
                    model,
                    src,
                    lengths,
                    K,
                    alpha,
                    dec.max_len_a,
                    dec.max_len_b,
                    n_best,
                    dec.exact if exact is None else exact,
                    dec.coverage_penalty if coverage_penalty is None else coverage_penalty,
                )
        limits = max_lengths(lengths, dec.max_len_a, dec.max_len_b)
        for row, nbest, limit in zip(batch.indices.tolist(), hyps, limits):
            i = todo[row]
            src_toks = src_tokens[i] + ["</s>"]
            unknown = [j for j, t in enumerate(ids[i]) if t == bundle.src_vocab.unk_id]
            out = []
            for h in nbest:
                pieces = bundle.tgt_vocab.decode(h.tokens)
                toks = [bundle.tgt_vocab.token(t) for t in h.tokens]
                if replace_unk and h.attention is not None and UNK in pieces:
                    pieces = _copy_unk(list(h.tokens), pieces, src_tokens[i], h.attention)
                if len(toks) < limit:  # it ended with EOS (else it was cut at the limit)
                    toks.append(bundle.tgt_vocab.token(eos))
                out.append(
                    Translation(
                        bundle.tgt_tokenizer.decode(pieces),
                        h.score,
                        src_toks,
                        toks,
                        None if h.attention is None else h.attention.cpu(),
                        unknown,
                    )
                )
            results[i] = out
        if progress is not None:
            progress(len(batch.indices))
    return results


def translate_chunks(
    bundle: Bundle, lines: Sequence[str], chunk: int = CHUNK, **kwargs: Any
) -> Iterator[list[list[Translation]]]:
    """:func:`translate_lines` (``kwargs`` are its arguments) over consecutive chunks of
    ``chunk`` lines, yielded in order: each chunk's results (attention matrices included)
    can be written and dropped before the next is translated, so the memory of a file of
    millions of lines stays that of one chunk. Lengths are sorted within a chunk. Sampling
    draws from one random stream across the chunks."""
    parts = (lines[i : i + chunk] for i in range(0, len(lines), chunk))
    return translate_stream(bundle, parts, **kwargs)


def translate_stream(
    bundle: Bundle, chunks: Iterable[Sequence[str]], **kwargs: Any
) -> Iterator[list[list[Translation]]]:
    """:func:`translate_chunks` over chunks given one by one (as they are read: a pipe's
    first chunk is translated before its end)."""
    sampling: Sampling | None = kwargs.get("sampling")
    if sampling is not None and kwargs.get("generator") is None:
        model = kwargs.get("model") or bundle.model
        kwargs["generator"] = sampling.generator(next(model.parameters()).device)
    for part in chunks:
        yield translate_lines(bundle, part, **kwargs)


def _check_options(
    lines: Sequence[str],
    beam_size: int | None,
    batch_size: int | None,
    n_best: int,
    length_penalty: float | None,
    coverage_penalty: float | None,
) -> None:
    """ValueError (TypeError for a wrong type) naming the argument that
    :func:`translate_lines` cannot take; the checkpoint's ``decode`` section holds the
    same limits."""
    if isinstance(lines, str | bytes) or not isinstance(lines, Sequence):
        raise TypeError(f"lines must be a list of strings, got {type(lines).__name__}")
    bad = next((x for x in lines if not isinstance(x, str)), "")
    if not isinstance(bad, str):
        raise TypeError(f"lines must be strings, got a {type(bad).__name__}")
    for name, n in (("beam_size", beam_size), ("batch_size", batch_size), ("n_best", n_best)):
        if n is None and name != "n_best":
            continue
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"{name} must be an integer, got {n!r}")
        if n < 1:
            raise ValueError(f"{name} must be ≥ 1, got {n}")
    for name, x in (("length_penalty", length_penalty), ("coverage_penalty", coverage_penalty)):
        if x is None:
            continue
        if isinstance(x, bool) or not isinstance(x, int | float):
            raise TypeError(f"{name} must be a number, got {x!r}")
        if not 0 <= x < math.inf:
            raise ValueError(f"{name} must be a finite number ≥ 0, got {x}")


def _copy_unk(ids: list[int], pieces: list[str], source: list[str], attention: Tensor) -> list[str]:
    """``pieces`` (``Vocab.decode(ids)``) with each ``<unk>`` replaced by the source token
    (EOS aside) that its row of ``attention`` weighs most."""
    rows = []  # the output step of each piece: decode skips PAD and BOS, stops at EOS
    for k, i in enumerate(ids):
        if i == EOS_ID:
            break
        if i not in (PAD_ID, BOS_ID):
            rows.append(k)
    return [
        source[int(attention[k, : len(source)].argmax())] if p == UNK else p
        for k, p in zip(rows, pieces)
    ]


def _rows(t: Tensor | None) -> list[list[float]] | None:
    return None if t is None else [[round(float(v), 5) for v in row] for row in t.tolist()]


def as_json(
    nbest: list[Translation], attention: bool = True, alternatives: bool = False
) -> dict[str, Any]:
    """One line's translations as the server's ``/translate`` entries and ``rnnkit
    translate --json`` write them: the best one's ``text``, ``score``, ``source_tokens``,
    ``source_unknown`` (the indices of those the source vocabulary lacks: read as <unk>),
    ``target_tokens``, ``attention`` (rows = target tokens; None without attention, [] for
    an empty line; left out unless ``attention``), and ``alternatives`` (``text``,
    ``score``, ``target_tokens`` of each, best first; when asked for)."""
    best = nbest[0]
    out: dict[str, Any] = {
        "text": best.text,
        "score": best.score,
        "source_tokens": best.src_tokens,
        "source_unknown": best.src_unknown,
        "target_tokens": best.out_tokens,
    }
    if attention:
        out["attention"] = _rows(best.attention) if best.src_tokens else []
    if alternatives:
        out["alternatives"] = [
            {"text": h.text, "score": h.score, "target_tokens": h.out_tokens} for h in nbest
        ]
    return out
