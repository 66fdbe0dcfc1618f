"""The command line: translate keeps every line in order, n-best lists, evaluate as JSON,
one-line errors with exit status 2 and no traceback, --help everywhere."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from rnnkit.checkpoint import load_bundle
from rnnkit.cli import main
from rnnkit.evaluate import score
from rnnkit.translate import translate_lines

SUBCOMMANDS = [
    "demo",
    "train",
    "translate",
    "evaluate",
    "score",
    "info",
    "average",
    "inspect",
    "serve",
    "experiment",
    "data",
    "bench",
]

# Lines of very different lengths, blank ones among them (also first and last).
LINES = [
    "",
    "a b c",
    "q w e r t y u i o p a s d f g h j k l z x c",
    "z",
    "   ",
    "m n o p",
    "",
    "b a b a b a b a",
    "x y z w v u t s r q p o n m l k j i h g f e d c b a",
    "k",
    "h e l l o",
    "",
]


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Tiny models: one thread is ten times faster than two on a busy two-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_yaml(path: Path, d: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(d), encoding="utf-8")
    return path


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def read_output(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    return text.split("\n")[:-1]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy-task model with a sentencepiece (BPE) vocabulary, trained by ``rnnkit train``."""
    root = tmp_path_factory.mktemp("model")
    cfg = {
        "data": {
            "task": "copy",
            "task_size": 300,
            "task_dev": 20,
            "task_test": 20,
            "tokenizer": "bpe",
            "vocab_size": 60,
        },
        "model": {"emb_size": 32, "hidden_size": 32, "dropout": 0.0, "emb_dropout": 0.0},
        "train": {
            "batch_size": 16,
            "lr": 0.01,
            "scheduler": "none",
            "max_steps": 60,
            "validate_every": 60,
            "checkpoint_every": 60,
            "device": "cpu",
        },
        "decode": {"beam_size": 1, "batch_size": 64, "max_len_a": 1.0, "max_len_b": 4},
    }
    path = write_yaml(root / "copy.yaml", cfg)
    assert main(["train", str(path), "--out", str(root / "run")]) == 0
    return root / "run" / "last.pt"


def run_cli(capsys: pytest.CaptureFixture[str], *argv: Any) -> tuple[int, str, str]:
    capsys.readouterr()
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def one_line_error(err: str) -> str:
    """The single stderr line of a user error."""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rnnkit: error: "), err
    return lines[0]


def console_script() -> list[str]:
    script = Path(sys.executable).with_name("rnnkit")
    if not script.is_file():
        pytest.skip("the rnnkit console script is not installed beside this python")
    return [str(script)]


def subprocess_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


# ---------------------------------------------------------------- translate


def _translate_file(capsys: Any, checkpoint: Path, src: Path, tmp_path: Path) -> Path:
    out = tmp_path / "expected.txt"
    assert run_cli(capsys, "translate", checkpoint, "--input", src, "--output", out)[0] == 0
    return out


def test_translate_keeps_line_count_order_and_empty_lines(checkpoint, tmp_path, capsys):
    src = write_lines(tmp_path / "in.txt", LINES)
    outputs = {}
    for batch in (None, 1, 3):
        out = tmp_path / f"out.{batch}.txt"
        size = [] if batch is None else ["--batch-size", batch]
        status, stdout, _ = run_cli(
            capsys, "translate", checkpoint, "--input", src, "--output", out, *size
        )
        assert status == 0 and stdout == ""
        outputs[batch] = read_output(out)
    assert outputs[1] == outputs[None] == outputs[3]  # batching and sorting do not show

    got = outputs[None]
    assert len(got) == len(LINES)
    assert all(got[i] == "" for i, s in enumerate(LINES) if not s.strip())
    # each line equals its translation alone: the order is the input order
    bundle = load_bundle(checkpoint)
    alone = [translate_lines(bundle, [line])[0][0].text for line in LINES]
    assert got == alone
    assert len(set(got)) > 3  # the lines do get different translations


def test_translate_stdin_to_stdout(checkpoint, tmp_path, capsys, monkeypatch):
    expected = read_output(
        _translate_file(capsys, checkpoint, write_lines(tmp_path / "in.txt", LINES), tmp_path)
    )
    data = "".join(line + "\n" for line in LINES).encode("utf-8")
    for extra in ([], ["--input", "-"]):
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))
        status, out, _ = run_cli(capsys, "translate", checkpoint, *extra)
        assert status == 0
        assert out.split("\n")[:-1] == expected


def test_console_script_translates_stdin_to_stdout(checkpoint, tmp_path, capsys):
    expected = read_output(
        _translate_file(capsys, checkpoint, write_lines(tmp_path / "in.txt", LINES), tmp_path)
    )
    data = "".join(line + "\n" for line in LINES).encode("utf-8")
    proc = subprocess.run(
        [*console_script(), "translate", str(checkpoint)],
        input=data,
        capture_output=True,
        env=subprocess_env(),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert proc.stdout.decode("utf-8").split("\n")[:-1] == expected
    assert b"Traceback" not in proc.stderr


def test_n_best_lists(checkpoint, tmp_path, capsys):
    lines = [s for s in LINES if s.strip()]
    src = write_lines(tmp_path / "in.txt", lines)
    status, out, _ = run_cli(
        capsys, "translate", checkpoint, "--input", src, "--n-best", 3, "--beam", 3
    )
    assert status == 0
    rows = [line.split(" ||| ") for line in out.splitlines()]
    assert all(len(r) == 3 for r in rows), out
    assert [int(i) for i, _, _ in rows] == [i for i in range(len(lines)) for _ in range(3)]
    best = run_cli(capsys, "translate", checkpoint, "--input", src, "--beam", 3)[1].splitlines()
    for i in range(len(lines)):
        group = rows[3 * i : 3 * i + 3]
        scores = [float(s) for _, _, s in group]
        assert scores == sorted(scores, reverse=True)
        assert group[0][1] == best[i]  # the first of the n best is the 1-best

    # a blank line is still one entry of the list, never a dropped index
    src = write_lines(tmp_path / "blank.txt", ["a b", "", "c"])
    status, out, _ = run_cli(
        capsys, "translate", checkpoint, "--input", src, "--n-best", 2, "--beam", 2
    )
    assert status == 0
    assert sorted({int(line.split(" ||| ")[0]) for line in out.splitlines()}) == [0, 1, 2]


def test_n_best_larger_than_beam_is_an_error(checkpoint, tmp_path, capsys):
    src = write_lines(tmp_path / "in.txt", ["a b"])
    status, _, err = run_cli(capsys, "translate", checkpoint, "--input", src, "--n-best", 3)
    assert status == 2
    assert "--n-best 3" in one_line_error(err)


# ---------------------------------------------------------------- evaluate


def test_evaluate_prints_bleu_chrf_and_signatures_as_json(checkpoint, tmp_path, capsys):
    lines = [s for s in LINES if s.strip()]
    src = write_lines(tmp_path / "src.txt", lines)
    hyps = tmp_path / "hyps.txt"
    assert run_cli(capsys, "translate", checkpoint, "--input", src, "--output", hyps)[0] == 0
    ref = write_lines(tmp_path / "ref.txt", lines)

    status, out, _ = run_cli(capsys, "evaluate", checkpoint, "--src", src, "--ref", ref)
    assert status == 0
    result = json.loads(out)
    assert {"bleu", "chrf", "bleu_signature", "chrf_signature"} <= result.keys()
    assert 0 <= result["bleu"] <= 100 and 0 <= result["chrf"] <= 100
    assert result["n"] == len(lines) and result["beam"] == 1
    assert 0 < result["translate_seconds"] < 60
    assert "tok:13a" in result["bleu_signature"] and "nrefs:1" in result["chrf_signature"]

    # scored against its own translations, the model is perfect: evaluate scores
    # exactly what translate writes
    again = tmp_path / "again.txt"
    status, out, _ = run_cli(
        capsys, "evaluate", checkpoint, "--src", src, "--ref", hyps, "--output", again
    )
    assert status == 0 and read_output(again) == read_output(hyps)
    result = json.loads(out)
    assert result["bleu"] == pytest.approx(100) and result["chrf"] == pytest.approx(100)


def test_evaluate_several_references_and_grouped_sources(checkpoint, tmp_path, capsys):
    """--ref with two files scores against both (nrefs:2); --group-sources translates
    each distinct source once, scores it against the references of all its lines, and
    still writes one output line per input line."""
    lines = [s for s in LINES if s.strip()][:3]
    src = write_lines(tmp_path / "src.txt", lines + lines[:1])
    hyps = tmp_path / "hyps.txt"
    assert run_cli(capsys, "translate", checkpoint, "--input", src, "--output", hyps)[0] == 0
    own = read_output(hyps)
    wrong = write_lines(tmp_path / "wrong.txt", ["x y z"] * 4)
    status, out, _ = run_cli(capsys, "evaluate", checkpoint, "--src", src, "--ref", wrong, hyps)
    result = json.loads(out)
    assert status == 0 and result["n_refs"] == 2 and "nrefs:2" in result["bleu_signature"]
    assert result["bleu"] == pytest.approx(100)  # the second stream is its own output

    # the repeated source's two lines: one reference right, the other wrong
    mixed = write_lines(tmp_path / "mixed.txt", own[:3] + ["x y z"])
    out_path = tmp_path / "grouped.txt"
    argv = ["evaluate", checkpoint, "--src", src, "--ref", mixed, "--group-sources"]
    status, out, _ = run_cli(capsys, *argv, "--output", out_path)
    result = json.loads(out)
    assert status == 0 and (result["n"], result["lines"], result["n_refs"]) == (3, 4, 2)
    assert result["bleu"] == pytest.approx(100)
    assert read_output(out_path) == own
    _, out, _ = run_cli(capsys, "evaluate", checkpoint, "--src", src, "--ref", mixed)
    assert json.loads(out)["bleu"] < 100  # line by line, the wrong reference counts


def test_evaluate_by_length_scores_each_bucket(checkpoint, tmp_path, capsys):
    lines = [s for s in LINES if s.strip()]
    src = write_lines(tmp_path / "src.txt", lines)
    ref = write_lines(tmp_path / "ref.txt", ["2018-05-09"] * len(lines))
    hyps = tmp_path / "hyps.txt"
    argv = ["evaluate", checkpoint, "--src", src, "--ref", ref, "--by-length"]
    status, out, _ = run_cli(capsys, *argv, "--output", hyps)
    result = json.loads(out)
    assert status == 0 and sum(b["count"] for b in result["by_length"]) == len(lines)
    own = read_output(hyps)
    for b in result["by_length"]:  # each bucket's BLEU: of the lines whose source fits it
        hi = b["hi"] if b["hi"] is not None else 10**9
        idx = [i for i, s in enumerate(lines) if b["lo"] <= len(s.split()) <= hi]
        assert len(idx) == b["count"]
        want = score([own[i] for i in idx], ["2018-05-09"] * len(idx))["bleu"]
        assert b["bleu"] == pytest.approx(want)


def test_evaluate_src_and_ref_of_different_lengths(checkpoint, tmp_path, capsys):
    src = write_lines(tmp_path / "src.txt", ["a b", "c d", "e"])
    ref = write_lines(tmp_path / "ref.txt", ["a b", "c d"])
    status, out, err = run_cli(capsys, "evaluate", checkpoint, "--src", src, "--ref", ref)
    assert status == 2 and out == ""
    message = one_line_error(err)
    assert str(src) in message and str(ref) in message
    ok = write_lines(tmp_path / "ok.txt", ["a b", "c d", "e"])
    status, out, err = run_cli(capsys, "evaluate", checkpoint, "--src", src, "--ref", ok, ref)
    assert status == 2 and out == "" and str(ref) in one_line_error(err)


# ---------------------------------------------------------------- errors


def _truncated(checkpoint: Path, tmp_path: Path) -> Path:
    data = checkpoint.read_bytes()
    path = tmp_path / "truncated.pt"
    path.write_bytes(data[: len(data) // 2])
    return path


def _text_file(checkpoint: Path, tmp_path: Path) -> Path:
    path = tmp_path / "notes.pt"
    path.write_text("these are not weights\n", encoding="utf-8")
    return path


def _foreign(checkpoint: Path, tmp_path: Path) -> Path:
    path = tmp_path / "foreign.pt"
    torch.save({"weight": torch.zeros(3)}, path)
    return path


def _missing(checkpoint: Path, tmp_path: Path) -> Path:
    return tmp_path / "missing.pt"


@pytest.mark.parametrize(
    "make, words",
    [
        (_missing, ["not found"]),
        # (torch's "This is an internal miniz error. If you are seeing ..." left out)
        (_truncated, ["truncated or corrupt", "central directory)"]),
        # (it was "refused by the safe unpickler, as loading other objects could run code")
        (_text_file, ["not a torch checkpoint (neither a zip", "starts with b'thes'"]),
        (_foreign, ["not an rnnkit checkpoint"]),
    ],
    ids=["missing", "truncated", "text", "foreign"],
)
def test_bad_checkpoint(checkpoint, tmp_path, capsys, make, words):
    bad = make(checkpoint, tmp_path)
    src = write_lines(tmp_path / "in.txt", ["a b"])
    for argv in (
        ["translate", bad, "--input", src],
        ["evaluate", bad, "--src", src, "--ref", src],
    ):
        status, out, err = run_cli(capsys, *argv)
        assert status == 2 and out == ""
        message = one_line_error(err)
        assert str(bad) in message and all(w in message for w in words), message


def test_truncated_checkpoint_in_a_real_process(checkpoint, tmp_path):
    bad = _truncated(checkpoint, tmp_path)
    proc = subprocess.run(
        [*console_script(), "translate", str(bad)],
        input=b"a b\n",
        capture_output=True,
        env=subprocess_env(),
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stdout == b""
    message = one_line_error(proc.stderr.decode("utf-8"))
    assert str(bad) in message


def test_invalid_utf8_input_names_file_and_line(checkpoint, tmp_path, capsys):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("a b\nc d\ncaf\xe9\n".encode("latin-1"))
    good = write_lines(tmp_path / "good.txt", ["a b", "c d", "e"])
    for argv in (
        ["translate", checkpoint, "--input", bad],
        ["evaluate", checkpoint, "--src", good, "--ref", bad],
    ):
        status, out, err = run_cli(capsys, *argv)
        assert status == 2 and out == ""
        message = one_line_error(err)
        assert f"{bad}:3:" in message and "invalid UTF-8" in message


def test_missing_input_file(checkpoint, tmp_path, capsys):
    status, _, err = run_cli(capsys, "translate", checkpoint, "--input", tmp_path / "nope.txt")
    assert status == 2
    assert str(tmp_path / "nope.txt") in one_line_error(err)


def _corpus(tmp_path: Path, src_lines: list[str] | None, tgt_lines: list[str] | None) -> Path:
    """A config on the corpus ``tmp_path/train.{src,tgt}`` (None: that file is absent)."""
    for side, lines in (("src", src_lines), ("tgt", tgt_lines)):
        if lines is not None:
            (tmp_path / f"train.{side}").write_text(
                "".join(s + "\n" for s in lines), encoding="utf-8"
            )
    prefix = str(tmp_path / "train")
    return write_yaml(
        tmp_path / "corpus.yaml",
        {"data": {"train": prefix, "dev": prefix, "tokenizer": "word"}, "train": {"max_steps": 1}},
    )


@pytest.mark.parametrize(
    "case",
    ["unknown_key", "wrong_type", "line_counts", "empty_file", "missing_file", "missing_config"],
)
def test_train_errors_are_one_line(tmp_path, capsys, case):
    words: Callable[[Path], list[str]]
    extra: list[str] = []
    if case == "unknown_key":
        cfg = write_yaml(tmp_path / "c.yaml", {"model": {"hiden_size": 8}})
        words = lambda p: [str(cfg), "model.hiden_size", "hidden_size"]
    elif case == "wrong_type":
        cfg = write_yaml(tmp_path / "c.yaml", {"data": {"task": "copy"}})
        extra = ["--set", "train.max_steps=abc"]
        words = lambda p: ["train.max_steps", "an int", "'abc'"]
    elif case == "line_counts":
        cfg = _corpus(tmp_path, ["a", "b", "c"], ["a", "b"])
        words = lambda p: [f"{p}.src", f"{p}.tgt", "(3 vs 2)"]
    elif case == "empty_file":
        cfg = _corpus(tmp_path, ["a", "b"], [])
        words = lambda p: [f"{p}.tgt", "empty"]
    elif case == "missing_file":
        cfg = _corpus(tmp_path, ["a", "b"], None)
        words = lambda p: [f"{p}.tgt", "not found"]
    else:
        cfg = tmp_path / "absent.yaml"
        words = lambda p: [str(cfg), "not found"]
    status, out, err = run_cli(capsys, "train", cfg, "--out", tmp_path / "out", *extra)
    assert status == 2 and out == ""
    message = one_line_error(err)
    assert all(w in message for w in words(tmp_path / "train")), message
    assert not (tmp_path / "out" / "last.pt").exists()


# ---------------------------------------------------------------- help


@pytest.mark.parametrize("command", [[], *([c] for c in SUBCOMMANDS)], ids=["rnnkit", *SUBCOMMANDS])
def test_help_exits_zero(capsys, command):
    with pytest.raises(SystemExit) as info:
        main([*command, "--help"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: rnnkit {' '.join(command)}".rstrip())


def test_no_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    assert "usage: rnnkit" in capsys.readouterr().err


def test_console_script_help():
    proc = subprocess.run([*console_script(), "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("usage: rnnkit")
    assert all(c in proc.stdout for c in SUBCOMMANDS)


def test_translate_lines_passes_the_stopping_rule_to_beam_search(
    checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rnnkit.translate as tr
    from rnnkit.checkpoint import load_bundle

    seen: list[bool] = []
    real = tr.beam_search

    def spy(*args: Any) -> Any:
        seen.append(args[8])
        return real(*args)

    monkeypatch.setattr(tr, "beam_search", spy)
    bundle = load_bundle(checkpoint)
    assert bundle.config.decode.exact is False
    tr.translate_lines(bundle, ["a b"], beam_size=3)
    tr.translate_lines(bundle, ["a b"], beam_size=3, exact=True)
    bundle.config.decode.exact = True
    tr.translate_lines(bundle, ["a b"], beam_size=3)
    assert seen == [False, True, True]


@pytest.mark.parametrize(
    ("cell", "says"),
    [("no_such_module_xyz:Cell", "cannot import it"), ("math:pi", "not a subclass of rnnkit.Cell")],
)
def test_a_custom_cell_that_cannot_be_had_is_a_one_line_error(cell, says, tmp_path, capsys):
    config = write_yaml(
        tmp_path / "c.yaml",
        {"data": {"task": "dates", "task_size": 50}, "model": {"cell": cell}},
    )
    code, _, err = run_cli(capsys, "train", config, "--out", tmp_path / "run")
    assert code == 2
    line = one_line_error(err)
    assert "model" in line and says in line and "Traceback" not in err
    assert not (tmp_path / "run" / "best.pt").exists()


def test_a_bad_rnnkit_graphs_is_a_one_line_error(capsys, monkeypatch):
    from rnnkit import graphs

    monkeypatch.setattr(graphs, "_mode", "sometimes")  # as RNNKIT_GRAPHS=sometimes sets it
    status, _, err = run_cli(capsys, "translate", "nowhere.pt")
    assert status == 2
    assert "RNNKIT_GRAPHS must be one of auto, on, off" in one_line_error(err)


def test_data_tatoeba_command(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    fra = tmp_path / "fra.txt"
    fra.write_text("Go.\tVa !\tCC-BY 2.0 (France)\n", encoding="utf-8")
    code, out, err = run_cli(capsys, "data", "tatoeba", "--out", tmp_path / "t", "--from", fra)
    assert code == 0 and f"wrote {tmp_path / 't' / 'eng-fra.txt'}" in err
    assert (tmp_path / "t" / "eng-fra.txt").read_bytes() == fra.read_bytes()
    fra.write_text("Go.\n", encoding="utf-8")
    code, out, err = run_cli(capsys, "data", "tatoeba", "--out", tmp_path / "u", "--from", fra)
    assert code == 2 and err.strip().splitlines() == [
        f"rnnkit: error: {fra}:1: expected at least 2 tab-separated columns, found 1"
    ]


def test_length_and_coverage_penalty_flags_reach_beam_search(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    import rnnkit.translate as tr

    seen: list[tuple[float, float]] = []
    real = tr.beam_search

    def spy(*args: Any) -> Any:
        seen.append((args[4], args[9]))
        return real(*args)

    monkeypatch.setattr(tr, "beam_search", spy)
    src = write_lines(tmp_path / "s.txt", ["a b c", "d e"])
    code, out, _ = run_cli(capsys, "translate", checkpoint, "--input", src, "--beam", "3",
                           "--length-penalty", "0.25")  # fmt: skip
    assert code == 0 and len(out.splitlines()) == 2 and set(seen) == {(0.25, 0.0)}
    seen.clear()
    flags = ["--beam", "2", "--length-penalty", "0", "--coverage-penalty", "0.2"]
    code, out, _ = run_cli(capsys, "evaluate", checkpoint, "--src", src, "--ref", src, *flags)
    result = json.loads(out)
    assert code == 0 and result["length_penalty"] == 0.0 and result["coverage_penalty"] == 0.2
    assert set(seen) == {(0.0, 0.2)}
    with pytest.raises(SystemExit) as stop:  # argparse's own error
        main(["translate", str(checkpoint), "--input", str(src), "--length-penalty", "-1"])
    assert stop.value.code == 2
    assert "--length-penalty: expected a number ≥ 0, got -1" in capsys.readouterr().err


def test_translate_json_lines(checkpoint: Path, tmp_path: Path, capsys) -> None:
    src = write_lines(tmp_path / "s.txt", ["a b c", "", "d e f g"])
    code, plain, _ = run_cli(capsys, "translate", checkpoint, "--input", src, "--beam", "3")
    code2, out, _ = run_cli(capsys, "translate", checkpoint, "--input", src, "--beam", "3",
                            "--json", "--n-best", "2")  # fmt: skip
    assert code == code2 == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["text"] for r in rows] == plain.splitlines()
    for r in rows:
        assert len(r["attention"]) == len(r["target_tokens"])
        assert all(len(a) == len(r["source_tokens"]) for a in r["attention"])
        assert all(abs(sum(a) - 1) < 1e-3 for a in r["attention"])  # a distribution each
        assert len(r["alternatives"]) in (1, 2) and r["alternatives"][0]["text"] == r["text"]
    assert rows[1] == {"text": "", "score": 0.0, "source_tokens": [], "source_unknown": [],
                       "target_tokens": [], "attention": [],
                       "alternatives": [rows[1]["alternatives"][0]]}  # fmt: skip


def test_info_says_what_a_checkpoint_holds(checkpoint: Path, tmp_path: Path, capsys) -> None:
    from rnnkit.checkpoint import load_bundle, load_checkpoint

    code, out, _ = run_cli(capsys, "info", checkpoint)
    info = json.loads(out)
    bundle, ckpt = load_bundle(checkpoint), load_checkpoint(checkpoint)
    assert code == 0 and info["checkpoint"] == checkpoint.name
    assert info["parameters"] == sum(p.numel() for p in bundle.model.parameters())
    assert info["target_vocab_size"] == len(bundle.tgt_vocab) and info["models"] == 1
    t = info["training"]
    assert t["step"] == ckpt["step"] and t["resumable"] is True and t["ema_decay"] == 0.0
    assert t["processes"] == 1 and info["cell_kwargs"] == {}
    assert t["best_dev_bleu"] == pytest.approx(ckpt["progress"]["best"])
    assert t["epoch"] == ckpt["progress"]["epoch"] + 1
    code, out, _ = run_cli(capsys, "info", checkpoint, "--config")
    assert code == 0 and yaml.safe_load(out) == ckpt["config"]
    avg, earlier = tmp_path / "avg.pt", tmp_path / "earlier.pt"
    torch.save({**ckpt, "step": ckpt["step"] - 1}, earlier)  # (one step twice is refused)
    assert main(["average", str(earlier), str(checkpoint), "--out", str(avg)]) == 0
    capsys.readouterr()
    code, out, _ = run_cli(capsys, "info", avg)
    info = json.loads(out)
    assert info["training"]["resumable"] is False
    assert info["averaged"] == [ckpt["step"] - 1, ckpt["step"]]
