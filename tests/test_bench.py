"""bench/compare_joeynmt.py and scripts/recipe_report.py: the parts that need no Joey NMT
and no corpus (log parsing, the ratio table, the rnnkit side of the shared architecture,
the learning curve)."""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from rnnkit.checkpoint import build_model
from rnnkit.config import load_config

ROOT = Path(__file__).resolve().parent.parent


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = mod
    spec.loader.exec_module(mod)
    return mod


sys.path.insert(0, str(ROOT / "bench"))  # compare_joeynmt imports compare_setup beside it
cj = _load(ROOT / "bench" / "compare_joeynmt.py")
report = _load(ROOT / "scripts" / "recipe_report.py")

JOEY_LOG = """\
2026-11-27 18:24:28,415 - INFO - joeynmt.training - Epoch   1, Step:       25, Batch Loss: \
101.5, Batch Acc: 0.105345, Tokens per Sec:      627, Lr: 0.000300
2026-11-27 18:25:04,239 - INFO - joeynmt.training - Epoch   1, Step:       50, Batch Loss: \
93.8, Batch Acc: 0.113321, Tokens per Sec:      678, Lr: 0.000300
2026-11-27 18:26:45,149 - INFO - joeynmt.prediction - Decoding on dev set... (device: cpu)
2026-11-27 18:27:30,523 - INFO - joeynmt.prediction - Generation took 45.3738[sec].
2026-11-27 18:27:30,524 - INFO - joeynmt.prediction - Evaluation result (greedy): bleu:  \
 21.50, 0.4401[sec]
2026-11-27 18:27:30,767 - INFO - joeynmt.prediction - Decoding on test set... (device: cpu)
2026-11-27 18:28:17,918 - INFO - joeynmt.prediction - Generation took 47.1505[sec].
2026-11-27 18:28:17,919 - INFO - joeynmt.prediction - Evaluation result (beam search): bleu: \
  23.10, 0.4401[sec]
2026-11-27 18:30:00,000 - INFO - joeynmt.prediction - Decoding on test set... (device: cpu)
2026-11-27 18:30:07,000 - INFO - joeynmt.prediction - Generation took 7.2500[sec].
"""


def test_joey_log_parsing(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text(JOEY_LOG)
    assert cj.joey_tokens_per_s(log) == [627.0, 678.0]
    # Joey appends every run to test.log: the last time reported for the set counts
    assert cj.joey_generation_s(log, "test") == 7.25
    assert cj.joey_generation_s(log, "dev") == pytest.approx(45.3738)
    assert cj.joey_bleu(log, "dev") == 21.5
    assert cj.joey_bleu(log, "test") == 23.1
    log.write_text(JOEY_LOG.split("Decoding on test")[0])
    with pytest.raises(SystemExit, match="no generation time for the test set"):
        cj.joey_generation_s(log, "test")


def test_ratio_table_marks_goals() -> None:
    med = {
        "rnnkit": {
            "train_tok_s": 3000.0,
            "greedy_sent_s": 300.0,
            "beam5_sent_s": 100.0,
            "rss_train": 1.0,
            "rss_greedy": 0.3,
            "rss_beam5": 0.5,
        },
        "joey": {
            "train_tok_s": 1000.0,
            "greedy_sent_s": 200.0,
            "beam5_sent_s": 40.0,
            "rss_train": 2.0,
            "rss_greedy": 0.6,
            "rss_beam5": 1.0,
        },
    }
    text = cj.table(med, "head")
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines()}
    assert "| 3.00 | ≥ 2.0 ✓ |" in rows["training, target tokens/s"]
    assert "| 1.50 | ≥ 2.0 ✗ |" in rows["translation greedy, sentences/s"]
    assert "| 2.50 | ≥ 3.0 ✗ |" in rows["translation beam 5, sentences/s"]
    assert rows["peak RSS training, GiB"].endswith("| 0.50 |  |")


def test_quality_table_marks_the_goal_and_survives_a_zero() -> None:
    q = {"rnnkit": 31.0, "joey": 22.2, "rnnkit_updates": 2500, "joey_updates": 2000}
    q |= {"rnnkit_rss": 0.9, "joey_rss": 1.2, "minutes": 40, "threads": 1}
    text = cj.quality_table(q, "configs/x.yaml")
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines()}
    assert "side by side for 40 minutes" in text and "`configs/x.yaml`" in text
    bleu = rows["dev BLEU after 40 min (greedy, lowercased)"]
    assert (
        bleu
        == "| dev BLEU after 40 min (greedy, lowercased) | 31.00 | 22.20 | 1.40 | rnnkit ≥ 30 ✓ |"
    )
    assert rows["updates in 40 min"] == "| updates in 40 min | 2,500 | 2,000 | 1.25 |  |"
    text = cj.quality_table(q | {"rnnkit": 29.9, "joey": 0.0}, "c.yaml")  # Joey learnt nothing
    assert "| 29.90 | 0.00 | – | rnnkit ≥ 30 ✗ |" in text


def test_joey_updates_from_its_log_lines_or_its_interrupt(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text(JOEY_LOG)
    assert cj.joey_updates(log) == 50
    log.write_text(
        JOEY_LOG
        + "2026-11-27 18:31:00,000 - INFO - joeynmt.training - Interrupt at epoch 1, step 73.\n"
    )
    assert cj.joey_updates(log) == 73
    log.write_text("nothing trained\n")
    with pytest.raises(SystemExit, match="no training step logged"):
        cj.joey_updates(log)


def test_side_by_side_a_command_that_fails_stops_the_other(tmp_path: Path) -> None:
    """--quality-minutes trains both toolkits at once: one that fails early stopped the
    other only at its time limit (40 minutes before the error was printed)."""
    import os
    import threading
    from concurrent.futures import ThreadPoolExecutor

    failed, env = threading.Event(), dict(os.environ)
    slow = [sys.executable, "-c", "import time; time.sleep(60)"]
    with ThreadPoolExecutor(2) as pool:
        other = pool.submit(cj.run, slow, env, tmp_path / "a.log", 120, None, failed)
        time.sleep(0.5)  # (both running)
        bad = [sys.executable, "-c", "raise SystemExit('no data')"]
        with pytest.raises(SystemExit, match="failed: .*\n.*no data"):
            cj.run(bad, env, tmp_path / "b.log", 120, None, failed)
        assert other.result(timeout=30) > 0  # the Ctrl-C came at once: its peak RSS


def test_rnnkit_side_is_joeys_architecture(tmp_path: Path) -> None:
    """Same sizes as Joey's model: Joey NMT 2.3.0 reports 8,050,688 parameters with
    vocabularies of 8,001 on both sides, of which 768 per vocabulary entry (source and
    target embeddings, output layer without bias); rnnkit's output layer has a bias and
    its attentional-vector layer none (Joey's: 256)."""
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cj.rnnkit_config(tmp_path, tmp_path / "joint.model", 200)))
    cfg = load_config(path)
    assert cfg.train.batch_size == 64 and cfg.model.attention == "luong"
    assert cfg.model.luong_score == "concat" and cfg.data.lowercase
    rest = 8_050_688 - 768 * 8001
    for v_src, v_tgt in ((8001, 8001), (5832, 4309)):
        joey = rest + 256 * v_src + 2 * 256 * v_tgt
        model = build_model(cfg, v_src, v_tgt)
        assert sum(p.numel() for p in model.parameters()) == joey + v_tgt - 256
    vocabs = (tmp_path / "de", tmp_path / "en")
    joey = cj.joey_config(tmp_path, tmp_path / "m", vocabs, tmp_path / "out", 200, 5)
    assert joey["training"]["validation_freq"] % joey["training"]["logging_freq"] == 0
    assert joey["testing"]["beam_size"] == 5 and joey["training"]["updates"] == 200
    enc, dec = joey["model"]["encoder"], joey["model"]["decoder"]
    assert (enc["hidden_size"], dec["hidden_size"], enc["bidirectional"]) == (256, 256, True)
    assert dec["input_feeding"] and dec["attention"] == "bahdanau"


def test_learning_curve(tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    log.write_text(
        "step,epoch,split,loss,ppl,lr,tokens_per_s,bleu,chrf,elapsed_s,bleu_lc\n"
        "100,1,train,1,1,1,100,,,60.0,\n"
        "200,1,dev,1,1,,,10.5,30,120.0,11.0\n"
        "400,2,dev,1,1,,,20.25,40,2700.0,21.0\n"
    )
    rows, png = report.learning_curve(log, tmp_path / "curve.png")
    assert [(r["step"], r["minutes"], r["bleu"], r["bleu_lc"]) for r in rows] == [
        (200, 2.0, 10.5, 11.0),
        (400, 45.0, 20.25, 21.0),
    ]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_gpu_bench_dry_runs_on_the_cpu(tmp_path: Path) -> None:
    """bench/gpu.py without CUDA: the static path eagerly, every row and ratio present."""
    import json
    import subprocess

    out = tmp_path / "gpu.json"
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu.py"), "--quick", "--size", "20,8,32"]
        + ["--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "dry run" in proc.stdout and "missed:" in proc.stdout
    # the size asked for measures none of the targets: none of them is said to be met
    assert "not measured: LSTM 50,64,512; GRU 50,64,512; LSTM 100,16,128" in proc.stdout
    result = json.loads(out.read_text())
    rows = result["layers"]
    assert {(r["layer"], r["mode"]) for r in rows} == {
        (k, m) for k in ("LSTM", "GRU", "LayerNormLSTM") for m in ("train", "infer")
    }
    assert all(r["cudnn_ms"] > 0 and r["graphs_x"] > 0 and r["eager_x"] > 0 for r in rows)
    assert all(v > 0 for v in result["seq2seq"].values())


def test_the_bench_command_runs_the_layer_benchmark_of_the_checkout(monkeypatch) -> None:
    """`rnnkit bench` looked for bench/layers.py under src/ once the command line had
    moved into the rnnkit.cli package ("benchmark script not found")."""
    import runpy

    from rnnkit.cli import main

    ran: list[tuple[str, list[str]]] = []
    monkeypatch.setattr(runpy, "run_path", lambda path, run_name: ran.append((path, sys.argv)))
    monkeypatch.setattr(sys, "argv", ["rnnkit"])
    assert main(["bench", "--quick"]) == 0
    assert ran == [
        (str(ROOT / "bench" / "layers.py"), [str(ROOT / "bench" / "layers.py"), "--quick"])
    ]


def _recipe_run(tmp_path: Path, task: str | None) -> tuple[Path, Path]:
    """A run folder (an untrained word model saved as best.pt, a log.csv) and a data
    folder with Multi30k's dev and test file names."""
    import dataclasses

    from toy import save_bundle, word_bundle

    b = word_bundle()
    data = dataclasses.replace(b.config.data, task=task, src="de", tgt="en")
    b = dataclasses.replace(b, config=dataclasses.replace(b.config, data=data))
    run, corpus = tmp_path / "run", tmp_path / "data"
    run.mkdir(parents=True), corpus.mkdir(parents=True)
    save_bundle(b, run / "best.pt")
    (run / "log.csv").write_text(
        "step,epoch,split,loss,ppl,lr,tokens_per_s,bleu,chrf,elapsed_s,bleu_lc\n"
        "200,1,dev,1,1,,,10.5,30,120.0,11.0\n"
    )
    for name in ("val.de", "val.en", "test2016.de", "test2016.en"):
        (corpus / name).write_text("a b c\nd e\nf g h\n", encoding="utf-8")
    return run, corpus


def test_recipe_report_writes_where_results_go_and_refuses_another_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--results without --figures wrote docs/figures/ of the checkout, then failed on
    the link (a ValueError traceback); a dates run was written up as Multi30k's."""
    run, corpus = _recipe_run(tmp_path, None)
    results = tmp_path / "out" / "R.md"
    argv = ["recipe_report.py", str(run), "--data", str(corpus), "--results", str(results)]
    monkeypatch.setattr(sys, "argv", [*argv, "--limit", "2", "--config", "mine.yaml"])
    assert report.main() == 0
    page = results.read_text(encoding="utf-8")
    assert "](figures/multi30k_learning_curve.png)" in page
    assert "](figures/multi30k_attention_0.png)" in page
    assert (results.parent / "figures" / "multi30k_attention_0.png").is_file()
    assert f"`rnnkit train mine.yaml --out {run}`" in page
    monkeypatch.setattr(sys, "argv", [*argv, "--limit", "0"])
    with pytest.raises(SystemExit):
        report.main()
    assert "argument --limit: must be at least 1, got 0" in capsys.readouterr().err
    run, corpus = _recipe_run(tmp_path / "dates", "dates")
    monkeypatch.setattr(sys, "argv", ["recipe_report.py", str(run), "--data", str(corpus),
                                      "--results", str(results)])  # fmt: skip
    with pytest.raises(SystemExit):
        report.main()
    err = capsys.readouterr().err
    assert "best.pt: trained on the built-in task 'dates', not Multi30k de→en" in err


@pytest.mark.parametrize(
    "argv, says",
    [
        (["layers.py", "--repeats", "0"], "argument --repeats: expected an integer from 1"),
        (
            ["throughput.py", "--sizes", "128,x"],
            "argument --sizes: expected an integer ≥ 1, got 'x'",
        ),
        (["gpu.py", "--size", "50,64"], "--size: three integers T,B,H, got 2"),
    ],
)
def test_bench_scripts_refuse_bad_arguments_in_one_line(argv: list[str], says: str) -> None:
    """--repeats 0 was a StatisticsError traceback, --sizes abc a ValueError, --size 1,2
    an unpacking error."""
    import subprocess

    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / argv[0]), *argv[1:]],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and says in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_bench_command_of_an_installed_package(monkeypatch, tmp_path, capsys) -> None:
    """Installed (site-packages), it looked beside the package and said "run from a source
    checkout", which failed the same way: it takes ./bench/layers.py, else says where."""
    import runpy

    import rnnkit.cli.commands as commands
    from rnnkit.cli import main

    fake = tmp_path / "site-packages" / "rnnkit" / "cli" / "commands.py"
    monkeypatch.setattr(commands, "__file__", str(fake))
    ran: list[str] = []
    monkeypatch.setattr(runpy, "run_path", lambda path, run_name: ran.append(path))
    monkeypatch.setattr(sys, "argv", ["rnnkit"])
    monkeypatch.chdir(ROOT)
    assert main(["bench", "--quick"]) == 0 and ran == [str(Path("bench") / "layers.py")]
    monkeypatch.chdir(tmp_path)
    assert main(["bench"]) == 2
    assert "bench/layers.py is part of the source checkout" in capsys.readouterr().err
