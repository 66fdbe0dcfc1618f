"""Built-in synthetic tasks: generated here, deterministic for a seed, no download.

Text tasks return ``(source, target)`` string pairs:

- ``dates``: a date written by a human in one of 21 formats → ISO ``YYYY-MM-DD``
  (the classic attention demo; see :data:`DATE_FORMATS`). Conventions, so that every
  source has exactly one reading:

  * years run from 1950 to 2049; a two-digit year ``yy`` means 19yy for yy ≥ 50 and
    20yy for yy < 50;
  * slashes with the year last are US month/day (``5/9/18`` is 2018-05-09);
    dots are European day.month (``9.5.2018`` is 2018-05-09); a four-digit year
    first is year/month/day;
  * a written weekday is always the true weekday of the date.

  ``long=True`` wraps the date in filler clauses ("the meeting was moved to saturday
  9 may 2018 in the afternoon"), for the experiment on attention and input length.
- ``copy``, ``reverse``, ``sort``: space-separated symbol sequences; the target is
  the same, reversed, or sorted (in vocabulary order) sequence.

The adding problem (Hochreiter & Schmidhuber 1997) is numeric; :func:`adding_batch`
makes batches of it directly as tensors.
"""

from __future__ import annotations

import datetime
import inspect
import random
from collections.abc import Callable, Sequence
from typing import Any

import torch

from .errors import DataError

Pair = tuple[str, str]

MONTHS = (
    "january february march april may june july august september october november december"
).split()
MONTHS_ABBR = [m[:3] for m in MONTHS]
WEEKDAYS = "monday tuesday wednesday thursday friday saturday sunday".split()
WEEKDAYS_ABBR = [w[:3] for w in WEEKDAYS]

# Fields: d dd (day), o (ordinal day), m mm (month), M Ma (month name, abbreviated),
# y (4-digit year), yy (2-digit year), W Wa (weekday name, abbreviated).
DATE_FORMATS: dict[str, str] = {
    "us_short": "{m}/{d}/{yy}",
    "us_padded": "{mm}/{dd}/{y}",
    "eu_dotted": "{dd}.{mm}.{y}",
    "eu_dotted_short": "{d}.{m}.{y}",
    "ymd_slash": "{y}/{mm}/{dd}",
    "iso": "{y}-{mm}-{dd}",
    "compact": "{y}{mm}{dd}",
    "d_M_y": "{d} {M} {y}",
    "d_Ma_yy": "{d} {Ma} {yy}",
    "W_d_M_y": "{W} {d} {M} {y}",
    "o_of_M_comma_y": "{o} of {M}, {y}",
    "M_d_comma_y": "{M} {d}, {y}",
    "Wa_comma_d_Ma_y": "{Wa}, {d} {Ma} {y}",
    "M_o_y": "{M} {o} {y}",
    "the_o_of_M_y": "the {o} of {M} {y}",
    "W_comma_M_d_comma_y": "{W}, {M} {d}, {y}",
    "dd_Ma_y_dashed": "{dd}-{Ma}-{y}",
    "Ma_d_comma_y": "{Ma} {d}, {y}",
    "W_the_o_of_M_y": "{W} the {o} of {M} {y}",
    "M_d_apostrophe_yy": "{M} {d} '{yy}",
    "y_M_d": "{y} {M} {d}",
}
FIRST_DATE = datetime.date(1950, 1, 1)
LAST_DATE = datetime.date(2049, 12, 31)

# Filler for long=True. No digits, month or weekday names or their abbreviations
# (not even "may", "sat", "sun" or "wed"), so the date stays the only date-like span.
_LEAD_INS = (
    "the meeting was moved to",
    "please note that the invoice dated",
    "according to the records she was born on",
    "the package is expected to arrive on",
    "the contract between the two companies was signed on",
    "we will celebrate the anniversary of the shop on",
    "the deadline for the final report is",
    "his flight leaves early in the morning on",
    "the museum reopens to the public on",
    "the letter that reached our office was dated",
    "the concert in the old town hall takes place on",
    "our records show that the payment arrived on",
)
_OPENERS = (
    "after several weeks of long discussions ,",
    "as the manager explained in her short email ,",
    "to the surprise of almost everyone in the team ,",
    "just to make sure that nobody forgets ,",
    "because the first plan did not work out ,",
    "as we mentioned during the last phone call ,",
    "unless someone objects before the end of the week ,",
    "for the benefit of the new colleagues ,",
)
_CLOSERS = (
    "in the afternoon",
    "at the latest",
    "according to the new schedule",
    "if nothing else changes",
    "as far as we know",
    "after a long delay",
    "so please plan ahead",
    "and everyone is invited to join",
    "unless the weather gets much worse",
    "as confirmed by the secretary",
)


def _ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, ..., 11th, 12th, 13th, ..., 21st, 22nd, 23rd, ..., 31st."""
    suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def render_date(date: datetime.date, fmt: str, case: str = "lower") -> str:
    """Write ``date`` in the named format of :data:`DATE_FORMATS`.

    Args:
        date: between :data:`FIRST_DATE` and :data:`LAST_DATE`.
        fmt: a key of :data:`DATE_FORMATS`.
        case: ``"lower"`` (may 9th), ``"title"`` (May 9th) or ``"upper"`` (MAY 9TH).
    """
    if not FIRST_DATE <= date <= LAST_DATE:
        raise DataError(f"dates: {date} is outside {FIRST_DATE}..{LAST_DATE}")
    name = str.capitalize if case == "title" else str.lower
    text = DATE_FORMATS[fmt].format(
        d=date.day,
        dd=f"{date.day:02d}",
        o=_ordinal(date.day),
        m=date.month,
        mm=f"{date.month:02d}",
        M=name(MONTHS[date.month - 1]),
        Ma=name(MONTHS_ABBR[date.month - 1]),
        y=date.year,
        yy=f"{date.year % 100:02d}",
        W=name(WEEKDAYS[date.weekday()]),
        Wa=name(WEEKDAYS_ABBR[date.weekday()]),
    )
    return text.upper() if case == "upper" else text


def sample_date(
    rng: random.Random, long: bool = False, max_filler: int = 2
) -> tuple[str, str, str]:
    """One ``dates`` example.

    Args:
        rng: the random source.
        long: wrap the date in a filler sentence.
        max_filler: with ``long``, up to this many extra clauses before and after.

    Returns:
        ``(source, ISO target, format name)``.
    """
    span = (LAST_DATE - FIRST_DATE).days
    date = FIRST_DATE + datetime.timedelta(days=rng.randint(0, span))
    fmt = rng.choice(list(DATE_FORMATS))
    case = rng.choices(("lower", "title", "upper"), weights=(5, 4, 1))[0]
    source = render_date(date, fmt, case)
    if long:
        parts = rng.sample(_OPENERS, rng.randint(0, max_filler))
        parts += [rng.choice(_LEAD_INS), source]
        parts += rng.sample(_CLOSERS, rng.randint(1, max_filler + 1))
        source = " ".join(parts)
    return source, date.isoformat(), fmt


def _dates(rng: random.Random, long: bool = False, max_filler: int = 2) -> Pair:
    source, target, _ = sample_date(rng, long=long, max_filler=max_filler)
    return source, target


def _symbols(
    rng: random.Random, vocab: str | Sequence[str], min_len: int, max_len: int
) -> list[str]:
    """A random symbol sequence; ``vocab`` is a string of 1-char symbols or a list."""
    if not 1 <= min_len <= max_len:
        raise DataError(f"symbol task: need 1 <= min_len <= max_len, got {min_len}, {max_len}")
    symbols = list(vocab)
    if not symbols:
        raise DataError("symbol task: empty vocabulary")
    return [rng.choice(symbols) for _ in range(rng.randint(min_len, max_len))]


_LETTERS = "abcdefghijklmnopqrst"


def _copy(
    rng: random.Random, vocab: str | Sequence[str] = _LETTERS, min_len: int = 3, max_len: int = 12
) -> Pair:
    seq = _symbols(rng, vocab, min_len, max_len)
    return " ".join(seq), " ".join(seq)


def _reverse(
    rng: random.Random, vocab: str | Sequence[str] = _LETTERS, min_len: int = 3, max_len: int = 12
) -> Pair:
    seq = _symbols(rng, vocab, min_len, max_len)
    return " ".join(seq), " ".join(reversed(seq))


def _sort(
    rng: random.Random, vocab: str | Sequence[str] = _LETTERS, min_len: int = 3, max_len: int = 12
) -> Pair:
    seq = _symbols(rng, vocab, min_len, max_len)
    rank = {s: i for i, s in enumerate(vocab)}
    return " ".join(seq), " ".join(sorted(seq, key=rank.__getitem__))


TASKS: dict[str, Callable[..., Pair]] = {
    "dates": _dates,
    "copy": _copy,
    "reverse": _reverse,
    "sort": _sort,
}


def make_task(name: str, n: int, seed: int, **kw: Any) -> list[Pair]:
    """``n`` examples of a built-in task, identical for the same seed.

    Args:
        name: a key of :data:`TASKS` (``dates``, ``copy``, ``reverse``, ``sort``).
        n: number of pairs.
        seed: seed of a private ``random.Random``.
        **kw: task options: ``long``, ``max_filler`` (dates); ``vocab``, ``min_len``,
            ``max_len`` (symbol tasks).

    Raises:
        DataError: unknown task or bad options.
    """
    sample = _task(name)
    check_task_options(name, kw)
    rng = random.Random(seed)
    return [sample(rng, **kw) for _ in range(n)]


def task_splits(
    name: str, n_train: int, n_dev: int, n_test: int, seed: int, **kw: Any
) -> dict[str, list[Pair]]:
    """Train / dev / test sets of a task whose held-out sources never occur in train.

    Test sources are drawn first, then dev sources (distinct from test and from each
    other), then training pairs, skipping any draw whose source is held out.

    Returns:
        ``{"train": [...], "dev": [...], "test": [...]}``.

    Raises:
        DataError: the task's source space is too small for the requested sizes.
    """
    sample = _task(name)
    check_task_options(name, kw)
    rng = random.Random(seed)
    budget = 20 * (n_train + n_dev + n_test) + 1000
    held: set[str] = set()
    out: dict[str, list[Pair]] = {"test": [], "dev": [], "train": []}
    for split, size in (("test", n_test), ("dev", n_dev), ("train", n_train)):
        while len(out[split]) < size:
            if budget == 0:
                raise DataError(
                    f"task {name!r}: could not draw {size} {split} pairs with held-out sources "
                    f"disjoint from train (source space too small?)"
                )
            budget -= 1
            src, tgt = sample(rng, **kw)
            if src in held:
                continue
            if split != "train":
                held.add(src)
            out[split].append((src, tgt))
    return {"train": out["train"], "dev": out["dev"], "test": out["test"]}


def _task(name: str) -> Callable[..., Pair]:
    if name not in TASKS:
        raise DataError(f"unknown task {name!r} (known: {', '.join(TASKS)})")
    return TASKS[name]


def check_task_options(name: str, options: dict[str, Any]) -> None:
    """Raise :class:`DataError` for an option task ``name`` does not take, or a value of
    another kind than its default (``vocab``: a string of symbols or a list of them)."""
    params = dict(inspect.signature(_task(name)).parameters)
    params.pop("rng")
    for key, value in options.items():
        where = f"data.task_options.{key}"
        if key not in params:
            raise DataError(f"{where}: task {name} takes {', '.join(params)}; not {key!r}")
        default = params[key].default
        if key == "vocab":
            ok = isinstance(value, str) or (
                isinstance(value, list) and all(isinstance(v, str) for v in value)
            )
            kind = "a string of symbols or a list of strings"
        elif isinstance(default, bool):
            ok, kind = isinstance(value, bool), "true or false"
        else:
            ok, kind = isinstance(value, int) and not isinstance(value, bool), "an integer"
        if not ok:
            raise DataError(f"{where} must be {kind}, got {value!r}")


def adding_batch(
    B: int, T: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of the adding problem (Hochreiter & Schmidhuber 1997; protocol of Le et al. 2015).

    Each sequence has two channels: a value drawn from U(0, 1) and a marker that is 1
    at exactly two positions, one in the first half ``[0, T//2)`` and one in the
    second half ``[T//2, T)``. The target is the sum of the two marked values; always
    predicting 1 gives the baseline mean squared error of about 0.167.

    Args:
        B: batch size.
        T: sequence length, at least 2.
        generator: optional torch generator, for reproducible batches.

    Returns:
        ``x`` (B, T, 2) float32 with ``x[..., 0]`` values and ``x[..., 1]`` markers,
        ``y`` (B,) float32.
    """
    if T < 2:
        raise DataError(f"adding problem: T must be at least 2, got {T}")
    values = torch.rand(B, T, generator=generator)  # (B, T)
    first = torch.randint(0, T // 2, (B,), generator=generator)
    second = torch.randint(T // 2, T, (B,), generator=generator)
    markers = torch.zeros(B, T)
    rows = torch.arange(B)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    x = torch.stack([values, markers], dim=-1)  # (B, T, 2)
    y = (values * markers).sum(dim=1)  # (B,)
    return x, y
