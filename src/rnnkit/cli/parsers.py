"""The ``rnnkit`` command line's arguments: one function per command adds its
sub-parser (its options, their help and checks) and the function that runs it."""

from __future__ import annotations

import argparse
from typing import Any

from rnnkit import __version__
from rnnkit.cli.commands import (
    add_device,
    cmd_average,
    cmd_bench,
    cmd_data,
    cmd_demo,
    cmd_experiment,
    cmd_info,
    cmd_inspect,
    cmd_train,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)
from rnnkit.cli.decode import cmd_evaluate, cmd_score, cmd_translate

__all__ = ["add_search_options", "build_parser"]

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


# Arguments that name a file or folder, by their dest, as their errors name them.
PATH_ARGS = {
    "out": "--out", "output": "--output", "input": "--input", "src": "--src",
    "tgt": "--tgt", "ref": "--ref", "corpus": "--corpus", "results": "--results",
    "data_dir": "--data-dir", "from_dir": "--from", "config": "CONFIG",
    "checkpoint": "CHECKPOINT", "checkpoints": "CHECKPOINT",
}  # fmt: skip


def empty_path(args: argparse.Namespace) -> str | None:
    """The error for a path given as "" (an unset shell variable: ``--out "$OUT"``), which
    was taken as no option (train wrote into runs/NAME, inspect into the current folder)
    or named as ":"."""
    for dest, name in PATH_ARGS.items():
        value = getattr(args, dest, None)
        if value == "":
            return f"{name}: an empty path ({value!r})"
        if isinstance(value, list) and "" in value:
            return f"{name}: an empty path among {value!r}"
    return None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rnnkit",
        description="Recurrent sequence models with attention: train, translate, evaluate.",
    )
    p.add_argument("--version", action="version", version=f"rnnkit {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_demo, _add_train, _add_translate, _add_average, _add_evaluate,
                _add_score, _add_info, _add_inspect, _add_experiment, _add_data):  # fmt: skip
        add(sub)
    from rnnkit.serve.command import add_parser as add_serve_parser

    add_serve_parser(sub)
    _add_bench(sub)
    return p


def _add_demo(sub: Any) -> None:
    d = sub.add_parser(
        "demo",
        help="train an attention model on the built-in dates task and "
        "show what it learnt (about 2 minutes on a CPU)",
    )
    d.add_argument(
        "--out",
        default="runs/demo",
        help="folder for the checkpoint and the attention heatmap (default: runs/demo)",
    )
    d.add_argument(
        "--minutes",
        type=positive_float,
        default=None,
        help="training time budget in minutes (default: 1.5, as in configs/dates.yaml)",
    )
    d.set_defaults(func=cmd_demo)


def _add_train(sub: Any) -> None:
    t = sub.add_parser(
        "train",
        help="train a model from a YAML config",
        description="Train a model from a YAML config. In several processes: --nproc N on "
        "one machine, or torchrun --nnodes ... --nproc-per-node N -m rnnkit train CONFIG "
        "...; the config's batch is then the global batch, and rank 0 writes.",
    )
    t.add_argument("config", help="YAML config (see configs/)")
    t.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a config value, e.g. --set train.max_steps=100 (repeatable)",
    )
    t.add_argument(
        "--out", help="output folder for checkpoints and logs (default: runs/<config name>)"
    )
    t.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    t.add_argument(
        "--overwrite",
        action="store_true",
        help="start again in an OUT that holds a run (its checkpoints, log, TensorBoard "
        "events, vocabularies and sentencepiece models are removed, once the new run has "
        "passed its checks and data work); without it such an OUT is an error",
    )
    t.add_argument(
        "--nproc",
        type=positive_int,
        default=1,
        metavar="N",
        help="train in N processes on this machine (torchrun --standalone "
        "--nproc-per-node N; one GPU each when there are GPUs); the config's batch is "
        "the global batch (default: 1)",
    )
    t.set_defaults(func=cmd_train)


def _add_translate(sub: Any) -> None:
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


def _add_average(sub: Any) -> None:
    av = sub.add_parser(
        "average",
        help="average the weights of checkpoints of one run into one that translates "
        "(e.g. the step-*.pt files that train.keep_checkpoints keeps)",
    )
    av.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT", help=".pt files of one model")
    av.add_argument("--out", required=True, help="the averaged checkpoint to write")
    av.set_defaults(func=cmd_average)


def _add_evaluate(sub: Any) -> None:
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


def _add_score(sub: Any) -> None:
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


def _add_info(sub: Any) -> None:
    inf = sub.add_parser(
        "info",
        help="what a checkpoint holds: model, vocabularies, decoding defaults, how far it "
        "was trained, as JSON",
    )
    inf.add_argument("checkpoint", help="a .pt file written by rnnkit train or average")
    what = inf.add_mutually_exclusive_group()
    what.add_argument(
        "--config", action="store_true", help="print its whole config as YAML instead"
    )
    what.add_argument(
        "--embeddings",
        choices=("src", "tgt"),
        help="print that side's embeddings instead, as word2vec text (what "
        "model.src_embeddings / tgt_embeddings read)",
    )
    inf.set_defaults(func=cmd_info)


def _add_inspect(sub: Any) -> None:
    ins = sub.add_parser(
        "inspect",
        help="gates, cell states and attention of a trained model "
        "on one sentence: heatmaps and an HTML page",
    )
    ins.add_argument("checkpoint", help="a .pt file written by rnnkit train")
    ins.add_argument("sentence", help="a source sentence (raw text)")
    ins.add_argument(
        "--out", default="inspect", help="folder for the figures and page (default: ./inspect)"
    )
    ins.add_argument(
        "--corpus", help="a file of source sentences: gate saturation statistics over all of them"
    )
    ins.add_argument(
        "--units",
        type=positive_int,
        default=16,
        help="units shown per gate heatmap, those that change most (default: 16)",
    )
    ins.add_argument(
        "--beam", type=positive_int, default=None,
        help="record the translation of this beam size, as translate gives it: 1 = greedy, "
        "K > 1: beam search's best, which the decoder then reads (default: from checkpoint)",
    )  # fmt: skip
    ins.set_defaults(func=cmd_inspect)


def _add_experiment(sub: Any) -> None:
    ex = sub.add_parser(
        "experiment",
        help="run an experiment that reproduces a claim of the "
        "literature and regenerate its section of docs/RESULTS.md",
    )
    ex.add_argument(
        "name", help="long-memory | attention-length | lstm-vs-gru | attention-cost | variants"
    )
    ex.add_argument(
        "--quick",
        action="store_true",
        help="a reduced version (seconds to a "
        "minute); writes OUT/RESULTS.md instead of docs/RESULTS.md",
    )
    ex.add_argument("--out", help="folder for figures (default: runs/experiments/NAME)")
    ex.add_argument("--results", help="the Markdown file whose section is regenerated")
    ex.add_argument(
        "--data-dir", help="folder holding multi30k/ (default: RNNKIT_DATA, then ../shared/data)"
    )
    ex.set_defaults(func=cmd_experiment)


def _add_data(sub: Any) -> None:
    da = sub.add_parser("data", help="fetch a corpus")
    da.add_argument(
        "corpus",
        choices=["multi30k", "tatoeba"],
        help="Multi30k task 1 (de, en; github.com/multi30k) or Tatoeba English-French "
        "(manythings.org/anki fra-eng.zip)",
    )
    da.add_argument(
        "--out",
        required=True,
        help="folder to write into: multi30k: train/val/test2016.{de,en}; tatoeba: "
        "eng-fra.txt (English TAB French), as configs/*.yaml expect under "
        "DATA/multi30k and DATA/tatoeba-eng-fra",
    )
    da.add_argument(
        "--from",
        dest="from_dir",
        metavar="PATH",
        help="copy from a local folder (or, for tatoeba, fra-eng.zip or fra.txt) "
        "instead of downloading; replaces the files an earlier run left in OUT",
    )
    da.set_defaults(func=cmd_data)


def _add_bench(sub: Any) -> None:
    b = sub.add_parser("bench", help="layer speed against torch.nn (bench/layers.py)")
    b.add_argument("--quick", action="store_true", help="one size, 3 repeats (a smoke run)")
    b.set_defaults(func=cmd_bench)


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
