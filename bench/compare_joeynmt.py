"""rnnkit against Joey NMT 2.3.0 on Multi30k de→en, same machine, same data, same model.

Run through ``bench/compare_joeynmt.sh``, which installs Joey NMT into its own virtual
environment first. Each round trains both toolkits (in alternating order) for the same
number of updates and then translates test2016 with the trained model, greedy and beam 5,
batches of 64 sentences; every number is the median over rounds. The last thing printed
is the table of ratios, which also replaces the ``compare-joeynmt`` section of
``docs/RESULTS.md`` (``--no-write`` leaves it alone).

The architecture is the same in both: a 1-layer bidirectional GRU encoder of 256 per
direction, a 1-layer GRU decoder of 256, embeddings of 256, additive (Bahdanau, "MLP")
attention scored on the new decoder state, input feeding of the attentional vector
tanh(W [s_t; c_t]), a learned bridge, one joint sentencepiece BPE vocabulary of 8,000 on
lowercased text, Adam 3e-4, clipping 1.0, dropout 0.3, batches of 64 sentences. In
rnnkit that is ``attention: luong`` with ``luong_score: concat`` (v^T tanh(W [s; h_j])
is the additive score written on the concatenation).

Measured:
  train tok/s    target tokens per second of training, each toolkit's own log interval
                 (validation excluded, the first interval left out as warm-up)
  greedy/beam5   test2016 sentences per second of decoding (model loading excluded)
  peak RSS       maximum resident memory of the training / beam-5 decoding process
  --quality-minutes M: each toolkit's own best recipe trained M minutes of wall time, the
                 two side by side (--quality-threads torch threads each, default half the
                 CPUs), both stopped by a Ctrl-C M minutes after their start; then dev BLEU
                 (greedy, lowercased) of the better of each one's best checkpoint (by its own
                 periodic validation) and its final weights. rnnkit's recipe is
                 --quality-config (configs/multi30k_de_en_small.yaml), Joey's the
                 architecture above at its learning rate 3e-4. Its table goes to the
                 compare-joeynmt-quality section of docs/RESULTS.md; --quality-only skips
                 the speed rounds (their section stays as it is).

    bench/compare_joeynmt.sh [--rounds 3] [--steps 200] [--decode-steps 1000] [--threads N]
                             [--quality-minutes 40 [--quality-only]]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml
from compare_report import quality_table, table
from compare_setup import (
    joey_bleu,
    joey_config,
    joey_generation_s,
    joey_tokens_per_s,
    joey_updates,
    output_quality,
    prepare_spm,
    rnnkit_config,
)

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent


def run(
    cmd: list[str],
    env: dict[str, str],
    log: Path,
    timeout: float | None = None,
    stdout: Path | None = None,
    failed: threading.Event | None = None,
) -> float:
    """Run ``cmd`` with stdout+stderr to ``log`` (stdout to ``stdout`` when given); return
    its peak RSS in GiB. ``timeout``: a Ctrl-C after that many seconds, and its end awaited.
    ``failed``: shared by commands that run side by side; a command that fails sets it,
    and the others then get their Ctrl-C at once (no waiting out their time for nothing).

    Raises SystemExit with the log's tail when the command fails."""
    with open(log, "w", encoding="utf-8") as f, open(stdout or os.devnull, "w") as out:
        p = subprocess.Popen(cmd, stdout=out if stdout else f, stderr=f, env=env)
        t0 = time.time()
        while True:
            pid, status, usage = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            late = timeout is not None and time.time() - t0 > timeout
            if late or (failed is not None and failed.is_set()):
                p.send_signal(signal.SIGINT)  # both toolkits save and stop on Ctrl-C
                pid, status, usage = os.wait4(p.pid, 0)
                return usage.ru_maxrss / 2**20
            time.sleep(0.2)
    if os.waitstatus_to_exitcode(status) != 0:
        if failed is not None:
            failed.set()
        tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
        raise SystemExit(f"failed: {' '.join(cmd)}\n" + "\n".join(tail))
    return usage.ru_maxrss / 2**20  # ru_maxrss is in KiB on Linux


_DECODE = """
import json, sys, time, torch
from rnnkit.checkpoint import load_bundle
from rnnkit.translate import translate_lines
ckpt, src, beam, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
bundle = load_bundle(ckpt, device="cpu")
lines = open(src, encoding="utf-8").read().splitlines()
t0 = time.perf_counter()
res = translate_lines(bundle, lines, beam, 64)
dt = time.perf_counter() - t0
open(out, "w", encoding="utf-8").write("\\n".join(r[0].text for r in res) + "\\n")
print(json.dumps({"seconds": dt}))
"""


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.data = Path(args.data).resolve()
        self.work = Path(args.work).resolve()
        self.work.mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ)
        self.env["OMP_NUM_THREADS"] = self.env["MKL_NUM_THREADS"] = str(args.threads)
        self.env["PYTHONPATH"] = str(ROOT / "src")
        self.joey_py = str(Path(args.joey_python))
        self.sp_model, self.joey_vocab = prepare_spm(self.data, self.work)

    def write_yaml(self, path: Path, cfg: dict[str, Any]) -> Path:
        path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
        return path

    def steps(self, r: int) -> int:
        """Round 0 trains the model every round decodes with; later rounds only time training."""
        return self.args.decode_steps if r == 0 else self.args.steps

    def joey_round(self, r: int) -> dict[str, float]:
        steps, out = self.steps(r), self.work / f"joey-{r}"
        cfg = joey_config(self.data, self.sp_model, self.joey_vocab, out, steps, 1, self.args.lr)
        train_cfg = self.write_yaml(self.work / f"joey-{r}-train.yaml", cfg)
        rss_train = run(
            [self.joey_py, str(HERE / "joey_launcher.py"), "train", str(train_cfg), "--skip-test"],
            self.env,
            self.work / f"joey-{r}-train.log",
        )
        tps = joey_tokens_per_s(out / "train.log")[1:]
        res = {"train_tok_s": statistics.median(tps), "rss_train": rss_train}
        n = len((self.data / "test2016.de").read_text(encoding="utf-8").splitlines())
        for beam, name in ((1, "greedy"), (5, "beam5")):
            cfg = joey_config(
                self.data, self.sp_model, self.joey_vocab, self.work / "joey-0", steps, beam
            )
            hyp = self.work / f"joey-{r}-test{beam}.hyp"
            del cfg["data"]["dev"]  # Joey's test mode would translate dev too
            test_cfg = self.write_yaml(self.work / f"joey-{r}-test{beam}.yaml", cfg)
            log = self.work / f"joey-{r}-test{beam}.log"
            rss = run(
                [self.joey_py, str(HERE / "joey_launcher.py"), "test", str(test_cfg)]
                + ["-o", str(hyp)],
                self.env,
                log,
            )
            res[f"{name}_sent_s"] = n / joey_generation_s(self.work / "joey-0" / "test.log", "test")
            res[f"rss_{name}"] = rss
            res[f"{name}_bleu"], res[f"{name}_words"] = output_quality(
                Path(f"{hyp}.test"), self.data / "test2016.en"
            )
        return res

    def rnnkit_round(self, r: int) -> dict[str, float]:
        steps, out = self.steps(r), self.work / f"rnnkit-{r}"
        cfg = self.write_yaml(
            self.work / f"rnnkit-{r}.yaml",
            rnnkit_config(self.data, self.sp_model, steps, self.args.lr),
        )
        rss_train = run(
            [sys.executable, "-m", "rnnkit", "train", str(cfg), "--out", str(out)],
            self.env,
            self.work / f"rnnkit-{r}-train.log",
        )
        tps = [
            float(row["tokens_per_s"])
            for row in _csv_rows(out / "log.csv")
            if row["split"] == "train"
        ][1:]
        res = {"train_tok_s": statistics.median(tps), "rss_train": rss_train}
        for beam, name in ((1, "greedy"), (5, "beam5")):
            log = self.work / f"rnnkit-{r}-test{beam}.log"
            hyp = self.work / f"rnnkit-{r}-test{beam}.hyp"
            rss = run(
                [
                    sys.executable,
                    "-c",
                    _DECODE,
                    str(self.work / "rnnkit-0" / "last.pt"),
                    str(self.data / "test2016.de"),
                    str(beam),
                    str(hyp),
                ],
                self.env,
                log,
            )
            seconds = json.loads(log.read_text().strip().splitlines()[-1])["seconds"]
            n = len((self.data / "test2016.de").read_text(encoding="utf-8").splitlines())
            res[f"{name}_sent_s"] = n / seconds
            res[f"rss_{name}"] = rss
            res[f"{name}_bleu"], res[f"{name}_words"] = output_quality(
                hyp, self.data / "test2016.en"
            )
        return res

    def quality(self, minutes: float) -> dict[str, Any]:
        """Each toolkit's best recipe trained side by side for ``minutes`` of wall time.

        Both start together (``--quality-threads`` torch threads each) and both get a
        Ctrl-C ``minutes`` after their start, on which each saves its current weights and
        stops. Each is scored by dev BLEU (greedy, lowercased) of the better of its best
        checkpoint (by its own periodic validation) and those final weights."""
        env = dict(self.env)
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(self.args.quality_threads)
        seconds = 60 * minutes
        rn_out, joey_out = self.work / "quality-rnnkit", self.work / "quality-joey"
        rn_cmd = [sys.executable, "-m", "rnnkit", "train", str(self.args.quality_config)]
        rn_cmd += ["--out", str(rn_out), "--set", f"data.data_dir={self.data.parent}"]
        rn_cmd += ["--set", "train.max_minutes=0"]  # the Ctrl-C stops it, as it stops Joey
        joey_cfg = joey_config(self.data, self.sp_model, self.joey_vocab, joey_out, None, 1)
        cfg = self.write_yaml(self.work / "quality-joey.yaml", joey_cfg)
        launcher = [self.joey_py, str(HERE / "joey_launcher.py")]
        print(f"quality: both recipes train side by side for {minutes:g} minutes ...", flush=True)
        failed = threading.Event()  # one that fails stops the other
        joey_log, joey_cmd = self.work / "quality-joey-train.log", [*launcher, "train", str(cfg)]
        with ThreadPoolExecutor(2) as pool:
            rn_log = self.work / "quality-rnnkit.log"
            rn = pool.submit(run, rn_cmd, env, rn_log, seconds, None, failed)
            joey = pool.submit(
                run, [*joey_cmd, "--skip-test"], env, joey_log, seconds, None, failed
            )
            rss = {"rnnkit": rn.result(), "joey": joey.result()}
        rn_bleu, joey_bleus = [], []
        for ckpt in _saved(rn_out, "best.pt", "last.pt"):
            scores = self.work / f"quality-rnnkit-{ckpt.stem}.json"
            evaluate = [sys.executable, "-m", "rnnkit", "evaluate", str(ckpt), "--beam", "1"]
            evaluate += ["--src", str(self.data / "val.de"), "--ref", str(self.data / "val.en")]
            log = self.work / f"quality-rnnkit-{ckpt.stem}.log"
            run([*evaluate, "--lowercase"], env, log, stdout=scores)
            rn_bleu.append(json.loads(scores.read_text())["bleu"])
        del joey_cfg["data"]["test"]  # Joey's test mode would translate test2016 too
        for ckpt in _saved(joey_out, "best.ckpt", "latest.ckpt"):
            joey_cfg["testing"]["load_model"] = str(ckpt)
            test_cfg = self.write_yaml(self.work / f"quality-joey-{ckpt.stem}.yaml", joey_cfg)
            run(
                [*launcher, "test", str(test_cfg)], env, self.work / f"quality-joey-{ckpt.stem}.log"
            )
            joey_bleus.append(joey_bleu(joey_out / "test.log", "dev"))
        info = self.work / "quality-rnnkit-info.json"
        run(
            [sys.executable, "-m", "rnnkit", "info", str(rn_out / "last.pt")],
            env,
            info.with_suffix(".log"),
            stdout=info,
        )
        return {
            "rnnkit": max(rn_bleu),
            "joey": max(joey_bleus),
            "rnnkit_best_last": rn_bleu,
            "joey_best_last": joey_bleus,
            "rnnkit_updates": json.loads(info.read_text())["training"]["step"],
            "joey_updates": joey_updates(joey_log),
            "rnnkit_rss": rss["rnnkit"],
            "joey_rss": rss["joey"],
            "minutes": minutes,
            "threads": self.args.quality_threads,
        }


def _saved(folder: Path, *names: str) -> list[Path]:
    """The checkpoints ``names`` in ``folder`` that a run saved (at least one)."""
    found = [folder / n for n in names if (folder / n).exists()]
    if not found:
        raise SystemExit(f"no checkpoint saved in {folder} (none of {', '.join(names)})")
    return found


def _csv_rows(path: Path) -> list[dict[str, str]]:
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--joey-python", required=True, help="python of the Joey NMT venv")
    ap.add_argument(
        "--data",
        default=os.environ.get("RNNKIT_DATA", str(ROOT.parent / "shared" / "data")) + "/multi30k",
        help="folder with train/val/test2016 .de/.en (default ../shared/data/multi30k)",
    )
    ap.add_argument("--work", default=str(ROOT / "runs" / "compare_joeynmt"), help="scratch dir")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved runs per toolkit")
    ap.add_argument("--steps", type=int, default=200, help="training updates per timing run")
    ap.add_argument(
        "--decode-steps",
        type=int,
        default=1000,
        help="updates of the first run, whose model every round translates with",
    )
    ap.add_argument(
        "--lr",
        type=float,
        default=1e-3,
        help="Adam learning rate of the timing runs, both toolkits (1e-3: the model of the "
        "first run translates sensibly, so decoding is timed on realistic output lengths)",
    )
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads")
    ap.add_argument(
        "--quality-minutes", type=float, default=0, help="also train each best recipe M minutes"
    )
    ap.add_argument(
        "--quality-only",
        action="store_true",
        help="only the --quality-minutes runs (no speed rounds; the speed table stays)",
    )
    ap.add_argument(
        "--quality-threads",
        type=int,
        default=max(1, (os.cpu_count() or 1) // 2),
        help="torch threads of each quality run (they run side by side; default: half the CPUs)",
    )
    ap.add_argument(
        "--quality-config",
        default=str(ROOT / "configs" / "multi30k_de_en_small.yaml"),
        help="rnnkit's recipe for --quality-minutes (default configs/multi30k_de_en_small.yaml)",
    )
    ap.add_argument("--no-write", action="store_true", help="leave docs/RESULTS.md alone")
    args = ap.parse_args()
    if min(args.steps, args.decode_steps) < 75 or args.steps % 25 or args.decode_steps % 25:
        ap.error("--steps and --decode-steps: multiples of 25, at least 75 (3 log intervals)")
    if not (Path(args.data) / "train.de").exists():
        ap.error(f"no Multi30k in {args.data} (train.de missing); pass --data DIR")
    if args.quality_only and not args.quality_minutes:
        ap.error("--quality-only needs --quality-minutes M")
    bench = Bench(args)
    if not args.quality_only:
        speed(bench, args)
    if args.quality_minutes:
        q = bench.quality(args.quality_minutes)
        (bench.work / "quality.json").write_text(json.dumps(q, indent=1))
        config = os.path.relpath(args.quality_config, ROOT)
        write_section(args, "compare-joeynmt-quality", quality_table(q, config))
    return 0


def speed(bench: Bench, args: argparse.Namespace) -> None:
    """The interleaved speed rounds and their table (section ``compare-joeynmt``)."""
    runs: dict[str, list[dict[str, float]]] = {"rnnkit": [], "joey": []}
    for r in range(args.rounds):
        order = ["joey", "rnnkit"] if r % 2 == 0 else ["rnnkit", "joey"]
        for name in order:
            t0 = time.time()
            res = bench.joey_round(r) if name == "joey" else bench.rnnkit_round(r)
            runs[name].append(res)
            print(
                f"round {r + 1}/{args.rounds} {name:6s} ({time.time() - t0:.0f} s): "
                + ", ".join(f"{k} {v:,.2f}" for k, v in res.items()),
                flush=True,
            )
    for rs in runs.values():
        for x in rs:
            for name in ("greedy", "beam5"):
                x[f"{name}_words_s"] = x[f"{name}_sent_s"] * x[f"{name}_words"]
    med = {
        name: {k: statistics.median(x[k] for x in rs) for k in rs[0]} for name, rs in runs.items()
    }
    import torch

    head = (
        f"Medians of {args.rounds} interleaved runs per toolkit ({args.decode_steps} updates in "
        f"the first, {args.steps} in the others; every run translates test2016 with the "
        f"model of the first), "
        f"{args.threads} torch thread(s), torch {torch.__version__}, {os.cpu_count()} CPUs "
        f"({time.strftime('%Y-%m-%d')})."
    )
    (bench.work / "results.json").write_text(json.dumps({"runs": runs, "median": med}, indent=1))
    write_section(args, "compare-joeynmt", table(med, head))


def write_section(args: argparse.Namespace, name: str, text: str) -> None:
    """Print a table and put it in its section of docs/RESULTS.md (not with --no-write)."""
    if not args.no_write:
        sys.path.insert(0, str(ROOT / "src"))
        from rnnkit.experiments.common import update_results

        update_results(ROOT / "docs" / "RESULTS.md", name, text)
    print()
    print(text, flush=True)


if __name__ == "__main__":
    sys.exit(main())
