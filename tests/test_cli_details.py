"""Details of the command line that a mutation pass found untested: the paths and
pipes of the decoding commands, their options at the edges, and train / average /
experiment / info refusals and words. Each test fails with the mutant it was written for."""

from __future__ import annotations

import argparse
import io
import json
import os
import select
import sys
import threading
from pathlib import Path

import pytest
import torch
from toy import save_bundle, word_bundle

from rnnkit.cli import main
from rnnkit.cli import text as T
from rnnkit.cli.commands import missing_package, positive_int, train_arguments

# ---------------------------------------------------------------- inputs and outputs


def test_an_output_that_is_an_input_under_another_spelling_is_refused(tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("a\n", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    with pytest.raises(T.UsageError, match="is the --input"):
        T.check_output(str(tmp_path / "sub" / ".." / "in.txt"), {"--input": [str(src)]})


def test_the_end_of_a_file_is_known_before_its_last_chunk(tmp_path):
    """(the progress bar's total)"""
    f = tmp_path / "x.txt"
    f.write_text("a\nb\n", encoding="utf-8")
    ended: list[bool] = []
    chunks = T.text_chunks(str(f), 10, on_end=lambda: ended.append(True))
    assert next(chunks) == ["a", "b"] and ended == [True]


def test_a_pipes_last_line_without_a_newline_is_kept(monkeypatch):
    r, w = os.pipe()
    os.write(w, b"a\nb")
    os.close(w)
    with os.fdopen(r, "rb") as f:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(f))
        assert [x for c in T.text_chunks(None, 10, arrived=True) for x in c] == ["a", "b"]


def test_a_descriptor_select_cannot_take_is_read_as_ready(monkeypatch):
    def refuse(*args: object) -> None:
        raise ValueError("not selectable")

    monkeypatch.setattr(select, "select", refuse)
    assert T._readable(0) is True


def test_a_named_pipe_is_translated_as_its_lines_arrive(tmp_path):
    """A co-process that writes a line and waits for its translation waited for ever."""
    fifo = tmp_path / "p"
    os.mkfifo(fifo)
    go, got = threading.Event(), []

    def writer() -> None:
        with open(fifo, "wb", buffering=0) as w:
            w.write(b"a\n")
            go.wait(5)
            w.write(b"b\n")

    def reader() -> None:
        chunks = T.text_chunks(str(fifo), 100, arrived=True)
        got.append(next(chunks))
        go.set()
        got.extend(chunks)

    threads = [threading.Thread(target=f, daemon=True) for f in (writer, reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert got == [["a"], ["b"]]  # the first line came before the second was sent


def test_translations_to_stdout_are_flushed_chunk_by_chunk(monkeypatch):
    class Out(io.StringIO):
        flushed = 0

        def flush(self) -> None:
            self.flushed += 1

    out = Out()
    monkeypatch.setattr(sys, "stdout", out)
    T.write_text(None, ["x"])
    assert out.getvalue() == "x\n" and out.flushed >= 1


# ---------------------------------------------------------------- decoding options


@pytest.fixture
def model(tmp_path: Path) -> tuple[object, str, str]:
    b = word_bundle()
    src = tmp_path / "in.txt"
    src.write_text("a b\nc d\n", encoding="utf-8")
    return b, str(save_bundle(b, tmp_path / "m.pt")), str(src)


def test_a_beam_as_wide_as_the_target_vocabulary_is_taken(model):
    b, ckpt, src = model
    assert main(["translate", ckpt, "--beam", str(len(b.tgt_vocab)), "--input", src]) == 0


def test_json_without_n_best_has_no_alternatives(model, capsys):
    _, ckpt, src = model
    assert main(["translate", ckpt, "--input", src, "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 2 and all("alternatives" not in r for r in rows)


def test_evaluate_lowercase_and_the_limits_it_reports(model, capsys):
    b, ckpt, src = model
    assert main(["evaluate", ckpt, "--src", src, "--ref", src, "--lowercase"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert "case:lc" in r["bleu_signature"]
    d = b.config.decode
    assert (r["max_len_a"], r["max_len_b"]) == (d.max_len_a, d.max_len_b)  # (not null)


# ---------------------------------------------------------------- train, average, others


def test_the_largest_int_option_is_taken():
    assert positive_int("2147483647") == 2147483647


def test_resume_and_overwrite_together_are_refused(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data:\n  task: copy\ntrain:\n  max_steps: 1\n", encoding="utf-8")
    assert main(["train", str(cfg), "--out", str(tmp_path / "o"), "--resume", "--overwrite"]) == 2
    assert "not both" in capsys.readouterr().err


def test_nproc_hands_overwrite_on_to_its_processes():
    args = argparse.Namespace(config="c.yaml", set=[], out="o", resume=False, overwrite=True)
    assert train_arguments(args) == ["c.yaml", "--out", "o", "--overwrite"]


def test_average_refuses_an_out_that_is_an_input_spelled_otherwise(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["average", "a.pt", "b.pt", "--out", str(tmp_path / "a.pt")]) == 2
    assert "is one of the checkpoints averaged" in capsys.readouterr().err


def test_average_of_one_checkpoint_says_checkpoint(tmp_path, capsys):
    m = save_bundle(word_bundle(), tmp_path / "m.pt")
    assert main(["average", str(m), "--out", str(tmp_path / "avg.pt")]) == 0
    assert "averaged 1 checkpoint (step " in capsys.readouterr().err


def test_a_full_experiment_checks_docs_results_before_it_runs(tmp_path, monkeypatch, capsys):
    import rnnkit.experiments as experiments

    monkeypatch.chdir(tmp_path)
    (tmp_path / "docs" / "RESULTS.md").mkdir(parents=True)
    monkeypatch.setattr(experiments, "run_experiment", lambda *a, **k: pytest.fail("it ran"))
    assert main(["experiment", "long-memory", "--out", str(tmp_path / "o")]) == 2
    assert "RESULTS.md: is a folder, not a file" in capsys.readouterr().err


def test_a_missing_rnnkit_module_gets_no_pip_hint():
    assert missing_package(ModuleNotFoundError(name="rnnkit.nope"), "train") is None


def test_info_config_names_the_checkpoint_that_lacks_one(tmp_path, capsys):
    ckpt = torch.load(save_bundle(word_bundle(), tmp_path / "m.pt"), weights_only=True)
    del ckpt["config"]
    torch.save(ckpt, tmp_path / "bad.pt")
    assert main(["info", str(tmp_path / "bad.pt"), "--config"]) == 2
    assert f"{tmp_path / 'bad.pt'}: checkpoint lacks 'config'" in capsys.readouterr().err
