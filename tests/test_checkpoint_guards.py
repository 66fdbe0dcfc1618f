"""Checkpoints that are not what rnnkit writes: read with torch's safe unpickler (a pickle
that would run code is refused and runs nothing); malformed entries, weights-only files
given to ``--resume``: each a one-line :class:`CheckpointError` that names the file. And an
average of averages: each input counts as the checkpoints it averages."""

from __future__ import annotations

import math
import pickle
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from test_train import one_thread, tiny, write_yaml  # noqa: F401 (fixture)

from rnnkit.checkpoint import (
    FORMAT,
    CheckpointError,
    average_checkpoints,
    load_bundle,
    load_checkpoint,
    save_checkpoint,
)
from rnnkit.cli import main
from rnnkit.config import ConfigError, config_from_dict
from rnnkit.data import make_tokenizer, tokenizer_from_state
from rnnkit.train import train

KEPT = {"keep_checkpoints": 3, "ema_decay": 0.9}  # 30 steps: step-10, -20, -30.pt kept
AVG = ["step-10.pt", "step-20.pt"]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy-task run of 30 steps that keeps its step files and an average of its weights."""
    out = tmp_path_factory.mktemp("run")
    train(config_from_dict(tiny(train=KEPT)), out, log=lambda _: None)
    return out


def one_line_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """``rnnkit ARGV``'s error: exit status 2, one line, no traceback."""
    capsys.readouterr()
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnkit: error: ") and err.count("\n") == 1, err
    return err


def changed(
    run: Path,
    tmp_path: Path,
    name: str,
    change: Callable[[dict[str, Any]], Any],
    source: str = "step-30.pt",
) -> Path:
    """``source`` of ``run`` with ``change`` applied, written to ``tmp_path/NAME.pt``."""
    ck = load_checkpoint(run / source)
    change(ck)
    torch.save(ck, tmp_path / f"{name}.pt")
    return tmp_path / f"{name}.pt"


# ---------------------------------------------------------------- the safe unpickler


def test_what_rnnkit_writes_loads_with_the_safe_unpickler(run, tmp_path):
    """Every file a run writes (with an EMA, kept steps, RNG states, progress), an average
    and a sentencepiece tokenizer (bytes) load with ``weights_only=True``, and resume."""
    avg = tmp_path / "avg.pt"
    assert main(["average", *(str(run / k) for k in AVG), "--out", str(avg)]) == 0
    files = [run / "last.pt", run / "best.pt", *sorted(run.glob("step-*.pt")), avg]
    for path in files:
        assert torch.load(path, weights_only=True)["format"] == FORMAT
        load_bundle(path)
    last = torch.load(run / "last.pt", weights_only=True)
    assert {"optimizer", "scheduler", "rng", "rng_ranks", "progress", "ema"} <= last.keys()
    assert isinstance(last["rng"]["python"], tuple) and last["rng"]["torch"].dtype == torch.uint8

    lines = [" ".join(random.Random(i).choices(["one", "two", "six"], k=5)) for i in range(99)]
    tok = make_tokenizer("bpe", lines, vocab_size=20)
    save_checkpoint(tmp_path / "sp.pt", {"src_tokenizer": tok.to_state()})
    state = load_checkpoint(tmp_path / "sp.pt")["src_tokenizer"]
    assert tokenizer_from_state(state).encode(lines[0]) == tok.encode(lines[0])

    resumed = tmp_path / "resumed"
    shutil.copytree(run, resumed)
    train(config_from_dict(tiny(train={**KEPT, "max_steps": 35})), resumed, resume=True)
    assert load_checkpoint(resumed / "last.pt")["progress"]["step"] == 35


class _Touch:
    """Unpickled by the unsafe loader, it calls ``open(path, "w")``: the file appears."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


@pytest.mark.parametrize("kind", ["torch.save", "pickle"])
def test_a_pickle_that_would_run_code_is_refused_and_runs_nothing(tmp_path, capsys, kind):
    made = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    payload = {"format": FORMAT, "config": {}, "model": _Touch(made)}
    if kind == "torch.save":
        torch.save(payload, evil)
    else:
        evil.write_bytes(pickle.dumps(payload, protocol=4))
    refused = "evil.pt: not a readable rnnkit checkpoint (refused by the safe unpickler"
    with pytest.raises(CheckpointError, match=re.escape(refused)):
        load_checkpoint(evil)
    assert refused in one_line_error(capsys, "info", str(evil))
    assert refused in one_line_error(capsys, "average", str(evil), "--out", "x.pt")
    assert not made.exists()


# ---------------------------------------------------------------- malformed entries


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda ck: ck.__setitem__(key, value)


def _progress(key: str, value: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda ck: ck["progress"].__setitem__(key, value)


def _optimizer(key: str, value: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda ck: ck["optimizer"].__setitem__(key, value)


def _wider(ck: dict[str, Any]) -> None:
    ck["config"]["model"]["hidden_size"] *= 2


def _shorter_vocab(ck: dict[str, Any]) -> None:
    ck["tgt_vocab"]["tokens"] = ck["tgt_vocab"]["tokens"][:-2]


def _dup_token(ck: dict[str, Any]) -> None:
    tokens = ck["tgt_vocab"]["tokens"]
    tokens[-1] = tokens[-2]


def _no_length(ck: dict[str, Any]) -> None:  # a check across sections
    ck["config"]["decode"]["max_len_a"] = 0.0
    ck["config"]["decode"]["max_len_b"] = 0


def _list_weight(ck: dict[str, Any]) -> None:
    ck["model"]["encoder.embed.weight"] = [1.0, 2.0]


MALFORMED = [
    ("wider", _wider, r"its weights do not fit .*: \S+ is \(\d+, \d+\) there, \(\d+, \d+\)"),
    ("short_vocab", _shorter_vocab, r"its weights do not fit .* \(\d+ and \d+ tokens\) describe"),
    ("model_str", _set("model", "xyz"), "model is a str, not a dict of weights"),
    ("weight_list", _list_weight, "weight 'encoder.embed.weight' is a list, not a tensor"),
    ("vocab_int", _set("src_vocab", {"tokens": 5}), "src_vocab is not a vocabulary"),
    ("vocab_dup", _dup_token, "tgt_vocab: duplicate token"),
    ("tok_kind", _set("src_tokenizer", {"kind": "weird"}), "src_tokenizer does not .* kind"),
    ("tok_list", _set("src_tokenizer", [1]), "src_tokenizer is a list, not a tokenizer state"),
    ("tok_key", _set("src_tokenizer", {"kind": "word"}), "src_tokenizer lacks 'lowercase'"),
    (
        "tok_sp",
        _set("tgt_tokenizer", {"kind": "sentencepiece", "model": b"x"}),
        "tgt_tokenizer does not rebuild",
    ),
    ("step_str", _set("step", "x"), "step is a str, not an integer"),
    ("no_length", _no_length, "decode.max_len_a and decode.max_len_b are both 0"),
]


def test_an_older_checkpoint_with_coverage_but_no_attention_still_loads(tmp_path):
    """Configs refuse the pair now; files written before keep loading, the penalty (which
    never applied without attention) read as 0."""
    train(config_from_dict(tiny(model={"attention": "none"}, train={"max_steps": 2})), tmp_path)
    ck = load_checkpoint(tmp_path / "last.pt")
    ck["config"]["decode"]["coverage_penalty"] = 0.2  # as an older rnnkit let it be saved
    torch.save(ck, tmp_path / "old.pt")
    assert load_bundle(tmp_path / "old.pt").config.decode.coverage_penalty == 0.0


@pytest.mark.parametrize(("name", "change", "words"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_a_malformed_checkpoint_is_one_line_naming_the_file(
    run, tmp_path, capsys, name, change, words
):
    path = changed(run, tmp_path, name, change)
    with pytest.raises((CheckpointError, ConfigError), match=rf"{name}\.pt: {words}"):
        load_bundle(path)
    assert f"{name}.pt: " in one_line_error(capsys, "info", str(path))
    (tmp_path / "in.txt").write_text("a b\n", encoding="utf-8")
    translate = ["translate", str(path), "--input", str(tmp_path / "in.txt"), "--device", "cpu"]
    assert f"{name}.pt: " in one_line_error(capsys, *translate)


@pytest.mark.parametrize(
    ("name", "change", "words"),
    [
        ("model_str", _set("model", "xyz"), "model is a str"),
        ("config_list", _set("config", [1]), "top level must be a mapping"),
        ("averaged_str", _set("averaged", "x"), "averaged is not a list of steps"),
        ("wider", _wider, "its weights do not fit"),
    ],
)
def test_average_names_the_malformed_input(run, tmp_path, capsys, name, change, words):
    path = changed(run, tmp_path, name, change)
    out = tmp_path / "avg.pt"
    inputs = [path] if name == "wider" else [run / "step-20.pt", path]  # (wider: another model)
    err = one_line_error(capsys, "average", *map(str, inputs), "--out", str(out))
    assert f"{name}.pt: {words}" in err and not out.exists()


def test_init_from_a_malformed_parent_names_it(run, tmp_path):
    parent = changed(run, tmp_path, "parent", _shorter_vocab)
    cfg = config_from_dict(tiny(train={"init_from": str(parent), "max_steps": 2}))
    with pytest.raises(CheckpointError, match=r"parent\.pt: its weights do not fit"):
        train(cfg, tmp_path / "child")


# ---------------------------------------------------------------- resume, averages


@pytest.mark.parametrize(
    ("kept", "what"),
    [(["step-30.pt"], "a kept step-*.pt file"), (AVG, "an average of steps 10, 20")],
)
def test_resume_from_weights_only_is_one_line_that_says_so(run, tmp_path, capsys, kept, what):
    """A kept step file or an average copied to last.pt: no optimizer, schedule, position."""
    out = tmp_path / "out"
    out.mkdir()
    if len(kept) == 1:
        shutil.copy(run / kept[0], out / "last.pt")
    else:
        assert main(["average", *(str(run / k) for k in kept), "--out", str(out / "last.pt")]) == 0
    for steps in (40, 30):  # 30: the very config the file holds, checked all the same
        cfg = write_yaml(tmp_path / "c.yaml", tiny(train={**KEPT, "max_steps": steps}))
        err = one_line_error(capsys, "train", str(cfg), "--out", str(out), "--resume")
        assert f"last.pt: holds weights only ({what}) and cannot be resumed" in err
        assert "train.init_from" in err


@pytest.mark.parametrize(
    ("key", "value"), [("tokenizer", "char"), ("min_freq", 2), ("lowercase", True)]
)
def test_resume_keeps_the_tokenizer_settings(run, tmp_path, capsys, key, value):
    """The tokenizers and vocabularies come from last.pt: a config that would have made
    others is refused, not trained on and then saved as if it had been used."""
    out = tmp_path / "out"
    shutil.copytree(run, out)
    d = tiny(train={**KEPT, "max_steps": 40})
    d["data"][key] = value
    err = one_line_error(capsys, "train", str(write_yaml(tmp_path / "c.yaml", d)), "--out",
                         str(out), "--resume")  # fmt: skip
    assert f"--resume keeps its tokenizers and vocabularies (data.{key} " in err


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [("train", "seed", 7), ("data", "task_size", 200), ("data", "task_options", {"min_len": 3})],
)
def test_resume_keeps_the_runs_data(run, tmp_path, capsys, section, key, value):
    """The built-in task's pairs, the held-out split and every epoch's order are drawn
    with train.seed: another seed or task size would train (and pick best.pt) on others."""
    out = tmp_path / "out"
    shutil.copytree(run, out)
    d = tiny(train={**KEPT, "max_steps": 40})
    d[section][key] = value
    err = one_line_error(capsys, "train", str(write_yaml(tmp_path / "c.yaml", d)), "--out",
                         str(out), "--resume")  # fmt: skip
    assert f"--resume needs the run's data and its order ({section}.{key} " in err


@pytest.mark.parametrize(("key", "value"), [("batch_size", 8), ("batch_tokens", 100)])
def test_resume_in_mid_epoch_keeps_the_batches_and_at_an_epochs_end_may_change_them(
    tmp_path, capsys, key, value
):
    """The saved position counts batches into the epoch's list: other batch sizes there
    would train some pairs twice and some never. At an epoch's end they may change."""
    keys = {"max_steps": 0, "max_epochs": 2, "batch_size": 16}
    train(config_from_dict(tiny(train={**keys, "max_steps": 25})), tmp_path / "r", log=print)
    pos = load_checkpoint(tmp_path / "r" / "last.pt")["progress"]
    assert pos["epoch"] == 1 and pos["pos"] > 0  # 19 batches an epoch: 6 into the second
    other = write_yaml(tmp_path / "c.yaml", tiny(train={**keys, key: value}))
    err = one_line_error(capsys, "train", str(other), "--out", str(tmp_path / "r"), "--resume")
    assert f"continues {pos['pos']} batches into epoch 2, whose batches its settings made" in err
    assert f"(train.{key} " in err and "train.max_epochs 2 stops at the epoch's end" in err
    train(config_from_dict(tiny(train={**keys, "max_epochs": 1})), tmp_path / "e", log=print)
    assert main(["train", str(other), "--out", str(tmp_path / "e"), "--resume"]) == 0
    assert load_checkpoint(tmp_path / "e" / "last.pt")["progress"]["epoch"] == 2
    # stopped by max_steps on an epoch's last batch: that epoch is done too
    train(config_from_dict(tiny(train={**keys, "max_steps": 19})), tmp_path / "s", log=print)
    at = load_checkpoint(tmp_path / "s" / "last.pt")["progress"]
    assert (at["epoch"], at["pos"], at["epoch_batches"]) == (0, 19, 19)
    assert main(["train", str(other), "--out", str(tmp_path / "s"), "--resume"]) == 0


def test_an_average_counts_as_the_checkpoints_it_averages(run, tmp_path, capsys):
    s10, s20, s30 = (str(run / f"step-{n}.pt") for n in (10, 20, 30))
    avg, avg3 = tmp_path / "avg.pt", tmp_path / "avg3.pt"
    assert main(["average", s10, s20, "--out", str(avg)]) == 0
    capsys.readouterr()
    assert main(["average", str(avg), s30, "--out", str(avg3)]) == 0
    assert "averaged 3 checkpoints (steps 10, 20, 30)" in capsys.readouterr().err
    nested, flat = load_checkpoint(avg3), average_checkpoints([s10, s20, s30])
    assert nested["averaged"] == flat["averaged"] == [10, 20, 30] and nested["step"] == 30
    weights = [load_checkpoint(s)["model"] for s in (s10, s20, s30)]
    for k, w in nested["model"].items():
        torch.testing.assert_close(w, flat["model"][k])
        torch.testing.assert_close(w, sum(m[k] for m in weights) / 3)


@pytest.mark.parametrize(
    "case", ["an average and one of its steps", "one file twice", "last", "resumed"]
)
def test_average_refuses_a_step_that_two_inputs_hold(run, tmp_path, capsys, case):
    avg, s20, last = tmp_path / "avg.pt", run / "step-20.pt", run / "last.pt"
    assert main(["average", str(run / "step-10.pt"), str(s20), "--out", str(avg)]) == 0
    capsys.readouterr()
    step = load_checkpoint(last)["step"] if case == "last" else 20
    # a run resumed with a higher budget and another device is still the same run
    resumed = changed(run, tmp_path, "later", lambda ck: ck["config"]["train"].update(
        max_steps=99, device="cpu", log_every=3))  # fmt: skip
    first, second = {
        "an average and one of its steps": (avg, s20),
        "one file twice": (s20, s20),
        "last": (run / f"step-{step}.pt", last),
        "resumed": (s20, resumed),
    }[case]
    if case == "resumed":  # (changed() copies step-30: say it is step 20's weights)
        ck = load_checkpoint(resumed)
        torch.save({**ck, "step": 20}, resumed)
    err = one_line_error(capsys, "average", str(first), str(second), "--out", str(tmp_path / "x"))
    assert f"step {step} is already in {first} (it would count twice)" in err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda ck: ck.pop("config"), "lacks 'config'"),
        (lambda ck: ck.__setitem__("ema", "x"), "its ema entry is not the one rnnkit writes"),
        (lambda ck: ck["ema"].__setitem__("weights", {}), r"\(ema weights\)"),
        (_set("progress", "x"), "progress is a str, not a mapping"),
        (_progress("step", "7"), r"progress\.step is '7', not an integer >= 0"),
        (_progress("epoch", -1), r"progress\.epoch is -1, not an integer >= 0"),
        (_progress("best", "x"), r"progress\.best is 'x', not a score"),
        (_progress("elapsed", math.nan), r"progress\.elapsed is nan, not a number of seconds"),
        (_progress("extra", 1), "progress has an unknown key 'extra'"),
        (lambda ck: ck["progress"].pop("best"), "progress lacks 'best'"),
        (_set("optimizer", {}), r"optimizer entry does not load \(not a torch optimizer's"),
        (_optimizer("param_groups", {}), r"its param_groups are not a list of groups"),
        (_set("scheduler", {"scale": 1.0, "bad": "0", "best": 0.0}), "bad is '0', not a number"),
        (_set("scheduler", [1]), "its scheduler entry does not load"),
        (_set("rng_ranks", [{"torch": 1}]), "its rng_ranks entry does not load"),
        (_set("meters", "x"), r"its meters entry does not load \(not a list of sums\)"),
        (_set("meters", [{"loss": 1.0, "tokens": 3, "seconds": 0.5}]), "a rank's sums are not"),
    ],
)
def test_resume_from_a_broken_last_pt_is_one_line(run, tmp_path, capsys, change, words):
    """A last.pt edited by hand (or broken) is one line naming the file and the entry, and
    the run folder is left as it was."""
    out = tmp_path / "out"
    shutil.copytree(run, out)
    ck = load_checkpoint(out / "last.pt")
    change(ck)
    torch.save(ck, out / "last.pt")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    cfg = write_yaml(tmp_path / "c.yaml", tiny(train={**KEPT, "max_steps": 40}))
    err = one_line_error(capsys, "train", str(cfg), "--out", str(out), "--resume")
    assert re.search(f"last\\.pt.*{words}", err), err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_an_optimizer_state_that_does_not_fit_the_model_is_one_line(run, tmp_path, capsys):
    """Found only when the model is built, after the data work has said its lines."""
    out = tmp_path / "out"
    shutil.copytree(run, out)
    ck = load_checkpoint(out / "last.pt")
    ck["optimizer"]["param_groups"][0]["params"].pop()
    torch.save(ck, out / "last.pt")
    cfg = write_yaml(tmp_path / "c.yaml", tiny(train={**KEPT, "max_steps": 40}))
    capsys.readouterr()
    assert main(["train", str(cfg), "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert re.fullmatch(
        r"rnnkit: error: \S+last\.pt: its optimizer entry does not load \(.+\)",
        err.splitlines()[-1],
    ), err


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (_set("progress", [1]), "progress is a list, not a mapping"),
        (_progress("epoch", [1]), r"progress\.epoch is \[1\], not an integer"),
        (_progress("best", "x"), r"progress\.best is 'x', not a score"),
        (_progress("elapsed", "x"), r"progress\.elapsed is 'x', not a number of seconds"),
    ],
)
def test_info_on_a_broken_progress_entry_is_one_line(run, tmp_path, capsys, change, words):
    path = changed(run, tmp_path, "edited", change, source="last.pt")
    assert re.search(f"edited\\.pt: {words}", one_line_error(capsys, "info", str(path)))
    assert "progress" not in load_checkpoint(run / "step-30.pt")  # a file of weights only
    assert main(["info", str(run / "step-30.pt")]) == 0


def test_weights_that_are_not_finite_are_refused_when_loaded(run, tmp_path, capsys):
    """A diverged run's weights translated every sentence to <unk>s scored nan (greedy)
    or failed with an IndexError (beam search; a 500 from the server)."""

    def poison(ck: dict[str, Any]) -> None:
        w = next(k for k, v in ck["model"].items() if v.is_floating_point())
        ck["model"][w] = ck["model"][w].clone().fill_(float("nan"))

    bad = changed(run, tmp_path, "nan", poison)
    err = one_line_error(capsys, "translate", str(bad), "--input", str(run / "test.src"))
    assert "weights that are not finite numbers" in err and "use an earlier one" in err


def test_average_holds_one_checkpoint_at_a_time(run, tmp_path, monkeypatch):
    """average loaded every input before adding them up: memory grew by a checkpoint per
    input (24 step files of 62 MB: 1.86 GB). Now each is added and let go before the next."""
    import weakref

    import rnnkit.averaging as averaging

    class Held(dict):  # type: ignore[type-arg]  (a dict that can be watched)
        pass

    alive: list[int] = [0]
    seen: list[int] = []

    def load(path: Any) -> dict[str, Any]:
        seen.append(alive[0])  # checkpoints still held when the next is read
        ck = Held(load_checkpoint(path))
        alive[0] += 1
        weakref.finalize(ck, lambda: alive.__setitem__(0, alive[0] - 1))
        return ck

    monkeypatch.setattr(averaging, "load_checkpoint", load)
    paths = [run / f"step-{s}.pt" for s in (10, 20, 30)]
    mean = averaging.average_checkpoints(paths)["model"]
    assert seen == [0, 0, 0]
    states = [load_checkpoint(p)["model"] for p in paths]
    for k, v in mean.items():
        if v.is_floating_point():
            want = sum(s[k].double() for s in states) / 3
            assert torch.allclose(v.double(), want, atol=1e-6), k


def test_a_tasks_run_saved_with_dev_size_resumes_without_it(run, tmp_path, capsys):
    """data.dev_size beside data.task is now refused (it was ignored); a run an older
    rnnkit saved so resumes with the key removed (a task generates its dev set)."""
    out = tmp_path / "out"
    shutil.copytree(run, out)
    ck = load_checkpoint(out / "last.pt")
    ck["config"]["data"]["dev_size"] = 5  # as an older rnnkit let it be saved
    torch.save(ck, out / "last.pt")
    cfg = write_yaml(tmp_path / "c.yaml", tiny(train={**KEPT, "max_steps": 40}))
    assert main(["train", str(cfg), "--out", str(out), "--resume"]) == 0
    assert load_checkpoint(out / "last.pt")["progress"]["step"] == 40


def test_resume_with_another_config_names_what_changed(run, tmp_path):
    """It said only 'the config differs from the one in last.pt'."""
    out = tmp_path / "out"
    shutil.copytree(run, out)
    lines: list[str] = []
    train(
        config_from_dict(tiny(train={**KEPT, "max_steps": 40})), out, resume=True, log=lines.append
    )
    said = [line for line in lines if line.startswith("note: the config differs")]
    assert said == [
        "note: the config differs from last.pt's (train.max_steps 30 → 40); using the given one"
    ]


def test_a_run_folder_given_as_a_checkpoint_points_to_its_best_pt(run, tmp_path, capsys):
    err = one_line_error(capsys, "info", str(run))
    hint = f"(give a checkpoint in it: {run / 'best.pt'})"
    assert err == f"rnnkit: error: {run}: is a folder, not a checkpoint {hint}\n"
    assert "is a folder, not a checkpoint\n" in one_line_error(capsys, "info", str(tmp_path))
