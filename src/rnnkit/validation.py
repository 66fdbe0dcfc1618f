"""Validation during training: dev-set loss, perplexity, and sacreBLEU / chrF / exact-match
accuracy of the model's own translations, logged as a ``dev`` row of ``log.csv``; and
which of them is better (:func:`metric_score`, for ``train.early_stopping_metric``)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from rnnkit.checkpoint import Bundle
from rnnkit.config_schema import LOWER_IS_BETTER
from rnnkit.data import make_batches
from rnnkit.evaluate import score
from rnnkit.model import sequence_loss
from rnnkit.position import Position
from rnnkit.progress import CsvLog
from rnnkit.scoring import bundle_examples
from rnnkit.translate import translate_lines

__all__ = [
    "describe_best",
    "describe_outcome",
    "metric_score",
    "metric_value",
    "validate",
    "validate_and_log",
]

Pair = tuple[str, str]
Log = Callable[[str], None]


def validate(bundle: Bundle, pairs: list[Pair], beam_size: int = 1) -> dict[str, Any]:
    """Dev-set loss, perplexity, and sacreBLEU / chrF / exact-match accuracy (0 to 1) of
    the model's greedy translations."""
    model, cfg = bundle.model, bundle.config
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    examples = bundle_examples(bundle, pairs)  # lowercased with data.lowercase
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
        "accuracy": scores["accuracy"],
        "bleu_lc": lowercased,
        "hyps": hyps,
    }


def validate_and_log(
    bundle: Bundle,
    dev: list[Pair],
    step: int,
    epoch: int,
    csv_log: CsvLog,
    history: list[dict[str, Any]],
    say: Log,
    elapsed: float,
) -> dict[str, Any]:
    """:func:`validate`, written to ``csv_log`` and ``history`` and said; returns the row."""
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
        "accuracy": v["accuracy"],
    }
    csv_log.write(row)
    history.append(row)
    say(
        f"dev step {step}: loss {v['loss']:.3f} ppl {v['ppl']:.2f} BLEU {v['bleu']:.2f} "
        f"(lowercased {v['bleu_lc']:.2f}) chrF {v['chrf']:.2f} "
        f"accuracy {v['accuracy']:.3f}"
    )
    for (src, ref), hyp in list(zip(dev, v["hyps"]))[:3]:
        say(f"  src: {src}\n  ref: {ref}\n  hyp: {hyp}")
    return row


def metric_score(row: dict[str, Any], metric: str) -> float:
    """The value of ``metric`` in a dev ``row`` as a score where higher is better (loss
    and perplexity negated), for picking the best checkpoint and the plateau schedule."""
    value = float(row[metric])
    return -value if metric in LOWER_IS_BETTER else value


def metric_value(score: float, metric: str) -> float:
    """The inverse of :func:`metric_score`: the dev value of ``metric`` as it is."""
    return -score if metric in LOWER_IS_BETTER else score


_NAMES = {"bleu": "BLEU", "chrf": "chrF", "accuracy": "accuracy", "loss": "loss", "ppl": "ppl"}


def describe_best(metric: str, value: float, step: int, bleu: float) -> str:
    """``dev BLEU 38.12``, or ``dev loss 1.234 (step 3000, BLEU 37.80)`` for another metric."""
    text = f"dev {_NAMES[metric]} {value:.{3 if metric in ('accuracy', 'loss') else 2}f}"
    return text if metric == "bleu" else f"{text} (step {step}, BLEU {bleu:.2f})"


def describe_outcome(metric: str, at: Position) -> tuple[float, str]:
    """The best dev value of ``metric`` so far (as it is; -inf before a validation) and
    the words for it in the line that ends a run."""
    best = metric_value(at.best, metric)
    if not math.isfinite(best):  # stopped before the first validation
        return best, "no validation yet (best.pt: the weights at the stop)"
    return best, "best " + describe_best(metric, best, at.best_step, at.best_bleu)
