"""Details of the library that a mutation pass found untested: resume and fine-tuning,
custom cells' buffers and reprs, the layers' engine choice, the decoder's dropout masks,
word detokenisation, vocabularies, data notes, checkpoint and config messages, the
distributed checks. Each test fails with the mutant it was written for."""

from __future__ import annotations

import csv
import shutil
from typing import NamedTuple

import pytest
import torch
from test_train import one_thread, tiny
from torch import Tensor
from toy import word_bundle

import rnnkit
from rnnkit.atomic import write_atomically
from rnnkit.cells.regularisers import Regularisers
from rnnkit.cells.stacked import StackedCell
from rnnkit.checkpoint import (
    CheckpointError,
    _load_weights,
    check_cell,
    load_checkpoint,
    save_checkpoint,
    step_of,
)
from rnnkit.config import ConfigError, config_from_dict, load_config
from rnnkit.data import DataError, Vocab, WordTokenizer
from rnnkit.data.vocab import SPECIALS
from rnnkit.distributed import Dist, _backend
from rnnkit.runs import changed_keys, load_entry
from rnnkit.train import train

assert one_thread  # an autouse fixture of test_train

STEPS = {"max_steps": 2, "validate_every": 2, "checkpoint_every": 2}

# ---------------------------------------------------------------- resume


def test_resuming_a_fine_tuned_run_needs_no_parent(tmp_path):
    train(config_from_dict(tiny(train=STEPS)), tmp_path / "p")
    parent = tmp_path / "parent.pt"
    shutil.copy(tmp_path / "p" / "last.pt", parent)
    cfg = tiny(train={**STEPS, "init_from": str(parent)})
    train(config_from_dict(cfg), tmp_path / "c")
    parent.unlink()  # moved or deleted: the child holds all it needs
    cfg["train"]["max_steps"] = 3
    train(config_from_dict(cfg), tmp_path / "c", resume=True)
    assert load_checkpoint(tmp_path / "c" / "last.pt")["step"] == 3


def test_training_time_adds_up_across_a_resume_and_the_log_keeps_the_first_part(tmp_path):
    steps = {**STEPS, "log_every": 1}
    train(config_from_dict(tiny(train=steps)), tmp_path / "r")
    last = tmp_path / "r" / "last.pt"
    ckpt = load_checkpoint(last)
    ckpt.pop("format")
    ckpt["progress"]["elapsed"] = 1000.0  # as if the first part had trained 1000 s
    save_checkpoint(last, ckpt)
    train(config_from_dict(tiny(train={**steps, "max_steps": 4})), tmp_path / "r", resume=True)
    assert load_checkpoint(last)["progress"]["elapsed"] >= 1000.0
    with open(tmp_path / "r" / "log.csv", encoding="utf-8") as f:
        rows = [int(r["step"]) for r in csv.DictReader(f) if r["split"] == "train"]
    assert rows == [1, 2, 3, 4]


# ---------------------------------------------------------------- cells and layers


class _H(NamedTuple):
    hidden: Tensor


class ScaleCell(rnnkit.Cell):
    """A cell that keeps a tensor under its keyword's name, and a scratch buffer."""

    Gates = _H

    def __init__(self, input_size, hidden_size, bias=True, scale=1.0, **kw):
        super().__init__(input_size, hidden_size, bias, **kw)
        self.scale = torch.ones(hidden_size) * scale
        self.register_buffer("scratch", torch.zeros(hidden_size), persistent=False)

    def step(self, gi, state):
        h = torch.tanh(gi + self.hh(state[0]) + self.scratch)
        return (h,), _H(h)


def test_a_custom_cell_keyword_that_does_not_compare_stays_out_of_the_repr():
    assert repr(ScaleCell(3, 4)) == "ScaleCell(3, 4)"


def test_chunks_true_is_not_a_positive_integer():
    class BoolChunks(ScaleCell):
        chunks = True

    with pytest.raises(TypeError, match="chunks must be a positive integer"):
        BoolChunks(3, 4)


def test_a_cells_non_persistent_buffer_stays_out_of_the_layers_state_dict():
    layer = rnnkit.Recurrent(ScaleCell, 3, 4)
    assert "scratch_l0" in dict(layer.named_buffers())
    assert "scratch_l0" not in layer.state_dict()


def test_the_layers_own_cell_keeps_no_mask_after_a_compiled_pass(monkeypatch):
    layer = rnnkit.Recurrent(ScaleCell, 3, 4, recurrent_dropout=0.5).train()
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)  # bind lends the cell
    layer(torch.randn(5, 2, 3))
    assert layer._cells[0][0].recurrent_mask is None


def test_a_decoder_stack_forgets_its_training_mask_in_evaluation():
    torch.manual_seed(0)
    s = StackedCell("LSTM", 3, 4, regularisers=Regularisers.make(0.0, 0.5, 0.0, "x", True))
    x, h, c = torch.randn(2, 3), torch.randn(2, 1, 4), torch.randn(2, 1, 4)
    before = s.eval().step(x, h, c, fused=False)[0]
    s.train().step(x, h, c, fused=False, mask=s.draw(h))
    assert torch.equal(s.eval().step(x, h, c, fused=False)[0], before)


def test_auto_runs_the_fused_kernel_unless_gates_are_asked_for():
    m = rnnkit.LSTM(3, 4)
    assert (m._pick_engine(False), m._pick_engine(True)) == ("native", "explicit")


def test_the_repr_shows_an_engine_other_than_auto():
    assert "engine='explicit'" in repr(rnnkit.LSTM(3, 4, engine="explicit"))
    assert "engine" not in repr(rnnkit.LSTM(3, 4))


def test_native_with_every_length_short_keeps_the_padded_length():
    out, _ = rnnkit.LSTM(3, 4, engine="native")(torch.randn(5, 2, 3), lengths=[3, 2])
    assert out.shape == (5, 2, 4) and out[3:].abs().sum() == 0


# ---------------------------------------------------------------- data


def test_words_hug_guillemets_and_currency():
    tok = WordTokenizer()
    assert tok.decode(["«", "oui", "»", "coûte", "$", "5", "."]) == "«oui» coûte $5."
    assert tok.decode(tok.encode("«oui» coûte $5.")) == "«oui» coûte $5."


def test_new_tokens_are_appended_sorted():
    """(in the order they came, ids depended on the string hash seed of the process)"""
    new = [f"t{i:02d}" for i in range(20)][::-1]
    assert Vocab(list(SPECIALS)).extended(new).tokens[4:] == sorted(new)


def test_a_token_with_a_carriage_return_cannot_be_saved(tmp_path):
    with pytest.raises(DataError, match="cannot be written one per line"):
        Vocab([*SPECIALS, "a\rb"]).save(tmp_path / "v.txt")


def _prepared(tmp_path, dev: list[str], **keys: object) -> list[str]:
    from rnnkit.prepare import prepare

    for name, src in (("train", ["a b", "c d"] * 5), ("dev", dev)):
        (tmp_path / f"{name}.de").write_text("\n".join(src) + "\n", encoding="utf-8")
        (tmp_path / f"{name}.en").write_text("x\n" * len(src), encoding="utf-8")
    data = {"data_dir": str(tmp_path), "train": "train", "dev": "dev", "src": "de",
            "tgt": "en", "tokenizer": "word", **keys}  # fmt: skip
    said: list[str] = []
    prepare(config_from_dict({"data": data}), tmp_path, say=said.append, write=False)
    return said


def test_a_dev_source_of_exactly_max_len_tokens_gets_no_note(tmp_path):
    assert not [m for m in _prepared(tmp_path, ["a " * 25], max_len=25) if "dev sources" in m]


def test_min_freq_alone_says_the_vocabulary_sizes(tmp_path):
    assert any(m.startswith("vocabularies: ") for m in _prepared(tmp_path, ["a b"], min_freq=2))


# ---------------------------------------------------------------- checkpoints, config, files


def test_changed_keys_names_four_then_counts_the_rest():
    saved = {"train": {f"k{i}": i for i in range(6)}}
    now = {"train": {f"k{i}": i + 1 for i in range(6)}}
    said = changed_keys(saved, now)
    assert said.count("→") == 4 and said.endswith(", and 2 more")
    assert changed_keys(saved, saved) == ""


def test_an_entry_missing_a_key_says_what_it_lacks():
    with pytest.raises(
        CheckpointError, match=r"p\.pt: its scheduler entry does not load \(lacks 'x'\)"
    ):
        load_entry("p.pt", "scheduler", lambda s: s["x"], {})


def test_weights_that_do_not_fit_name_the_first_and_count_the_rest():
    b = word_bundle()
    state = {**b.model.state_dict(), "x": torch.zeros(1), "y": torch.zeros(1)}
    with pytest.raises(CheckpointError, match=r"m\.pt: .*: x is not in the model \(and 1 more\)$"):
        _load_weights(b.model, state, "m.pt", "12 and 12 tokens")


def test_a_step_of_true_is_no_integer():
    with pytest.raises(CheckpointError, match="m.pt: step is a bool, not an integer"):
        step_of({"step": True}, "m.pt")


def test_a_stock_cell_too_big_to_allocate_stays_a_runtime_error():
    """(for the CLI's out-of-memory line, not a 'model: gru: ...' ConfigError)"""
    with pytest.raises(RuntimeError):
        check_cell(load_config(None, ["model.hidden_size=1000000", "model.emb_size=8"]))


def test_a_large_negative_float_is_out_of_range():
    with pytest.raises(ConfigError, match=r"model.forget_bias must be within ±3.4e\+38"):
        load_config(None, ["model.forget_bias=-1e39"])


def test_a_writers_own_runtime_error_passes_through_and_leaves_nothing(tmp_path):
    def fail(f: object) -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="^boom$"):
        write_atomically(tmp_path / "out.bin", fail, binary=True)
    assert list(tmp_path.iterdir()) == []


def test_a_file_reached_through_proc_is_appended_to(tmp_path):
    f = tmp_path / "all.txt"
    f.write_text("earlier\n", encoding="utf-8")
    with open(f, "a", encoding="utf-8") as held:
        write_atomically(f"/proc/self/fd/{held.fileno()}", lambda out: out.write("new\n"))
    assert f.read_text(encoding="utf-8") == "earlier\nnew\n"


# ---------------------------------------------------------------- several processes


def test_one_named_gpu_for_several_processes_is_refused():
    with pytest.raises(ConfigError, match="train.device=cuda:0 names one GPU, but 2 processes"):
        _backend(torch.device("cuda", 0), "cuda:0", 2)


def test_the_resumed_note_says_one_process_in_the_singular():
    assert (
        Dist(0, 2)
        .resumed_note(1)
        .startswith("note: last.pt was written by 1 process, this run has 2")
    )
    assert Dist(0, 2).resumed_note(2) is None


def test_torch_func_transforms_take_lengths_on_the_default_engine():
    """engine="auto" packed for the fused kernel under torch.func.grad and vmap: "Cannot
    access data pointer of Tensor that doesn't have storage"; it takes the explicit
    engine there, as under torch.export."""
    torch.manual_seed(0)
    m, x, lengths = rnnkit.LSTM(3, 4), torch.randn(5, 3, 3), [5, 2, 4]
    params = dict(m.named_parameters())
    grads = torch.func.grad(
        lambda p: torch.func.functional_call(m, p, (x,), {"lengths": lengths})[0].sum()
    )(params)
    m(x, lengths=lengths)[0].sum().backward()
    for name, p in m.named_parameters():
        assert torch.allclose(grads[name], p.grad, atol=1e-6), name
    xs = torch.randn(2, 5, 3, 3)
    batched = torch.func.vmap(lambda one: m(one, lengths=lengths)[0])(xs)
    assert torch.allclose(batched[1], m(xs[1], lengths=lengths)[0], atol=1e-6)


def test_forward_mode_ad_takes_lengths_on_the_default_engine():
    """Under a dual_level, engine="auto" packed: "Trying to use forward AD with
    _pack_padded_sequence that does not support it"."""
    import torch.autograd.forward_ad as fwAD

    torch.manual_seed(0)
    m, x, t, lengths = rnnkit.LSTM(3, 4), torch.randn(5, 3, 3), torch.randn(5, 3, 3), [5, 2, 4]
    ref = rnnkit.LSTM(3, 4, engine="reference")
    ref.load_state_dict(m.state_dict())
    with fwAD.dual_level():
        tangent = fwAD.unpack_dual(m(fwAD.make_dual(x, t), lengths=lengths)[0]).tangent
        expected = fwAD.unpack_dual(ref(fwAD.make_dual(x, t), lengths=lengths)[0]).tangent
    assert tangent is not None and torch.allclose(tangent, expected, atol=1e-6)
