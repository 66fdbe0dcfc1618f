"""What a fourth review from outside found as a user of the Python API and the config
files, each a clear error (or now working) where it was a wrong result, a silent
substitute or a traceback from deep inside: strings given for lists, YAML merge keys,
a config dumped by ``info --config`` trained again from another folder, arguments of
``translate_lines``, a built-in task beside corpus paths, and smaller ones."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from test_train import tiny, write_yaml
from toy import one_thread, save_bundle, word_bundle

import rnnkit
from rnnkit.checkpoint import load_bundle
from rnnkit.cli import main
from rnnkit.config import ConfigError, load_config
from rnnkit.data import DataError
from rnnkit.data.tokenizers import SentencePieceTokenizer
from rnnkit.ensemble import load_ensemble
from rnnkit.evaluate import exact_match, score
from rnnkit.model import Seq2Seq
from rnnkit.search import beam_search, greedy_search
from rnnkit.train import train
from rnnkit.translate import translate_lines

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


def test_strings_where_lists_are_wanted_are_refused():
    """score('the cat', 'the cat') scored each character as a sentence: BLEU 0.0."""
    with pytest.raises(ValueError, match="hypotheses must be a list of sentences, not one"):
        score("the cat sat on the mat", "the cat sat on the mat")
    with pytest.raises(ValueError, match="references must be a list of sentences, not one"):
        exact_match(["a"], "a")
    same = ["the cat sat on the mat"]
    assert score(same, same)["bleu"] == pytest.approx(100)
    with pytest.raises(TypeError, match=r"paths must be a list of checkpoint paths: \['/x/b"):
        load_ensemble("/x/best.pt")  # type: ignore[arg-type]  (was "/: checkpoint not found")
    with pytest.raises(ConfigError, match=r"overrides must be a list .*\['train.lr=0.1'\]"):
        load_config(None, "train.lr=0.1")  # was "--set t: expected section.key=value"


def test_yaml_merge_keys_work_and_a_key_given_twice_is_still_refused(tmp_path):
    merged = tmp_path / "m.yaml"
    merged.write_text(
        "data: {task: dates}\n"
        "model: &m\n  <<: {hidden_size: 32, emb_size: 24}\n  hidden_size: 64\n"
        "decode:\n  <<: {beam_size: 3, batch_size: 16}\n",
        encoding="utf-8",
    )
    cfg = load_config(merged)
    assert (cfg.model.hidden_size, cfg.model.emb_size, cfg.decode.beam_size) == (64, 24, 3)
    twice = tmp_path / "t.yaml"
    twice.write_text("model:\n  <<: {emb_size: 8}\n  hidden_size: 8\n  hidden_size: 9\n")
    with pytest.raises(ConfigError, match="line 4, column 3: duplicate key 'hidden_size'"):
        load_config(twice)


def test_a_bare_no_for_a_language_code_says_to_quote_it():
    with pytest.raises(ConfigError, match=r"data.src must be a string, got False \(YAML .*quote"):
        load_config(None, ["data.src=no"])


def _corpus(folder: Path, n: int = 40) -> None:
    folder.mkdir(parents=True)
    words = ["ein", "haus", "der", "hund", "die", "katze", "klein", "groß"]
    de = [" ".join(words[(i + k) % 8] for k in range(3 + i % 3)) for i in range(n)]
    (folder / "train.de").write_text("\n".join(de) + "\n", encoding="utf-8")
    (folder / "train.en").write_text("\n".join(s.upper() for s in de) + "\n", encoding="utf-8")


def _corpus_config(**data: Any) -> dict[str, Any]:
    d = tiny(train={"max_steps": 2, "validate_every": 2, "checkpoint_every": 2})
    d["data"] = {"train": "corp/train", "dev_size": 5, "src": "de", "tgt": "en"} | data
    d["data"]["tokenizer"] = "word"
    return d


def test_info_config_trains_again_from_another_folder(tmp_path, capsys, monkeypatch):
    """The dump kept train: corp/train (relative to the run's config) and no data_dir:
    run from another folder it said 'corp/train.de: file not found'."""
    _corpus(tmp_path / "c" / "corp")
    cfg = write_yaml(tmp_path / "c" / "tiny.yaml", _corpus_config())
    assert main(["train", str(cfg), "--out", str(tmp_path / "run")]) == 0
    capsys.readouterr()
    assert main(["info", str(tmp_path / "run" / "best.pt"), "--config"]) == 0
    dumped = yaml.safe_load(capsys.readouterr().out)
    assert dumped["data"]["data_dir"] == str(tmp_path / "c")
    assert dumped["data"]["train"] == "corp/train"  # the rest as the run had it
    (tmp_path / "other").mkdir()
    write_yaml(tmp_path / "other" / "again.yaml", dumped)
    monkeypatch.chdir(tmp_path / "other")
    assert main(["train", "again.yaml", "--out", "run2"]) == 0
    assert (tmp_path / "other" / "run2" / "best.pt").is_file()
    # a fine-tuned run's train.init_from, given relative to the folder it was started in
    assert (
        main(["train", "again.yaml", "--out", "ft", "--set", "train.init_from=run2/best.pt"]) == 0
    )
    capsys.readouterr()
    monkeypatch.chdir(tmp_path)
    assert main(["info", str(tmp_path / "other" / "ft" / "best.pt"), "--config"]) == 0
    dumped = yaml.safe_load(capsys.readouterr().out)
    assert dumped["train"]["init_from"] == str(tmp_path / "other" / "run2" / "best.pt")


def test_a_relative_sp_model_is_found_where_the_corpora_are(tmp_path, capsys, monkeypatch):
    """data.sp_model was taken from the current folder while the corpora beside it were
    found from the config's folder: 'data.sp_model /elsewhere/sp.model: cannot read'."""
    _corpus(tmp_path / "c" / "corp")
    bpe = _corpus_config(tokenizer="bpe", vocab_size=50)
    bpe["data"]["tokenizer"] = "bpe"  # (_corpus_config sets word)
    assert (
        main(
            [
                "train",
                str(write_yaml(tmp_path / "c" / "bpe.yaml", bpe)),
                "--out",
                str(tmp_path / "bpe"),
            ]
        )
        == 0
    )
    model = (tmp_path / "bpe" / "src_spm.model").read_bytes()
    (tmp_path / "c" / "corp" / "sp.model").write_bytes(model)
    cfg = write_yaml(
        tmp_path / "c" / "sp.yaml", bpe | {"data": {**bpe["data"], "sp_model": "corp/sp.model"}}
    )
    monkeypatch.chdir(tmp_path)  # neither the config's folder nor the corpora's
    capsys.readouterr()
    assert main(["train", str(cfg), "--out", "sp"]) == 0, capsys.readouterr().err
    assert "tokenizer: data.sp_model corp/sp.model" in capsys.readouterr().err
    assert (tmp_path / "sp" / "src_spm.model").read_bytes() == model


def test_info_config_of_a_task_with_a_relative_sp_model_trains_again(tmp_path, capsys, monkeypatch):
    """A task's run kept no base for its relative data.sp_model: info --config's dump
    said 'data.sp_model /elsewhere/m.model: cannot read' from another folder."""
    bpe = tiny(train={"max_steps": 2, "validate_every": 2, "checkpoint_every": 2})
    bpe["data"] |= {"tokenizer": "bpe", "vocab_size": 40}
    assert (
        main(["train", str(write_yaml(tmp_path / "bpe.yaml", bpe)), "--out", str(tmp_path / "b")])
        == 0
    )
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "m.model").write_bytes((tmp_path / "b" / "src_spm.model").read_bytes())
    cfg = write_yaml(
        tmp_path / "c" / "sp.yaml", bpe | {"data": {**bpe["data"], "sp_model": "m.model"}}
    )
    assert main(["train", str(cfg), "--out", str(tmp_path / "run")]) == 0
    capsys.readouterr()
    assert main(["info", str(tmp_path / "run" / "best.pt"), "--config"]) == 0
    dumped = yaml.safe_load(capsys.readouterr().out)
    assert (
        dumped["data"]["data_dir"] == str(tmp_path / "c")
        and dumped["data"]["sp_model"] == "m.model"
    )
    (tmp_path / "other").mkdir()
    write_yaml(tmp_path / "other" / "again.yaml", dumped)
    monkeypatch.chdir(tmp_path / "other")
    assert main(["train", "again.yaml", "--out", "run2"]) == 0


def test_train_from_python_checks_before_it_makes_the_folder(tmp_path):
    """train() made the folder and its .lock before finding the corpus missing, and took a
    config changed in code unchecked (torch's 'Invalid learning rate')."""
    cfg = load_config(write_yaml(tmp_path / "c.yaml", _corpus_config()))
    with pytest.raises(DataError, match="corp/train.de: file not found"):
        train(cfg, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    cfg = load_config(None, ["data.task=dates"])
    cfg.train.lr = -1.0
    with pytest.raises(ConfigError, match="train.lr must be > 0, got -1.0"):
        train(cfg, tmp_path / "out")


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ({"task": "dates"}, "data.task dates generates its pairs, so data.train and "),
        ({"format": "tsv", "src_col": 1, "tgt_col": 1}, "src_col and data.tgt_col are both 1"),
    ],
)
def test_corpus_settings_that_would_be_ignored_or_wrong(tmp_path, capsys, data, says):
    """A task with data.train trained on the task without a word; a TSV's one column as
    both sides trained a copy model."""
    _corpus(tmp_path / "corp")
    cfg = write_yaml(tmp_path / "c.yaml", _corpus_config(**data))
    assert main(["train", str(cfg), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("kw", "error", "says"),
    [
        ({"beam_size": 0}, ValueError, "beam_size must be ≥ 1, got 0"),
        ({"beam_size": "3"}, TypeError, "beam_size must be an integer, got '3'"),
        ({"n_best": 0}, ValueError, "n_best must be ≥ 1, got 0"),
        ({"batch_size": 0}, ValueError, "batch_size must be ≥ 1, got 0"),
        ({"length_penalty": -1.0}, ValueError, "length_penalty must be a finite number ≥ 0"),
        ({"length_penalty": math.nan}, ValueError, "length_penalty must be a finite number"),
        ({"coverage_penalty": -0.5}, ValueError, "coverage_penalty must be a finite number"),
        ({"n_best": 2, "beam_size": 1}, ValueError, "n_best 2 exceeds the beam size 1"),
    ],
)
def test_translate_lines_refuses_what_the_command_refuses(kw, error, says):
    """beam_size 0 ran greedy search without a word, length_penalty nan gave nan scores."""
    with pytest.raises(error, match=says):
        translate_lines(word_bundle(), ["a b"], **kw)


def test_a_beam_wider_than_the_target_vocabulary_is_refused(tmp_path, capsys):
    """--beam 100000 (a typo for 10) took 112 s and 14 GB for two sentences."""
    b = word_bundle()  # 12 target tokens
    with pytest.raises(ValueError, match="beam_size 13 exceeds the target vocabulary"):
        translate_lines(b, ["a b"], beam_size=13)
    assert len(translate_lines(b, ["a b"], beam_size=12)) == 1
    ckpt = save_bundle(b, tmp_path / "m.pt")
    (tmp_path / "in.txt").write_text("a b\n", encoding="utf-8")
    for command in ("translate", "evaluate"):
        argv = [command, str(ckpt), "--beam", "100000", "--input", str(tmp_path / "in.txt")]
        if command == "evaluate":
            argv[-2:] = ["--src", str(tmp_path / "in.txt"), "--ref", str(tmp_path / "in.txt")]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err == "rnnkit: error: --beam 100000 exceeds the target vocabulary (12 tokens)\n"
    serve = [sys.executable, "-m", "rnnkit", "serve", str(ckpt), "--beam", "13", "--port", "0"]
    r = subprocess.run(serve, capture_output=True, text=True, timeout=120)  # (it served,
    assert r.returncode == 2, r.stderr  # and every request without a beam was a 422)
    assert r.stderr == "rnnkit: error: --beam 13 exceeds the target vocabulary (12 tokens)\n"
    from rnnkit.serve.served import refusal
    from rnnkit.serve.translator import Decode

    loaded = type("Loaded", (), {"bundle": b, "ensemble": None})()
    assert "exceeds the target vocabulary" in str(refusal(loaded, Decode(13, 1, False, False)))
    assert refusal(loaded, Decode(12, 1, False, False)) is None


def test_a_checkpoint_whose_own_beam_is_wider_than_its_vocabulary_is_named(tmp_path, capsys):
    """decode.beam_size 20 over 15 target tokens trained without a word; rnnkit serve then
    started and answered every request without "beam" with a 422, translate blamed a
    --beam that was not given."""
    import dataclasses

    from rnnkit.serve.served import Served

    b = word_bundle()  # 12 target tokens
    wide = dataclasses.replace(b.config, decode=dataclasses.replace(b.config.decode, beam_size=13))
    b = dataclasses.replace(b, config=wide)
    ckpt = save_bundle(b, tmp_path / "m.pt")
    (tmp_path / "in.txt").write_text("a b\n", encoding="utf-8")
    says = (
        "decode.beam_size 13 exceeds its target vocabulary (12 tokens): give --beam K (at most 12)"
    )
    assert main(["translate", str(ckpt), "--input", str(tmp_path / "in.txt")]) == 2
    assert capsys.readouterr().err == f"rnnkit: error: the checkpoint's {says}\n"
    assert main(["translate", str(ckpt), "--input", str(tmp_path / "in.txt"), "--beam", "2"]) == 0
    serve = [sys.executable, "-m", "rnnkit", "serve", str(ckpt), "--port", "0"]
    r = subprocess.run(serve, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stderr == f"rnnkit: error: the checkpoint's {says}\n"
    served = Served(word_bundle(), None, str(ckpt), None, {}, loader=lambda: (b, None))
    assert not served.reload()  # (and with --beam 2 it is taken)
    assert Served(word_bundle(), None, str(ckpt), 2, {}, loader=lambda: (b, None)).reload()
    config = tiny(decode={"beam_size": 400})
    with pytest.raises(DataError, match=r"decode.beam_size 400 exceeds the target vocabulary"):
        rnnkit.train.train(load_config(write_yaml(tmp_path / "c.yaml", config)), tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_translate_lines_takes_a_list_of_strings():
    b = word_bundle()
    with pytest.raises(TypeError, match="lines must be a list of strings, got str"):
        translate_lines(b, "a b c")  # translated each character as a line
    with pytest.raises(TypeError, match="lines must be a list of strings, got generator"):
        translate_lines(b, (s for s in ["a b"]))  # type: ignore[arg-type]  (an IndexError)
    with pytest.raises(TypeError, match="lines must be strings, got a NoneType"):
        translate_lines(b, ["a", None])  # type: ignore[list-item]
    assert len(translate_lines(b, ("a b", "c"))) == 2  # a tuple is a sequence


def test_searches_take_lengths_as_a_list_as_encode_does():
    model = Seq2Seq(10, 11, 6, 8).eval()
    src, lengths = torch.randint(4, 10, (3, 5)), [5, 3, 4]
    as_list = greedy_search(model, src, lengths)  # type: ignore[arg-type]
    as_tensor = greedy_search(model, src, torch.tensor(lengths))
    assert [h.tokens for h in as_list] == [h.tokens for h in as_tensor]
    beams = beam_search(model, src, lengths, 2)  # type: ignore[arg-type]
    assert len(beams) == 3


@pytest.mark.parametrize(
    ("make", "error", "says"),
    [
        (lambda: rnnkit.LSTM(4, 5, forget_bias="1"), TypeError, "forget_bias must be a number"),
        (lambda: rnnkit.CIFGLSTM(4, 5, forget_bias=math.inf), ValueError, "must be finite"),
        (lambda: rnnkit.LayerNormLSTM(4, 5, foo=1), TypeError, "LayerNormLSTMCell takes no"),
        (lambda: rnnkit.LayerNormLSTM(4, 5, proj_size=2), TypeError, "no keyword 'proj_size'"),
        (lambda: Seq2Seq(10, 11, 0, 8), ValueError, "emb_size must be a whole number ≥ 1"),
        (lambda: Seq2Seq(10, 11, 6, 8, dropout=1.5), ValueError, "dropout must be a probab"),
        (lambda: Seq2Seq(10, 11, 6, 8, emb_dropout=-0.1), ValueError, "emb_dropout must be"),
        (lambda: Seq2Seq(10, 11, 6, 8, pad_id=2), ValueError, "pad_id 2, bos_id 2 and eos"),
    ],
)
def test_layers_and_models_name_what_they_cannot_take(make, error, says):
    with pytest.raises(error, match=says):
        make()


def test_load_bundle_on_a_device_this_machine_lacks_says_so(tmp_path):
    """device='cuda' on a CPU build was a bare AssertionError; 'gpu' torch's list."""
    ckpt = save_bundle(word_bundle(), tmp_path / "m.pt")
    with pytest.raises(ConfigError, match="device=gpu: use auto, cpu, cuda, cuda:N or mps"):
        load_bundle(ckpt, device="gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="device=cuda: this machine has no CUDA GPU"):
            load_bundle(ckpt, device="cuda")
    assert load_bundle(ckpt, device="auto").model is not None


def test_a_vocabulary_too_small_for_the_characters_names_the_config_key():
    """sentencepiece's own advice named --character_coverage, a flag rnnkit lacks."""
    with pytest.raises(DataError, match=r"vocabulary size 5 is smaller than the \d+ char.*"):
        SentencePieceTokenizer.train(["hello world, this is a sentence"] * 20, vocab_size=5)


def test_graphs_submodules_load_on_first_use():
    """rnnkit.graphs.capture.clear(), as docs/gpu.md gives it, was an AttributeError in a
    fresh interpreter until a layer had run."""
    code = "import rnnkit; rnnkit.graphs.capture.clear(); print('cleared')"
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.stdout == "cleared\n", done.stderr


def test_info_config_gives_a_relative_init_from_as_found():
    """A fine-tuned run's dump kept train.init_from: runA/best.pt, relative to the folder
    it was started from; from another folder it was 'checkpoint not found'."""
    from rnnkit.about import rerunnable_config

    ckpt = {
        "config": {"data": {"task": "dates"}, "train": {"init_from": "runA/best.pt"}},
        "found_at": {"data_dir": None, "init_from": "/home/u/runA/best.pt"},
    }
    assert rerunnable_config(ckpt)["train"]["init_from"] == "/home/u/runA/best.pt"
    ckpt["config"]["train"]["init_from"] = "/abs/best.pt"  # as given: kept
    assert rerunnable_config(ckpt)["train"]["init_from"] == "/abs/best.pt"


def test_a_relative_embeddings_file_that_is_missing_says_where_it_was_looked_for(tmp_path, capsys):
    """It named only the path it tried (under RNNKIT_DATA), not why it looked there."""
    cfg = write_yaml(tmp_path / "c.yaml", tiny(model={"src_embeddings": "src.vec"}))
    assert main(["train", str(cfg), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"model.src_embeddings 'src.vec' is relative: taken from {tmp_path}, the base" in err
