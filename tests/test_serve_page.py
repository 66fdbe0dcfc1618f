"""The page of rnnkit serve in Chromium, beyond the happy path: a stale result never stays
on screen, one request is in flight at a time, every field's Enter translates, the gate
note names the decoding, the page fits a phone, and it can be used from the keyboard.

One server and one browser page for the module (tests run in order on the same page);
Debian's chromium is driven by Playwright as in ``test_serve_browser``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serve_util import serving
from test_serve_browser import server_page

Page = Any  # playwright.sync_api.Page (imported lazily: the module may be skipped)


@pytest.fixture(scope="module")
def page(ckpt: Path) -> Iterator[tuple[Page, list[str], list[str]]]:
    """The page (loaded again with a console listener), its script errors, and the
    console's errors during that load."""
    with server_page(serving(ckpt)) as (page, errors):
        page.set_default_timeout(15_000)
        console: list[str] = []
        page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
        page.reload()
        page.wait_for_function("document.getElementById('beam').value !== ''")
        yield page, errors, console


def translate(p: Page, text: str, field: str = "#src") -> Any:
    """Type ``text``, press Enter in ``field``; the /translate response once it is shown."""
    with p.expect_response(lambda r: r.url.endswith("/translate")) as answer:
        p.fill("#src", text)
        p.press(field, "Enter")
    p.wait_for_function("document.getElementById('go').getAttribute('aria-disabled') !== 'true'")
    return answer.value


def test_load_without_console_errors(page: tuple[Page, list[str], list[str]]) -> None:
    p, errors, console = page
    assert console == [] and errors == []  # no favicon.ico 404 either
    # no maxlength: it cut a longer paste and translated the rest without a word (and
    # counted UTF-16 units: emoji had half the limit); the page says it instead
    assert p.get_attribute("#src", "maxlength") is None
    assert p.get_attribute("#nb", "value") == "1" and p.input_value("#nb") == "1"  # beam 1


def test_enter_in_the_beam_field_and_the_gate_note(page: tuple[Page, list[str], list[str]]) -> None:
    p, errors, _ = page
    p.fill("#beam", "3")
    sent = translate(p, "5/9/18", field="#beam").request.post_data_json
    assert sent["beam"] == 3 and sent["n_best"] == 3  # n-best follows the beam
    assert p.locator("#nbest tr").count() == 3
    note = p.inner_text("#gnote")
    assert "beam 3's best translation" in note and "greedy" not in note
    p.fill("#beam", "1")
    sent = translate(p, "5/9/18", field="#nb").request.post_data_json
    assert "n_best" not in sent and p.input_value("#nb") == "1"
    assert "greedy decoding" in p.inner_text("#gnote")
    assert "Greedy decoding (beam 1) gives one translation" in p.inner_text("#nbinfo")
    assert errors == []


def test_legend_counts_the_units_not_sent(page: tuple[Page, list[str], list[str]]) -> None:
    """A model wider than the units sent: the legend says of how many (answer rewritten)."""
    p, errors, _ = page

    def wider(route: Any) -> None:
        answer = route.fetch()
        data = answer.json()
        data["translations"][0]["gates"]["units_total"] = 96
        route.fulfill(response=answer, json=data)

    p.route("**/translate", wider)
    try:
        translate(p, "5/9/18")
    finally:
        p.unroute("**/translate")
    assert "of 96 (the first 48 sent)" in p.inner_text("#legend")
    assert errors == []


def test_a_422_reads_the_model_again(page: tuple[Page, list[str], list[str]]) -> None:
    """A SIGHUP may serve another model: after a 422 the page reads /info again (the model
    line and the beam's limit follow it; the fields keep what was typed). Both answers
    are rewritten here: a narrower model at the next /info, a 422 for this beam."""
    p, errors, _ = page

    def other(route: Any) -> None:
        answer = route.fetch()
        data = answer.json()
        data |= {"checkpoint": "other.pt", "target_vocab_size": 4}
        route.fulfill(response=answer, json=data)

    p.route("**/info", other)
    p.route("**/translate", lambda r: r.fulfill(status=422, json={"detail": "too wide"}))
    try:
        p.fill("#beam", "9")
        assert translate(p, "5/9/18", field="#beam").status == 422
        p.wait_for_function("document.getElementById('model').textContent.includes('other.pt')")
        assert p.get_attribute("#beam", "max") == "4" and p.input_value("#beam") == "9"
        assert "422" in p.inner_text("#err") and "too wide" in p.inner_text("#err")
    finally:
        p.unroute("**/translate")
        p.unroute("**/info")
    p.evaluate("loadInfo(true)")  # the real model again, for the tests after this one
    p.wait_for_function("!document.getElementById('model').textContent.includes('other.pt')")
    p.fill("#beam", "1")
    assert errors == []


def test_copy_unk_is_not_sent_once_hidden(page: tuple[Page, list[str], list[str]]) -> None:
    """A model without attention, served after a SIGHUP, hides "copy <unk>": ticked before,
    it was still sent, every translation a 422 and the box out of reach."""
    p, errors, _ = page
    p.check("#unk")
    assert translate(p, "5/9/18").request.post_data_json["replace_unk"] is True

    def no_attention(route: Any) -> None:
        answer = route.fetch()
        route.fulfill(response=answer, json=answer.json() | {"attention": "none"})

    p.route("**/info", no_attention)
    try:
        p.evaluate("loadInfo(true)")
        p.wait_for_function("document.getElementById('unkl').hidden")
        assert "replace_unk" not in translate(p, "5/9/18").request.post_data_json
    finally:
        p.unroute("**/info")
    p.evaluate("loadInfo(true)")
    p.wait_for_function("!document.getElementById('unkl').hidden")
    assert translate(p, "5/9/18").request.post_data_json["replace_unk"] is True  # as ticked
    p.uncheck("#unk")
    assert errors == []


def test_invisible_characters_are_drawn_as_signs(page: tuple[Page, list[str], list[str]]) -> None:
    """U+202E, U+200B, ESC were empty column labels and token boxes; a unit typed as 1e9
    was read as unit 1 (parseInt), now the last unit."""
    p, errors, _ = page
    translate(p, "\u202e5/9\u200b/18\x1b")
    labels = p.locator("#heat text:not(.row)").all_text_contents()
    assert {"<U+202E>", "<U+200B>", "<U+001B>"} <= set(labels), labels
    assert all(t.strip() for t in labels)
    boxes = p.locator("#att-src .tok .t").all_inner_texts()
    assert "<U+202E>" in boxes and all(t.strip() for t in boxes)
    p.fill("#unit", "1e9")
    p.press("#unit", "Enter")
    assert p.input_value("#unit") == p.get_attribute("#unit", "max")
    assert errors == []


def test_an_empty_text_clears_the_previous_result(page: tuple[Page, list[str], list[str]]) -> None:
    """Nothing to translate is said, not sent (it showed an empty translation, score 0)."""
    p, errors, _ = page
    translate(p, "9th of May, 2018")
    assert p.locator("#att-src .tok").count() > 0 and p.locator("#follow .tok").count() > 0
    p.fill("#src", "  ")
    p.press("#src", "Enter")
    for gone in ("#att-src .tok", "#follow .tok", "#heat *", "#nbest tr:nth-child(2)"):
        assert p.locator(gone).count() == 0, gone
    assert p.inner_text("#legend") == "" and p.inner_text("#gnote") == ""
    assert not p.locator("#result").is_visible()
    assert p.inner_text("#err") == "Type a sentence to translate."
    assert errors == []


def test_an_error_hides_the_previous_result(page: tuple[Page, list[str], list[str]]) -> None:
    p, errors, _ = page
    translate(p, "5/9/18")
    assert p.locator("#result").is_visible()
    p.route("**/translate", lambda route: route.fulfill(
        status=422, content_type="application/json", body='{"detail": "refused"}'
    ))  # fmt: skip
    try:
        assert translate(p, "6/10/19").status == 422
    finally:
        p.unroute("**/translate")
    assert "422" in p.inner_text("#err")
    assert not p.locator("#result").is_visible() and p.locator("#heat *").count() == 0
    translate(p, "5/9/18")
    assert p.inner_text("#err") == "" and p.locator("#result").is_visible()
    assert translate(p, "5/9/18 " * 150).status == 413  # a long paste: said, not cut
    assert "at most 1000" in p.inner_text("#err") and not p.locator("#result").is_visible()
    translate(p, "5/9/18")
    assert errors == []


def _until(p: Page, ok: Any) -> None:
    for _ in range(200):
        if ok():
            return
        p.wait_for_timeout(25)
    raise AssertionError("timed out")


def test_one_request_in_flight(page: tuple[Page, list[str], list[str]]) -> None:
    """A double click sends one request; a text changed meanwhile is sent after it."""
    p, errors, _ = page
    held: list[Any] = []
    p.route("**/translate", lambda route: held.append(route))
    try:
        p.fill("#src", "5/9/18")
        p.dblclick("#go")
        _until(p, lambda: held)
        assert p.get_attribute("#go", "aria-disabled") == "true"
        assert p.get_attribute("#result", "aria-busy") == "true"
        p.fill("#src", "6/10/19")
        p.press("#src", "Enter")  # waits for the answer in flight
        p.wait_for_timeout(300)
        assert len(held) == 1
        held[0].continue_()
        _until(p, lambda: len(held) == 2)
        assert held[1].request.post_data_json["text"] == "6/10/19"
        held[1].continue_()
        p.wait_for_function(
            "document.getElementById('go').getAttribute('aria-disabled') === 'false'"
        )
    finally:
        p.unroute("**/translate")
    assert len(held) == 2 and p.get_attribute("#result", "aria-busy") == "false"
    assert errors == []


def test_keyboard_and_labels(page: tuple[Page, list[str], list[str]]) -> None:
    p, errors, _ = page
    translate(p, "5/9/18")
    names = [("textbox", "text to translate"), ("button", "previous unit"),
             ("button", "next unit"), ("spinbutton", "unit"), ("spinbutton", "beam")]  # fmt: skip
    for role, name in names:
        assert p.get_by_role(role, name=name, exact=True).count() == 1, name
    assert p.get_by_label("API key", exact=True).count() == 1
    row = p.locator("#heat text.row")
    row.nth(2).focus()
    p.keyboard.press("Enter")
    assert "sel" in (row.nth(2).get_attribute("class") or "")
    p.keyboard.press("Tab")
    p.keyboard.press(" ")
    assert row.nth(3).get_attribute("aria-pressed") == "true"
    assert "target token 4" in p.inner_text("#att-cap")
    assert errors == []


def test_fits_a_phone(page: tuple[Page, list[str], list[str]]) -> None:
    """At 390 px the page does not scroll sideways: a long sentence's heatmap scrolls in
    its own box, and its last column label is inside the drawing."""
    p, errors, _ = page
    p.set_viewport_size({"width": 390, "height": 844})
    try:
        translate(p, "On the morning of the thirty-first of December in the year 1999")
        assert p.evaluate("document.documentElement.scrollWidth") <= 390
        box = p.locator("#heatbox")
        assert box.evaluate("(e) => e.scrollWidth > e.clientWidth")
        right = "(e) => e.getBoundingClientRect().right"
        last = p.locator("#heat text:not(.row)").last.evaluate(right)
        assert last <= p.locator("#heat").evaluate(right)
    finally:
        p.set_viewport_size({"width": 1100, "height": 900})
    assert errors == []
