"""The page at ``GET /``: one self-contained HTML document (no CDN, no network).

A text box (Enter in any field translates; one request is in flight at a time), the
translation and its n-best list with scores, the attention matrix drawn as SVG (source
tokens across, target tokens down; hover a cell for the two tokens and α, click a target
token, or focus it and press Enter, to lay its row over the source sentence) and the gate
view of ``rnnkit inspect``: the CSS, controls and JavaScript of :mod:`rnnkit.inspect_html`,
fed with the ``gates`` the API returns. An API error replaces the previous result.
"""

from __future__ import annotations

import functools

from rnnkit.inspect_html import GATE_CONTROLS, GATE_CSS, GATE_JS

__all__ = ["page_html"]

_CSS = """
#src { font-size: 1.1em; width: 28em; max-width: 100%; box-sizing: border-box; padding: .3em; }
#ask label, #ask button { white-space: nowrap; margin-right: .6em; }
#ask details { margin-top: .4em; } #key { max-width: 100%; box-sizing: border-box; }
#go[aria-disabled="true"] { opacity: .5; cursor: progress; }
#err, .sent, #nbest td { overflow-wrap: anywhere; }
#err { color: #b00020; font-weight: 600; white-space: pre-wrap; }
#nbest td { padding: .1em .8em .1em 0; } #nbest td.s { color: #555; font-variant: tabular-nums; }
#heatbox { overflow-x: auto; max-width: 100%; }
#heat { display: block; }
#heat text { font: 12px ui-monospace, monospace; }
#heat rect.c { stroke: #fff; stroke-width: 1; }
#heat rect.c:hover { stroke: #000; stroke-width: 2; }
#heat text.row { cursor: pointer; } #heat text.row.sel { font-weight: 700; fill: #b00020; }
#heat text.row:focus { outline: none; }
#heat text.row:focus-visible { text-decoration: underline; fill: #0b57d0; font-weight: 700; }
#heat text.unk, .tok.unk .t { fill: #b00020; color: #b00020; font-style: italic; }
#heat rect.band { fill: none; stroke: #b00020; stroke-width: 2; }
#tip { position: fixed; pointer-events: none; background: #222; color: #fff; padding: .2em .5em;
       border-radius: 3px; font: 13px ui-monospace, monospace; display: none;
       white-space: nowrap; max-width: calc(100vw - 16px); overflow: hidden;
       text-overflow: ellipsis; }
.busy #result { opacity: .5; }
"""

_BODY = """
<h1>rnnkit serve</h1>
<p id="model" class="legend"></p>
<div id="ask"><input id="src" type="text" autofocus aria-label="text to translate"
placeholder="a sentence, e.g. 9th of May, 2018">
<button id="go" type="button">Translate</button>
<label>beam <input id="beam" type="number" min="1" max="32" style="width:4em"></label>
<label title="how many of the beam's translations to list: at most the beam size">n-best
(≤ beam) <input id="nb" type="number" min="1" max="32" value="1" style="width:4em"></label>
<label id="unkl" title="write each &lt;unk&gt; as the source token it attends to most"><input
id="unk" type="checkbox"> copy &lt;unk&gt;</label> <span id="state" role="status"
class="legend"></span>
<details><summary>API key</summary><form id="keyform">
<input id="key" type="password" aria-label="API key" placeholder="if the server needs one"
autocomplete="off"></form></details></div>
<p id="err" role="alert"></p>
<div id="result" hidden>
<p aria-live="polite">translation<br><span id="out" class="sent"></span>
<span id="score" class="legend"></span></p>
<p id="note" class="legend"></p>
<h2>n-best</h2><p id="nbinfo" class="legend"></p><table id="nbest"></table>
<div id="attview"><h2>Attention</h2>
<p class="legend">One row per target token, one column per source token (white 0, blue 1).
Point at a cell for α; click a target token (or Tab to it and press Enter) to lay its row
over the source sentence.</p>
<div id="heatbox"><svg id="heat" xmlns="http://www.w3.org/2000/svg" role="group"
aria-label="attention matrix: one button per target token"></svg></div>
<p id="att-wide" class="legend" hidden>The matrix is wider than the page: scroll it
sideways.</p><p id="att-cap" class="legend"></p>
<div id="att-src" class="tokens"></div><div id="att-out" hidden></div></div>
<div id="gview"><h2>Gates</h2>
<p class="legend" id="gnote"></p>
%CONTROLS%
</div></div>
<div id="tip"></div>
"""

_HEATMAP_JS = r"""
const SVG = "http://www.w3.org/2000/svg";
function el(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
const longest = (toks) => Math.max(1, ...toks.map((t) => show(t).length));
function heatmap(src, out, att, unknown) {
  const svg = $("heat"), L = 14 + 8 * longest(out), top = 14 + 8 * longest(src);
  const room = $("heatbox").clientWidth - L - 10 - 4 * longest(src);  // cells that fit
  const C = Math.max(14, Math.min(24, Math.floor(room / src.length)));
  const unk = new Set(unknown || []);
  svg.innerHTML = "";
  // a column label leans right by half its length (rotated 60°): room for the last one
  svg.setAttribute("width", L + C * src.length + 10 + 4 * longest(src));
  svg.setAttribute("height", top + C * out.length + 10);
  src.forEach((s, j) => {
    const x = L + C * j + C / 2;
    svg.append(el("text", {x, y: top - 6, transform: `rotate(-60 ${x} ${top - 6})`,
      "aria-hidden": "true", class: unk.has(j) ? "unk" : ""}, show(s)));
  });
  const band = el("rect", {class: "band", x: L, width: C * src.length, height: C, y: -99});
  att.forEach((row, i) => {
    const label = el("text", {class: "row", x: L - 6, y: top + C * i + C * 0.65,
      "text-anchor": "end", tabindex: 0, role: "button", "aria-pressed": "false",
      "aria-label": `target token ${i + 1}, ${show(out[i])}`}, show(out[i]));
    label.onclick = () => pick(i);
    label.onkeydown = (e) => {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); pick(i); }
    };
    svg.append(label);
    row.forEach((a, j) => {
      const r = el("rect", {class: "c", x: L + C * j, y: top + C * i, width: C, height: C,
        fill: colour(a, 0, 1), "data-i": i, "data-j": j, "aria-hidden": "true"});
      const read = unk.has(j) ? " (read as <unk>)" : "";
      const text = `${show(out[i])} \u2190 ${show(src[j])}${read}: \u03b1 = ${fixed(a, 3)}`;
      r.onmouseenter = (ev) => tip(ev, text);
      r.onmousemove = (ev) => tip(ev);
      r.onmouseleave = hideTip;
      svg.append(r);
    });
  });
  svg.append(band);
  svg.dataset.top = top; svg.dataset.c = C;
  $("att-wide").hidden = svg.getBoundingClientRect().width <= $("heatbox").clientWidth;
}
function tip(ev, text) {  // beside the pointer, inside the window
  const t = $("tip");
  if (text !== undefined) t.textContent = text;
  t.style.display = "block";
  const W = document.documentElement.clientWidth, H = innerHeight;
  let x = ev.clientX + 12, y = ev.clientY + 12;
  if (x + t.offsetWidth > W - 4) x = Math.max(4, ev.clientX - 12 - t.offsetWidth);
  if (y + t.offsetHeight > H - 4) y = Math.max(4, ev.clientY - 12 - t.offsetHeight);
  t.style.left = x + "px"; t.style.top = y + "px";
}
function hideTip() { $("tip").style.display = "none"; }
addEventListener("scroll", hideTip, true);  // (capture: the matrix's own scroll too)
document.addEventListener("pointerdown", (e) => {  // a tap elsewhere (a touch leaves no
  if (!(e.target instanceof Element && e.target.closest("#heat rect.c"))) hideTip();  // leave)
});
function pick(i) {  // target token i's row: framed, and laid over the source sentence
  const svg = $("heat");
  svg.querySelector("rect.band").setAttribute("y", +svg.dataset.top + +svg.dataset.c * i);
  svg.querySelectorAll("text.row").forEach((e, k) => {
    e.classList.toggle("sel", k === i); e.setAttribute("aria-pressed", k === i);
  });
  const box = $("att-src");
  box.innerHTML = "";
  A.src.forEach((s, j) => {
    const b = box.appendChild(tokenBox(s, A.att[i][j], 0, 1, 2));
    if (A.unk.includes(j)) {
      b.classList.add("unk"); b.title = "not in the vocabulary: read as <unk>";
    }
  });
  $("att-cap").textContent = `α of target token ${i + 1} (${show(A.out[i])}) over the source:`;
}
"""

_APP_JS = r"""
let D = null, A = null;  // D: the gate view's data (inspect's shape); A: attention shown
%GATE_JS%
const fixed = (v, d) => (v === null || v === undefined ? "nan" : v.toFixed(d));
%HEATMAP_JS%
function reset() {  // nothing of the previous result stays on the page
  D = A = null;
  for (const id of ["out", "score", "note", "nbinfo", "att-cap", "gnote", "legend"]) {
    $(id).textContent = "";
  }
  for (const id of ["nbest", "heat", "att-src", "follow", "part", "gate", "top"]) {
    $(id).innerHTML = "";
  }
  $("heat").removeAttribute("width"); $("heat").removeAttribute("height");
  $("result").hidden = $("attview").hidden = $("gview").hidden = $("att-wide").hidden = true;
  hideTip();
}
function shown(t, beam) {
  reset();
  $("result").hidden = false;
  $("out").textContent = t.text;
  $("score").textContent = `score ${fixed(t.score, 4)} (` +
    (beam > 1 ? "log-probability over the length penalty" : "log-probability") +
    (beam > 1 && COVERAGE ? ", plus the coverage penalty" : "") + ")";
  const hyps = t.alternatives || [t], nb = $("nbest");
  hyps.forEach((h, k) => {
    const tr = nb.insertRow(); tr.insertCell().textContent = `${k + 1}.`;
    tr.insertCell().textContent = h.text;
    const s = tr.insertCell(); s.className = "s"; s.textContent = fixed(h.score, 4);
  });
  $("nbinfo").textContent = beam > 1 ? `The ${hyps.length} best of beam search, beam ${beam}.`
    : "Greedy decoding (beam 1) gives one translation; a larger beam gives more.";
  const src = t.source_tokens || [], unk = t.source_unknown || [];
  if (unk.length) {
    $("note").textContent = `${unk.length} source token${unk.length > 1 ? "s are" : " is"} ` +
      "not in the model's vocabulary (in red): it read " + (unk.length > 1 ? "them" : "it") +
      " as <unk>, knowing nothing of " + (unk.length > 1 ? "them" : "it") + ".";
  }
  if (t.attention && t.attention.length) {
    A = {src, out: t.target_tokens, att: t.attention, unk};
    $("attview").hidden = false;
    heatmap(src, t.target_tokens, t.attention, unk); pick(0);
  }
  const g = t.gates;
  if (g) {
    D = Object.assign({}, g); $("gview").hidden = false;
    const few = g.units_sent < g.units_total;
    $("gnote").textContent = "Colour every token by one unit of one gate (" +
      (beam > 1 ? `beam ${beam}'s best translation` : "greedy decoding") +
      (few ? `; the first ${g.units_sent} of ${g.units_total} units` : "") + ").";
    wireGates();
  }
}
let DEFAULT_BEAM = 1, MAX_BEAM = 32, GATES = true, INFO = false, COVERAGE = false;
let NB_SET = false, BUSY = null;
function fitNb() {  // n-best is at most the beam: it follows the beam (3 at most) until set
  const beam = Math.trunc(+$("beam").value) || DEFAULT_BEAM, nb = $("nb");
  nb.max = Math.max(1, Math.min(MAX_BEAM, beam));
  if (!NB_SET) nb.value = Math.min(3, beam);
  else if (+nb.value > beam) nb.value = Math.max(1, beam);
}
function ask() {  // what the fields ask for; each field shows what is sent (a beam wider
  // than the model's vocabulary goes as typed: the API's 422 says why)
  const beam = Math.max(1, Math.trunc(+$("beam").value) || DEFAULT_BEAM);  // (1e3 as typed)
  $("beam").value = beam; fitNb();
  const nb = Math.min(beam, Math.max(1, Math.trunc(+$("nb").value) || 1));
  $("nb").value = nb;
  const body = {text: $("src").value, attention: true, gates: GATES, beam};
  if (nb > 1) body.n_best = nb;
  if ($("unk").checked && !$("unkl").hidden) body.replace_unk = true;  // (hidden: a model
  // without attention, served since a SIGHUP; ticked, it cannot be unticked)
  return {body, key: $("key").value};
}
function busy(on) {
  document.body.classList.toggle("busy", on);
  $("go").setAttribute("aria-disabled", on);  // (still focusable: the focus stays put)
  $("result").setAttribute("aria-busy", on);
  $("state").textContent = on ? "translating\u2026" : "";
}
async function translate(a) {
  const headers = {"Content-Type": "application/json"};
  if (a.key) headers["Authorization"] = "Bearer " + a.key;
  try {
    let r;
    try {
      r = await fetch("translate", {method: "POST", headers, body: JSON.stringify(a.body)});
    } catch (e) {  // (fetch says only "Failed to fetch")
      throw new Error("cannot reach the server: is it still running?");
    }
    if (r.status === 401 && a.key) throw new Error("401: the server refused this API key");
    let data = null;
    try { data = await r.json(); } catch (e) { data = null; }
    const why = (data && data.detail) || "no message";
    if (r.status === 422) loadInfo(true);  // a SIGHUP may serve another model: its limits
    if (!r.ok) throw new Error(`${r.status} ${r.statusText}: ${why}`);
    $("err").textContent = "";
    shown(data.translations[0], a.body.beam || DEFAULT_BEAM);
  } catch (e) {
    reset();  // the previous result does not answer this input
    $("err").textContent = "Error: " + e.message;
  }
}
function refused() {  // nothing to translate: said, not sent (a too long text is sent:
  const why = $("src").value.trim() ? "" : "Type a sentence to translate.";  // the 413 says)
  if (why) { reset(); $("err").textContent = why; }
  return why;
}
async function go() {  // one request in flight; fields changed meanwhile are sent next
  if (BUSY) {
    if (JSON.stringify(ask()) !== BUSY.sent) BUSY.again = true;
    return;
  }
  if (refused()) return;
  BUSY = {sent: null, again: false}; busy(true);
  try {
    if (!INFO) await loadInfo();
    for (;;) {
      if (refused()) break;  // (emptied while the last one was out)
      const a = ask(), sent = JSON.stringify(a);
      if (sent === BUSY.sent) break;
      BUSY.sent = sent; BUSY.again = false;
      await translate(a);
      if (!BUSY.again) break;
    }
  } finally { BUSY = null; busy(false); }
}
$("go").onclick = go;
$("ask").addEventListener("keydown", (e) => {
  const f = e.target;
  if (e.key === "Enter" && f.tagName === "INPUT" && f.type !== "checkbox") {
    e.preventDefault(); go();
  }
});
$("beam").addEventListener("input", fitNb);
$("nb").addEventListener("input", () => { NB_SET = true; });
async function loadInfo(again) {  // at load, once a key is typed (a 401 before), and
  // again (the fields as they are) after a 422 or when the page is shown again
  const key = $("key").value;
  try {
    const r = await fetch("info", {headers: key ? {"X-API-Key": key} : {}});
    if (r.status === 401) {
      $("key").closest("details").open = true;
      $("model").textContent = "This server needs an API key.";
      return;
    }
    if (!r.ok) return;
    const m = await r.json();
    INFO = true;
    const most = (m.limits && m.limits.max_beam) || 32;
    MAX_BEAM = Math.max(1, Math.min(most, m.target_vocab_size || most)); $("beam").max = MAX_BEAM;
    COVERAGE = !!m.decode.coverage_penalty;
    DEFAULT_BEAM = m.decode.beam; if (!again) $("beam").value = m.decode.beam;
    fitNb();
    GATES = (m.models || 1) === 1;  // an ensemble has no gates to show
    $("unkl").hidden = m.attention === "none";  // nothing attended to copy from
    const arch = `${m.cell}, attention ${m.attention}, ` +
      `${m.encoder_layers}+${m.decoder_layers} layers, hidden ${m.hidden_size}`;
    const n = `${m.parameters.toLocaleString()} parameters`;
    $("model").textContent = GATES ? `${m.checkpoint}: ${arch}, ${n}`
      : `ensemble of ${m.models} (${m.checkpoint}), ${n} in all; the first: ${arch}`;
  } catch (e) { /* the server is away: translate() will say so */ }
}
$("key").addEventListener("change", () => loadInfo());
document.addEventListener("visibilitychange", () => { if (!document.hidden) loadInfo(true); });
$("keyform").addEventListener("submit", (e) => e.preventDefault());
loadInfo();
"""


@functools.cache
def page_html() -> str:
    """The whole page: inspect's CSS and gate view plus the translation view."""
    body = _BODY.replace("%CONTROLS%", GATE_CONTROLS)
    js = _APP_JS.replace("%GATE_JS%", GATE_JS).replace("%HEATMAP_JS%", _HEATMAP_JS)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'  # no request for /favicon.ico (a 404 each load)
        f"<title>rnnkit serve</title><style>{GATE_CSS}{_CSS}</style></head><body>{body}"
        f"<script>{js}</script></body></html>\n"
    )
