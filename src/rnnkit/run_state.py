"""A training run's state and the files it writes.

:class:`RunState` sets a run up, new, resumed (``--resume``) or fine-tuned
(``train.init_from``): the process group, the data, tokenizers and vocabularies, the
model and its first weights, the optimizer, the schedule, the position in the epoch,
the moving average and the log; and it writes the run's checkpoints (``last.pt`` with
every rank's RNG states, ``best.pt``, ``step-STEP.pt``). :class:`rnnkit.train.Trainer`
advances it.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from rnnkit.atomic import make_folder
from rnnkit.checkpoint import Bundle, build_model, load_checkpoint, save_checkpoint
from rnnkit.config import Config, config_to_dict
from rnnkit.distributed import rng_state, seed_rank, setup, wrap
from rnnkit.ema import Ema
from rnnkit.optim import Schedule, make_optimizer
from rnnkit.position import Position
from rnnkit.prepare import prepare_on_ranks, save_prepared, tokenizer_states
from rnnkit.pretrained import check_files, first_weights
from rnnkit.progress import CsvLog, Meter, meter_of
from rnnkit.runlock import remove_run
from rnnkit.runs import (
    changed_keys,
    check_resumable,
    found_at,
    kept_checkpoints,
    load_entry,
    load_initial,
    restore_run,
)
from rnnkit.update import Updater

__all__ = ["RunState"]

Log = Callable[[str], None]


class RunState:
    """A run set up in ``out_dir`` and ready to train (see :func:`rnnkit.train.train`
    for the arguments); its checkpoints written by :meth:`save`, :meth:`save_last` and
    :meth:`keep`."""

    def __init__(
        self,
        cfg: Config,
        out_dir: str | Path,
        resume: bool = False,
        config_dir: Path | None = None,
        log: Log | None = None,
        progress: bool = False,
        overwrite: bool = False,
    ) -> None:
        self.cfg, self.t = cfg, cfg.train
        self.dist, self.device = setup(self.t.device)  # one process, or a rank of torchrun's
        main = self.dist.main
        self.say: Log = (log if main else None) or (lambda _msg: None)
        self.out = Path(out_dir)
        make_folder(self.out, "--out ")
        self.progress = progress and main
        ckpt = load_checkpoint(self.out / "last.pt") if resume and main else None
        if resume and self.dist.on:  # rank 0's file: OUT need not be shared between machines
            ckpt = self.dist.broadcast(ckpt)
        if ckpt is not None:
            check_resumable(ckpt.get("config") or {}, cfg, self.out / "last.pt", ckpt=ckpt)
            if moved := changed_keys(ckpt["config"], config_to_dict(cfg)):
                self.say(f"note: the config differs from last.pt's ({moved}); using the given one")
        torch.manual_seed(self.t.seed)
        random.seed(self.t.seed)
        # fine-tuning: a new run from another's weights, tokenizers and vocabularies
        init = load_initial(self.t.init_from, cfg) if self.t.init_from and not ckpt else None
        if ckpt is None and init is None:  # before the data work: the vectors can be read
            check_files(cfg, config_dir)
        self.data = d = prepare_on_ranks(
            cfg, self.out, config_dir, ckpt or init, self.say, self.dist
        )
        self.found_at = found_at(cfg, config_dir)  # (info --config writes them)
        self.model = build_model(cfg, len(d.src_vocab), len(d.tgt_vocab)).to(self.device)
        if ckpt is None:  # a new run (every rank): the parent's weights, or pretrained vectors
            first_weights(self.model, cfg, init, d.src_vocab, d.tgt_vocab, config_dir, self.say)
        self.bundle = Bundle(
            cfg, self.model, d.src_tokenizer, d.tgt_tokenizer, d.src_vocab, d.tgt_vocab, 0
        )
        self.opt = make_optimizer(cfg, self.model)
        self.sched = Schedule(cfg, self.opt)
        self.at = Position()
        seed_rank(self.t.seed, self.dist)  # each rank its own dropout masks
        last = self.out / "last.pt"
        if ckpt is not None:
            self.at, wrote = restore_run(ckpt, last, self.model, self.opt, self.sched, self.dist)
            if note := self.dist.resumed_note(wrote):
                self.say(note)
            self.say(f"resumed from {last} at step {self.at.step} (epoch {self.at.epoch + 1})")
        self.ema = Ema(self.model, self.t.ema_decay, ckpt)  # of the weights loaded or drawn
        net = wrap(self.model, self.dist, self.device)  # what trains: DDP or the model
        self.update = Updater(self.t, self.model, net, self.opt, self.dist, self.device)
        self.meter = Meter(self.device)  # (the loop's, from the saved sums: see saved_meter)
        self.saved_meter: dict[str, Any] | None = None
        if ckpt is not None:
            load_entry(last, "scaler", self.update.amp.load_state_dict, ckpt.get("scaler", {}))
            self.saved_meter = meter_of(ckpt, self.dist)
        n_params = sum(p.numel() for p in self.model.parameters())
        ranks = f" x {self.dist.world} processes" if self.dist.on else ""
        self.say(
            f"model: {cfg.model.cell} encoder-decoder, attention {cfg.model.attention}, "
            f"{n_params / 1e6:.2f} M parameters; {len(d.examples)} training pairs; "
            f"device {self.device}{ranks}"
        )
        resumed_at = self.at.step if ckpt is not None else None
        if overwrite and main:  # only now: a run that fails before starts leaves it as it was
            remove_run(self.out)
        if main:  # vocabularies and held-out pairs, also only now
            save_prepared(self.out, cfg, d, self.say)
        self.csv = CsvLog(self.out, resumed_at, self.at.validated) if main else None
        self.history: list[dict[str, Any]] = []
        self.t0 = time.time()

    def elapsed(self) -> float:
        """Training seconds, across resumed runs."""
        return self.at.elapsed + time.time() - self.t0

    def translation_payload(self) -> dict[str, Any]:
        """What translating needs: config, tokenizers, vocabularies, weights, step."""
        return {
            "config": config_to_dict(self.cfg),
            "model": self.ema.weights(),  # the average, when one is kept
            **tokenizer_states(self.data),
            "step": self.at.step,
            "found_at": self.found_at,
        }

    def payload(self, ranks: list[tuple[dict[str, Any], Any]] | None = None) -> dict[str, Any]:
        """What a checkpoint holds: enough to translate, and to resume exactly
        (``ranks``: every rank's RNG states and sums since the last log line, in rank
        order; this process's alone by default)."""
        at = dataclasses.replace(self.at, elapsed=self.elapsed())
        ranks = ranks or [(rng_state(), self.meter.state())]
        return {
            **self.translation_payload(),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "rng": ranks[0][0],
            "rng_ranks": [rng for rng, _ in ranks],
            "meters": [meter for _, meter in ranks],
            "progress": dataclasses.asdict(at),
            "processes": self.dist.world,  # (info says it)
            "scaler": self.update.amp.state_dict(),
            **self.ema.state(),
        }

    def save(self, name: str, ranks: list[tuple[dict[str, Any], Any]] | None = None) -> None:
        """Rank 0 writes ``name`` (``ranks``: see :meth:`payload`)."""
        if self.dist.main:
            save_checkpoint(self.out / name, self.payload(ranks))

    def save_last(self) -> None:
        """``last.pt`` with every rank's RNG states and log sums (a collective: all ranks
        call it)."""
        self.save("last.pt", self.dist.gather((rng_state(), self.meter.state())))

    def keep(self) -> None:
        """With ``train.keep_checkpoints`` N: weights-only ``step-STEP.pt`` beside
        ``last.pt``, the N latest kept (for ``rnnkit average``)."""
        n = self.t.keep_checkpoints
        if not n or not self.dist.main:
            return
        save_checkpoint(self.out / f"step-{self.at.step}.pt", self.translation_payload())
        for old in kept_checkpoints(self.out)[:-n]:
            old.unlink(missing_ok=True)
