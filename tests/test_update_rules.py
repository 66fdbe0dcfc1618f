"""The rules of one update and of its schedule: accumulated gradients normalised by the
tokens of the whole group, clipping of the unscaled fp16 gradient, a new batch order per
epoch and per seed, AdamW's decoupled decay, warm-up below ``min_lr``, and the plateau
counter and fp16 loss scale carried through a checkpoint."""

from __future__ import annotations

import copy
import math
import random
from typing import Any

import pytest
import torch
from test_train import tiny

import rnnkit.update as update_module
from rnnkit.checkpoint import build_model, load_checkpoint
from rnnkit.config import config_from_dict
from rnnkit.data import EOS_ID, PAD_ID, Batch, Example, make_batches
from rnnkit.distributed import Dist
from rnnkit.optim import Schedule, make_optimizer
from rnnkit.precision import Precision
from rnnkit.train import Trainer, train
from rnnkit.update import Updater

CPU = torch.device("cpu")
V = 12  # vocabulary of the hand-made examples: ids 4..11 are words


def examples(lengths: list[tuple[int, int]], seed: int, first_index: int = 0) -> list[Example]:
    """Random pairs with the given (source words, target words) counts."""
    rng = random.Random(seed)
    return [
        Example(
            [rng.randint(4, V - 1) for _ in range(s)] + [EOS_ID],
            [rng.randint(4, V - 1) for _ in range(t)],
            first_index + i,
        )
        for i, (s, t) in enumerate(lengths)
    ]


def one_batch(exs: list[Example]) -> Batch:
    (batch,) = make_batches(exs, None, len(exs), shuffle=False, seed=0, pad_id=PAD_ID)
    return batch


# ---------------------------------------------------------------- accumulation


def gradients_of_one_update(group: list[Batch], accumulate: int) -> list[torch.Tensor]:
    """The gradient one Updater step leaves on the parameters (no clipping) of a fixed
    dropout-free model."""
    cfg = config_from_dict(
        tiny(
            model={"dropout": 0.0, "emb_dropout": 0.0},
            train={"accumulate": accumulate, "clip": 0.0, "graphs": "off"},
        )
    )
    torch.manual_seed(0)
    model = build_model(cfg, V, V)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # the step leaves the weights as they are
    updater = Updater(cfg.train, model, model, opt, Dist(), CPU)
    _, n = updater(group)
    updater.apply()
    assert n == sum(b.ntokens for b in group)
    return [p.grad.detach().clone() for p in model.parameters()]


def test_accumulated_batches_give_the_gradient_of_one_batch_holding_both():
    """train.accumulate 2 on [b1, b2] takes the gradient of the loss summed over both
    and divided by their target tokens together: the gradient of one batch holding
    every row of both. The batches have unequal token counts, so dividing each batch
    by its own tokens (a mean of means) or not at all gives another gradient."""
    short = examples([(2, 1), (3, 2)], seed=1)
    long = examples([(5, 6), (6, 7), (4, 5)], seed=2, first_index=2)
    b1, b2 = one_batch(short), one_batch(long)
    assert b1.ntokens != b2.ntokens
    split = gradients_of_one_update([b1, b2], accumulate=2)
    whole = gradients_of_one_update([one_batch(short + long)], accumulate=1)
    assert any(g.abs().max() > 0 for g in whole)
    for a, b in zip(split, whole, strict=True):
        torch.testing.assert_close(a, b)


# ---------------------------------------------------------------- fp16 clipping


def test_fp16_clips_the_unscaled_gradient_as_fp32_does():
    """fp16 multiplies the loss by the scale (65536 at the start) before backward and
    unscales the gradient before clipping it, so the update equals fp32's: a step of
    norm lr·clip, the gradient's norm being above ``clip``. Clipping the scaled gradient
    and unscaling it afterwards would leave a step 65536 times shorter."""
    torch.manual_seed(0)
    base = torch.nn.Linear(4, 3)
    x, lr, clip = torch.randn(8, 4), 0.1, 0.5
    moves = {}
    for name in ("fp32", "fp16"):
        model = copy.deepcopy(base)
        amp = Precision(name, CPU)
        opt = torch.optim.SGD(model.parameters(), lr=lr)
        amp.backward(model(x).pow(2).sum())
        if name == "fp32":
            assert norm_of([p.grad for p in model.parameters()]) > clip
        amp.step(opt, model, clip)
        moves[name] = [
            p.detach() - q.detach() for p, q in zip(model.parameters(), base.parameters())
        ]
    assert norm_of(moves["fp32"]) == pytest.approx(lr * clip)
    for a, b in zip(moves["fp16"], moves["fp32"], strict=True):
        torch.testing.assert_close(a, b)


def norm_of(tensors: list[torch.Tensor]) -> float:
    return math.sqrt(sum(float(t.pow(2).sum()) for t in tensors))


# ---------------------------------------------------------------- batch order


def test_shuffled_batches_come_in_an_order_of_their_own_per_seed():
    """Every source length occurs once, so shuffling cannot change which examples share
    a batch: it must change the order of the batches, which unshuffled go from short to
    long, and another seed another order."""
    exs = examples([(n, 2) for n in range(1, 41)], seed=0)

    def batches(shuffle: bool, seed: int) -> list[list[int]]:
        made = make_batches(exs, None, 4, shuffle=shuffle, seed=seed, pad_id=PAD_ID)
        return [b.indices.tolist() for b in made]

    by_length = batches(False, 0)
    assert by_length == [list(range(i, i + 4)) for i in range(0, 40, 4)]
    orders = [batches(True, seed) for seed in range(4)]
    for order in orders:
        assert sorted(order) == by_length  # the same batches ...
        assert order != by_length  # ... not in length order
    assert len({str(order) for order in orders}) == len(orders)  # one order per seed


def test_each_epoch_draws_a_new_batch_order(tmp_path, monkeypatch):
    """Two epochs of a run: each passes over every training example once, in batches
    that come in another order in the second epoch (its shuffle seed is seed + epoch)."""
    seen: dict[int, list[list[int]]] = {0: [], 1: []}
    train_step = Trainer.train_step

    def spy(self: Trainer, group: list[Batch]) -> Any:
        seen[self.at.epoch].extend(b.indices.tolist() for b in group)
        return train_step(self, group)

    monkeypatch.setattr(Trainer, "train_step", spy)
    keys = {"max_steps": 0, "max_epochs": 2, "validate_every": 100, "checkpoint_every": 100}
    train(config_from_dict(tiny(data={"task_size": 96}, train=keys)), tmp_path)
    for batches in seen.values():
        assert sorted(i for b in batches for i in b) == list(range(96))
    assert seen[0] != seen[1]


# ---------------------------------------------------------------- optimizer and schedule


def test_adamw_decays_the_weights_apart_from_the_gradient():
    """optimizer adamw is torch's AdamW with the configured weight_decay: with a zero
    gradient a step multiplies every weight by 1 - lr·wd. Adam's L2 decay instead goes
    through the moment estimates, which normalise it to a step of about lr."""
    lr, wd = 0.01, 0.1
    moved = {}
    for name in ("adamw", "adam"):
        cfg = config_from_dict(tiny(train={"optimizer": name, "lr": lr, "weight_decay": wd}))
        torch.manual_seed(0)
        model = build_model(cfg, V, V)
        opt = make_optimizer(cfg, model)
        assert all(g["weight_decay"] == wd for g in opt.param_groups)
        before = [p.detach().clone() for p in model.parameters()]
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        opt.step()
        moved[name] = [(p.detach(), q) for p, q in zip(model.parameters(), before)]
        if name == "adamw":
            assert isinstance(opt, torch.optim.AdamW)
    for p, q in moved["adamw"]:
        torch.testing.assert_close(p, q * (1 - lr * wd))
    big = [q.abs() > 0.01 for _, q in moved["adam"]]  # (there Adam's eps is negligible)
    steps = torch.cat([(q - p).abs()[m] for (p, q), m in zip(moved["adam"], big)])
    torch.testing.assert_close(steps, torch.full_like(steps, lr), rtol=1e-3, atol=0)


def schedule(**train_keys: Any) -> Schedule:
    cfg = config_from_dict({"train": train_keys})
    return Schedule(cfg, torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0))


@pytest.mark.parametrize("scheduler", ["plateau", "none"])
def test_warm_up_rises_linearly_from_zero_even_below_min_lr(scheduler):
    """lr·step/warmup during warm-up, also while that is under min_lr (a floor on the
    decay, not a jump at step 1); from then on min_lr bounds the rate from below."""
    lr, warmup, min_lr = 0.01, 10, 0.004
    sched = schedule(scheduler=scheduler, lr=lr, warmup_steps=warmup, min_lr=min_lr)
    for step in range(1, warmup + 1):
        assert sched.lr(step) == pytest.approx(lr * step / warmup)
    assert sched.lr(1) < min_lr
    for _ in range(20):  # many validations without a gain: the plateau decays to the floor
        sched.validated(0.0)
    assert sched.lr(warmup + 1) == pytest.approx(lr if scheduler == "none" else min_lr)


def test_plateau_count_survives_a_state_dict_round_trip():
    """A schedule restored from another's state_dict (as --resume does) decays at the
    same validation: validations without a gain counted before the checkpoint count
    after it."""
    keys = {"scheduler": "plateau", "lr": 0.01, "lr_patience": 2, "min_lr": 0.0}
    sched = schedule(**keys)
    for score in (10.0, 9.0, 9.5):  # a best, then two without a gain
        sched.validated(score)
    restored = schedule(**keys)
    restored.load_state_dict(sched.state_dict())
    for s in (sched, restored):
        assert s.lr(100) == pytest.approx(0.01)
        s.validated(8.0)  # the third without a gain: > lr_patience
        assert s.lr(100) == pytest.approx(0.005)


# ---------------------------------------------------------------- fp16 loss scale on resume


def overflow_at(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    """The loss of training step ``step`` is inf: its gradient overflows, GradScaler
    skips the update and halves the scale."""
    calls = {"n": 0}
    loss = update_module.token_loss

    def token_loss(*args: Any, **kw: Any) -> Any:
        calls["n"] += 1
        return loss(*args, **kw) * (math.inf if calls["n"] == step else 1.0)

    monkeypatch.setattr(update_module, "token_loss", token_loss)


def test_fp16_resume_restores_a_changed_loss_scale(tmp_path, monkeypatch):
    """An overflow at step 3 halves the scale; last.pt at step 6 holds it, and the
    resumed run starts from it rather than from GradScaler's initial 65536."""
    keys = {"precision": "fp16", "max_steps": 6, "validate_every": 100, "checkpoint_every": 3}
    cfg = config_from_dict(tiny(train=keys))
    with monkeypatch.context() as m:
        overflow_at(m, 3)
        train(cfg, tmp_path)
    saved = load_checkpoint(tmp_path / "last.pt")["scaler"]["scale"]
    initial = torch.amp.GradScaler("cpu").get_scale()
    assert saved == initial / 2
    resumed = Trainer(cfg, tmp_path, resume=True)
    if resumed.csv is not None:
        resumed.csv.close()
    assert resumed.at.step == 6
    assert resumed.update.amp.scaler is not None
    assert resumed.update.amp.scaler.get_scale() == saved


@pytest.mark.parametrize("scheduler", ["none", "inverse_sqrt"])
def test_min_lr_is_the_plateau_decays_floor_alone(scheduler):
    """scheduler none with lr 1e-6 trained at the default min_lr, 1e-5: ten times the
    rate asked for (and after a warm-up that had risen to 1e-6, a jump)."""
    sched = schedule(scheduler=scheduler, lr=1e-6, warmup_steps=10)
    assert sched.t.min_lr > 1e-6  # (the default floor is above this lr)
    assert sched.lr(10) == pytest.approx(1e-6)
    assert sched.lr(11) <= 1e-6 and sched.lr(1000) <= 1e-6


def test_a_seed_beyond_32_bits_trains_a_subword_model():
    """train.seed takes 63 bits; sentencepiece's random generator 32: a seed of 2**32
    was a TypeError traceback from spm.set_random_generator_seed."""
    from rnnkit.data.tokenizers import SentencePieceTokenizer

    lines = ["the cat sat on the mat", "a dog ran far away", "the dog sat"] * 20
    tok = SentencePieceTokenizer.train(lines, vocab_size=30, seed=2**32 + 5)
    assert tok.encode("the cat")
