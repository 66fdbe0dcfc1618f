"""rnnkit's data layer: text files → tokenizer → vocabulary ids → padded batches.

One module per concept: :mod:`.errors`, :mod:`.tokenizers`, :mod:`.vocab`,
:mod:`.corpus`, :mod:`.tasks` (built-in synthetic tasks), :mod:`.batching` and
:mod:`.download` (Multi30k).
"""

from .batching import (
    Batch,
    Example,
    SrcBatch,
    encode_pairs,
    make_batches,
    make_src_batches,
    pad_sequences,
    restore_order,
)
from .corpus import (
    blank_side,
    filter_pairs,
    read_lines,
    read_parallel,
    read_tsv,
    split_held_out,
    write_atomic,
    write_lines,
)
from .download import fetch_multi30k, fetch_tatoeba
from .errors import DataError
from .tasks import (
    DATE_FORMATS,
    TASKS,
    adding_batch,
    make_task,
    render_date,
    sample_date,
    task_splits,
)
from .tokenizers import (
    CharTokenizer,
    SentencePieceTokenizer,
    Tokenizer,
    WordTokenizer,
    make_tokenizer,
    tokenizer_from_state,
)
from .vocab import BOS, BOS_ID, EOS, EOS_ID, PAD, PAD_ID, SPECIALS, UNK, UNK_ID, Vocab

__all__ = [
    "BOS",
    "BOS_ID",
    "DATE_FORMATS",
    "EOS",
    "EOS_ID",
    "PAD",
    "PAD_ID",
    "SPECIALS",
    "TASKS",
    "UNK",
    "UNK_ID",
    "Batch",
    "CharTokenizer",
    "DataError",
    "Example",
    "SentencePieceTokenizer",
    "SrcBatch",
    "Tokenizer",
    "Vocab",
    "WordTokenizer",
    "adding_batch",
    "encode_pairs",
    "fetch_multi30k",
    "fetch_tatoeba",
    "blank_side",
    "filter_pairs",
    "make_batches",
    "make_src_batches",
    "make_task",
    "make_tokenizer",
    "pad_sequences",
    "read_lines",
    "read_parallel",
    "read_tsv",
    "render_date",
    "restore_order",
    "sample_date",
    "split_held_out",
    "task_splits",
    "tokenizer_from_state",
    "write_atomic",
    "write_lines",
]
