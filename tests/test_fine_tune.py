"""``train.init_from``: a new run starts from a trained checkpoint's weights, tokenizers
and vocabularies, with a fresh optimizer, schedule and step count (fine-tuning)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_train import one_thread, read_log, tiny, write_yaml  # noqa: F401 (fixture)

from rnnkit.checkpoint import CheckpointError, load_checkpoint
from rnnkit.cli import main
from rnnkit.config import config_from_dict
from rnnkit.train import Trainer, train


@pytest.fixture(scope="module")
def parent(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy-task model trained 200 steps (word vocabulary)."""
    out = tmp_path_factory.mktemp("parent")
    steps = {"max_steps": 200, "validate_every": 100, "checkpoint_every": 100}
    train(config_from_dict(tiny(model={"dropout": 0.0, "emb_dropout": 0.0}, train=steps)), out)
    return out / "last.pt"


def child(parent: Path, **train_keys: object) -> dict:
    return tiny(
        model={"dropout": 0.0, "emb_dropout": 0.0},
        train={"init_from": str(parent), "seed": 7, "lr": 0.003, **train_keys},
        data={"task_options": {"min_len": 2}},
    )


def test_starts_from_the_weights_and_vocabularies_with_a_fresh_optimizer(parent, tmp_path):
    saved = load_checkpoint(parent)
    t = Trainer(config_from_dict(child(parent)), tmp_path / "child")
    for name, w in t.model.state_dict().items():
        torch.testing.assert_close(w, saved["model"][name], rtol=0, atol=0)
    assert t.data.src_vocab.to_state() == saved["src_vocab"]
    assert t.data.tgt_vocab.to_state() == saved["tgt_vocab"]
    assert t.at.step == 0 and not t.opt.state  # no Adam moments carried over
    assert t.opt.param_groups[0]["lr"] == pytest.approx(0.003)


def test_fine_tuned_run_begins_where_the_parent_ended(parent, tmp_path):
    """Its first logged loss is the trained model's, far below a run from scratch."""
    fresh = tiny(model={"dropout": 0.0, "emb_dropout": 0.0}, train={"max_steps": 5})
    train(config_from_dict(fresh), tmp_path / "fresh")
    lines: list[str] = []
    train(config_from_dict(child(parent, max_steps=5)), tmp_path / "child", log=lines.append)
    assert any(line.startswith(f"initialised from {parent} (step 200)") for line in lines)
    first = [r for r in read_log(tmp_path / "child") if r["split"] == "train"][0]
    scratch = [r for r in read_log(tmp_path / "fresh") if r["split"] == "train"][0]
    assert int(first["step"]) == 5
    parent_log = [float(r["loss"]) for r in read_log(parent.parent) if r["split"] == "train"]
    assert parent_log[-1] < parent_log[0] - 1.0  # the parent learnt something
    assert float(first["loss"]) < float(scratch["loss"]) - 1.0
    assert float(first["loss"]) == pytest.approx(parent_log[-1], abs=0.3)


def test_resume_continues_the_child_not_the_parent(parent, tmp_path):
    out = tmp_path / "child"
    train(config_from_dict(child(parent, max_steps=10)), out)
    lines: list[str] = []
    train(config_from_dict(child(parent, max_steps=15)), out, resume=True, log=lines.append)
    assert any("resumed from" in line and "step 10" in line for line in lines)
    assert not any(line.startswith("initialised from") for line in lines)
    assert load_checkpoint(out / "last.pt")["step"] == 15


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model": {"hidden_size": 24}}, "model.hidden_size 16 there, 24 here"),
        # the same shapes, another function (Cho's GRU): it was taken without a word
        (
            {"model": {"cell_kwargs": {"reset_after": False}}},
            "model.cell_kwargs {} there, {'reset_after': False} here",
        ),
        ({"data": {"lowercase": True}}, "trained with data.lowercase false"),
        ({"train": {"init_from": "nowhere.pt"}}, "nowhere.pt: checkpoint not found"),
    ],
)
def test_a_parent_that_does_not_fit_is_one_line(parent, tmp_path, capsys, change, message):
    cfg = child(parent)
    for section, body in change.items():
        cfg[section] = {**cfg[section], **body}
    path = write_yaml(tmp_path / "c.yaml", cfg)
    assert main(["train", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    with pytest.raises(CheckpointError, match=message):
        Trainer(config_from_dict(cfg), tmp_path / "out2")
