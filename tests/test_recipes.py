"""The shipped configs load and train as they are, on a small slice of the real corpora."""

from __future__ import annotations

from pathlib import Path

import pytest

from rnnkit.checkpoint import load_bundle
from rnnkit.config import load_config
from rnnkit.data import DataError
from rnnkit.prepare import prepare
from rnnkit.train import load_pairs, train
from rnnkit.translate import translate_lines

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def _slice(src: Path, dst: Path, n: int) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(src, encoding="utf-8") as f:
        lines = [next(f) for _ in range(n)]
    dst.write_text("".join(lines), encoding="utf-8")


@pytest.mark.skipif(
    not (DATA / "multi30k").is_dir(),
    reason="../shared/data/multi30k not found: the Multi30k corpus is not here",
)
@pytest.mark.parametrize(
    "config, extra",
    [
        ("multi30k_de_en.yaml", []),
        # the GPU recipe, dry-run here: static shapes on the CPU, bf16 autocast (its code
        # path, at 64 units: bf16 on a CPU took 15 s at the recipe's 512)
        (
            "multi30k_de_en_gpu.yaml",
            ["train.graphs=on", "train.max_minutes=0", "model.hidden_size=64", "model.emb_size=64"],
        ),
    ],
)
def test_multi30k_config_trains_a_few_steps_and_translates(
    tmp_path: Path, config: str, extra: list[str]
) -> None:
    for split, n in (("train", 300), ("val", 20), ("test2016", 20)):
        for lang in ("de", "en"):
            _slice(
                DATA / "multi30k" / f"{split}.{lang}", tmp_path / "multi30k" / f"{split}.{lang}", n
            )
    cfg = load_config(
        ROOT / "configs" / config,
        [
            f"data.data_dir={tmp_path}",
            "data.vocab_size=300",
            "train.max_steps=3",
            "train.validate_every=3",
            "train.batch_tokens=600",
            "decode.beam_size=2",
            *extra,
        ],
    )
    assert (cfg.data.src, cfg.data.tgt, cfg.model.attention) == ("de", "en", "bahdanau")
    assert cfg.model.bidirectional and cfg.data.tokenizer == "bpe"
    result = train(cfg, tmp_path / "run")
    assert result.steps == 3
    bundle = load_bundle(tmp_path / "run" / "best.pt")
    test = load_pairs(cfg)["test"]
    out = translate_lines(bundle, [s for s, _ in test])
    assert len(out) == len(test) == 20


@pytest.mark.skipif(
    not (DATA / "tatoeba-eng-fra").is_dir(),
    reason="../shared/data/tatoeba-eng-fra not found: the Tatoeba corpus is not here",
)
def test_tatoeba_config_reads_french_as_source(tmp_path: Path) -> None:
    _slice(
        DATA / "tatoeba-eng-fra" / "eng-fra.txt", tmp_path / "tatoeba-eng-fra" / "eng-fra.txt", 400
    )
    cfg_path = ROOT / "configs" / "tatoeba_fr_en.yaml"
    over = [f"data.data_dir={tmp_path}", "data.dev_size=20", "data.test_size=20"]
    pairs = load_pairs(load_config(cfg_path, over))
    said: list[str] = []
    eng, fra = (
        (DATA / "tatoeba-eng-fra" / "eng-fra.txt")
        .open(encoding="utf-8")
        .readline()
        .rstrip("\n")
        .split("\t")[:2]
    )
    every = pairs["train"] + pairs["dev"] + pairs["test"]
    assert (fra, eng) in every  # source = French column, target = English
    for held in ("dev", "test"):  # no source and no reference of a held-out pair trains
        assert len(pairs[held]) >= 20
        for side in (0, 1):
            assert not {p[side] for p in pairs[held]} & {p[side] for p in pairs["train"]}
    assert len(every) == 400
    # the held-out pairs are written beside the checkpoints, for `rnnkit evaluate`
    run = tmp_path / "run"
    prepare(load_config(cfg_path, [*over, "data.vocab_size=300"]), run, say=said.append)
    for split in ("dev", "test"):
        fr = (run / f"{split}.fr").read_text(encoding="utf-8").splitlines()
        en = (run / f"{split}.en").read_text(encoding="utf-8").splitlines()
        assert list(zip(fr, en, strict=True)) == pairs[split]
    assert f"held out {len(pairs['test'])} test pairs: {run}/test.fr, {run}/test.en" in said
    bad = [f"data.data_dir={tmp_path}", "data.dev=tatoeba-eng-fra/eng-fra.txt"]
    with pytest.raises(DataError, match="data.dev and data.dev_size are both given"):
        load_pairs(load_config(ROOT / "configs" / "tatoeba_fr_en.yaml", bad))


def test_test_pairs_held_out_beside_a_dev_file(tmp_path: Path) -> None:
    # test_size holds test pairs out of train even when dev comes from a file (it was ignored)
    (tmp_path / "train.tsv").write_text("".join(f"e{i}\tf{i}\n" for i in range(50)))
    (tmp_path / "dev.tsv").write_text("e dev\tf dev\n")
    over = [f"data.data_dir={tmp_path}", "data.train=train.tsv", "data.dev=dev.tsv"]
    cfg = load_config(
        ROOT / "configs" / "tatoeba_fr_en.yaml", [*over, "data.dev_size=0", "data.test_size=5"]
    )
    pairs = load_pairs(cfg)
    assert pairs["dev"] == [("f dev", "e dev")] and len(pairs["test"]) == 5
    assert len(pairs["train"]) == 45 and not set(pairs["test"]) & set(pairs["train"])
