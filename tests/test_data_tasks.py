"""Built-in synthetic tasks: dates, copy / reverse / sort, the adding problem."""

from __future__ import annotations

import datetime
import random
import re

import pytest
import torch

from rnnkit.data import (
    DATE_FORMATS,
    TASKS,
    DataError,
    adding_batch,
    make_task,
    render_date,
    sample_date,
    task_splits,
)

WEEKDAYS = "monday tuesday wednesday thursday friday saturday sunday".split()
MONTHS = "jan feb mar apr may jun jul aug sep oct nov dec".split()
WORD = re.compile(r"[a-z]+")


def weekdays_in(source: str) -> set[int]:
    """Weekday numbers named in a source, full or 3-letter abbreviated."""
    return {
        i for w in WORD.findall(source.lower()) for i, d in enumerate(WEEKDAYS) if w in (d, d[:3])
    }


def months_in(source: str) -> set[int]:
    return {
        i + 1
        for w in WORD.findall(source.lower())
        for i, m in enumerate(MONTHS)
        if w == m or (len(w) > 3 and w.startswith(m))
    }


@pytest.mark.parametrize("long", [False, True])
def test_dates_targets_and_weekdays(long: bool) -> None:
    pairs = make_task("dates", 2000, seed=0, long=long)
    n_weekday = 0
    for source, target in pairs:
        date = datetime.date.fromisoformat(target)
        assert datetime.date(1950, 1, 1) <= date <= datetime.date(2049, 12, 31)
        named = weekdays_in(source)
        if named:
            n_weekday += 1
            assert named == {date.weekday()}, (source, target)
        # A month written as a word is the right month; filler names no month.
        assert months_in(source) <= {date.month}, (source, target)
        assert str(date.year) in source or f"{date.year % 100:02d}" in source
    assert n_weekday > 100
    if long:
        assert sum(len(s) for s, _ in pairs) / len(pairs) > 60


def test_dates_formats_are_varied() -> None:
    rng = random.Random(0)
    samples = [sample_date(rng) for _ in range(2000)]
    assert len({fmt for _, _, fmt in samples}) >= 15
    # independent of the format labels: distinct shapes of the source strings
    shapes = {re.sub(r"\d+", "9", re.sub(r"[a-zA-Z]+", "a", s)) for s, _, _ in samples}
    assert len(shapes) >= 12
    assert len(DATE_FORMATS) >= 20
    # capitalisation varies: lower, title and upper case all occur
    assert any(s.islower() for s, _, _ in samples)
    assert any(s.isupper() for s, _, _ in samples)
    assert any(not s.islower() and not s.isupper() for s, _, _ in samples)


def test_dates_examples_and_two_digit_years() -> None:
    d = datetime.date(2018, 5, 9)
    assert render_date(d, "W_d_M_y") == "wednesday 9 may 2018"
    assert render_date(d, "us_short") == "5/9/18"
    assert render_date(d, "o_of_M_comma_y", case="title") == "9th of May, 2018"
    assert render_date(d, "Wa_comma_d_Ma_y", case="title") == "Wed, 9 May 2018"
    assert render_date(datetime.date(1951, 1, 22), "us_short") == "1/22/51"
    assert render_date(datetime.date(2049, 12, 31), "the_o_of_M_y") == "the 31st of december 2049"
    # Every source has one reading: no two dates share a rendering in any format.
    rng = random.Random(3)
    for fmt in DATE_FORMATS:
        seen: dict[str, datetime.date] = {}
        for _ in range(300):
            day = datetime.date(1950, 1, 1) + datetime.timedelta(days=rng.randint(0, 36524))
            text = render_date(day, fmt)
            assert seen.setdefault(text, day) == day, (fmt, text)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_tasks_are_deterministic_by_seed(name: str) -> None:
    assert make_task(name, 200, seed=5) == make_task(name, 200, seed=5)
    assert make_task(name, 200, seed=5) != make_task(name, 200, seed=6)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_task_splits_hold_out_sources(name: str) -> None:
    splits = task_splits(name, n_train=2000, n_dev=200, n_test=200, seed=0)
    assert [len(splits[k]) for k in ("train", "dev", "test")] == [2000, 200, 200]
    train = {s for s, _ in splits["train"]}
    dev = {s for s, _ in splits["dev"]}
    test = {s for s, _ in splits["test"]}
    assert not train & dev and not train & test and not dev & test
    assert splits == task_splits(name, n_train=2000, n_dev=200, n_test=200, seed=0)


def test_task_splits_too_small_space() -> None:
    with pytest.raises(DataError, match="source space too small"):
        task_splits("copy", 10, 10, 10, seed=0, vocab="ab", min_len=1, max_len=2)


def test_symbol_tasks_targets() -> None:
    vocab = "abcdefghijklmnopqrst"
    for name, fn in (("copy", list), ("reverse", lambda s: s[::-1]), ("sort", sorted)):
        pairs = make_task(name, 300, seed=1)
        lengths = set()
        for source, target in pairs:
            toks = source.split(" ")
            lengths.add(len(toks))
            assert all(t in vocab for t in toks)
            assert target.split(" ") == fn(toks)
        assert min(lengths) == 3 and max(lengths) == 12
    # sorted by vocabulary order, not string order
    digits = [str(i) for i in range(12)]
    for source, target in make_task("sort", 50, seed=2, vocab=digits, min_len=5, max_len=5):
        assert target.split() == sorted(source.split(), key=int)
    with pytest.raises(DataError, match="unknown task"):
        make_task("translate", 1, seed=0)


def test_adding_problem() -> None:
    g = torch.Generator().manual_seed(0)
    B, T = 64, 50
    x, y = adding_batch(B, T, generator=g)
    assert x.shape == (B, T, 2) and y.shape == (B,)
    values, markers = x[..., 0], x[..., 1]
    assert ((values >= 0) & (values < 1)).all()
    assert set(markers.unique().tolist()) == {0.0, 1.0}
    assert (markers[:, : T // 2].sum(1) == 1).all() and (markers[:, T // 2 :].sum(1) == 1).all()
    for b in range(B):
        marked = values[b][markers[b] == 1]
        assert torch.allclose(y[b], marked.sum())
    x2, y2 = adding_batch(B, T, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, x2) and torch.equal(y, y2)
    x3, _ = adding_batch(1000, 2)  # T = 2: the markers are both positions
    assert (x3[..., 1] == 1).all()
