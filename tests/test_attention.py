"""Bahdanau and Luong attention: the equations checked by hand, masking, invariances."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from rnnkit.attention import BahdanauAttention, LuongAttention, masked_softmax

KINDS = ["bahdanau", "dot", "general", "concat"]
B, S, HQ, HK = 3, 6, 4, 5


def make(kind: str, dtype: torch.dtype = torch.float64) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "bahdanau":
        attn: torch.nn.Module = BahdanauAttention(HQ, HK, hidden_size=7)
    elif kind == "dot":
        attn = LuongAttention(HK, HK, score="dot")
    else:
        attn = LuongAttention(HQ, HK, score=kind)
    return attn.to(dtype)


def inputs(kind: str, dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor, Tensor]:
    """query (B, Hq), keys (B, S, Hk), mask (B, S): one full row, one padded, one with holes."""
    g = torch.Generator().manual_seed(1)
    hq = HK if kind == "dot" else HQ
    query = torch.randn(B, hq, generator=g, dtype=dtype)
    keys = torch.randn(B, S, HK, generator=g, dtype=dtype)
    mask = torch.tensor(
        [
            [True] * S,
            [True, True, True, False, False, False],
            [False, True, False, True, True, False],
        ]
    )
    return query, keys, mask


def energy_by_hand(attn: torch.nn.Module, kind: str, s: Tensor, h: Tensor) -> Tensor:
    """e_j for one query s (Hq,) and one key h (Hk,), straight from the paper's formula."""
    if kind == "bahdanau":
        W, U, b, v = attn.W.weight, attn.U.weight, attn.U.bias, attn.v.weight[0]
        return v @ torch.tanh(W @ s + U @ h + b)
    if kind == "dot":
        return s @ h
    if kind == "general":
        return s @ attn.W_a.weight @ h
    return attn.v_a.weight[0] @ torch.tanh(attn.W_a.weight @ torch.cat([s, h]))


@pytest.mark.parametrize("kind", KINDS)
def test_weights_sum_to_one_over_real_positions_and_are_exactly_zero_on_padding(kind: str) -> None:
    attn = make(kind)
    query, keys, mask = inputs(kind)
    _, alpha = attn(query, keys, mask)
    assert alpha.shape == (B, S)
    torch.testing.assert_close(alpha.sum(-1), torch.ones(B, dtype=alpha.dtype))
    assert (alpha[~mask] == 0.0).all()
    assert (alpha[mask] > 0.0).all()


@pytest.mark.parametrize("kind", KINDS)
def test_weights_equal_softmax_of_energies_recomputed_by_hand(kind: str) -> None:
    attn = make(kind)
    query, keys, mask = inputs(kind)
    _, alpha = attn(query, keys, mask)
    with torch.no_grad():
        for b in range(B):
            e = torch.stack([energy_by_hand(attn, kind, query[b], keys[b, j]) for j in range(S)])
            real = mask[b]
            expected = torch.zeros(S, dtype=e.dtype)
            expected[real] = torch.exp(e[real]) / torch.exp(e[real]).sum()
            torch.testing.assert_close(alpha[b].detach(), expected)


@pytest.mark.parametrize("kind", KINDS)
def test_context_is_weighted_sum_of_keys(kind: str) -> None:
    attn = make(kind)
    query, keys, mask = inputs(kind)
    context, alpha = attn(query, keys, mask)
    assert context.shape == (B, HK)
    for b in range(B):
        expected = sum(alpha[b, j] * keys[b, j] for j in range(S))
        torch.testing.assert_close(context[b], expected)


@pytest.mark.parametrize("kind", KINDS)
def test_masked_keys_never_change_the_result(kind: str) -> None:
    attn = make(kind)
    query, keys, mask = inputs(kind)
    context, alpha = attn(query, keys, mask)
    garbage = keys.clone()
    garbage[~mask] = 1e3 * torch.randn(int((~mask).sum()), HK, dtype=keys.dtype)
    context2, alpha2 = attn(query, garbage, mask)
    torch.testing.assert_close(context2, context)
    torch.testing.assert_close(alpha2, alpha)


@pytest.mark.parametrize("kind", KINDS)
def test_permuting_source_positions_permutes_weights_and_keeps_context(kind: str) -> None:
    attn = make(kind)
    query, keys, mask = inputs(kind)
    context, alpha = attn(query, keys, mask)
    perm = torch.tensor([4, 0, 5, 2, 1, 3])
    context_p, alpha_p = attn(query, keys[:, perm], mask[:, perm])
    torch.testing.assert_close(alpha_p, alpha[:, perm])
    torch.testing.assert_close(context_p, context)


@pytest.mark.parametrize("kind", KINDS)
def test_projected_keys_give_identical_results_and_are_used(kind: str) -> None:
    attn = make(kind)
    query, keys, mask = inputs(kind)
    context, alpha = attn(query, keys, mask)
    context_p, alpha_p = attn(query, keys, mask, projected_keys=attn.project_keys(keys))
    assert torch.equal(context_p, context) and torch.equal(alpha_p, alpha)
    # The weights come from the projection passed in, not from a recomputation of keys.
    other = torch.randn_like(keys)
    _, alpha_other = attn(query, other, mask)
    _, alpha_mixed = attn(query, keys, mask, projected_keys=attn.project_keys(other))
    torch.testing.assert_close(alpha_mixed, alpha_other)


@pytest.mark.parametrize("kind", KINDS)
def test_several_decoder_steps_equal_one_step_at_a_time(kind: str) -> None:
    attn = make(kind)
    _, keys, mask = inputs(kind)
    T = 3
    queries = torch.randn(B, T, HK if kind == "dot" else HQ, dtype=torch.float64)
    context, alpha = attn(queries, keys, mask)
    assert context.shape == (B, T, HK) and alpha.shape == (B, T, S)
    for t in range(T):
        context_t, alpha_t = attn(queries[:, t], keys, mask)
        torch.testing.assert_close(context[:, t], context_t)
        torch.testing.assert_close(alpha[:, t], alpha_t)


@pytest.mark.parametrize("kind", KINDS)
def test_no_mask_means_every_position_is_real(kind: str) -> None:
    attn = make(kind)
    query, keys, _ = inputs(kind)
    context, alpha = attn(query, keys)
    context_all, alpha_all = attn(query, keys, torch.ones(B, S, dtype=torch.bool))
    torch.testing.assert_close(context, context_all)
    torch.testing.assert_close(alpha, alpha_all)


@pytest.mark.parametrize("kind", KINDS)
def test_gradcheck_on_query_and_keys(kind: str) -> None:
    attn = make(kind)
    query, keys, mask = inputs(kind)
    query.requires_grad_(True)
    keys.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda q, k: attn(q, k, mask), (query, keys))


@pytest.mark.parametrize("kind", KINDS)
def test_float32_matches_float64_and_keeps_its_dtype(kind: str) -> None:
    attn64, attn32 = make(kind, torch.float64), make(kind, torch.float32)
    query, keys, mask = inputs(kind)
    context64, alpha64 = attn64(query, keys, mask)
    context32, alpha32 = attn32(query.float(), keys.float(), mask)
    assert context32.dtype == alpha32.dtype == torch.float32
    assert (alpha32[~mask] == 0.0).all()
    torch.testing.assert_close(context32.double(), context64, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(alpha32.double(), alpha64, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_nothing_is_kept_on_the_module_between_calls(kind: str) -> None:
    attn = make(kind)
    query, keys, mask = inputs(kind)
    before = dict(vars(attn))
    attn(query, keys, mask)
    assert vars(attn).keys() == before.keys()
    assert list(attn.buffers()) == []
    other = torch.randn_like(keys)
    context_other, _ = attn(query, other, mask)
    context_fresh, _ = make(kind)(query, other, mask)
    torch.testing.assert_close(context_other, context_fresh)


@pytest.mark.parametrize("kind", KINDS)
def test_a_fully_masked_row_is_an_error_not_nan(kind: str) -> None:
    attn = make(kind)
    query, keys, mask = inputs(kind)
    mask[1] = False
    with pytest.raises(ValueError, match="no real position"):
        attn(query, keys, mask)


def test_masked_softmax_rejects_a_non_bool_mask() -> None:
    with pytest.raises(TypeError, match="bool"):
        masked_softmax(torch.zeros(2, 3), torch.ones(2, 3))


def test_dot_with_mismatched_sizes_raises() -> None:
    with pytest.raises(ValueError, match="query_size == key_size"):
        LuongAttention(HQ, HK, score="dot")


def test_unknown_luong_score_names_it_and_the_allowed_values() -> None:
    with pytest.raises(ValueError, match=r"'bilinear'.*dot, general, concat"):
        LuongAttention(HQ, HK, score="bilinear")


def test_bahdanau_hidden_size_defaults_to_query_size() -> None:
    attn = BahdanauAttention(HQ, HK)
    assert attn.W.weight.shape == (HQ, HQ) and attn.U.weight.shape == (HQ, HK)


def test_mask_of_wrong_shape_is_an_error() -> None:
    attn = make("general")
    query, keys, mask = inputs("general")
    with pytest.raises(ValueError, match=r"mask must be \(B, S\)"):
        attn(query, keys, mask[:, :-1])
