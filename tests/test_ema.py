"""``train.ema_decay``: the moving average of the weights is the stated recurrence, training
is unchanged by it, validation and every checkpoint's ``model`` hold it, resume is exact."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from test_train import assert_same_parameters, interrupt_at, one_thread, read_log, tiny
from torch import Tensor, nn

import rnnkit.update as update_module
from rnnkit.about import checkpoint_info
from rnnkit.checkpoint import load_bundle, load_checkpoint
from rnnkit.config import ConfigError, config_from_dict
from rnnkit.ema import Ema, training_weights
from rnnkit.train import load_pairs, train
from rnnkit.validation import validate

assert one_thread  # an autouse fixture of test_train, imported to apply here too


def expected_average(trajectory: list[dict[str, Tensor]], decay: float) -> dict[str, Tensor]:
    """The recurrence of the docs, written out: start at the first weights, then
    avg = d_n avg + (1 - d_n) w_n with d_n = min(decay, (1 + n) / (10 + n))."""
    avg = {k: v.clone().double() for k, v in trajectory[0].items()}
    for n, weights in enumerate(trajectory[1:], start=1):
        d = min(decay, (1 + n) / (10 + n))
        avg = {k: d * avg[k] + (1 - d) * weights[k].double() for k in avg}
    return avg


class Tied(nn.Module):
    """Two names for one parameter, as tied embeddings have."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(5, 3)
        self.out = nn.Linear(3, 5, bias=True)
        self.out.weight = self.embed.weight
        self.register_buffer("count", torch.zeros(()))


def test_average_is_the_recurrence_with_its_warm_up():
    torch.manual_seed(0)
    model = Tied()
    ema = Ema(model, 0.9)
    trajectory = [{k: v.detach().clone() for k, v in model.named_parameters()}]
    for _ in range(30):  # steps large enough that the average trails the weights
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        ema.update()
        trajectory.append({k: v.detach().clone() for k, v in model.named_parameters()})
    want = expected_average(trajectory, 0.9)
    got = ema.weights()
    assert set(got) == {"embed.weight", "out.weight", "out.bias", "count"}
    for name in ("embed.weight", "out.bias"):
        torch.testing.assert_close(got[name].double(), want[name], rtol=1e-5, atol=1e-5)
    assert torch.equal(got["out.weight"], got["embed.weight"])  # both names: the average
    assert not torch.allclose(got["out.bias"], model.out.bias)  # it trails the weights
    assert ema.updates == 30


def test_applied_swaps_the_average_in_and_the_weights_back_even_on_an_error():
    torch.manual_seed(0)
    model = Tied()
    ema = Ema(model, 0.5)
    with torch.no_grad():
        model.out.bias.add_(1.0)
    ema.update()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    weight = model.out.bias  # the same tensor object stays (CUDA graphs hold it)
    with pytest.raises(RuntimeError), ema.applied():
        assert torch.equal(model.out.bias, ema.weights()["out.bias"])
        assert not torch.equal(model.out.bias, before["out.bias"])
        raise RuntimeError("inside")
    assert model.out.bias is weight
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_decay_zero_keeps_nothing():
    model = Tied()
    ema = Ema(model, 0.0)
    with torch.no_grad():
        model.out.bias.add_(1.0)
    ema.update()
    with ema.applied():
        pass
    assert not ema.on and ema.state() == {}
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in ema.weights().items())


@pytest.mark.parametrize("value", [-0.1, 1.0, "high"])
def test_ema_decay_out_of_range_is_a_config_error(value):
    with pytest.raises(ConfigError, match="train.ema_decay"):
        config_from_dict(tiny(train={"ema_decay": value}))


def record_weights(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Tensor]]:
    """The trained model's parameters after every update (by wrapping the Updater)."""
    seen: list[dict[str, Tensor]] = []
    apply = update_module.Updater.apply

    def recording(self: Any) -> None:
        if not seen:
            seen.append({k: v.detach().clone() for k, v in self.model.named_parameters()})
        apply(self)
        seen.append({k: v.detach().clone() for k, v in self.model.named_parameters()})

    monkeypatch.setattr(update_module.Updater, "apply", recording)
    return seen


def test_training_keeps_the_average_of_its_trajectory_and_validates_it(tmp_path, monkeypatch):
    """Same seed with and without the average: the weights that train are equal (it is
    only read); every checkpoint's model is the recurrence over the recorded weights;
    the dev loss logged is the loss of the averaged weights."""
    plain = tiny(train={"max_steps": 30, "validate_every": 30})
    train(config_from_dict(plain), tmp_path / "plain")
    averaged = tiny(train={"max_steps": 30, "validate_every": 30, "ema_decay": 0.95})
    seen = record_weights(monkeypatch)
    train(config_from_dict(averaged), tmp_path / "ema")
    assert len(seen) == 31

    last = load_checkpoint(tmp_path / "ema" / "last.pt")
    assert last["ema"]["updates"] == 30
    raw = training_weights(last)
    plain_weights = load_checkpoint(tmp_path / "plain" / "last.pt")["model"]
    assert all(torch.equal(raw[k], plain_weights[k]) for k in raw)
    want = expected_average(seen, 0.95)
    for k, v in want.items():
        torch.testing.assert_close(last["model"][k].double(), v, rtol=1e-5, atol=1e-6)
    assert any(not torch.equal(last["model"][k], raw[k]) for k in want)
    best = load_checkpoint(tmp_path / "ema" / "best.pt")
    assert all(torch.equal(best["model"][k], last["model"][k]) for k in want)

    assert checkpoint_info(tmp_path / "ema" / "best.pt")["training"]["ema_decay"] == 0.95
    bundle = load_bundle(tmp_path / "ema" / "best.pt")
    dev = [row for row in read_log(tmp_path / "ema") if row["split"] == "dev"]
    pairs = load_pairs(config_from_dict(averaged))["dev"]
    assert float(dev[-1]["loss"]) == pytest.approx(validate(bundle, pairs)["loss"], rel=1e-6)


def test_resume_with_an_average_is_exact(tmp_path, monkeypatch):
    d = tiny(train={"max_steps": 14, "validate_every": 6, "ema_decay": 0.9})
    a, b = tmp_path / "a", tmp_path / "b"
    train(config_from_dict(d), a)
    with monkeypatch.context() as m:
        interrupt_at(m, 9)
        assert train(config_from_dict(d), b).stopped == "interrupted"
    assert load_checkpoint(b / "last.pt")["ema"]["updates"] == 8
    train(config_from_dict(d), b, resume=True)
    assert_same_parameters(a / "last.pt", b / "last.pt")  # the averages
    wa, wb = (training_weights(load_checkpoint(x / "last.pt")) for x in (a, b))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
