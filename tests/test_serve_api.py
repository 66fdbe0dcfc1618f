"""rnnkit serve's API as a client programmer and an operator read it: pages of other
sites refused, --max-batch a real maximum, a diverged model's nan as JSON null, and
an OpenAPI description (and an offline /docs) that says what the server does."""

from __future__ import annotations

import asyncio
import copy
import json
import math
from collections.abc import Iterator

import httpx
import pytest
from test_serve import DATES, post, running
from toy import one_thread

from rnnkit.checkpoint import Bundle
from rnnkit.serve.app import _dumps
from rnnkit.serve.batcher import Batcher, QueueFull


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with one_thread():
        yield


def test_a_page_of_another_site_cannot_make_the_server_work(bundle: Bundle) -> None:
    """A page anywhere could post text/plain JSON here without a CORS preflight and keep
    a key-less server busy (3 requests held a client 114 s). Now refused by where the
    browser says it comes from; the server's own page, also behind a proxy that rewrites
    Host (nginx's default), and clients that send no Origin (curl) still pass."""
    with running(bundle) as url:
        body = json.dumps({"text": DATES[0]})
        here = url.removeprefix("http://")

        def status(**headers: str) -> int:
            plain = {"Content-Type": "text/plain", **headers}
            return httpx.post(
                url + "/translate", content=body, timeout=30, headers=plain
            ).status_code

        cross = {"Origin": "http://127.0.0.2:8751", "Sec-Fetch-Site": "cross-site"}
        assert status(**cross) == 403
        assert status(Origin="http://127.0.0.2:8751") == 403  # an older browser: by Host
        assert status(Origin="http://localhost:9", **{"Sec-Fetch-Site": "same-site"}) == 403
        assert status(Origin="null") == 403  # a sandboxed frame
        assert status(Origin=url, **{"Sec-Fetch-Site": "same-origin"}) == 200
        assert status(Origin=url) == 200
        # behind a proxy: the page is at https://mt.example.org, Host is ours
        proxied = {"Origin": "https://mt.example.org", "Sec-Fetch-Site": "same-origin"}
        assert status(**proxied) == 200
        for says in ({"X-Forwarded-Host": "mt.example.org:443, inner.lan"},
                     {"Forwarded": 'for=1.2.3.4;host="mt.example.org";proto=https'},
                     {"Host": "mt.example.org"}):  # fmt: skip
            assert status(Origin="https://mt.example.org", **says) == 200, says
        assert status(Origin="https://mt.example.org:8443", Host="mt.example.org") == 403
        assert status(Origin=f"http://{here}/", **{"X-Forwarded-Host": "["}) == 200
        assert status() == 200  # curl


def test_max_batch_is_a_maximum() -> None:
    """The worker took requests while it had fewer than max_batch sentences, each one
    whole: 40 sentences in one call under --max-batch 32. Now a request that would not
    fit starts the next batch, and one bigger than max_batch goes alone."""
    sizes: list[int] = []

    def run(texts: list[str], options: tuple[int, ...]) -> list[str]:
        sizes.append(len(texts))
        return texts

    async def scenario() -> list[list[str]]:
        b = Batcher(run, max_batch=32, max_wait=0.3)
        futures = [b.submit([f"{k}-{i}" for i in range(n)], (1,)) for k, n in
                   enumerate([20, 20, 10, 40, 2])]  # fmt: skip
        b.start()  # every request is queued before the worker looks
        try:
            return list(await asyncio.gather(*futures))
        finally:
            await asyncio.to_thread(b.close)

    answers = asyncio.run(scenario())
    assert sizes == [20, 30, 40, 2]  # 20 | 20 + 10 | 40 alone | 2
    assert [len(a) for a in answers] == [20, 20, 10, 40, 2]
    assert all(a == [f"{k}-{i}" for i in range(len(a))] for k, a in enumerate(answers))


def test_a_request_taken_as_the_server_closes_is_answered() -> None:
    """close() could slip in between submit()'s check and its put: the worker stopped at
    close's mark, and the request it had taken was never answered (its future hung)."""
    import threading
    import time

    async def scenario() -> tuple[list[str], str]:
        b = Batcher(lambda texts, options: texts, max_wait=0.0)
        b.start()
        closer = threading.Thread(target=b.close)
        put = b._queue.put

        def put_late(item: object, *args: object, **kw: object) -> None:
            if item is not None and not closer.is_alive():  # the request's put
                closer.start()  # close() comes now, while the request is on its way
                time.sleep(0.3)
            put(item, *args, **kw)  # type: ignore[arg-type]

        b._queue.put = put_late  # type: ignore[method-assign]
        future = b.submit(["a"], ())
        try:
            answer = await asyncio.wait_for(future, 10)
        finally:
            await asyncio.to_thread(closer.join, 10)
        with pytest.raises(QueueFull) as refused:
            b.submit(["b"], ())
        return answer, str(refused.value)

    answer, refused = asyncio.run(scenario())
    assert answer == ["a"] and refused == "the server is shutting down"


def test_a_diverged_model_answers_json_with_null_for_nan(bundle: Bundle) -> None:
    """nan scores and attention made a text/plain 500 and a traceback per request."""
    broken = copy.deepcopy(bundle)
    broken.model.decoder.attention.v.weight.data.fill_(math.nan)
    with running(broken) as url:
        r = post(url, {"text": DATES[0], "attention": True})
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        t = r.json()["translations"][0]
        assert t["score"] is None and all(x is None for row in t["attention"] for x in row)
    assert _dumps({"a": [1.5, math.inf, {"b": -math.inf}]}) == b'{"a":[1.5,null,{"b":null}]}'


def test_openapi_says_what_the_server_answers(bundle: Bundle) -> None:
    with running(bundle, api_key="k3y") as url:
        spec = httpx.get(url + "/openapi.json", timeout=10).json()
        docs = httpx.get(url + "/docs", timeout=10)
    tr = spec["paths"]["/translate"]["post"]
    assert tr["requestBody"]["required"] is True
    codes = {"200", "400", "401", "403", "408", "413", "415", "422", "500", "503"}
    assert codes <= set(tr["responses"])  # (415: a compressed body, not listed before)
    ok = tr["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    schemas = spec["components"]["schemas"]
    answer = schemas[ok.rsplit("/", 1)[1]]
    assert "translations" in answer["properties"]
    entry = schemas["Translation"]["properties"]
    assert {"text", "score", "source_tokens", "target_tokens", "attention", "alternatives",
            "gates"} <= set(entry)  # fmt: skip
    assert set(spec["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    assert tr["security"] and spec["paths"]["/info"]["get"]["security"]
    assert "security" not in spec["paths"]["/health"]["get"]
    assert "text/plain" in spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    # /docs: FastAPI's loaded Swagger UI from cdn.jsdelivr.net (blank offline)
    assert docs.status_code == 200 and "openapi.json" in docs.text
    assert "http://" not in docs.text and "https://" not in docs.text
