"""The API of ``rnnkit serve`` as OpenAPI says it (``/openapi.json``) and the page that
shows it (``/docs``), offline.

The answers are written by hand (``rnnkit.translate.as_json``) for speed; the models
here describe them, with every error status and, under ``--api-key``, the two ways of
giving the key. FastAPI's own ``/docs`` loads Swagger UI from a CDN and is blank without
the internet; ours draws ``/openapi.json`` with a few lines of script and no other file.
"""

from __future__ import annotations

import html
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field

from rnnkit.serve.translator import MAX_GATE_UNITS

__all__ = ["ERRORS", "Health", "TranslateResponse", "add_security", "docs_html", "errors"]


class Alternative(BaseModel):
    text: str
    score: float | None = Field(
        description="its score, as the translation's (null when not finite)"
    )
    target_tokens: list[str]


class Translation(BaseModel):
    text: str = Field(description="the best translation, detokenised")
    score: float | None = Field(
        description="what the search ranked by: the log-probability (beam search: over the "
        "length penalty, with the coverage penalty); null when not finite"
    )
    source_tokens: list[str]
    source_unknown: list[int] = Field(
        [],
        description="indices into source_tokens of the tokens the model's source "
        "vocabulary lacks: it read them as <unk>",
    )
    target_tokens: list[str] = Field(description="ending with </s> when the output ended")
    attention: list[list[float | None]] | None = Field(
        None, description='with "attention": true: rows = target tokens; null without attention'
    )
    alternatives: list[Alternative] | None = Field(
        None, description='with "n_best" > 1: the n best, best first'
    )
    gates: dict[str, Any] | None = Field(
        None,
        description='with "gates": true (one model): every gate of every step, as the page '
        f"draws them, at most {MAX_GATE_UNITS} units per gate",
    )


class TranslateResponse(BaseModel):
    translations: list[Translation] = Field(description="one per text, in order")


class Health(BaseModel):
    status: str = Field(description='"ok"')


class Error(BaseModel):
    detail: str = Field(description="what is wrong, in one line")


ERRORS = {
    400: "the body is not UTF-8",
    401: "an API key is needed (the server runs with --api-key)",
    403: "sent by the page of another site",
    408: "the body did not arrive in full within 15 s",
    413: "too many texts or characters (--max-texts, --max-chars)",
    415: "a compressed body (Content-Encoding): send it uncompressed",
    422: "a malformed request, or options the model cannot take",
    500: "the model failed on this batch",
    503: "busy: the queue is full or no answer came in time (Retry-After)",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error statuses ``codes``."""
    return {c: {"model": Error, "description": ERRORS[c]} for c in codes}


def add_security(app: FastAPI, paths: tuple[str, ...]) -> None:
    """Say in ``/openapi.json`` that ``paths`` take the key: ``Authorization: Bearer``
    or ``X-API-Key``."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            }
            for path in paths:
                for operation in schema["paths"][path].values():
                    operation["security"] = [{"bearer": []}, {"apiKey": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = build  # type: ignore[method-assign]


_DOCS_JS = """
const el = (tag, text, cls) => {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
};
const show = (s) => JSON.stringify(s, null, 1);
const ref = (spec, s) => s && s.$ref ? spec.components.schemas[s.$ref.split("/").pop()] : s;
const KEY = "needs the API key: Authorization: Bearer KEY or X-API-Key: KEY";
function operation(spec, method, path, op) {
  const sec = el("section");
  sec.append(el("h2", method.toUpperCase() + " " + path));
  if (op.summary) sec.append(el("p", op.summary));
  if (op.security) sec.append(el("p", KEY, "key"));
  const body = op.requestBody && op.requestBody.content["application/json"];
  if (body) sec.append(el("h3", "request body (JSON)"), el("pre", show(ref(spec, body.schema))));
  sec.append(el("h3", "responses"));
  const dl = el("dl");
  for (const [code, r] of Object.entries(op.responses || {})) {
    dl.append(el("dt", code + " " + (r.description || "")));
    const c = r.content || {};
    const type = Object.keys(c)[0];
    const schema = type && c[type].schema ? ref(spec, c[type].schema) : null;
    const more = schema && Object.keys(schema).length ? "\\n" + show(schema) : "";
    dl.append(el("dd", type ? type + more : ""));
  }
  sec.append(dl);
  return sec;
}
fetch("openapi.json").then(r => r.json()).then(spec => {
  const main = document.getElementById("api");
  for (const [path, ops] of Object.entries(spec.paths))
    for (const [method, op] of Object.entries(ops)) main.append(operation(spec, method, path, op));
  const schemas = (spec.components || {}).schemas || {};
  if (Object.keys(schemas).length) main.append(el("h2", "schemas"));
  for (const [name, s] of Object.entries(schemas)) main.append(el("h3", name), el("pre", show(s)));
}).catch(e => { document.getElementById("api").textContent = "openapi.json: " + e; });
"""


def docs_html(title: str) -> str:
    """The ``/docs`` page: ``/openapi.json`` drawn as text, nothing loaded from elsewhere."""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<link rel="icon" href="data:,"><title>{html.escape(title)}: API</title><style>'
        "body{font:15px/1.4 system-ui,sans-serif;max-width:60em;margin:1em auto;padding:0 1em}"
        "pre,dd{white-space:pre-wrap;font:13px/1.3 monospace;background:#f6f6f6;padding:.4em}"
        "h2{border-top:1px solid #ccc;padding-top:.6em}.key{color:#a40}</style></head><body>"
        f"<h1>{html.escape(title)}: API</h1><p>The machine-readable form: "
        '<a href="openapi.json">openapi.json</a>. The page to try it: <a href="./">/</a>.</p>'
        f'<main id="api"></main><script>{_DOCS_JS}</script></body></html>'
    )
