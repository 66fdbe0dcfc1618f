"""``rnnkit inspect``: the recorded gates are the model's (recomputed by hand from the
state dict), shapes follow the sentence, attention rows sum to one, saturation fractions
are right on a hand-made example and blind to padding, and the figures and the
self-contained page are written."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch
from torch import Tensor
from toy import one_thread

from rnnkit.about import checkpoint_info, model_info
from rnnkit.checkpoint import Bundle, CheckpointError, build_model, save_checkpoint
from rnnkit.cli import main
from rnnkit.config import config_from_dict, config_to_dict
from rnnkit.data import DataError, Vocab, WordTokenizer
from rnnkit.inspect import run_inspect, top_units
from rnnkit.record import (
    SIGMOID_GATES,
    record,
    record_translation,
    saturation,
    saturation_fractions,
)
from rnnkit.translate import translate_lines

H = 8
WORDS = list("abcdefghij")
SENTENCE = "a b c d x"  # x is not in the vocabulary: read as <unk>
CORPUS = ["a b c", "d e f g h i j a", "j", "", "b b b b c"]  # lengths differ: padding


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


def make_bundle(
    cell: str = "lstm",
    attention: str = "bahdanau",
    enc_layers: int = 2,
    dec_layers: int = 2,
    seed: int = 0,
) -> Bundle:
    """An untrained model, weights scaled ×3 so that some gates saturate."""
    cfg = config_from_dict(
        {
            "data": {"task": "reverse", "tokenizer": "word"},
            "model": {
                "cell": cell,
                "emb_size": H,
                "hidden_size": H,
                "enc_layers": enc_layers,
                "dec_layers": dec_layers,
                "attention": attention,
                "engine": "explicit",
            },
            "decode": {"beam_size": 1, "max_len_a": 1.0, "max_len_b": 3},
        }
    )
    vocab = Vocab.build([WORDS])
    torch.manual_seed(seed)
    model = build_model(cfg, len(vocab), len(vocab))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    tok = WordTokenizer()
    return Bundle(cfg, model.eval(), tok, tok, vocab, vocab, 0)


def save_bundle(bundle: Bundle, path: Path) -> Path:
    save_checkpoint(
        path,
        {
            "config": config_to_dict(bundle.config),
            "model": bundle.model.state_dict(),
            "src_tokenizer": bundle.src_tokenizer.to_state(),
            "tgt_tokenizer": bundle.tgt_tokenizer.to_state(),
            "src_vocab": bundle.src_vocab.to_state(),
            "tgt_vocab": bundle.tgt_vocab.to_state(),
            "step": 0,
        },
    )
    return path


# ----------------------------------------------------------------- cells by hand


def by_hand(kind: str, x: Tensor, h: Tensor, c: Tensor | None, w: list[Tensor]) -> dict:
    """One step of the DESIGN.md equations, x ``(I,)``, h / c ``(H,)``."""
    w_ih, w_hh, b_ih, b_hh = w
    gi, gh = w_ih @ x + b_ih, w_hh @ h + b_hh
    if kind == "LSTM":
        i, f, g, o = (gi + gh).chunk(4)
        i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
        c = f * c + i * g
        return {"input": i, "forget": f, "candidate": g, "output": o, "cell": c,
                "hidden": o * c.tanh()}  # fmt: skip
    if kind == "GRU":
        (gi_r, gi_z, gi_n), (gh_r, gh_z, gh_n) = gi.chunk(3), gh.chunk(3)
        r, z = (gi_r + gh_r).sigmoid(), (gi_z + gh_z).sigmoid()
        n = (gi_n + r * gh_n).tanh()
        return {"reset": r, "update": z, "candidate": n, "hidden": (1 - z) * n + z * h}
    return {"hidden": (gi + gh).tanh()}


def unroll_by_hand(kind: str, xs: Tensor, w: list[Tensor], reverse: bool) -> dict[str, Tensor]:
    """A direction of a layer over xs ``(S, I)`` from zero state → name → ``(S, H)``."""
    h, c = torch.zeros(H), torch.zeros(H)
    steps: dict[int, dict] = {}
    for t in reversed(range(len(xs))) if reverse else range(len(xs)):
        steps[t] = by_hand(kind, xs[t], h, c, w)
        h, c = steps[t]["hidden"], steps[t].get("cell")
    return {k: torch.stack([steps[t][k] for t in range(len(xs))]) for k in steps[0]}


def layer_weights(bundle: Bundle, layer: int, direction: str) -> list[Tensor]:
    sd = bundle.model.encoder.rnn.state_dict()
    sfx = f"_l{layer}" + ("_reverse" if direction == "backward" else "")
    return [sd[f"{n}{sfx}"] for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]


# ----------------------------------------------------------------------- tests


@pytest.mark.parametrize(
    "cell,attention", [("lstm", "bahdanau"), ("gru", "luong"), ("rnn", "none")]
)
def test_recorded_shapes_follow_the_sentence(cell, attention):
    bundle = make_bundle(cell, attention)
    rec = record(bundle, SENTENCE)
    S, T = len(SENTENCE.split()) + 1, len(rec.out_tokens)
    assert rec.src_tokens == SENTENCE.split() + ["</s>"]
    assert 1 <= T <= 1.0 * S + 3
    assert ("</s>" in rec.out_tokens) == (rec.out_tokens[-1] == "</s>")
    fields = {"LSTM": 6, "GRU": 4, "RNN": 1}[rec.cell]
    parts = {("encoder", k, d) for k in range(2) for d in ("forward", "backward")}
    assert set(rec.gates) == parts | {("decoder", k, "forward") for k in range(2)}
    for part, traces in rec.gates.items():
        assert len(traces) == fields
        for values in traces.values():
            assert values.shape == ((S if part[0] == "encoder" else T), H)
    if attention == "none":
        assert rec.attention is None
    else:
        assert rec.attention is not None and rec.attention.shape == (T, S)
        torch.testing.assert_close(rec.attention.sum(1), torch.ones(T))
    # the recorded output is greedy search's
    [[greedy]] = translate_lines(bundle, [SENTENCE], beam_size=1)
    assert (rec.translation, rec.out_tokens) == (greedy.text, greedy.out_tokens)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_encoder_gates_are_the_equations_on_the_state_dict(cell):
    bundle = make_bundle(cell)
    rec = record(bundle, SENTENCE)
    kind, model = rec.cell, bundle.model
    ids = torch.tensor([bundle.src_vocab.encode(SENTENCE.split())])
    x = model.encoder.embed.weight.detach()[ids[0]]  # (S, E)
    below = []
    for d in ("forward", "backward"):
        mine = unroll_by_hand(kind, x, layer_weights(bundle, 0, d), reverse=d == "backward")
        for name, values in mine.items():
            torch.testing.assert_close(rec.gates[("encoder", 0, d)][name], values)
        below.append(mine["hidden"])
    x1 = torch.cat(below, 1)  # layer 1 reads [h→; h←] of layer 0
    for d in ("forward", "backward"):
        mine = unroll_by_hand(kind, x1, layer_weights(bundle, 1, d), reverse=d == "backward")
        for name, values in mine.items():
            torch.testing.assert_close(rec.gates[("encoder", 1, d)][name], values)
    # the top layer's trace is what the encoder hands the decoder
    with torch.no_grad():
        enc = model.encode(ids, torch.tensor([ids.shape[1]]))
    fwd, bwd = rec.gates[("encoder", 1, "forward")], rec.gates[("encoder", 1, "backward")]
    torch.testing.assert_close(fwd["hidden"][-1], enc.final[0, :H])
    torch.testing.assert_close(bwd["hidden"][0], enc.final[0, H:])
    torch.testing.assert_close(torch.cat([fwd["hidden"], bwd["hidden"]], 1), enc.states[0])


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_first_decoder_step_is_the_equations_on_the_state_dict(cell):
    bundle = make_bundle(cell)
    rec = record(bundle, SENTENCE)
    model, dec = bundle.model, bundle.model.decoder
    ids = torch.tensor([bundle.src_vocab.encode(SENTENCE.split())])
    with torch.no_grad():
        enc = model.encode(ids, torch.tensor([ids.shape[1]]))
        s0 = torch.tanh(dec.bridge(enc.final))[0]  # (H,): s_0 of every layer, c_0 = s_0
        assert dec.attention is not None
        _, alpha = dec.attention(s0[None], enc.states, enc.mask, projected_keys=enc.keys)
        assert rec.attention is not None
        torch.testing.assert_close(rec.attention[0], alpha[0])
        context = rec.attention[0] @ enc.states[0]  # c_1 = Σ_j α_1j h_j
        e = dec.embed.weight[model.bos_id]
        x = torch.cat([e, context])
        for layer, cell_k in enumerate(dec.rnn.cells):
            w = [cell_k.weight_ih, cell_k.weight_hh, cell_k.bias_ih, cell_k.bias_hh]
            mine = by_hand(rec.cell, x, s0, s0, w)
            for name, value in mine.items():
                torch.testing.assert_close(rec.gates[("decoder", layer, "forward")][name][0], value)
            x = mine["hidden"]
        o = torch.tanh(dec.W_o(torch.cat([x, context, e])))
        y1 = int(model.W_out(o).argmax())
    assert rec.out_tokens[0] == bundle.tgt_vocab.token(y1)


def test_saturation_fractions_on_a_hand_made_example():
    values = torch.tensor(
        [
            [0.05, 0.50, 0.95],
            [0.00, 0.91, 0.10],  # 0.1 is not < 0.1
            [0.20, 0.90, 1.00],  # 0.9 is not > 0.9
            [0.09, 0.50, 0.99],
        ]
    )
    left, right = saturation_fractions(values)
    assert left.tolist() == [0.75, 0.0, 0.0]
    assert right.tolist() == [0.0, 0.25, 0.75]
    left, right = saturation_fractions(values, left=0.5, right=0.5)
    assert left.tolist() == [1.0, 0.0, 0.25]
    assert right.tolist() == [0.0, 0.5, 0.75]
    with pytest.raises(ValueError):
        saturation_fractions(torch.empty(0, 3))


def test_top_units_are_those_that_vary_most():
    values = torch.tensor([[0.5, 0.0, 0.3], [0.5, 1.0, 0.5], [0.5, 0.0, 0.4]])
    assert top_units(values, 2).tolist() == [1, 2]
    assert top_units(values, 9).tolist() == [1, 2, 0]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_saturation_of_a_padded_batch_is_that_of_sentences_one_by_one(cell):
    bundle = make_bundle(cell)
    lo, hi = 0.45, 0.55  # loose thresholds: most units count, so padding would show
    batched = saturation(bundle, CORPUS, left=lo, right=hi)
    recs = [record(bundle, s) for s in CORPUS if s.strip()]
    gates = SIGMOID_GATES[recs[0].cell]
    assert set(batched) == {(*p, g) for p in recs[0].gates for g in gates}
    for (part, layer, d, gate), (left, right) in batched.items():
        values = torch.cat([r.gates[(part, layer, d)][gate] for r in recs])  # (N, H)
        want_left, want_right = saturation_fractions(values, lo, hi)
        torch.testing.assert_close(left, want_left)
        torch.testing.assert_close(right, want_right)
        assert ((left >= 0) & (right >= 0) & (left + right <= 1)).all()
    assert any(float(lf.sum()) > 0 for lf, _ in batched.values())
    assert any(float(rf.sum()) > 0 for _, rf in batched.values())


def test_saturation_of_a_vanilla_rnn_is_empty_and_an_empty_corpus_is_an_error():
    bundle = make_bundle("rnn", enc_layers=1, dec_layers=1)
    assert saturation(bundle, CORPUS) == {}
    with pytest.raises(DataError):
        saturation(bundle, ["", "   "])
    with pytest.raises(DataError):
        record(bundle, "  ")


def _png(path: Path) -> bool:
    data = path.read_bytes()
    return data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 2000


def test_run_inspect_writes_figures_and_a_self_contained_page(tmp_path):
    ckpt = save_bundle(make_bundle("lstm", enc_layers=1, dec_layers=1), tmp_path / "m.pt")
    sentence = "a b </script><b> c"
    result = run_inspect(ckpt, sentence, tmp_path / "out", corpus=CORPUS, top_units=4)
    names = sorted(p.name for p in result.files)
    assert names == sorted(
        [
            "attention.png",
            "gates_encoder_l0_forward.png",
            "gates_encoder_l0_backward.png",
            "gates_decoder_l0.png",
            "saturation.png",
            "inspect.html",
        ]
    )
    for f in result.files:
        assert f.parent == tmp_path / "out" and f.is_file()
        assert f.suffix == ".html" or _png(f)
    assert result.translation == result.recording.translation
    page = (tmp_path / "out" / "inspect.html").read_text(encoding="utf-8")
    assert "http://" not in page and "https://" not in page
    assert page.count("data:image/png;base64,") == 5
    assert "&lt;/script&gt;&lt;b&gt;" in page and "</script><b>" not in page
    data = re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.S)
    assert data is not None
    for tok in result.recording.src_tokens + result.recording.out_tokens:
        assert tok.replace("<", "\\u003c") in data.group(1)


def test_cli_inspect(tmp_path, capsys):
    ckpt = save_bundle(make_bundle("gru", enc_layers=1, dec_layers=1), tmp_path / "m.pt")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(CORPUS) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    argv = ["inspect", str(ckpt), SENTENCE, "--out", str(out), "--corpus", str(corpus)]
    assert main([*argv, "--units", "4"]) == 0
    stdout = capsys.readouterr().out
    assert stdout.startswith("translation: ")
    assert f"wrote {out / 'inspect.html'}" in stdout and (out / "saturation.png").is_file()
    for bad in (["inspect", str(ckpt), "  "], ["inspect", str(tmp_path / "nope.pt"), "a"]):
        assert main([*bad, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("rnnkit: error: ") and err.count("\n") == 1


CUSTOM_CELL = '''
from typing import NamedTuple
import torch
from torch import Tensor
import rnnkit


class SqueezeGates(NamedTuple):
    squeeze: Tensor
    hidden: Tensor


class SqueezeCell(rnnkit.Cell):
    """s = σ(W_ih x + W_hh h + b); h = s ⊙ h_prev + (1 - s) ⊙ tanh(W_ih x)."""

    Gates = SqueezeGates
    chunks = 2

    def step(self, gi, state):
        a_s, a_h = gi.chunk(2, dim=1)
        s = torch.sigmoid(a_s + self.hh(state[0], slice(0, 1)))
        h = s * state[0] + (1 - s) * torch.tanh(a_h)
        return (h,), SqueezeGates(s, h)


class DeclaredSqueezeCell(SqueezeCell):
    sigmoid = ("squeeze",)
'''


@pytest.mark.parametrize("cell", ["mgu", "cifg_lstm", "layernorm_gru", "custom", "declared"])
def test_inspect_draws_the_declared_gates_of_any_cell(cell, tmp_path, monkeypatch):
    """Variants and a custom cell (model.cell = module:Class) are recorded and drawn by
    the gate names their cell declares; saturation covers their σ gates by name, or those
    the cell declares as ``sigmoid`` (a custom cell was told it was 'a vanilla RNN')."""
    said: list[str] = []
    if cell in ("custom", "declared"):
        (tmp_path / "my_cells.py").write_text(CUSTOM_CELL, encoding="utf-8")
        monkeypatch.syspath_prepend(str(tmp_path))
        cell = {"custom": "my_cells:SqueezeCell", "declared": "my_cells:DeclaredSqueezeCell"}[cell]
    bundle = make_bundle(cell, enc_layers=1, dec_layers=1)
    rec = record(bundle, "a b c")
    declared = type(bundle.model.decoder.rnn.cells[0]).Gates._fields
    for part, traces in rec.gates.items():
        assert tuple(traces) == declared, part
    ckpt = save_bundle(bundle, tmp_path / "m.pt")
    result = run_inspect(
        ckpt, "a b c", tmp_path / "out", corpus=CORPUS, top_units=4, log=said.append
    )
    names = {p.name for p in result.files}
    assert {"gates_encoder_l0_forward.png", "gates_decoder_l0.png", "inspect.html"} <= names
    sat = saturation(bundle, CORPUS)
    sigmoid = {
        "mgu": {"forget"},
        "cifg_lstm": {"input", "forget", "output"},
        "layernorm_gru": {"reset", "update"},
        "my_cells:DeclaredSqueezeCell": {"squeeze"},
    }.get(cell, set())
    assert {key[3] for key in sat} == sigmoid
    assert ("saturation.png" in names) == bool(sigmoid)
    if not sigmoid:
        assert any("Squeeze has no gate named as a sigmoid gate is" in m for m in said), said
    assert rec.sigmoid == tuple(sorted(sigmoid, key=declared.index))
    # the page (and the server's "gates") draw the cell's σ gates on 0…1, whatever their
    # names (a declared "squeeze" was drawn on ±max, as the PNG was not)
    from rnnkit.inspect_html import page_data

    ranges = page_data(rec)["ranges"]
    assert {k for k, v in ranges.items() if v == [0, 1]} == sigmoid
    # info names a variant by its kind, a custom cell as the config does (it must import)
    named = {"mgu": "MGU", "cifg_lstm": "CIFGLSTM", "layernorm_gru": "LayerNormGRU"}
    assert model_info(bundle, "m.pt")["cell"] == named.get(cell, cell)
    if ":" in cell:  # elsewhere, where the module is not importable: the file and the way
        monkeypatch.delitem(sys.modules, "my_cells", raising=False)
        monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(tmp_path)])
        with pytest.raises(CheckpointError) as info:
            checkpoint_info(ckpt)
        said = str(info.value)
        assert said.startswith(f"{ckpt}: model.cell '{cell}': cannot import it")
        assert said.endswith("or add that folder to PYTHONPATH)")


def test_inspect_records_the_translation_that_translate_gives(tmp_path):
    """With the checkpoint's beam (or --beam K), inspect draws beam search's best
    translation, the decoder reading it: the same tokens, and the attention beam search
    computed for them; --beam 1 is greedy search's."""
    bundle = make_bundle("lstm", enc_layers=1, dec_layers=1, seed=3)
    ckpt = save_bundle(bundle, tmp_path / "m.pt")
    for beam in (1, 4):
        best = translate_lines(bundle, [SENTENCE], beam)[0][0]
        result = run_inspect(ckpt, SENTENCE, tmp_path / f"out{beam}", beam=beam)
        rec = result.recording
        assert rec.out_tokens == best.out_tokens and result.translation == best.text
        assert best.attention is not None and rec.attention is not None
        torch.testing.assert_close(rec.attention, best.attention, atol=1e-5, rtol=1e-5)
        said = "greedy" if beam == 1 else "beam 4"
        assert rec.decoding == said
        assert f"translation ({said})" in (tmp_path / f"out{beam}" / "inspect.html").read_text()
    greedy = translate_lines(bundle, [SENTENCE], 1)[0][0].out_tokens
    assert best.out_tokens != greedy  # (seed 3: beam 4 finds another output than greedy)


def test_dollars_in_a_sentence_are_drawn_as_typed(tmp_path):
    """matplotlib reads $...$ as math: "$^$" failed to draw; now every $ is plain text."""
    from rnnkit.inspect import plot_attention

    tokens = ["9", "$^$", "may", "</s>"]
    path = plot_attention(tokens, tokens, torch.eye(4), tmp_path / "a.png", "for $5 or $^$")
    assert _png(path)


def test_a_model_without_attention_records_its_beam_translation_to_its_end(tmp_path):
    """translate's out_tokens end with </s> when the output did, attention or not; inspect
    reads them (an empty beam output was an error, and a model without attention lost
    its last step)."""
    seen_empty = False
    for seed in (1, 2):
        bundle = make_bundle("lstm", attention="none", enc_layers=1, dec_layers=1, seed=seed)
        for beam in (1, 4):
            best = translate_lines(bundle, [SENTENCE], beam)[0][0]
            rec = record_translation(bundle, SENTENCE, beam)  # what run_inspect records
            assert rec.out_tokens == best.out_tokens and rec.attention is None  # </s> included
            if best.out_tokens == ["</s>"]:  # and the command draws it
                seen_empty = True
                ckpt = save_bundle(bundle, tmp_path / f"m{seed}.pt")
                rec = run_inspect(ckpt, SENTENCE, tmp_path / f"o{seed}{beam}", beam=beam).recording
                assert rec.out_tokens == ["</s>"] and rec.attention is None
    assert seen_empty  # (seed 2: beam 4's best is the empty output)


def test_a_second_inspect_into_a_folder_leaves_none_of_the_firsts_figures(tmp_path, monkeypatch):
    """Another model's attention.png and saturation.png stayed beside the new gate
    figures (the default ./inspect folder is used again and again); a file of the user's
    stays. And the attention title cuts a long sentence with an ellipsis. (Which files
    are left is the point here: the figures are written empty, not drawn, a second each.)"""
    import rnnkit.inspect_plots as inspect_module  # (where the figures are drawn)

    def written_undrawn(fig, path, dpi=150):
        inspect_module.plt.close(fig)
        Path(path).write_bytes(b"")
        return Path(path)

    monkeypatch.setattr(inspect_module, "save_figure", written_undrawn)
    out = tmp_path / "out"
    first = save_bundle(make_bundle("lstm", enc_layers=2, dec_layers=2), tmp_path / "a.pt")
    long = " ".join(["a b c d e f g h"] * 10)
    before = {p.name for p in run_inspect(first, long, out, corpus=CORPUS).files}
    assert {"attention.png", "saturation.png", "gates_encoder_l1_backward.png"} <= before
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    plain = make_bundle("gru", attention="none", enc_layers=1, dec_layers=1)
    after = {p.name for p in run_inspect(save_bundle(plain, tmp_path / "b.pt"), "a b", out).files}
    assert {p.name for p in out.iterdir()} == after | {"notes.txt"}
    assert "attention.png" not in after and "gates_encoder_l0_forward.png" in after
    # a folder no inspect wrote: files of inspect's names are the user's, and stay
    mine = tmp_path / "pics"
    mine.mkdir()
    for name in ("saturation.png", "gates_2023_holiday.png"):
        (mine / name).write_text("mine", encoding="utf-8")
    run_inspect(save_bundle(plain, tmp_path / "b.pt"), "a b", mine)
    assert (mine / "saturation.png").read_text() == "mine"
    assert (mine / "gates_2023_holiday.png").read_text() == "mine"
    from rnnkit.inspect import _clip

    assert _clip(long) == long[:59] + "…" and _clip("a b") == "a b"


def test_the_recorder_never_writes_padding_or_bos_as_greedy_search():
    """Seed 6's untrained LSTM writes <pad> at every step by plain argmax; the recorder
    makes greedy search's choices (which leave out <pad> and <s>)."""
    bundle = make_bundle("lstm", enc_layers=1, dec_layers=1, seed=6)
    rec = record(bundle, SENTENCE)
    assert "<pad>" not in rec.out_tokens and "<s>" not in rec.out_tokens
    assert rec.out_tokens == translate_lines(bundle, [SENTENCE], 1)[0][0].out_tokens


def test_the_installed_command_finds_a_cell_module_in_the_current_folder(tmp_path, monkeypatch):
    """python -m rnnkit has the current folder on its path, the installed rnnkit command
    not: a cell module beside the run was "No module named 'my_cells'" there."""
    import os
    import subprocess

    (tmp_path / "my_cells.py").write_text(CUSTOM_CELL, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    save_bundle(make_bundle("my_cells:SqueezeCell", enc_layers=1, dec_layers=1), tmp_path / "m.pt")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"OMP_NUM_THREADS": "1"}
    console = "import sys; from rnnkit.cli import console; sys.exit(console())"  # as installed
    r = subprocess.run([sys.executable, "-P", "-c", console, "info", "m.pt"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120, env=env)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert '"cell": "my_cells:SqueezeCell"' in r.stdout


def test_characters_the_font_lacks_are_said_once_not_warned_per_glyph(tmp_path, recwarn):
    """ "漢字" drew as boxes with four "Glyph 28450 missing from font(s) DejaVu Sans"
    warnings (each with a quoted source line) on stderr and no word of why."""
    from rnnkit.figures import undrawable

    assert undrawable("a 漢b字 漢 é") == ["漢", "字"]  # é: DejaVu Sans has it
    said: list[str] = []
    plain = make_bundle("gru", enc_layers=1, dec_layers=1)
    run_inspect(save_bundle(plain, tmp_path / "m.pt"), "a 漢字 b", tmp_path / "o", log=said.append)
    assert [m for m in said if "no glyph" in m] == [
        "note: the figures' font has no glyph for 漢 字: boxes there (inspect.html shows the text)"
    ]
    assert not [w for w in recwarn if "Glyph" in str(w.message)]


def test_gate_figure_titles_name_the_panels_as_for_the_stock_cell(tmp_path, monkeypatch):
    """A LayerNormLSTM's figure was titled "LayerNormLSTM forget, input, output, cell"
    (the LSTM's: "LSTM gates and cell state"), and one unit was "the 1 of 8 units that
    vary most"."""
    import rnnkit.inspect_plots as inspect_module  # (where the figures are drawn)

    titles: list[tuple[str, list[str]]] = []

    def kept(fig, path, dpi=150):
        head = fig._suptitle.get_text() if fig._suptitle is not None else ""
        titles.append((head, [ax.get_title() for ax in fig.axes]))
        inspect_module.plt.close(fig)
        Path(path).write_bytes(b"")
        return Path(path)

    monkeypatch.setattr(inspect_module, "save_figure", kept)
    ln = make_bundle("layernorm_lstm", enc_layers=1, dec_layers=1)
    run_inspect(save_bundle(ln, tmp_path / "m.pt"), "a b", tmp_path / "o", top_units=1)
    suptitles = [s for s, _ in titles if "layer" in s]
    assert suptitles and all(s.startswith("LayerNormLSTM gates and cell state") for s in suptitles)
    panels = [t for _, axes in titles for t in axes if " gate" in t or t.startswith("cell")]
    assert panels and all(
        t.endswith(f"the unit of {H} that varies most, most varying on top") for t in panels
    )
