"""The ``rnnkit`` command line's arguments: one function per command adds its
sub-parser (its options, their help and checks) and the function that runs it."""

from __future__ import annotations

import argparse
from typing import Any

from rnnkit import __version__
from rnnkit.cli.commands import (
    cmd_average,
    cmd_bench,
    cmd_data,
    cmd_demo,
    cmd_info,
    cmd_inspect,
    cmd_train,
    positive_float,
    positive_int,
)
from rnnkit.cli.decode_parsers import add_evaluate, add_score, add_translate
from rnnkit.cli.experiment import cmd_experiment

__all__ = ["build_parser", "empty_path"]

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
    for add in (_add_demo, _add_train, add_translate, _add_average, add_evaluate,
                add_score, _add_info, _add_inspect, _add_experiment, _add_data):  # fmt: skip
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


def _add_average(sub: Any) -> None:
    av = sub.add_parser(
        "average",
        help="average the weights of checkpoints of one run into one that translates "
        "(e.g. the step-*.pt files that train.keep_checkpoints keeps)",
    )
    av.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT", help=".pt files of one model")
    av.add_argument("--out", required=True, help="the averaged checkpoint to write")
    av.set_defaults(func=cmd_average)


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
