"""Training end to end on tiny configs: checkpoints, resume after SIGKILL and Ctrl-C,
early stopping, learning-rate schedules, length filtering, the demo config."""

from __future__ import annotations

import csv
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from toy import reaped

import rnnkit.update as update_module
from rnnkit.checkpoint import CheckpointError, average_checkpoints, load_bundle, load_checkpoint
from rnnkit.cli import main
from rnnkit.config import config_from_dict, config_to_dict, load_config
from rnnkit.demo import demo_config
from rnnkit.evaluate import score
from rnnkit.optim import Schedule
from rnnkit.train import kept_checkpoints, load_pairs, train
from rnnkit.translate import translate_lines

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """These models are tiny: two threads on a busy two-core machine mostly wait for
    each other (ten times slower), and one thread in every process keeps the in-process
    and subprocess runs of the resume test on the same kernels."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(**sections: dict[str, Any]) -> dict[str, Any]:
    """A config dict for a model of a few thousand parameters on the copy task;
    ``sections`` update the defaults section by section."""
    d: dict[str, Any] = {
        "data": {
            "task": "copy",
            "task_size": 300,
            "task_dev": 20,
            "task_test": 20,
            "tokenizer": "word",
        },
        "model": {"emb_size": 16, "hidden_size": 16, "dropout": 0.2, "emb_dropout": 0.1},
        "train": {
            "batch_size": 16,
            "lr": 0.01,
            "max_steps": 30,
            "validate_every": 15,
            "checkpoint_every": 10,
            "log_every": 5,
            "patience": 0,
            "device": "cpu",
        },
        "decode": {"beam_size": 1, "batch_size": 32, "max_len_a": 1.0, "max_len_b": 3},
    }
    for name, body in sections.items():
        d[name] = {**d[name], **body}
    return d


def write_yaml(path: Path, d: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(d), encoding="utf-8")
    return path


def read_log(out: Path) -> list[dict[str, str]]:
    with open(out / "log.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def progress_step(path: Path) -> int:
    """The step recorded in a checkpoint (-1 when it does not exist yet)."""
    try:
        return int(torch.load(path, weights_only=False)["progress"]["step"])
    except FileNotFoundError:
        return -1


def assert_same_parameters(a: Path, b: Path) -> None:
    pa, pb = load_checkpoint(a)["model"], load_checkpoint(b)["model"]
    assert pa.keys() == pb.keys()
    different = [k for k in pa if not torch.equal(pa[k], pb[k])]
    assert not different, f"parameters differ: {different}"


def subprocess_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


# ---------------------------------------------------------------- end to end


def test_train_checkpoint_translate_evaluate(tmp_path):
    cfg = config_from_dict(tiny())
    lines: list[str] = []
    result = train(cfg, tmp_path, log=lines.append)

    assert (result.steps, result.stopped) == (30, "max_steps")
    assert (tmp_path / "best.pt").is_file() and (tmp_path / "last.pt").is_file()
    assert load_checkpoint(tmp_path / "last.pt")["progress"]["step"] == 30
    assert any(line.startswith("stopped (max_steps) after 30 steps") for line in lines)

    log = read_log(tmp_path)
    train_rows = [r for r in log if r["split"] == "train"]
    dev_rows = [r for r in log if r["split"] == "dev"]
    assert [int(r["step"]) for r in train_rows] == [5, 10, 15, 20, 25, 30]
    assert [int(r["step"]) for r in dev_rows] == [15, 30]
    assert all(math.isfinite(float(r["loss"])) for r in log)
    assert all(0 <= float(r["bleu"]) <= 100 for r in dev_rows)
    # lr 0.01 on copy: the loss falls within 30 steps
    assert float(train_rows[-1]["loss"]) < float(train_rows[0]["loss"])

    bundle = load_bundle(tmp_path / "best.pt")
    assert bundle.step in (15, 30)
    test = load_pairs(cfg)["test"]
    sources = [s for s, _ in test]
    out = translate_lines(bundle, [*sources, ""])
    assert len(out) == len(sources) + 1 and out[-1][0].text == ""
    hyps = [r[0].text for r in out[:-1]]
    scores = score(hyps, [t for _, t in test])
    assert 0 <= scores["bleu"] <= 100 and 0 <= scores["chrf"] <= 100
    assert scores["bleu_signature"].startswith("nrefs:1") and scores["n"] == len(test)


# ---------------------------------------------------------------- resume


def test_resume_after_sigkill_equals_uninterrupted_run(tmp_path):
    """Run A trains 40 steps straight through; run B (same config, a real process) is
    SIGKILLed after its checkpoint at step ≥ 10 and resumed. Dropout is on, 40 steps
    span three epochs and a validation (plateau scheduler): parameters, optimizer,
    scheduler, RNG states and data position must all be restored exactly."""
    cfg_path = write_yaml(
        tmp_path / "cfg.yaml",
        tiny(train={"max_steps": 40, "checkpoint_every": 5, "validate_every": 20}),
    )
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["train", str(cfg_path), "--out", str(a)]) == 0

    proc = subprocess.Popen(
        [sys.executable, "-m", "rnnkit.cli", "train", str(cfg_path), "--out", str(b)],
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    killed_at = -1
    try:
        deadline = time.monotonic() + 240  # (a loaded machine is slow to start)
        while proc.poll() is None and time.monotonic() < deadline:
            killed_at = progress_step(b / "last.pt")
            if killed_at >= 10:
                proc.kill()  # SIGKILL: no handler runs, no final checkpoint
                break
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            proc.kill()
        _, err = proc.communicate(timeout=30)
    if proc.returncode != -signal.SIGKILL:  # finished before the kill: resume must be a no-op
        assert proc.returncode == 0, err.decode(errors="replace")
    assert progress_step(b / "last.pt") >= 10

    assert main(["train", str(cfg_path), "--out", str(b), "--resume"]) == 0
    assert progress_step(b / "last.pt") == 40
    assert_same_parameters(a / "last.pt", b / "last.pt")


def test_resume_of_a_finished_run_trains_no_further(tmp_path):
    cfg = config_from_dict(tiny(train={"max_steps": 12, "validate_every": 6}))
    train(cfg, tmp_path / "a")
    train(cfg, tmp_path / "b")
    result = train(cfg, tmp_path / "b", resume=True)
    assert (result.steps, result.stopped) == (12, "max_steps")
    assert_same_parameters(tmp_path / "a" / "last.pt", tmp_path / "b" / "last.pt")


def interrupt_at(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    """Raise KeyboardInterrupt inside training step ``step`` (after its forward pass has
    drawn dropout masks, before the update), as a Ctrl-C would."""
    calls = {"n": 0}
    loss = update_module.token_loss

    def token_loss(*args: Any, **kw: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == step:
            raise KeyboardInterrupt
        return loss(*args, **kw)

    monkeypatch.setattr(update_module, "token_loss", token_loss)


def test_ctrl_c_saves_last_checkpoint_and_resumes_exactly(tmp_path, monkeypatch):
    d = tiny(train={"max_steps": 14, "validate_every": 100, "checkpoint_every": 100})
    cfg_path = write_yaml(tmp_path / "cfg.yaml", d)
    a, b = tmp_path / "a", tmp_path / "b"
    train(config_from_dict(d), a)

    with monkeypatch.context() as m:
        interrupt_at(m, 8)
        lines: list[str] = []
        result = train(config_from_dict(d), b, log=lines.append)
    assert (result.steps, result.stopped) == (7, "interrupted")
    progress = load_checkpoint(b / "last.pt")["progress"]
    assert (progress["step"], progress["epoch"], progress["pos"]) == (7, 0, 7)
    assert any(line.startswith("interrupted at step 7") for line in lines)
    assert lines[-1].startswith("stopped (interrupted) after 7 steps; no validation yet")

    with monkeypatch.context() as m:  # the CLI reports an interruption with status 130
        interrupt_at(m, 2)
        assert main(["train", str(cfg_path), "--out", str(b), "--resume"]) == 130
    assert progress_step(b / "last.pt") == 8
    assert progress_step(b / "best.pt") == 8  # still no validation: the weights at the stop

    assert main(["train", str(cfg_path), "--out", str(b), "--resume"]) == 0
    assert progress_step(b / "last.pt") == 14
    assert_same_parameters(a / "last.pt", b / "last.pt")


def test_a_second_ctrl_c_does_not_cut_the_last_save_short(tmp_path, monkeypatch):
    """Two quick Ctrl-C (a habit) lost the steps since the last checkpoint: the second one
    broke off writing last.pt."""
    import rnnkit.run_state as run_state

    save = run_state.save_checkpoint

    def ctrl_c_while_saving(path: Path, payload: dict[str, Any]) -> None:
        os.kill(os.getpid(), signal.SIGINT)  # the second Ctrl-C
        save(path, payload)

    d = tiny(train={"max_steps": 14, "validate_every": 100, "checkpoint_every": 100})
    interrupt_at(monkeypatch, 6)
    monkeypatch.setattr(run_state, "save_checkpoint", ctrl_c_while_saving)
    try:
        result = train(config_from_dict(d), tmp_path)
    except KeyboardInterrupt:
        pytest.fail("the second Ctrl-C broke off saving last.pt")
    assert (result.steps, result.stopped) == (5, "interrupted")
    assert progress_step(tmp_path / "last.pt") == 5
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # as it was


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_sigint_or_sigterm_to_cli_saves_and_exits_without_traceback(tmp_path, sig, status):
    """SIGTERM (SLURM preemption, docker stop, timeout) ended the run at once, without
    saving: the steps since the last checkpoint were lost. It now saves as Ctrl-C does."""
    cfg_path = write_yaml(
        tmp_path / "cfg.yaml",
        tiny(train={"max_steps": 0, "max_epochs": 1000, "checkpoint_every": 5}),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "rnnkit.cli", "train", str(cfg_path), "--out", str(tmp_path)],
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    with reaped(proc):  # (a generous wait: a loaded 2-core machine took over 60 s to reach step 5)
        deadline = time.monotonic() + 240
        while progress_step(tmp_path / "last.pt") < 5:
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "training did not reach step 5 within 240 s"
            time.sleep(0.02)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == status, err
    assert "Traceback" not in err
    said = [line for line in err.splitlines() if line.startswith("interrupted at step ")]
    assert len(said) == 1, err
    step = int(said[0].split()[3].rstrip(":"))
    assert step >= 5 and progress_step(tmp_path / "last.pt") == step


# ---------------------------------------------------------------- kept and averaged checkpoints


def test_keep_checkpoints_keeps_the_last_n_and_average_is_their_mean(tmp_path, capsys):
    cfg = config_from_dict(tiny(train={"keep_checkpoints": 2, "max_steps": 25}))
    train(cfg, tmp_path, log=lambda _: None)
    kept = kept_checkpoints(tmp_path)
    # checkpoints at 10 and 20, and the final step 25: the two latest stay
    assert [p.name for p in kept] == ["step-20.pt", "step-25.pt"]
    assert not (tmp_path / "step-10.pt").exists()
    step20, step25 = (load_checkpoint(p) for p in kept)
    assert "optimizer" not in step25 and step25["step"] == 25
    last = load_checkpoint(tmp_path / "last.pt")["model"]
    assert all(torch.equal(step25["model"][k], last[k]) for k in last)
    assert any(not torch.equal(step20["model"][k], last[k]) for k in last)

    out = tmp_path / "avg.pt"
    assert main(["average", *map(str, kept), "--out", str(out)]) == 0
    assert "averaged 2 checkpoints (steps 20, 25)" in capsys.readouterr().err
    avg = load_checkpoint(out)
    assert avg["averaged"] == [20, 25] and avg["step"] == 25
    for k, w in avg["model"].items():
        torch.testing.assert_close(w, (step20["model"][k] + step25["model"][k]) / 2)
    bundle = load_bundle(out)
    sources = [s for s, _ in load_pairs(cfg)["test"]][:3]
    assert len(translate_lines(bundle, sources)) == 3

    # one checkpoint averages to itself, exactly
    one = average_checkpoints([kept[-1]])
    assert all(torch.equal(one["model"][k], last[k]) for k in last)


def test_average_refuses_checkpoints_of_different_models(tmp_path, capsys):
    cfg = config_from_dict(tiny(train={"keep_checkpoints": 1, "max_steps": 10}))
    train(cfg, tmp_path, log=lambda _: None)
    good = tmp_path / "step-10.pt"
    ck = load_checkpoint(good)
    ck["tgt_vocab"] = {**ck["tgt_vocab"], "tokens": list(reversed(ck["tgt_vocab"]["tokens"]))}
    torch.save(ck, tmp_path / "other_vocab.pt")
    ck = load_checkpoint(good)
    ck["model"] = {k: v[..., :1] if v.dim() else v for k, v in ck["model"].items()}
    torch.save(ck, tmp_path / "other_shape.pt")

    ck = load_checkpoint(good)
    ck["config"]["train"]["seed"] = 2  # another run of the same config
    torch.save(ck, tmp_path / "other_run.pt")
    with pytest.raises(CheckpointError, match=r"other_run\.pt: from another run .* ensemble"):
        average_checkpoints([good, tmp_path / "other_run.pt"])
    ck["config"]["train"]["init_from"] = "parent.pt"  # both fine-tuned from one parent
    torch.save(ck, tmp_path / "other_run.pt")
    ck = load_checkpoint(good)
    ck["config"]["train"]["init_from"] = "parent.pt"
    torch.save(ck, tmp_path / "same_parent.pt")
    assert average_checkpoints([tmp_path / "same_parent.pt", tmp_path / "other_run.pt"])["model"]
    with pytest.raises(CheckpointError, match=r"other_vocab\.pt: tgt_vocab differs"):
        average_checkpoints([good, tmp_path / "other_vocab.pt"])
    with pytest.raises(CheckpointError, match=r"weights differ in shape from .*other_shape\.pt's"):
        average_checkpoints([tmp_path / "other_shape.pt", good])
    out = tmp_path / "avg.pt"
    assert main(["average", str(good), str(tmp_path / "missing.pt"), "--out", str(out)]) != 0
    err = capsys.readouterr().err
    assert "missing.pt: checkpoint not found" in err and "Traceback" not in err
    assert not out.exists()


# ---------------------------------------------------------------- stopping, schedules


def test_early_stopping_when_dev_bleu_cannot_improve(tmp_path):
    # lr 1e-9: the translations, hence dev BLEU, never change; the first validation
    # sets the best and `patience` more end the run
    cfg = config_from_dict(
        tiny(
            train={
                "lr": 1e-9,
                "scheduler": "none",
                "min_lr": 0.0,
                "validate_every": 3,
                "patience": 2,
                "max_steps": 60,
            }
        )
    )
    result = train(cfg, tmp_path)
    assert (result.stopped, result.steps) == ("early_stopping", 9)
    assert [r["step"] for r in result.history if r["split"] == "dev"] == [3, 6, 9]
    assert load_checkpoint(tmp_path / "last.pt")["progress"]["step"] == 9
    assert load_checkpoint(tmp_path / "best.pt")["progress"]["step"] == 3


@pytest.mark.parametrize("scheduler", ["plateau", "inverse_sqrt", "none"])
def test_schedulers_and_label_smoothing_set_the_optimizer_lr(tmp_path, scheduler):
    lr, warmup = 0.01, 3
    cfg = config_from_dict(
        tiny(
            train={
                "scheduler": scheduler,
                "warmup_steps": warmup,
                "label_smoothing": 0.2,
                "max_steps": 6,
                "log_every": 1,
                "validate_every": 100,
            }
        )
    )
    result = train(cfg, tmp_path)
    rows = [r for r in result.history if r["split"] == "train"]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert all(math.isfinite(r["loss"]) and r["loss"] > 0 for r in rows)
    for r in rows:
        s = r["step"]
        if s <= warmup:
            expected = lr * s / warmup
        elif scheduler == "inverse_sqrt":
            expected = lr * math.sqrt(warmup / s)
        else:
            expected = lr
        assert r["lr"] == pytest.approx(expected, rel=1e-12)


def schedule(**train_cfg: Any) -> tuple[Schedule, torch.optim.Optimizer]:
    cfg = config_from_dict({"train": train_cfg})
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    return Schedule(cfg, opt), opt


def test_inverse_sqrt_warms_up_linearly_then_decays():
    sched, opt = schedule(scheduler="inverse_sqrt", lr=0.01, warmup_steps=4)
    lrs = [sched.set(s) for s in range(1, 17)]
    assert lrs[0] == pytest.approx(0.01 / 4)  # step 1: lr / warmup
    assert all(x < y for x, y in zip(lrs[:4], lrs[1:4]))  # grows during warm-up
    assert lrs[3] == pytest.approx(0.01)  # peak at the end of warm-up
    assert all(x > y for x, y in zip(lrs[3:], lrs[4:]))  # then falls as 1/sqrt(step)
    assert lrs[15] == pytest.approx(0.01 * math.sqrt(4 / 16))
    assert opt.param_groups[0]["lr"] == lrs[-1]


def test_plateau_decays_after_lr_patience_validations_without_gain():
    sched, _ = schedule(scheduler="plateau", lr=0.01, lr_patience=2, decay_factor=0.5, min_lr=0.002)
    sched.validated(10.0)  # first validation: a gain
    sched.validated(10.0)  # no gain (equal is not better): 1
    sched.validated(9.0)  # 2: still within patience, as torch's ReduceLROnPlateau
    assert sched.lr(100) == pytest.approx(0.01)
    sched.validated(9.5)  # 3 > lr_patience: halve
    assert sched.lr(100) == pytest.approx(0.005)
    sched.validated(11.0)  # a gain resets the count
    for _ in range(2):
        sched.validated(1.0)
    assert sched.lr(100) == pytest.approx(0.005)
    sched.validated(1.0)
    assert sched.lr(100) == pytest.approx(0.0025)
    for _ in range(3):
        sched.validated(1.0)
    assert sched.lr(100) == pytest.approx(0.002)  # never below min_lr

    restored, _ = schedule(scheduler="plateau", lr=0.01, lr_patience=2, min_lr=0.002)
    restored.load_state_dict(sched.state_dict())
    assert restored.state_dict() == sched.state_dict()


def test_other_schedulers_ignore_validation():
    for name in ("inverse_sqrt", "none"):
        sched, _ = schedule(scheduler=name, lr=0.01, lr_patience=0)
        before = sched.lr(50)
        for bleu in (5.0, 1.0, 0.0):
            sched.validated(bleu)
        assert sched.lr(50) == before


# ---------------------------------------------------------------- data


def test_over_long_and_empty_pairs_are_filtered_and_counted(tmp_path):
    short = [(f"w{i} w{i + 1}", f"v{i} v{i + 1} v{i + 2}") for i in range(30)]
    long_src = [(" ".join(f"s{j}" for j in range(6 + i)), "v1 v2") for i in range(3)]
    long_tgt = [("w1 w2", " ".join(f"t{j}" for j in range(6 + i))) for i in range(2)]
    empty = [("", "v1"), ("w1", " ")]
    edge = [(" ".join(["w1"] * 5), " ".join(["v1"] * 5))]  # exactly max_len: kept
    pairs = short[:10] + long_src + short[10:20] + empty + long_tgt + edge + short[20:]
    for prefix, rows in (("train", pairs), ("dev", short[:4])):
        for side, k in (("src", 0), ("tgt", 1)):
            text = "".join(p[k] + "\n" for p in rows)
            (tmp_path / f"{prefix}.{side}").write_text(text, encoding="utf-8")
    d = tiny(train={"max_steps": 1})
    d["data"] = {"train": "train", "dev": "dev", "tokenizer": "word", "max_len": 5}
    lines: list[str] = []
    train(config_from_dict(d), tmp_path / "out", config_dir=tmp_path, log=lines.append)
    assert "filtered 7 training pairs longer than 5 tokens or empty" in lines
    assert any("; 31 training pairs;" in line for line in lines), lines


# ---------------------------------------------------------------- demo


def test_demo_config_equals_configs_dates_yaml():
    from_file = load_config(ROOT / "configs" / "dates.yaml")
    assert config_to_dict(demo_config()) == config_to_dict(from_file)


def test_tokens_per_second_leave_validation_time_out(tmp_path, monkeypatch):
    """The log row after each validation showed about half the training speed: the
    validation's time counted as training time."""
    import rnnkit.train as train_module

    real = train_module.Trainer.validate

    def slow_validate(self):  # type: ignore[no-untyped-def]
        time.sleep(1.0)  # many times the training time between two log rows
        return real(self)

    monkeypatch.setattr(train_module.Trainer, "validate", slow_validate)
    d = tiny(train={"max_steps": 30, "validate_every": 10, "log_every": 5})
    train(config_from_dict(d), tmp_path)
    rows = [r for r in read_log(tmp_path) if r["split"] == "train"]
    speed = {int(r["step"]): float(r["tokens_per_s"]) for r in rows}
    after = [speed[s] for s in (15, 25)]  # the rows whose interval held a validation
    others = sorted(speed[s] for s in (5, 10, 20, 30))
    assert min(after) > 0.3 * others[len(others) // 2], speed


def test_the_first_validation_is_announced_once(tmp_path):
    """Piped (no bar), a run said nothing from its start to its first log line and then
    through the first validation: a minute of silence on Multi30k looked like a hang."""
    lines: list[str] = []
    train(config_from_dict(tiny()), tmp_path, log=lines.append)  # validations at 15, 30
    said = [x for x in lines if x.startswith("validating:")]
    assert said == ["validating: translating the 20 dev sentences (greedy)"]
    assert lines.index(said[0]) < next(i for i, x in enumerate(lines) if x.startswith("dev step"))
