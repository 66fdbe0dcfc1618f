"""train.precision: autocast to bf16 / fp16 (with a loss scaler), on the CPU here; the
device script runs the same on a GPU."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import rnnkit
from rnnkit.config import ConfigError, config_from_dict
from rnnkit.precision import Precision
from rnnkit.train import train

CPU = torch.device("cpu")


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="fp32, bf16, fp16"):
        Precision("fp8", CPU)
    with pytest.raises(ConfigError, match="train.precision"):
        config_from_dict({"data": {"task": "dates"}, "train": {"precision": "half"}})


@pytest.mark.parametrize(
    "name, dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)]
)
def test_autocast_reaches_the_products_not_the_recurrence(name, dtype):
    """Under the run's autocast a linear layer computes in the low dtype, while the
    explicit engine's recurrence stays float32 and equals its float32 self."""
    amp = Precision(name, CPU)
    lin = nn.Linear(4, 3)
    lstm = rnnkit.LSTM(4, 5, engine="explicit", bidirectional=True)
    x = torch.randn(6, 2, 4)
    with amp.autocast():
        assert lin(x).dtype == dtype
        out, (h, c) = lstm(x, lengths=torch.tensor([6, 3]))
    assert out.dtype == h.dtype == c.dtype == torch.float32
    torch.testing.assert_close(out, lstm(x, lengths=torch.tensor([6, 3]))[0], atol=0, rtol=0)


@pytest.mark.parametrize("name", ["bf16", "fp16"])
@pytest.mark.parametrize("engine", ["native", "explicit", "reference"])
def test_every_engine_keeps_its_recurrence_out_of_autocast(name, engine):
    """Any engine, packed or padded, and the decoder's cells: under autocast the layer
    gives exactly its float32 result (torch's own LSTM on a padded batch would return
    bf16 under bf16, and fail in oneDNN under fp16 on the CPU)."""
    from torch.nn.utils.rnn import pack_padded_sequence

    from rnnkit.cells.stacked import StackedCell

    torch.manual_seed(0)
    lstm = rnnkit.LSTM(4, 5, engine=engine, bidirectional=True)
    x = torch.randn(6, 2, 4)
    packed = pack_padded_sequence(x, torch.tensor([6, 3]))
    cell = StackedCell("LSTM", 4, 5, 2, 0.0)
    h = torch.randn(2, 2, 5)
    calls = [lambda: lstm(x)[0], lambda: lstm(packed)[0].data, lambda: cell.step(x[0], h, h)[0]]
    for call in calls:
        want = call()
        with Precision(name, CPU).autocast():
            got = call()
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, want, atol=0, rtol=0)


def test_fp16_scaler_skips_an_overflowing_update():
    """A gradient that overflowed: no update, and the scale halves."""
    amp = Precision("fp16", CPU)
    assert amp.scaler is not None
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    scale = amp.scaler.get_scale()
    amp.backward(model(torch.ones(2, 3)).sum())
    model.weight.grad[0, 0] = math.inf
    amp.step(opt, model, clip=1.0)
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters()))
    assert amp.scaler.get_scale() == scale / 2
    opt.zero_grad()
    amp.backward(model(torch.ones(2, 3)).sum())  # a finite gradient: the update happens
    amp.step(opt, model, clip=1.0)
    assert not torch.equal(before[0], model.weight)


def _dates(out, precision: str, max_steps: int, device: str = "cpu", **extra):
    d = {
        "data": {"task": "dates", "task_size": 200, "task_dev": 8, "task_test": 8},
        "model": {
            "emb_size": 16,
            "hidden_size": 32,
            "engine": extra.pop("engine", "explicit"),
            "cell": extra.pop("cell", "gru"),
        },
        "train": {
            "batch_size": 20,
            "lr": 0.01,
            "scheduler": "none",
            "max_steps": max_steps,
            "validate_every": 15,
            "checkpoint_every": 5,
            "log_every": 5,
            "patience": 0,
            "device": device,
            "precision": precision,
            **extra,
        },
        "decode": {"beam_size": 1, "max_len_a": 0.0, "max_len_b": 12},
    }
    return train(config_from_dict(d), out, resume=(out / "last.pt").exists())


@pytest.mark.parametrize("precision, graphs", [("bf16", "off"), ("fp16", "off"), ("bf16", "on")])
def test_low_precision_trains(tmp_path, precision, graphs):
    """30 updates in bf16 / fp16 (and bf16 on static shapes): every logged loss finite,
    and the loss falls."""
    result = _dates(tmp_path, precision, 30, graphs=graphs)
    losses = [row["loss"] for row in result.history if row["split"] == "train"]
    assert len(losses) >= 5 and all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.8 * losses[0]


def test_fp16_resume_restores_the_loss_scale(tmp_path):
    """last.pt carries the scaler: 10 + 5 updates end where 15 do."""
    _dates(tmp_path / "a", "fp16", 15)
    _dates(tmp_path / "b", "fp16", 10)
    state = torch.load(tmp_path / "b" / "last.pt", weights_only=False)
    assert state["scaler"]["scale"] > 0
    _dates(tmp_path / "b", "fp16", 15)
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=False)["model"]
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=0, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (device script)")
@pytest.mark.parametrize("precision, graphs", [("bf16", "off"), ("fp16", "off"), ("bf16", "auto")])
def test_low_precision_trains_on_cuda(tmp_path, precision, graphs):
    result = _dates(tmp_path, precision, 30, device="cuda", graphs=graphs)
    losses = [row["loss"] for row in result.history if row["split"] == "train"]
    assert len(losses) >= 5 and all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.8 * losses[0]
