"""Vocabulary: string pieces ↔ integer ids, with four special symbols at fixed ids.

    <pad> = 0   padding, ignored by the loss and masked in attention
    <unk> = 1   any piece not in the vocabulary
    <s>   = 2   beginning of sequence, the decoder's first input
    </s>  = 3   end of sequence, appended to sources and targets

The vocabulary file is one token per line, specials first, in id order (the same
layout as Joey NMT's ``src_vocab.txt``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from itertools import chain
from pathlib import Path
from typing import Any, Final

from .corpus import read_lines, write_atomic
from .errors import DataError

PAD = "<pad>"
UNK = "<unk>"
BOS = "<s>"
EOS = "</s>"
SPECIALS: tuple[str, ...] = (PAD, UNK, BOS, EOS)
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3


class Vocab:
    """An ordered list of tokens; the index of a token is its id."""

    def __init__(self, tokens: list[str]) -> None:
        """Use ``tokens`` as is; it must start with :data:`SPECIALS`. Prefer the builders."""
        if tuple(tokens[: len(SPECIALS)]) != SPECIALS:
            raise DataError(f"vocab: the first tokens must be {' '.join(SPECIALS)}")
        self._itos: list[str] = list(tokens)
        self._stoi: dict[str, int] = {}
        for i, tok in enumerate(self._itos):
            if tok in self._stoi:
                raise DataError(f"vocab: duplicate token {tok!r} (ids {self._stoi[tok]} and {i})")
            self._stoi[tok] = i

    @classmethod
    def build(
        cls,
        token_lists: Iterable[list[str]],
        max_size: int | None = None,
        min_freq: int = 1,
    ) -> Vocab:
        """Count tokens and keep the most frequent ones.

        Args:
            token_lists: tokenised training sentences.
            max_size: keep at most this many regular tokens (the 4 specials come on top).
            min_freq: drop tokens seen fewer times.

        Returns:
            specials, then tokens by decreasing frequency, ties alphabetically, so the
            same corpus always gives the same ids.
        """
        return cls.from_counts(Counter(chain.from_iterable(token_lists)), max_size, min_freq)

    @classmethod
    def from_counts(
        cls, counts: Counter[str], max_size: int | None = None, min_freq: int = 1
    ) -> Vocab:
        """:meth:`build` from token counts already made (``counts`` loses the specials)."""
        for special in SPECIALS:
            counts.pop(special, None)
        ranked = sorted(
            (tok for tok, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], t)
        )
        if max_size is not None:
            ranked = ranked[:max_size]
        return cls([*SPECIALS, *ranked])

    def extended(self, tokens: Iterable[str]) -> Vocab:
        """This vocabulary with ``tokens`` it lacks appended, sorted (the same ids for the
        same tokens every time)."""
        new = sorted(set(tokens) - set(self._itos))
        return Vocab([*self._itos, *new]) if new else self

    @classmethod
    def from_tokens(cls, tokens: list[str]) -> Vocab:
        """A vocabulary with exactly these tokens in this order, after the specials.

        ``tokens`` may already start with the specials (as a saved file does); specials
        anywhere else are dropped, e.g. a sentencepiece ``<unk>`` piece.
        """
        if tuple(tokens[: len(SPECIALS)]) == SPECIALS:
            tokens = tokens[len(SPECIALS) :]
        return cls([*SPECIALS, *(t for t in tokens if t not in SPECIALS)])

    def __len__(self) -> int:
        return len(self._itos)

    def __contains__(self, token: object) -> bool:
        return token in self._stoi

    def __getitem__(self, token: str) -> int:
        """Id of ``token`` (:data:`UNK_ID` if unknown)."""
        return self._stoi.get(token, UNK_ID)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self._itos == other._itos

    __hash__ = None  # type: ignore[assignment]  # mutable-looking value type

    def __repr__(self) -> str:
        return f"Vocab(size={len(self)})"

    @property
    def tokens(self) -> list[str]:
        """All tokens in id order (a copy)."""
        return list(self._itos)

    pad_id: Final = PAD_ID  #: id of ``<pad>`` (0)
    unk_id: Final = UNK_ID  #: id of ``<unk>`` (1)
    bos_id: Final = BOS_ID  #: id of ``<s>`` (2)
    eos_id: Final = EOS_ID  #: id of ``</s>`` (3)

    def token(self, idx: int) -> str:
        """Token with id ``idx``."""
        return self._itos[idx]

    def encode(
        self, tokens: Iterable[str], add_bos: bool = False, add_eos: bool = True
    ) -> list[int]:
        """Ids of ``tokens``; unknown tokens → ``<unk>``.

        A token that merely spells a control symbol (``<s>`` in user text) also maps to
        ``<unk>``: only ``add_bos`` / ``add_eos`` produce BOS / EOS, so text can never
        end a sequence early.
        """
        ids = [self._stoi.get(t, UNK_ID) for t in tokens]
        ids = [UNK_ID if i in (PAD_ID, BOS_ID, EOS_ID) else i for i in ids]
        if add_bos:
            ids.insert(0, BOS_ID)
        if add_eos:
            ids.append(EOS_ID)
        return ids

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Tokens of ``ids`` up to the first EOS; PAD and BOS are skipped, UNK stays ``<unk>``.

        Accepts any iterable of ints, including a 1-D tensor.
        """
        out: list[str] = []
        for raw in ids:
            i = int(raw)
            if i == EOS_ID:
                break
            if i in (PAD_ID, BOS_ID):
                continue
            out.append(self._itos[i] if 0 <= i < len(self._itos) else UNK)
        return out

    def to_state(self) -> dict[str, Any]:
        """``{"tokens": [...]}``: picklable, for checkpoints."""
        return {"tokens": list(self._itos)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Vocab:
        """Rebuild from :meth:`to_state` output."""
        return cls(list(state["tokens"]))

    def save(self, path: str | Path) -> None:
        """Write one token per line, atomically (temp file in the same folder, then rename).

        Raises:
            DataError: a token contains a line break or is empty, so it cannot round-trip.
        """
        path = Path(path)
        for i, tok in enumerate(self._itos):
            if not tok or any(c in tok for c in "\n\r"):
                raise DataError(f"{path}: token {i} ({tok!r}) cannot be written one per line")
        write_atomic(path, "".join(tok + "\n" for tok in self._itos).encode("utf-8"))

    @classmethod
    def load(cls, path: str | Path) -> Vocab:
        """Read a file written by :meth:`save` (or any one-token-per-line file).

        Raises:
            DataError: missing / empty / non-UTF-8 file, an empty line, a duplicate
                token, or specials that are not first.
        """
        path = Path(path)
        tokens = read_lines(path)
        _check_lines(path, tokens)
        return cls.from_tokens(tokens)


def _check_lines(path: Path, tokens: list[str]) -> None:
    """A DataError naming the line for an empty or duplicate token, or for specials that
    are not the first lines."""
    for n, tok in enumerate(tokens, start=1):
        if not tok:
            raise DataError(f"{path}:{n}: empty token")
    seen: dict[str, int] = {}
    for n, tok in enumerate(tokens, start=1):
        if tok in seen:
            raise DataError(f"{path}:{n}: duplicate token {tok!r} (first on line {seen[tok]})")
        seen[tok] = n
    head = tuple(tokens[: len(SPECIALS)])
    if head != SPECIALS and any(s in seen for s in SPECIALS):
        raise DataError(f"{path}: the special tokens must be the first lines: {' '.join(SPECIALS)}")
