"""Data layer: tokenizers, vocabulary, corpus readers and their error messages, download."""

from __future__ import annotations

import gzip
import pickle
import unicodedata
from pathlib import Path

import pytest

from rnnkit.data import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    SPECIALS,
    UNK_ID,
    CharTokenizer,
    DataError,
    SentencePieceTokenizer,
    Vocab,
    WordTokenizer,
    fetch_multi30k,
    fetch_tatoeba,
    filter_pairs,
    make_task,
    make_tokenizer,
    read_lines,
    read_parallel,
    read_tsv,
    split_held_out,
    tokenizer_from_state,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MULTI30K = DATA / "multi30k"


def multi30k() -> Path:
    if not (MULTI30K / "train.de").is_file():
        pytest.skip(f"../shared/data/multi30k not found: {MULTI30K}")
    return MULTI30K


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------- vocabulary


def test_vocab_specials_and_order() -> None:
    v = Vocab.build([["b", "a", "c"], ["a", "c"], ["a", "<s>"]])
    assert v.tokens[:4] == list(SPECIALS) == ["<pad>", "<unk>", "<s>", "</s>"]
    assert (v.pad_id, v.unk_id, v.bos_id, v.eos_id) == (PAD_ID, UNK_ID, BOS_ID, EOS_ID)
    assert (PAD_ID, UNK_ID, BOS_ID, EOS_ID) == (0, 1, 2, 3)
    assert v.tokens[4:] == ["a", "c", "b"]  # by frequency, ties alphabetically
    assert Vocab.build([["z", "y", "x"]], max_size=2).tokens[4:] == ["x", "y"]
    assert Vocab.build([["a", "a", "b"]], min_freq=2).tokens[4:] == ["a"]


def test_vocab_encode_decode_round_trip() -> None:
    sents = [["the", "cat", "sat"], ["a", "dog", "ran", "home"]]
    v = Vocab.build(sents)
    for s in sents:
        ids = v.encode(s)
        assert ids[-1] == EOS_ID and len(ids) == len(s) + 1
        assert v.decode(ids) == s
        with_bos = v.encode(s, add_bos=True, add_eos=False)
        assert with_bos[0] == BOS_ID and v.decode(with_bos) == s
    assert v.encode(["zebra"], add_eos=False) == [UNK_ID]
    assert v.decode([BOS_ID, v["cat"], PAD_ID, EOS_ID, v["dog"]]) == ["cat"]
    # Text that spells a control symbol cannot end or start a sequence.
    assert v.encode(["</s>", "<s>", "<pad>"], add_eos=False) == [UNK_ID] * 3


def test_vocab_save_load_state(tmp_path: Path) -> None:
    v = Vocab.build([["ünïcode", "x", "y"], ["x"]])
    path = tmp_path / "sub" / "vocab.txt"
    v.save(path)
    assert Vocab.load(path) == v
    assert read_lines(path)[:4] == list(SPECIALS)
    assert [p.name for p in path.parent.iterdir()] == ["vocab.txt"]  # no temp file left
    assert Vocab.from_state(pickle.loads(pickle.dumps(v.to_state()))) == v
    assert Vocab.from_tokens(["x", "y"]).tokens == [*SPECIALS, "x", "y"]
    bad = write(tmp_path / "bad.txt", b"<pad>\n<unk>\n<s>\n</s>\na\n\nb\n")
    with pytest.raises(DataError, match=r"bad.txt:6: empty token"):
        Vocab.load(bad)


# ---------------------------------------------------------------- tokenizers


def _nmt_normal(s: str) -> str:
    """What sentencepiece's nmt_nfkc normalisation keeps of a sentence."""
    return " ".join(unicodedata.normalize("NFKC", s).split())


@pytest.mark.parametrize("model_type", ["bpe", "unigram"])
def test_sentencepiece_multi30k(model_type: str, capfd: pytest.CaptureFixture[str]) -> None:
    root = multi30k()
    train = read_lines(root / "train.de")[:400]
    held_out = read_lines(root / "val.de")[:200]
    tok = SentencePieceTokenizer.train(train, vocab_size=800, model_type=model_type, seed=1)
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # training is quiet
    for s in held_out:
        pieces = tok.encode(s)
        assert len(pieces) < len(s)  # subwords, not characters
        assert tok.decode(pieces) == _nmt_normal(s)
    again = tokenizer_from_state(pickle.loads(pickle.dumps(tok.to_state())))
    assert isinstance(again, SentencePieceTokenizer)
    assert [again.encode(s) for s in held_out] == [tok.encode(s) for s in held_out]
    # Deterministic: the same data and seed give the same model.
    same = SentencePieceTokenizer.train(train, vocab_size=800, model_type=model_type, seed=1)
    assert same.model_proto == tok.model_proto


@pytest.mark.parametrize("model_type", ["bpe", "unigram"])
def test_sentencepiece_generated_text(model_type: str) -> None:
    train = [s for s, _ in make_task("dates", 300, seed=0, long=True)]
    held_out = [s for s, _ in make_task("dates", 50, seed=1, long=True)]
    tok = make_tokenizer(model_type, train, vocab_size=300)
    for s in held_out:
        assert tok.decode(tok.encode(s)) == s
    again = tokenizer_from_state(tok.to_state())
    assert [again.encode(s) for s in held_out] == [tok.encode(s) for s in held_out]
    # byte fallback spells unseen characters so that they still round-trip
    fb = SentencePieceTokenizer.train(train, vocab_size=400, byte_fallback=True)
    assert fb.decode(fb.encode("日本 9 may 2018")) == "日本 9 may 2018"


def test_sentencepiece_errors() -> None:
    with pytest.raises(DataError, match="no training sentences"):
        SentencePieceTokenizer.train([], vocab_size=100)
    with pytest.raises(DataError, match="model_type"):
        SentencePieceTokenizer.train(["a b"], vocab_size=100, model_type="wordpiece")


def test_char_tokenizer_round_trip() -> None:
    tok = CharTokenizer()
    s = "Saturday  9 May, 2018 — Zürich"
    pieces = tok.encode(s)
    assert len(pieces) == len(s) and " " not in pieces and "▁" in pieces
    assert tok.decode(pieces) == s
    assert tokenizer_from_state(tok.to_state()).encode(s) == pieces
    assert CharTokenizer(lowercase=True).encode("Ab") == ["a", "b"]


@pytest.mark.parametrize(
    "text",
    [
        "Hello, world!",
        'A man (in a red shirt) says "hi" to a dog.',
        "Don't stop... it's 3.5 km/h at 10:30; well-known [sic] 100%?",
        "Ein Mann mit einem orangefarbenen Hut, der etwas anstarrt.",
        "हिन्दी एक भाषा है।",  # vowel signs and a virama (category M) inside words
        unicodedata.normalize("NFD", "Déjà vu, c'est-à-dire naïve-ish café."),  # decomposed
        "देखा-देखी, می\u200cخواهم",  # a mark before a hyphen; a zero-width non-joiner
    ],
)
def test_word_tokenizer_round_trip(text: str) -> None:
    tok = WordTokenizer()
    pieces = tok.encode(text)
    assert not any(len(p) > 1 and p[-1] in ",.!?;)" for p in pieces)  # punctuation split off
    same = unicodedata.normalize("NFC", text)  # (text is read in NFC)
    assert tok.decode(pieces) == same
    plain = WordTokenizer(split_punct=False)
    assert plain.decode(plain.encode(text)) == same
    again = tokenizer_from_state(pickle.loads(pickle.dumps(tok.to_state())))
    assert again.encode(text) == pieces


def test_word_tokenizer_splits_punctuation() -> None:
    assert WordTokenizer().encode("Hi, you!") == ["Hi", ",", "you", "!"]
    assert WordTokenizer().encode("हिन्दी भाषा।") == ["हिन्दी", "भाषा", "।"]  # marks stay in
    assert WordTokenizer().encode("देखा-देखी") == ["देखा-देखी"]
    # a checkpoint's tokenizer from before (no "marks" in its state) splits as it did,
    # as its vocabulary was built so; a new one says so in its state
    old = tokenizer_from_state({"kind": "word", "lowercase": False, "split_punct": True})
    assert old.encode("हिन्दी") == ["ह", "ि", "न", "्", "द", "ी"]
    assert tokenizer_from_state(WordTokenizer().to_state()).encode("हिन्दी") == ["हिन्दी"]
    assert WordTokenizer(lowercase=True).encode("Go\u202fNow") == ["go", "now"]
    with pytest.raises(DataError, match="unknown kind"):
        tokenizer_from_state({"kind": "nope"})


def test_word_and_char_tokenizers_read_text_in_nfc() -> None:
    """The same sentence typed with combining accents (NFD, as macOS file names and some
    keyboards give it) was all <unk>s to a word model trained on NFC text."""
    nfc = "Ein Mädchen läuft über die Straße"
    nfd = unicodedata.normalize("NFD", nfc)
    assert nfd != nfc
    for tok in (WordTokenizer(), WordTokenizer(split_punct=False), CharTokenizer()):
        assert tok.encode(nfd) == tok.encode(nfc)
        again = tokenizer_from_state(pickle.loads(pickle.dumps(tok.to_state())))
        assert again.encode(nfd) == tok.encode(nfc)
    # an older checkpoint's tokenizer (no "nfc" in its state) reads text as given, as its
    # vocabulary was built
    old_char = tokenizer_from_state({"kind": "char", "lowercase": False})
    assert old_char.encode(nfd) != old_char.encode(nfc)


# ---------------------------------------------------------------- corpus and errors


def test_read_lines_strips_only_the_newline(tmp_path: Path) -> None:
    f = write(tmp_path / "a.txt", " two  spaces \nx\u2028y\r\n\n".encode())
    assert read_lines(f) == [" two  spaces ", "x\u2028y", ""]


def test_a_file_of_cr_line_ends_is_named_not_read_as_one_line(tmp_path: Path) -> None:
    """Old Mac text (CR alone) read as one line: 'no training sentences' or a corpus of
    one pair, without a word of why."""
    f = write(tmp_path / "train.de", b"a b\rc d\re f\r")
    with pytest.raises(DataError, match=r"train\.de: lines end in CR alone .*tr '\\r' '\\n'"):
        read_lines(f)
    assert read_lines(write(tmp_path / "one.de", b"a b\r")) == ["a b"]  # (one CR line end)


def test_sentencepiece_trains_on_lines_over_its_default_limit() -> None:
    """sentencepiece skips lines over 4,192 bytes by default: a corpus of long lines
    trained on nothing ('no training sentences'), a mixed one without its long lines."""
    lines = [" ".join(f"w{i}x{k}" for k in range(900)) for i in range(5)]  # ~6 kB each
    assert all(len(s.encode()) > 4192 for s in lines)
    tok = SentencePieceTokenizer.train(lines, vocab_size=40, model_type="bpe")
    assert tok.decode(tok.encode(lines[0])) == lines[0]


def test_error_line_count_mismatch(tmp_path: Path) -> None:
    write(tmp_path / "train.de", b"a\nb\nc\n")
    write(tmp_path / "train.en", b"A\nB\n")
    with pytest.raises(DataError) as e:
        read_parallel(tmp_path / "train", "de", "en")
    msg = str(e.value)
    assert "train.de" in msg and "train.en" in msg and "(3 vs 2)" in msg and "\n" not in msg


def test_error_empty_file(tmp_path: Path) -> None:
    write(tmp_path / "train.de", b"a\n")
    write(tmp_path / "train.en", b"")
    with pytest.raises(DataError, match=r"train\.en: file is empty$"):
        read_parallel(tmp_path / "train", "de", "en")


def test_error_invalid_utf8_names_line(tmp_path: Path) -> None:
    f = write(tmp_path / "train.de", "ok\nnoch ok ä\n".encode() + b"bad \xff here\nfine\n")
    with pytest.raises(DataError, match=r"train\.de:3: invalid UTF-8"):
        read_lines(f)
    f = write(tmp_path / "first.de", b"\xc3\nx\n")  # truncated sequence on line 1
    with pytest.raises(DataError, match=r"first\.de:1: invalid UTF-8"):
        read_lines(f)


def test_error_missing_file(tmp_path: Path) -> None:
    write(tmp_path / "train.de", b"a\n")
    with pytest.raises(DataError, match=r"train\.en: file not found"):
        read_parallel(tmp_path / "train", "de", "en")


def test_error_tsv_missing_column(tmp_path: Path) -> None:
    f = write(tmp_path / "eng-fra.txt", b"Go.\tVa !\nRun!\tCours !\nOops\n")
    with pytest.raises(DataError, match=r"eng-fra\.txt:3: expected at least 2 .*found 1"):
        read_tsv(f)
    f = write(tmp_path / "ok.txt", b"Go.\tVa !\tCC-BY\n")
    assert read_tsv(f) == [("Go.", "Va !")]
    assert read_tsv(f, src_col=1, tgt_col=0) == [("Va !", "Go.")]


def test_read_real_corpora() -> None:
    root = multi30k()
    pairs = read_parallel(root / "val", "de", "en")
    assert len(pairs) == 1014 and all(s and t for s, t in pairs)
    tsv = DATA / "tatoeba-eng-fra" / "eng-fra.txt"
    if tsv.is_file():
        assert read_tsv(tsv)[0] == ("Go.", "Va !")


def test_filter_pairs_and_split() -> None:
    pairs = [("a b", "x"), ("", "x"), ("a b c d", "x"), ("a", "x y z w"), ("a", "x")]
    kept, dropped = filter_pairs(pairs, 3, str.split, str.split)
    assert kept == [("a b", "x"), ("a", "x")] and dropped == 3
    pairs = [(f"s{i // 2}", f"t{i}") for i in range(200)]  # two translations per source
    splits = split_held_out(pairs, n_dev=10, n_test=10, seed=0)
    assert sum(len(v) for v in splits.values()) == 200
    train_src = {s for s, _ in splits["train"]}
    assert len(splits["dev"]) == 10 and not train_src & {s for s, _ in splits["dev"]}
    assert len(splits["test"]) == 10 and not train_src & {s for s, _ in splits["test"]}


def test_split_keeps_linked_sentences_together() -> None:
    # Tatoeba-like: one English sentence, several French ones, and chains of both
    pairs = [
        ("Cours !", "Run!"),
        ("Courez !", "Run!"),
        ("Courez\u202f!", "run!"),  # the same target but for case; another space
        ("Fuyez !", "Run away!"),
        ("Courez !", "Run away!"),  # links the two groups
        *[(f"f{i}", f"e{i // 3}") for i in range(300)],  # 100 groups of 3
    ]
    for seed in range(8):
        splits = split_held_out(pairs, n_dev=7, n_test=20, seed=seed)
        assert sorted(sum(splits.values(), [])) == sorted(pairs)
        assert 20 <= len(splits["test"]) <= 25 and 7 <= len(splits["dev"]) <= 12
        where = {}
        for name, part in splits.items():
            for s, t in part:
                for key in (("s", s), ("t", " ".join(t.casefold().split()))):
                    assert where.setdefault(key, name) == name, (key, name, where[key])
        run = [name for name, part in splits.items() if ("Cours !", "Run!") in part][0]
        assert all(p in splits[run] for p in pairs[:5])
        assert all(part == [p for p in pairs if p in part] for part in splits.values())


def test_a_pair_with_an_empty_side_is_never_held_out() -> None:
    """Pairs with an empty side were linked by their empty sentence into one group, and
    the split that drew it took them all: 1,000 empty references in a dev set of 1,007."""
    pairs = [(f"s{i}", "" if i % 10 == 0 else f"t{i}") for i in range(200)]
    pairs += [("", "lone target"), ("   ", "x")]
    for seed in range(5):
        splits = split_held_out(pairs, n_dev=10, n_test=10, seed=seed)
        held = splits["dev"] + splits["test"]
        assert all(s.strip() and t.strip() for s, t in held), seed
        assert 20 <= len(held) <= 22  # (groups of one pair: no more than asked)
        assert sorted(splits["train"] + held) == sorted(pairs)


def test_split_needs_pairs_left_for_training() -> None:
    pairs = [("a", "x"), ("b", "x"), ("c", "y")]  # two groups
    assert len(split_held_out(pairs, n_dev=1, n_test=0, seed=0)["train"]) in (1, 2)
    with pytest.raises(DataError, match="3 pairs in 2 groups .* keep some for training"):
        split_held_out(pairs, n_dev=1, n_test=1, seed=0)


# ---------------------------------------------------------------- download (no network)


def test_fetch_multi30k_from_dir(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("train", "val"):
        for lang in ("de", "en"):
            write(src / f"{name}.{lang}", f"{name} {lang} 1\n{name} {lang} 2\n".encode())
    write(src / "test_2016_flickr.de.gz", gzip.compress(b"t de\n"))  # official name, gzipped
    write(src / "test2016.en", b"t en\n")
    paths = fetch_multi30k(tmp_path / "out", from_dir=src)
    assert sorted(p.name for p in paths) == sorted(
        f"{s}.{lang}" for s in ("train", "val", "test2016") for lang in ("de", "en")
    )
    assert read_parallel(tmp_path / "out" / "test2016", "de", "en") == [("t de", "t en")]
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.endswith(".tmp")]
    (src / "val.en").unlink()
    with pytest.raises(DataError, match=r"val\.en: file not found"):
        fetch_multi30k(tmp_path / "out2", from_dir=src)


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


TATOEBA = (
    "Go.\tVa !\tCC-BY 2.0 (France) Attribution: tatoeba.org #2877272\nRun!\tCours\u202f!\t#906328\n"
)


def test_fetch_tatoeba_from_zip_url_and_text(tmp_path: Path) -> None:
    body = TATOEBA.encode()
    zipped = _zip(tmp_path / "fra-eng.zip", {"fra.txt": body, "_about.txt": b"terms"})
    # the download path, through a file:// URL (no network here)
    paths = fetch_tatoeba(tmp_path / "a", url=zipped.as_uri())
    assert sorted(p.name for p in paths) == ["eng-fra.txt", "manythings_about.txt"]
    assert (tmp_path / "a" / "eng-fra.txt").read_bytes() == body  # unchanged
    assert read_tsv(tmp_path / "a" / "eng-fra.txt", 1, 0)[1] == ("Cours\u202f!", "Run!")
    # the PyTorch tutorial's data.zip (data/eng-fra.txt, two columns), found in a folder
    tut = tmp_path / "tut"
    tut.mkdir()
    _zip(tut / "data.zip", {"data/eng-fra.txt": b"Go.\tVa !\n"})
    assert fetch_tatoeba(tmp_path / "b", from_path=tut) == [tmp_path / "b" / "eng-fra.txt"]
    assert read_tsv(tmp_path / "b" / "eng-fra.txt") == [("Go.", "Va !")]
    # a plain fra.txt; a file already there is kept unless overwrite
    write(tmp_path / "fra.txt", b"Hi.\tSalut.\n")
    fetch_tatoeba(tmp_path / "b", from_path=tmp_path / "fra.txt")
    assert read_tsv(tmp_path / "b" / "eng-fra.txt") == [("Go.", "Va !")]
    fetch_tatoeba(tmp_path / "b", from_path=tmp_path / "fra.txt", overwrite=True)
    assert read_tsv(tmp_path / "b" / "eng-fra.txt") == [("Hi.", "Salut.")]


@pytest.mark.parametrize(
    "source, message",
    [
        ({"fra.txt": b"Go.\tVa !\nbroken line\n"}, r"fra-eng.zip:fra.txt:2: expected at least 2"),
        ({"fra.txt": b"Go.\tVa \xff\n"}, r"fra-eng.zip:fra.txt:1: invalid UTF-8"),
        ({"deu.txt": b"Go.\tGeh.\n"}, r"fra-eng.zip: no fra.txt or eng-fra.txt in the zip"),
        (b"not a zip", r"fra-eng.zip:1: expected at least 2"),
        (b"PK\x03\x04 truncated", r"fra-eng.zip: not a valid zip file"),
        (None, r"fra-eng.zip: file not found"),
    ],
)
def test_fetch_tatoeba_refuses_bad_sources(tmp_path: Path, source: object, message: str) -> None:
    src = tmp_path / "fra-eng.zip"
    if isinstance(source, dict):
        _zip(src, source)
    elif isinstance(source, bytes):
        write(src, source)
    out = tmp_path / "out"
    out.mkdir()
    write(out / "eng-fra.txt", b"kept\tgard\xc3\xa9\n")
    with pytest.raises(DataError, match=message):
        fetch_tatoeba(out, from_path=src, overwrite=True)
    assert (out / "eng-fra.txt").read_bytes() == b"kept\tgard\xc3\xa9\n"  # untouched
    assert [p.name for p in out.iterdir()] == ["eng-fra.txt"]


def test_fetch_tatoeba_network_failure_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"download failed: file:///.*missing.zip.* --from\)$"):
        fetch_tatoeba(tmp_path / "out", url=(tmp_path / "missing.zip").as_uri())
    with pytest.raises(DataError, match=r"no fra-eng.zip, data.zip, fra.txt or eng-fra.txt"):
        fetch_tatoeba(tmp_path / "out", from_path=tmp_path)


def test_min_freq_and_max_vocab_bound_the_vocabularies(tmp_path: Path) -> None:
    """data.min_freq / data.max_vocab: rare words and those beyond the N most frequent
    become <unk> in training; the defaults keep every word."""
    from rnnkit.config import config_from_dict
    from rnnkit.prepare import prepare

    words = [f"w{i}" for i in range(12)]
    src = [" ".join(words[: 1 + i % 12]) for i in range(40)]  # w0 in all, w11 in 3
    (tmp_path / "c.src").write_text("\n".join(src) + "\n", encoding="utf-8")
    (tmp_path / "c.tgt").write_text("\n".join(src) + "\n", encoding="utf-8")

    def vocab(**keys: object) -> list[str]:
        data = {"train": str(tmp_path / "c"), "dev_size": 1, "tokenizer": "word", **keys}
        d = prepare(config_from_dict({"data": data}), tmp_path / "run", write=False)
        return d.src_vocab.to_state()["tokens"][4:]

    assert sorted(vocab()) == sorted(words)
    counts = {w: sum(w in s.split() for s in src) for w in words}
    assert set(vocab(min_freq=7)) == {w for w, c in counts.items() if c >= 7}  # no count near 7
    assert vocab(max_vocab=5) == words[:5]  # the most frequent, in order


def test_several_training_corpora_are_read_in_order(tmp_path: Path) -> None:
    from rnnkit.config import config_from_dict
    from rnnkit.prepare import load_pairs

    for name, n in (("a", 3), ("b", 2)):
        for side in ("de", "en"):
            lines = [f"{name}{i} {side}" for i in range(n)]
            (tmp_path / f"{name}.{side}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    data = {"data_dir": str(tmp_path), "src": "de", "tgt": "en", "dev": "b"}
    cfg = config_from_dict({"data": {**data, "train": ["a", "b", "a"]}})
    train = load_pairs(cfg)["train"]
    a = [(f"a{i} de", f"a{i} en") for i in range(3)]
    assert train == a + [("b0 de", "b0 en"), ("b1 de", "b1 en")] + a  # "a" twice: oversampled
    assert load_pairs(config_from_dict({"data": {**data, "train": "a"}}))["train"] == a
    missing = config_from_dict({"data": {**data, "train": ["a", "nope"]}})
    with pytest.raises(DataError, match="nope"):
        load_pairs(missing)


def test_prepare_says_when_it_tokenises_a_large_corpus(tmp_path: Path, monkeypatch) -> None:
    """From TOKENISING_NOTE_PAIRS training pairs a line says what the silence is; below
    it, nothing (39 pairs train here: one of the 40 is held out for dev)."""
    import rnnkit.prepare as prep
    from rnnkit.config import config_from_dict

    lines = "".join(f"w{i} x\n" for i in range(40))
    (tmp_path / "c.src").write_text(lines, encoding="utf-8")
    (tmp_path / "c.tgt").write_text(lines, encoding="utf-8")
    cfg = config_from_dict(
        {"data": {"train": str(tmp_path / "c"), "dev_size": 1, "tokenizer": "word"}}
    )

    def said(threshold: int) -> list[str]:
        monkeypatch.setattr(prep, "TOKENISING_NOTE_PAIRS", threshold)
        out: list[str] = []
        prep.prepare(cfg, tmp_path / "run", say=out.append, write=False)
        return [m for m in out if m.startswith("tokenising")]

    assert said(40) == []
    assert said(39) == ["tokenising 39 training pairs (for the vocabularies, then the ids)"]


def test_prepare_says_how_many_dev_sources_are_over_max_len(tmp_path: Path) -> None:
    """A dev source of 40,000 tokens stalled the first validation without a word (dev
    pairs are not filtered: the dev set is what it is)."""
    from rnnkit.config import config_from_dict
    from rnnkit.prepare import prepare

    for name, src in (("train", ["a b", "c d"] * 5), ("dev", ["a b", "a " * 30, "c " * 40])):
        (tmp_path / f"{name}.de").write_text("\n".join(src) + "\n", encoding="utf-8")
        (tmp_path / f"{name}.en").write_text("x\n" * len(src), encoding="utf-8")
    data = {"data_dir": str(tmp_path), "train": "train", "dev": "dev", "src": "de", "tgt": "en"}
    data["tokenizer"] = "word"
    said: list[str] = []
    d = prepare(config_from_dict({"data": {**data, "max_len": 25}}), tmp_path, say=said.append,
                write=False)  # fmt: skip
    assert len(d.dev) == 3  # (kept)
    assert "note: 2 dev sources are longer than data.max_len (25 tokens)" in " ".join(said)
    said.clear()
    prepare(config_from_dict({"data": data}), tmp_path, say=said.append, write=False)
    assert not [m for m in said if "dev sources" in m]


def test_a_min_freq_that_leaves_no_token_is_an_error(tmp_path: Path) -> None:
    """min_freq 1000 left both vocabularies at the 4 specials, and training went ahead
    on a model that could only write <unk>."""
    from rnnkit.config import config_from_dict
    from rnnkit.prepare import prepare

    data = {"task": "copy", "task_size": 50, "task_dev": 5, "task_test": 5, "tokenizer": "word"}
    with pytest.raises(DataError, match=r"data.min_freq 1000: no source token is that frequent"):
        prepare(config_from_dict({"data": {**data, "min_freq": 1000}}), tmp_path, write=False)
    assert len(prepare(config_from_dict({"data": data}), tmp_path, write=False).src_vocab) > 4


def test_a_dev_file_of_blank_pairs_is_an_error(tmp_path: Path) -> None:
    """A dev file of blank lines validated on nothing and logged 'accuracy 1.000'."""
    from rnnkit.config import config_from_dict
    from rnnkit.prepare import load_pairs

    for name, lines in (("train", ["a b", "c d"]), ("dev", ["", "  "])):
        for side in ("de", "en"):
            (tmp_path / f"{name}.{side}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    data = {"data_dir": str(tmp_path), "train": "train", "dev": "dev", "src": "de", "tgt": "en"}
    with pytest.raises(DataError, match="data.dev dev: every pair has an empty side"):
        load_pairs(config_from_dict({"data": data}))


def test_a_blank_side_is_filtered_with_every_tokenizer(tmp_path: Path) -> None:
    """The char tokenizer makes '▁' tokens of spaces: a pair whose target was only spaces
    was kept and trained on (and the held-out split, which keeps such pairs in train,
    said the filter drops them)."""
    tok = CharTokenizer()
    assert tok.encode("   ")  # (what let it through)
    pairs = [("a b", "   "), ("  ", "x"), ("a", "b")]
    assert filter_pairs(pairs, 10, tok.encode, tok.encode) == ([("a", "b")], 2)
    from rnnkit.config import config_from_dict
    from rnnkit.prepare import prepare

    for side, lines in (("de", ["a b", "c", "d"]), ("en", ["   ", "x", "y"])):
        (tmp_path / f"t.{side}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    data = {"data_dir": str(tmp_path), "train": "t", "dev": "t", "src": "de", "tgt": "en"}
    d = prepare(config_from_dict({"data": data | {"tokenizer": "char"}}), tmp_path, write=False)
    assert d.train == [("c", "x"), ("d", "y")]  # (a new run's filter, in prepare)
