"""The page of rnnkit serve in a real browser: Debian's headless Chromium driven by
Playwright (``executable_path``; no browser is downloaded) against a running server.

Set ``RNNKIT_SCREENSHOT=docs/figures/serve_page.png`` to also keep the screenshot (the
README's figure is made so).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from serve_util import serving
from toy import one_thread

from rnnkit.serve.launch import started

sync_api = pytest.importorskip("playwright.sync_api")


def chromium() -> str | None:
    """Debian's chromium binary (the /usr/bin/chromium wrapper is a shell script)."""
    for path in ("/usr/lib/chromium/chromium", shutil.which("chromium") or ""):
        if path and os.access(path, os.X_OK):
            return path
    return None


def not_blank(png: Path) -> None:
    from PIL import Image

    img = Image.open(png).convert("RGB")
    assert img.width >= 800 and img.height >= 600
    colours = img.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50  # text, heatmap, gate colours
    top = max(colours)[0] / (img.width * img.height)
    assert top < 0.97, "the screenshot is nearly one colour"


@contextmanager
def server_page(server: Any, width: int = 1100) -> Iterator[tuple[Any, list[str]]]:
    """Headless Chromium on the page of ``server`` (a ``serving`` / ``started`` context):
    yields the page and the list its script errors land in; all closed on exit."""
    exe = chromium()
    if exe is None:
        pytest.skip("Debian's chromium is not installed (make test installs it)")
    with server as (url, _), sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, headless=True, timeout=60_000)
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.set_default_timeout(30_000)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url)
            yield page, errors
        finally:
            browser.close()


def test_page_in_chromium(ckpt: Path, tmp_path: Path) -> None:
    with server_page(serving(ckpt, "--beam", "3")) as (page, errors):
        page.wait_for_function("document.getElementById('beam').value === '3'")
        page.fill("#src", "9th of May, 2018")
        page.press("#src", "Enter")
        page.wait_for_selector("#heat rect.c")
        assert re.fullmatch(r"\d{4}-\d\d-\d\d", page.inner_text("#out").strip())
        assert page.locator("#nbest tr").count() == 3
        _heatmap(page)
        _gates(page)
        shot = tmp_path / "serve_page.png"
        page.screenshot(path=str(shot), full_page=True)
        not_blank(shot)
        if os.environ.get("RNNKIT_SCREENSHOT"):
            shutil.copyfile(shot, os.environ["RNNKIT_SCREENSHOT"])
        page.check("#unk")  # "copy <unk>" asks for replace_unk
        with page.expect_response(lambda r: r.url.endswith("/translate")) as answer:
            page.press("#src", "Enter")
        assert answer.value.status == 200
        assert answer.value.request.post_data_json["replace_unk"] is True
        assert "log-probability over the length penalty" in page.inner_text("#score")
        assert page.get_attribute("#beam", "max") == "15"  # (the dates' 15 target tokens)
        page.fill("#beam", "99")  # an API error is shown, not swallowed
        page.press("#src", "Enter")
        page.wait_for_function("document.getElementById('err').textContent.includes('422')")
        assert "beam" in page.inner_text("#err") and not page.is_visible("#result")
        page.fill("#beam", "3")
        page.route("**/translate", lambda route: route.fulfill(
            status=422, content_type="application/json", body='{"detail": "no beam here"}'
        ))  # fmt: skip
        page.press("#src", "Enter")  # (an answer rewritten: any error is shown)
        page.wait_for_function("document.getElementById('err').textContent.includes('422')")
        assert "no beam here" in page.inner_text("#err") and not page.is_visible("#result")
        assert errors == []


def test_page_details_on_a_phone(ckpt: Path) -> None:
    """At 390 px: the matrix fits, the tooltip stays inside the window; a token the
    vocabulary lacks is marked; an empty or too long text is said, not sent; a server
    gone is said as such; the list of units follows the unit shown."""
    with server_page(serving(ckpt, "--max-chars", "30"), width=390) as (page, errors):
        page.wait_for_function("document.getElementById('model').textContent.length > 0")
        sent: list[str] = []
        page.on("request", lambda r: sent.append(r.url) if r.url.endswith("/translate") else 0)
        page.press("#src", "Enter")
        assert page.inner_text("#err") == "Type a sentence to translate."
        assert sent == []
        page.fill("#src", "x" * 31)  # sent: the API's 413 says what is wrong
        page.press("#src", "Enter")
        page.wait_for_function("document.getElementById('err').textContent.includes('413')")
        assert "at most 30" in page.inner_text("#err")
        page.fill("#src", "\u6f22 May 2018")  # (no Chinese character in the dates' vocabulary)
        page.press("#src", "Enter")
        page.wait_for_selector("#heat rect.c")
        assert "1 source token is not in the model's vocabulary" in page.inner_text("#note")
        assert page.locator("#heat text.unk").count() == 1
        assert page.locator("#att-src .tok.unk").count() == 1
        box = page.locator("#heat").bounding_box()
        assert box is not None and box["width"] <= 390 and page.is_hidden("#att-wide")
        point_at(page, "#heat rect.c >> nth=-1")  # the bottom-right cell
        tip = page.locator("#tip").bounding_box()
        assert tip is not None and tip["x"] >= 0 and tip["x"] + tip["width"] <= 390
        assert "(read as <unk>)" not in page.inner_text("#tip")  # (the last column is </s>)
        page.select_option("#top", index=3)
        page.click("#next")  # the unit after the 4th that varies most: listed or not
        unit = page.input_value("#unit")
        listed = page.evaluate("[...document.getElementById('top').options].map(o => o.value)")
        assert page.input_value("#top") == (unit if unit in listed else "")
        page.route("**/translate", lambda route: route.abort())
        page.press("#src", "Enter")
        page.wait_for_function("document.getElementById('err').textContent.length > 0")
        assert "cannot reach the server" in page.inner_text("#err")
        assert errors == []


def point_at(page: Any, selector: str) -> None:
    """The pointer on the cell, once its scroll into view is over (a scroll hides the
    tooltip), and the tooltip shown."""
    cell = page.locator(selector)
    cell.scroll_into_view_if_needed()
    page.wait_for_timeout(200)
    at = cell.bounding_box()
    assert at is not None
    page.mouse.move(at["x"] + at["width"] / 2, at["y"] + at["height"] / 2)
    page.locator("#tip").wait_for(state="visible")


def _heatmap(page: object) -> None:
    p = page  # type: ignore[assignment]
    n_src = p.locator("#heat text").count() - p.locator("#heat text.row").count()
    n_out = p.locator("#heat text.row").count()
    assert p.locator("#heat rect.c").count() == n_src * n_out
    point_at(p, "#heat rect.c >> nth=3")
    tip = p.locator("#tip")
    assert re.search(r"\S+ \u2190 \S+: \u03b1 = \d\.\d{3}", tip.inner_text())
    p.click("#heat text.row >> nth=2")
    assert "sel" in (p.locator("#heat text.row >> nth=2").get_attribute("class") or "")
    assert p.locator("#att-src .tok").count() == n_src
    p.mouse.move(0, 0)


def _gates(page: object) -> None:
    p = page  # type: ignore[assignment]
    assert p.locator("#part option").count() == 3  # encoder fwd / bwd, decoder
    p.select_option("#part", "decoder_l0")
    p.select_option("#gate", "update")
    p.fill("#unit", "5")
    p.dispatch_event("#unit", "input")
    legend = p.inner_text("#legend")
    assert "decoder layer 0, update, unit 5" in legend
    n_out = p.locator("#heat text.row").count()
    assert p.locator("#follow .tok").count() == n_out
    p.select_option("#part", "encoder_l0_backward")
    assert "encoder layer 0, backward" in p.inner_text("#legend")


def test_inspect_page_shares_the_gate_view(ckpt: Path, tmp_path: Path) -> None:
    """inspect.html, whose gate view the serve page reuses, still runs in the browser."""
    from rnnkit.cli import main

    exe = chromium()
    if exe is None:
        pytest.skip("Debian's chromium is not installed (make test installs it)")
    with one_thread():
        assert main(["inspect", str(ckpt), "5/9/18", "--out", str(tmp_path)]) == 0
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, headless=True, timeout=60_000)
        try:
            page = browser.new_page()
            page.set_default_timeout(30_000)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto((tmp_path / "inspect.html").as_uri())
            assert page.locator("#follow .tok").count() == 7  # 5 / 9 / 1 8 </s>
            page.select_option("#part", "decoder_l0")
            assert page.inner_text("#legend").startswith("decoder layer 0")
            # the state's colours: one scale for every unit (it was each unit's own range)
            page.select_option("#gate", "hidden")
            scales = set()
            for _ in range(4):
                scales.add(page.inner_text("#legend").split("; ")[1])
                page.click("#next")
            assert len(scales) == 1 and scales.pop().startswith("blue = -")
            assert page.locator("#att-src .tok").count() == 7
            assert errors == []
        finally:
            browser.close()


def test_page_of_an_ensemble(ckpt: Path) -> None:
    """Two checkpoints: the page says so, translates with attention, shows no gate view."""
    with server_page(started([str(ckpt)] * 2)) as (page, errors):
        page.wait_for_function("document.getElementById('model').textContent.length > 0")
        assert page.inner_text("#model").startswith("ensemble of 2 (last.pt + last.pt)")
        page.fill("#src", "5/9/18")
        page.press("#src", "Enter")
        page.wait_for_selector("#heat rect.c")
        assert re.fullmatch(r"\d{4}-\d\d-\d\d", page.inner_text("#out").strip())
        assert not page.locator("#gview").is_visible()  # no gates to show
        page.click("#heat text.row >> nth=2")  # its row laid over the source, no gates needed
        assert "sel" in (page.locator("#heat text.row >> nth=2").get_attribute("class") or "")
        n_src = page.locator("#heat text").count() - page.locator("#heat text.row").count()
        assert page.locator("#att-src .tok").count() == n_src
        assert page.inner_text("#err") == "" and errors == []


def test_page_asks_for_the_key_and_then_learns_the_model(ckpt: Path) -> None:
    """With --api-key the page's first /info gets a 401: it says a key is needed, and
    once one is typed it reads /info again (an ensemble: no gates asked for)."""
    with server_page(started([str(ckpt)] * 2, "--api-key", "s3cret")) as (page, errors):
        page.wait_for_function("document.getElementById('model').textContent.length > 0")
        assert page.inner_text("#model") == "This server needs an API key."
        page.fill("#key", "wrong")
        page.fill("#src", "5/9/18")
        page.press("#src", "Enter")
        page.wait_for_function("document.getElementById('err').textContent.length > 0")
        assert page.inner_text("#err") == "Error: 401: the server refused this API key"
        page.fill("#key", "s3cret")
        page.fill("#src", "5/9/18")
        page.press("#src", "Enter")
        page.wait_for_selector("#heat rect.c")
        assert page.inner_text("#model").startswith("ensemble of 2")
        assert re.fullmatch(r"\d{4}-\d\d-\d\d", page.inner_text("#out").strip())
        assert page.inner_text("#err") == "" and errors == []
