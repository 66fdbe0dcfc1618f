"""Reading corpora: strict UTF-8 lines, parallel files, TSV pairs, length filtering.

Parallel data follows the Joey NMT / fairseq convention: a prefix and two language
suffixes, ``read_parallel("data/train", "de", "en")`` reads ``data/train.de`` and
``data/train.en``, line *i* of one translating line *i* of the other.

Lines are split on ``\\n`` only (a ``\\r\\n`` ending is accepted); ``str.splitlines``
would also split on U+2028, U+0085 and friends inside a sentence and silently
misalign the two sides.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from rnnkit.atomic import write_atomically

from .errors import DataError

Pair = tuple[str, str]


def read_lines(path: str | Path) -> list[str]:
    """All lines of a UTF-8 text file, without their line endings.

    Args:
        path: the file.

    Returns:
        one string per line; a final newline does not add an empty line, a leading
        byte-order mark is dropped.

    Raises:
        DataError: missing file, a directory, an empty file, or invalid UTF-8
            (the message names the line: ``train.de:17: invalid UTF-8``).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, not a file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    return decode_lines(data, str(path))


def check_text_bytes(data: bytes, name: str, first_line: int = 1) -> None:
    """Raise :class:`DataError` for bytes that are not text to read line by line: gzip,
    UTF-16 (with its byte-order mark, or ASCII text as UTF-16 without one: its NUL
    bytes are valid UTF-8, and every line would have read with a NUL before it).
    ``first_line``: the line of the file where ``data`` starts (for the error)."""
    if data.startswith(b"\x1f\x8b"):  # gzip's magic number
        raise DataError(f"{name}: gzip-compressed data; decompress it (gunzip) first")
    utf16 = "convert it to UTF-8 (iconv -f utf-16 -t utf-8)"
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError(f"{name}: UTF-16 text (a byte-order mark); {utf16}")
    nul = data.find(b"\0")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + first_line
        raise DataError(f"{name}:{line}: a NUL byte: UTF-16 or binary data? {utf16}")


CR_ALONE = "lines end in CR alone (old Mac text); convert them to LF (tr '\\r' '\\n')"


def decode_lines(data: bytes, name: str) -> list[str]:
    """The lines of UTF-8 ``data``, as :func:`read_lines` reads a file; errors name ``name``."""
    if not data:
        raise DataError(f"{name}: file is empty")
    check_text_bytes(data, name)
    if b"\n" not in data and data.count(b"\r") > 1:  # the whole file would be one line
        raise DataError(f"{name}: {CR_ALONE}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DataError(f"{name}:{line}: invalid UTF-8 (byte 0x{data[e.start]:02x})") from None
    text = text.removeprefix("\ufeff")
    if "\ufeff" in text:  # a BOM at a line's start: files joined by cat (it was a token)
        text = text.replace("\n\ufeff", "\n")
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [s[:-1] if s.endswith("\r") else s for s in lines]


def read_parallel(prefix: str | Path, src: str, tgt: str) -> list[Pair]:
    """Sentence pairs from ``<prefix>.<src>`` and ``<prefix>.<tgt>``.

    Args:
        prefix: path without the language suffix, e.g. ``data/multi30k/train``.
        src: source suffix, e.g. ``"de"``.
        tgt: target suffix, e.g. ``"en"``.

    Returns:
        ``(source line, target line)`` pairs in file order.

    Raises:
        DataError: a file is missing, empty or not UTF-8, or the line counts differ
            (``train.de and train.en have different line counts (29000 vs 28999)``).
    """
    src_path = Path(f"{prefix}.{src}")
    tgt_path = Path(f"{prefix}.{tgt}")
    src_lines = read_lines(src_path)
    tgt_lines = read_lines(tgt_path)
    if len(src_lines) != len(tgt_lines):
        raise DataError(
            f"{src_path} and {tgt_path} have different line counts "
            f"({len(src_lines)} vs {len(tgt_lines)})"
        )
    return list(zip(src_lines, tgt_lines, strict=True))


def read_tsv(path: str | Path, src_col: int = 0, tgt_col: int = 1) -> list[Pair]:
    """Sentence pairs from a tab-separated file (e.g. Tatoeba ``eng<TAB>fra``).

    Args:
        path: the file.
        src_col: 0-based column of the source sentence.
        tgt_col: 0-based column of the target sentence.

    Raises:
        DataError: file problems as in :func:`read_lines`, or a line with too few
            columns (``eng-fra.txt:12: expected at least 2 tab-separated columns, found 1``).
    """
    return tsv_pairs(read_lines(path), str(path), src_col, tgt_col)


def tsv_pairs(lines: Sequence[str], name: str, src_col: int = 0, tgt_col: int = 1) -> list[Pair]:
    """The pairs of tab-separated ``lines``, as :func:`read_tsv` reads a file."""
    need = max(src_col, tgt_col) + 1
    pairs: list[Pair] = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():  # a blank line (often the last): no pair, as in parallel files
            continue
        cols = line.split("\t")
        if len(cols) < need:
            raise DataError(
                f"{name}:{n}: expected at least {need} tab-separated columns, found {len(cols)}"
            )
        pairs.append((cols[src_col], cols[tgt_col]))
    return pairs


def blank_side(pair: Pair) -> bool:
    """A side of ``pair`` is empty or whitespace: no sentence to train on or score."""
    return not (pair[0].strip() and pair[1].strip())


def filter_pairs(
    pairs: Sequence[Pair],
    max_len: int,
    tokenize_src: Callable[[str], list[str]],
    tokenize_tgt: Callable[[str], list[str]],
) -> tuple[list[Pair], int]:
    """Drop pairs with an empty (or blank) side or a side longer than ``max_len`` tokens.

    Args:
        pairs: sentence pairs.
        max_len: maximum number of tokens on either side (special symbols not counted).
        tokenize_src: e.g. ``src_tokenizer.encode``.
        tokenize_tgt: e.g. ``tgt_tokenizer.encode``.

    Returns:
        ``(kept pairs in their original order, number dropped)``.
    """
    kept: list[Pair] = []
    for s, t in pairs:
        if blank_side((s, t)):  # (the char tokenizer makes "▁" tokens of spaces)
            continue
        ns, nt = len(tokenize_src(s)), len(tokenize_tgt(t))
        if 0 < ns <= max_len and 0 < nt <= max_len:
            kept.append((s, t))
    return kept, len(pairs) - len(kept)


def split_held_out(
    pairs: Sequence[Pair], n_dev: int, n_test: int, seed: int
) -> dict[str, list[Pair]]:
    """Random train / dev / test split in which no sentence lives in two splits.

    Corpora such as Tatoeba list several translations of one sentence, and one
    translation may serve several sources ("Run!" for both "Cours !" and "Courez !"):
    splitting by line, or by source sentence alone, would put the reference of a test
    pair into training under another source. Pairs linked by a shared source or a
    shared target sentence (compared ignoring case and runs of whitespace) form one
    group, which stays whole; the groups are shuffled and dealt out: test takes groups
    until it holds at least ``n_test`` pairs, then dev until it holds ``n_dev``, and
    the rest trains. A pair with an empty side is never held out (it would be an empty
    reference); it stays in train, whose filter drops it.

    Args:
        pairs: all sentence pairs.
        n_dev: least number of dev pairs (whole groups, so it may hold a few more).
        n_test: least number of test pairs (0: none).
        seed: seed of the shuffle.

    Returns:
        ``{"train": [...], "dev": [...], "test": [...]}``, each in corpus order.

    Raises:
        DataError: too few pairs or groups to hold that many out and keep some for
            training.
    """
    # a pair with an empty side stays in train, where it is filtered out: held out, it
    # was an empty reference (and all such pairs were linked by their empty sentence)
    blank = [blank_side(p) for p in pairs]
    full = [p for p, b in zip(pairs, blank) if not b]
    group = _linked_groups(full)
    ids = list(dict.fromkeys(group))
    random.Random(seed).shuffle(ids)
    size = Counter(group)
    split_of: dict[int, str] = {}
    pos = 0
    for name, want in (("test", n_test), ("dev", n_dev)):
        have = 0
        while have < want and pos < len(ids):
            split_of[ids[pos]] = name
            have += size[ids[pos]]
            pos += 1
    if len(split_of) == len(ids):  # nothing left to train on
        raise DataError(
            f"split: {len(full)} pairs in {len(ids)} groups of linked sentences; cannot "
            f"hold out {n_dev} dev + {n_test} test pairs and keep some for training"
        )
    out: dict[str, list[Pair]] = {"train": [], "dev": [], "test": []}
    groups = iter(group)
    for pair, b in zip(pairs, blank, strict=True):
        out["train" if b else split_of.get(next(groups), "train")].append(pair)
    return out


def _linked_groups(pairs: Sequence[Pair]) -> list[int]:
    """For each pair, the id of its group: pairs sharing a source or a target sentence
    (ignoring case and whitespace runs), transitively (union-find)."""
    parent = list(range(len(pairs)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[tuple[int, str], int] = {}
    for i, (s, t) in enumerate(pairs):
        for side, text in ((0, s), (1, t)):
            j = first.setdefault((side, " ".join(text.casefold().split())), i)
            a, b = root(i), root(j)
            if a != b:
                parent[max(a, b)] = min(a, b)
    return [root(i) for i in range(len(pairs))]


def write_lines(path: str | Path, lines: Sequence[str]) -> None:
    """Write lines (each followed by ``\\n``) as UTF-8, atomically."""
    write_atomic(Path(path), "".join(s + "\n" for s in lines).encode("utf-8"))


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (:func:`rnnkit.atomic.write_atomically`): a
    reader never sees a half-written file, an interrupted write leaves the old one."""
    write_atomically(path, lambda f: f.write(data), binary=True)
