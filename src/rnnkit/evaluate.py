"""Scores of detokenised output against references: sacrebleu BLEU and chrF.

All scores are computed by sacrebleu's metric classes on raw (detokenised, cased)
text, in Unicode NFC on both sides, with their default settings (BLEU: ``13a``
tokenisation, exponential smoothing; chrF: character 6-grams, β = 2), so the numbers
and signatures compare with published ones. Post (2018), "A Call for Clarity in
Reporting BLEU Scores".

:func:`bucket_scores` repeats BLEU per source-length bucket, the measurement behind
Bahdanau et al. (2015), Fig. 2: without attention, BLEU falls as sentences grow.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sacrebleu.metrics import BLEU, CHRF

__all__ = ["score", "group_by_source", "bucket_scores", "exact_match", "word_count"]

SCORE_CHUNK = 2_000
"""Lines whose statistics sacreBLEU extracts at once: it keeps the n-grams of every
reference of a call (chrF's: ~20 KB a line, 2 GB for 50,000 lines), so a long test set
is scored chunk by chunk, its statistics summed (the same score and signature)."""


def _check_lengths(hypotheses: Sequence[str], references: Sequence[str]) -> None:
    for name, given in (("hypotheses", hypotheses), ("references", references)):
        if isinstance(given, str | bytes):  # (each character would be scored as a line)
            raise ValueError(f"{name} must be a list of sentences, not one string")
        bad = next((x for x in given if not isinstance(x, str)), None)
        if bad is not None:
            more = (
                "; several references per sentence go in extra_references, a stream each"
                if name == "references" and isinstance(bad, list | tuple)
                else ""
            )
            raise TypeError(f"{name} must be strings, got a {type(bad).__name__}{more}")
    if len(hypotheses) != len(references):
        raise ValueError(
            f"{len(hypotheses)} hypotheses but {len(references)} references; "
            "there must be one hypothesis per reference"
        )


def score(
    hypotheses: Sequence[str],
    references: Sequence[str],
    lowercase: bool = False,
    extra_references: Sequence[Sequence[str]] = (),
) -> dict[str, Any]:
    """Corpus BLEU and chrF of ``hypotheses`` against one reference each, or several.

    Args:
        hypotheses: system outputs, one detokenised sentence per item.
        references: the references, aligned with ``hypotheses``.
        lowercase: compare case-insensitively (recorded in the signatures).
        extra_references: further reference streams, each aligned with ``hypotheses``
            (sacrebleu's multi-reference BLEU and chrF); an empty string is no reference
            of that stream for that line (in ``references`` too, when another stream has
            one), so sentences may have different numbers.

    Returns:
        ``{"bleu": float, "chrf": float, "length_ratio": float, "accuracy": float,
        "bleu_signature": str, "chrf_signature": str, "n": int, "n_refs": int}``; BLEU and
        chrF are on sacrebleu's 0-100 scale, ``length_ratio`` is BLEU's hypothesis /
        reference length in tokens (below 1: the brevity penalty applies), ``accuracy`` the
        fraction (0 to 1) of hypotheses equal to one of their references (as
        :func:`exact_match`), ``n_refs`` the number of reference streams (``nrefs`` of the
        signatures).

    Raises:
        ValueError: the lists differ in length, or are empty.
    """
    _check_lengths(hypotheses, references)
    for stream in extra_references:
        _check_lengths(hypotheses, stream)
    if not hypotheses:
        raise ValueError("no sentences to score")
    hyps = nfc(hypotheses)
    refs = _streams(nfc(references), [nfc(s) for s in extra_references])
    bleu, chrf = BLEU(lowercase=lowercase), CHRF(lowercase=lowercase)
    with _quiet():  # its warning would come per chunk and metric: said once here
        b = corpus_score(bleu, hyps, refs)
        chrf_score = corpus_score(chrf, hyps, refs).score
    tokenized = sum(h.endswith(" .") for h in hyps)
    if tokenized >= 100:  # sacreBLEU's rule, over the whole corpus
        logging.getLogger("sacrebleu").warning(
            f"{tokenized} lines end in a tokenized period (' .'): scores are meant for "
            "detokenised output"
        )
    hits = sum(
        any(_same(h, stream[i], lowercase) for stream in refs if stream[i] is not None)
        for i, h in enumerate(hyps)
    )
    return {
        "bleu": float(b.score),
        "chrf": float(chrf_score),
        "length_ratio": round(b.sys_len / b.ref_len, 4) if b.ref_len else 0.0,
        "accuracy": hits / len(hyps),
        "bleu_signature": str(bleu.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
        "n": len(hyps),
        "n_refs": len(refs),
    }


def group_by_source(
    sources: Sequence[str], references: Sequence[Sequence[str]]
) -> tuple[list[str], list[list[str]], list[int]]:
    """Lines that repeat a source as one segment with all their references.

    Tatoeba-like corpora list one sentence with several translations, one pair a line;
    scored line by line, a hypothesis is marked down against each reference it did not
    choose. Here every distinct source (in order of first appearance) gets every
    distinct reference of its lines, from every stream of ``references``.

    Returns:
        the distinct sources; the reference streams for them (as many as the most
        references of a source, ``""`` where a source has fewer), for :func:`score`; and
        for each input line the index of its source (to write one output per line).
    """
    for stream in references:
        if len(stream) != len(sources):
            raise ValueError(f"{len(sources)} sources but {len(stream)} references")
    index: dict[str, int] = {}
    refs: list[list[str]] = []
    line_of: list[int] = []
    for k, src in enumerate(sources):
        j = index.setdefault(src, len(index))
        if j == len(refs):
            refs.append([])
        for stream in references:
            if stream[k] and stream[k] not in refs[j]:
                refs[j].append(stream[k])
        line_of.append(j)
    width = max((len(r) for r in refs), default=1) or 1
    streams = [[r[i] if i < len(r) else "" for r in refs] for i in range(width)]
    return list(index), streams, line_of


def word_count(sentence: str) -> int:
    """Length of a sentence in whitespace-separated words."""
    return len(sentence.split())


def bucket_scores(
    sources: Sequence[str],
    hypotheses: Sequence[str],
    references: Sequence[str],
    edges: Sequence[int] = (10, 20, 30, 40, 50, 60),
    key: Callable[[str], int] = word_count,
    lowercase: bool = False,
    extra_references: Sequence[Sequence[str]] = (),
) -> list[dict[str, Any]]:
    """Corpus BLEU within each source-length bucket (Bahdanau et al. 2015, Fig. 2).

    The edges cut lengths into ``[0, e_1), [e_1, e_2), ..., [e_k, ∞)``; the default
    gives the buckets ``0-9, 10-19, ..., 50-59, 60+``.

    Args:
        sources: the source sentences, aligned with the other two lists.
        hypotheses: system outputs.
        references: references.
        edges: strictly increasing positive bucket boundaries.
        key: the length of a source sentence (default: words).
        lowercase: compare case-insensitively.
        extra_references: further reference streams, as :func:`score` takes them.

    Returns:
        one dict per non-empty bucket, shortest first: ``{"bucket": "10-19", "lo": 10,
        "hi": 19 (None for the last, open bucket), "count": int, "bleu": float}``.
        The counts add up to ``len(sources)``.

    Raises:
        ValueError: the lists differ in length, or the edges are not increasing.
    """
    _check_lengths(hypotheses, references)
    if len(sources) != len(references):
        raise ValueError(f"{len(sources)} sources but {len(references)} references")
    if any(e <= 0 for e in edges) or any(a >= b for a, b in zip(edges, edges[1:])):
        raise ValueError(f"bucket edges must be positive and increasing, got {list(edges)}")
    lows = [0, *edges]
    members: list[list[int]] = [[] for _ in lows]
    for i, src in enumerate(sources):
        length = key(src)
        members[sum(length >= e for e in edges)].append(i)
    out = []
    hypotheses = nfc(hypotheses)
    streams = _streams(nfc(references), [nfc(s) for s in extra_references])
    for b, idx in enumerate(members):
        if not idx:
            continue
        hi = lows[b + 1] - 1 if b + 1 < len(lows) else None
        label = f"{lows[b]}-{hi}" if hi is not None else f"{lows[b]}+"
        with _quiet():  # score() says it once for the corpus
            bleu = corpus_score(
                BLEU(lowercase=lowercase),
                [hypotheses[i] for i in idx],
                [[r[i] for i in idx] for r in streams],
            )
        out.append(
            {"bucket": label, "lo": lows[b], "hi": hi, "count": len(idx), "bleu": float(bleu.score)}
        )
    return out


def corpus_score(metric: Any, hypotheses: list[str], streams: list[list[Any]]) -> Any:
    """``metric.corpus_score(hypotheses, streams)`` with at most :data:`SCORE_CHUNK`
    lines' reference n-grams in memory: sacreBLEU's sentence statistics (counts) are
    extracted chunk by chunk and summed, as its own ``significance`` module does with
    the same two methods; ``nrefs`` of the signature is that of the whole corpus."""
    metric._check_corpus_score_args(hypotheses, streams)
    sums: list[list[Any]] = []
    counts = set()
    for a in range(0, len(hypotheses), SCORE_CHUNK):
        part = [s[a : a + SCORE_CHUNK] for s in streams]
        stats = metric._extract_corpus_statistics(hypotheses[a : a + SCORE_CHUNK], part)
        sums.append([sum(column) for column in zip(*stats)])
        counts.add(metric.num_refs)  # set per call: -1 where a line has fewer references
    metric.num_refs = counts.pop() if len(counts) == 1 else -1
    return metric._aggregate_and_compute(sums)


@contextmanager
def _quiet() -> Iterator[None]:
    """sacreBLEU's warnings held back (its tokenized-period check counts per call)."""
    log = logging.getLogger("sacrebleu")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _streams(
    references: Sequence[str], extra_references: Sequence[Sequence[str]]
) -> list[list[Any]]:
    """The reference streams as sacrebleu takes them: each line's non-empty references
    first, ``None`` for the ones it lacks (sacrebleu 2 drops ``None`` only; ``""`` would
    be a real empty reference, the closest in length to a short hypothesis, so BLEU's
    brevity penalty would vanish), and ``""`` only for a line with no reference at all."""
    streams = [list(references), *map(list, extra_references)]
    lines = [[s[i] for s in streams if s[i]] or [""] for i in range(len(references))]
    return [[line[k] if k < len(line) else None for line in lines] for k in range(len(streams))]


def exact_match(
    hypotheses: Sequence[str], references: Sequence[str], lowercase: bool = False
) -> float:
    """Fraction (0 to 1) of hypotheses equal to their reference.

    Surrounding whitespace is ignored; everything else, case included (unless
    ``lowercase``), must match: the accuracy of the dates and symbol tasks.

    Raises:
        ValueError: the lists differ in length, or are empty.
    """
    _check_lengths(hypotheses, references)
    if not hypotheses:
        raise ValueError("no sentences to compare")
    hits = sum(_same(h, r, lowercase) for h, r in zip(nfc(hypotheses), nfc(references)))
    return hits / len(hypotheses)


def nfc(lines: Sequence[str]) -> list[str]:
    """``lines`` in Unicode NFC, the form scores compare: the word and char tokenizers
    write NFC, so a reference file in NFD (``e`` + a combining accent for ``é``) scored a
    right translation as wrong."""
    return [
        s if unicodedata.is_normalized("NFC", s) else unicodedata.normalize("NFC", s) for s in lines
    ]


def _same(hypothesis: str, reference: str, lowercase: bool) -> bool:
    """Equal but for surrounding whitespace (and case, with ``lowercase``)."""
    h, r = hypothesis.strip(), reference.strip()
    return h.lower() == r.lower() if lowercase else h == r
