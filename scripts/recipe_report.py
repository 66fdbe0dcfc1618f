"""The section of docs/RESULTS.md for a recipe (Multi30k or Tatoeba) from a finished run.

    python scripts/recipe_report.py RUN_DIR [--corpus multi30k|tatoeba] [--data DIR]
        [--sweep] [--limit N]

Reads ``RUN_DIR/best.pt`` (``--checkpoint NAME``: another file of the run, such as the
``averaged.pt`` that ``rnnkit average`` writes) and ``RUN_DIR/log.csv`` (written by
``rnnkit train configs/multi30k_de_en.yaml --out RUN_DIR``, or the Tatoeba config) and
writes:

- test and dev scores, greedy and beam, cased and lowercased, with sacrebleu signatures
  (Multi30k: val and test2016 from ``--data``; Tatoeba: the pairs the run held out,
  ``RUN_DIR/dev.fr`` ... ``test.en``);
- with ``--sweep``: dev BLEU for beam sizes × length penalties (the decoding settings are
  chosen on dev; the config's are what ``rnnkit translate`` uses);
- ``docs/figures/CORPUS_learning_curve.png``: dev BLEU against wall-clock minutes;
- three test sentences, their translations and attention heatmaps
  (``docs/figures/CORPUS_attention_N.png``);

into the ``CORPUS`` section of ``docs/RESULTS.md`` (``--results PATH`` elsewhere; its
figures then go into ``figures/`` beside it, or ``--figures DIR``). The section names
the recipe's config as the run's (``--config FILE`` for another one); a run trained on
another corpus, or on a built-in task, is refused.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rnnkit.checkpoint import load_bundle, load_checkpoint  # noqa: E402
from rnnkit.evaluate import score  # noqa: E402
from rnnkit.experiments.common import machine, update_results  # noqa: E402
from rnnkit.inspect import plot_attention, save_figure  # noqa: E402
from rnnkit.record import record  # noqa: E402
from rnnkit.translate import translate_lines  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Recipe:
    config: str
    title: str
    examples: tuple[int, ...]  # test lines shown with their heatmaps
    langs: tuple[str, str]  # file suffixes of source and reference
    splits: tuple[tuple[str, str], ...]  # (name, file prefix) of dev, then test
    held_out: bool  # the files are the run's own held-out pairs, not in --data

    def sets(self, run: Path, data: Path) -> dict[str, tuple[Path, Path]]:
        """Source and reference files of dev and test, in that order."""
        base, (src, ref) = run if self.held_out else data, self.langs
        return {s: (base / f"{f}.{src}", base / f"{f}.{ref}") for s, f in self.splits}


RECIPES = {
    "multi30k": Recipe(
        "configs/multi30k_de_en.yaml", "Multi30k de→en", (0, 7, 42), ("de", "en"),
        (("dev", "val"), ("test2016", "test2016")), held_out=False,
    ),
    "tatoeba": Recipe(
        "configs/tatoeba_fr_en.yaml", "Tatoeba fr→en", (7, 1500, 1990), ("fr", "en"),
        (("dev", "dev"), ("test", "test")), held_out=True,
    ),
}  # fmt: skip


def read_lines(path: Path, limit: int | None) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return lines[:limit] if limit else lines


def learning_curve(
    log_csv: Path, png: Path, title: str = "Multi30k de→en, configs/multi30k_de_en.yaml"
) -> tuple[list[dict[str, float]], Path]:
    with open(log_csv, newline="", encoding="utf-8") as f:
        dev = [r for r in csv.DictReader(f) if r["split"] == "dev"]
    rows = [
        {
            "step": int(r["step"]),
            "minutes": float(r["elapsed_s"]) / 60,
            "bleu": float(r["bleu"]),
            "bleu_lc": float(r["bleu_lc"]) if r.get("bleu_lc") else float("nan"),
        }
        for r in dev
    ]
    fig, ax = plt.subplots(figsize=(6, 3.8))
    ax.plot([r["minutes"] for r in rows], [r["bleu"] for r in rows], "o-", label="cased")
    if any(r["bleu_lc"] == r["bleu_lc"] for r in rows):
        ax.plot(
            [r["minutes"] for r in rows], [r["bleu_lc"] for r in rows], "s--", label="lowercased"
        )
    ax.set_xlabel("wall-clock minutes of training (validation included)")
    ax.set_ylabel("dev BLEU (greedy)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return rows, save_figure(fig, png)


def decode(bundle, src, refs, beam, lp, exact=None):  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    out = translate_lines(bundle, src, beam, 64, length_penalty=lp, exact=exact)
    hyps = [r[0].text for r in out]
    dt = time.perf_counter() - t0
    cased, lower = score(hyps, refs), score(hyps, refs, lowercase=True)
    return hyps, cased, lower, len(src) / dt


def positive_int(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def link(path: Path, results: Path) -> str:
    """``path`` as the results page at ``results`` links it."""
    return Path(os.path.relpath(path.resolve(), results.resolve().parent)).as_posix()


def trained_on(bundle, recipe: Recipe) -> str | None:  # type: ignore[no-untyped-def]
    """What the run was trained on when it is not ``recipe``'s corpus, else None."""
    d = bundle.config.data
    if d.task is not None:
        return f"the built-in task {d.task!r}"
    if (d.src, d.tgt) != recipe.langs:
        return f"{d.src}→{d.tgt} pairs (data.src, data.tgt)"
    return None


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("run", type=Path, help="training output folder (best.pt, log.csv)")
    ap.add_argument("--corpus", choices=RECIPES, default="multi30k", help="whose section")
    ap.add_argument(
        "--checkpoint", default="best.pt", help="checkpoint file in RUN (default: best.pt)"
    )
    ap.add_argument(
        "--data",
        type=Path,
        default=Path(os.environ.get("RNNKIT_DATA", ROOT.parent / "shared" / "data")) / "multi30k",
        help="Multi30k: folder with val.* and test2016.* (default ../shared/data/multi30k)",
    )
    ap.add_argument("--sweep", action="store_true", help="dev BLEU over beam × length penalty")
    ap.add_argument("--beam", type=int, help="beam size of the final numbers (default: config)")
    ap.add_argument("--length-penalty", type=float, help="α of the final numbers (default: config)")
    ap.add_argument(
        "--exact", action="store_true", help="exact stopping rule for the final numbers"
    )
    ap.add_argument(
        "--limit", type=positive_int, default=None, help="first N sentences only (a check)"
    )
    ap.add_argument("--results", type=Path, default=ROOT / "docs" / "RESULTS.md")
    ap.add_argument(
        "--figures", type=Path, help="folder of the figures (default: figures/ beside --results)"
    )
    ap.add_argument("--config", help="the config the run was trained with (default: the recipe's)")
    return ap


def main() -> int:
    ap = parser()
    args = ap.parse_args()
    recipe = RECIPES[args.corpus]
    args.figures = args.figures or args.results.parent / "figures"
    config = args.config or recipe.config
    files = recipe.sets(args.run, args.data)
    ckpt = args.run / args.checkpoint
    for f in (ckpt, args.run / "log.csv", *files["dev"], *list(files.values())[-1]):
        if not f.exists():
            ap.error(f"{f} not found")
    bundle = load_bundle(ckpt)
    if other := trained_on(bundle, recipe):
        ap.error(f"{ckpt}: trained on {other}, not {recipe.title} (--corpus)")
    averaged = load_checkpoint(ckpt).get("averaged")
    dec = bundle.config.decode
    if args.beam is not None:
        dec.beam_size = args.beam
    if args.length_penalty is not None:
        dec.length_penalty = args.length_penalty
    if args.exact:
        dec.exact = True
    if averaged:
        steps = ", ".join(str(s) for s in averaged)
        which = (
            f"then `rnnkit average {args.run}/step-*.pt --out {ckpt}`: the mean of the "
            f"checkpoints at steps {steps}"
        )
    else:
        which = f"checkpoint `{ckpt.name}` at step {bundle.step}"
    limited = (
        f" **Only the first {args.limit} sentences of each set** (--limit): not the sets' scores."
        if args.limit
        else ""
    )
    md = [
        f"Run: `rnnkit train {config} --out {args.run}`, {which}. "
        f"Decoding here: {machine()}.{limited}",
        "",
    ]
    sets = {
        k: (read_lines(a, args.limit), read_lines(b, args.limit)) for k, (a, b) in files.items()
    }
    test = list(sets)[-1]

    if args.sweep:
        md += ["Decoding settings on dev (BLEU cased / lowercased):", ""]
        md += [
            "| beam | length penalty | stopping rule | dev BLEU | dev BLEU lc | sentences/s |",
            "|---:|---:|---|---:|---:|---:|",
        ]
        for beam, lp, exact in (
            (1, 1.0, False),
            (5, 0.6, False),
            (5, 1.0, False),
            (5, 1.4, False),
            (5, 1.0, True),
            (5, 1.4, True),
            (10, 1.0, False),
            (10, 1.4, False),
            (10, 1.0, True),
            (10, 1.4, True),
        ):
            _, c, lo, speed = decode(bundle, *sets["dev"], beam, lp, exact)
            rule = "—" if beam == 1 else ("exact" if exact else "current length")
            md.append(
                f"| {beam} | {lp} | {rule} | {c['bleu']:.2f} | {lo['bleu']:.2f} | {speed:.0f} |"
            )
            print(f"dev beam {beam} lp {lp} {rule}: {c['bleu']:.2f} / {lo['bleu']:.2f}", flush=True)
        md.append("")

    md += [
        "| set | decoding | BLEU | BLEU lowercased | chrF2 | sentences/s |",
        "|---|---|---:|---:|---:|---:|",
    ]
    signatures = {}
    test_hyps: list[str] = []
    for split in sets:
        for beam, lp in ((1, 1.0), (dec.beam_size, dec.length_penalty))[: 1 + (dec.beam_size > 1)]:
            hyps, c, lo, speed = decode(bundle, *sets[split], beam, lp, dec.exact)
            label = "greedy" if beam == 1 else f"beam {beam}, length penalty {lp}"
            label += ", exact stopping" if beam > 1 and dec.exact else ""
            md.append(
                f"| {split} | {label} | **{c['bleu']:.2f}** | {lo['bleu']:.2f} | "
                f"{c['chrf']:.2f} | {speed:.0f} |"
            )
            print(f"{split} {label}: {c['bleu']:.2f} / {lo['bleu']:.2f}", flush=True)
            signatures = {
                "BLEU": c["bleu_signature"],
                "BLEU lowercased": lo["bleu_signature"],
                "chrF2": c["chrf_signature"],
            }
            if split == test:  # (the beam's, after the greedy one)
                test_hyps = hyps
    md += [""] + [f"- {k}: `{v}`" for k, v in signatures.items()] + [""]

    rows, png = learning_curve(
        args.run / "log.csv",
        args.figures / f"{args.corpus}_learning_curve.png",
        f"{recipe.title}, {config.removeprefix('configs/')}",
    )
    at40 = [r for r in rows if r["minutes"] <= 40]
    md += [
        f"![dev BLEU against wall-clock minutes]({link(png, args.results)})",
        "",
        "| step | minutes | dev BLEU (greedy) | lowercased |",
        "|---:|---:|---:|---:|",
    ]
    md += [
        f"| {r['step']} | {r['minutes']:.1f} | {r['bleu']:.2f} | {r['bleu_lc']:.2f} |" for r in rows
    ]
    if at40 and rows[-1]["minutes"] > 40:
        r = at40[-1]
        md += [
            "",
            f"At 40 minutes (last validation before, step {r['step']}): dev BLEU "
            f"{r['bleu']:.2f} cased, {r['bleu_lc']:.2f} lowercased (greedy).",
        ]
    md += ["", f"Examples from {test} (beam search; heatmaps of the greedy translation):", ""]
    src, refs = sets[test]
    for i in recipe.examples:
        if i >= len(src):
            continue
        rec = record(bundle, src[i])
        path = args.figures / f"{args.corpus}_attention_{i}.png"
        if rec.attention is not None:
            plot_attention(rec.src_tokens, rec.out_tokens, rec.attention, path, rec.translation)
        md += [
            f"- source: {src[i]}",
            f"  - reference: {refs[i]}",
            f"  - rnnkit (beam): {test_hyps[i] if test_hyps else ''}",
            f"  - rnnkit (greedy): {rec.translation}",
            f"  - ![attention, test sentence {i}]({link(path, args.results)})",
        ]
    update_results(args.results, args.corpus, "\n".join(md))
    print(f"wrote the {args.corpus} section of {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
