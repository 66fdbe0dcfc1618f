"""model.tgt_embed_init: "scaled" draws the target embeddings from N(0, 1/emb_size), so a
tied model (output layer = target embeddings) starts near the uniform distribution over
the vocabulary; "normal" is torch's N(0, 1); "auto" (the default): scaled when tied."""

from __future__ import annotations

import math

import pytest
import torch

from rnnkit.checkpoint import build_model
from rnnkit.config import config_from_dict
from rnnkit.model import Seq2Seq, token_loss

V, E = 800, 64


def model(init: str | None, tie: bool = True) -> torch.nn.Module:
    m = {"emb_size": E, "hidden_size": 48, "tie_embeddings": tie}
    if init is not None:
        m["tgt_embed_init"] = init
    torch.manual_seed(0)
    return build_model(config_from_dict({"model": m}), V, V).eval()


def first_loss(net: torch.nn.Module) -> float:
    """Mean cross-entropy per token of the untrained model on random sentences."""
    g = torch.Generator().manual_seed(1)
    src = torch.randint(4, V, (16, 12), generator=g)
    tgt = torch.randint(4, V, (16, 10), generator=g)
    tgt[:, 0] = net.bos_id
    with torch.no_grad():
        logits, _ = net(src, torch.full((16,), 12), tgt[:, :-1])
        return float(token_loss(logits, tgt[:, 1:], net.pad_id, 0.0)) / tgt[:, 1:].numel()


def test_scaled_starts_a_tied_model_near_uniform() -> None:
    uniform = math.log(V)
    assert abs(first_loss(model("scaled")) - uniform) < 0.5
    assert first_loss(model("normal")) > uniform + 2  # what the key is for


@pytest.mark.parametrize("tie", [True, False])
def test_scaled_target_embeddings_only(tie: bool) -> None:
    net = model("scaled", tie)
    w = net.decoder.embed.weight.detach()
    assert torch.all(w[net.pad_id] == 0)
    assert abs(float(w[net.pad_id + 1 :].std()) - E**-0.5) < 0.01
    assert abs(float(net.encoder.embed.weight.detach().std()) - 1.0) < 0.05  # the source: unchanged
    assert (net.W_out.weight is net.decoder.embed.weight) == tie


@pytest.mark.parametrize("tie, same_as", [(True, "scaled"), (False, "normal")])
def test_auto_is_the_default_scaled_when_tied(tie: bool, same_as: str) -> None:
    a, b, c = model(None, tie), model("auto", tie), model(same_as, tie)
    for x, y, z in zip(a.state_dict().values(), b.state_dict().values(), c.state_dict().values()):
        assert torch.equal(x, y) and torch.equal(x, z)


def test_normal_is_torchs_init() -> None:
    a = model("normal")
    assert abs(float(a.decoder.embed.weight.detach().std()) - 1.0) < 0.05


def test_seq2seq_takes_the_init_too() -> None:
    """The Python class, not only configs: a tied rnnkit.Seq2Seq starts scaled."""
    tied = Seq2Seq(V, V, emb_size=E, hidden_size=48, tie_embeddings=True)
    assert abs(float(tied.decoder.embed.weight[1:].detach().std()) - E**-0.5) < 0.01
    assert torch.all(tied.decoder.embed.weight[tied.pad_id] == 0)
    untied = Seq2Seq(V, V, emb_size=E, hidden_size=48)
    assert abs(float(untied.decoder.embed.weight.detach().std()) - 1.0) < 0.05
    with pytest.raises(ValueError, match="tgt_embed_init must be one of"):
        Seq2Seq(V, V, tgt_embed_init="xavier")


def test_unknown_init_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="model.tgt_embed_init"):
        config_from_dict({"model": {"tgt_embed_init": "xavier"}})
