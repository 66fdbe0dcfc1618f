"""Translating in chunks (``rnnkit.translate.translate_chunks``, what ``rnnkit translate``
and ``evaluate`` do): the same outputs as one call, in order, with memory for one chunk;
sampling draws from one random stream across the chunks."""

from __future__ import annotations

import os
import select
import subprocess
import sys
from pathlib import Path
from typing import BinaryIO

import pytest
from toy import one_thread, save_bundle, word_bundle  # noqa: F401 (fixture)

import rnnkit.translate as translate_module
from rnnkit.cli import main
from rnnkit.cli.text import text_chunks
from rnnkit.sampling import Sampling
from rnnkit.translate import translate_chunks, translate_lines

SRC = Path(__file__).resolve().parents[1] / "src"
LINES = ["a b c", "", "d e", "f g h a b", "c", "b b", "h g f e d c", "a"]


@pytest.mark.parametrize("beam", [1, 3])
def test_chunks_give_what_one_call_gives(beam):
    b = word_bundle()
    whole = translate_lines(b, LINES, beam, n_best=min(beam, 2))
    chunks = list(translate_chunks(b, LINES, 3, beam_size=beam, n_best=min(beam, 2)))
    assert [len(c) for c in chunks] == [3, 3, 2]
    joined = [r for c in chunks for r in c]
    assert [[t.text for t in r] for r in joined] == [[t.text for t in r] for r in whole]
    for r, w in zip(joined, whole):
        assert [t.score for t in r] == pytest.approx([t.score for t in w], abs=1e-5)


def test_sampling_draws_one_stream_across_chunks():
    b = word_bundle()
    lines = ["a b c d"] * 6
    hot = Sampling(temperature=3.0, seed=5)
    draws = [t[0].text for c in translate_chunks(b, lines, 3, sampling=hot) for t in c]
    assert draws[:3] != draws[3:]  # a new stream per chunk would repeat the first chunk
    again = [t[0].text for c in translate_chunks(b, lines, 3, sampling=hot) for t in c]
    assert again == draws  # and a seed still gives one output


def test_cli_n_best_numbers_lines_across_chunks(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(translate_module, "CHUNK", 3)
    ckpt = save_bundle(word_bundle(), tmp_path / "m.pt")
    src = tmp_path / "src.txt"
    src.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    out = tmp_path / "out.txt"
    argv = ["translate", str(ckpt), "--input", str(src), "--output", str(out)]
    assert main([*argv, "--beam", "2", "--n-best", "2"]) == 0
    rows = [line.split(" ||| ") for line in out.read_text(encoding="utf-8").splitlines()]
    want = translate_lines(word_bundle(), LINES, 2, n_best=2)  # (an empty line: one entry)
    assert [int(r[0]) for r in rows] == [i for i, w in enumerate(want) for _ in w]
    assert [r[1] for r in rows] == [t.text for w in want for t in w]
    capsys.readouterr()
    ev = ["evaluate", str(ckpt), "--src", str(src), "--ref", str(src), "--output", str(out)]
    assert main(ev) == 0
    hyps = out.read_text(encoding="utf-8").splitlines()
    assert hyps == [w[0].text for w in translate_lines(word_bundle(), LINES)]


def test_a_long_line_does_not_pad_a_whole_batch(monkeypatch):
    """Batches of a search were cut by sentence count alone: one 5,000-character line
    padded 199 short dates to its width (16 s and 2.8 GB instead of 1.8 s and 0.3 GB).
    Now a batch also holds at most DECODE_TOKENS padded tokens (here 12), for translate
    and score alike; the outputs do not change."""
    import rnnkit.scoring as scoring_module
    from rnnkit.scoring import score_pairs

    b = word_bundle()
    lines = ["a b c d e f g h a b c d e f g h", *["a b"] * 9]
    whole = translate_lines(b, lines, 2, batch_size=10)
    scores = score_pairs(b, lines, lines, batch_size=10)
    sizes: list[tuple[int, int]] = []
    for module, name in ((translate_module, "make_src_batches"), (scoring_module, "make_batches")):
        real = getattr(module, name)

        def spy(*a, real=real, **k):  # type: ignore[no-untyped-def]
            batches = real(*a, **k)
            sizes.extend(tuple(x.src.shape) for x in batches)
            return batches

        monkeypatch.setattr(module, name, spy)
        monkeypatch.setattr(module, "DECODE_TOKENS", 12)
    small = translate_lines(b, lines, 2, batch_size=10)
    assert [t[0].text for t in small] == [t[0].text for t in whole]
    assert [t[0].score for t in small] == pytest.approx([t[0].score for t in whole], abs=1e-5)
    rescored = score_pairs(b, lines, lines, batch_size=10)
    assert [s.log_prob for s in rescored] == pytest.approx([s.log_prob for s in scores], abs=1e-4)
    assert all(rows * width <= 12 or rows == 1 for rows, width in sizes), sizes
    assert len(sizes) > 2  # (split: the long one alone, the short ones as the budget allows)


def test_stdout_gets_each_chunk_as_it_is_done(tmp_path, monkeypatch, capsys):
    """translate kept every output line until the last: `translate | head` waited for the
    whole file, and a Ctrl-C after 20,000 translated lines left nothing on stdout. Now
    each chunk is written when done; an --output file is still replaced whole or not."""
    monkeypatch.setattr(translate_module, "CHUNK", 3)
    ckpt = save_bundle(word_bundle(), tmp_path / "m.pt")
    src = tmp_path / "src.txt"
    src.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    real, calls = translate_module.translate_lines, []

    def stopped_at_the_second_chunk(*a, **k):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(translate_module, "translate_lines", stopped_at_the_second_chunk)
    capsys.readouterr()
    assert main(["translate", str(ckpt), "--input", str(src)]) == 130
    want = [r[0].text for r in real(word_bundle(), LINES[:3])]
    assert capsys.readouterr().out.splitlines() == want
    out = tmp_path / "out.txt"
    out.write_text("old\n", encoding="utf-8")
    calls.clear()
    assert main(["translate", str(ckpt), "--input", str(src), "--output", str(out)]) == 130
    assert out.read_text(encoding="utf-8") == "old\n"


def test_evaluate_says_when_it_scores_many_lines(tmp_path, monkeypatch, capsys):
    """After the bar reached 100 %, 100,000 lines took 27 s of scoring in silence."""
    import rnnkit.cli.decode as cli_decode

    monkeypatch.setattr(cli_decode, "SCORING_NOTE_LINES", 8)
    ckpt = save_bundle(word_bundle(), tmp_path / "m.pt")
    src = tmp_path / "src.txt"
    src.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["evaluate", str(ckpt), "--src", str(src), "--ref", str(src)]) == 0
    assert "scoring 8 lines (BLEU, chrF)" in capsys.readouterr().err


class _Pipe:
    """A stdin whose ``buffer`` hands out ``lines`` one by one, counting those read."""

    def __init__(self, lines: list[bytes]) -> None:
        self.lines, self.taken = lines, 0
        self.buffer = self

    def isatty(self) -> bool:
        return False

    def read(self) -> bytes:
        self.taken = len(self.lines)
        return b"".join(self.lines)

    def __iter__(self):  # type: ignore[no-untyped-def]
        for raw in self.lines:
            self.taken += 1
            yield raw


def test_a_pipe_is_translated_chunk_by_chunk_as_it_is_read(tmp_path, monkeypatch, capsys):
    """translate read all of stdin before its first sentence (a pipe's producer had to
    finish; the input was held whole, ~4× its size). Now a chunk is read, translated and
    written before the next is read: the same output, one chunk of input in memory."""
    monkeypatch.setattr(translate_module, "CHUNK", 3)
    ckpt = save_bundle(word_bundle(), tmp_path / "m.pt")
    pipe = _Pipe([f"{line}\n".encode() for line in LINES])
    monkeypatch.setattr("sys.stdin", pipe)
    real, read_at_call = translate_module.translate_lines, []

    def counting(*a, **k):  # type: ignore[no-untyped-def]
        read_at_call.append(pipe.taken)
        return real(*a, **k)

    monkeypatch.setattr(translate_module, "translate_lines", counting)
    capsys.readouterr()
    assert main(["translate", str(ckpt)]) == 0
    assert capsys.readouterr().out.splitlines() == [r[0].text for r in real(word_bundle(), LINES)]
    assert read_at_call == [3, 6, 8]


def test_bad_bytes_in_a_pipe_stop_it_after_the_chunks_before(tmp_path, monkeypatch, capsys):
    """A pipe cannot be read twice: the chunks before a bad line are written, then the
    line is named (a file is checked whole before the work: nothing is written)."""
    monkeypatch.setattr(translate_module, "CHUNK", 3)
    ckpt = save_bundle(word_bundle(), tmp_path / "m.pt")
    raw = [f"{line}\n".encode() for line in LINES]
    raw[4] = b"c \xff\n"
    monkeypatch.setattr("sys.stdin", _Pipe(raw))
    capsys.readouterr()
    assert main(["translate", str(ckpt)]) == 2
    out, err = capsys.readouterr()
    assert out.splitlines() == [r[0].text for r in translate_lines(word_bundle(), LINES[:3])]
    assert err.strip() == "rnnkit: error: <stdin>:5: invalid UTF-8 (byte 0xff)"
    src = tmp_path / "src.txt"
    src.write_bytes(b"".join(raw[:4]) + b"d\0e\n" + b"".join(raw[5:]))
    assert main(["translate", str(ckpt), "--input", str(src)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"rnnkit: error: {src}:5: a NUL byte")


class _Stdin:
    def __init__(self, buffer: BinaryIO) -> None:
        self.buffer = buffer


def test_stdins_chunks_end_where_its_input_pauses(monkeypatch):
    """Lines that arrived and then nothing more are a chunk of their own (a program that
    sends a line and waits for its translation got none until 10,000 more lines or the
    end); lines that arrive together still fill whole chunks; a line begun and not ended
    holds back neither the lines before it nor itself, once it ends."""
    r, w = os.pipe()
    with os.fdopen(r, "rb") as pipe, os.fdopen(w, "wb", buffering=0) as writer:
        monkeypatch.setattr("sys.stdin", _Stdin(pipe))
        ended: list[bool] = []
        chunks = text_chunks("-", 3, arrived=True, on_end=lambda: ended.append(True))
        writer.write(b"a\nb\n")  # then nothing until the chunk is taken
        assert next(chunks) == ["a", "b"]
        writer.write(b"c\nd")
        assert next(chunks) == ["c"]
        writer.write(b"x\n1\n2\n3\n4\n5\n6\n7\n")  # at once: whole chunks
        assert [next(chunks) for _ in range(3)] == [["dx", "1", "2"], ["3", "4", "5"], ["6", "7"]]
        writer.write("\ufeffé\ufeff\r\n".encode())  # as from a file: CRLF, a BOM at a line's
        assert next(chunks) == ["é\ufeff"]  # start dropped (files joined by cat), inside kept
        assert not ended
        writer.close()
        assert next(chunks, None) is None and ended


def test_a_program_gets_each_translation_as_it_sends_its_line(tmp_path):
    """rnnkit translate as a co-process: one line in, its translation out, before the
    next line is written (each wait bounded)."""
    bundle = word_bundle()
    ckpt = save_bundle(bundle, tmp_path / "m.pt")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rnnkit", "translate", str(ckpt)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        for line in LINES[:3]:
            proc.stdin.write(f"{line}\n".encode())
            proc.stdin.flush()
            assert select.select([proc.stdout], [], [], 60)[0], f"no answer to {line!r}"
            answer = proc.stdout.readline().decode().rstrip("\n")
            assert answer == translate_lines(bundle, [line])[0][0].text
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
        proc.wait()
        for f in (proc.stdout, proc.stderr):
            assert f is not None
            f.close()


def test_text_of_cr_alone_line_ends_is_refused_as_train_refuses_it(tmp_path):
    """Ten lines ended by CR alone went as one line: one translation out, status 0."""
    from rnnkit.cli.text import UsageError

    path = tmp_path / "cr.txt"
    path.write_bytes(b"a b\rc d\re\r")
    with pytest.raises(UsageError, match=r"cr.txt: lines end in CR alone \(old Mac text\)"):
        list(text_chunks(str(path), 8))
    path.write_bytes(b"a b\r\nc\rd\n")  # CRLF, and a CR inside a line of an LF file: as read
    assert [line for chunk in text_chunks(str(path), 8) for line in chunk] == ["a b", "c\rd"]
