"""Tokenizers: raw text ↔ a list of string pieces.

A tokenizer is the first and last arrow of the data flow (``text → pieces`` before
the vocabulary, ``pieces → text`` after search). ``decode`` always returns plain,
detokenised text, so outputs can be scored by sacrebleu against raw references.

Three kinds:

- :class:`SentencePieceTokenizer`: BPE or unigram subwords (Kudo & Richardson 2018,
  https://github.com/google/sentencepiece), trained in memory on the training side;
  the default for translation.
- :class:`WordTokenizer`: whitespace words, optionally with punctuation split off
  and heuristically reattached on decode.
- :class:`CharTokenizer`: one piece per character, whitespace shown as ``▁``;
  the natural choice for dates, transliteration and spelling.

``to_state()`` returns plain Python values (str / bool / int / bytes) that pickle
into a torch checkpoint; :func:`tokenizer_from_state` rebuilds the tokenizer.
"""

from __future__ import annotations

import functools
import io
import random
import re
import sys
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar

import sentencepiece as spm

from .errors import DataError
from .subword import BPEDropout

SPACE = "▁"  # U+2581, the same visible space symbol sentencepiece uses


class Tokenizer:
    """Base class: ``encode`` text into pieces, ``decode`` pieces into plain text."""

    kind: ClassVar[str] = ""

    def encode(self, text: str) -> list[str]:
        """Split one line of raw text into pieces."""
        raise NotImplementedError

    def decode(self, pieces: list[str]) -> str:
        """Join pieces back into plain, detokenised text."""
        raise NotImplementedError

    def sample(self, text: str, p: float, rng: random.Random) -> list[str]:
        """A random segmentation of one line (BPE-dropout); only BPE models have several."""
        raise DataError(f"{type(self).__name__}: no random segmentations (BPE models only)")

    def pieces_within(self, lines: Iterable[str]) -> set[str]:
        """Every piece that a (random) segmentation of ``lines`` can use."""
        return {p for line in lines for p in self.encode(line)}

    def bpe_mismatch(self, lines: Iterable[str]) -> int | None:
        """The index of the first of ``lines`` that plain BPE segments otherwise than this
        tokenizer, or None: 0 here, no BPE merges at all."""
        return 0

    def to_state(self) -> dict[str, Any]:
        """Picklable description (plain Python types / bytes) that rebuilds this tokenizer."""
        raise NotImplementedError

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Tokenizer:
        """Rebuild from :meth:`to_state` output."""
        raise NotImplementedError


class SentencePieceTokenizer(Tokenizer):
    """SentencePiece BPE / unigram subwords; the model travels as its serialized proto."""

    kind = "sentencepiece"

    def __init__(self, model_proto: bytes) -> None:
        """Load a trained model from its serialized ``ModelProto`` bytes."""
        self.model_proto = bytes(model_proto)
        self._sp = spm.SentencePieceProcessor(model_proto=self.model_proto)
        self._dropout: BPEDropout | None = None

    @classmethod
    def train(
        cls,
        lines: Iterable[str],
        vocab_size: int,
        model_type: str = "bpe",
        character_coverage: float = 1.0,
        seed: int = 0,
        byte_fallback: bool = False,
        max_sentences: int = 0,
    ) -> SentencePieceTokenizer:
        """Train a model in memory, deterministically and without logging.

        Args:
            lines: training sentences (raw text, one per item).
            vocab_size: target number of pieces; a soft limit (``hard_vocab_limit=False``)
                so tiny corpora that cannot fill it still train.
            model_type: ``"bpe"`` or ``"unigram"``.
            character_coverage: share of characters covered by the alphabet (1.0 for
                small alphabets; 0.9995 is usual for CJK).
            seed: seed of sentencepiece's random generator (sampling, shuffling).
            byte_fallback: spell unseen characters as UTF-8 byte pieces instead of
                ``<unk>`` so every string round-trips (costs 256 pieces).
            max_sentences: train on at most this many sentences (0: all).

        Returns:
            the trained tokenizer.

        Raises:
            DataError: no sentences, or sentencepiece rejects the settings.
        """
        if model_type not in ("bpe", "unigram"):
            raise DataError(
                f"sentencepiece: model_type must be 'bpe' or 'unigram', not {model_type!r}"
            )
        # sentencepiece reads lines; a newline inside an item would silently split it.
        sentences: Iterator[str] = (s.replace("\n", " ") for s in lines)
        model = io.BytesIO()
        spm.set_random_generator_seed(seed)
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=sentences,
                model_writer=model,
                vocab_size=vocab_size,
                model_type=model_type,
                character_coverage=character_coverage,
                byte_fallback=byte_fallback,
                hard_vocab_limit=False,
                input_sentence_size=max_sentences,
                shuffle_input_sentence=max_sentences > 0,
                num_threads=1,  # multi-threaded training is not reproducible
                minloglevel=3,
            )
        except RuntimeError as e:
            if "sentences_.empty()" in str(e):
                raise DataError("sentencepiece: no training sentences") from e
            # "INTERNAL: src/x.cc(638) [check] Human message." → "Human message."
            first = (str(e).strip().splitlines() or [type(e).__name__])[0].split("] ", 1)[-1]
            small = re.match(
                r"Vocabulary size is smaller than required_chars\. (\d+) vs (\d+)", first
            )
            if small:  # (its advice names a flag of its own command line)
                first = (
                    f"the vocabulary size {small[1]} is smaller than the {small[2]} characters "
                    f"the text needs; set data.vocab_size to more than {small[2]}"
                )
            raise DataError(f"sentencepiece training failed: {first}") from e
        return cls(model.getvalue())

    @property
    def pieces(self) -> list[str]:
        """All pieces of the model, excluding its control symbols (``<s>``, ``</s>``)."""
        sp = self._sp
        return [sp.id_to_piece(i) for i in range(sp.get_piece_size()) if not sp.is_control(i)]

    def encode(self, text: str) -> list[str]:
        """Subword pieces of ``text`` (``▁`` marks a preceding space)."""
        return list(self._sp.encode(text, out_type=str))

    def sample(self, text: str, p: float, rng: random.Random) -> list[str]:
        """One random segmentation of ``text``: BPE skipping each merge with probability
        ``p`` (BPE-dropout, :mod:`rnnkit.data.subword`), drawn from ``rng``. For a BPE
        model; :meth:`bpe_mismatch` tells whether this one is."""
        return self._bpe().sample(text, p, rng)

    def bpe_mismatch(self, lines: Iterable[str]) -> int | None:
        """The index of the first of ``lines`` whose plain BPE segmentation differs from
        this model's (a unigram model), or None."""
        return self._bpe().disagrees(lines)

    def _bpe(self) -> BPEDropout:
        if self._dropout is None:  # built once: its merge table reads every piece
            self._dropout = BPEDropout(self._sp)
        return self._dropout

    def pieces_within(self, lines: Iterable[str]) -> set[str]:
        """The pieces of the model that a segmentation of ``lines`` can use, sampled ones
        included: those inside one of their (normalised) words. Pieces never span a
        word boundary, so this holds every piece that :meth:`sample` can produce."""
        known = set(self.pieces)
        longest = max(map(len, known), default=1)
        words = {w for line in lines for w in "".join(self.encode(line)).split(SPACE) if w}
        found: set[str] = set()
        for word in words:
            w = SPACE + word  # its substrings: the pieces with the word's ▁ and without
            for i in range(len(w)):
                for j in range(i + 1, min(len(w), i + longest) + 1):
                    if w[i:j] in known:
                        found.add(w[i:j])
        return found

    def decode(self, pieces: list[str]) -> str:
        """Plain text; ``<unk>`` renders as ``⁇``."""
        # A piece the model does not know (possible after a vocab round trip) is copied
        # verbatim by sentencepiece, ▁ included; map that ▁ to the space it stands for.
        return str(self._sp.decode_pieces(list(pieces))).replace(SPACE, " ")

    def to_state(self) -> dict[str, Any]:
        """``{"kind": "sentencepiece", "model": <proto bytes>}``."""
        return {"kind": self.kind, "model": self.model_proto}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SentencePieceTokenizer:
        """Rebuild from :meth:`to_state` output."""
        return cls(state["model"])


# A number with inner separators (3.5, 10:30, 1,000), a word with inner hyphens or
# apostrophes (well-known, don't, aujourd'hui), or any single other non-space symbol.
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
        self, lowercase: bool = False, split_punct: bool = True, marks: bool = True
    ) -> None:
        """Configure lower-casing and punctuation splitting; ``marks``: combining marks
        and joiners stay in their word (False: each is a token, as before 2026-11-30,
        which the vocabularies of older checkpoints hold)."""
        self.lowercase = lowercase
        self.split_punct = split_punct
        self.marks = marks

    def encode(self, text: str) -> list[str]:
        """Words (and punctuation marks) of ``text``; any Unicode whitespace separates.
        ``<unk>`` (what translation writes for the unknown token) stays one token."""
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
        """``{"kind": "word", "lowercase": ..., "split_punct": ..., "marks": ...}``."""
        return {
            "kind": self.kind, "lowercase": self.lowercase, "split_punct": self.split_punct,
            "marks": self.marks,
        }  # fmt: skip

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> WordTokenizer:
        """Rebuild from :meth:`to_state` output (a state without ``marks``: an older
        checkpoint's, whose vocabulary has marks as tokens of their own)."""
        return cls(
            lowercase=bool(state["lowercase"]),
            split_punct=bool(state["split_punct"]),
            marks=bool(state.get("marks", False)),
        )


class CharTokenizer(Tokenizer):
    """One piece per character; every whitespace character becomes ``▁`` (decoded as " ")."""

    kind = "char"

    def __init__(self, lowercase: bool = False) -> None:
        """Configure lower-casing (not undone on decode)."""
        self.lowercase = lowercase

    def encode(self, text: str) -> list[str]:
        """Characters of ``text``, whitespace shown as ``▁``; ``<unk>`` (what translation
        writes for the unknown token) is one piece."""
        if self.lowercase:
            text = text.lower()
        return _around_unk(text, lambda part: [SPACE if c.isspace() else c for c in part])

    def decode(self, pieces: list[str]) -> str:
        """Concatenate pieces, ``▁`` back to a space."""
        return "".join(pieces).replace(SPACE, " ")

    def to_state(self) -> dict[str, Any]:
        """``{"kind": "char", "lowercase": ...}``."""
        return {"kind": self.kind, "lowercase": self.lowercase}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> CharTokenizer:
        """Rebuild from :meth:`to_state` output."""
        return cls(lowercase=bool(state["lowercase"]))


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


TOKENIZERS: dict[str, type[Tokenizer]] = {
    t.kind: t for t in (SentencePieceTokenizer, WordTokenizer, CharTokenizer)
}


def tokenizer_from_state(state: dict[str, Any]) -> Tokenizer:
    """Rebuild any tokenizer from its :meth:`Tokenizer.to_state` output.

    Raises:
        DataError: the state names an unknown kind.
    """
    kind = state.get("kind")
    if kind not in TOKENIZERS:
        raise DataError(f"tokenizer state: unknown kind {kind!r} (known: {sorted(TOKENIZERS)})")
    return TOKENIZERS[kind].from_state(state)


def make_tokenizer(
    kind: str,
    lines: Iterable[str] | None = None,
    vocab_size: int = 8000,
    lowercase: bool = False,
    seed: int = 0,
    **kwargs: Any,
) -> Tokenizer:
    """Build a tokenizer by name, the way a config names it.

    Args:
        kind: ``"bpe"`` or ``"unigram"`` (sentencepiece, trained on ``lines``),
            ``"word"`` or ``"char"``.
        lines: training text; required for sentencepiece kinds.
        vocab_size: sentencepiece vocabulary size.
        lowercase: lower-case before splitting (word / char only).
        seed: sentencepiece training seed.
        **kwargs: passed to :meth:`SentencePieceTokenizer.train` or the constructor.

    Raises:
        DataError: unknown kind, or a sentencepiece kind without ``lines``.
    """
    if kind in ("bpe", "unigram"):
        if lines is None:
            raise DataError(f"tokenizer {kind!r} needs training lines")
        return SentencePieceTokenizer.train(lines, vocab_size, model_type=kind, seed=seed, **kwargs)
    if kind == "word":
        return WordTokenizer(lowercase=lowercase, **kwargs)
    if kind == "char":
        return CharTokenizer(lowercase=lowercase)
    raise DataError(f"unknown tokenizer {kind!r} (known: bpe, unigram, word, char)")
