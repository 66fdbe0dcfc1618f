"""Pretrained vectors as initial embeddings (``model.src_embeddings`` / ``tgt_embeddings``):
the file format (word2vec / GloVe / fastText text), what a new run starts from, what
resume and fine-tuning do, and the one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_train import one_thread, tiny  # noqa: F401 (fixture)

from rnnkit.cli import main
from rnnkit.config import config_from_dict
from rnnkit.data import DataError, Vocab
from rnnkit.pretrained import read_vectors
from rnnkit.train import Trainer, train

E = 16  # tiny()'s emb_size


def write_vectors(path: Path, rows: dict[str, list[float]], header: bool = False) -> Path:
    lines = [f"{len(rows)} {len(next(iter(rows.values())))}"] if header else []
    lines += [f"{tok} {' '.join(f'{v:.6f}' for v in vec)} " for tok, vec in rows.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def vec(seed: int, dim: int = E) -> list[float]:
    g = torch.Generator().manual_seed(seed)
    return [round(float(v), 6) for v in torch.randn(dim, generator=g)]


def test_read_vectors_keeps_the_vocabulary_tokens_of_the_file(tmp_path):
    vocab = Vocab.build([["the", "cat", "sat", "."]])
    rows = {"cat": vec(1, 3), "dog": vec(2, 3), "<unk>": vec(3, 3), ".": vec(4, 3)}
    for header in (False, True):
        f = write_vectors(tmp_path / f"v{header}.vec", rows, header)
        with open(f, "a", encoding="utf-8") as out:
            out.write(f"cat {' '.join(['9'] * 3)}\n")  # a second "cat": the first counts
        found = read_vectors(f, vocab, 3)
        assert found == {vocab["cat"]: rows["cat"], vocab["."]: rows["."]}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cat 1 2\n", r"v.vec, line 1: 2 numbers after 'cat', but model.emb_size is 3"),
        ("2 4\ncat 1 2 3 4\n", r"v.vec, line 1: vectors of size 4, but model.emb_size is 3"),
        # the value named, not only its token (a digit token '9' read as the bad value)
        ("dog 1 2 3\ncat 1 x 3\n", r"v.vec, line 2: 'x' \(in the vector of 'cat'\) is not a fin"),
        # a file of another size that shares no token with the vocabulary ('Cat'):
        ("Cat 1 2\nDog 3 4\n", r"v.vec, line 1: 2 numbers after 'Cat', but model.emb_size is 3"),
        ("cat 1 nan 3\n", r"v.vec, line 1: 'nan' \(in the vector of 'cat'\) is not a finite"),
        ("cat 1 2 -inf\n", r"v.vec, line 1: '-inf' \(in the vector of 'cat'\) is not a finite"),
        # an empty file (or one of blank lines) was "0 of N tokens found" and trained on
        ("", r"v.vec: holds no vectors"),
        ("\n  \n", r"v.vec: holds no vectors"),
        (b"dog 1 2 3\n\xff\xfe 1 2 3\n", r"v.vec, line 2: not UTF-8"),
    ],
)
def test_bad_files_are_one_line_errors_naming_file_and_line(tmp_path, text, message):
    f = tmp_path / "v.vec"
    f.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(DataError, match=message):
        read_vectors(f, Vocab.build([["cat"]]), 3)
    with pytest.raises(DataError, match="cannot read the embeddings file"):
        read_vectors(tmp_path / "missing.vec", Vocab.build([["cat"]]), 3)


def test_fields_may_be_separated_by_tabs(tmp_path):
    f = tmp_path / "v.tsv"
    f.write_text("dog\t0.5\t1\t2\ncat\t1\t2\t3\t\n", encoding="utf-8")
    assert read_vectors(f, Vocab.build([["cat"]]), 3) == {4: [1.0, 2.0, 3.0]}


def trainer(tmp_path: Path, name: str, **model: object) -> Trainer:
    cfg = config_from_dict(tiny(model=model, train={"max_steps": 4}))
    return Trainer(cfg, tmp_path / name, config_dir=tmp_path)


def test_a_byte_order_mark_is_not_part_of_the_first_token(tmp_path):
    """A file saved with a BOM was "1 numbers after '\\ufeff5'" (its header) or, without
    a header, a first token that matched nothing."""
    vocab = Vocab.build([["cat", "dog"]])
    f = tmp_path / "bom.vec"
    f.write_text("\ufeff2 3\ncat 1 2 3\ndog 4 5 6\n", encoding="utf-8")
    assert read_vectors(f, vocab, 3) == {vocab["cat"]: [1, 2, 3], vocab["dog"]: [4, 5, 6]}
    f.write_text("\ufeffcat 1 2 3\n", encoding="utf-8")
    assert read_vectors(f, vocab, 3) == {vocab["cat"]: [1, 2, 3]}


@pytest.mark.parametrize("tied", [False, True])
def test_a_new_run_starts_from_the_vectors(tmp_path, tied):
    plain = trainer(tmp_path, "plain", tie_embeddings=tied)
    src_tokens, tgt_tokens = plain.data.src_vocab.tokens, plain.data.tgt_vocab.tokens
    src = {t: vec(k) for k, t in enumerate(src_tokens[4:10:2])}  # some of the tokens
    tgt = {t: vec(100 + k) for k, t in enumerate(tgt_tokens[5:9])}
    write_vectors(tmp_path / "src.vec", {**src, "never-seen": vec(7)}, header=True)
    write_vectors(tmp_path / "tgt.vec", tgt)
    lines: list[str] = []
    cfg = config_from_dict(
        tiny(
            model={
                "tie_embeddings": tied,
                "src_embeddings": "src.vec",
                "tgt_embeddings": "tgt.vec",
            },
            train={"max_steps": 4},
        )
    )
    cfg.data.data_dir = str(tmp_path)  # relative paths resolve as corpus paths do
    t = Trainer(cfg, tmp_path / "pre", log=lines.append)
    for side, vocab, rows, got, was in (
        ("source", t.data.src_vocab, src, t.model.encoder.embed.weight, plain.model.encoder),
        ("target", t.data.tgt_vocab, tgt, t.model.decoder.embed.weight, plain.model.decoder),
    ):
        for i, token in enumerate(vocab.tokens):
            want = torch.tensor(rows[token]) if token in rows else was.embed.weight[i]
            assert torch.equal(got[i].detach(), want.detach()), (side, token)
        n = len(vocab) - 4
        assert any(
            line.startswith(f"{side} embeddings: {len(rows)} of {n} tokens") for line in lines
        )
    if tied:  # the output layer is the target embedding
        assert t.model.W_out.weight.data_ptr() == t.model.decoder.embed.weight.data_ptr()
    # and everything else is the plain model's initialisation
    for (name, p), q in zip(t.model.named_parameters(), plain.model.parameters()):
        if "embed" not in name and not (tied and name.startswith("W_out.weight")):
            assert torch.equal(p, q), name


def test_resume_and_fine_tuning_do_not_read_the_file_again(tmp_path):
    plain = trainer(tmp_path, "plain")
    token = plain.data.src_vocab.tokens[5]
    f = write_vectors(tmp_path / "src.vec", {token: vec(1)})
    keys = {"src_embeddings": str(f)}
    cfg = config_from_dict(tiny(model=keys, train={"max_steps": 4, "checkpoint_every": 2}))
    train(cfg, tmp_path / "run")
    f.unlink()  # resume and fine-tuning take the weights from the checkpoint
    cfg.train.max_steps = 6
    assert train(cfg, tmp_path / "run", resume=True).steps == 6
    lines: list[str] = []
    cfg.train.init_from = str(tmp_path / "run" / "last.pt")
    Trainer(cfg, tmp_path / "child", log=lines.append)
    assert any("src_embeddings / tgt_embeddings are not used" in line for line in lines)


def test_cli_error_names_the_file_and_line(tmp_path, capsys):
    plain = trainer(tmp_path, "plain")
    token = plain.data.tgt_vocab.tokens[6]
    f = tmp_path / "tgt.vec"
    f.write_text(f"{token} 1 2 3\n", encoding="utf-8")
    cfg = tmp_path / "c.yaml"
    import yaml

    cfg.write_text(yaml.safe_dump(tiny(model={"tgt_embeddings": str(f)})), encoding="utf-8")
    capsys.readouterr()
    assert main(["train", str(cfg), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        f"rnnkit: error: {f}, line 1: 3 numbers after {token!r}, but model.emb_size is {E}"
    )


def test_a_missing_file_fails_before_the_data_work(tmp_path, capsys):
    cfg = config_from_dict(tiny(model={"src_embeddings": str(tmp_path / "none.vec")}))
    lines: list[str] = []
    with pytest.raises(DataError, match="none.vec: cannot read the embeddings file"):
        Trainer(cfg, tmp_path / "run", log=lines.append)
    assert lines == []  # no tokenizer was trained


def test_a_file_without_the_vocabulary_tokens_says_so(tmp_path):
    f = write_vectors(tmp_path / "other.vec", {"zzz": vec(1), "yyy": vec(2)})
    lines: list[str] = []
    cfg = config_from_dict(tiny(model={"tgt_embeddings": str(f)}))
    Trainer(cfg, tmp_path / "run", log=lines.append)
    assert any(line.startswith("target embeddings: 0 of") for line in lines)
    assert any(line.startswith("note: no target token is in") for line in lines)


def test_info_embeddings_writes_what_read_vectors_reads(tmp_path, capsys):
    import yaml

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(tiny(train={"max_steps": 3})), encoding="utf-8")
    assert main(["train", str(cfg), "--out", str(tmp_path / "run")]) == 0
    from rnnkit.checkpoint import load_bundle

    b = load_bundle(tmp_path / "run" / "best.pt")
    for side, vocab, weight in (
        ("src", b.src_vocab, b.model.encoder.embed.weight),
        ("tgt", b.tgt_vocab, b.model.decoder.embed.weight),
    ):
        capsys.readouterr()
        assert main(["info", str(tmp_path / "run" / "best.pt"), "--embeddings", side]) == 0
        f = tmp_path / f"{side}.vec"
        f.write_text(capsys.readouterr().out, encoding="utf-8")
        assert f.read_text(encoding="utf-8").splitlines()[0] == f"{len(vocab) - 4} {E}"
        found = read_vectors(f, vocab, E)
        assert sorted(found) == list(range(4, len(vocab)))  # every token but the specials
        for i, vec in found.items():
            assert torch.allclose(torch.tensor(vec), weight[i].detach(), rtol=1e-5, atol=1e-6)


def test_tokens_holding_whitespace_are_left_out():
    from rnnkit.pretrained import vector_lines

    vocab = Vocab.build([["a", " ", "b"]])
    lines = vector_lines(torch.ones(len(vocab), 2), vocab)
    assert lines[0] == "2 2" and sorted(line.split()[0] for line in lines[1:]) == ["a", "b"]
