"""Test-wide settings.

The models in the tests are tiny: one thread runs them fastest, and on a shared 2-core
machine torch's default of two threads can slow them down a hundredfold.
"""

import warnings

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture
def stand_in_for_cuda(monkeypatch):
    """rnnkit.graphs.capture takes CPU tensors for CUDA ones and captures them with the
    eager stand-ins of tests/fake_graphs.py (training and inference graphs), which refuse
    a host sync inside a captured function as a real capture does."""
    from fake_graphs import fake_make_graphed_callables, fake_record

    from rnnkit.graphs import capture

    monkeypatch.setattr(capture, "_graphable", lambda x: True)
    monkeypatch.setattr(capture, "record", fake_record)
    monkeypatch.setattr(torch.cuda, "make_graphed_callables", fake_make_graphed_callables)
    with warnings.catch_warnings():  # a capture that fails runs eagerly, warned: here an error
        warnings.filterwarnings("error", message="rnnkit.graphs: could not capture")
        yield


@pytest.fixture(scope="module")
def ckpt():
    """The serve tests' tiny dates model (trained by ``rnnkit train`` once per version of
    the code, for every test process)."""
    from serve_util import dates_checkpoint
    from toy import one_thread

    with one_thread():
        return dates_checkpoint()


@pytest.fixture(scope="module")
def bundle(ckpt):
    """That model loaded."""
    from rnnkit.checkpoint import load_bundle

    return load_bundle(ckpt)
