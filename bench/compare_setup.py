"""The set-up of ``bench/compare_joeynmt.py``: the shared BPE model and Joey's vocabulary
files, both toolkits' configs for the common architecture, and reading numbers out of
Joey's logs and of translation files."""

from __future__ import annotations

import re
import statistics
from pathlib import Path
from typing import Any


def prepare_spm(data: Path, work: Path) -> tuple[Path, tuple[Path, Path]]:
    """One joint BPE model of 8,000 on the lowercased training text, and Joey's vocabulary
    files: for each side the pieces that occur in its segmented training text, as
    rnnkit's vocabularies hold (of the 8,000 pieces the English side uses about 4,300,
    the German side about 5,800; an output layer over all 8,000 would cost Joey ~1.3x
    the work per token for pieces it never sees)."""
    import sentencepiece as spm

    model = work / "joint8k.model"
    vocabs = (work / "joint8k.de.joey-vocab", work / "joint8k.en.joey-vocab")
    sides = {
        side: (data / f"train.{side}").read_text(encoding="utf-8").lower().splitlines()
        for side in ("de", "en")
    }
    if not model.exists():
        text = work / "train.lc.de-en"
        text.write_text("\n".join(sides["de"] + sides["en"]) + "\n", encoding="utf-8")
        spm.SentencePieceTrainer.train(
            input=str(text),
            model_prefix=str(work / "joint8k"),
            vocab_size=8000,
            model_type="bpe",
            character_coverage=1.0,
            minloglevel=2,
        )
    sp = spm.SentencePieceProcessor(model_file=str(model))
    for side, path in zip(("de", "en"), vocabs):
        pieces = [p for ids in sp.encode(sides[side], out_type=str) for p in ids]
        seen = dict.fromkeys(pieces)  # first occurrence order; Joey adds its specials
        path.write_text("".join(f"{p}\n" for p in seen if p not in ("<unk>", "<s>", "</s>")))
    return model, vocabs


def joey_config(
    data: Path,
    model: Path,
    vocab: tuple[Path, Path],
    out: Path,
    steps: int | None,
    beam: int,
    lr: float = 3e-4,
) -> dict[str, Any]:
    side = {
        "max_length": 100,
        "min_length": 1,
        "lowercase": True,
        "normalize": False,
        "level": "bpe",
        "voc_limit": 8000,
        "voc_min_freq": 1,
        "tokenizer_type": "sentencepiece",
        "tokenizer_cfg": {"model_file": str(model), "model_type": "bpe", "pretokenizer": "none"},
    }
    rnn = {"rnn_type": "gru", "hidden_size": 256, "dropout": 0.3, "num_layers": 1}
    emb = {"embedding_dim": 256, "scale": False}
    train: dict[str, Any] = {
        "optimizer": "adam",
        "learning_rate": lr,
        "learning_rate_min": 1e-6,
        "clip_grad_val": 1.0,
        "batch_size": 64,
        "batch_type": "sentence",
        "normalization": "batch",
        "scheduling": "plateau",
        "patience": 5,
        "decrease_factor": 0.5,
        "early_stopping_metric": "bleu",
        "epochs": 100,
        "logging_freq": 25 if steps else 50,
        "validation_freq": steps if steps else 250,  # a multiple of logging_freq
        "overwrite": True,
        "shuffle": True,
        "print_valid_sents": [0],
        "keep_best_ckpts": 1,
    }
    if steps:
        train["updates"] = steps
    return {
        "name": "multi30k_deen_gru",
        "joeynmt_version": "2.3.0",
        "model_dir": str(out),
        "use_cuda": False,
        "random_seed": 42,
        "data": {
            "train": str(data / "train"),
            "dev": str(data / "val"),
            "test": str(data / "test2016"),
            "dataset_type": "plain",
            "src": {"lang": "de", **side, "voc_file": str(vocab[0])},
            "trg": {"lang": "en", **side, "voc_file": str(vocab[1])},
            "special_symbols": {
                "unk_token": "<unk>",
                "unk_id": 0,
                "pad_token": "<pad>",
                "pad_id": 1,
                "bos_token": "<s>",
                "bos_id": 2,
                "eos_token": "</s>",
                "eos_id": 3,
            },
        },
        "testing": {
            "n_best": 1,
            "beam_size": beam,
            "beam_alpha": 1.0,
            "batch_size": 64,
            "batch_type": "sentence",
            "max_output_length": 100,
            "eval_metrics": ["bleu"],
            "sacrebleu_cfg": {"tokenize": "13a", "lowercase": True},
        },
        "training": train,
        "model": {
            "initializer": "xavier_uniform",
            "bias_initializer": "zeros",
            "embed_initializer": "normal",
            "embed_init_weight": 0.1,
            "tied_embeddings": False,
            "encoder": {"type": "recurrent", "embeddings": emb, "bidirectional": True, **rnn},
            "decoder": {
                "type": "recurrent",
                "embeddings": emb,
                **rnn,
                "hidden_dropout": 0.3,
                "input_feeding": True,
                "init_hidden": "bridge",
                "attention": "bahdanau",
            },
        },
    }


def joey_tokens_per_s(log: Path) -> list[float]:
    text = log.read_text(encoding="utf-8", errors="replace")
    return [float(x) for x in re.findall(r"Tokens per Sec:\s+([\d.]+)", text)]


def _last_for_split(log: Path, split: str, pattern: str, what: str) -> float:
    """The last number ``pattern`` captured while Joey's log was on ``split`` (the log,
    appended to by every run, announces "... on dev set", then reports)."""
    current, value = None, None
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        m = re.search(r" on (\w+) set", line)
        if m:
            current = m.group(1)
        m = re.search(pattern, line)
        if m and current == split:
            value = float(m.group(1))
    if value is None:
        raise SystemExit(f"{log}: no {what} for the {split} set")
    return value


def joey_updates(log: Path) -> int:
    """The last update number in Joey's training log ("Epoch  3, Step:  1200, ..." every
    logging_freq updates, "Interrupt at epoch 3, step 1234." at a Ctrl-C)."""
    text = log.read_text(encoding="utf-8", errors="replace")
    steps = re.findall(r"(?:Step:\s+|Interrupt at epoch \d+, step )(\d+)", text)
    if not steps:
        raise SystemExit(f"{log}: no training step logged")
    return int(steps[-1])


def joey_generation_s(log: Path, split: str) -> float:
    """Seconds Joey last reported for generating ``split``."""
    return _last_for_split(log, split, r"Generation took ([\d.]+)\[sec\]", "generation time")


def joey_bleu(log: Path, split: str) -> float:
    """The last BLEU Joey reported for ``split``."""
    pattern = r"Evaluation result \((?:greedy|beam search)\):?\s+bleu:\s+([\d.]+)"
    return _last_for_split(log, split, pattern, "BLEU")


def rnnkit_config(data: Path, model: Path, steps: int, lr: float = 3e-4) -> dict[str, Any]:
    return {
        "data": {
            "train": str(data / "train"),
            "dev": str(data / "val"),
            "test": str(data / "test2016"),
            "src": "de",
            "tgt": "en",
            "tokenizer": "bpe",
            "sp_model": str(model),
            "joint_vocab": True,
            "lowercase": True,
            "max_len": 100,
        },
        "model": {
            "cell": "gru",
            "emb_size": 256,
            "hidden_size": 256,
            "bidirectional": True,
            "attention": "luong",
            "luong_score": "concat",
            "bridge": "learned",
            "dropout": 0.3,
            "emb_dropout": 0.3,
        },
        "train": {
            "batch_size": 64,
            "batch_tokens": 1_000_000,  # sentences, not tokens, bound the batch (as in Joey)
            "lr": lr,
            "clip": 1.0,
            "label_smoothing": 0.0,
            "max_steps": steps,
            "max_epochs": 100,
            "log_every": 25,
            "validate_every": steps,
            "checkpoint_every": steps,
            "device": "cpu",
        },
        "decode": {"batch_size": 64, "length_penalty": 1.0, "max_len_a": 0, "max_len_b": 100},
    }


def output_quality(hyp_file: Path, ref_file: Path) -> tuple[float, float]:
    """Lowercased sacreBLEU of a translation file and its mean length in words."""
    from rnnkit.evaluate import score

    hyps = hyp_file.read_text(encoding="utf-8").splitlines()
    refs = ref_file.read_text(encoding="utf-8").splitlines()
    return score(hyps, refs, lowercase=True)["bleu"], statistics.mean(len(h.split()) for h in hyps)
