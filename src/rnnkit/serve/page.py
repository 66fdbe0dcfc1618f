"""The page at ``GET /``: one self-contained HTML document (no CDN, no network).

A text box (Enter translates), the translation and its n-best list with scores, the
attention matrix drawn as SVG (source tokens across, target tokens down; hover a cell
for the two tokens and α, click a target token to lay its row over the source sentence)
and the gate view of ``rnnkit inspect``: the CSS, controls and JavaScript of
:mod:`rnnkit.inspect_html`, fed with the ``gates`` the API returns. API errors are shown.
"""

from __future__ import annotations

import functools

from rnnkit.inspect_html import GATE_CONTROLS, GATE_CSS, GATE_JS

__all__ = ["page_html"]

_CSS = """
#src { font-size: 1.1em; width: 28em; padding: .3em; }
#err { color: #b00020; font-weight: 600; white-space: pre-wrap; }
#nbest td { padding: .1em .8em .1em 0; } #nbest td.s { color: #555; font-variant: tabular-nums; }
#heat text { font: 12px ui-monospace, monospace; }
#heat rect.c { stroke: #fff; stroke-width: 1; }
#heat rect.c:hover { stroke: #000; stroke-width: 2; }
#heat text.row { cursor: pointer; } #heat text.row.sel { font-weight: 700; fill: #b00020; }
#heat rect.band { fill: none; stroke: #b00020; stroke-width: 2; }
#tip { position: fixed; pointer-events: none; background: #222; color: #fff; padding: .2em .5em;
       border-radius: 3px; font: 13px ui-monospace, monospace; display: none; }
.busy { opacity: .5; }
"""

_BODY = """
<h1>rnnkit serve</h1>
<p id="model" class="legend"></p>
<p><input id="src" type="text" autofocus placeholder="a sentence, e.g. 9th of May, 2018">
<button id="go">Translate</button>
<label>beam <input id="beam" type="number" min="1" max="32" style="width:4em"></label>
<label>n-best <input id="nb" type="number" min="1" max="32" value="3" style="width:4em"></label>
<label id="unkl" title="write each &lt;unk&gt; as the source token it attends to most"><input
id="unk" type="checkbox"> copy &lt;unk&gt;</label>
<details style="display:inline"><summary>API key</summary>
<input id="key" type="password" placeholder="if the server needs one"></details></p>
<p id="err" role="alert"></p>
<div id="result" hidden>
<p>translation<br><span id="out" class="sent"></span> <span id="score" class="legend"></span></p>
<h2>n-best</h2><table id="nbest"></table>
<h2>Attention</h2>
<p class="legend">One row per target token, one column per source token (white 0, blue 1).
Point at a cell for α; click a target token to lay its row over the source sentence.</p>
<svg id="heat" xmlns="http://www.w3.org/2000/svg"></svg>
<div id="att-src" class="tokens"></div><div id="att-out" hidden></div>
<div id="gview"><h2>Gates</h2>
<p class="legend" id="gnote"></p>
%CONTROLS%
</div></div>
<div id="tip"></div>
"""

_APP_JS = r"""
let D = null;
%GATE_JS%
const SVG = "http://www.w3.org/2000/svg";
function el(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
function heatmap(src, out, att) {
  const svg = $("heat"), C = 24, L = 14 + 8 * Math.max(...out.map((t) => show(t).length), 1);
  const top = 14 + 8 * Math.max(...src.map((t) => show(t).length), 1);
  svg.innerHTML = "";
  svg.setAttribute("width", L + C * src.length + 10);
  svg.setAttribute("height", top + C * out.length + 10);
  src.forEach((s, j) => {
    const x = L + C * j + C / 2;
    svg.append(el("text", {x, y: top - 6, transform: `rotate(-60 ${x} ${top - 6})`}, show(s)));
  });
  const band = el("rect", {class: "band", x: L, width: C * src.length, height: C, y: -99});
  att.forEach((row, i) => {
    const label = el("text", {class: "row", x: L - 6, y: top + C * i + C * 0.65,
      "text-anchor": "end"}, show(out[i]));
    label.onclick = () => pick(i);
    svg.append(label);
    row.forEach((a, j) => {
      const r = el("rect", {class: "c", x: L + C * j, y: top + C * i, width: C, height: C,
        fill: colour(a, 0, 1), "data-i": i, "data-j": j});
      const text = `${show(out[i])} \u2190 ${show(src[j])}: \u03b1 = ${a.toFixed(3)}`;
      r.onmouseenter = (ev) => tip(ev, text);
      r.onmousemove = (ev) => tip(ev);
      r.onmouseleave = () => { $("tip").style.display = "none"; };
      svg.append(r);
    });
  });
  svg.append(band);
  svg.dataset.top = top;
}
function tip(ev, text) {
  const t = $("tip");
  if (text !== undefined) t.textContent = text;
  t.style.display = "block";
  t.style.left = ev.clientX + 12 + "px"; t.style.top = ev.clientY + 12 + "px";
}
function pick(i) {
  const svg = $("heat"), band = svg.querySelector("rect.band");
  band.setAttribute("y", +svg.dataset.top + 24 * i);
  svg.querySelectorAll("text.row").forEach((e, k) => e.classList.toggle("sel", k === i));
  attention(i);
}
function shown(t) {
  $("result").hidden = false;
  $("out").textContent = t.text;
  $("score").textContent = `score ${t.score.toFixed(3)}`;
  const nb = $("nbest"); nb.innerHTML = "";
  (t.alternatives || [t]).forEach((h, k) => {
    const tr = nb.insertRow(); tr.insertCell().textContent = `${k + 1}.`;
    tr.insertCell().textContent = h.text;
    const s = tr.insertCell(); s.className = "s"; s.textContent = h.score.toFixed(4);
  });
  const g = t.gates;
  D = g ? Object.assign({}, g, {src: t.source_tokens, attention: t.attention}) : null;
  if (t.attention && t.attention.length) { heatmap(t.source_tokens, t.target_tokens, t.attention); }
  else { $("heat").innerHTML = ""; }
  if (g) {
    const few = g.units_sent < g.units_total;
    $("gnote").textContent = "Colour every token by one unit of one gate (greedy decoding" +
      (few ? `; the first ${g.units_sent} of ${g.units_total} units` : "") + ").";
    D.src = g.src; wireGates();
    if (t.attention && t.attention.length) { D.src = t.source_tokens; pick(0); }
  } else { $("gnote").textContent = "(an empty text has no gates)"; }
}
async function translate() {
  const text = $("src").value, body = {text, attention: true, gates: GATES};
  const beam = parseInt($("beam").value, 10), nb = parseInt($("nb").value, 10);
  if (beam) body.beam = beam;
  if (nb > 1) body.n_best = Math.min(nb, beam || DEFAULT_BEAM);
  if ($("unk").checked) body.replace_unk = true;
  const headers = {"Content-Type": "application/json"};
  if ($("key").value) headers["Authorization"] = "Bearer " + $("key").value;
  $("err").textContent = ""; document.body.classList.add("busy");
  try {
    const r = await fetch("translate", {method: "POST", headers, body: JSON.stringify(body)});
    let data = null;
    try { data = await r.json(); } catch (e) { data = null; }
    const why = (data && data.detail) || "no message";
    if (!r.ok) throw new Error(`${r.status} ${r.statusText}: ${why}`);
    shown(data.translations[0]);
  } catch (e) {
    $("err").textContent = "Error: " + e.message;
  } finally { document.body.classList.remove("busy"); }
}
let DEFAULT_BEAM = 1, GATES = true, INFO = false;
$("go").onclick = async () => { if (!INFO) await loadInfo(); translate(); };
$("src").addEventListener("keydown", (e) => {
  if (e.key === "Enter") { e.preventDefault(); $("go").onclick(); }
});
async function loadInfo() {  // at load, and again once a key is typed (a 401 before)
  const key = $("key").value;
  try {
    const r = await fetch("info", {headers: key ? {"X-API-Key": key} : {}});
    if (r.status === 401) {
      $("key").parentElement.open = true;
      $("model").textContent = "This server needs an API key.";
      return;
    }
    if (!r.ok) return;
    const m = await r.json();
    INFO = true;
    DEFAULT_BEAM = m.decode.beam; $("beam").value = m.decode.beam;
    GATES = (m.models || 1) === 1;
    $("gview").hidden = !GATES;  // an ensemble has no gates to show
    $("unkl").hidden = m.attention === "none";  // nothing attended to copy from
    const arch = `${m.cell}, attention ${m.attention}, ` +
      `${m.encoder_layers}+${m.decoder_layers} layers, hidden ${m.hidden_size}`;
    const n = `${m.parameters.toLocaleString()} parameters`;
    $("model").textContent = GATES ? `${m.checkpoint}: ${arch}, ${n}`
      : `ensemble of ${m.models} (${m.checkpoint}), ${n} in all; the first: ${arch}`;
  } catch (e) { /* the server is away: translate() will say so */ }
}
$("key").addEventListener("change", loadInfo);
loadInfo();
"""


@functools.cache
def page_html() -> str:
    """The whole page: inspect's CSS and gate view plus the translation view."""
    body = _BODY.replace("%CONTROLS%", GATE_CONTROLS)
    js = _APP_JS.replace("%GATE_JS%", GATE_JS)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>rnnkit serve</title><style>{GATE_CSS}{_CSS}</style></head><body>{body}"
        f"<script>{js}</script></body></html>\n"
    )
