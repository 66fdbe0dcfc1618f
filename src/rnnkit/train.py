"""Training: data → tokenizers and vocabularies → batches → Adam steps → checkpoints.

``train(cfg, out_dir)`` runs the loop the config describes: Adam with gradient clipping,
learning-rate warm-up and decay (plateau on the dev score, or inverse square root), label
smoothing, validation (loss, BLEU, chrF, accuracy) every ``validate_every`` steps, early
stopping and ``best.pt`` by ``early_stopping_metric`` (dev BLEU by default), checkpoints
written atomically (``step-STEP.pt`` too, with ``keep_checkpoints``) and a CSV log.

Resuming is exact: ``last.pt`` holds the optimizer, scheduler and RNG states and the
position in the epoch's (seeded) batch order, so a run killed and resumed ends with
the same parameters as one that never stopped.

With ``train.accumulate`` K an update adds up the gradients of K batches (the loss
divided by their target tokens together). Under torchrun the same loop runs on every
rank, each on its share of every batch (:mod:`rnnkit.distributed`); rank 0 writes.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from rnnkit import graphs, validation
from rnnkit.atomic import make_folder, no_ctrl_c
from rnnkit.checkpoint import Bundle, build_model, check_cell, load_checkpoint, save_checkpoint
from rnnkit.config import Config, config_to_dict, validate_config
from rnnkit.data import Batch, make_batches
from rnnkit.distributed import pick_device, rng_state, seed_rank, set_rng_state, setup, wrap
from rnnkit.ema import Ema
from rnnkit.job import rank_and_world
from rnnkit.optim import Schedule, make_optimizer
from rnnkit.position import Position, Stop, TrainResult
from rnnkit.prepare import (
    check_corpora,
    load_pairs,
    prepare_on_ranks,
    save_prepared,
    tokenizer_states,
)
from rnnkit.pretrained import check_files, first_weights
from rnnkit.progress import CsvLog, Meter, above, progress_bar, report
from rnnkit.runlock import claimed, remove_run
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
from rnnkit.validation import validate, validate_and_log

__all__ = [
    "TrainResult",
    "Trainer",
    "kept_checkpoints",
    "load_pairs",
    "pick_device",
    "train",
    "validate",
]

Pair = tuple[str, str]
Log = Callable[[str], None]


class Trainer:
    """One training run: ``Trainer(cfg, out).run()``. See :func:`train`."""

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
        if ckpt is not None:
            load_entry(last, "scaler", self.update.amp.load_state_dict, ckpt.get("scaler", {}))
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
        self.csv = CsvLog(self.out, resumed_at) if main else None
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

    def payload(self, rngs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """What a checkpoint holds: enough to translate, and to resume exactly
        (``rngs``: every rank's RNG states, in rank order)."""
        at = dataclasses.replace(self.at, elapsed=self.elapsed())
        rngs = rngs or [rng_state()]
        return {
            **self.translation_payload(),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "rng": rngs[0],
            "rng_ranks": rngs,
            "progress": dataclasses.asdict(at),
            "processes": self.dist.world,  # (info says it)
            "scaler": self.update.amp.state_dict(),
            **self.ema.state(),
        }

    def save(self, name: str, rngs: list[dict[str, Any]] | None = None) -> None:
        """Rank 0 writes ``name`` (``rngs``: see :meth:`payload`)."""
        if self.dist.main:
            save_checkpoint(self.out / name, self.payload(rngs))

    def save_last(self) -> None:
        """``last.pt`` with every rank's RNG states (a collective: all ranks call it)."""
        self.save("last.pt", self.dist.gather(rng_state()))

    def keep(self) -> None:
        """With ``train.keep_checkpoints`` N: weights-only ``step-STEP.pt`` beside
        ``last.pt``, the N latest kept (for ``rnnkit average``)."""
        n = self.t.keep_checkpoints
        if not n or not self.dist.main:
            return
        save_checkpoint(self.out / f"step-{self.at.step}.pt", self.translation_payload())
        for old in kept_checkpoints(self.out)[:-n]:
            old.unlink(missing_ok=True)

    def train_step(self, group: list[Batch]) -> tuple[Tensor, int, float]:
        """One update on ``train.accumulate`` batches (fewer at the end of an epoch).

        Returns:
            (loss summed over this rank's rows, target tokens of the whole group,
            learning rate used).
        """
        self.dist.check_fault(self.at.step + 1)
        lr = self.sched.set(self.at.step + 1)
        loss, n = self.update(group)
        self.ema.update()
        return loss, n, lr

    def validate(self) -> None:
        """Dev scores (on rank 0; the others wait for them); keep ``best.pt`` by
        ``train.early_stopping_metric``; count validations without improvement."""
        scores = (0.0, 0.0)
        if self.csv is not None:
            at, d = self.at, self.data
            with self.ema.applied():  # the average is what is scored and kept
                row = validate_and_log(
                    self.bundle,
                    d.dev,
                    at.step,
                    at.epoch,
                    self.csv,
                    self.history,
                    self.say,
                    self.elapsed(),
                )
            scores = (validation.metric_score(row, self.t.early_stopping_metric), row["bleu"])
        v, bleu = self.dist.broadcast(scores)
        self.at.validated = self.at.step
        self.sched.validated(v)
        if v > self.at.best:
            self.at.best, self.at.bad = v, 0
            self.at.best_step, self.at.best_bleu = self.at.step, bleu
            self.save("best.pt")
        else:
            self.at.bad += 1

    def log_row(self, meter: Meter, lr: float, bar: Any) -> None:
        """A training row of ``log.csv`` (the loss summed over the ranks)."""
        meter.loss = self.dist.sum(meter.loss)
        row = meter.row(self.at.step, self.at.epoch, lr, self.elapsed())
        if self.csv is not None:
            self.csv.write(row)
        self.history.append(row)
        report(bar, self.say, row)
        self.update.check(self.at.step)

    def run(self) -> TrainResult:
        """The loop; returns when a stopping criterion is met or on Ctrl-C."""
        try:
            with graphs.mode(self.t.graphs):  # validation's decoding too
                return self._loop()
        finally:  # log.csv and TensorBoard closed however it ends (an error: divergence, OOM)
            if self.csv is not None:
                self.csv.close()

    def _loop(self) -> TrainResult:
        t, at, k = self.t, self.at, self.t.accumulate
        bpe_dropout = self.cfg.data.bpe_dropout  # a new segmentation each epoch, from its seed
        examples = self.data.epoch_examples(bpe_dropout, t.seed + at.epoch)
        n_batches = len(make_batches(examples, t.batch_tokens, t.batch_size, False, 0, 0))
        total = -(-n_batches // k) * t.max_epochs
        bar = progress_bar(
            self.progress, min(total, t.max_steps) if t.max_steps else total, at.step
        )
        self.say = above(bar, self.say)
        stopped = "max_epochs"
        meter = Meter(self.device)
        self.update.net.train()
        done_rng = rng_state()  # RNG after the last completed step: what Ctrl-C saves
        try:
            self._finished_already()
            while at.epoch < t.max_epochs:
                examples = self.data.epoch_examples(bpe_dropout, t.seed + at.epoch)
                batches = make_batches(
                    examples,
                    t.batch_tokens,
                    t.batch_size,
                    True,
                    t.seed + at.epoch,
                    self.data.src_vocab.pad_id,
                )
                at.epoch_batches = len(batches)
                while at.pos < len(batches):
                    group = batches[at.pos : at.pos + k]
                    loss, n, lr = self.train_step(group)
                    at.pos, at.step = at.pos + len(group), at.step + 1  # once the update is done
                    done_rng = rng_state()
                    meter.add(loss, n)
                    if at.step % t.log_every == 0:
                        self.log_row(meter, lr, bar)
                    if bar is not None:
                        bar.update(1)
                    with meter.paused():  # validation and checkpoints are no training speed
                        self._after_step()
                at.epoch, at.pos = at.epoch + 1, 0
        except Stop as stop:
            stopped = str(stop)
        except KeyboardInterrupt:
            stopped = "interrupted"
            set_rng_state(done_rng)  # the cut-short step drew dropout masks; resume redraws them
        finally:
            if bar is not None:
                bar.close()
        if stopped != "interrupted":
            return self._finish(stopped)
        with no_ctrl_c():  # a second Ctrl-C would cut last.pt short: the steps since lost
            return self._finish(stopped)

    def _finished_already(self) -> None:
        """Resuming a run that met a stopping criterion: stop again before any update
        (unless the resumed config moved it: more steps, minutes or patience)."""
        t, at = self.t, self.at
        if t.max_steps and at.step >= t.max_steps:
            raise Stop("max_steps")
        if t.patience and at.bad >= t.patience:
            raise Stop("early_stopping")
        if t.max_minutes and self.dist.any(self.elapsed() >= 60 * t.max_minutes):
            raise Stop("max_minutes")

    def _after_step(self) -> None:
        """Validation, checkpoints and stopping criteria after an update."""
        t, at = self.t, self.at
        if at.step % t.validate_every == 0 or at.step % t.checkpoint_every == 0:
            self.update.check(at.step)
        if at.step % t.validate_every == 0:
            self.validate()
            if t.patience and at.bad >= t.patience:
                raise Stop("early_stopping")
        if at.step % t.checkpoint_every == 0:
            self.save_last()
            self.keep()
        if t.max_steps and at.step >= t.max_steps:
            raise Stop("max_steps")
        if t.max_minutes and self.dist.any(self.elapsed() >= 60 * t.max_minutes):
            raise Stop("max_minutes")  # agreed by all ranks: their clocks differ

    def _finish(self, stopped: str) -> TrainResult:
        at = self.at
        interrupted = stopped == "interrupted"
        if interrupted and self.dist.on:  # the other ranks' RNG states cannot be gathered now
            self.say(f"interrupted at step {at.step}: --resume continues from the last checkpoint")
        elif interrupted:
            self.update.check(at.step)
            self.say(f"interrupted at step {at.step}: saving {self.out / 'last.pt'}")
            self.save_last()
        else:
            self.update.check(at.step)
            if at.step % self.t.validate_every != 0 and at.validated != at.step:
                self.validate()  # (a finished run that is resumed was validated there)
            self.save_last()
            if not (self.out / f"step-{at.step}.pt").exists():
                self.keep()
        if not (self.out / "best.pt").exists() or not math.isfinite(at.best):
            self.save("best.pt")  # no validation yet: the weights at the stop
        metric = self.t.early_stopping_metric
        best, text = validation.describe_outcome(metric, at)
        self.say(f"stopped ({stopped}) after {at.step} steps; {text}; checkpoints in {self.out}")
        return TrainResult(at.step, at.best_bleu, stopped, self.history, metric, best, at.best_step)


def train(
    cfg: Config,
    out_dir: str | Path,
    resume: bool = False,
    config_dir: Path | None = None,
    log: Log | None = None,
    progress: bool = False,
    overwrite: bool = False,
) -> TrainResult:
    """Train the model ``cfg`` describes; write checkpoints and ``log.csv`` to ``out_dir``.

    Args:
        resume: continue from ``out_dir/last.pt`` exactly where it stopped.
        config_dir: the config file's folder (relative corpus paths may resolve there).
        log: receives human-readable lines (the library itself never prints).
        progress: show a tqdm progress bar on stderr when it is a terminal.
        overwrite: remove the checkpoints and log.csv of a run in ``out_dir`` once this
            one has passed its checks and data work (``--overwrite``).
    Returns:
        steps, best.pt's dev BLEU, why training stopped, the logged rows, and the
        early-stopping metric with its best value and step.
    """
    validate_config(cfg, "config")  # (changed in code since it was loaded)
    check_cell(cfg)  # a custom cell that cannot be had fails before any data work
    check_corpora(cfg, config_dir)  # before the folder is made
    with claimed(out_dir, writer=rank_and_world()[0] == 0):  # one run per folder
        trainer = Trainer(cfg, out_dir, resume, config_dir, log, progress, overwrite)
        result = trainer.run()
    if result.stopped != "interrupted":  # else (or on an error) other ranks may be gone
        trainer.update.net = trainer.model  # DDP goes before the process group
        trainer.dist.close()
    return result
