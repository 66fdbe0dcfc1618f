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

import io
import random
import re
from collections.abc import Iterable, Iterator
from typing import Any

import sentencepiece as spm

from .errors import DataError
from .subword import BPEDropout
from .tokenizer_base import SPACE as SPACE  # (importable from here, as before)
from .tokenizer_base import Tokenizer
from .words import CharTokenizer, WordTokenizer

MAX_SENTENCE_BYTES = 1 << 20
"""Training lines longer than this are skipped by sentencepiece (its default, 4,192
bytes, silently left out every line of a corpus of long lines: "no training sentences")."""


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
        spm.set_random_generator_seed(seed % 2**32)  # (its seed is 32 bits; train.seed 63)
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
                max_sentence_length=MAX_SENTENCE_BYTES,
                minloglevel=3,
            )
        except RuntimeError as e:
            if "sentences_.empty()" in str(e):
                raise DataError(
                    "sentencepiece: no training sentences (each empty, or longer than "
                    f"{MAX_SENTENCE_BYTES} bytes)"
                ) from e
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
