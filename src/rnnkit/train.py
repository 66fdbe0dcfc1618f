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

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import Tensor

from rnnkit import graphs, validation
from rnnkit.atomic import no_ctrl_c, signals_held
from rnnkit.checkpoint import check_cell
from rnnkit.config import Config, validate_config
from rnnkit.corpus_checks import check_corpora
from rnnkit.data import Batch, make_batches
from rnnkit.distributed import pick_device, rng_state, set_rng_state
from rnnkit.job import rank_and_world
from rnnkit.position import Stop, TrainResult
from rnnkit.prepare import load_pairs
from rnnkit.progress import Meter, above, progress_bar, report
from rnnkit.run_state import RunState
from rnnkit.runlock import claimed
from rnnkit.runs import kept_checkpoints
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


class Trainer(RunState):
    """One training run: ``Trainer(cfg, out).run()``. See :func:`train`."""

    def train_step(self, group: list[Batch]) -> tuple[Tensor, int, float]:
        """The gradients of one update on ``train.accumulate`` batches (fewer at the end of
        an epoch); the loop then takes the step (:meth:`take_step`).

        Returns:
            (loss summed over this rank's rows, target tokens of the whole group,
            learning rate used).
        """
        self.dist.check_fault(self.at.step + 1)
        lr = self.sched.set(self.at.step + 1)
        loss, n = self.update(group)
        return loss, n, lr

    def take_step(self) -> None:
        """The step on the gradients of :meth:`train_step`, and the moving average's."""
        self.update.apply()
        self.ema.update()

    def validate(self) -> None:
        """Dev scores (on rank 0; the others wait for them); keep ``best.pt`` by
        ``train.early_stopping_metric``; count validations without improvement."""
        scores = (0.0, 0.0)
        if self.csv is not None:
            at, d = self.at, self.data
            if not any(r.get("split") == "dev" for r in self.history):  # (minutes, maybe)
                self.say(f"validating: translating the {len(d.dev):,} dev sentences (greedy)")
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
        self.meter = meter = Meter(self.device, self.saved_meter)  # (saved by last.pt)
        self.update.net.train()
        done_rng = rng_state()  # RNG after the last completed step: what Ctrl-C saves
        try:
            with meter.paused():
                self._left_to_do()
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
                    with signals_held():  # a Ctrl-C in Adam's step left it half done, uncounted
                        self.take_step()  # (and one before a step's log row lost the row)
                        at.pos, at.step = at.pos + len(group), at.step + 1
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
            try:
                self.update.check(at.step)
                if at.step % t.validate_every != 0 and at.validated != at.step:
                    self.validate()  # the last step's (a resumed finished run: not again)
                return _finish(self, stopped)
            except KeyboardInterrupt:  # (a Ctrl-C here lost the steps since last.pt)
                stopped = "interrupted"
                set_rng_state(done_rng)
        with no_ctrl_c():  # a second Ctrl-C would cut last.pt short: the steps since lost
            return _finish(self, stopped)

    def _left_to_do(self) -> None:
        """Resumed from a Ctrl-C in the middle of a step's validation or checkpoints: what
        the step had left to do, as if the run had never stopped (its validation skipped
        moved the plateau decay, the patience count and best.pt; its kept step-STEP.pt was
        missing for ``average``)."""
        t, at = self.t, self.at
        if at.step and at.step % t.validate_every == 0 and at.validated != at.step:
            self.validate()
            if t.patience and at.bad >= t.patience:
                raise Stop("early_stopping")
        kept = self.out / f"step-{at.step}.pt"
        if at.step and at.step % t.checkpoint_every == 0 and not kept.exists():
            self.keep()  # (only with keep_checkpoints, on rank 0)

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


def _finish(run: Trainer, stopped: str) -> TrainResult:
    """The end of a run: last.pt (and the validation and kept checkpoint of a stop that
    is not Ctrl-C), best.pt if there is none yet, and the line that says why it stopped."""
    at = run.at
    interrupted = stopped == "interrupted"
    if interrupted and run.dist.on:  # the other ranks' RNG states cannot be gathered now
        if (run.out / "last.pt").is_file():
            run.say(f"interrupted at step {at.step}: --resume continues from the last checkpoint")
        else:
            run.say(
                f"interrupted at step {at.step}, before the first checkpoint "
                f"(train.checkpoint_every: {run.t.checkpoint_every}): nothing to resume; "
                "best.pt has the weights at the stop, --overwrite starts again"
            )
    elif interrupted:
        run.update.check(at.step)
        run.say(f"interrupted at step {at.step}: saving {run.out / 'last.pt'}")
        run.save_last()
    else:  # (validated by the loop)
        run.save_last()
        if not (run.out / f"step-{at.step}.pt").exists():
            run.keep()
    if not (run.out / "best.pt").exists() or not math.isfinite(at.best):
        run.save("best.pt")  # no validation yet: the weights at the stop
    metric = run.t.early_stopping_metric
    best, text = validation.describe_outcome(metric, at)
    steps = f"{at.step} step" + "s" * (at.step != 1)
    run.say(f"stopped ({stopped}) after {steps}; {text}; checkpoints in {run.out}")
    return TrainResult(at.step, at.best_bleu, stopped, run.history, metric, best, at.best_step)


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
