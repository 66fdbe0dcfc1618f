"""Fetch Multi30k Task 1 (Elliott et al. 2016) or Tatoeba English–French into a data folder.

The official raw files live in https://github.com/multi30k/dataset under
``data/task1/raw/`` as gzipped text (``train.de.gz``, ``val.en.gz``,
``test_2016_flickr.de.gz``, ...). They are saved unzipped as
``train|val|test2016 .de|.en``, the names :func:`rnnkit.data.read_parallel` and the
configs expect. Every file is written atomically, so an interrupted download never
leaves a truncated corpus behind.

The data is for non-commercial research and education; cite Elliott et al. 2016.

Tatoeba English–French is manythings.org's ``fra-eng.zip`` (sentence pairs from the
Tatoeba Project, CC-BY 2.0 FR: "Sentence pairs from the Tatoeba Project (tatoeba.org);
compiled by www.manythings.org/anki"); its ``fra.txt`` (English TAB French, and in newer
exports an attribution column) is saved unchanged as ``eng-fra.txt``, the name
``configs/tatoeba_fr_en.yaml`` expects, beside the zip's ``_about.txt``.
"""

from __future__ import annotations

import gzip
import io
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from rnnkit.atomic import check_folder, make_folder

from .corpus import decode_lines, read_parallel, read_tsv, tsv_pairs, write_atomic
from .errors import DataError

MULTI30K_URL = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/"
# local name → official name (without the language suffix)
MULTI30K_SPLITS: dict[str, str] = {"train": "train", "val": "val", "test2016": "test_2016_flickr"}
MULTI30K_LANGS: tuple[str, str] = ("de", "en")
TATOEBA_URL = "https://www.manythings.org/anki/fra-eng.zip"
TATOEBA_MEMBERS = ("fra.txt", "eng-fra.txt")  # manythings' name, the PyTorch tutorial's


def fetch_multi30k(
    out_dir: str | Path,
    from_dir: str | Path | None = None,
    base_url: str = MULTI30K_URL,
    overwrite: bool = False,
    timeout: float = 60.0,
    log: Callable[[str], None] | None = None,
) -> list[Path]:
    """Put ``train|val|test2016 .de|.en`` into ``out_dir``.

    Every source file is read and checked (UTF-8, not empty, the two languages of a
    split aligned) before anything is written, and each file is written atomically:
    a bad source leaves ``out_dir`` as it was.

    Args:
        out_dir: destination folder (created if needed).
        from_dir: copy from this local folder instead of downloading. It may hold
            the local names (``test2016.de``), the official ones
            (``test_2016_flickr.de``) or either gzipped (``.gz``).
        base_url: where the official ``*.gz`` files are (default: the GitHub repository).
        overwrite: replace the files already in ``out_dir``; otherwise a split whose two
            files are there, readable and aligned is kept (one that is not is fetched).
        timeout: seconds allowed per network request.
        log: receives a line per file: ``wrote PATH`` or ``kept PATH (why)``.

    Returns:
        the six paths in ``out_dir``.

    Raises:
        DataError: ``out_dir`` cannot be a folder, a source file is missing, not gzip /
            UTF-8 or empty, the network fails, the two languages of a split have
            different line counts, or a file cannot be written.
    """
    out = Path(out_dir)
    check_folder(out)
    files: dict[Path, bytes | None] = {}  # None: kept as it is
    for local, official in MULTI30K_SPLITS.items():
        dests = [out / f"{local}.{lang}" for lang in MULTI30K_LANGS]
        if not overwrite and _sound(read_parallel, out / local, *MULTI30K_LANGS):
            files.update(dict.fromkeys(dests))
            continue
        sides: list[tuple[str, bytes]] = []
        for lang in MULTI30K_LANGS:
            if from_dir is not None:
                sides.append(_read_local(Path(from_dir), local, official, lang))
            else:
                url = f"{base_url.rstrip('/')}/{official}.{lang}.gz"
                sides.append((url, _download(url, timeout)))
        (a, data_a), (b, data_b) = sides
        n_a, n_b = len(decode_lines(data_a, a)), len(decode_lines(data_b, b))
        if n_a != n_b:
            raise DataError(f"{a} and {b} have different line counts ({n_a} vs {n_b})")
        files.update({dests[0]: data_a, dests[1]: data_b})
    _write_files(out, files, log)
    return list(files)


def fetch_tatoeba(
    out_dir: str | Path,
    from_path: str | Path | None = None,
    url: str = TATOEBA_URL,
    overwrite: bool = False,
    timeout: float = 60.0,
    log: Callable[[str], None] | None = None,
) -> list[Path]:
    """Put Tatoeba's English–French pairs into ``out_dir/eng-fra.txt``.

    The source is read and checked whole before anything is written, and each file is
    written atomically: a bad source leaves ``out_dir`` as it was.

    Args:
        out_dir: destination folder (created if needed).
        from_path: copy from here instead of downloading: manythings' ``fra-eng.zip``,
            the PyTorch tutorial's ``data.zip``, their ``fra.txt`` / ``eng-fra.txt``, or a
            folder holding one of them.
        url: where ``fra-eng.zip`` is.
        overwrite: replace a file already present in ``out_dir``; otherwise keep it if
            it reads as pairs (one that does not is fetched).
        timeout: seconds allowed for the download.
        log: receives a line per file: ``wrote PATH`` or ``kept PATH (why)``.

    Returns:
        the paths written or kept (``eng-fra.txt``, and ``manythings_about.txt`` when
        the zip has one).

    Raises:
        DataError: the source is missing, not a zip holding ``fra.txt`` /
            ``eng-fra.txt``, not UTF-8, a line has fewer than two tab-separated
            columns, or the network fails; ``out_dir`` cannot be a folder or written.
    """
    out = Path(out_dir)
    check_folder(out)
    dest = out / "eng-fra.txt"
    if not overwrite and _sound(read_tsv, dest):
        _write_files(out, {dest: None}, log)
        return [dest]
    if from_path is None:
        try:
            name, payload = url, _get(url, timeout)
        except DataError as e:  # the site may refuse scripts: say how to go on
            raise DataError(
                f"{e} (download fra-eng.zip with a browser from "
                f"https://www.manythings.org/anki/ and give it with --from)"
            ) from None
    else:
        name, payload = _local_tatoeba(Path(from_path))
    files = {dest.name: payload}
    if payload[:4] == b"PK\x03\x04":
        files, member = _unzip_tatoeba(payload, name)
        name += f":{member}"
    tsv_pairs(decode_lines(files[dest.name], name), name)  # UTF-8, two columns per line
    _write_files(out, {out / fname: data for fname, data in files.items()}, log)
    return [out / fname for fname in files]


def _sound(read: Callable[..., object], *args: object) -> bool:
    """Whether ``read(*args)`` (of files already in the destination) raises no DataError."""
    try:
        read(*args)
    except DataError:
        return False
    return True


def _write_files(
    out: Path, files: dict[Path, bytes | None], log: Callable[[str], None] | None
) -> None:
    """Write each file atomically, saying what happened to each: a file already holding
    the same bytes, or given as None (kept as found), is not rewritten."""
    say = log or (lambda _msg: None)
    make_folder(out)
    for dest, data in files.items():
        try:
            if data is None:
                say(f"kept {dest} (already there)")
            elif dest.is_file() and dest.read_bytes() == data:
                say(f"kept {dest} (the same as the source)")
            else:
                write_atomic(dest, data)
                say(f"wrote {dest}")
        except OSError as e:
            raise DataError(f"{dest}: cannot write ({e.strerror})") from None


def _local_tatoeba(path: Path) -> tuple[str, bytes]:
    if path.is_dir():
        found = [path / n for n in ("fra-eng.zip", "data.zip", *TATOEBA_MEMBERS)]
        found = [f for f in found if f.is_file()]
        if not found:
            raise DataError(f"{path}: no fra-eng.zip, data.zip, fra.txt or eng-fra.txt in it")
        path = found[0]
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    return str(path), path.read_bytes()


def _unzip_tatoeba(payload: bytes, name: str) -> tuple[dict[str, bytes], str]:
    """``{"eng-fra.txt": ..., ["manythings_about.txt": ...]}`` from a zip, and the name of
    the member read as ``eng-fra.txt``."""
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(payload)) as z:
            members = {Path(m).name: m for m in z.namelist()}
            hit = next((members[n] for n in TATOEBA_MEMBERS if n in members), None)
            if hit is None:
                raise DataError(f"{name}: no fra.txt or eng-fra.txt in the zip")
            files = {"eng-fra.txt": z.read(hit)}
            if "_about.txt" in members:
                files["manythings_about.txt"] = z.read(members["_about.txt"])
            return files, hit
    except zipfile.BadZipFile as e:
        raise DataError(f"{name}: not a valid zip file ({e})") from None


def _read_local(folder: Path, local: str, official: str, lang: str) -> tuple[str, bytes]:
    """Name and bytes of the first of ``local.lang``, ``official.lang`` (optionally
    ``.gz``) found."""
    names = list(dict.fromkeys([f"{local}.{lang}", f"{official}.{lang}"]))  # once each
    if not folder.is_dir():
        what = "not found" if not folder.exists() else "a file, not a folder"
        raise DataError(f"--from {folder}: {what} (multi30k reads a folder of its files)")
    for name in names:
        if (folder / name).is_file():
            return str(folder / name), (folder / name).read_bytes()
        if (folder / f"{name}.gz").is_file():
            gz = str(folder / f"{name}.gz")
            return gz, _gunzip((folder / f"{name}.gz").read_bytes(), gz)
    if (folder / names[0]).exists():
        raise DataError(f"{folder / names[0]}: not a file")
    also = ", ".join([*names[1:], *(f"{n}.gz" for n in names)])
    raise DataError(f"{folder / names[0]}: file not found (nor {also})")


def _download(url: str, timeout: float) -> bytes:
    """GET ``url`` and gunzip it; any failure becomes a one-line :class:`DataError`."""
    return _gunzip(_get(url, timeout), url)


def _get(url: str, timeout: float) -> bytes:
    """GET ``url``; any failure becomes a one-line :class:`DataError`."""
    request = urllib.request.Request(url, headers={"User-Agent": "rnnkit (corpus download)"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return bytes(response.read())
    except urllib.error.HTTPError as e:
        raise DataError(f"download failed: {url}: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise DataError(f"download failed: {url}: {e.reason}") from None
    except (OSError, ValueError) as e:  # timeouts, resets, a malformed URL
        raise DataError(f"download failed: {url}: {e}") from None


def _gunzip(payload: bytes, name: str) -> bytes:
    try:
        return gzip.decompress(payload)
    except (OSError, EOFError) as e:
        raise DataError(f"{name}: not a valid gzip file ({e})") from None
