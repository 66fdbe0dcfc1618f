"""``rnnkit demo``: train an attention model on the built-in dates task, then show it.

Human-written dates ("9th of May, 2018", "5/9/18", "wednesday 9 may 2018") go in, ISO
dates ("2018-05-09") come out. The demo trains within a time budget on a CPU, prints a
few translations and the exact-match accuracy on 1,000 held-out dates, and writes an
attention heatmap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from rnnkit.atomic import OutputError
from rnnkit.checkpoint import load_bundle, load_checkpoint
from rnnkit.config import Config, config_from_dict, config_to_dict
from rnnkit.evaluate import exact_match
from rnnkit.inspect import plot_attention
from rnnkit.runlock import refuse_if_busy, remove_run, run_files
from rnnkit.train import load_pairs, pick_device, train
from rnnkit.translate import translate_lines

__all__ = ["DEMO_CONFIG", "DemoResult", "demo_config", "run_demo"]

# Kept equal to configs/dates.yaml (a test checks it), so the demo needs no files.
DEMO_CONFIG = """
data: {task: dates, task_size: 20000, task_dev: 300, task_test: 1000, tokenizer: char}
model: {cell: gru, emb_size: 64, hidden_size: 128, bidirectional: true, attention: bahdanau,
        dropout: 0.1, emb_dropout: 0.0}
train: {batch_tokens: 2000, lr: 0.003, scheduler: none, label_smoothing: 0.0, max_epochs: 20,
        max_minutes: 1.5, validate_every: 500, checkpoint_every: 500, patience: 0,
        early_stopping_metric: accuracy, log_every: 50, seed: 1}
decode: {beam_size: 1, max_len_a: 0.0, max_len_b: 12, batch_size: 200}
"""

EXAMPLES = [
    "9th of May, 2018",
    "Saturday 1 January 2000",
    "5/9/18",
    "the 31st of december 1999",
    "14.07.1989",
]


@dataclass
class DemoResult:
    accuracy: float  # exact match on the held-out test dates, in [0, 1]
    examples: list[tuple[str, str]]  # (input, output)
    heatmap: Path
    checkpoint: Path


def demo_config(max_minutes: float | None = None) -> Config:
    """The demo's config; ``max_minutes`` replaces its time budget (checked as the config's
    ``train.max_minutes``: a negative one was a run of no step and an unloadable best.pt)."""
    d = yaml.safe_load(DEMO_CONFIG)
    if max_minutes is not None:
        d["train"]["max_minutes"] = max_minutes
    return config_from_dict(d, source="rnnkit.demo")


def _replace_earlier_demo(out: Path, cfg: Config) -> None:
    """A demo trains again in place of an earlier demo's run (``make demo`` twice); a
    folder that holds another run (a model or data of its own) is refused, as ``rnnkit
    train`` refuses it without ``--overwrite``."""
    refuse_if_busy(out)  # a demo training there now: leave its files
    found = run_files(out)
    if not found:
        return
    theirs = load_checkpoint(found[0]).get("config") or {}
    mine = config_to_dict(cfg)
    if any(theirs.get(k) != mine[k] for k in ("data", "model")):
        raise OutputError(
            f"--out {out}: holds a run that is not a demo's ({found[0].name}); give another --out"
        )
    remove_run(out)


def run_demo(
    out_dir: str | Path,
    max_minutes: float | None = None,
    log: Callable[[str], None] | None = None,
    progress: bool = False,
) -> DemoResult:
    """Train, evaluate on the held-out test split, print examples, write a heatmap."""
    say = log or (lambda _msg: None)
    out = Path(out_dir)
    cfg = demo_config(max_minutes)
    say(
        f"rnnkit demo: learning to read dates, {cfg.train.max_minutes:g} minutes of training "
        f"on {pick_device(cfg.train.device)}"
    )
    _replace_earlier_demo(out, cfg)
    train(cfg, out, log=say, progress=progress)
    bundle = load_bundle(out / "best.pt", device=pick_device(cfg.train.device))
    test = load_pairs(cfg)["test"]
    hyps = [r[0].text for r in translate_lines(bundle, [s for s, _ in test])]
    accuracy = exact_match(hyps, [t for _, t in test])
    shown = translate_lines(bundle, EXAMPLES)
    examples = [(src, r[0].text) for src, r in zip(EXAMPLES, shown)]
    first = shown[0][0]
    assert first.attention is not None
    heatmap = plot_attention(
        first.src_tokens,
        first.out_tokens,
        first.attention,
        out / "attention.png",
        title=f"{EXAMPLES[0]!r} → {first.text!r}",
    )
    return DemoResult(accuracy, examples, heatmap, out / "best.pt")
