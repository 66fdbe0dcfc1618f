"""Data preparation for training: sentence pairs → tokenizers → vocabularies → examples.

``load_pairs`` reads a built-in task or corpus files; ``prepare`` trains the tokenizers
on the training side (or takes them from a checkpoint being resumed), builds the
vocabularies, filters over-long pairs and numbers the rest.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rnnkit.config import Config, DataConfig, resolve_data_path
from rnnkit.corpus_checks import check_corpora, corpora
from rnnkit.data import (
    SPECIALS,
    DataError,
    Example,
    Tokenizer,
    Vocab,
    blank_side,
    encode_pairs,
    filter_pairs,
    make_tokenizer,
    read_parallel,
    read_tsv,
    split_held_out,
    task_splits,
    tokenizer_from_state,
    write_atomic,
    write_lines,
)

if TYPE_CHECKING:
    from rnnkit.distributed import Dist

__all__ = [
    "Prepared",
    "load_pairs",
    "prepare",
    "prepare_on_ranks",
    "save_prepared",
    "tokenizer_states",
]

TOKENISING_NOTE_PAIRS = 200_000
"""From this many training pairs ``prepare`` says that it tokenises them (Tatoeba's
140,000: 3.5 s of silence on one core, of a 7.7 s prepare; a corpus of millions, minutes)."""

Pair = tuple[str, str]


@dataclass
class Prepared:
    """Everything the training loop reads."""

    src_tokenizer: Tokenizer
    tgt_tokenizer: Tokenizer
    src_vocab: Vocab
    tgt_vocab: Vocab
    examples: list[Example]  # the training pairs, tokenised and numbered
    dev: list[Pair]  # raw dev pairs, for BLEU
    train: list[Pair] = field(default_factory=list)  # what examples hold, as text
    held: dict[str, list[Pair]] = field(default_factory=dict)  # dev / test, for save_prepared
    _last: tuple[float, int, list[Example]] | None = field(default=None, repr=False)

    def epoch_examples(self, dropout: float, seed: int) -> list[Example]:
        """The training examples of one epoch: :attr:`examples`, or with BPE-``dropout``
        a new random segmentation of :attr:`train`, the same for the same ``seed`` in any
        process."""
        if not dropout:
            return self.examples
        if self._last is not None and self._last[:2] == (dropout, seed):
            return self._last[2]
        rng = random.Random(seed)
        examples = encode_pairs(
            self.train,
            self.src_tokenizer,
            self.tgt_tokenizer,
            self.src_vocab,
            self.tgt_vocab,
            dropout,
            rng,
        )
        self._last = (dropout, seed, examples)
        return examples


def load_pairs(cfg: Config, config_dir: Path | None = None) -> dict[str, list[Pair]]:
    """Train / dev (/ test) pairs from a built-in task or from corpus files."""
    d = cfg.data
    if d.task:
        return task_splits(
            d.task, d.task_size, d.task_dev, d.task_test, cfg.train.seed, **d.task_options
        )
    check_corpora(cfg, config_dir)
    out: dict[str, list[Pair]] = {}
    for split, path in corpora(d, config_dir):
        out.setdefault(split, []).extend(
            read_tsv(path, d.src_col, d.tgt_col)
            if d.format == "tsv"
            else read_parallel(path, d.src, d.tgt)
        )
    if "dev" in out and all(blank_side(p) for p in out["dev"]):
        raise DataError(f"data.dev {d.dev}: every pair has an empty side (nothing to validate on)")
    n_dev, n_test = d.dev_size, d.test_size
    if n_dev or n_test:  # no sentence in two splits (see split_held_out)
        held = split_held_out(out["train"], n_dev, n_test, cfg.train.seed)
        out["train"] = held["train"]
        out.update({k: held[k] for k, n in (("dev", n_dev), ("test", n_test)) if n})
    return out


def build_tokenizers(
    cfg: Config, pairs: list[Pair], config_dir: Path | None = None
) -> tuple[Tokenizer, Tokenizer]:
    """Source and target tokenizers trained on the training pairs (one, if joint), or
    ``data.sp_model`` read (a relative path found as the corpora are)."""
    d = cfg.data
    kw: dict[str, Any] = {
        "vocab_size": d.vocab_size,
        "lowercase": d.lowercase,
        "seed": cfg.train.seed,
    }
    if d.sp_model:
        from rnnkit.data import SentencePieceTokenizer

        path = resolve_data_path(d, d.sp_model, config_dir)
        try:
            proto = path.read_bytes()
            if not proto:  # (sentencepiece takes it, then fails at the first encode)
                raise RuntimeError("an empty file")
            tok: Tokenizer = SentencePieceTokenizer(proto)
        except OSError as e:
            raise DataError(f"data.sp_model {path}: cannot read ({e.strerror})") from None
        except RuntimeError as e:  # sentencepiece's own error for a file of another kind
            first = str(e).strip().splitlines()[0] if str(e).strip() else "unreadable"
            raise DataError(f"data.sp_model {path}: not a sentencepiece model ({first})") from None
        return tok, tok
    if d.tokenizer in ("bpe", "unigram") and d.joint_vocab:
        lines = [s for s, _ in pairs] + [t for _, t in pairs]
        lines = [x.lower() for x in lines] if d.lowercase else lines
        tok = make_tokenizer(d.tokenizer, lines, **kw)
        return tok, tok
    src_lines = [s.lower() if d.lowercase else s for s, _ in pairs]
    tgt_lines = [t.lower() if d.lowercase else t for _, t in pairs]
    return make_tokenizer(d.tokenizer, src_lines, **kw), make_tokenizer(
        d.tokenizer, tgt_lines, **kw
    )


def check_bpe(src_tok: Tokenizer, tgt_tok: Tokenizer, pairs: list[Pair]) -> None:
    """Raise :class:`DataError` unless plain BPE with the tokenizers' merges segments the
    first training pairs as they do (``data.bpe_dropout`` needs a BPE model)."""
    for side, tok in ((0, src_tok), (1, tgt_tok)):
        k = tok.bpe_mismatch([p[side] for p in pairs[:300]])
        if k is not None:
            raise DataError(
                f"data.bpe_dropout needs a BPE model: the {('source', 'target')[side]} "
                f"model segments training pair {k + 1} otherwise than its BPE merges "
                "(a data.sp_model of another kind: unigram, char or word?)"
            )


def lowercase_pairs(pairs: list[Pair], yes: bool) -> list[Pair]:
    return [(s.lower(), t.lower()) for s, t in pairs] if yes else pairs


def save_vocabularies(
    out: Path, src_tok: Tokenizer, tgt_tok: Tokenizer, src_vocab: Vocab, tgt_vocab: Vocab
) -> None:
    """Vocabularies (one token per line) and sentencepiece models beside the checkpoints.

    The checkpoints hold them too; these files are for people and other tools.
    """
    src_vocab.save(out / "src_vocab.txt")
    tgt_vocab.save(out / "tgt_vocab.txt")
    for side, tok in (("src", src_tok), ("tgt", tgt_tok)):
        proto = getattr(tok, "model_proto", None)
        if proto is not None:
            write_atomic(out / f"{side}_spm.model", proto)


def save_held_out(
    out: Path, d: DataConfig, pairs: dict[str, list[Pair]], say: Callable[[str], None]
) -> None:
    """The dev / test pairs held out of train (``data.dev_size`` / ``test_size``), or a
    built-in task's, as line-aligned files beside the checkpoints (``dev.<src>``,
    ``dev.<tgt>``, ...), for ``rnnkit evaluate`` and for people."""
    src, tgt = (d.src, d.tgt) if d.src != d.tgt else ("src", "tgt")
    for split in ("dev", "test"):
        if getattr(d, f"{split}_size") or (d.task and pairs.get(split)):
            for side, lang in ((0, src), (1, tgt)):
                write_lines(out / f"{split}.{lang}", [p[side] for p in pairs[split]])
            n = len(pairs[split])
            say(f"held out {n} {split} pairs: {out / split}.{src}, {out / split}.{tgt}")


def prepare(
    cfg: Config,
    out: Path,
    config_dir: Path | None = None,
    resumed: dict[str, Any] | None = None,
    say: Callable[[str], None] = lambda _m: None,
    write: bool = True,
) -> Prepared:
    """Pairs → tokenizers and vocabularies (trained, or from ``resumed``) → examples.

    Also writes the vocabularies, sentencepiece models and held-out pairs into ``out``
    (:func:`save_prepared`) unless not ``write``.
    """
    pairs = load_pairs(cfg, config_dir)
    train_pairs = lowercase_pairs(pairs["train"], cfg.data.lowercase)
    if resumed is not None:
        src_tok = tokenizer_from_state(resumed["src_tokenizer"])
        tgt_tok = tokenizer_from_state(resumed["tgt_tokenizer"])
    else:
        if cfg.data.sp_model:
            say(f"tokenizer: data.sp_model {cfg.data.sp_model} (both sides)")
        else:
            say(f"training tokenizers ({cfg.data.tokenizer}) on {len(train_pairs)} pairs")
        src_tok, tgt_tok = build_tokenizers(cfg, train_pairs, config_dir)
    if len(train_pairs) >= TOKENISING_NOTE_PAIRS:  # seconds of silence else, minutes at millions
        say(f"tokenising {len(train_pairs)} training pairs (for the vocabularies, then the ids)")
    counts: tuple[Counter[str], Counter[str]] | None = None
    if resumed is None:  # one pass: filter, and count what is trained on for the vocabularies
        train_pairs, dropped, counts = _filter_and_count(cfg, src_tok, tgt_tok, train_pairs)
    else:
        train_pairs, dropped = filter_pairs(
            train_pairs, cfg.data.max_len, src_tok.encode, tgt_tok.encode
        )
    limit = cfg.data.max_len
    if long := sum(len(src_tok.encode(s)) > limit for s, _ in pairs.get("dev", [])):
        say(f"note: {long} dev sources are longer than data.max_len ({limit} tokens): "
            "validation translates them whole, which takes longer")  # fmt: skip
    if not train_pairs:  # (training would run 0 steps and write an untrained best.pt)
        raise DataError(
            f"all {dropped} training pairs are longer than data.max_len {cfg.data.max_len} "
            "tokens or empty: raise data.max_len (--set data.max_len=N)"
        )
    if dropped:
        say(f"filtered {dropped} training pairs longer than {cfg.data.max_len} tokens or empty")
    if counts is None:
        assert resumed is not None
        src_vocab = Vocab.from_state(resumed["src_vocab"])
        tgt_vocab = Vocab.from_state(resumed["tgt_vocab"])
    else:
        src_vocab, tgt_vocab = _vocabularies(cfg, src_tok, tgt_tok, train_pairs, counts, say)
    if (k := cfg.decode.beam_size) > len(tgt_vocab):  # (translate and serve would refuse it)
        raise DataError(
            f"decode.beam_size {k} exceeds the target vocabulary ({len(tgt_vocab)} tokens, "
            f"specials included): lower it (--set decode.beam_size=K, K at most {len(tgt_vocab)})"
        )
    examples = encode_pairs(train_pairs, src_tok, tgt_tok, src_vocab, tgt_vocab)
    held: dict[str, list[Pair]] = {k: pairs[k] for k in ("dev", "test") if k in pairs}
    d = Prepared(src_tok, tgt_tok, src_vocab, tgt_vocab, examples, pairs["dev"], train_pairs, held)
    if write:
        save_prepared(out, cfg, d, say)
    return d


def prepare_on_ranks(
    cfg: Config,
    out: Path,
    config_dir: Path | None,
    resumed: dict[str, Any] | None,
    say: Callable[[str], None],
    dist: Dist,
) -> Prepared:
    """:func:`prepare` in every process of a run (``dist``: its ranks),
    tokenizers trained (or resumed) by rank 0 alone and sent to the others. Nothing is
    written yet: :func:`save_prepared` does that once the run's checks have passed."""
    if not dist.on:
        return prepare(cfg, out, config_dir, resumed, say, write=False)
    d = prepare(cfg, out, config_dir, resumed, say, write=False) if dist.main else None
    states = dist.broadcast(tokenizer_states(d) if d is not None else None)
    return d or prepare(cfg, out, config_dir, states, write=False)


def save_prepared(out: Path, cfg: Config, d: Prepared, say: Callable[[str], None]) -> None:
    """The vocabularies, sentencepiece models and held-out dev / test files of ``d``
    beside the checkpoints (``rnnkit train`` writes them once its checks have passed)."""
    save_vocabularies(out, d.src_tokenizer, d.tgt_tokenizer, d.src_vocab, d.tgt_vocab)
    save_held_out(out, cfg.data, d.held, say)


def _filter_and_count(
    cfg: Config, src_tok: Tokenizer, tgt_tok: Tokenizer, pairs: list[Pair]
) -> tuple[list[Pair], int, tuple[Counter[str], Counter[str]]]:
    """:func:`filter_pairs` and the token counts of the pairs kept, in one tokenising
    pass (there were three over the corpus: the filter, the vocabularies, the ids)."""
    kept: list[Pair] = []
    src_counts: Counter[str] = Counter()
    tgt_counts: Counter[str] = Counter()
    limit = cfg.data.max_len
    for s, t in pairs:
        if blank_side((s, t)):  # as filter_pairs
            continue
        src, tgt = src_tok.encode(s), tgt_tok.encode(t)
        if 0 < len(src) <= limit and 0 < len(tgt) <= limit:
            kept.append((s, t))
            src_counts.update(src)
            tgt_counts.update(tgt)
    return kept, len(pairs) - len(kept), (src_counts, tgt_counts)


def _vocabularies(
    cfg: Config,
    src_tok: Tokenizer,
    tgt_tok: Tokenizer,
    train_pairs: list[Pair],
    counts: tuple[Counter[str], Counter[str]],
    say: Callable[[str], None],
) -> tuple[Vocab, Vocab]:
    """Each side's vocabulary of the training pairs from their token ``counts``
    (``data.max_vocab``, ``min_freq``; with ``data.bpe_dropout`` also the pieces of
    dropped merges)."""
    cap, least = cfg.data.max_vocab, cfg.data.min_freq
    src_vocab = Vocab.from_counts(counts[0], cap, least)
    tgt_vocab = Vocab.from_counts(counts[1], cap, least)
    if cap or least > 1:
        say(f"vocabularies: {len(src_vocab)} / {len(tgt_vocab)} tokens (specials included)")
    for side, v, c in (("source", src_vocab, counts[0]), ("target", tgt_vocab, counts[1])):
        if len(v) == len(SPECIALS):  # a model that could read or write only <unk>
            most = max(c.values(), default=0)
            raise DataError(
                f"data.min_freq {least}: no {side} token is that frequent (the most "
                f"frequent occurs {most} times): lower data.min_freq"
            )
    if cfg.data.bpe_dropout:
        check_bpe(src_tok, tgt_tok, train_pairs)
        src_vocab = src_vocab.extended(src_tok.pieces_within(s for s, _ in train_pairs))
        tgt_vocab = tgt_vocab.extended(tgt_tok.pieces_within(t for _, t in train_pairs))
    return src_vocab, tgt_vocab


def tokenizer_states(d: Prepared) -> dict[str, Any]:
    """The tokenizers and vocabularies of ``d`` as a checkpoint holds them (what
    ``prepare(..., resumed=...)`` takes back)."""
    return {
        "src_tokenizer": d.src_tokenizer.to_state(),
        "tgt_tokenizer": d.tgt_tokenizer.to_state(),
        "src_vocab": d.src_vocab.to_state(),
        "tgt_vocab": d.tgt_vocab.to_state(),
    }
