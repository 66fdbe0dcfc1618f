"""BPE-dropout (``data.bpe_dropout``): each epoch segments the training pairs anew with
randomly skipped merges, drawn from the epoch's seed the same way in every process, with
vocabularies that hold every piece a dropped merge can leave; resume stays exact."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest
from test_train import assert_same_parameters, interrupt_at, tiny

from rnnkit.checkpoint import CheckpointError, load_checkpoint
from rnnkit.config import ConfigError, config_from_dict, load_config
from rnnkit.data import UNK_ID, CharTokenizer, DataError, SentencePieceTokenizer, Vocab
from rnnkit.prepare import check_bpe, prepare
from rnnkit.train import train


def corpus(n: int = 400, seed: int = 0) -> list[str]:
    """Sentences of made-up words (the same every call)."""
    rng = random.Random(seed)
    letters = "aeioustrnlkm"
    words = ["".join(rng.choice(letters) for _ in range(rng.randint(2, 9))) for _ in range(150)]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(3, 12))) for _ in range(n)]


@pytest.fixture(scope="module")
def tok() -> SentencePieceTokenizer:
    return SentencePieceTokenizer.train(corpus(), vocab_size=200, model_type="bpe")


def draw(tok: SentencePieceTokenizer, seed: int, p: float = 0.3) -> list[list[str]]:
    rng = random.Random(seed)
    return [tok.sample(line, p, rng) for line in corpus(60, seed=1)]


def test_no_dropout_is_sentencepiece_bpe(tok):
    """p = 0 gives sentencepiece's own segmentation; a unigram model is told apart."""
    lines = corpus(300, seed=3)
    assert draw(tok, 0, p=0.0) == [tok.encode(line) for line in corpus(60, seed=1)]
    assert tok.bpe_mismatch(lines) is None
    unigram = SentencePieceTokenizer.train(corpus(), vocab_size=200, model_type="unigram")
    assert unigram.bpe_mismatch(lines) is not None
    with pytest.raises(DataError, match="needs a BPE model: the target model"):
        check_bpe(tok, unigram, [(line, line) for line in lines])


def test_a_seed_fixes_the_draws_in_any_process_and_the_text_survives(tok, tmp_path):
    """Same seed, same segmentations — also in another process (sentencepiece's own
    sampler draws differently there); another seed, others; the text is unchanged."""
    first = draw(tok, 5)
    assert draw(tok, 5) == first and draw(tok, 6) != first
    assert first != draw(tok, 5, p=0.0)
    assert [tok.decode(p) for p in first] == [tok.decode(tok.encode(s)) for s in corpus(60, 1)]
    model = tmp_path / "bpe.model"
    model.write_bytes(tok.model_proto)
    script = (
        "import sys; sys.path.insert(0, 'tests');"
        "from test_subword_sampling import draw;"
        "from rnnkit.data import SentencePieceTokenizer as S;"
        f"print(draw(S(open({str(model)!r}, 'rb').read()), 5))"
    )
    for _ in range(2):
        out = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == str(first)


def test_dropout_keeps_words_in_smaller_pieces(tok):
    """More dropout, more pieces; p close to 1 leaves (nearly) characters."""
    lengths = [sum(map(len, draw(tok, 1, p))) for p in (0.0, 0.1, 0.5, 0.99)]
    assert lengths == sorted(lengths) and lengths[0] < lengths[1] < lengths[2]
    chars = sum(len(line.replace(" ", "")) for line in corpus(60, seed=1))
    assert lengths[3] > 0.95 * chars


def test_pieces_within_hold_every_sampled_piece(tok):
    """What the vocabulary is extended with: a superset of the pieces of many draws, and
    a subset of the model's pieces."""
    lines = corpus(200, seed=2)
    within = tok.pieces_within(lines)
    assert within <= set(tok.pieces)
    rng = random.Random(0)
    drawn = {p for _ in range(5) for line in lines for p in tok.sample(line, 0.5, rng)}
    assert drawn <= within
    assert {p for line in lines for p in tok.encode(line)} <= within


def test_extended_vocab_keeps_the_ids_it_had():
    v = Vocab.build([["b", "a", "a"]])
    w = v.extended(["c", "a", "0"])
    assert w.tokens[: len(v)] == v.tokens and w.tokens[len(v) :] == ["0", "c"]
    assert v.extended(["a"]) is v


def test_word_and_char_tokenizers_refuse():
    with pytest.raises(DataError, match="BPE models only"):
        CharTokenizer().sample("abc", 0.1, random.Random(0))
    for kind in ("char", "unigram"):
        with pytest.raises(ConfigError, match="data.bpe_dropout"):
            load_config(None, [f"data.tokenizer={kind}", "data.bpe_dropout=0.1"])
    with pytest.raises(ConfigError, match="data.bpe_dropout"):
        load_config(None, ["data.bpe_dropout=1.5"])


def sampled_config(**train_cfg):
    d = tiny(train=train_cfg)
    d["data"].update(tokenizer="bpe", vocab_size=60, bpe_dropout=0.2)
    return d


def test_each_epoch_draws_its_own_segmentation_within_the_vocabulary(tmp_path):
    cfg = config_from_dict(sampled_config())
    data = prepare(cfg, tmp_path, write=False)
    assert data.epoch_examples(0.0, 0) is data.examples
    epochs = [data.epoch_examples(0.2, seed) for seed in (0, 1, 0)]
    ids = [[(e.src, e.tgt) for e in ex] for ex in epochs]
    assert ids[0] == ids[2] and ids[0] != ids[1]
    assert ids[0] != [(e.src, e.tgt) for e in data.examples]
    for seed in range(4):  # no sampled piece falls outside the vocabularies
        for e in data.epoch_examples(0.2, seed + 10):
            assert UNK_ID not in e.src and UNK_ID not in e.tgt
    plain = prepare(config_from_dict(tiny(data={"tokenizer": "bpe", "vocab_size": 60})), tmp_path)
    assert len(data.src_vocab) > len(plain.src_vocab)


def test_resume_with_sampling_is_exact(tmp_path, monkeypatch):
    """Interrupted in its second epoch (resampled) and resumed: the same parameters as a
    run straight through; resuming a run trained without sampling, with it, is refused."""
    d = sampled_config(max_steps=30, validate_every=100, checkpoint_every=100)
    a, b = tmp_path / "a", tmp_path / "b"
    train(config_from_dict(d), a)
    with monkeypatch.context() as m:
        interrupt_at(m, 25)
        assert train(config_from_dict(d), b).stopped == "interrupted"
    assert load_checkpoint(b / "last.pt")["progress"]["epoch"] == 1
    assert train(config_from_dict(d), b, resume=True).steps == 30
    assert_same_parameters(a / "last.pt", b / "last.pt")

    plain = sampled_config(max_steps=2)
    plain["data"]["bpe_dropout"] = 0.0
    train(config_from_dict(plain), tmp_path / "c")
    with pytest.raises(CheckpointError, match="bpe_dropout"):
        train(config_from_dict(sampled_config(max_steps=4)), tmp_path / "c", resume=True)
