"""``rnnkit data`` never leaves a bad corpus behind and can always repair one; the text
that translate / evaluate / score read drops a byte-order mark as training does, and
evaluate refuses empty files in one line."""

from __future__ import annotations

import gzip
import io
import json
import sys
from pathlib import Path

import pytest
from test_cli import one_line_error, run_cli
from toy import one_thread, save_bundle, word_bundle

from rnnkit.cli import read_text
from rnnkit.cli.commands import UsageError
from rnnkit.data import DataError, fetch_multi30k, read_parallel

SPLITS = {"train": "train", "val": "val", "test2016": "test_2016_flickr"}
BOM = b"\xef\xbb\xbf"


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


def multi30k_source(folder: Path, n: int = 3, tag: str = "") -> Path:
    """A stand-in for the Multi30k files: ``n`` aligned lines per split and language."""
    folder.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        for lang in ("de", "en"):
            lines = [f"{split} {lang} {tag}{i}\n" for i in range(n)]
            (folder / f"{split}.{lang}").write_text("".join(lines), encoding="utf-8")
    return folder


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.is_dir() else {}


# ----------------------------------------------------------------- rnnkit data


@pytest.mark.parametrize(
    "spoil, says",
    [
        (lambda f: (f / "train.de").write_bytes(b"\xff bad\n"), "train.de:1: invalid UTF-8"),
        (lambda f: (f / "test2016.en").unlink(), "test2016.en: file not found"),
        (lambda f: (f / "val.en").write_text("one\n"), "different line counts (3 vs 1)"),
        (lambda f: (f / "val.de").write_bytes(b""), "val.de: file is empty"),
    ],
)
def test_a_bad_multi30k_source_writes_nothing_and_a_good_one_repairs(spoil, says, tmp_path, capsys):
    good = multi30k_source(tmp_path / "good")
    bad = multi30k_source(tmp_path / "bad", tag="old ")
    spoil(bad)
    out = tmp_path / "out"
    status, _, err = run_cli(capsys, "data", "multi30k", "--out", out, "--from", bad)
    assert status == 2 and says in one_line_error(err)
    assert not out.exists()  # the source is checked whole before anything is written
    # a good copy of the corpus there, then a bad source again: nothing touched
    assert run_cli(capsys, "data", "multi30k", "--out", out, "--from", good)[0] == 0
    before = snapshot(out)
    assert run_cli(capsys, "data", "multi30k", "--out", out, "--from", bad)[0] == 2
    assert snapshot(out) == before
    assert read_parallel(out / "train", "de", "en")[0] == ("train de 0", "train en 0")


def test_multi30k_from_replaces_what_an_earlier_run_left(tmp_path, capsys):
    """Files left by an earlier run (or an older rnnkit), bad or outdated, are replaced
    when a source is given; a file already equal to its source is said to be kept."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "train.de").write_bytes(b"\xff left behind\n")
    (out / "val.en").write_text("outdated\n", encoding="utf-8")
    src = multi30k_source(tmp_path / "src")
    status, _, err = run_cli(capsys, "data", "multi30k", "--out", out, "--from", src)
    assert status == 0, err
    assert snapshot(out) == snapshot(src)
    assert f"wrote {out / 'train.de'}" in err
    status, _, err = run_cli(capsys, "data", "multi30k", "--out", out, "--from", src)
    assert status == 0 and "wrote" not in err
    assert err.count("(the same as the source)") == 6
    (src / "val.en").write_text("v0\nv1\nv2\n", encoding="utf-8")
    status, _, err = run_cli(capsys, "data", "multi30k", "--out", out, "--from", src)
    assert err.count("wrote") == 1 and f"wrote {out / 'val.en'}" in err
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp file left


def test_a_multi30k_download_keeps_sound_splits_and_fetches_broken_ones(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for local, official in SPLITS.items():
        for lang in ("de", "en"):
            data = f"{local} {lang} new\n".encode()
            (mirror / f"{official}.{lang}.gz").write_bytes(gzip.compress(data))
    out = multi30k_source(tmp_path / "out", n=1, tag="old ")
    (out / "val.en").write_bytes(b"\xff broken\n")
    said: list[str] = []
    fetch_multi30k(out, base_url=mirror.as_uri(), log=said.append)
    assert read_parallel(out / "train", "de", "en") == [("train de old 0", "train en old 0")]
    assert read_parallel(out / "val", "de", "en") == [("val de new", "val en new")]
    assert f"kept {out / 'train.de'} (already there)" in said
    assert f"wrote {out / 'val.en'}" in said
    (mirror / "val.en.gz").write_bytes(b"not gzip")
    with pytest.raises(DataError, match=r"val\.en\.gz: not a valid gzip file"):
        fetch_multi30k(tmp_path / "fresh", base_url=mirror.as_uri())
    assert not (tmp_path / "fresh").exists()


def test_tatoeba_from_replaces_the_earlier_file_and_says_what_it_did(tmp_path, capsys):
    first, second = tmp_path / "first.txt", tmp_path / "second.txt"
    first.write_text("Go.\tVa !\n", encoding="utf-8")
    second.write_text("Hi.\tSalut.\n", encoding="utf-8")
    out = tmp_path / "d"
    dest = out / "eng-fra.txt"
    assert run_cli(capsys, "data", "tatoeba", "--out", out, "--from", first)[0] == 0
    status, _, err = run_cli(capsys, "data", "tatoeba", "--out", out, "--from", second)
    assert status == 0 and f"wrote {dest}" in err
    assert dest.read_bytes() == second.read_bytes()
    status, _, err = run_cli(capsys, "data", "tatoeba", "--out", out, "--from", second)
    assert status == 0 and err.strip() == f"kept {dest} (the same as the source)"
    bad = tmp_path / "bad.txt"
    bad.write_text("no tab here\n", encoding="utf-8")
    status, _, err = run_cli(capsys, "data", "tatoeba", "--out", out, "--from", bad)
    assert status == 2 and "bad.txt:1: expected at least 2" in one_line_error(err)
    assert dest.read_bytes() == second.read_bytes()


@pytest.mark.parametrize("corpus", ["tatoeba", "multi30k"])
def test_an_out_that_cannot_be_a_folder_is_a_one_line_error(corpus, tmp_path, capsys):
    src = multi30k_source(tmp_path / "m30k")
    if corpus == "tatoeba":
        src = tmp_path / "fra.txt"
        src.write_text("Go.\tVa !\n", encoding="utf-8")
    a_file = tmp_path / "in.txt"
    a_file.write_text("keep me\n", encoding="utf-8")
    for out, says in (
        (a_file, f"{a_file}: is a file, not a folder"),
        (a_file / "d", f"{a_file / 'd'}: cannot make this folder ({a_file} is a file)"),
    ):
        status, _, err = run_cli(capsys, "data", corpus, "--out", out, "--from", src)
        assert status == 2 and one_line_error(err) == f"rnnkit: error: {says}"
    assert a_file.read_text(encoding="utf-8") == "keep me\n"


# ------------------------------------------------ translate / evaluate / score input


def test_read_text_drops_a_byte_order_mark_at_a_line_start(tmp_path, monkeypatch):
    """A BOM at the start of a later line (files joined by cat) was kept: with word
    tokens, a token "\\ufeff" of its own in training."""
    from rnnkit.data.corpus import read_lines

    f = tmp_path / "bom.txt"
    f.write_bytes(BOM + b"a b\r\n" + BOM + b"c\nd\xef\xbb\xbfe\n")
    assert read_text(str(f)) == ["a b", "c", "d\ufeffe"]  # (inside a line: text)
    assert read_lines(f) == read_text(str(f))  # as training reads it
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(BOM + b"a b\n")))
    assert read_text(None) == ["a b"]
    (tmp_path / "empty.txt").write_bytes(b"")
    assert read_text(str(tmp_path / "empty.txt")) == []
    with pytest.raises(UsageError, match=r"empty\.txt: file is empty$"):
        read_text(str(tmp_path / "empty.txt"), need_lines=True)


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return save_bundle(word_bundle(seed=4), tmp_path / "m.pt")  # says something


def test_translate_reads_a_bom_file_as_training_does(model, tmp_path, capsys):
    src = tmp_path / "in.txt"
    src.write_bytes(BOM + b"a b c\nd e\n")
    status, out, _ = run_cli(capsys, "translate", model, "--input", src, "--json")
    assert status == 0
    first = json.loads(out.splitlines()[0])
    assert first["source_tokens"] == ["a", "b", "c", "</s>"]


def test_evaluate_and_score_read_a_bom_reference_as_training_does(model, tmp_path, capsys):
    src = tmp_path / "src.txt"
    src.write_text("a b c\nd e f g\nh a\n", encoding="utf-8")
    hyps = tmp_path / "hyps.txt"
    assert run_cli(capsys, "translate", model, "--input", src, "--output", hyps)[0] == 0
    assert all(hyps.read_text(encoding="utf-8").splitlines())  # something to score
    ref = tmp_path / "ref.txt"
    ref.write_bytes(BOM + hyps.read_bytes())
    status, out, _ = run_cli(capsys, "evaluate", model, "--src", src, "--ref", ref)
    assert status == 0
    result = json.loads(out)
    assert result["bleu"] == pytest.approx(100) and result["chrf"] == pytest.approx(100)
    scores = {}
    for name, tgt in (("plain", hyps), ("bom", ref)):
        out_file = tmp_path / f"{name}.scores"
        args = ("score", model, "--src", src, "--tgt", tgt, "--output", out_file)
        assert run_cli(capsys, *args)[0] == 0
        scores[name] = out_file.read_text(encoding="utf-8")
    assert scores["bom"] == scores["plain"]


def test_evaluate_with_empty_files_is_a_one_line_error(model, tmp_path, capsys):
    empty_src, empty_ref = tmp_path / "e.src", tmp_path / "e.ref"
    empty_src.write_bytes(b"")
    empty_ref.write_bytes(b"")
    status, out, err = run_cli(capsys, "evaluate", model, "--src", empty_src, "--ref", empty_ref)
    assert status == 2 and out == ""
    assert one_line_error(err) == f"rnnkit: error: {empty_src}: file is empty"
    src = tmp_path / "one.src"
    src.write_text("a b\n", encoding="utf-8")
    status, _, err = run_cli(capsys, "evaluate", model, "--src", src, "--ref", empty_ref)
    assert status == 2 and one_line_error(err) == f"rnnkit: error: {empty_ref}: file is empty"


def test_vocabularies_count_only_the_pairs_that_train(tmp_path: Path) -> None:
    """A word only in pairs longer than data.max_len never trains: it gets no id (it took
    a slot of max_vocab and counted towards min_freq, its embedding never trained)."""
    from rnnkit.config import config_from_dict
    from rnnkit.prepare import prepare

    short = ["a b", "b c", "c a", "a b c"] * 5
    long = ["zebra " * 8] * 10  # the most frequent word, in pairs of 8 tokens
    lines = short + long
    for side in ("src", "tgt"):
        (tmp_path / f"c.{side}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    data = {"train": str(tmp_path / "c"), "dev_size": 1, "tokenizer": "word", "max_len": 5}
    d = prepare(config_from_dict({"data": data}), tmp_path / "run", write=False)
    assert "zebra" not in d.src_vocab and "zebra" not in d.tgt_vocab
    assert {"a", "b", "c"} <= set(d.src_vocab.tokens) and len(d.examples) < len(short)
    assert all(len(e.src) <= 6 for e in d.examples)  # (</s> added)


def test_gzip_data_blank_tsv_lines_and_missing_files_are_said_plainly(tmp_path):
    from rnnkit.data import DataError
    from rnnkit.data.corpus import read_parallel, read_tsv
    from rnnkit.data.download import _read_local

    for side in ("de", "en"):
        (tmp_path / f"c.{side}").write_bytes(gzip.compress(b"ein Hund\n"))
    with pytest.raises(DataError, match=r"c\.de: gzip-compressed data; decompress it"):
        read_parallel(tmp_path / "c", "de", "en")  # (was ":1: invalid UTF-8 (byte 0x8b)")
    tsv = tmp_path / "t.txt"
    tsv.write_text("Go.\tVa !\nHi.\tSalut.\n\n", encoding="utf-8")  # ends in a blank line
    assert read_tsv(tsv) == [("Go.", "Va !"), ("Hi.", "Salut.")]
    with pytest.raises(DataError, match=r"train\.de: file not found \(nor train\.de\.gz\)$"):
        _read_local(tmp_path, "train", "train", "de")  # (it named train.de twice)
    with pytest.raises(
        DataError,
        match=r"val\.de: file not found \(nor val2016\.de, val\.de\.gz, val2016\.de\.gz\)$",
    ):
        _read_local(tmp_path, "val", "val2016", "de")  # (no file named: "(nor .gz)")
    with pytest.raises(DataError, match=r"--from .*t\.txt: a file, not a folder \(multi30k"):
        _read_local(tsv, "train", "train", "de")  # (was "t.txt/train.de: file not found")
    (tmp_path / "val.de").mkdir()
    with pytest.raises(DataError, match=r"val\.de: not a file"):
        _read_local(tmp_path, "val", "val", "de")


@pytest.mark.parametrize(
    "data, says",
    [
        ("1 jan 2000\n5/9/18\n".encode("utf-16-le"), r":1: a NUL byte: UTF-16 or binary data\?"),
        ("1 jan 2000\n".encode("utf-16"), r": UTF-16 text \(a byte-order mark\)"),
        (gzip.compress(b"1 jan 2000\n", mtime=0), r": gzip-compressed data; decompress it"),
    ],
)
def test_utf16_and_gzip_input_are_refused_not_read_as_garbage(tmp_path, data, says):
    """ASCII as UTF-16 without a byte-order mark is valid UTF-8 (its NULs): translate
    wrote 6 lines for 5 and training trained on NUL-led text; gzip given to translate
    was 'invalid UTF-8 (byte 0x8b)'."""
    from rnnkit.data.corpus import read_parallel

    f = tmp_path / "in.src"
    f.write_bytes(data)
    with pytest.raises(DataError, match=f"in.src{says}"):
        read_text(str(f))
    for side in ("de", "en"):
        (tmp_path / f"c.{side}").write_bytes(data)
    with pytest.raises(DataError, match=f"c.de{says}"):
        read_parallel(tmp_path / "c", "de", "en")


def test_training_pairs_all_too_long_is_an_error_not_an_empty_run(tmp_path, capsys):
    """Every pair over data.max_len: train ran 0 steps through 20 empty epochs, wrote a
    random best.pt with a vocabulary of 4 tokens, and exited 0."""
    for side in ("de", "en"):
        lines = "".join(f"a b c d e f g {i}\n" for i in range(20))  # (none alike)
        (tmp_path / f"c.{side}").write_text(lines, encoding="utf-8")
    data = {"train": str(tmp_path / "c"), "src": "de", "tgt": "en", "dev_size": 2,
            "tokenizer": "word", "max_len": 3}  # fmt: skip
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps({"data": data, "train": {"device": "cpu"}}), encoding="utf-8")
    status, _, err = run_cli(capsys, "train", cfg, "--out", tmp_path / "run")
    assert status == 2
    last = err.strip().splitlines()[-1]  # (after the progress lines)
    assert last.startswith("rnnkit: error: all 18 training pairs are longer than data.max_len 3")
    assert not (tmp_path / "run" / "best.pt").exists()
