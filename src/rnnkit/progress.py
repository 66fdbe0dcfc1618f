"""What a training run reports: a CSV of every metric (plus TensorBoard events when
tensorboard is installed), a progress bar on a terminal, and the loss / throughput meter.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from rnnkit.atomic import OutputError, write_atomically

if TYPE_CHECKING:
    from rnnkit.distributed import Dist

__all__ = ["CsvLog", "Meter", "check_meters", "meter_of", "progress_bar", "report"]

Log = Callable[[str], None]


class CsvLog:
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
        "bleu_lc",
        "accuracy",
    ]

    def __init__(
        self, out: Path, resume_step: int | None = None, validated: int | None = None
    ) -> None:
        """``resume_step``: a resumed run's; the rows after it go, and so does a dev row at
        it unless that step's validation was done (``validated``: a Ctrl-C in the middle
        of its lines left the row, and the resumed run validates again)."""
        self.path = out / "log.csv"
        if resume_step is not None and self.path.exists():  # drop rows a killed run wrote late
            rows = self._kept(resume_step)
            if validated != resume_step:
                rows = [
                    r for r in rows if not (r["split"] == "dev" and int(r["step"]) == resume_step)
                ]
            write_atomically(self.path, lambda f: self._write_rows(f, rows))  # all or nothing
        new = resume_step is None or not self.path.exists()  # a new run: a new log
        try:
            self.f = open(self.path, "w" if new else "a", newline="", encoding="utf-8")  # noqa: SIM115
            self.w = csv.DictWriter(self.f, fieldnames=self.FIELDS)
            if new:
                self.w.writeheader()
        except OSError as e:
            raise OutputError(f"{self.path}: cannot write ({e.strerror})") from None
        try:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step: the events a killed run wrote after its checkpoint go, as rows do
            purge = None if resume_step is None else resume_step + 1
            self.tb: Any = SummaryWriter(str(out / "tensorboard"), purge_step=purge)
        except Exception:  # tensorboard is optional
            self.tb = None

    def _kept(self, resume_step: int) -> list[dict[str, Any]]:
        """The rows up to ``resume_step``; a row whose step is not a number (cut off by a
        full disk or a kill) is left out."""
        try:
            with open(self.path, newline="", encoding="utf-8", errors="replace") as f:
                rows = list(csv.DictReader(f))
        except OSError as e:
            raise OutputError(f"{self.path}: cannot read ({e.strerror})") from None
        return [
            r
            for r in rows
            if (r.get("step") or "").isdigit()
            and r.get("split")  # (a row cut short has none)
            and int(r["step"]) <= resume_step
        ]

    def _write_rows(self, f: Any, rows: list[dict[str, Any]]) -> None:
        w = csv.DictWriter(f, fieldnames=self.FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)

    def write(self, row: dict[str, Any]) -> None:
        try:
            self.w.writerow({k: row.get(k, "") for k in self.FIELDS})
            self.f.flush()
        except OSError as e:
            raise OutputError(f"{self.path}: cannot write ({e.strerror})") from None
        if self.tb is not None:
            for k, v in row.items():
                if k not in ("step", "epoch", "split") and isinstance(v, float):
                    self.tb.add_scalar(f"{row['split']}/{k}", v, row["step"])

    def close(self) -> None:
        self.f.close()
        if self.tb is not None:
            self.tb.close()


class Meter:
    """Training loss and throughput between two log lines (summed on the device).
    ``saved`` (a :meth:`state` kept in ``last.pt``): the sums of the steps since the last
    line before an interruption, so that the first line after ``--resume`` counts them."""

    def __init__(self, device: torch.device, saved: dict[str, Any] | None = None) -> None:
        self.device = device
        self.reset()
        self.paused_at: float | None = None
        if saved:
            self.loss = saved["loss"].to(device)
            self.tokens = int(saved["tokens"])
            self.tick -= float(saved["seconds"])

    def reset(self) -> None:
        self.loss, self.tokens, self.tick = torch.zeros((), device=self.device), 0, time.time()

    def state(self) -> dict[str, Any]:
        """The sums since the last line, and its training seconds (a pause left out)."""
        now = time.time() if self.paused_at is None else self.paused_at
        return {"loss": self.loss.detach().cpu(), "tokens": self.tokens, "seconds": now - self.tick}

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """The time inside is left out of ``tokens_per_s`` (validation, checkpoints: the
        row after a validation showed half the training speed)."""
        t0 = time.time()
        outer, self.paused_at = self.paused_at, self.paused_at or t0
        try:
            yield
        finally:
            self.paused_at = outer
            if outer is None:
                self.tick += time.time() - t0

    def add(self, loss: Tensor, n: int) -> None:
        self.loss, self.tokens = self.loss + loss, self.tokens + n  # no sync per step

    def row(self, step: int, epoch: int, lr: float, elapsed: float) -> dict[str, Any]:
        now = time.time()
        mean = float(self.loss) / max(self.tokens, 1)
        row = {
            "step": step,
            "epoch": epoch + 1,
            "split": "train",
            "loss": mean,
            "ppl": math.exp(min(mean, 50)),
            "lr": lr,
            "tokens_per_s": self.tokens / max(now - self.tick, 1e-9),
            "elapsed_s": elapsed,
        }
        self.reset()
        return row


def progress_bar(on: bool, total: int | None, initial: int, unit: str = "step") -> Any:
    """A tqdm bar on stderr when ``on`` and stderr is a terminal with a size (else a
    disabled one, and the rows come as log lines)."""
    if not on:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit=unit, dynamic_ncols=True, disable=not _sized())


def _sized() -> bool:
    """stderr is a terminal that reports its rows and columns. A pty left at 0 x 0 (some
    container and CI terminals) is a terminal where tqdm shows nothing at all."""
    if not os.isatty(2):
        return False
    try:
        size = os.get_terminal_size(2)
    except OSError:
        return False
    return size.lines > 0 and size.columns > 0


def above(bar: Any, say: Log) -> Log:
    """``say`` writing its lines above the bar while one is shown (not through it)."""
    if bar is None or bar.disable:
        return say

    def say_above(msg: str) -> None:
        with bar.external_write_mode():
            say(msg)

    return say_above


def report(bar: Any, say: Log, row: dict[str, Any]) -> None:
    """A training row: on the bar when it is shown, else as a log line."""
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


def meter_of(ckpt: dict[str, Any], dist: Dist) -> dict[str, Any] | None:
    """This rank's sums since the last log line in ``ckpt`` (``meters``, checked by
    :func:`rnnkit.runs.check_resumable`; none in older files); saved by another number
    of processes, rank 0 takes them all (the loss summed, the tokens counted globally
    already)."""
    meters = ckpt.get("meters")
    if meters is None:
        return None
    if len(meters) == dist.world:
        return dict(meters[dist.rank])
    if not dist.main:
        return None
    loss = sum((m["loss"].double() for m in meters), torch.zeros((), dtype=torch.float64))
    seconds = max(m["seconds"] for m in meters)
    return {
        "loss": loss.to(meters[0]["loss"].dtype),
        "tokens": meters[0]["tokens"],
        "seconds": seconds,
    }


def check_meters(meters: Any) -> None:
    """Each rank's sums as :meth:`rnnkit.progress.Meter.state` writes them."""
    if not isinstance(meters, list) or not meters:
        raise ValueError("not a list of sums")
    for m in meters:
        if not (
            isinstance(m, dict)
            and isinstance(m.get("loss"), torch.Tensor)
            and m["loss"].dim() == 0
            and type(m.get("tokens")) is int
            and type(m.get("seconds")) is float
        ):
            raise ValueError("a rank's sums are not a loss tensor, tokens and seconds")
