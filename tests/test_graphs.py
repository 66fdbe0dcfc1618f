"""Static shapes (rnnkit.graphs): the bucketed, masked engine equals the explicit engine.

On the CPU the static path runs eagerly: padded to the bucket, lengths as held steps
instead of indices. It must give exactly what the plain explicit engine gives (outputs,
final states, every gradient, gate traces; float64). The CUDA-graph cases at the end
run only where CUDA is (the device script runs them on a GPU).
"""

from __future__ import annotations

import pytest
import torch
from fake_graphs import REPLAYS
from torch import Tensor, nn

import rnnkit
from rnnkit import fast, graphs
from rnnkit.graphs import capture
from rnnkit.graphs.buckets import bucket, held_steps, pad_to, rows

I, H = 3, 5


def test_bucket_ladder():
    sizes = [bucket(n) for n in range(1, 1025)]
    assert all(b >= n for n, b in zip(range(1, 1025), sizes))
    assert sizes == sorted(sizes)  # monotone: a longer input never gets a smaller bucket
    assert all(b % 8 == 0 for b in sizes)
    assert all(b - n < max(8, n / 4 + 1) for n, b in zip(range(1, 1025), sizes))
    assert len(set(sizes[:128])) == 12  # T ≤ 128: 12 shapes to capture
    assert bucket(64) == 64 and bucket(65) == 80 and bucket(129) == 160


def test_row_buckets_are_powers_of_two():
    assert [rows(n) for n in (1, 8, 9, 16, 17, 100, 256, 257)] == [8, 8, 16, 16, 32, 128, 256, 512]
    assert len({rows(n) for n in range(1, 513)}) == 7


def test_held_steps_and_padding():
    held = held_steps(torch.tensor([3, 1, 0]), 4, torch.float64)
    assert held.shape == (4, 3, 1)
    assert held[:, :, 0].t().tolist() == [[0, 0, 0, 1], [0, 1, 1, 1], [1, 1, 1, 1]]
    x = torch.ones(2, 3)
    assert pad_to(x, 5, 1).shape == (2, 5) and pad_to(x, 5, 1)[:, 3:].abs().sum() == 0
    assert pad_to(x, 2, 0) is x


def test_mode_switch_and_errors(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    with graphs.mode("off"):
        assert not graphs.active(cuda)
    with graphs.mode("on"):
        assert graphs.active(cpu) and graphs.active(cuda)
    with graphs.mode("auto"):
        assert not graphs.active(cpu) and graphs.active(cuda)
    with pytest.raises(ValueError, match="auto, on, off"):
        graphs.set_mode("always")
    monkeypatch.setattr(graphs, "_mode", "sometimes")
    with pytest.raises(ValueError, match="RNNKIT_GRAPHS"):
        graphs.active(cpu)
    ran = []
    with pytest.raises(ValueError, match="RNNKIT_GRAPHS"), graphs.mode("on"):
        ran.append(1)  # (the bad value was found on the way out, after the work)
    assert not ran and graphs._mode == "sometimes"


def test_a_mode_block_is_its_threads_alone():
    """A block in another thread changed the mode for both, and the two blocks' exits
    left it "on" for good."""
    import threading

    seen: dict[str, str] = {}
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:  # in its block while the second enters its own; leaves first
        with graphs.mode("on"):
            a_in.set()
            b_in.wait(10)
            seen["first"] = graphs.get_mode()
        a_out.set()

    def second() -> None:
        a_in.wait(10)
        with graphs.mode("off"):
            b_in.set()
            seen["second"] = graphs.get_mode()
            a_out.wait(10)

    before = graphs.get_mode()
    threads = [threading.Thread(target=f) for f in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert seen == {"first": "on", "second": "off"} and graphs.get_mode() == before
    with graphs.mode("on"), graphs.mode("off"):  # nested: the innermost
        assert graphs.get_mode() == "off"


def test_an_empty_rnnkit_graphs_is_unset():
    """RNNKIT_GRAPHS= (set, empty) stopped train, translate and every explicit layer."""
    import subprocess
    import sys

    env = {**__import__("os").environ, "RNNKIT_GRAPHS": ""}
    code = "import rnnkit.graphs as g; print(g.get_mode())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert out.stdout.strip() == "auto", out.stderr


LAYERS = {
    "lstm": lambda **kw: rnnkit.LSTM(I, H, engine="explicit", **kw),
    "gru": lambda **kw: rnnkit.GRU(I, H, engine="explicit", **kw),
    "gru_cho": lambda **kw: rnnkit.GRU(I, H, engine="explicit", reset_after=False, **kw),
    "rnn_relu": lambda **kw: rnnkit.RNN(I, H, engine="explicit", nonlinearity="relu", **kw),
    "layernorm_lstm": lambda **kw: rnnkit.LayerNormLSTM(I, H, **kw),
    "mgu": lambda **kw: rnnkit.MGU(I, H, **kw),
    "cifg": lambda **kw: rnnkit.CIFGLSTM(I, H, **kw),
}

SHAPES = [  # (T, B, layers, bidirectional, batch_first, lengths, h0, zoneout)
    (6, 5, 1, False, False, True, False, 0.0),
    (9, 1, 2, True, False, True, True, 0.0),  # T and B just past a bucket edge
    (17, 3, 2, True, True, True, True, 0.3),  # zoneout in evaluation: rate and hold combine
    (8, 8, 3, False, False, False, True, 0.0),  # exactly a bucket, no lengths
    (70, 9, 1, True, False, True, False, 0.0),  # second rung of the ladder (80)
]


def _run(m: nn.Module, x: Tensor, hx, lengths, record: bool):
    result = m(x, hx, lengths=lengths, return_gates=record)
    out, fin = result[0], result[1]
    fin = tuple(fin) if isinstance(fin, tuple) else (fin,)
    trace = result[2] if record else None
    return out, fin, trace


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"T{s[0]}B{s[1]}")
@pytest.mark.parametrize("name", list(LAYERS))
def test_static_equals_explicit(name, shape):
    T, B, L, bi, bf, with_lengths, with_h0, z = shape
    torch.manual_seed(sum(shape[:2]))
    m = LAYERS[name](num_layers=L, bidirectional=bi, batch_first=bf, zoneout=z).double()
    m.train(False)
    g = torch.Generator().manual_seed(T * B)
    x = torch.randn(*((B, T) if bf else (T, B)), I, dtype=torch.float64, generator=g)
    x.requires_grad_(True)
    lengths = torch.randint(1, T + 1, (B,), generator=g) if with_lengths else None
    if with_lengths:
        lengths[0] = T
    n = 2 if name in ("lstm", "layernorm_lstm", "cifg") else 1
    LD = L * (2 if bi else 1)
    states = tuple(
        torch.randn(LD, B, H, dtype=torch.float64, generator=g, requires_grad=True)
        for _ in range(n)
    )
    hx = (states if n == 2 else states[0]) if with_h0 else None
    params = list(m.parameters())
    inputs = [x, *(states if with_h0 else ()), *params]
    results = []
    for mode in ("off", "on"):
        with graphs.mode(mode):
            out, fin, _ = _run(m, x, hx, lengths, False)
            w = torch.Generator().manual_seed(1)
            loss = sum(
                (t * torch.randn(t.shape, generator=w, dtype=t.dtype)).sum() for t in (out, *fin)
            )
            grads = torch.autograd.grad(loss, inputs, allow_unused=True)
            _, _, trace = _run(m, x, hx, lengths, True)
            results.append((out, fin, grads, trace))
    (o1, f1, g1, t1), (o2, f2, g2, t2) = results
    close = lambda a, b: torch.testing.assert_close(a, b, atol=1e-9, rtol=0)  # noqa: E731
    close(o2, o1)
    for a, b in zip(f2, f1):
        close(a, b)
    for a, b in zip(g2, g1):
        assert (a is None) == (b is None)
        if a is not None:
            close(a, b)
    assert t1._fields == t2._fields
    for a, b in zip(t2, t1):
        close(a, b)


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_static_path_runs_the_fast_kernels_without_lengths_indices(kind, monkeypatch):
    """The static path hands the fast kernels no lengths (no per-length index, nothing
    read back to the host) but a held-steps mask in place of zoneout."""
    seen = []
    real = fast.run

    def spy(kind, x, state, weights, lengths, zone=None, rmask=None):
        seen.append((lengths, zone))
        return real(kind, x, state, weights, lengths, zone, rmask)

    monkeypatch.setattr(fast, "run", spy)
    m = getattr(rnnkit, kind)(I, H, engine="explicit", bidirectional=True)
    with graphs.mode("on"):
        m(torch.randn(5, 3, I), lengths=torch.tensor([5, 2, 4]))
    assert len(seen) == 2
    for lengths, zone in seen:
        assert lengths is None
        assert zone is not None and zone[0].shape == (8, 8, 1)  # the bucket of (5, 3)


def test_training_with_regularisers_holds_past_lengths():
    """In training (masks drawn on the padded batch, so not the plain engine's draws) the
    static path still ends each sequence at its length: zero outputs past it, and a final
    state equal to the output at its last step."""
    torch.manual_seed(0)
    m = rnnkit.LSTM(I, H, engine="explicit", zoneout=0.3, recurrent_dropout=0.2, weight_drop=0.2)
    lengths = torch.tensor([7, 3, 1])
    with graphs.mode("on"):
        out, (h_n, _) = m(torch.randn(7, 3, I), lengths=lengths)
    for b, n in enumerate(lengths.tolist()):
        assert out[n:, b].abs().sum() == 0
        torch.testing.assert_close(h_n[0, b], out[n - 1, b])


def test_capture_is_eager_off_cuda():
    m = rnnkit.GRU(I, H, engine="explicit")
    with graphs.mode("on"):
        m(torch.randn(4, 2, I))
    assert capture.captured(m) == 0


# ------------------------------------------------------------------------------ CUDA

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (device script)")


@pytest.fixture
def no_tf32():
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


@cuda
@pytest.mark.parametrize("name", ["lstm", "gru", "layernorm_lstm"])
def test_cuda_graph_equals_eager(name, no_tf32):
    """Graph replay = the eager static path (float32, TF32 off), training and inference,
    across two buckets (a recapture), with no host synchronisation in the graphed calls."""
    torch.manual_seed(0)
    m = LAYERS[name](num_layers=2, bidirectional=True).cuda()
    for T, B in ((12, 6), (12, 6), (30, 9)):  # the second call replays, the third recaptures
        x = torch.randn(T, B, I, device="cuda", requires_grad=True)
        lengths = torch.randint(1, T + 1, (B,))
        lengths[0] = T
        results = []
        for use_graphs in (False, True):
            with graphs.mode("on"):
                if not use_graphs:
                    capture_call = capture.call
                    capture.call = lambda owner, key, fn, args: fn(*args)  # type: ignore
                try:
                    out, fin, _ = _run(m, x, None, lengths, False)
                    loss = out.square().sum() + sum(f.sum() for f in fin)
                    grads = torch.autograd.grad(loss, [x, *m.parameters()])
                    with torch.no_grad():
                        inf = _run(m, x, None, lengths, False)[0]
                finally:
                    if not use_graphs:
                        capture.call = capture_call
            results.append((out, grads, inf))
        (o1, g1, i1), (o2, g2, i2) = results
        torch.testing.assert_close(o2, o1, atol=1e-6, rtol=0)
        torch.testing.assert_close(i2, i1, atol=1e-6, rtol=0)
        for a, b in zip(g2, g1):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert capture.captured(m) == 4  # two buckets × (training, inference)
    x = torch.randn(12, 6, I, device="cuda", requires_grad=True)
    lengths = torch.full((6,), 12).pin_memory()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        with graphs.mode("on"):
            out = _run(m, x, None, lengths, False)[0]
            out.sum().backward()
    finally:
        torch.cuda.set_sync_debug_mode(0)


# ------------------------------------- the training graphs' wrapper, CUDA stood in for
# (stand_in_for_cuda: tests/conftest.py and tests/fake_graphs.py)


def test_training_graphs_give_gradients_that_accumulate(stand_in_for_cuda):
    """Through the training wrapper (parameters as graph inputs, gradients copied out of
    the graph's buffers): replayed twice before one update, the gradients add up as
    eager ones do; a second forward before the first one's backward runs eagerly and
    both backward passes are right; one capture serves every call of the bucket."""
    torch.manual_seed(0)
    m = rnnkit.LSTM(I, H, engine="explicit", num_layers=2, bidirectional=True).double()
    xs = [torch.randn(7, 3, I, dtype=torch.float64) for _ in range(2)]
    lengths = torch.tensor([7, 2, 5])

    def grads(mode: str, interleaved: bool = False) -> list[Tensor]:
        m.zero_grad(set_to_none=True)
        with graphs.mode(mode):
            if interleaved:  # forward, forward, backward, backward
                losses = [m(x, lengths=lengths)[0].square().sum() for x in xs]
                for loss in losses:
                    loss.backward()
            else:
                for x in xs:
                    m(x, lengths=lengths)[0].square().sum().backward()
        return [p.grad.clone() for p in m.parameters()]

    want = grads("off")
    for interleaved in (False, True):
        got = grads("on", interleaved)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, atol=1e-10, rtol=0)
    assert capture.captured(m) == 1


def test_training_graph_of_the_decoder_loop(stand_in_for_cuda):
    """loss_sum through the wrapper: the encoder before the graph, the decoder loop in it;
    its gradients reach every parameter, encoder included, as eagerly."""
    from rnnkit.graphs.seq2seq import loss_sum
    from rnnkit.model import Seq2Seq

    torch.manual_seed(0)
    model = Seq2Seq(12, 12, 8, 16, cell="gru", dropout=0.0, emb_dropout=0.0).double()
    src = torch.randint(4, 12, (5, 9))
    tgt = torch.randint(4, 12, (5, 8))
    lengths = torch.tensor([9, 4, 6, 9, 2])
    for b, n in enumerate(lengths.tolist()):
        src[b, n:] = 0
    results = []
    for mode in ("off", "on"):
        with graphs.mode(mode):
            loss = loss_sum(model, src, lengths, tgt, 0.1)
            results.append((loss, torch.autograd.grad(loss, list(model.parameters()))))
    (l1, g1), (l2, g2) = results
    torch.testing.assert_close(l2, l1, atol=1e-10, rtol=0)
    for a, b in zip(g2, g1):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)
    assert capture.captured(model) == 1


def test_an_abandoned_forward_does_not_keep_the_graph_waiting(stand_in_for_cuda):
    """A forward whose result is dropped without backward (its autograd graph gone), or
    whose backward has run (its graph still alive), leaves the graph free: the next call
    replays it instead of running eagerly."""
    import gc

    m = rnnkit.GRU(I, H, engine="explicit")
    x = torch.randn(5, 2, I)
    REPLAYS.clear()
    with graphs.mode("on"):
        loss = m(x)[0].sum()
        del loss  # dropped without backward
        gc.collect()
        kept = m(x)[0].sum()
        kept.backward()  # its graph stays while `kept` lives, but backward has run
        m(x)[0].sum().backward()
    assert len(REPLAYS) == 3


def test_a_capture_that_fails_warns_and_runs_eagerly(monkeypatch):
    """An inference graph that cannot be made (here: CUDA streams on the CPU) warns once
    for its bucket and leaves the eager result."""
    monkeypatch.setattr(capture, "_graphable", lambda x: True)
    m = rnnkit.GRU(I, H, engine="explicit")
    x = torch.randn(5, 2, I)
    with graphs.mode("off"), torch.no_grad():
        want = m(x)[0]
    with graphs.mode("on"), torch.no_grad():
        with pytest.warns(RuntimeWarning, match="could not capture GRU in a CUDA graph"):
            got = m(x)[0]
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the same bucket again: no second warning
            again = m(x)[0]
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(again, want)
    assert capture.captured(m) == 0


def test_results_of_a_replay_are_the_callers(stand_in_for_cuda):
    """What an inference graph returns is copied out of its buffers: a second call of the
    same bucket leaves the first result as it was."""
    m = rnnkit.LSTM(I, H, engine="explicit")
    x1, x2 = torch.randn(5, 2, I), torch.randn(5, 2, I)
    with graphs.mode("off"), torch.no_grad():
        want = m(x1)[0]
    with graphs.mode("on"), torch.no_grad():
        first = m(x1)[0]
        m(x2)
    torch.testing.assert_close(first, want)
