"""The cheap checks of a config's corpora, made before any data is read (and before
``--nproc`` starts its processes): splits given or missing, columns, and each file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from rnnkit.config import Config, DataConfig, resolve_data_path
from rnnkit.data import DataError
from rnnkit.data.tasks import check_task_options

__all__ = ["check_corpora", "corpora"]


def check_corpora(cfg: Config, config_dir: Path | None = None, source: str = "config") -> None:
    """Raise :class:`DataError` for corpus settings that cannot work (a split missing or
    given twice; ``source`` names the config in the message) or a corpus file that is not
    there: cheap checks, made before the data is read (and before ``--nproc`` starts its
    processes)."""
    d = cfg.data
    if d.task:
        given = [k for k in ("train", "dev", "test", "dev_size", "test_size") if getattr(d, k)]
        if given:  # (a task's pairs are generated: these were ignored without a word)
            keys = " and ".join(f"data.{k}" for k in given)
            raise DataError(
                f"{source}: data.task {d.task} generates its pairs, so {keys} would go "
                f"unused; set data.task: null to read corpora, or remove {keys}"
            )
        check_task_options(d.task, d.task_options)
        return
    if not d.train:
        raise DataError(f"{source}: data.train is required unless data.task is set")
    if d.format != "tsv" and (d.src_col, d.tgt_col) != (0, 1):  # (ignored without a word)
        raise DataError(
            f"{source}: data.src_col and data.tgt_col are columns of a TSV file: they need "
            f"data.format: tsv (the corpus is read as {d.format} files PREFIX.{d.src} / .{d.tgt})"
        )
    if d.format == "tsv" and d.src_col == d.tgt_col:
        raise DataError(
            f"{source}: data.src_col and data.tgt_col are both {d.src_col}: the source and "
            "target sides must be two columns of the TSV file"
        )
    if not d.dev and not d.dev_size:
        raise DataError(
            f"{source}: give data.dev, or data.dev_size to hold out dev pairs from train"
        )
    for split in ("dev", "test"):
        if getattr(d, split) and getattr(d, f"{split}_size"):
            raise DataError(
                f"{source}: data.{split} and data.{split}_size are both given: read {split} "
                f"pairs from a file, or hold some out of train, not both"
            )
    for _, path in corpora(d, config_dir):
        files = [path] if d.format == "tsv" else [Path(f"{path}.{x}") for x in (d.src, d.tgt)]
        for f in files:
            _check_corpus_file(f)


def _check_corpus_file(f: Path) -> None:
    """A DataError naming what ``f`` is when it is not a file that can be read."""
    if f.is_dir():
        raise DataError(f"{f}: is a folder, not a file")
    if f.is_symlink() and not f.exists():
        raise DataError(f"{f}: a symbolic link to nothing (or a loop of links)")
    if f.exists() and not f.is_file():  # (a FIFO, /dev/zero: "file not found" said nothing)
        raise DataError(f"{f}: not a regular file (a device, pipe or socket)")
    if not f.is_file():  # (what a newcomer needs next: where corpora are looked for)
        packed = [p.name for p in (Path(f"{f}.gz"), Path(f"{f}.xz")) if p.is_file()]
        if packed:
            raise DataError(f"{f}: file not found ({packed[0]} is there: unpack it)")
        raise DataError(
            f"{f}: file not found (corpora are looked for under data.data_dir, "
            f"RNNKIT_DATA or the config's folder: --set data.data_dir=DIR{_fetch_hint(f)})"
        )


def _fetch_hint(f: Path) -> str:
    """How ``rnnkit data`` fetches the corpus ``f`` belongs to (into the folder the
    configs name under data.data_dir), or nothing."""
    for folder, corpus in (("multi30k", "multi30k"), ("tatoeba-eng-fra", "tatoeba")):
        if folder in f.parts:
            return f"; `rnnkit data {corpus} --out DIR/{folder}` fetches it"
    return ""


def corpora(d: DataConfig, config_dir: Path | None) -> Iterator[tuple[str, Path]]:
    """(split, path) of every corpus the config names, in order (a list of train corpora
    gives several)."""
    for split in ("train", "dev", "test"):
        names = getattr(d, split)
        for name in [names] if isinstance(names, str) else names or []:
            yield split, resolve_data_path(d, name, config_dir)
