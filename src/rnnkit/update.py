"""One optimizer update of the encoder-decoder: the loss of K batches (``train.accumulate``),
their gradients added up, autocast and loss scaling (``train.precision``), clipping, the
step. Shared by one process and every rank of torchrun (:mod:`rnnkit.distributed`)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnkit import graphs
from rnnkit.config import TrainConfig
from rnnkit.data import Batch
from rnnkit.distributed import Dist, no_sync, shard
from rnnkit.graphs.seq2seq import loss_sum
from rnnkit.model import Seq2Seq, token_loss
from rnnkit.precision import Precision

__all__ = ["Diverged", "Updater"]


class Diverged(RuntimeError):
    """The training loss became nan or inf: training stops before a checkpoint or a
    validation would take the broken weights (the checkpoints keep the state before)."""


class Updater:
    """``updater(group)`` → (loss summed over this rank's rows, target tokens of the group):
    the gradients of one update; ``updater.apply()`` then clips them and takes the step
    (apart, so that training can take the step and count it as one, Ctrl-C held).

    ``net`` is what trains (the model, or DDP around it). The teacher-forced pass runs on
    static shapes (one CUDA graph per bucket, decoder loop included; :mod:`rnnkit.graphs`)
    when ``train.graphs`` makes them active on this device, in one process (DDP must see
    its own forward) with every step teacher-forced (a graph cannot choose per step).
    """

    def __init__(
        self,
        t: TrainConfig,
        model: Seq2Seq,
        net: nn.Module,
        opt: torch.optim.Optimizer,
        dist: Dist,
        device: torch.device,
    ) -> None:
        self.t, self.model, self.net, self.opt, self.dist = t, model, net, opt, dist
        self.device = device
        self.amp = Precision(t.precision, device)
        self.static = graphs.active(device, t.graphs) and not dist.on and t.teacher_forcing >= 1
        # every loss finite since the last check: a flag on the device, read at checks only
        self.finite = torch.ones((), dtype=torch.bool, device=device)
        self.checked = 0  # the step of the last check that passed

    def __call__(self, group: list[Batch]) -> tuple[Tensor, int]:
        n = sum(b.ntokens for b in group)  # global: every rank holds the whole batches
        self.opt.zero_grad(set_to_none=True)
        total = torch.zeros((), device=self.device)
        for i, batch in enumerate(group):
            b, real = shard(batch, self.dist.rank, self.dist.world, self.model.pad_id)
            b = b.to(self.device)
            with no_sync(self.net, i < len(group) - 1):
                with self.amp.autocast():
                    loss = self.batch_loss(b)
                if not real:  # a stand-in row: join the all-reduce, add nothing
                    loss = loss * 0.0
                self.amp.backward(loss / n)
            total = total + loss.detach()
        if self.amp.scaler is None:  # fp16's scaler skips updates with inf/nan by design
            torch.logical_and(self.finite, torch.isfinite(total), out=self.finite)
        return total, n

    def apply(self) -> None:
        """The optimizer's step on the gradients of the last call, clipped."""
        self.amp.step(self.opt, self.model, self.t.clip)

    def check(self, step: int) -> None:
        """Raise :class:`Diverged` when a loss since the last check was nan or inf on any
        rank (a collective: every rank calls it at the same step)."""
        if not self.dist.any(not bool(self.finite)):
            self.checked = step
            return
        raise Diverged(
            f"the training loss became nan or inf after step {self.checked} (seen at step "
            f"{step}); stopped before saving it: the checkpoints hold the last state "
            "checked finite. Lower train.lr, or set train.clip or train.warmup_steps."
        )

    def batch_loss(self, b: Batch) -> Tensor:
        """The loss of one batch, summed over its target tokens."""
        t = self.t
        if self.static:
            return loss_sum(self.model, b.src, b.src_lengths, b.tgt, t.label_smoothing)
        logits, _ = self.net(b.src, b.src_lengths, b.tgt[:, :-1], t.teacher_forcing)
        return token_loss(logits, b.tgt[:, 1:], self.model.pad_id, t.label_smoothing)
