"""What a request to ``rnnkit serve`` must be: the server's limits (:class:`Settings`),
the body of ``POST /translate`` (:class:`TranslateRequest`), and the checks a request
passes before it is queued (its key, its origin, its body); each failure is an
:class:`ApiError`, answered as JSON ``{"detail": message}``."""

from __future__ import annotations

import asyncio
import hmac
import json
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import ClientDisconnect

from rnnkit.serve import MAX_BEAM


@dataclass
class Settings:
    """The limits and defaults of one server (the ``rnnkit serve`` options)."""

    beam: int | None = None  # default beam; None: the checkpoint's decode.beam_size
    max_batch: int = 32
    max_wait_ms: float = 5.0
    max_queue: int = 256
    max_chars: int = 1000
    max_texts: int = 64
    api_key: str | None = None
    timeout_s: float = 120.0  # a request never waits longer than this for its batch
    body_timeout_s: float = 15.0  # a body that takes longer to arrive in full: 408
    max_head_bytes: int = 64 * 1024  # a request line and headers of more: 431
    head_timeout_s: float = 15.0  # ... that take longer to arrive: 408 (nothing: closed)
    access_log: bool = False  # a line per request on the rnnkit.serve.access logger

    @property
    def max_body(self) -> int:
        """Bytes a request body may have: every text at its longest, JSON-escaped (an
        emoji is 12 bytes as ``\\ud83d\\ude00``)."""
        return 12 * self.max_chars * self.max_texts + 64 * 1024


class TranslateRequest(BaseModel):
    """``{"text": ...}`` or ``{"texts": [...]}``, and the decode options."""

    model_config = ConfigDict(extra="forbid", strict=True)

    text: str | None = None
    texts: list[str] | None = None
    beam: int | None = Field(None, ge=1, le=MAX_BEAM, description="1 = greedy")
    n_best: int = Field(1, ge=1, le=MAX_BEAM, description="alternatives, ≤ beam")
    attention: bool = False
    gates: bool = False
    replace_unk: bool = Field(False, description="each <unk> as the source token attended most")


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def error_response(
    status: int, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


class _Twice(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _one_each(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """A JSON object as a dict, refusing a key given twice: the JSON standard leaves its
    meaning open (Python's json keeps the last, other parsers the first), and a proxy
    or client that reads it the other way would see another request than the model."""
    d: dict[str, object] = {}
    for key, value in pairs:
        if key in d:
            raise _Twice(key)
        d[key] = value
    return d


def parse_request(body: bytes, s: Settings) -> tuple[TranslateRequest, list[str]]:
    try:
        text = body.decode("utf-8-sig")  # (a byte-order mark before the JSON is let be)
    except UnicodeDecodeError as e:
        raise ApiError(400, f"the body is not valid UTF-8 ({e.reason} at byte {e.start})") from None
    try:
        data = json.loads(text, object_pairs_hook=_one_each)
    except _Twice as e:
        raise ApiError(422, f"malformed JSON: the key {json.dumps(e.key)} twice") from None
    except json.JSONDecodeError as e:
        raise ApiError(
            422, f"malformed JSON: {e.msg} at line {e.lineno} column {e.colno}"
        ) from None
    except RecursionError:
        raise ApiError(422, "malformed JSON: nested too deeply") from None
    except ValueError:  # an integer of more digits than Python converts (4300)
        raise ApiError(422, "malformed JSON: a number of thousands of digits") from None
    many = data.get("texts") if isinstance(data, dict) else None
    if isinstance(many, list) and len(many) > s.max_texts:  # before pydantic lists each error
        raise ApiError(413, f"{len(many)} texts; at most {s.max_texts} (--max-texts)")
    try:
        req = TranslateRequest.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "body"
        raise ApiError(422, f"{where}: {first['msg']}") from None
    if (req.text is None) == (req.texts is None):
        raise ApiError(422, 'give exactly one of "text" and "texts"')
    texts = [req.text] if req.text is not None else req.texts or []
    if len(texts) > s.max_texts:
        raise ApiError(413, f"{len(texts)} texts; at most {s.max_texts} (--max-texts)")
    for i, t in enumerate(texts):
        if len(t) > s.max_chars:
            raise ApiError(413, f"text {i} has {len(t)} characters; at most {s.max_chars}")
        try:
            t.encode("utf-8")
        except UnicodeEncodeError as e:  # JSON lets "\ud800" through; Unicode does not
            raise ApiError(422, f"text {i}: a lone surrogate at character {e.start}") from None
    chars = sum(len(t) for t in texts)
    if req.gates and chars > s.max_chars:  # every gate of every token: megabytes per text
        raise ApiError(
            413, f'"gates": at most {s.max_chars} characters in all (--max-chars); got {chars}'
        )
    return req, texts


# A body refused before it is read in full: its connection is closed after the answer
# (else, for a chunked body, the server went on reading and dropping what the client
# sent: 2 GiB in 3 s).
CLOSE = {"Connection": "close"}


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    coding = request.headers.get("content-encoding", "identity").strip().lower()
    if coding not in ("", "identity"):
        raise ApiError(415, f"Content-Encoding: {coding}: send the body uncompressed", CLOSE)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"the body has {declared} bytes; at most {limit}", CLOSE)
    chunks, size = [], 0
    parts = request.stream().__aiter__()
    deadline = asyncio.get_running_loop().time() + timeout  # for the whole body: a slow
    while True:  # drip of a byte at a time holds a connection as long as a stop does
        try:
            left = deadline - asyncio.get_running_loop().time()
            chunk = await asyncio.wait_for(parts.__anext__(), max(left, 0.0))
        except StopAsyncIteration:
            break
        except asyncio.TimeoutError:
            raise ApiError(408, f"the body did not arrive within {timeout:g} s", CLOSE) from None
        except ClientDisconnect:  # gone half-way: a traceback and a 500 in the metrics
            raise ApiError(499, "the client closed the connection") from None
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the body is over {limit} bytes", CLOSE)
        chunks.append(chunk)
    return b"".join(chunks)


def check_key(request: Request, key: str | None) -> None:
    if key is None:
        return
    auth = request.headers.get("authorization", "")
    given = auth[7:].strip() if auth.lower().startswith("bearer ") else None
    given = given or request.headers.get("x-api-key")
    # headers arrive as latin-1: their bytes, compared with the key's UTF-8 bytes
    raw = given.encode("latin-1", "replace") if given else b""
    if not raw or not hmac.compare_digest(raw, key.encode("utf-8")):
        raise ApiError(
            401,
            "a valid API key is needed: Authorization: Bearer KEY or X-API-Key",
            {"WWW-Authenticate": "Bearer"},
        )


def check_origin(request: Request) -> None:
    """Refuse a browser's request sent by a page of another site. Such a page may post
    here without asking the server first (a "simple" request: ``text/plain``, no CORS
    preflight), so any site a user visits could keep a key-less server on this machine
    busy. Browsers say where a request comes from: ``Sec-Fetch-Site`` (``same-origin``
    from this server's own page, wherever a proxy puts it), and ``Origin``, which an
    older browser's request is judged by against the address it was sent to (``Host``,
    ``X-Forwarded-Host``, ``Forwarded: host=``). Clients that are not browsers (curl,
    httpx) send neither."""
    origin = request.headers.get("origin")
    if origin is None:
        return
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        if site in ("same-origin", "none"):
            return
    elif origin != "null":
        try:
            parts = urllib.parse.urlsplit(origin)
        except ValueError:  # ("http://[::1": no origin a browser sends) refused below
            parts = None
        if parts is not None:
            sent_from = _address(parts.netloc, parts.scheme)
            if sent_from is not None and sent_from in _addresses(request, parts.scheme):
                return
    raise ApiError(403, f"a request from the page of another site ({origin}) is refused")


def _address(netloc: str, scheme: str) -> tuple[str, int] | None:
    """(host, port) of ``host[:port]``, the scheme's port when none is given."""
    try:
        parts = urllib.parse.urlsplit("//" + netloc.strip())
        return (parts.hostname or "", parts.port or (443 if scheme == "https" else 80))
    except ValueError:
        return None


def _addresses(request: Request, scheme: str) -> set[tuple[str, int]]:
    """The addresses a request was sent to, as the server and the proxies before it say."""
    h = request.headers
    names = [h.get("host", ""), *h.get("x-forwarded-host", "").split(",")]
    for part in h.get("forwarded", "").replace(",", ";").split(";"):
        key, _, value = part.strip().partition("=")
        if key.lower() == "host":
            names.append(value.strip('"'))
    found = (_address(n, scheme) for n in names if n.strip())
    return {a for a in found if a is not None}
