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

__all__ = ["Updater"]


class Updater:
    """``updater(group)`` → (loss summed over this rank's rows, target tokens of the group).

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
        self.amp.step(self.opt, self.model, self.t.clip)
        return total, n

    def batch_loss(self, b: Batch) -> Tensor:
        """The loss of one batch, summed over its target tokens."""
        t = self.t
        if self.static:
            return loss_sum(self.model, b.src, b.src_lengths, b.tgt, t.label_smoothing)
        logits, _ = self.net(b.src, b.src_lengths, b.tgt[:, :-1], t.teacher_forcing)
        return token_loss(logits, b.tgt[:, 1:], self.model.pad_id, t.label_smoothing)
