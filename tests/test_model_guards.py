"""The model-level Python API refuses what it cannot do, in one ValueError that says
what to change, instead of failing deep inside torch (or silently decoding forever):
special ids, layer counts, empty batches, shapes, teacher forcing, search and scoring
arguments."""

from __future__ import annotations

import pytest
import torch
from toy import one_thread, word_bundle

from rnnkit import BahdanauAttention
from rnnkit.model import Seq2Seq
from rnnkit.scoring import score_pairs
from rnnkit.search import beam_search, greedy_search


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


@pytest.mark.parametrize(
    ("kw", "says"),
    [
        ({"bos_id": 11}, "bos_id 11 is not an id of the target vocabulary (0..10)"),
        ({"eos_id": 0}, "pad_id 0, bos_id 2 and eos_id 0 must be three ids"),
        ({"eos_id": 2}, "pad_id 0, bos_id 2 and eos_id 2 must be three ids"),
        ({"dec_layers": 0}, "dec_layers must be at least 1, got 0"),
        ({"enc_layers": -1}, "enc_layers must be at least 1, got -1"),
        ({"tgt_embed_init": "xavier"}, "got 'xavier'"),
        ({"attention": "luong", "luong_score": "dot"}, "use 'general' or 'concat', or"),
    ],
)
def test_a_model_that_cannot_work_is_refused_when_made(kw, says):
    with pytest.raises(ValueError, match=says.replace("(", r"\(").replace(")", r"\)")):
        Seq2Seq(10, 11, 6, 8, **kw)
    with pytest.raises(ValueError, match="tgt_vocab_size must be at least 1"):
        Seq2Seq(10, 0, 6, 8)


def test_empty_batches_shapes_and_teacher_forcing():
    model = Seq2Seq(10, 11, 6, 8).eval()
    empty, none = torch.zeros(0, 5, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    assert greedy_search(model, empty, none) == [] and beam_search(model, empty, none, 3) == []
    with pytest.raises(ValueError, match="the batch is empty"):
        model(empty, none, torch.zeros(0, 3, dtype=torch.long))
    src, lengths = torch.randint(4, 10, (2, 5)), [5, 3]  # a list, as torch's packing takes
    logits, _ = model(src, lengths, torch.randint(4, 11, (2, 4)))
    assert logits.shape == (2, 4, 11)
    for tgt in (torch.zeros(2, 0, dtype=torch.long), torch.zeros(3, 4, dtype=torch.long)):
        with pytest.raises(ValueError, match="tgt_in must be"):
            model(src, lengths, tgt)
    with pytest.raises(ValueError, match=r"teacher_forcing must lie in \[0, 1\], got 1.5"):
        model(src, lengths, torch.randint(4, 11, (2, 4)), teacher_forcing=1.5)
    for beam in (0, 2.0):
        with pytest.raises(ValueError, match="beam_size must be an int ≥ 1"):
            beam_search(model, src, torch.tensor(lengths), beam)  # type: ignore[arg-type]


def test_attention_of_other_sizes_says_so():
    att = BahdanauAttention(8, 6)
    with pytest.raises(ValueError, match="query size 7 and key size 6, but this module takes"):
        att(torch.zeros(2, 7), torch.zeros(2, 3, 6))


def test_score_pairs_arguments():
    bundle = word_bundle()
    with pytest.raises(ValueError, match="lists of sentences, not one string"):
        score_pairs(bundle, "a b", "c d")
    for size in (0, -1):
        with pytest.raises(ValueError, match="batch_size must be ≥ 1"):
            score_pairs(bundle, ["a b"], ["c d"], batch_size=size)
