"""The config's schema: one typed dataclass per section, and the rules across fields.

Each field declares its checks with :func:`rnnkit.config_checks._field`; a section
validates itself when built. :mod:`rnnkit.config` loads, overrides and dumps these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from rnnkit.config_checks import ConfigError, _field, _validate_fields

# The built-in tasks of rnnkit.data.tasks.TASKS, repeated so that config stays light.
TASK_NAMES = ("dates", "copy", "reverse", "sort")
# dev scores that can pick the best checkpoint; loss and ppl count lower as better
METRICS = ("bleu", "chrf", "accuracy", "loss", "ppl")
LOWER_IS_BETTER = ("loss", "ppl")
# The cells of rnnkit.cells.names.CELLS, likewise; "module:Class" names a custom rnnkit.Cell.
CELL_NAMES = (
    "rnn",
    "lstm",
    "gru",
    "layernorm_lstm",
    "layernorm_gru",
    "peephole_lstm",
    "cifg_lstm",
    "mgu",
    "indrnn",
)
CUSTOM_CELL = r"[A-Za-z_][\w.]*:[A-Za-z_]\w*"
SUFFIX = r"[A-Za-z0-9_+-][A-Za-z0-9_.+-]*"  # a file name's suffix, no path in it
SUFFIX_HELP = "a file suffix such as de or pt_BR (letters, digits, _ - + .)"


@dataclass
class DataConfig:
    """Where the sentence pairs come from and how they are tokenised."""

    section: ClassVar[str] = "data"

    # built-in synthetic task (dates, copy, reverse, sort); when set, no files are read
    task: str | None = _field(None, choices=TASK_NAMES)
    task_size: int = _field(20000, gt=0)  # training pairs generated for the task
    task_dev: int = _field(500, gt=0)  # dev pairs generated for the task
    task_test: int = _field(1000, gt=0)  # test pairs generated for the task
    task_options: dict[str, Any] = field(default_factory=dict)  # kwargs of the task generator
    data_dir: str | None = _field(
        None, nonempty=True
    )  # base directory of relative corpus paths (resolve_data_path)
    # PREFIX of PREFIX.<src> / PREFIX.<tgt>, or a TSV file; a list: the corpora concatenated
    # (a corpus listed twice counts twice: oversampling)
    train: str | list[str] | None = _field(None, nonempty=True)
    dev: str | None = _field(None, nonempty=True)  # dev corpus, given as train is
    test: str | None = _field(None, nonempty=True)  # test corpus, given as train is
    # source- and target-side file suffix (language code); it names the held-out files
    # in the run folder (dev.SRC), so no path: data.src "../x" wrote outside it
    src: str = _field("src", nonempty=True, pattern=SUFFIX, pattern_help=SUFFIX_HELP)
    tgt: str = _field("tgt", nonempty=True, pattern=SUFFIX, pattern_help=SUFFIX_HELP)
    format: str = _field("parallel", choices=("parallel", "tsv"))  # two aligned files or a TSV
    src_col: int = _field(0, ge=0)  # TSV column of the source side
    tgt_col: int = _field(1, ge=0)  # TSV column of the target side
    # without dev (/ test) files: at least this many pairs held out of train, whole groups
    # of pairs linked by a shared sentence (data.corpus.split_held_out)
    dev_size: int = _field(0, ge=0)
    test_size: int = _field(0, ge=0)
    tokenizer: str = _field("bpe", choices=("bpe", "unigram", "word", "char"))  # token unit
    vocab_size: int = _field(8000, ge=3)  # subword vocabulary size (bpe, unigram)
    # each side's vocabulary: tokens seen fewer times in training, and beyond the max_vocab
    # most frequent (null: no cap), become <unk> (for word / char tokens; with subwords
    # vocab_size already bounds it)
    min_freq: int = _field(1, gt=0)
    max_vocab: int | None = _field(None, gt=0)
    # one subword model for both sides (each side's vocabulary: the pieces it uses)
    joint_vocab: bool = True
    lowercase: bool = False  # lowercase all text before tokenising
    max_len: int = _field(100, gt=0)  # training pairs longer (in tokens) on either side are dropped
    sp_model: str | None = _field(
        None, nonempty=True
    )  # an existing sentencepiece model to use instead of training one
    # BPE-dropout (Provilkov et al. 2020): each epoch segments the training pairs anew, each
    # merge skipped with this probability (0.1 in the paper); 0: off. Needs a BPE model
    bpe_dropout: float = _field(0.0, ge=0, lt=1)

    def __post_init__(self) -> None:
        _validate_fields(self, "<DataConfig>")


@dataclass
class ModelConfig:
    """The encoder-decoder: cell, sizes, attention, regularisation."""

    section: ClassVar[str] = "model"

    # recurrent cell of both sides: a built-in name or module:Class (a custom rnnkit.Cell)
    cell: str = _field(
        "gru", choices=CELL_NAMES, or_pattern=(CUSTOM_CELL, "module:Class (a custom rnnkit.Cell)")
    )
    emb_size: int = _field(256, gt=0)  # embedding size E
    hidden_size: int = _field(256, gt=0)  # hidden size H of every recurrent layer
    enc_layers: int = _field(1, gt=0)  # stacked encoder layers
    dec_layers: int = _field(1, gt=0)  # stacked decoder layers
    bidirectional: bool = True  # bidirectional encoder (Bahdanau et al. 2015)
    attention: str = _field("bahdanau", choices=("bahdanau", "luong", "none"))  # "none": Cho 2014
    luong_score: str = _field("general", choices=("dot", "general", "concat"))  # Luong score fn
    bridge: str = _field("learned", choices=("learned", "zeros"))  # decoder initial state
    dropout: float = _field(0.3, ge=0, lt=1)  # dropout between layers and before the output
    emb_dropout: float = _field(0.1, ge=0, lt=1)  # dropout on embeddings
    tie_embeddings: bool = False  # share the target embedding with the output projection
    # target embeddings: normal = torch's N(0, 1), scaled = N(0, 1/emb_size); auto: scaled
    # when tied (the untrained tied model then starts near uniform, not at twice its loss)
    tgt_embed_init: str = _field("auto", choices=("auto", "normal", "scaled"))
    # pretrained vectors (word2vec / GloVe / fastText text format, emb_size numbers a line)
    # as the initial embeddings of the tokens they have; paths resolve as corpus paths do
    src_embeddings: str | None = _field(None, nonempty=True)
    tgt_embeddings: str | None = _field(None, nonempty=True)
    # LSTM family: the forget-gate biases sum to this at initialisation (null: torch's init)
    forget_bias: float | None = None
    # more keywords of the cell's __init__, on both sides ({eps: 1.0e-3} for layernorm_lstm,
    # {reset_after: false} for gru, a custom cell's own)
    cell_kwargs: dict[str, Any] = field(default_factory=dict)
    # regularisers of the recurrent layers of the side(s) `regularise` names (on the encoder
    # they make it run the explicit engine; the decoder keeps torch's fused cell kernels)
    zoneout: float = _field(0.0, ge=0, lt=1)  # each unit keeps its previous value w.p. z
    recurrent_dropout: float = _field(0.0, ge=0, lt=1)  # one mask per sequence on h into W_hh
    weight_drop: float = _field(0.0, ge=0, lt=1)  # DropConnect on W_hh, per forward
    regularise: str = _field("encoder", choices=("encoder", "decoder", "both"))
    # recurrent kernels: auto, explicit (readable cells), native (torch fused), reference
    engine: str = _field("auto", choices=("auto", "explicit", "native", "reference"))

    def __post_init__(self) -> None:
        _validate_fields(self, "<ModelConfig>")


@dataclass
class TrainConfig:
    """Batching, optimiser, schedule, budgets, validation and checkpoints."""

    section: ClassVar[str] = "train"

    batch_tokens: int = _field(4000, gt=0)  # bound on sentences x padded width per batch
    batch_size: int | None = _field(None, gt=0)  # bound on sentences per batch (null: none)
    optimizer: str = _field("adam", choices=("adam", "adamw", "sgd"))  # optimiser
    lr: float = _field(1e-3, gt=0)  # peak learning rate
    weight_decay: float = _field(0.0, ge=0)  # L2 (adam, sgd) or decoupled (adamw) decay
    clip: float = _field(1.0, ge=0)  # gradient-norm clipping threshold (0 = off)
    warmup_steps: int = _field(0, ge=0)  # linear warm-up from 0 to lr over these steps
    scheduler: str = _field("plateau", choices=("plateau", "inverse_sqrt", "none"))  # lr decay
    decay_factor: float = _field(0.5, gt=0, lt=1)  # plateau: lr *= decay_factor
    lr_patience: int = _field(2, ge=0)  # plateau: validations without gain before a decay
    min_lr: float = _field(1e-5, ge=0)  # plateau: the lr never decays below this
    label_smoothing: float = _field(0.1, ge=0, lt=1)  # mass spread over the vocabulary
    teacher_forcing: float = _field(1.0, ge=0, le=1)  # probability of feeding the gold token
    # an exponential moving average of the weights (e.g. 0.999; 0 = none): validated,
    # kept in every checkpoint's model, translated with (rnnkit.ema)
    ema_decay: float = _field(0.0, ge=0, lt=1)
    # batches whose gradients add up to one update (loss / their target tokens together)
    accumulate: int = _field(1, gt=0)
    # forward arithmetic: fp32, or autocast to bf16 / fp16 (fp16 with loss scaling)
    precision: str = _field("fp32", choices=("fp32", "bf16", "fp16"))
    # static shapes + CUDA graphs (rnnkit.graphs): auto (explicit engine on CUDA), on, off
    graphs: str = _field("auto", choices=("auto", "on", "off"))
    max_steps: int = _field(0, ge=0)  # stop after this many updates (0 = no limit)
    max_epochs: int = _field(20, ge=1)  # stop after this many passes over the data
    max_minutes: float = _field(0.0, ge=0)  # stop after this much wall time (0 = no limit)
    validate_every: int = _field(500, gt=0)  # updates between dev evaluations
    checkpoint_every: int = _field(500, gt=0)  # updates between checkpoints
    keep_checkpoints: int = _field(0, ge=0)  # also keep the last N as step-STEP.pt (0 = none)
    patience: int = _field(5, ge=0)  # early stop after this many validations without a gain
    # what "a gain" means: the dev score that picks best.pt, counts towards patience and
    # drives the plateau schedule: bleu | chrf | accuracy (exact match) | loss | ppl
    early_stopping_metric: str = _field("bleu", choices=METRICS)
    log_every: int = _field(50, gt=0)  # updates between log lines
    seed: int = _field(1, ge=0, le=2**63 - 1)  # seed of torch, python and data-order randomness
    # fine-tuning: a new run starts from this checkpoint's weights, tokenizers and
    # vocabularies (same model section); optimizer, schedule and step count start afresh
    init_from: str | None = _field(None, nonempty=True)
    # auto (cuda when there is a GPU, else cpu), cpu, cuda, cuda:N, mps (asked for by name)
    device: str = _field(
        "auto", pattern=r"auto|cpu|mps|cuda(:\d+)?", pattern_help="auto, cpu, cuda, cuda:N or mps"
    )

    def __post_init__(self) -> None:
        _validate_fields(self, "<TrainConfig>")


@dataclass
class DecodeConfig:
    """Search at translation and validation time."""

    section: ClassVar[str] = "decode"

    beam_size: int = _field(5, ge=1)  # 1 = greedy
    length_penalty: float = _field(1.0, ge=0)  # beam length-normalisation strength (0 = none)
    # beam: GNMT coverage penalty β (0 = none): finished outputs lose β·Σ log(min(attention
    # a source token received, 1)), against skipping part of the source; needs attention
    coverage_penalty: float = _field(0.0, ge=0)
    max_len_a: float = _field(1.5, ge=0)  # output limit: max_len_a * source tokens + max_len_b
    max_len_b: int = _field(10, ge=0)  # output limit: additive part
    batch_size: int = _field(64, gt=0)  # sentences translated at once
    # beam: stop a sentence only when no alive hypothesis can still win (slower); false:
    # when none wins at the current length (OpenNMT's and Joey NMT's rule)
    exact: bool = False

    def __post_init__(self) -> None:
        _validate_fields(self, "<DecodeConfig>")


@dataclass
class Config:
    """A whole run: the four sections, each defaulted."""

    data: DataConfig = field(default_factory=DataConfig)  # corpora and tokenisation
    model: ModelConfig = field(default_factory=ModelConfig)  # architecture
    train: TrainConfig = field(default_factory=TrainConfig)  # training loop
    decode: DecodeConfig = field(default_factory=DecodeConfig)  # search

    def __post_init__(self) -> None:
        for name, kind in _SECTIONS.items():
            given = getattr(self, name)
            if not isinstance(given, kind):
                how = f"config_from_dict({{{name!r}: {{...}}}})" if isinstance(given, dict) else ""
                raise TypeError(
                    f"Config({name}=...) takes a {kind.__name__}, got a {type(given).__name__}"
                    + (f"; a dict goes through {how}" if how else "")
                )


_SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "decode": DecodeConfig,
}


# ---------------------------------------------------------------- across fields


def _check_cross(cfg: Config, source: str) -> None:
    """Checks that involve two fields."""
    lstm_family = ("lstm", "layernorm_lstm", "peephole_lstm", "cifg_lstm")
    cell = cfg.model.cell
    if cfg.model.forget_bias is not None and cell in CELL_NAMES and cell not in lstm_family:
        raise ConfigError(
            f"{source}: model.forget_bias applies to the LSTM family "
            f"({', '.join(lstm_family)}), not to model.cell={cell}"
        )
    taken = {"input_size", "hidden_size", "bias", "device", "dtype", "forget_bias"}
    if given := sorted(taken & set(cfg.model.cell_kwargs)):
        where = "model.forget_bias" if given[0] == "forget_bias" else "the model"
        raise ConfigError(
            f"{source}: model.cell_kwargs.{given[0]}: set by {where}, not a cell keyword here"
        )
    d = cfg.data
    if d.bpe_dropout and d.tokenizer != "bpe" and not d.sp_model:
        raise ConfigError(
            f"{source}: data.bpe_dropout drops BPE merges: it needs data.tokenizer bpe "
            f"(or a BPE data.sp_model), not {d.tokenizer}"
        )
    if cfg.decode.coverage_penalty and cfg.model.attention == "none":
        raise ConfigError(
            f"{source}: decode.coverage_penalty needs attention (what it measures); "
            "model.attention is none"
        )
    if cfg.decode.max_len_a == 0 and cfg.decode.max_len_b == 0:
        raise ConfigError(f"{source}: decode.max_len_a and decode.max_len_b are both 0")
    if cfg.train.scheduler == "plateau" and cfg.train.min_lr > cfg.train.lr:
        raise ConfigError(
            f"{source}: train.min_lr ({cfg.train.min_lr:g}) must not exceed "
            f"train.lr ({cfg.train.lr:g}) with the plateau scheduler"
        )


def validate_config(cfg: Config, source: str = "<config>") -> Config:
    """Check every field of ``cfg`` again (after code changed it) and the cross-field
    rules; returns ``cfg`` (float fields normalised). Raises :class:`ConfigError`."""
    for name in _SECTIONS:
        _validate_fields(getattr(cfg, name), source)
    _check_cross(cfg, source)
    return cfg
