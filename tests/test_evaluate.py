"""sacrebleu BLEU / chrF, length buckets, exact match."""

from __future__ import annotations

import pytest
import sacrebleu

from rnnkit.evaluate import bucket_scores, exact_match, group_by_source, score, word_count

HYPS = [
    "the cat sat on the mat",
    "a dog is running in the park today",
    "he read the book",
    "it was cold outside last night",
]
REFS = [
    "the cat sat on the mat",
    "a dog runs in the park today",
    "he has read that book",
    "last night it was cold outside",
]


def test_identical_is_100():
    result = score(REFS, REFS)
    assert result["bleu"] == pytest.approx(100.0)
    assert result["chrf"] == pytest.approx(100.0)
    assert result["n"] == len(REFS)


def test_signatures():
    result = score(HYPS, REFS)
    assert "tok:13a" in result["bleu_signature"] and "case:mixed" in result["bleu_signature"]
    assert "nrefs:1" in result["chrf_signature"]
    assert "case:lc" in score(HYPS, REFS, lowercase=True)["bleu_signature"]


def test_lowercase_flag():
    hyps, refs = ["The Cat Sat On The Mat"], ["the cat sat on the mat"]
    cased, lowered = score(hyps, refs), score(hyps, refs, lowercase=True)
    assert cased["bleu"] < 100.0 and cased["chrf"] < 100.0
    assert lowered["bleu"] == pytest.approx(100.0) and lowered["chrf"] == pytest.approx(100.0)


def test_equals_sacrebleu_corpus_functions():
    result = score(HYPS, REFS)
    assert result["bleu"] == pytest.approx(sacrebleu.corpus_bleu(HYPS, [REFS]).score)
    ref_words = sum(len(r.split()) for r in REFS)  # 13a splits nothing else in these
    assert result["length_ratio"] == pytest.approx(
        sum(len(h.split()) for h in HYPS) / ref_words, abs=1e-4
    )
    assert result["chrf"] == pytest.approx(sacrebleu.corpus_chrf(HYPS, [REFS]).score)
    assert 0.0 < result["bleu"] < 100.0


def test_length_mismatch_raises():
    with pytest.raises(ValueError, match=r"3 hypotheses but 4 references"):
        score(HYPS[:3], REFS)
    with pytest.raises(ValueError, match="hypotheses"):
        exact_match(HYPS, REFS[:1])
    with pytest.raises(ValueError, match="sources"):
        bucket_scores(HYPS[:2], HYPS, REFS)
    with pytest.raises(ValueError):
        score([], [])


def test_bucket_counts_add_up():
    sources = [" ".join(["w"] * n) for n in (3, 12, 15, 25, 61, 80, 9, 11)]
    hyps = [f"out {i}" for i in range(len(sources))]
    refs = [f"out {i}" if i % 2 else f"ref {i}" for i in range(len(sources))]
    buckets = bucket_scores(sources, hyps, refs)
    assert sum(b["count"] for b in buckets) == len(sources)
    assert [b["bucket"] for b in buckets] == ["0-9", "10-19", "20-29", "60+"]  # empty skipped
    assert [b["count"] for b in buckets] == [2, 3, 1, 2]
    assert buckets[-1]["hi"] is None and buckets[1]["lo"] == 10 and buckets[1]["hi"] == 19


def test_bucket_bleu_is_bleu_of_its_members():
    sources = ["a b", "a b c d e f g h i j k l", "a", "x " * 30]
    buckets = bucket_scores(sources, HYPS, REFS, edges=(5, 20))
    by_label = {b["bucket"]: b for b in buckets}
    assert set(by_label) == {"0-4", "5-19", "20+"}
    short = score([HYPS[0], HYPS[2]], [REFS[0], REFS[2]])
    assert by_label["0-4"]["bleu"] == pytest.approx(short["bleu"])
    assert by_label["5-19"]["count"] == 1


def test_bucket_bleu_with_several_references():
    sources = ["a b", "a b c d e f g h i j k l", "a", "x " * 30]
    other = ["x", REFS[1], "he read the book", "x"]
    buckets = bucket_scores(sources, HYPS, REFS, edges=(5, 20), extra_references=[other])
    by_label = {b["bucket"]: b for b in buckets}
    short = score([HYPS[0], HYPS[2]], [REFS[0], REFS[2]], extra_references=[[other[0], other[2]]])
    assert by_label["0-4"]["bleu"] == pytest.approx(short["bleu"])
    assert by_label["0-4"]["bleu"] == pytest.approx(100.0)  # "he read the book" matches


def test_bucket_key_and_edges():
    sources = ["abcdef", "ab", "abcdefghijkl"]
    buckets = bucket_scores(sources, REFS[:3], REFS[:3], edges=(5, 10), key=len)
    assert [(b["bucket"], b["count"]) for b in buckets] == [("0-4", 1), ("5-9", 1), ("10+", 1)]
    assert all(b["bleu"] == pytest.approx(100.0) for b in buckets)
    with pytest.raises(ValueError, match="edges"):
        bucket_scores(sources, REFS[:3], REFS[:3], edges=(10, 5))
    assert bucket_scores([], [], []) == []
    assert word_count("  two   words ") == 2


def test_exact_match():
    assert exact_match(REFS, REFS) == 1.0
    assert exact_match(HYPS, REFS) == pytest.approx(0.25)
    assert exact_match(["2018-05-09 "], ["2018-05-09"]) == 1.0
    assert exact_match(["ABC"], ["abc"]) == 0.0
    assert exact_match(["ABC"], ["abc"], lowercase=True) == 1.0


def test_several_references_equal_sacrebleu_multi_reference():
    """Extra reference streams are sacrebleu's multi-reference scores (nrefs:2); a second
    reference that matches a hypothesis better raises BLEU; an empty string leaves that
    line with fewer references."""
    other = ["the cat sat on the mat", "a dog is running in the park", "", "it was cold"]
    result = score(HYPS, REFS, extra_references=[other])
    given = [REFS, [r or None for r in other]]  # sacrebleu's "no reference" is None
    assert result["bleu"] == pytest.approx(sacrebleu.corpus_bleu(HYPS, given).score)
    assert result["chrf"] == pytest.approx(sacrebleu.corpus_chrf(HYPS, given).score)
    assert result["n_refs"] == 2 and "nrefs:var" in result["bleu_signature"]
    assert result["bleu"] > score(HYPS, REFS)["bleu"]
    with pytest.raises(ValueError, match="4 hypotheses but 3 references"):
        score(HYPS, REFS, extra_references=[other[:3]])


def test_a_missing_reference_is_not_an_empty_one():
    """A line with fewer references scores as if the stream had no entry for it: an empty
    reference would be the closest in length to a short hypothesis (sacrebleu keeps "",
    drops None) and take BLEU's brevity penalty away (3.7 BLEU became 100 here)."""
    hyps = ["a dog runs in the", "the cat sat on"]
    refs = ["a dog runs in the big green park", "the cat sat on the old red mat today"]
    alone = score(hyps, refs)
    for at in (0, 1):
        holes = score(hyps, refs, extra_references=[["", ""]])
        assert holes["bleu"] == pytest.approx(alone["bleu"]) and holes["length_ratio"] < 0.6
        one = [hyps[0], ""] if at == 0 else ["", hyps[1]]  # one line: a perfect match
        partial = score(hyps, refs, extra_references=[one])
        assert partial["bleu"] > alone["bleu"] and partial["bleu"] < 100
    # the first stream's blank with another stream's reference: that reference alone
    short = ["a dog runs", "the cat sat"]  # nearer in length to "" than to a reference
    swapped = score(short, ["", refs[1]], extra_references=[[refs[0], ""]])
    assert swapped["length_ratio"] == score(short, refs)["length_ratio"] < 0.5
    edges = bucket_scores(["x y", "x y"], hyps, refs, edges=(5,), extra_references=[["", ""]])
    assert edges[0]["bleu"] == pytest.approx(alone["bleu"])


def test_group_by_source_gathers_the_references_of_repeated_sources():
    sources = ["Cours !", "Il pleut.", "Cours !", "Cours !", "Il pleut."]
    refs = ["Run!", "It's raining.", "Run away!", "Run!", "It is raining."]
    extra = ["", "", "", "Go!", "It's raining."]
    distinct, streams, line_of = group_by_source(sources, [refs, extra])
    assert distinct == ["Cours !", "Il pleut."]
    assert line_of == [0, 1, 0, 0, 1]
    # every distinct reference once, in order of appearance; "" where a source has fewer
    assert streams == [["Run!", "It's raining."], ["Run away!", "It is raining."], ["Go!", ""]]
    hyps = ["Run away!", "It is raining."]
    assert score(hyps, streams[0], extra_references=streams[1:])["bleu"] == pytest.approx(100)
    with pytest.raises(ValueError, match="5 sources but 4 references"):
        group_by_source(sources, [refs[:4]])


def test_a_long_corpus_scored_chunk_by_chunk_scores_as_one_call(monkeypatch):
    """sacreBLEU keeps every reference's n-grams of a call; score() extracts statistics
    chunk by chunk and sums them. Chunks of 3 lines, lines with two, one or no second
    reference (so one chunk has a fixed count and the corpus a variable one), and a
    lower BLEU than each chunk's average would give: equal to one sacreBLEU call."""
    import random

    import rnnkit.evaluate as evaluate

    rng = random.Random(4)
    words = "a the cat dog sat on mat ran far away home".split()

    def sentence() -> str:
        return " ".join(rng.choices(words, k=rng.randint(1, 9)))

    n = 17
    hyps = [sentence() for _ in range(n)]
    first = [sentence() for _ in range(n)]
    second = [sentence() if i >= 12 or (i >= 3 and i % 2) else "" for i in range(n)]
    monkeypatch.setattr(evaluate, "SCORE_CHUNK", 3)
    got = score(hyps, first, extra_references=[second])
    streams = [first, [s or None for s in second]]
    bleu, chrf = sacrebleu.BLEU(), sacrebleu.CHRF()
    b, c = bleu.corpus_score(hyps, streams), chrf.corpus_score(hyps, streams)
    assert got["bleu"] == pytest.approx(b.score, abs=1e-9)
    assert got["chrf"] == pytest.approx(c.score, abs=1e-9)
    assert got["length_ratio"] == round(b.sys_len / b.ref_len, 4)
    assert (
        got["bleu_signature"] == str(bleu.get_signature()) and "nrefs:var" in got["bleu_signature"]
    )
    assert got["chrf_signature"] == str(chrf.get_signature())
    buckets = bucket_scores(hyps, hyps, first, edges=(3, 6), extra_references=[second])
    for bucket in buckets:
        idx = [
            i for i, h in enumerate(hyps) if bucket["lo"] <= len(h.split()) <= (bucket["hi"] or 99)
        ]
        want = sacrebleu.BLEU().corpus_score(
            [hyps[i] for i in idx], [[s[i] for i in idx] for s in streams]
        )
        assert bucket["count"] == len(idx) and bucket["bleu"] == pytest.approx(want.score, abs=1e-9)


def test_the_tokenized_period_warning_is_said_once_for_the_corpus(monkeypatch, caplog):
    """sacreBLEU warns per call (three lines, for BLEU and for chrF) from 100 lines ending
    in " ."; scored in chunks it would warn per chunk or, with fewer per chunk, never."""
    import rnnkit.evaluate as evaluate

    monkeypatch.setattr(evaluate, "SCORE_CHUNK", 30)
    with caplog.at_level("WARNING", logger="sacrebleu"):
        score(["a b c ."] * 99 + ["a b c."], ["a b c."] * 100)
    assert caplog.records == []
    monkeypatch.setattr(evaluate, "SCORE_CHUNK", 1000)
    with caplog.at_level("WARNING", logger="sacrebleu"):
        score(["a b c ."] * 100, ["a b c."] * 100)
    assert [r.getMessage().split(" lines")[0] for r in caplog.records] == ["100"]


def test_a_reference_in_nfd_scores_as_its_nfc_form() -> None:
    """The word and char tokenizers write NFC: against an NFD reference file a right
    translation scored BLEU 0 and accuracy 0 (and drove early stopping)."""
    import unicodedata

    hyps = ["le café est noël", "été"]
    nfd = [unicodedata.normalize("NFD", h) for h in hyps]
    assert nfd != hyps
    for refs in (nfd, hyps):
        s = score(hyps, refs)
        assert s["bleu"] == pytest.approx(100.0) and s["accuracy"] == 1.0
        assert s["chrf"] == pytest.approx(100.0)
        assert exact_match(nfd, hyps) == 1.0
        assert bucket_scores(hyps, hyps, refs)[0]["bleu"] == pytest.approx(100.0)
