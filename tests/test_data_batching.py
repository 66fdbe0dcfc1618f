"""Batching: bucketing under a token budget, padding, BOS / EOS, order restoration."""

from __future__ import annotations

import random

import pytest
import torch

from rnnkit.data import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    Batch,
    CharTokenizer,
    DataError,
    Example,
    Vocab,
    WordTokenizer,
    encode_pairs,
    make_batches,
    make_src_batches,
    make_task,
    restore_order,
)


def random_examples(n: int, seed: int = 0) -> list[Example]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        src = [rng.randint(4, 20) for _ in range(rng.randint(1, 30))] + [EOS_ID]
        tgt = [rng.randint(4, 20) for _ in range(rng.randint(0, 30))]
        out.append(Example(src, tgt, i))
    out.append(Example([5] * 200 + [EOS_ID], [6] * 3, n))  # wider than the budget
    return out


def check_batch(batch: Batch, by_index: dict[int, Example]) -> None:
    for row, idx in enumerate(batch.indices.tolist()):
        ex = by_index[idx]
        n = len(ex.src)
        assert batch.src_lengths[row] == n
        assert batch.src[row, :n].tolist() == ex.src
        assert (batch.src[row, n:] == PAD_ID).all()
        want = [BOS_ID, *ex.tgt, EOS_ID]
        assert batch.tgt[row, : len(want)].tolist() == want
        assert (batch.tgt[row, len(want) :] == PAD_ID).all()
    assert batch.src.dtype == batch.tgt.dtype == torch.long
    assert batch.ntokens == sum(len(by_index[i].tgt) + 1 for i in batch.indices.tolist())


@pytest.mark.parametrize("shuffle", [False, True])
def test_make_batches_budget_and_padding(shuffle: bool) -> None:
    examples = random_examples(500)
    by_index = {ex.index: ex for ex in examples}
    budget = 256
    batches = make_batches(
        examples, batch_tokens=budget, batch_size=None, shuffle=shuffle, seed=1, pad_id=PAD_ID
    )
    seen = sorted(i for b in batches for i in b.indices.tolist())
    assert seen == list(range(len(examples)))  # every example exactly once
    for b in batches:
        width = max(b.src.shape[1], b.tgt.shape[1])
        assert len(b) * width <= budget or len(b) == 1
        check_batch(b, by_index)
    assert any(len(b) == 1 and b.src.shape[1] == 201 for b in batches)
    mean_fill = sum(len(b) * max(b.src.shape[1], b.tgt.shape[1]) for b in batches) / len(batches)
    assert mean_fill > budget / 2  # bucketing packs batches well


def test_make_batches_batch_size_and_seed() -> None:
    examples = random_examples(300)

    def order(seed: int, shuffle: bool = True) -> list[list[int]]:
        batches = make_batches(
            examples, batch_tokens=400, batch_size=8, shuffle=shuffle, seed=seed, pad_id=PAD_ID
        )
        assert all(len(b) <= 8 for b in batches)
        return [b.indices.tolist() for b in batches]

    assert order(3) == order(3)
    assert order(3) != order(4)
    assert order(3, shuffle=False) == order(4, shuffle=False)
    # unshuffled batches go from short to long sources
    firsts = [examples[b[0]].src for b in order(0, shuffle=False)]
    assert [len(s) for s in firsts] == sorted(len(s) for s in firsts)
    with pytest.raises(DataError, match="batch_tokens, batch_size"):
        make_batches(examples, None, None, shuffle=False, seed=0, pad_id=PAD_ID)


def test_encode_pairs_and_batch_on_real_tokens() -> None:
    pairs = make_task("dates", 100, seed=0)
    src_tok, tgt_tok = CharTokenizer(), CharTokenizer()
    src_vocab = Vocab.build(src_tok.encode(s) for s, _ in pairs)
    tgt_vocab = Vocab.build(tgt_tok.encode(t) for _, t in pairs)
    examples = encode_pairs(pairs, src_tok, tgt_tok, src_vocab, tgt_vocab)
    assert [ex.index for ex in examples] == list(range(100))
    (batch,) = make_batches(examples, None, 100, shuffle=False, seed=0, pad_id=src_vocab.pad_id)
    assert batch.to("cpu").src.shape == batch.src.shape
    for row, idx in enumerate(batch.indices.tolist()):
        source, target = pairs[idx]
        assert src_tok.decode(src_vocab.decode(batch.src[row])) == source
        assert tgt_tok.decode(tgt_vocab.decode(batch.tgt[row, 1:])) == target
    # the decoder predicts 10 characters of an ISO date + EOS for every row
    assert batch.ntokens == 11 * 100 == int((batch.tgt[:, 1:] != PAD_ID).sum())


def test_make_src_batches_restore_order() -> None:
    tok = WordTokenizer()
    lines = [f"{'w ' * (i * 7 % 13)}end" for i in range(40)]
    vocab = Vocab.build(tok.encode(s) for s in lines)
    ids = [vocab.encode(tok.encode(s)) for s in lines]
    batches = make_src_batches(ids, batch_size=6, pad_id=PAD_ID)
    assert all(len(b) <= 6 for b in batches)
    lengths = [n for b in batches for n in b.src_lengths.tolist()]
    assert lengths == sorted(lengths, reverse=True)
    for b in batches:
        for row, idx in enumerate(b.indices.tolist()):
            assert b.src[row, : b.src_lengths[row]].tolist() == ids[idx]
            assert (b.src[row, b.src_lengths[row] :] == PAD_ID).all()
    # outputs computed per batch come back in input order
    outputs = [[tok.decode(vocab.decode(row)) for row in b.src] for b in batches]
    assert restore_order(batches, outputs) == lines
    with pytest.raises(DataError, match="source 2 is empty"):
        make_src_batches([[4], [5], []], batch_size=2, pad_id=PAD_ID)
