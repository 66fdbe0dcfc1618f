"""``--replace-unk``: an output ``<unk>`` is written as the source token its attention
row weighs most (Luong et al. 2015; OpenNMT's ``-replace_unk``)."""

from __future__ import annotations

import json

import httpx
import pytest
import torch
from toy import one_thread, save_bundle, word_bundle  # noqa: F401 (fixture)

from rnnkit.cli import main
from rnnkit.data.vocab import UNK, UNK_ID
from rnnkit.translate import translate_lines

LINES = ["a b Zürich c", "", "d 1984 e f g", "h", "Zürich"]


def unk_bundle(seed: int = 0, unk_bias: float = 30.0):  # noqa: ANN201
    """An untrained word model whose output layer favours ``<unk>`` by ``unk_bias``."""
    b = word_bundle(seed)
    with torch.no_grad():
        b.model.W_out.bias[UNK_ID] += unk_bias
    return b


def by_hand(t) -> str:  # noqa: ANN001
    """The text a translation gets when each <unk> is the most attended source token."""
    source = t.src_tokens[:-1]  # </s> is never copied
    words = [
        source[int(t.attention[k, : len(source)].argmax())] if tok == UNK else tok
        for k, tok in enumerate(t.out_tokens)
        if tok not in ("<pad>", "<s>", "</s>")  # as Vocab.decode
    ]
    return " ".join(words)


@pytest.mark.parametrize("beam", [1, 3])
def test_each_unk_is_the_source_token_attended_most(beam):
    b = unk_bundle()
    plain = translate_lines(b, LINES, beam, n_best=beam)
    copied = translate_lines(b, LINES, beam, n_best=beam, replace_unk=True)
    checked = 0
    for p_line, c_line in zip(plain, copied):
        for p, c in zip(p_line, c_line):
            assert (c.score, c.out_tokens) == (p.score, p.out_tokens)  # the search is the same
            assert torch.equal(c.attention, p.attention) if p.attention is not None else True
            if UNK in p.out_tokens:
                assert "⁇" not in c.text and UNK not in c.text
                assert c.text == by_hand(p)
                checked += p.out_tokens.count(UNK)
    assert checked >= 10
    # a word the encoder read as <unk> is copied as it was written
    assert set(copied[4][0].text.split()) == {"Zürich"}
    assert copied[1][0].text == ""


def test_outputs_without_unk_are_unchanged():
    b = unk_bundle(seed=1, unk_bias=-30.0)  # never <unk>
    plain = translate_lines(b, LINES, 3)
    assert [t[0].text for t in translate_lines(b, LINES, 3, replace_unk=True)] == [
        t[0].text for t in plain
    ]


def test_a_model_without_attention_is_refused():
    b = word_bundle()
    b.config.model.attention = "none"
    with pytest.raises(ValueError, match="needs attention"):
        translate_lines(b, ["a b"], 1, replace_unk=True)


def test_cli_translate_and_evaluate(tmp_path, capsys):
    ckpt = save_bundle(unk_bundle(), tmp_path / "m.pt")
    src = tmp_path / "src.txt"
    src.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    out = tmp_path / "out.txt"
    assert main(["translate", str(ckpt), "--input", str(src), "--output", str(out)]) == 0
    assert "Zürich" not in out.read_text(encoding="utf-8")
    args = ["translate", str(ckpt), "--input", str(src), "--output", str(out), "--replace-unk"]
    assert main(args) == 0
    texts = out.read_text(encoding="utf-8").splitlines()
    assert texts == [t[0].text for t in translate_lines(unk_bundle(), LINES, replace_unk=True)]
    capsys.readouterr()
    ev = ["evaluate", str(ckpt), "--src", str(src), "--ref", str(src), "--replace-unk"]
    assert main([*ev, "--output", str(out)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["replace_unk"] is True
    assert out.read_text(encoding="utf-8").splitlines() == texts  # evaluate copies too


def test_served():
    from test_serve import running

    b = unk_bundle()
    want = [t[0].text for t in translate_lines(b, LINES, 1, replace_unk=True)]
    with running(b) as url:
        body = {"texts": LINES, "beam": 1, "replace_unk": True}
        r = httpx.post(f"{url}/translate", json=body, timeout=30)
        assert r.status_code == 200, r.text
        assert [t["text"] for t in r.json()["translations"]] == want
        b.config.model.attention = "none"
        r = httpx.post(f"{url}/translate", json=body, timeout=30)
        assert r.status_code == 422 and "attention" in r.json()["detail"]


def test_the_source_tokens_read_as_unk_are_named() -> None:
    """``source_unknown`` (translate --json, the server, the page's red tokens): which
    source tokens the vocabulary lacks, so that an explanation does not show them as if
    the model had read them."""
    from rnnkit.translate import as_json

    got = translate_lines(word_bundle(), ["a zz b qq", "a b", ""])
    assert [r[0].src_unknown for r in got] == [[1, 3], [], []]
    assert as_json(got[0])["source_unknown"] == [1, 3]
    assert got[0][0].src_tokens[1] == "zz"
