"""``rnnkit inspect`` refuses, in one line and before recording anything, a sentence too
long to draw and an ``--out`` that cannot be a folder; it cuts the output at the same
number of tokens."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_cli import one_line_error, run_cli
from toy import WORDS, one_thread, save_bundle, word_bundle

import rnnkit.record
from rnnkit.inspect import MAX_TOKENS, run_inspect


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return save_bundle(word_bundle(), tmp_path / "m.pt")


class Recorded(Exception):
    """Raised by the stand-in for ``record``: the guards were passed."""


@pytest.fixture
def record_calls(monkeypatch) -> list[int | None]:
    """The ``max_len`` of each call to ``record_translation``, which stops there (no
    figures)."""
    calls: list[int | None] = []

    def stand_in(bundle, sentence, beam, max_len=None):
        calls.append(max_len)
        raise Recorded

    monkeypatch.setattr(rnnkit.record, "record_translation", stand_in)
    return calls


def words(n: int) -> str:
    return " ".join(WORDS[i % len(WORDS)] for i in range(n))


def test_a_sentence_too_long_to_draw_is_refused_before_recording(
    model, tmp_path, capsys, record_calls
):
    out = tmp_path / "out"
    status, stdout, err = run_cli(capsys, "inspect", model, words(MAX_TOKENS + 1), "--out", out)
    assert status == 2 and stdout == ""
    message = one_line_error(err)
    assert f"{MAX_TOKENS + 1} source tokens; at most {MAX_TOKENS}" in message
    assert "draws every token" in message
    assert record_calls == [] and not out.exists()
    with pytest.raises(Recorded):  # the limit itself is allowed
        run_inspect(model, words(MAX_TOKENS), out)


def test_the_output_is_cut_at_the_limit_too(model, tmp_path, record_calls):
    """The model may write up to |x| + 3 tokens; inspect records at most MAX_TOKENS."""
    for n, limit in ((MAX_TOKENS, MAX_TOKENS), (5, 5 + 1 + 3)):  # </s> counts in |x|
        with pytest.raises(Recorded):
            run_inspect(model, words(n), tmp_path / "out")
        assert record_calls.pop() == limit


def test_an_out_that_cannot_be_a_folder_is_a_one_line_error(model, tmp_path, capsys):
    a_file = tmp_path / "in.txt"
    a_file.write_text("keep me\n", encoding="utf-8")
    for out, says in (
        (a_file, f"inspect: {a_file}: is a file, not a folder"),
        (a_file / "d", f"inspect: {a_file / 'd'}: cannot make this folder ({a_file} is a file)"),
    ):
        status, _, err = run_cli(capsys, "inspect", model, "a b c", "--out", out)
        assert status == 2 and one_line_error(err) == f"rnnkit: error: {says}"
    assert a_file.read_text(encoding="utf-8") == "keep me\n"


def test_a_sentence_within_the_limit_is_drawn(model, tmp_path, capsys):
    out = tmp_path / "out"
    status, stdout, _ = run_cli(capsys, "inspect", model, words(12), "--out", out)
    assert status == 0 and f"wrote {out / 'inspect.html'}" in stdout
    assert (out / "attention.png").is_file()


def test_a_write_that_fails_half_way_leaves_the_folder_as_it_was(model, tmp_path, monkeypatch):
    """A full disk at the third figure left the first two figures new beside the old
    page and gates, with nothing to say they belonged to another sentence."""
    import rnnkit.figures
    from rnnkit.atomic import OutputError

    out = tmp_path / "out"
    run_inspect(model, words(3), out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    write, calls = rnnkit.figures.write_atomically, []

    def full_at_the_third(path, *args, **kw):
        calls.append(path)
        if len(calls) == 3:
            raise OutputError(f"{path}: cannot write (No space left on device)")
        return write(path, *args, **kw)

    monkeypatch.setattr(rnnkit.figures, "write_atomically", full_at_the_third)
    with pytest.raises(OutputError, match="No space left"):
        run_inspect(model, words(7), out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # (no temp files)
