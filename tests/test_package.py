"""``import rnnkit``: its public names are there when used, and the command line's help,
version and usage errors import no torch (they answered in 3.4 s, now in 0.15 s)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import rnnkit

HOMES = ("rnnkit.attention", "rnnkit.cells", "rnnkit.layers", "rnnkit.model", "rnnkit.recurrent")


def test_every_public_name_is_the_class_of_its_module():
    for name in rnnkit.__all__:
        found = getattr(rnnkit, name)
        homes = [m for m in HOMES if getattr(importlib.import_module(m), name, None) is found]
        assert homes, name
        assert found.__module__.startswith("rnnkit."), name
    assert set(rnnkit.__all__) <= set(dir(rnnkit))
    namespace: dict[str, object] = {}
    exec("from rnnkit import *", namespace)
    assert set(rnnkit.__all__) <= set(namespace)


def test_an_unknown_name_is_an_attribute_error_and_submodules_still_import():
    with pytest.raises(AttributeError, match="module 'rnnkit' has no attribute 'LSTMs'"):
        rnnkit.LSTMs  # noqa: B018
    from rnnkit import fast

    assert fast.__name__ == "rnnkit.fast"


def test_a_submodule_is_there_after_import_rnnkit():
    """usage.md's ``rnnkit.ensemble.load_ensemble`` after ``import rnnkit`` was an
    AttributeError unless another import had loaded rnnkit.ensemble."""
    code = "import rnnkit\nprint(rnnkit.ensemble.load_ensemble.__name__, rnnkit.search.__name__)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.split() == ["load_ensemble", "rnnkit.search"], r.stderr


def test_the_command_lines_parser_imports_no_torch():
    """Every command's parser (``rnnkit COMMAND --help``) is built without torch; a
    usage error is said before torch would load."""
    code = (
        "import sys, rnnkit, rnnkit.cli as cli\n"
        "parser = cli.build_parser()\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "print(rnnkit.__version__)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == rnnkit.__version__, r.stderr
    bad = [sys.executable, "-m", "rnnkit", "serve", "m.pt", "--beam", "100"]
    r = subprocess.run(bad, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--beam: must be at most 32" in r.stderr, r.stderr


def test_the_command_ends_as_python_would_without_tearing_every_module_down(tmp_path):
    """``rnnkit`` leaves through ``os._exit`` once the command is over (Python's own exit
    spent 0.7-0.9 s of CPU tearing torch down, serve's stop took 1.1 s): threads that are
    not daemons still finish, exit handlers still run, what is buffered still comes out,
    and the status is the command's; only the teardown of objects is skipped."""
    code = (
        "import atexit, sys, threading, time\n"
        "from rnnkit.cli import console\n"
        "atexit.register(lambda: print('exit handler ran'))\n"
        "def late():\n"
        "    time.sleep(0.3)\n"
        "    open('late.txt', 'w').close()\n"
        "threading.Thread(target=late).start()\n"
        "from concurrent.futures import ThreadPoolExecutor\n"
        "pool = ThreadPoolExecutor(1)  # never shut down: Python's exit stops its thread\n"
        "pool.submit(lambda: open('pooled.txt', 'w').close())\n"
        "class Torn:\n"
        "    def __del__(self):\n"
        "        print('torn down')\n"
        "kept = Torn()\n"
        "sys.stdout.write('buffered ')\n"
        "sys.argv = ['rnnkit', 'info', 'missing.pt']\n"
        "sys.exit(console())\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120)  # fmt: skip
    assert r.returncode == 2 and "missing.pt" in r.stderr, r.stderr
    assert r.stdout.split() == ["buffered", "exit", "handler", "ran"]  # not "torn down"
    assert (tmp_path / "pooled.txt").exists()
    assert (tmp_path / "late.txt").exists()


def test_text_goes_out_in_utf8_whatever_pythons_io_encoding(tmp_path):
    """Files and stdin are UTF-8; with an ASCII I/O encoding (``PYTHONIOENCODING``, a C
    locale without UTF-8 mode) stdout was a UnicodeEncodeError traceback, and inspect's
    sentence reached the model as surrogates (matplotlib: a TypeError)."""
    import os

    from toy import save_bundle, word_bundle

    save_bundle(word_bundle(words=["grüße", "öl", "😀"]), tmp_path / "m.pt")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONIOENCODING": "ascii"}
    info = [sys.executable, "-m", "rnnkit", "info", "m.pt", "--embeddings", "src"]
    r = subprocess.run(info, cwd=tmp_path, capture_output=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    assert {b"gr\xc3\xbc\xc3\x9fe", "😀".encode()} <= {
        ln.split()[0] for ln in r.stdout.splitlines()
    }

    env |= {"LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    del env["PYTHONIOENCODING"]
    inspect = [sys.executable, "-m", "rnnkit", "inspect", "m.pt", "grüße öl", "--out", "o_ü"]
    r = subprocess.run(inspect, cwd=tmp_path, capture_output=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    assert "grüße öl" in (tmp_path / "o_ü" / "inspect.html").read_text(encoding="utf-8")
    assert "wrote o_ü/inspect.html".encode() in r.stdout  # (the path's bytes as they came)
