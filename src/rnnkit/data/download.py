"""Fetch Multi30k Task 1 (Elliott et al. 2016) into a data folder.

The official raw files live in https://github.com/multi30k/dataset under
``data/task1/raw/`` as gzipped text (``train.de.gz``, ``val.en.gz``,
``test_2016_flickr.de.gz``, ...). They are saved unzipped as
``train|val|test2016 .de|.en``, the names :func:`rnnkit.data.read_parallel` and the
configs expect. Every file is written atomically, so an interrupted download never
leaves a truncated corpus behind.

The data is for non-commercial research and education; cite Elliott et al. 2016.
"""

from __future__ import annotations

import gzip
import urllib.error
import urllib.request
from pathlib import Path

from .corpus import read_parallel, write_atomic
from .errors import DataError

MULTI30K_URL = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/"
# local name → official name (without the language suffix)
MULTI30K_SPLITS: dict[str, str] = {"train": "train", "val": "val", "test2016": "test_2016_flickr"}
MULTI30K_LANGS: tuple[str, str] = ("de", "en")


def fetch_multi30k(
    out_dir: str | Path,
    from_dir: str | Path | None = None,
    base_url: str = MULTI30K_URL,
    overwrite: bool = False,
    timeout: float = 60.0,
) -> list[Path]:
    """Put ``train|val|test2016 .de|.en`` into ``out_dir``.

    Args:
        out_dir: destination folder (created if needed).
        from_dir: copy from this local folder instead of downloading. It may hold
            the local names (``test2016.de``), the official ones
            (``test_2016_flickr.de``) or either gzipped (``.gz``).
        base_url: where the official ``*.gz`` files are (default: the GitHub repository).
        overwrite: replace files already present in ``out_dir``; otherwise keep them.
        timeout: seconds allowed per network request.

    Returns:
        the six paths in ``out_dir``.

    Raises:
        DataError: a source file is missing, not gzip / UTF-8, the network fails, or
            the two languages of a split have different line counts.
    """
    out = Path(out_dir)
    written: list[Path] = []
    for local, official in MULTI30K_SPLITS.items():
        for lang in MULTI30K_LANGS:
            dest = out / f"{local}.{lang}"
            written.append(dest)
            if dest.is_file() and dest.stat().st_size > 0 and not overwrite:
                continue
            if from_dir is not None:
                data = _read_local(Path(from_dir), local, official, lang)
            else:
                data = _download(f"{base_url.rstrip('/')}/{official}.{lang}.gz", timeout)
            write_atomic(dest, data)
        read_parallel(out / local, *MULTI30K_LANGS)  # both exist, UTF-8, aligned
    return written


def _read_local(folder: Path, local: str, official: str, lang: str) -> bytes:
    """Bytes of the first of ``local.lang``, ``official.lang`` (optionally ``.gz``) found."""
    names = [f"{local}.{lang}", f"{official}.{lang}"]
    for name in names:
        if (folder / name).is_file():
            return (folder / name).read_bytes()
        if (folder / f"{name}.gz").is_file():
            return _gunzip((folder / f"{name}.gz").read_bytes(), str(folder / f"{name}.gz"))
    raise DataError(f"{folder / names[0]}: file not found (nor {names[1]} or .gz variants)")


def _download(url: str, timeout: float) -> bytes:
    """GET ``url`` and gunzip it; any failure becomes a one-line :class:`DataError`."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            payload = response.read()
    except urllib.error.HTTPError as e:
        raise DataError(f"download failed: {url}: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise DataError(f"download failed: {url}: {e.reason}") from None
    except (OSError, ValueError) as e:  # timeouts, resets, a malformed URL
        raise DataError(f"download failed: {url}: {e}") from None
    return _gunzip(payload, url)


def _gunzip(payload: bytes, name: str) -> bytes:
    try:
        return gzip.decompress(payload)
    except (OSError, EOFError) as e:
        raise DataError(f"{name}: not a valid gzip file ({e})") from None
