"""The arguments of the commands that decode with a checkpoint (or an ensemble):
``translate``, ``evaluate`` and ``score``, and the search options the first two share."""

from __future__ import annotations

import argparse
from typing import Any

from rnnkit.cli.commands import add_device, non_negative_float, non_negative_int, positive_int
from rnnkit.cli.decode import cmd_evaluate, cmd_score, cmd_translate

__all__ = ["add_evaluate", "add_score", "add_search_options", "add_translate"]

ENSEMBLE_HELP = (
    "a .pt file written by rnnkit train; several: an ensemble (their probabilities "
    "averaged at every step; same vocabularies; decoding settings from the first)"
)


def add_search_options(parser: argparse.ArgumentParser) -> None:
    """``--length-penalty``, ``--coverage-penalty`` and ``--replace-unk`` of the commands
    that translate (translate, evaluate)."""
    parser.add_argument(
        "--length-penalty",
        type=non_negative_float,
        metavar="ALPHA",
        help="α of beam search's length normalisation ((5 + |y|) / 6)^α; 0 = none "
        "(default: from checkpoint)",
    )
    parser.add_argument(
        "--coverage-penalty",
        type=non_negative_float,
        metavar="BETA",
        help="β of beam search's coverage penalty (GNMT), against skipping source words; "
        "0 = none (default: from checkpoint)",
    )
    parser.add_argument(
        "--max-len-a",
        type=non_negative_float,
        metavar="A",
        help="outputs of at most A·|x| + B tokens, EOS included (|x|: source tokens with "
        "its EOS): A (default: the checkpoint's decode.max_len_a)",
    )
    parser.add_argument(
        "--max-len-b",
        type=non_negative_int,
        metavar="B",
        help="... and B (default: the checkpoint's decode.max_len_b)",
    )
    parser.add_argument(
        "--replace-unk",
        action="store_true",
        help="write each output <unk> as the source token it attends to most (copies names "
        "and numbers a word-level model cannot spell; models with attention)",
    )


def add_translate(sub: Any) -> None:
    tr = sub.add_parser(
        "translate", help="translate lines of text with a checkpoint (or an ensemble)"
    )
    tr.add_argument("checkpoint", nargs="+", metavar="CHECKPOINT", help=ENSEMBLE_HELP)
    tr.add_argument("--input", help="UTF-8 text, one sentence per line (default: stdin)")
    tr.add_argument("--output", help="where to write translations (default: stdout)")
    tr.add_argument(
        "--beam", type=positive_int, help="beam size; 1 = greedy (default: from checkpoint)"
    )
    tr.add_argument(
        "--batch-size", type=positive_int, help="sentences per batch (default: from checkpoint)"
    )
    add_search_options(tr)
    tr.add_argument(
        "--n-best",
        type=positive_int,
        default=1,
        help="write the N best as 'line ||| text ||| score', line the input line's 0-based "
        "number (Moses' n-best format); N at most the beam size, or samples with --sample "
        "(default: 1). score: beam search's, the log-probability over the length penalty "
        "(raw with --length-penalty 0); greedy and --sample: the log-probability",
    )
    tr.add_argument(
        "--json",
        action="store_true",
        help="write one JSON object per line: text, score, source_tokens, source_unknown "
        "(the indices of those read as <unk>), target_tokens, "
        "attention (rows = target tokens), and alternatives with --n-best",
    )
    tr.add_argument(
        "--sample",
        action="store_true",
        help="draw each output from the model's distribution instead of searching "
        "(e.g. for back-translation); with --n-best N: N samples per line",
    )
    for flag, kind, meta, says in (
        ("--temperature", float, "T", "logits / T (default: 1.0)"),
        ("--top-k", int, "K", "from the K most probable tokens only (default: 0 = all)"),
        (
            "--top-p",
            float,
            "P",
            "from the fewest tokens whose probability reaches P (nucleus; default: 1.0 = all)",
        ),
        ("--seed", int, "S", "random seed (default: 1)"),
    ):  # fmt: skip  (None: not given, which is what --sample's absence checks)
        tr.add_argument(flag, type=kind, default=None, metavar=meta, help=f"--sample: {says}")
    add_device(tr)
    tr.set_defaults(func=cmd_translate)


def add_evaluate(sub: Any) -> None:
    ev = sub.add_parser("evaluate", help="BLEU and chrF (sacrebleu) of a checkpoint, as JSON")
    ev.add_argument("checkpoint", nargs="+", metavar="CHECKPOINT", help=ENSEMBLE_HELP)
    ev.add_argument("--src", required=True, help="source sentences, one per line")
    ev.add_argument(
        "--ref",
        required=True,
        nargs="+",
        metavar="FILE",
        action=_References,
        help="reference translations, line-aligned; several files: multi-reference scores "
        "(it takes every file name after it: give CHECKPOINT first)",
    )
    ev.add_argument(
        "--beam", type=positive_int, help="beam size; 1 = greedy (default: from checkpoint)"
    )
    ev.add_argument(
        "--batch-size", type=positive_int, help="sentences per batch (default: from checkpoint)"
    )
    add_search_options(ev)
    ev.add_argument("--lowercase", action="store_true", help="case-insensitive scores")
    ev.add_argument(
        "--group-sources",
        action="store_true",
        help="score each distinct source line once, against the references of all its "
        "lines (corpora that list one sentence with several translations, e.g. Tatoeba)",
    )
    ev.add_argument(
        "--by-length",
        action="store_true",
        help="also BLEU per source length in words (0-9, 10-19, ..., 60+): by_length",
    )
    ev.add_argument("--output", help="also write the translations here")
    add_device(ev)
    ev.set_defaults(func=cmd_evaluate)


def add_score(sub: Any) -> None:
    sc = sub.add_parser(
        "score",
        help="log-probability of given translations under a checkpoint (forced decoding): "
        "one score per line",
    )
    sc.add_argument("checkpoint", nargs="+", metavar="CHECKPOINT", help=ENSEMBLE_HELP)
    sc.add_argument("--src", required=True, help="source sentences, one per line")
    sc.add_argument("--tgt", required=True, help="their translations, line-aligned")
    sc.add_argument("--output", help="where to write the scores, one per line (default: stdout)")
    sc.add_argument(
        "--normalize",
        action="store_true",
        help="divide each score by its number of target tokens (EOS included)",
    )
    sc.add_argument(
        "--batch-size", type=positive_int, help="pairs per batch (default: from checkpoint)"
    )
    add_device(sc)
    sc.set_defaults(func=cmd_score)


class _References(argparse.Action):
    """``--ref FILE [FILE ...]``: a ``.pt`` among them is the checkpoint given after it
    (argparse said only that CHECKPOINT was missing)."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        checkpoints = [v for v in values if str(v).endswith(".pt")]
        if checkpoints:
            parser.error(
                f"--ref takes every file after it, {checkpoints[0]} too: give the "
                "checkpoint first (rnnkit evaluate CKPT --src F --ref F)"
            )
        setattr(namespace, self.dest, values)
