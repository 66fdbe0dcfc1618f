"""The word and character tokenizers (:class:`WordTokenizer`, :class:`CharTokenizer`):
text in Unicode's NFC form, and ``<unk>`` (a translation's unknown token) kept whole."""

from __future__ import annotations

import functools
import re
import sys
import unicodedata
from collections.abc import Callable
from typing import Any

from .tokenizer_base import SPACE, Tokenizer

__all__ = ["CharTokenizer", "WordTokenizer"]

_WORD_RE = re.compile(r"\d+(?:[.,:]\d+)+|\w+(?:[-'’]\w+)*|[^\w\s]")
_NO_SPACE_BEFORE = frozenset(".,!?;:%)]}»…।॥")  # and the dandas of Indic scripts
_NO_SPACE_AFTER = frozenset("([{«¿¡$#@")
_NO_SPACE_AROUND = frozenset("/")
_QUOTES = frozenset("\"'")


def _split_words(text: str) -> list[str]:
    r"""``_WORD_RE``'s tokens, with combining marks and zero-width joiners inside words:
    ``\w`` matches no mark (Unicode category M: the vowel signs and viramas of Indic
    scripts, the accents of decomposed Latin) nor U+200C / U+200D, so "हिन्दी" would be six
    tokens and decode "ह ि न ् द ी". Text without them (a mark is then a token alone) pays
    nothing; the first text with one builds the pattern that has them (0.4 s, once)."""
    tokens = _WORD_RE.findall(text)
    if not any(len(t) == 1 and _in_words(t) for t in tokens):
        return tokens
    return _marked_word_re().findall(text)


def _in_words(char: str) -> bool:
    return unicodedata.category(char)[0] == "M" or char in "\u200c\u200d"


@functools.cache
def _marked_word_re() -> re.Pattern[str]:
    """``_WORD_RE`` whose words may hold marks and joiners (built once, when needed)."""
    spans: list[tuple[int, int]] = []
    for c in range(sys.maxunicode + 1):
        if _in_words(chr(c)):
            if spans and spans[-1][1] == c - 1:
                spans[-1] = (spans[-1][0], c)
            else:
                spans.append((c, c))
    marks = "".join(f"\\U{a:08x}-\\U{b:08x}" for a, b in spans)
    w = rf"[\w{marks}]"
    return re.compile(rf"\d+(?:[.,:]\d+)+|{w}+(?:[-'’]{w}+)*|[^\w\s]")


class WordTokenizer(Tokenizer):
    """Whitespace words; with ``split_punct`` punctuation becomes its own token.

    Decoding joins with spaces and, with ``split_punct``, reattaches punctuation
    heuristically: no space before ``. , ! ? ; : % ) ] }``, none after ``( [ {``,
    straight quotes alternate between opening and closing. ``lowercase`` cannot be
    undone on decode.
    """

    kind = "word"

    def __init__(
        self,
        lowercase: bool = False,
        split_punct: bool = True,
        marks: bool = True,
        nfc: bool = True,
    ) -> None:
        """Configure lower-casing and punctuation splitting; ``marks``: combining marks
        and joiners stay in their word (False: each is a token, as before 2026-11-30,
        which the vocabularies of older checkpoints hold); ``nfc``: text is read in
        Unicode's NFC form (False: as given, as before 2026-12-01)."""
        self.lowercase = lowercase
        self.split_punct = split_punct
        self.marks = marks
        self.nfc = nfc

    def encode(self, text: str) -> list[str]:
        """Words (and punctuation marks) of ``text`` in NFC (an ``é`` typed as e and a
        combining accent is the ``é`` of the vocabulary); any Unicode whitespace separates.
        ``<unk>`` (what translation writes for the unknown token) stays one token."""
        if self.nfc:
            text = unicodedata.normalize("NFC", text)
        if self.lowercase:
            text = text.lower()
        return _around_unk(text, self._words)

    def _words(self, text: str) -> list[str]:
        if self.split_punct:
            return _split_words(text) if self.marks else _WORD_RE.findall(text)
        return text.split()

    def decode(self, pieces: list[str]) -> str:
        """Detokenised text."""
        if not self.split_punct:
            return " ".join(pieces)
        out: list[str] = []
        glue_next = False  # the previous token wants no space after it
        open_quotes: set[str] = set()
        for tok in pieces:
            space = bool(out) and not glue_next
            glue_next = False
            if tok in _QUOTES:
                if tok in open_quotes:  # closing quote: hugs the previous word
                    open_quotes.discard(tok)
                    space = False
                else:  # opening quote: hugs the next word
                    open_quotes.add(tok)
                    glue_next = True
            elif tok in _NO_SPACE_BEFORE:
                space = False
            elif tok in _NO_SPACE_AFTER:
                glue_next = True
            elif tok in _NO_SPACE_AROUND:
                space, glue_next = False, True
            out.append(" " + tok if space else tok)
        return "".join(out)

    def to_state(self) -> dict[str, Any]:
        """``{"kind": "word", "lowercase": ..., "split_punct": ..., "marks": ..., "nfc": ...}``."""
        return {
            "kind": self.kind, "lowercase": self.lowercase, "split_punct": self.split_punct,
            "marks": self.marks, "nfc": self.nfc,
        }  # fmt: skip

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> WordTokenizer:
        """Rebuild from :meth:`to_state` output (a state without ``marks`` or ``nfc``: an
        older checkpoint's, whose vocabulary has marks as tokens of their own, or was
        read as given)."""
        return cls(
            lowercase=bool(state["lowercase"]),
            split_punct=bool(state["split_punct"]),
            marks=bool(state.get("marks", False)),
            nfc=bool(state.get("nfc", False)),
        )


class CharTokenizer(Tokenizer):
    """One piece per character; every whitespace character becomes ``▁`` (decoded as " ")."""

    kind = "char"

    def __init__(self, lowercase: bool = False, nfc: bool = True) -> None:
        """Configure lower-casing (not undone on decode); ``nfc``: text is read in
        Unicode's NFC form (False: as given, as before 2026-12-01)."""
        self.lowercase = lowercase
        self.nfc = nfc

    def encode(self, text: str) -> list[str]:
        """Characters of ``text`` in NFC (e and a combining accent: one ``é``), whitespace
        shown as ``▁``; ``<unk>`` (what translation writes for the unknown token) is one
        piece."""
        if self.nfc:
            text = unicodedata.normalize("NFC", text)
        if self.lowercase:
            text = text.lower()
        return _around_unk(text, lambda part: [SPACE if c.isspace() else c for c in part])

    def decode(self, pieces: list[str]) -> str:
        """Concatenate pieces, ``▁`` back to a space."""
        return "".join(pieces).replace(SPACE, " ")

    def to_state(self) -> dict[str, Any]:
        """``{"kind": "char", "lowercase": ..., "nfc": ...}``."""
        return {"kind": self.kind, "lowercase": self.lowercase, "nfc": self.nfc}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> CharTokenizer:
        """Rebuild from :meth:`to_state` output (without ``nfc``: an older checkpoint's,
        which read text as given)."""
        return cls(lowercase=bool(state["lowercase"]), nfc=bool(state.get("nfc", False)))


UNK_TEXT = "<unk>"  # (rnnkit.data.vocab.UNK) a translation's unknown token, as text


def _around_unk(text: str, encode: Callable[[str], list[str]]) -> list[str]:
    """``encode`` of the text between the ``<unk>``s of ``text``, each ``<unk>`` one piece:
    a translation that holds one is scored (``rnnkit score``, n-best reranking) with the
    unknown token the model gave it, not as ``<``, ``unk``, ``>``."""
    if UNK_TEXT not in text:
        return encode(text)
    out: list[str] = []
    for k, part in enumerate(text.split(UNK_TEXT)):
        out += ([UNK_TEXT] if k else []) + encode(part)
    return out
