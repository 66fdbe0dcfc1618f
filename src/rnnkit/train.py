"""Training: data → tokenizers and vocabularies → batches → Adam steps → checkpoints.

``train(cfg, out_dir)`` runs the loop the config describes: Adam with gradient
clipping, learning-rate warm-up and decay (plateau on dev BLEU, or inverse square
root), label smoothing, validation with sacreBLEU every ``validate_every`` steps,
early stopping, ``best.pt`` / ``last.pt`` written atomically, and a CSV log.

Resuming is exact: ``last.pt`` holds the optimizer, scheduler and RNG states and the
position in the epoch's (seeded) batch order, so a run killed and resumed ends with
the same parameters as one that never stopped.
"""

from __future__ import annotations

import csv
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from rnnkit.checkpoint import Bundle, build_model, load_checkpoint, save_checkpoint
from rnnkit.config import Config, config_to_dict, resolve_data_path
from rnnkit.data import (
    DataError,
    Tokenizer,
    Vocab,
    encode_pairs,
    filter_pairs,
    make_batches,
    make_tokenizer,
    read_parallel,
    read_tsv,
    split_by_source,
    task_splits,
    tokenizer_from_state,
    write_atomic,
)
from rnnkit.evaluate import score
from rnnkit.model import Seq2Seq, sequence_loss
from rnnkit.translate import translate_lines

__all__ = ["TrainResult", "load_pairs", "pick_device", "train"]

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


def load_pairs(cfg: Config, config_dir: Path | None = None) -> dict[str, list[Pair]]:
    """Train / dev (/ test) pairs from a built-in task or from corpus files."""
    d = cfg.data
    if d.task:
        return task_splits(
            d.task, d.task_size, d.task_dev, d.task_test, cfg.train.seed, **d.task_options
        )
    if not d.train:
        raise DataError("config: data.train is required unless data.task is set")
    if not d.dev and not d.dev_size:
        raise DataError("config: give data.dev, or data.dev_size to hold out dev pairs from train")
    out = {}
    for split in ("train", "dev", "test"):
        name = getattr(d, split)
        if not name:
            continue
        path = resolve_data_path(d, name, config_dir)
        out[split] = (
            read_tsv(path, d.src_col, d.tgt_col)
            if d.format == "tsv"
            else read_parallel(path, d.src, d.tgt)
        )
    if not d.dev:  # hold out by source sentence, so no source is in two splits
        held = split_by_source(
            out["train"], d.dev_size, 0 if d.test else d.test_size, cfg.train.seed
        )
        out["train"], out["dev"] = held["train"], held["dev"]
        if not d.test and d.test_size:
            out["test"] = held["test"]
    return out


def _build_tokenizers(cfg: Config, pairs: list[Pair]) -> tuple[Tokenizer, Tokenizer]:
    d = cfg.data
    kw: dict[str, Any] = {
        "vocab_size": d.vocab_size,
        "lowercase": d.lowercase,
        "seed": cfg.train.seed,
    }
    if d.sp_model:
        from rnnkit.data import SentencePieceTokenizer

        tok: Tokenizer = SentencePieceTokenizer(resolve_data_path(d, d.sp_model).read_bytes())
        return tok, tok
    if d.tokenizer in ("bpe", "unigram") and d.joint_vocab:
        lines = [s for s, _ in pairs] + [t for _, t in pairs]
        lines = [x.lower() for x in lines] if d.lowercase else lines
        tok = make_tokenizer(d.tokenizer, lines, **kw)
        return tok, tok
    src_lines = [s.lower() if d.lowercase else s for s, _ in pairs]
    tgt_lines = [t.lower() if d.lowercase else t for _, t in pairs]
    return make_tokenizer(d.tokenizer, src_lines, **kw), make_tokenizer(
        d.tokenizer, tgt_lines, **kw
    )


def _lower(pairs: list[Pair], yes: bool) -> list[Pair]:
    return [(s.lower(), t.lower()) for s, t in pairs] if yes else pairs


class _Schedule:
    """Learning rate: linear warm-up, then plateau decay (on dev BLEU) or 1/√step."""

    def __init__(self, cfg: Config, optimizer: torch.optim.Optimizer) -> None:
        self.t, self.opt = cfg.train, optimizer
        self.scale, self.bad, self.best = 1.0, 0, -math.inf

    def lr(self, step: int) -> float:
        t = self.t
        warm = min(1.0, step / t.warmup_steps) if t.warmup_steps else 1.0
        if t.scheduler == "inverse_sqrt" and step > t.warmup_steps:
            return t.lr * math.sqrt(max(t.warmup_steps, 1) / step)
        return max(t.lr * warm * self.scale, t.min_lr if step > t.warmup_steps else 0.0)

    def set(self, step: int) -> float:
        lr = self.lr(step)
        for g in self.opt.param_groups:
            g["lr"] = lr
        return lr

    def validated(self, bleu: float) -> None:
        if self.t.scheduler != "plateau":
            return
        if bleu > self.best:
            self.best, self.bad = bleu, 0
        else:
            self.bad += 1
            if self.bad > self.t.lr_patience:
                self.scale, self.bad = self.scale * self.t.decay_factor, 0

    def state_dict(self) -> dict[str, float]:
        return {"scale": self.scale, "bad": self.bad, "best": self.best}

    def load_state_dict(self, s: dict[str, float]) -> None:
        self.scale, self.bad, self.best = s["scale"], int(s["bad"]), s["best"]


def _optimizer(cfg: Config, model: Seq2Seq) -> torch.optim.Optimizer:
    t = cfg.train
    if t.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
    return cls(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)


class _CsvLog:
    """Append-only CSV of every metric (and TensorBoard events when installed)."""

    FIELDS = [
        "step",
        "epoch",
        "split",
        "loss",
        "ppl",
        "lr",
        "tokens_per_s",
        "bleu",
        "chrf",
        "elapsed_s",
    ]

    def __init__(self, out: Path, resume_step: int | None = None) -> None:
        self.path = out / "log.csv"
        if resume_step is not None and self.path.exists():  # drop rows a killed run wrote late
            with open(self.path, newline="", encoding="utf-8") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
            with open(self.path, "w", newline="", encoding="utf-8") as f:
                w = csv.DictWriter(f, fieldnames=self.FIELDS)
                w.writeheader()
                w.writerows(rows)
        new = not self.path.exists()
        self.f = open(self.path, "a", newline="", encoding="utf-8")  # noqa: SIM115
        self.w = csv.DictWriter(self.f, fieldnames=self.FIELDS)
        if new:
            self.w.writeheader()
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb: Any = SummaryWriter(str(out / "tensorboard"))
        except Exception:  # tensorboard is optional
            self.tb = None

    def write(self, row: dict[str, Any]) -> None:
        self.w.writerow({k: row.get(k, "") for k in self.FIELDS})
        self.f.flush()
        if self.tb is not None:
            for k, v in row.items():
                if k not in ("step", "epoch", "split") and isinstance(v, float):
                    self.tb.add_scalar(f"{row['split']}/{k}", v, row["step"])

    def close(self) -> None:
        self.f.close()
        if self.tb is not None:
            self.tb.close()


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
    scores = score(hyps, [t for _, t in pairs], lowercase=cfg.data.lowercase)
    model.train(was_training)
    return {
        "loss": nll / max(n, 1),
        "ppl": math.exp(min(nll / max(n, 1), 50)),
        "bleu": scores["bleu"],
        "chrf": scores["chrf"],
        "hyps": hyps,
    }


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
        resume: continue from ``out_dir/last.pt`` (same config) exactly where it stopped.
        log: receives human-readable lines (the library itself never prints).
        progress: show a tqdm progress bar on stderr.
    Returns:
        steps done, best dev BLEU and why training stopped.
    """
    say = log or (lambda _msg: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t = cfg.train
    device = pick_device(t.device)
    ckpt = load_checkpoint(out / "last.pt") if resume else None
    if resume and ckpt is not None and ckpt["config"] != config_to_dict(cfg):
        say("note: the config differs from the one in last.pt; using the given config")
    torch.manual_seed(t.seed)
    random.seed(t.seed)

    pairs = load_pairs(cfg, config_dir)
    train_pairs, dev_pairs = _lower(pairs["train"], cfg.data.lowercase), pairs["dev"]
    if ckpt is not None:
        src_tok = tokenizer_from_state(ckpt["src_tokenizer"])
        tgt_tok = tokenizer_from_state(ckpt["tgt_tokenizer"])
        src_vocab, tgt_vocab = (
            Vocab.from_state(ckpt["src_vocab"]),
            Vocab.from_state(ckpt["tgt_vocab"]),
        )
    else:
        say(f"training tokenizers ({cfg.data.tokenizer}) on {len(train_pairs)} pairs")
        src_tok, tgt_tok = _build_tokenizers(cfg, train_pairs)
        src_vocab = Vocab.build(src_tok.encode(s) for s, _ in train_pairs)
        tgt_vocab = Vocab.build(tgt_tok.encode(x) for _, x in train_pairs)
    _save_vocabularies(out, src_tok, tgt_tok, src_vocab, tgt_vocab)
    train_pairs, dropped = filter_pairs(
        train_pairs, cfg.data.max_len, src_tok.encode, tgt_tok.encode
    )
    if dropped:
        say(f"filtered {dropped} training pairs longer than {cfg.data.max_len} tokens or empty")
    examples = encode_pairs(train_pairs, src_tok, tgt_tok, src_vocab, tgt_vocab)
    model = build_model(cfg, len(src_vocab), len(tgt_vocab)).to(device)
    opt = _optimizer(cfg, model)
    sched = _Schedule(cfg, opt)
    bundle = Bundle(cfg, model, src_tok, tgt_tok, src_vocab, tgt_vocab, 0)
    step, epoch, pos, best, bad, elapsed0 = 0, 0, 0, -math.inf, 0, 0.0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        p = ckpt["progress"]
        step, epoch, pos, best, bad = p["step"], p["epoch"], p["pos"], p["best"], p["bad"]
        elapsed0 = p.get("elapsed", 0.0)
        _set_rng_state(ckpt["rng"])
        say(f"resumed from {out / 'last.pt'} at step {step} (epoch {epoch + 1})")
    n_params = sum(p.numel() for p in model.parameters())
    say(
        f"model: {cfg.model.cell} encoder-decoder, attention {cfg.model.attention}, "
        f"{n_params / 1e6:.2f} M parameters; {len(examples)} training pairs; device {device}"
    )

    def payload() -> dict[str, Any]:
        return {
            "config": config_to_dict(cfg),
            "model": model.state_dict(),
            "src_tokenizer": src_tok.to_state(),
            "tgt_tokenizer": tgt_tok.to_state(),
            "src_vocab": src_vocab.to_state(),
            "tgt_vocab": tgt_vocab.to_state(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "rng": _rng_state(),
            "step": step,
            "progress": {
                "step": step,
                "epoch": epoch,
                "pos": pos,
                "best": best,
                "bad": bad,
                "elapsed": elapsed0 + time.time() - t0,
            },
        }

    csv_log = _CsvLog(out, step if ckpt is not None else None)
    history: list[dict[str, Any]] = []
    t0 = time.time()
    per_epoch = len(make_batches(examples, t.batch_tokens, t.batch_size, False, 0, 0))
    total = per_epoch * t.max_epochs
    bar = _bar(progress, min(total, t.max_steps) if t.max_steps else total, step)
    if bar is not None and not bar.disable:  # log lines above the bar, not through it
        plain_say = say

        def say(msg: str) -> None:
            with bar.external_write_mode():
                plain_say(msg)

    stopped, tokens, tick = "max_epochs", 0, time.time()
    loss_sum = torch.zeros((), device=device)
    model.train()
    done_rng = _rng_state()  # RNG after the last completed step: what Ctrl-C saves
    try:
        if t.max_steps and step >= t.max_steps:  # resuming a run that already finished
            stopped = "max_steps"
            raise _Stop
        while epoch < t.max_epochs:
            batches = make_batches(
                examples, t.batch_tokens, t.batch_size, True, t.seed + epoch, src_vocab.pad_id
            )
            while pos < len(batches):
                b = batches[pos].to(device)
                lr = sched.set(step + 1)
                logits, _ = model(b.src, b.src_lengths, b.tgt[:, :-1], t.teacher_forcing)
                loss, n = sequence_loss(logits, b.tgt[:, 1:], tgt_vocab.pad_id, t.label_smoothing)
                opt.zero_grad(set_to_none=True)
                (loss / n).backward()
                if t.clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), t.clip)
                opt.step()
                pos, step = pos + 1, step + 1  # counted once the update is done
                done_rng = _rng_state()
                tokens, loss_sum = tokens + n, loss_sum + loss.detach()  # no sync per step
                if step % t.log_every == 0:
                    now = time.time()
                    mean = float(loss_sum) / tokens
                    row = {
                        "step": step,
                        "epoch": epoch + 1,
                        "split": "train",
                        "loss": mean,
                        "ppl": math.exp(min(mean, 50)),
                        "lr": lr,
                        "tokens_per_s": tokens / (now - tick),
                        "elapsed_s": elapsed0 + now - t0,
                    }
                    csv_log.write(row)
                    history.append(row)
                    _report(bar, say, row)
                    tokens, tick, loss_sum = 0, now, torch.zeros((), device=device)
                if bar is not None:
                    bar.update(1)
                if step % t.validate_every == 0:
                    v = _validate_and_log(
                        bundle,
                        dev_pairs,
                        step,
                        epoch,
                        csv_log,
                        history,
                        say,
                        elapsed0 + time.time() - t0,
                    )
                    sched.validated(v)
                    if v > best:
                        best, bad = v, 0
                        save_checkpoint(out / "best.pt", payload())
                    else:
                        bad += 1
                    if t.patience and bad >= t.patience:
                        stopped = "early_stopping"
                        raise _Stop
                if step % t.checkpoint_every == 0:
                    save_checkpoint(out / "last.pt", payload())
                if t.max_steps and step >= t.max_steps:
                    stopped = "max_steps"
                    raise _Stop
                if t.max_minutes and elapsed0 + time.time() - t0 >= 60 * t.max_minutes:
                    stopped = "max_minutes"
                    raise _Stop
            epoch, pos = epoch + 1, 0
    except _Stop:
        pass
    except KeyboardInterrupt:
        stopped = "interrupted"
        _set_rng_state(done_rng)  # the cut-short step drew dropout masks; resume redraws them
        say(f"interrupted at step {step}: saving {out / 'last.pt'}")
    finally:
        if bar is not None:
            bar.close()
    if stopped != "interrupted" and step % t.validate_every != 0:
        v = _validate_and_log(
            bundle, dev_pairs, step, epoch, csv_log, history, say, elapsed0 + time.time() - t0
        )
        if v > best:
            best = v
            save_checkpoint(out / "best.pt", payload())
    save_checkpoint(out / "last.pt", payload())
    if not (out / "best.pt").exists():
        save_checkpoint(out / "best.pt", payload())
    csv_log.close()
    say(f"stopped ({stopped}) after {step} steps; best dev BLEU {best:.2f}; checkpoints in {out}")
    return TrainResult(step, best, stopped, history)


def _save_vocabularies(
    out: Path, src_tok: Tokenizer, tgt_tok: Tokenizer, src_vocab: Vocab, tgt_vocab: Vocab
) -> None:
    """Vocabularies (one token per line) and sentencepiece models beside the checkpoints.

    The checkpoints hold them too; these files are for people and other tools.
    """
    src_vocab.save(out / "src_vocab.txt")
    tgt_vocab.save(out / "tgt_vocab.txt")
    for side, tok in (("src", src_tok), ("tgt", tgt_tok)):
        proto = getattr(tok, "model_proto", None)
        if proto is not None:
            write_atomic(out / f"{side}_spm.model", proto)


class _Stop(Exception):
    pass


def _validate_and_log(
    bundle: Bundle,
    dev: list[Pair],
    step: int,
    epoch: int,
    csv_log: _CsvLog,
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
    }
    csv_log.write(row)
    history.append(row)
    say(
        f"dev step {step}: loss {v['loss']:.3f} ppl {v['ppl']:.2f} BLEU {v['bleu']:.2f} "
        f"chrF {v['chrf']:.2f}"
    )
    for (src, ref), hyp in list(zip(dev, v["hyps"]))[:3]:
        say(f"  src: {src}\n  ref: {ref}\n  hyp: {hyp}")
    return float(v["bleu"])


def _bar(on: bool, total: int | None, initial: int) -> Any:
    if not on:
        return None
    from tqdm import tqdm

    return tqdm(
        total=total, initial=initial, unit="step", dynamic_ncols=True, disable=not os.isatty(2)
    )


def _report(bar: Any, say: Log, row: dict[str, Any]) -> None:
    if bar is not None and not bar.disable:
        bar.set_postfix(
            loss=f"{row['loss']:.3f}",
            ppl=f"{row['ppl']:.1f}",
            tok_s=f"{row['tokens_per_s']:.0f}",
            lr=f"{row['lr']:.2g}",
        )
    else:
        say(
            f"step {row['step']} epoch {row['epoch']}: loss {row['loss']:.3f} "
            f"ppl {row['ppl']:.2f} lr {row['lr']:.2g} {row['tokens_per_s']:.0f} tok/s"
        )
