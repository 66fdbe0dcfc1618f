"""BPE-dropout (Provilkov, Emelianenko & Voita 2020, arXiv 1910.13267) on a sentencepiece
BPE model, written out so that a seed fixes the draws.

BPE segments a word by merging, again and again, the adjacent pair of symbols whose
merge the model learnt first (the highest piece score), until no adjacent pair forms a
piece. BPE-dropout skips each merge it is about to make with probability p: the word
then stays in smaller pieces, a new segmentation each time the sentence is seen, which
regularises the model (and teaches it the pieces words are made of). p = 0 is plain BPE
and gives exactly sentencepiece's segmentation (checked by :meth:`BPEDropout.disagrees`).

sentencepiece samples BPE-dropout itself (``enable_sampling=True``), but its random
generator gives other draws in another process for the same seed, so a resumed run or
another rank would see other segmentations; this one draws from a ``random.Random``.
"""

from __future__ import annotations

import heapq
import random
import re
from collections.abc import Iterable
from typing import Any

__all__ = ["BPEDropout"]

SPACE = "▁"
_WORDS = re.compile(f"{SPACE}?[^{SPACE}]+|{SPACE}")  # each word with its leading ▁


class BPEDropout:
    """Random BPE segmentations with a sentencepiece BPE model's merges.

    ``sp`` is a ``SentencePieceProcessor``; ``encode(text)`` its deterministic pieces
    (they give the normalised text; pieces never span a ▁, so words are segmented one
    by one).
    """

    def __init__(self, sp: Any) -> None:
        self._sp = sp
        self.rank: dict[str, float] = {  # the order of merges: higher score merges first
            sp.id_to_piece(i): -sp.get_score(i)
            for i in range(sp.get_piece_size())
            if not (sp.is_control(i) or sp.is_unknown(i) or sp.is_byte(i))
        }

    def sample(self, text: str, p: float, rng: random.Random) -> list[str]:
        """The pieces of ``text`` with each merge skipped with probability ``p``."""
        joined = "".join(self._sp.encode(text, out_type=str))
        return [piece for word in _WORDS.findall(joined) for piece in self.word(word, p, rng)]

    def word(self, word: str, p: float, rng: random.Random) -> list[str]:
        """BPE on one word's characters: a heap of the adjacent pairs that form a piece,
        best merge first (left first on ties); a popped merge is skipped with
        probability p and not offered again, as sentencepiece does."""
        syms: list[str | None] = list(word)
        n = len(syms)
        if n < 2:
            return list(word)
        nxt = list(range(1, n + 1))
        nxt[-1] = -1
        prv = list(range(-1, n - 1))
        rank = self.rank.get
        heap = []
        for i in range(n - 1):
            merged = word[i] + word[i + 1]
            r = rank(merged)
            if r is not None:
                heap.append((r, i, merged))
        heapq.heapify(heap)
        while heap:
            _, i, merged = heapq.heappop(heap)
            left, j = syms[i], nxt[i]
            if left is None or j < 0 or left + (syms[j] or "") != merged:
                continue  # stale: one of its symbols has merged since
            if p and rng.random() < p:
                continue  # dropped
            syms[i], syms[j] = merged, None
            k = nxt[i] = nxt[j]
            if k >= 0:
                prv[k] = i
                self._offer(heap, i, merged + (syms[k] or ""))
            h = prv[i]
            if h >= 0:
                self._offer(heap, h, (syms[h] or "") + merged)
        return [s for s in syms if s is not None]

    def _offer(self, heap: list[tuple[float, int, str]], i: int, merged: str) -> None:
        r = self.rank.get(merged)
        if r is not None:
            heapq.heappush(heap, (r, i, merged))

    def disagrees(self, lines: Iterable[str]) -> int | None:
        """The index of the first line that plain BPE (p = 0) segments otherwise than
        sentencepiece, or None: a unigram model, or one with options BPE-dropout does
        not follow."""
        rng = random.Random(0)
        for k, line in enumerate(lines):
            if self.sample(line, 0.0, rng) != list(self._sp.encode(line, out_type=str)):
                return k
        return None
