"""Inputs a review fed to the command line that overflowed in torch, replaced a file the
user still needed, or named the wrong cause: each is now one line before any work."""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
from test_cli import one_line_error, run_cli
from test_train import one_thread, tiny, write_yaml
from torch import Tensor

from rnnkit.cells import Cell
from rnnkit.config import ConfigError, config_from_dict

assert one_thread  # an autouse fixture of test_train


@pytest.mark.parametrize(
    ("section", "key", "value", "says"),
    [
        ("decode", "max_len_b", 10**20, "decode.max_len_b must be within ±2147483647"),
        ("model", "hidden_size", 10**20, "model.hidden_size must be within ±2147483647"),
        ("decode", "beam_size", 2**31, "decode.beam_size must be within ±2147483647"),
        ("train", "lr", 1e39, "train.lr must be within ±3.4e+38 (float32)"),
        ("decode", "max_len_a", 1e300, "decode.max_len_a must be within ±3.4e+38"),
    ],
)
def test_numbers_beyond_what_torch_holds_are_config_errors(section, key, value, says):
    """max_len_b = 10^20 trained, then broke the first validation and kept no checkpoint;
    lr = 1e39 overflowed at step 1; hidden_size = 10^20 overflowed in torch.empty."""
    with pytest.raises(ConfigError, match=re.escape(says)):
        config_from_dict(tiny(**{section: {key: value}}))


def test_the_largest_numbers_allowed_and_a_seed_of_64_bits_pass():
    cfg = config_from_dict(tiny(decode={"max_len_b": 2**31 - 1}, train={"seed": 2**63 - 1}))
    assert cfg.decode.max_len_b == 2**31 - 1 and cfg.train.seed == 2**63 - 1


def test_an_integer_option_beyond_the_limit_is_a_usage_error(capsys):
    from rnnkit.cli import main

    with pytest.raises(SystemExit) as e:
        main(["translate", "m.pt", "--beam", str(10**20)])
    assert e.value.code == 2
    assert "--beam: expected an integer from 1 to 2147483647" in capsys.readouterr().err


@pytest.fixture(scope="module")
def steps(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from rnnkit.train import train

    out = tmp_path_factory.mktemp("steps")
    d = tiny(train={"max_steps": 4, "checkpoint_every": 2, "keep_checkpoints": 2})
    train(config_from_dict(d), out)
    return sorted(out.glob("step-*.pt"))


def test_average_refuses_to_write_over_one_of_its_checkpoints(steps, capsys):
    """It replaced step-20.pt with the average and said nothing."""
    before = steps[0].read_bytes()
    code, _, err = run_cli(capsys, "average", *steps, "--out", steps[0])
    assert code == 2
    assert one_line_error(err) == (
        f"rnnkit: error: --out {steps[0]}: is one of the checkpoints averaged; give another"
    )
    assert steps[0].read_bytes() == before


def test_a_folder_in_place_of_a_corpus_file_is_named_as_a_folder(tmp_path, capsys):
    (tmp_path / "train.en").mkdir()
    (tmp_path / "train.de").write_text("a\n", encoding="utf-8")
    data = {"task": None, "train": str(tmp_path / "train"), "src": "de", "tgt": "en"}
    d = tiny(data={**data, "dev_size": 1})
    cfg = write_yaml(tmp_path / "c.yaml", d)
    code, _, err = run_cli(capsys, "train", cfg, "--out", tmp_path / "run")
    assert code == 2
    assert one_line_error(err) == f"rnnkit: error: {tmp_path / 'train.en'}: is a folder, not a file"


@pytest.mark.parametrize("kind", ["loop", "fifo", "gz", "columns"])
def test_what_a_corpus_file_is_when_it_cannot_be_read_is_said(tmp_path, kind):
    """A loop of links and a FIFO were "file not found", as was a train.en beside its
    train.en.gz; data.src_col / tgt_col beside parallel files went unused."""
    import os

    from rnnkit.corpus_checks import check_corpora
    from rnnkit.data import DataError

    (tmp_path / "train.de").write_text("a\n", encoding="utf-8")
    en, data = tmp_path / "train.en", {"task": None, "train": str(tmp_path / "train")}
    says = {
        "loop": f"{en}: a symbolic link to nothing (or a loop of links)",
        "fifo": f"{en}: not a regular file (a device, pipe or socket)",
        "gz": f"{en}: file not found (train.en.gz is there: unpack it)",
        "columns": "c.yaml: data.src_col and data.tgt_col are columns of a TSV file: they "
        "need data.format: tsv",
    }[kind]
    if kind == "loop":
        en.symlink_to(en)
    elif kind == "fifo":
        os.mkfifo(en)
    elif kind == "gz":
        (tmp_path / "train.en.gz").write_bytes(b"\x1f\x8b")
    else:
        en.write_text("a\n", encoding="utf-8")
        data["tgt_col"] = 2
    cfg = config_from_dict(tiny(data={**data, "src": "de", "tgt": "en", "dev_size": 1}))
    with pytest.raises(DataError, match="^" + re.escape(says)):
        check_corpora(cfg, tmp_path, "c.yaml")


class _G(NamedTuple):
    h: Tensor


class BadShapeCell(Cell):
    """Its step returns h of the wrong width: Recurrent's check raised mid-training."""

    Gates = _G
    state = ("h",)

    def step(self, gi, state):
        h = torch.tanh(gi + self.hh(state[0]))[:, :3]
        return (h,), _G(h)


def test_custom_cells_that_break_are_one_line_before_any_data_work(tmp_path, capsys):
    (tmp_path / "broken_cell_module.py").write_text("def oops(:\n", encoding="utf-8")
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        for cell, says in [
            ("broken_cell_module:X", "cell 'broken_cell_module:X': cannot import it (SyntaxError"),
            ("test_input_limits:BadShapeCell", "BadShapeCell.step: state 'h' must keep its shape"),
        ]:
            cfg = write_yaml(tmp_path / "c.yaml", tiny(model={"cell": cell}))
            code, _, err = run_cli(capsys, "train", cfg, "--out", tmp_path / "run")
            assert code == 2 and says in one_line_error(err), err
            assert not (tmp_path / "run").exists()
    finally:
        sys.path.remove(str(tmp_path))


def test_a_keyword_the_cell_lacks_names_the_layer_and_the_cell():
    """It was "Cell.__init__() got an unexpected keyword argument", naming neither."""
    import rnnkit

    with pytest.raises(TypeError, match=r"Recurrent\(BadShapeCell\): BadShapeCell takes no "):
        rnnkit.Recurrent(BadShapeCell, 4, 8, forget_bias=1.0)
    assert rnnkit.Recurrent(rnnkit.LSTMCell, 4, 8, forget_bias=1.0)  # the LSTM family's


def test_average_names_the_model_key_that_differs(steps, tmp_path, capsys):
    """It said only "model config differs"."""
    from rnnkit.train import train

    other = tmp_path / "other"
    train(config_from_dict(tiny(model={"hidden_size": 12}, train={"max_steps": 2})), other)
    code, _, err = run_cli(
        capsys, "average", steps[0], other / "last.pt", "--out", tmp_path / "a.pt"
    )
    assert code == 2
    assert one_line_error(err) == (
        f"rnnkit: error: {other / 'last.pt'}: model.hidden_size is 12 here and 16 in "
        f"{steps[0]}: only checkpoints of one model average"
    )


@pytest.mark.parametrize("kind", ["folder", "binary", "data_dir", "figures", "no_multi30k"])
def test_experiment_checks_its_results_file_and_data_dir_before_the_run(tmp_path, capsys, kind):
    """A folder or a non-UTF-8 file as --results, or a figures/ beside it that is a file,
    failed after the whole run; a missing --data-dir, or one without Multi30k for an
    experiment that reads it, was ignored (Multi30k skipped)."""
    results, args, name = tmp_path / "R.md", [], "long-memory"
    if kind == "figures":
        (tmp_path / "figures").write_text("x", encoding="utf-8")
        says = f"--results {results}: its figures go into {tmp_path / 'figures'}/: "
    elif kind == "no_multi30k":
        name, args = "lstm-vs-gru", ["--data-dir", str(tmp_path)]
        says = f"--data-dir {tmp_path}: Multi30k not found in {tmp_path / 'multi30k'} (missing"
    elif kind == "folder":
        results.mkdir()
        says = f"{results}: is a folder, not a file"
    elif kind == "binary":
        results.write_bytes(b"\xff\xfe\x00")
        says = f"--results {results}: not UTF-8 text"
    else:
        args, says = ["--data-dir", str(tmp_path / "none")], f"--data-dir {tmp_path / 'none'}: not"
    code, _, err = run_cli(
        capsys, "experiment", name, "--quick", "--out", tmp_path / "o",
        "--results", results, *args,
    )  # fmt: skip
    assert code == 2 and says in one_line_error(err), err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "config, says",
    [
        ("multi30k_de_en.yaml", "`rnnkit data multi30k --out DIR/multi30k` fetches it)"),
        ("tatoeba_fr_en.yaml", "`rnnkit data tatoeba --out DIR/tatoeba-eng-fra` fetches it)"),
    ],
)
def test_a_missing_recipe_corpus_says_how_to_fetch_it_where_the_config_looks(
    tmp_path, config, says
):
    """It said `rnnkit data multi30k --out DIR` (which writes DIR/train.de, not the
    DIR/multi30k/train.de the config reads) for Tatoeba's file too."""
    from rnnkit.config import apply_overrides, load_config
    from rnnkit.corpus_checks import check_corpora
    from rnnkit.data import DataError

    root = Path(__file__).resolve().parent.parent / "configs"
    cfg = apply_overrides(load_config(root / config), [f"data.data_dir={tmp_path}"])
    with pytest.raises(DataError, match=re.escape(says)):
        check_corpora(cfg, root)
