"""Limits and buckets at their edges: what "at most N" lets through and what it refuses,
where a length on a bucket edge goes, how token-budget batches are cut (greedy, full,
and sorted by source then target length), accuracy against several references, and
inspect's corpus recorder keeping to the decode token budget."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import torch
from test_serve import running
from toy import one_thread, word_bundle

import rnnkit.record as record_module
from rnnkit.data import EOS_ID, PAD_ID, Batch, Example, make_batches
from rnnkit.evaluate import bucket_scores, score
from rnnkit.record import saturation
from rnnkit.serve.batcher import Batcher, QueueFull


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with one_thread():
        yield


# --- evaluate: accuracy and length buckets ---------------------------------------------


def test_accuracy_counts_a_match_with_any_reference():
    """``accuracy`` is the share of hypotheses equal to one of their references (what
    ``exact_match`` is for one): a hypothesis that matches only a second reference, or
    the only reference of a line whose first stream is blank, is a hit."""
    hyps = ["Run!", "It is raining.", "Go!", "Stop."]
    first = ["Run away!", "It's raining.", "", "Halt."]
    second = ["Run!", "It is raining.", "Go!", "Wait."]
    result = score(hyps, first, extra_references=[second])
    assert result["accuracy"] == pytest.approx(3 / 4)  # all but "Stop."
    assert score(hyps, second)["accuracy"] == pytest.approx(3 / 4)
    assert score(hyps, first, extra_references=[first])["accuracy"] == 0.0


@pytest.mark.parametrize("n", [1, 9, 10, 11, 19, 20, 29, 30, 59, 60, 61])
def test_a_source_falls_in_the_bucket_whose_range_holds_its_length(n):
    """Buckets are ``[0, 10), [10, 20), ..., [60, ∞)`` labelled ``0-9, 10-19, ..., 60+``:
    a source of n words lands in the bucket with lo ≤ n ≤ hi, edges included (10 words
    is "10-19", 9 words "0-9")."""
    source = " ".join(["w"] * n)
    (bucket,) = bucket_scores([source], ["a b c d"], ["a b c d"])
    assert bucket["count"] == 1
    assert bucket["lo"] <= n and (bucket["hi"] is None or n <= bucket["hi"]), bucket
    assert bucket["bucket"] == (f"{bucket['lo']}-{bucket['hi']}" if bucket["hi"] else "60+")
    assert bucket["lo"] == 10 * min(n // 10, 6)


# --- serve: request limits, batch size, queue length -------------------------------------


def _post(url: str, body: Any) -> httpx.Response:
    return httpx.post(url + "/translate", json=body, timeout=30)


def test_a_request_at_its_limits_is_served_one_more_is_413():
    """``--max-texts N`` and ``--max-chars C`` are "at most": N texts, and a text of C
    characters, are translated (200); N + 1 texts, or C + 1 characters, are refused (413)."""
    with running(word_bundle(), max_texts=3, max_chars=10) as url:
        full = _post(url, {"texts": ["a b", "c", "d e f"]})
        assert full.status_code == 200, full.text
        assert len(full.json()["translations"]) == 3
        assert _post(url, {"texts": ["a b", "c", "d e f", "g"]}).status_code == 413
        longest = "a b c d ef"  # 10 characters
        assert _post(url, {"text": longest}).status_code == 200
        assert _post(url, {"texts": ["a", longest]}).status_code == 200
        refused = _post(url, {"texts": ["a", longest + "g"]})
        assert refused.status_code == 413 and "text 1" in refused.json()["detail"]


def _answers(batcher: Batcher, requests: list[list[str]]) -> list[list[str]]:
    """Submit ``requests`` back to back, close the batcher (it answers what is queued)
    and return the answers."""

    async def scenario() -> list[list[str]]:
        batcher.start()
        futures = [batcher.submit(texts, "o") for texts in requests]
        await asyncio.to_thread(batcher.close)
        return list(await asyncio.wait_for(asyncio.gather(*futures), 30))

    return asyncio.run(scenario())


def test_requests_that_exactly_fill_max_batch_share_one_model_call():
    """The worker gathers requests while they fit in ``max_batch`` sentences: two requests
    of 2 sentences fill a batch of 4 and go in one call; a request that would make it 5
    starts the next batch. (The wait for more is long: only the size cuts a batch.)"""
    calls: list[list[str]] = []

    def run(texts: list[str], options: Any) -> list[str]:
        calls.append(list(texts))
        return [t.upper() for t in texts]

    exact = Batcher(run, max_batch=4, max_wait=30.0, max_queue=8)
    assert _answers(exact, [["a", "b"], ["c", "d"]]) == [["A", "B"], ["C", "D"]]
    assert calls == [["a", "b", "c", "d"]]
    calls.clear()
    over = Batcher(run, max_batch=4, max_wait=30.0, max_queue=8)
    assert _answers(over, [["a", "b"], ["c", "d", "e"]]) == [["A", "B"], ["C", "D", "E"]]
    assert calls == [["a", "b"], ["c", "d", "e"]]


def test_max_queue_requests_may_wait_the_next_is_refused():
    """``--max-queue N``: with the worker busy, N requests wait for it; the (N+1)-th is
    refused (QueueFull, answered 503 by the app), and those that waited are answered."""
    busy, gate = threading.Event(), threading.Event()

    def run(texts: list[str], options: Any) -> list[str]:
        busy.set()
        gate.wait(30)
        return [t.upper() for t in texts]

    async def scenario() -> tuple[list[Any], bool]:
        b = Batcher(run, max_batch=1, max_wait=0.0, max_queue=2)
        b.start()
        try:
            first = b.submit(["a"], "o")
            assert await asyncio.to_thread(busy.wait, 30)  # the worker holds "a" now
            waiting = [b.submit(["b"], "o"), b.submit(["c"], "o")]  # = max_queue: accepted
            assert b.depth == 2
            try:
                b.submit(["d"], "o")
                refused = False
            except QueueFull:
                refused = True
        finally:
            gate.set()
        answers = await asyncio.wait_for(asyncio.gather(first, *waiting), 30)
        await asyncio.to_thread(b.close)
        return answers, refused

    answers, refused = asyncio.run(scenario())
    assert refused, "the third waiting request was accepted with --max-queue 2"
    assert answers == [["A"], ["B"], ["C"]]


# --- inspect: the corpus recorder's batches ----------------------------------------------


def test_saturation_batches_keep_to_the_decode_token_budget(monkeypatch):
    """``saturation`` (``rnnkit inspect --corpus``) batches sources by count and by at most
    DECODE_TOKENS padded tokens, as translate and score do, so one long line does not pad
    a whole batch to its width; the fractions do not change."""
    b = word_bundle()
    lines = ["a b c d e f g h a b c d e f g h", *["a b"] * 9]
    whole = saturation(b, lines, batch_size=10)
    shapes: list[tuple[int, int]] = []
    real = record_module.make_src_batches

    def spy(*a: Any, **k: Any) -> Any:
        batches = real(*a, **k)
        shapes.extend(tuple(x.src.shape) for x in batches)
        return batches

    monkeypatch.setattr(record_module, "make_src_batches", spy)
    monkeypatch.setattr(record_module, "DECODE_TOKENS", 12)
    capped = saturation(b, lines, batch_size=10)
    assert shapes and all(rows * width <= 12 or rows == 1 for rows, width in shapes), shapes
    assert len(shapes) > 2  # the long line alone, the short ones as the budget allows
    assert set(capped) == set(whole)
    for key, (left, right) in capped.items():
        torch.testing.assert_close(left, whole[key][0])
        torch.testing.assert_close(right, whole[key][1])


# --- batching: token budget, greedy fill, (src, tgt) order -------------------------------


def _ex(i: int, src_len: int, tgt_len: int) -> Example:
    """Example ``i`` with ``src_len`` source ids (EOS last) and ``tgt_len`` target ids."""
    return Example([5] * (src_len - 1) + [EOS_ID], [6] * tgt_len, i)


def _width(ex: Example) -> int:
    """A row's padded width, as the budget counts it: src, or tgt with BOS and EOS."""
    return max(len(ex.src), len(ex.tgt) + 2)


def _check_greedy(batches: list[Batch], examples: list[Example], budget: int) -> None:
    """Unshuffled batches follow each other in order; each is within the budget (or one
    example), and each is full: the next batch's first example would not have fitted."""
    by_index = {ex.index: ex for ex in examples}
    for b, nxt in zip(batches, [*batches[1:], None]):
        rows = [by_index[i] for i in b.indices.tolist()]
        width = max(b.src.shape[1], b.tgt.shape[1])
        assert width == max(map(_width, rows))
        assert len(rows) * width <= budget or len(rows) == 1
        if nxt is not None:
            after = by_index[nxt.indices[0].item()]
            grown = (len(rows) + 1) * max(width, _width(after))
            assert grown > budget, f"{len(rows)} rows of width {width} + one of {_width(after)}"


def test_a_batch_of_exactly_the_budget_stays_whole():
    """``n × width ≤ batch_tokens``: four rows of width 3 make exactly 12 tokens, one
    batch; a fifth would be 15 and starts the next."""
    examples = [_ex(i, 3, 0) for i in range(9)]  # width max(3, 0 + 2) = 3
    batches = make_batches(examples, 12, None, shuffle=False, seed=0, pad_id=PAD_ID)
    assert [len(b) for b in batches] == [4, 4, 1]
    _check_greedy(batches, examples, 12)


def test_after_a_wide_example_the_next_batch_is_as_wide_as_its_own_rows():
    """A wide row (a short source with a long target) closes its batch; the batch after it
    is measured by its own rows, so narrow ones fill it up to the budget instead of each
    going alone as if they were as wide as the row before them."""
    wide = _ex(0, 2, 10)  # width 12: the whole budget
    narrow = [_ex(i, 3, 0) for i in range(1, 9)]  # width 3, sorted after it (longer source)
    examples = [*narrow, wide]
    batches = make_batches(examples, 12, None, shuffle=False, seed=0, pad_id=PAD_ID)
    assert [b.indices.tolist() for b in batches][0] == [0]
    assert [len(b) for b in batches] == [1, 4, 4]
    _check_greedy(batches, examples, 12)


def test_token_batches_are_greedy_and_full_on_mixed_lengths():
    """On many random lengths (targets often wider than sources) every unshuffled batch
    is within the budget and full."""
    g = torch.Generator().manual_seed(0)
    src = torch.randint(1, 20, (300,), generator=g).tolist()
    tgt = torch.randint(0, 25, (300,), generator=g).tolist()
    examples = [_ex(i, s, t) for i, (s, t) in enumerate(zip(src, tgt))]
    for budget in (12, 40, 97, 200):
        batches = make_batches(examples, budget, None, shuffle=False, seed=0, pad_id=PAD_ID)
        assert sorted(i for b in batches for i in b.indices.tolist()) == list(range(300))
        _check_greedy(batches, examples, budget)


@pytest.mark.parametrize("shuffle", [False, True])
def test_equal_sources_are_batched_by_target_length(shuffle):
    """Examples are sorted by (source length, target length): among equally long sources,
    a batch holds neighbouring target lengths, so the target-length ranges of two batches
    do not overlap (they may touch where one length is split), shuffled or not, and
    little goes to target padding. Unshuffled, the batches read in (src, tgt) order."""
    tgt_lengths = [7, 1, 12, 3, 9, 0, 5, 11, 2, 8, 4, 10, 6, 1, 9, 3]
    examples = [_ex(i, 4, t) for i, t in enumerate(tgt_lengths)]
    batches = make_batches(examples, None, 4, shuffle=shuffle, seed=3, pad_id=PAD_ID)
    lengths = [[tgt_lengths[i] for i in b.indices.tolist()] for b in batches]
    ranges = sorted((min(ls), max(ls)) for ls in lengths)
    assert all(hi <= lo for (_, hi), (lo, _) in zip(ranges, ranges[1:])), lengths
    if not shuffle:
        mixed = [_ex(i, 4 + i % 2, t) for i, t in enumerate(tgt_lengths)]
        in_order = make_batches(mixed, None, 4, shuffle=False, seed=0, pad_id=PAD_ID)
        order = [mixed[i] for b in in_order for i in b.indices.tolist()]
        keys = [(len(ex.src), len(ex.tgt)) for ex in order]
        assert keys == sorted(keys)
