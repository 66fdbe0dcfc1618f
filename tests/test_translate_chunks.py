"""Translating in chunks (``rnnkit.translate.translate_chunks``, what ``rnnkit translate``
and ``evaluate`` do): the same outputs as one call, in order, with memory for one chunk;
sampling draws from one random stream across the chunks."""

from __future__ import annotations

import pytest
from toy import one_thread, save_bundle, word_bundle  # noqa: F401 (fixture)

import rnnkit.translate as translate_module
from rnnkit.cli import main
from rnnkit.sampling import Sampling
from rnnkit.translate import translate_chunks, translate_lines

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
