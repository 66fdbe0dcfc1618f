"""Training: data → tokenizers and vocabularies → batches → Adam steps → checkpoints.

``train(cfg, out_dir)`` runs the loop the config describes: Adam with gradient
clipping, learning-rate warm-up and decay (plateau on dev BLEU, or inverse square
root), label smoothing, validation with sacreBLEU every ``validate_every`` steps,
early stopping, ``best.pt`` / ``last.pt`` written atomically (and the weights of the last
``keep_checkpoints`` checkpoints as ``step-STEP.pt``, for averaging), and a CSV log.

Resuming is exact: ``last.pt`` holds the optimizer, scheduler and RNG states and the
position in the epoch's (seeded) batch order, so a run killed and resumed ends with
the same parameters as one that never stopped.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from rnnkit.checkpoint import (
    Bundle,
    build_model,
    check_cell,
    load_checkpoint,
    save_checkpoint,
)
from rnnkit.config import Config, config_to_dict
from rnnkit.data import Batch, encode_pairs, make_batches
from rnnkit.evaluate import score
from rnnkit.model import sequence_loss
from rnnkit.optim import Schedule, make_optimizer
from rnnkit.prepare import load_pairs, prepare
from rnnkit.progress import CsvLog, Meter, progress_bar, report
from rnnkit.translate import translate_lines

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


@dataclass
class TrainResult:
    steps: int
    best_bleu: float
    stopped: str  # why training ended: max_steps, max_epochs, max_minutes, early_stopping, ...
    history: list[dict[str, Any]] = field(default_factory=list)


def pick_device(name: str) -> torch.device:
    """``auto``: CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _rng_state() -> dict[str, Any]:
    s: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        s["cuda"] = torch.cuda.get_rng_state_all()
    return s


def _set_rng_state(s: dict[str, Any]) -> None:
    torch.set_rng_state(s["torch"])
    random.setstate(s["python"])
    if "cuda" in s and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def validate(bundle: Bundle, pairs: list[Pair], beam_size: int = 1) -> dict[str, Any]:
    """Dev-set loss, perplexity and sacreBLEU / chrF of the model's translations."""
    model, cfg = bundle.model, bundle.config
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    examples = encode_pairs(
        pairs, bundle.src_tokenizer, bundle.tgt_tokenizer, bundle.src_vocab, bundle.tgt_vocab
    )
    nll, n = 0.0, 0
    with torch.no_grad():
        for b in make_batches(
            examples,
            cfg.train.batch_tokens,
            cfg.train.batch_size,
            False,
            0,
            bundle.src_vocab.pad_id,
        ):
            b = b.to(device)
            logits, _ = model(b.src, b.src_lengths, b.tgt[:, :-1])
            loss, k = sequence_loss(logits, b.tgt[:, 1:], bundle.tgt_vocab.pad_id)
            nll, n = nll + float(loss), n + k
    hyps = [t[0].text for t in translate_lines(bundle, [s for s, _ in pairs], beam_size)]
    refs = [t for _, t in pairs]
    scores = score(hyps, refs, lowercase=cfg.data.lowercase)
    lowercased = score(hyps, refs, lowercase=True)["bleu"]
    model.train(was_training)
    return {
        "loss": nll / max(n, 1),
        "ppl": math.exp(min(nll / max(n, 1), 50)),
        "bleu": scores["bleu"],
        "chrf": scores["chrf"],
        "bleu_lc": lowercased,
        "hyps": hyps,
    }


class _Stop(Exception):
    """Raised inside the loop when a stopping criterion is met."""


@dataclass
class _Position:
    """Where training stands; saved in every checkpoint, restored by ``--resume``."""

    step: int = 0
    epoch: int = 0
    pos: int = 0  # batches of this epoch already done
    best: float = -math.inf  # best dev BLEU
    bad: int = 0  # validations since the best one
    elapsed: float = 0.0  # training seconds before this process started


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
    ) -> None:
        self.cfg, self.t = cfg, cfg.train
        self.say: Log = log or (lambda _msg: None)
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.device = pick_device(self.t.device)
        self.progress = progress
        ckpt = load_checkpoint(self.out / "last.pt") if resume else None
        if ckpt is not None and ckpt["config"] != config_to_dict(cfg):
            self.say("note: the config differs from the one in last.pt; using the given config")
        torch.manual_seed(self.t.seed)
        random.seed(self.t.seed)
        self.data = d = prepare(cfg, self.out, config_dir, ckpt, self.say)
        self.model = build_model(cfg, len(d.src_vocab), len(d.tgt_vocab)).to(self.device)
        self.bundle = Bundle(
            cfg, self.model, d.src_tokenizer, d.tgt_tokenizer, d.src_vocab, d.tgt_vocab, 0
        )
        self.opt = make_optimizer(cfg, self.model)
        self.sched = Schedule(cfg, self.opt)
        self.at = _Position()
        if ckpt is not None:
            self.model.load_state_dict(ckpt["model"])
            self.opt.load_state_dict(ckpt["optimizer"])
            self.sched.load_state_dict(ckpt["scheduler"])
            self.at = _Position(**ckpt["progress"])
            _set_rng_state(ckpt["rng"])
            self.say(
                f"resumed from {self.out / 'last.pt'} at step {self.at.step} "
                f"(epoch {self.at.epoch + 1})"
            )
        n_params = sum(p.numel() for p in self.model.parameters())
        self.say(
            f"model: {cfg.model.cell} encoder-decoder, attention {cfg.model.attention}, "
            f"{n_params / 1e6:.2f} M parameters; {len(d.examples)} training pairs; "
            f"device {self.device}"
        )
        self.csv = CsvLog(self.out, self.at.step if ckpt is not None else None)
        self.history: list[dict[str, Any]] = []
        self.t0 = time.time()

    def elapsed(self) -> float:
        """Training seconds, across resumed runs."""
        return self.at.elapsed + time.time() - self.t0

    def translation_payload(self) -> dict[str, Any]:
        """What translating needs: config, tokenizers, vocabularies, weights, step."""
        d = self.data
        return {
            "config": config_to_dict(self.cfg),
            "model": self.model.state_dict(),
            "src_tokenizer": d.src_tokenizer.to_state(),
            "tgt_tokenizer": d.tgt_tokenizer.to_state(),
            "src_vocab": d.src_vocab.to_state(),
            "tgt_vocab": d.tgt_vocab.to_state(),
            "step": self.at.step,
        }

    def payload(self) -> dict[str, Any]:
        """What a checkpoint holds: enough to translate, and to resume exactly."""
        at = dataclasses.replace(self.at, elapsed=self.elapsed())
        return {
            **self.translation_payload(),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "rng": _rng_state(),
            "progress": dataclasses.asdict(at),
        }

    def save(self, name: str) -> None:
        save_checkpoint(self.out / name, self.payload())

    def keep(self) -> None:
        """With ``train.keep_checkpoints`` N: weights-only ``step-STEP.pt`` beside
        ``last.pt``, the N latest kept (for ``rnnkit average``)."""
        n = self.t.keep_checkpoints
        if not n:
            return
        save_checkpoint(self.out / f"step-{self.at.step}.pt", self.translation_payload())
        for old in kept_checkpoints(self.out)[:-n]:
            old.unlink(missing_ok=True)

    def train_step(self, batch: Batch) -> tuple[Tensor, int, float]:
        """One update on ``batch``: (summed loss, target tokens, learning rate used)."""
        t, b = self.t, batch.to(self.device)
        lr = self.sched.set(self.at.step + 1)
        logits, _ = self.model(b.src, b.src_lengths, b.tgt[:, :-1], t.teacher_forcing)
        loss, n = sequence_loss(logits, b.tgt[:, 1:], self.data.tgt_vocab.pad_id, t.label_smoothing)
        self.opt.zero_grad(set_to_none=True)
        (loss / n).backward()
        if t.clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.clip)
        self.opt.step()
        return loss.detach(), n, lr

    def validate(self) -> None:
        """Dev BLEU; keep ``best.pt``; count validations without improvement."""
        v = _validate_and_log(
            self.bundle,
            self.data.dev,
            self.at.step,
            self.at.epoch,
            self.csv,
            self.history,
            self.say,
            self.elapsed(),
        )
        self.sched.validated(v)
        if v > self.at.best:
            self.at.best, self.at.bad = v, 0
            self.save("best.pt")
        else:
            self.at.bad += 1

    def run(self) -> TrainResult:
        """The loop; returns when a stopping criterion is met or on Ctrl-C."""
        t, at = self.t, self.at
        n_batches = len(make_batches(self.data.examples, t.batch_tokens, t.batch_size, False, 0, 0))
        total = n_batches * t.max_epochs
        bar = progress_bar(
            self.progress, min(total, t.max_steps) if t.max_steps else total, at.step
        )
        if bar is not None and not bar.disable:  # log lines above the bar, not through it
            plain_say = self.say

            def say_above(msg: str) -> None:
                with bar.external_write_mode():
                    plain_say(msg)

            self.say = say_above
        stopped = "max_epochs"
        meter = Meter(self.device)
        self.model.train()
        done_rng = _rng_state()  # RNG after the last completed step: what Ctrl-C saves
        try:
            if t.max_steps and at.step >= t.max_steps:  # resuming a run that already finished
                raise _Stop("max_steps")
            while at.epoch < t.max_epochs:
                batches = make_batches(
                    self.data.examples,
                    t.batch_tokens,
                    t.batch_size,
                    True,
                    t.seed + at.epoch,
                    self.data.src_vocab.pad_id,
                )
                while at.pos < len(batches):
                    loss, n, lr = self.train_step(batches[at.pos])
                    at.pos, at.step = at.pos + 1, at.step + 1  # counted once the update is done
                    done_rng = _rng_state()
                    meter.add(loss, n)
                    if at.step % t.log_every == 0:
                        row = meter.row(at.step, at.epoch, lr, self.elapsed())
                        self.csv.write(row)
                        self.history.append(row)
                        report(bar, self.say, row)
                    if bar is not None:
                        bar.update(1)
                    self._after_step()
                at.epoch, at.pos = at.epoch + 1, 0
        except _Stop as stop:
            stopped = str(stop)
        except KeyboardInterrupt:
            stopped = "interrupted"
            _set_rng_state(done_rng)  # the cut-short step drew dropout masks; resume redraws them
            self.say(f"interrupted at step {at.step}: saving {self.out / 'last.pt'}")
        finally:
            if bar is not None:
                bar.close()
        return self._finish(stopped)

    def _after_step(self) -> None:
        """Validation, checkpoints and stopping criteria after an update."""
        t, at = self.t, self.at
        if at.step % t.validate_every == 0:
            self.validate()
            if t.patience and at.bad >= t.patience:
                raise _Stop("early_stopping")
        if at.step % t.checkpoint_every == 0:
            self.save("last.pt")
            self.keep()
        if t.max_steps and at.step >= t.max_steps:
            raise _Stop("max_steps")
        if t.max_minutes and self.elapsed() >= 60 * t.max_minutes:
            raise _Stop("max_minutes")

    def _finish(self, stopped: str) -> TrainResult:
        at = self.at
        if stopped != "interrupted" and at.step % self.t.validate_every != 0:
            self.validate()
        self.save("last.pt")
        if stopped != "interrupted" and not (self.out / f"step-{at.step}.pt").exists():
            self.keep()
        if not (self.out / "best.pt").exists():
            self.save("best.pt")
        self.csv.close()
        self.say(
            f"stopped ({stopped}) after {at.step} steps; best dev BLEU {at.best:.2f}; "
            f"checkpoints in {self.out}"
        )
        return TrainResult(at.step, at.best, stopped, self.history)


def kept_checkpoints(out: str | Path) -> list[Path]:
    """The ``step-STEP.pt`` files in ``out``, oldest step first."""
    found = []
    for path in Path(out).glob("step-*.pt"):
        step = path.stem.removeprefix("step-")
        if step.isdigit():
            found.append((int(step), path))
    return [path for _, path in sorted(found)]


def train(
    cfg: Config,
    out_dir: str | Path,
    resume: bool = False,
    config_dir: Path | None = None,
    log: Log | None = None,
    progress: bool = False,
) -> TrainResult:
    """Train the model ``cfg`` describes; write checkpoints and ``log.csv`` to ``out_dir``.

    Args:
        resume: continue from ``out_dir/last.pt`` exactly where it stopped.
        config_dir: the config file's folder (relative corpus paths may resolve there).
        log: receives human-readable lines (the library itself never prints).
        progress: show a tqdm progress bar on stderr when it is a terminal.
    Returns:
        steps done, best dev BLEU, why training stopped, and the logged rows.
    """
    check_cell(cfg)  # a custom cell that cannot be had fails before any data work
    return Trainer(cfg, out_dir, resume, config_dir, log, progress).run()


def _validate_and_log(
    bundle: Bundle,
    dev: list[Pair],
    step: int,
    epoch: int,
    csv_log: CsvLog,
    history: list[dict[str, Any]],
    say: Log,
    elapsed: float,
) -> float:
    v = validate(bundle, dev)
    row = {
        "step": step,
        "epoch": epoch + 1,
        "split": "dev",
        "loss": v["loss"],
        "ppl": v["ppl"],
        "bleu": v["bleu"],
        "chrf": v["chrf"],
        "elapsed_s": elapsed,
        "bleu_lc": v["bleu_lc"],
    }
    csv_log.write(row)
    history.append(row)
    say(
        f"dev step {step}: loss {v['loss']:.3f} ppl {v['ppl']:.2f} BLEU {v['bleu']:.2f} "
        f"(lowercased {v['bleu_lc']:.2f}) chrF {v['chrf']:.2f}"
    )
    for (src, ref), hyp in list(zip(dev, v["hyps"]))[:3]:
        say(f"  src: {src}\n  ref: {ref}\n  hyp: {hyp}")
    return float(v["bleu"])
