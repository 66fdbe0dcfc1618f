"""Typed config: defaults, YAML round trip, --set overrides, one-line error messages."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from rnnkit.config import (
    TASK_NAMES,
    Config,
    ConfigError,
    DataConfig,
    DecodeConfig,
    ModelConfig,
    TrainConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    dump_config,
    load_config,
    resolve_data_path,
    validate_config,
)


def write(tmp_path: Path, text: str, name: str = "x.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(call, *args, **kw) -> str:
    with pytest.raises(ConfigError) as info:
        call(*args, **kw)
    message = str(info.value)
    assert "\n" not in message, message
    return message


# ---------------------------------------------------------------- defaults, round trip


def test_defaults_load():
    cfg = load_config(None)
    assert cfg == Config()
    assert cfg.model.cell == "gru" and cfg.model.attention == "bahdanau"
    assert cfg.train.lr == 1e-3 and cfg.train.batch_size is None
    assert cfg.decode.beam_size == 5 and cfg.data.task is None and cfg.data.task_options == {}


def test_empty_file_and_empty_section_give_defaults(tmp_path):
    assert load_config(write(tmp_path, "")) == Config()
    assert load_config(write(tmp_path, "model:\n")) == Config()


def test_file_values_and_partial_sections(tmp_path):
    path = write(tmp_path, "model:\n  cell: lstm\n  hidden_size: 64\ntrain:\n  lr: 5.0e-4\n")
    cfg = load_config(path)
    assert cfg.model.cell == "lstm" and cfg.model.hidden_size == 64
    assert cfg.model.emb_size == ModelConfig().emb_size
    assert cfg.train.lr == 5e-4 and cfg.decode == DecodeConfig()


def test_yaml_round_trip(tmp_path):
    cfg = load_config(
        None,
        [
            "data.task=dates",
            "data.task_options={long: true, max_filler: 3}",
            "model.cell=lstm",
            "train.batch_size=32",
            "decode.beam_size=1",
        ],
    )
    d = config_to_dict(cfg)
    assert config_from_dict(d) == cfg
    assert config_from_dict(yaml.safe_load(dump_config(cfg))) == cfg
    assert load_config(write(tmp_path, dump_config(cfg))) == cfg
    assert load_config(write(tmp_path, dump_config(Config()))) == Config()


def test_to_dict_is_plain():
    d = config_to_dict(Config())
    assert list(d) == ["data", "model", "train", "decode"]
    assert all(type(v) is dict for v in d.values())
    assert yaml.safe_load(yaml.safe_dump(d)) == d


def test_task_names_match_data_tasks():
    from rnnkit.data.tasks import TASKS

    assert set(TASK_NAMES) == set(TASKS)


def test_cell_names_match_the_cells():
    from rnnkit.cells.names import CELLS
    from rnnkit.config_schema import CELL_NAMES

    assert set(CELL_NAMES) == set(CELLS)


# ---------------------------------------------------------------- overrides


def test_overrides_of_each_type(tmp_path):
    path = write(tmp_path, "train:\n  max_steps: 10\n")
    cfg = load_config(
        path,
        [
            "train.max_steps=100",  # int
            "train.lr=2e-4",  # float in exponent form (YAML 1.1 reads it as a string)
            "train.clip=5",  # int given to a float field
            "model.bidirectional=false",  # bool
            "model.attention=none",  # str with choices
            "data.train=corpora/train",  # str | None
            "data.task_options={long: true}",  # dict
            "train.batch_size=16",  # int | None
        ],
    )
    assert cfg.train.max_steps == 100
    assert cfg.train.lr == 2e-4 and isinstance(cfg.train.lr, float)
    assert cfg.train.clip == 5.0 and isinstance(cfg.train.clip, float)
    assert cfg.model.bidirectional is False
    assert cfg.model.attention == "none"
    assert cfg.data.train == "corpora/train"
    assert cfg.data.task_options == {"long": True}
    assert cfg.train.batch_size == 16


def test_overrides_apply_in_order_and_leave_input_alone():
    base = Config()
    cfg = apply_overrides(base, ["model.hidden_size=8", "model.hidden_size=16"])
    assert cfg.model.hidden_size == 16 and base.model.hidden_size == 256


def test_override_one_mapping_entry():
    cfg = load_config(None, ["data.task_options={long: true}", "data.task_options.max_filler=3"])
    assert cfg.data.task_options == {"long": True, "max_filler": 3}


def test_none_able_fields(tmp_path):
    cfg = load_config(None, ["data.task=dates", "train.batch_size=8"])
    cfg = apply_overrides(cfg, ["data.task=null", "train.batch_size=", "data.sp_model=~"])
    assert cfg.data.task is None and cfg.train.batch_size is None and cfg.data.sp_model is None
    path = write(tmp_path, "data:\n  task: null\n  data_dir: null\n")
    assert load_config(path).data.data_dir is None


def test_choices():
    for cell in ("rnn", "lstm", "gru"):
        assert load_config(None, [f"model.cell={cell}"]).model.cell == cell
    for score in ("dot", "general", "concat"):
        assert load_config(None, [f"model.luong_score={score}"]).model.luong_score == score
    for device in ("auto", "cpu", "cuda", "cuda:1", "mps"):
        assert load_config(None, [f"train.device={device}"]).train.device == device
    for task in TASK_NAMES:
        assert load_config(None, [f"data.task={task}"]).data.task == task


def test_dataclasses_validate_on_construction():
    assert TrainConfig(lr=1).lr == 1.0
    with pytest.raises(ConfigError, match="model.cell"):
        ModelConfig(cell="transformer")
    with pytest.raises(ConfigError, match="data.vocab_size"):
        DataConfig(vocab_size=0)
    cfg = Config()
    cfg.decode.beam_size = 0
    with pytest.raises(ConfigError, match="decode.beam_size"):
        validate_config(cfg)
    with pytest.raises(ConfigError, match="model.dropout"):
        dataclasses.replace(ModelConfig(), dropout=1.0)


# ---------------------------------------------------------------- errors


def test_unknown_key_suggests(tmp_path):
    path = write(tmp_path, "model:\n  hiden_size: 64\n")
    msg = error_of(load_config, path)
    assert msg == f"{path}: unknown key 'model.hiden_size' (did you mean 'hidden_size'?)"


def test_unknown_key_in_the_wrong_section(tmp_path):
    msg = error_of(load_config, write(tmp_path, "model:\n  batch_size: 8\n"))
    assert "'model.batch_size'" in msg and "'train.batch_size'" in msg


def test_unknown_key_without_a_close_match_lists_keys(tmp_path):
    msg = error_of(load_config, write(tmp_path, "decode:\n  zzz: 1\n"))
    assert "'decode.zzz'" in msg and "beam_size" in msg


def test_wrong_type(tmp_path):
    path = write(tmp_path, "model:\n  hidden_size: big\n")
    assert error_of(load_config, path) == f"{path}: model.hidden_size must be an int, got 'big'"


@pytest.mark.parametrize(
    ("yaml_text", "key"),
    [
        ("model:\n  hidden_size: true\n", "model.hidden_size"),  # a bool is not an int
        ("model:\n  hidden_size: 2.0\n", "model.hidden_size"),
        ("model:\n  bidirectional: 1\n", "model.bidirectional"),  # an int is not a bool
        ("train:\n  lr: fast\n", "train.lr"),
        ("train:\n  lr: .inf\n", "train.lr"),
        ("data:\n  src: 7\n", "data.src"),
        ("data:\n  task_options: [1, 2]\n", "data.task_options"),
        ("train:\n  batch_size: many\n", "train.batch_size"),
    ],
)
def test_wrong_types(tmp_path, yaml_text, key):
    path = write(tmp_path, yaml_text)
    msg = error_of(load_config, path)
    assert msg.startswith(f"{path}: {key} must be ")


def test_bad_choice(tmp_path):
    path = write(tmp_path, "model:\n  cell: transformer\n")
    msg = error_of(load_config, path)
    assert msg == (
        f"{path}: model.cell must be one of rnn, lstm, gru, layernorm_lstm, layernorm_gru, "
        "peephole_lstm, cifg_lstm, mgu, indrnn, or module:Class (a custom rnnkit.Cell); "
        "got 'transformer'"
    )
    assert "train.device" in error_of(load_config, None, ["train.device=gpu"])
    assert "data.task" in error_of(load_config, None, ["data.task=parity"])


@pytest.mark.parametrize(
    "override",
    [
        "model.hidden_size=0",
        "model.dropout=1.0",
        "model.dropout=-0.1",
        "train.lr=0",
        "train.label_smoothing=1",
        "train.teacher_forcing=1.5",
        "decode.beam_size=0",
        "data.vocab_size=-5",
        "train.batch_size=0",
        "data.src=''",
    ],
)
def test_ranges(override):
    key = override.split("=")[0]
    msg = error_of(load_config, None, [override])
    assert msg.startswith(f"--set {override}: {key} must ")


def test_cross_field_checks(tmp_path):
    path = write(tmp_path, "decode:\n  max_len_a: 0\n  max_len_b: 0\n")
    msg = error_of(load_config, path)
    assert str(path) in msg and "decode.max_len_a" in msg
    msg = error_of(load_config, None, ["train.min_lr=0.1"])
    assert "train.min_lr" in msg and "--set train.min_lr=0.1" in msg


def test_override_errors_name_the_override():
    assert error_of(load_config, None, ["train.lr=abc"]) == (
        "--set train.lr=abc: train.lr must be a float, got 'abc'"
    )
    assert "--set foo" in error_of(load_config, None, ["foo"])
    msg = error_of(load_config, None, ["lr=0.1"])
    assert "--set lr=0.1" in msg and "train.lr=0.1" in msg
    assert "unknown section 'modle'" in error_of(load_config, None, ["modle.cell=gru"])
    msg = error_of(load_config, None, ["model.hiden_size=3"])
    assert "'model.hiden_size'" in msg and "hidden_size" in msg
    assert "not valid YAML" in error_of(load_config, None, ["data.task_options={a: [}"])
    assert "not a mapping" in error_of(load_config, None, ["model.cell.x=1"])


def test_invalid_yaml(tmp_path):
    path = write(tmp_path, "model:\n  cell: gru\n  hidden_size: [64\ntrain:\n  lr: 1\n")
    msg = error_of(load_config, path)
    assert msg.startswith(f"{path}: not valid YAML (line ")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("010", 10),  # YAML 1.1: octal 8
        ("08", 8),  # YAML 1.1: the string '08'
        ("0o17", 15),
        ("0x1f", 31),
        ("-0b101", -5),
        ("1_000", 1000),
        ("+7", 7),
        ("1e-3", 0.001),  # YAML 1.1: the string '1e-3'
        ("1E3", 1000.0),
        ("-.5e+1", -5.0),
        ("2.", 2.0),
        (".inf", float("inf")),
        ("1:30", "1:30"),  # YAML 1.1: sexagesimal 90
        ("1:30.5", "1:30.5"),
        ("0o9", "0o9"),
        ("1e", "1e"),
        ("'010'", "010"),
        ("0o_", "0o_"),  # (int("") raised: a traceback)
        ("0x_", "0x_"),
        ("0b_", "0b_"),
    ],
)
def test_yaml_numbers_as_yaml_1_2(tmp_path, text, value):
    """Config values read as YAML 1.2 numbers (PyYAML alone reads YAML 1.1)."""
    from rnnkit.config_checks import _parse_yaml

    got = _parse_yaml(f"a: {text}\nb: [{text}]\n", "x.yaml")
    assert got == {"a": value, "b": [value]} and type(got["a"]) is type(value)


def test_a_dumped_config_reads_back_as_it_was(tmp_path):
    """PyYAML's dumper wrote the string "1e3" bare, which our reader takes for a float:
    info --config of a run with data.src "1e3" could not train again."""
    from rnnkit.config_checks import _parse_yaml, dump_yaml

    data = {"s": "1e3", "o": "010", "x": "0o7", "y": "yes", "f": 1e-05, "i": 7, "t": "1:30"}
    assert _parse_yaml(dump_yaml(data), "x") == data
    path = write(tmp_path, dump_config(load_config(None, ['data.src="1e3"'])))
    assert load_config(path).data.src == "1e3"


def test_yaml_numbers_reach_the_config(tmp_path):
    path = write(tmp_path, "train:\n  max_steps: 010\n  lr: 5e-4\n")
    cfg = load_config(path)
    assert cfg.train.max_steps == 10 and cfg.train.lr == 5e-4
    msg = error_of(load_config, path, ["train.max_steps=1e5"])
    assert "train.max_steps must be an int, got 100000.0" in msg and ": 100000)" in msg
    assert "must be an int, got '1:30'" in error_of(load_config, path, ["train.max_steps=1:30"])
    # out of range anyway: that is what is said, not how to write a number it refuses
    msg = error_of(load_config, path, ["train.seed=1e19"])
    assert "train.seed must be >= 0 and <= 9223372036854775807, got 10000000000000000000" in msg


def test_duplicate_key(tmp_path):
    path = write(tmp_path, "model:\n  cell: gru\n  cell: lstm\n")
    msg = error_of(load_config, path)
    assert str(path) in msg and "duplicate key 'cell'" in msg and "line 3" in msg


def test_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    assert error_of(load_config, path) == f"{path}: config file not found"
    assert "directory" in error_of(load_config, tmp_path)


def test_top_level_not_a_mapping(tmp_path):
    path = write(tmp_path, "- model\n- train\n")
    msg = error_of(load_config, path)
    assert msg.startswith(f"{path}: top level must be a mapping") and "list" in msg
    assert "top level" in error_of(config_from_dict, "model")


def test_section_not_a_mapping(tmp_path):
    path = write(tmp_path, "model: lstm\n")
    assert error_of(load_config, path) == f"{path}: section 'model' must be a mapping, got str"


def test_unknown_section(tmp_path):
    path = write(tmp_path, "modle:\n  cell: lstm\n")
    msg = error_of(load_config, path)
    assert msg == f"{path}: unknown section 'modle' (did you mean 'model'?)"
    assert "unknown section 'zzz'" in error_of(config_from_dict, {"zzz": {}}, "cfg")


def test_config_from_dict_names_its_source():
    msg = error_of(config_from_dict, {"train": {"lr": "abc"}}, source="run.yaml")
    assert msg == "run.yaml: train.lr must be a float, got 'abc'"


# ---------------------------------------------------------------- data paths


def test_resolve_data_path_precedence(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RNNKIT_DATA", raising=False)
    conf_dir = tmp_path / "configs"
    plain = DataConfig()
    with_dir = DataConfig(data_dir=str(tmp_path / "d"))
    # 4. the current directory
    assert resolve_data_path(plain, "train", None) == tmp_path / "train"
    # 3. the config's directory
    assert resolve_data_path(plain, "train", conf_dir) == conf_dir / "train"
    # 2. RNNKIT_DATA beats the config's directory
    monkeypatch.setenv("RNNKIT_DATA", str(tmp_path / "env"))
    assert resolve_data_path(plain, "m30k/train", conf_dir) == tmp_path / "env" / "m30k/train"
    # 1. data.data_dir beats RNNKIT_DATA
    assert resolve_data_path(with_dir, "train", conf_dir) == tmp_path / "d" / "train"
    # an absolute path is kept whatever is set
    absolute = tmp_path / "abs" / "train"
    assert resolve_data_path(with_dir, str(absolute), conf_dir) == absolute
    # an empty RNNKIT_DATA counts as unset
    monkeypatch.setenv("RNNKIT_DATA", "")
    assert resolve_data_path(plain, "train", conf_dir) == conf_dir / "train"


def test_rnnkit_data_sets_data_dir_with_or_without_a_file(tmp_path, monkeypatch):
    """load_config(path) recorded RNNKIT_DATA as data.data_dir, load_config(None) not."""
    monkeypatch.setenv("RNNKIT_DATA", str(tmp_path / "env"))
    path = write(tmp_path, "data: {train: t}\n")
    assert load_config(path).data.data_dir == str(tmp_path / "env")
    assert load_config(None).data.data_dir == str(tmp_path / "env")
    assert load_config(None, ["data.data_dir=x"]).data.data_dir == "x"  # --set still wins


def test_relative_data_dir_is_taken_from_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = DataConfig(data_dir="data")
    assert resolve_data_path(cfg, "train", tmp_path / "configs") == tmp_path / "data" / "train"


def test_cell_names_and_their_options():
    """The variant names and module:Class are cells; forget_bias only on the LSTM family."""
    for cell in ("layernorm_lstm", "layernorm_gru", "peephole_lstm", "cifg_lstm", "mgu", "indrnn"):
        assert load_config(None, [f"model.cell={cell}"]).model.cell == cell
    assert load_config(None, ["model.cell=my_cells:MyCell"]).model.cell == "my_cells:MyCell"
    cfg = load_config(None, ["model.cell=cifg_lstm", "model.forget_bias=1", "model.zoneout=0.1"])
    assert cfg.model.forget_bias == 1.0 and cfg.model.zoneout == 0.1
    msg = error_of(load_config, None, ["model.cell=gru", "model.forget_bias=1"])
    assert "model.forget_bias applies to the LSTM family" in msg and "model.cell=gru" in msg
    assert "model.zoneout" in error_of(load_config, None, ["model.zoneout=1.5"])
    assert "model.cell" in error_of(load_config, None, ["model.cell=my cells:X"])


def test_graphs_and_precision_keys(tmp_path):
    """train.graphs takes auto / on / off, also as YAML 1.1 reads a bare on / off (a
    bool); train.precision takes fp32 / bf16 / fp16; anything else names the key."""
    from rnnkit.config import ConfigError, config_from_dict, load_config

    path = tmp_path / "c.yaml"
    path.write_text("data: {task: dates}\ntrain: {graphs: on, precision: bf16}\n")
    cfg = load_config(path, ["train.graphs=off"])
    assert (cfg.train.graphs, cfg.train.precision) == ("off", "bf16")
    assert load_config(path).train.graphs == "on"
    with pytest.raises(ConfigError, match="train.graphs must be one of auto, on, off"):
        config_from_dict({"data": {"task": "dates"}, "train": {"graphs": "always"}})
    with pytest.raises(ConfigError, match="train.precision"):
        config_from_dict({"data": {"task": "dates"}, "train": {"precision": 16}})


def test_train_takes_one_corpus_or_a_list(tmp_path):
    one = load_config(write(tmp_path, "data:\n  train: a/train\n"))
    assert one.data.train == "a/train"
    two = load_config(write(tmp_path, "data:\n  train: [a/train, b/train, a/train]\n"))
    assert two.data.train == ["a/train", "b/train", "a/train"]
    assert load_config(write(tmp_path, dump_config(two))).data.train == two.data.train
    cfg = apply_overrides(one, ["data.train=[x, y]"])
    assert cfg.data.train == ["x", "y"] and one.data.train == "a/train"
    for text, tail in (
        ("data:\n  train: [a, 3]\n", "data.train must be a string or a list of strings or null"),
        ("data:\n  train: 3\n", "data.train must be a string or a list of strings or null"),
        ("data:\n  train: []\n", "data.train must not be an empty list"),
        ("data:\n  train: [a, ' ']\n", "data.train must not be empty"),
        ("data:\n  train: ''\n", "data.train must not be empty"),
    ):
        path = write(tmp_path, text)
        assert error_of(load_config, path).startswith(f"{path}: {tail}"), text


def test_a_vocab_size_sentencepiece_cannot_train_is_refused_by_the_config():
    """data.vocab_size 1 or 2 reached sentencepiece: 'INTERNAL: trainer_interface.cc(828)
    [insert_id(trainer_spec_.bos_id(), ...)]'; from 3 on, its error is one clear line."""
    assert "data.vocab_size must be >= 3, got 2" in error_of(
        load_config, None, ["data.vocab_size=2"]
    )
    assert load_config(None, ["data.vocab_size=3"]).data.vocab_size == 3
