"""rnnkit used from Python as a library user writes it (a review from that side): misuse
of Seq2Seq, the searches, load_bundle, score and Config is one clear error; the GRU's
form shows in its repr; translate_lines takes the output limit as the CLI does."""

from __future__ import annotations

from typing import Any, NamedTuple

import pytest
import torch
from torch import Tensor
from toy import one_thread, word_bundle  # noqa: F401 (fixture)

import rnnkit
from rnnkit.search import greedy_search
from rnnkit.translate import translate_lines


@pytest.fixture
def model() -> rnnkit.Seq2Seq:
    torch.manual_seed(0)
    return rnnkit.Seq2Seq(13, 13, 8, 16).eval()


@pytest.mark.parametrize(
    ("src", "says"),
    [
        (torch.tensor([4, 5, 6]), r"src must be \(B, S\) token ids, got shape \(3,\) \(one"),
        (torch.tensor([[4.0, 5.0, 6.0]]), "src must be integer token ids, got torch.float32"),
        (
            torch.tensor([[4, 5, 13]]),
            r"src holds token id 13; the source vocabulary has ids 0\.\.12",
        ),
        (torch.tensor([[4, -1, 6]]), "src holds token id -1"),
    ],
)
def test_a_src_that_is_not_ids_of_the_vocabulary_is_one_error(model, src, says) -> None:
    """A 1-D src was an IndexError from inside encode (or, in forward, blamed tgt_in);
    an id past the vocabulary an IndexError 13 frames inside F.embedding."""
    lengths = [src.shape[-1]] * (src.shape[0] if src.dim() == 2 else 1)
    for call in (
        lambda: model.encode(src, lengths),
        lambda: model(src, lengths, torch.tensor([[2, 4]] * len(lengths))),
        lambda: greedy_search(model, src, lengths),
    ):
        with pytest.raises(ValueError, match=says):
            call()


def test_the_encoder_takes_a_list_of_lengths_as_seq2seq_does(model) -> None:
    src = torch.randint(4, 13, (3, 6))
    states, final, _ = model.encoder(src, [6, 3, 5])
    want, _, _ = model.encoder(src, torch.tensor([6, 3, 5]))
    assert torch.equal(states, want) and final.shape == (3, 32)  # (bidirectional)


@pytest.mark.parametrize("batch_first", [False, True])
def test_lengths_of_the_wrong_size_say_where_the_batch_is(batch_first: bool) -> None:
    lstm = rnnkit.LSTM(4, 6, batch_first=batch_first)
    x = torch.randn(3, 5, 4)
    with pytest.raises(ValueError, match=f"B being the input's dim {int(not batch_first)} "):
        lstm(x, lengths=[2] * 4)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA machine has the device")
def test_load_bundle_on_a_torch_device_this_machine_lacks(tmp_path) -> None:
    """A torch.device("cuda") skipped the check a "cuda" string has: an AssertionError
    9 frames deep ("Torch not compiled with CUDA enabled")."""
    from toy import save_bundle

    from rnnkit.checkpoint import load_bundle
    from rnnkit.config import ConfigError

    path = save_bundle(word_bundle(), tmp_path / "m.pt")
    with pytest.raises(ConfigError, match="device=cuda: this machine has no CUDA GPU"):
        load_bundle(path, device=torch.device("cuda"))
    assert load_bundle(path, device=torch.device("cpu")).step == 0


def test_the_grus_repr_says_reset_after_false() -> None:
    assert repr(rnnkit.GRU(8, 16, reset_after=False)) == "GRU(8, 16, reset_after=False)"
    assert repr(rnnkit.GRU(8, 16)) == "GRU(8, 16)"


def test_sampling_given_in_place_of_n_is_a_type_error(model) -> None:
    from rnnkit.sampling import Sampling, sample_search

    with pytest.raises(TypeError, match="n must be an int, got Sampling; pass sampling="):
        sample_search(model, torch.tensor([[4, 5]]), [2], Sampling())  # type: ignore[arg-type]


def test_references_nested_as_sacrebleu_takes_them_point_to_extra_references() -> None:
    from rnnkit.evaluate import score

    with pytest.raises(TypeError, match="several references per sentence go in extra_refer"):
        score(["a b"], [["a b"], ["a c"]])  # type: ignore[list-item]
    assert score(["a b"], ["a b"], extra_references=[["a c"]])["n_refs"] == 2


def test_a_config_section_given_as_a_dict_points_to_config_from_dict() -> None:
    """It was "must be called with a dataclass type or instance", later, elsewhere."""
    from rnnkit.config import Config

    with pytest.raises(TypeError, match=r"takes a ModelConfig, got a dict; a dict goes through"):
        Config(model={"hidden_size": 8})  # type: ignore[arg-type]


class _Hidden(NamedTuple):
    hidden: Tensor


class PlainTupleCell(rnnkit.Cell):
    Gates = _Hidden

    def step(self, gi: Tensor, state: Any) -> Any:
        h = torch.tanh(gi + self.hh(state[0]))
        return (h,), (h,)  # a plain tuple, not PlainTupleCell.Gates


def test_gates_in_a_plain_tuple_are_told_to_use_the_declared_gates() -> None:
    """It said to declare Gates, which the cell had done."""
    layer = rnnkit.Recurrent(PlainTupleCell, 3, 4)
    with pytest.raises(ValueError, match=r"return PlainTupleCell\.Gates\(\.\.\.\), not a plain"):
        layer(torch.randn(2, 1, 3))


def test_translate_lines_takes_the_output_limit() -> None:
    """As --max-len-a / --max-len-b do (from Python the config had to be edited)."""
    b = word_bundle()
    with torch.no_grad():
        b.model.W_out.bias[b.tgt_vocab.eos_id] = -1e4  # never ends: the limit cuts it
    default = translate_lines(b, ["a b c d"], beam_size=1)[0][0]
    short = translate_lines(b, ["a b c d"], beam_size=1, max_len_a=0, max_len_b=2)[0][0]
    assert len(default.out_tokens) == 1.0 * 5 + 3 and len(short.out_tokens) == 2
    with pytest.raises(ValueError, match="the output limit a·|x| + b is 0"):
        translate_lines(b, ["a"], max_len_a=0, max_len_b=0)
    with pytest.raises(ValueError, match="max_len_b must be an int"):
        translate_lines(b, ["a"], max_len_b=2.5)  # type: ignore[arg-type]


def test_a_cell_named_as_info_prints_it_says_the_names_are_lower_case() -> None:
    """`rnnkit info` calls the cell LSTM; Seq2Seq(cell="LSTM") said only "must be one of"."""
    with pytest.raises(ValueError, match=r"got 'LSTM' \(the names are lower case: 'lstm'\)"):
        rnnkit.Seq2Seq(10, 10, 8, 16, cell="LSTM")


def test_a_config_choice_in_upper_case_says_the_names_are_lower_case() -> None:
    from rnnkit.config import ConfigError, config_from_dict

    with pytest.raises(ConfigError, match=r"got 'LSTM' \(the names are lower case: 'lstm'\)"):
        config_from_dict({"model": {"cell": "LSTM"}})
    with pytest.raises(ConfigError, match=r"got 'Bahdanau' \(the names are lower case"):
        config_from_dict({"model": {"attention": "Bahdanau"}})
