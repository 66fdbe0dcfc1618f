"""The page ``rnnkit inspect`` writes: one self-contained HTML file.

Everything is inline (CSS, JavaScript, the figures as base64 PNG data URIs, the recorded
gates as JSON), so the page opens from disk with no network. Besides the figures it
has two interactive views:

- follow a unit: pick a part (encoder layer / direction, decoder layer), a gate and a
  unit; each token is coloured by that unit's value at its step, the number under it
  (the cell visualisations of Karpathy, Johnson & Fei-Fei 2015);
- attention: point at an output token and the source tokens are coloured by α.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor

from rnnkit.atomic import written_bytes
from rnnkit.data import write_atomic
from rnnkit.inspect_plots import gate_panels
from rnnkit.record import Recording, SatKey

__all__ = ["GATE_CONTROLS", "GATE_CSS", "GATE_JS", "page_data", "write_html"]

_RANGES = {  # the value range of each traced quantity; None: scaled to the data
    "input": [0, 1],
    "forget": [0, 1],
    "output": [0, 1],
    "reset": [0, 1],
    "update": [0, 1],
    "candidate": [-1, 1],
    "cell": None,
    "hidden": None,
}


def _ranges(rec: Recording) -> dict[str, list[int] | None]:
    """:data:`_RANGES` for the cell of ``rec``: its σ gates (a custom cell's declared
    ones too) in [0, 1], a gate that only bears a σ gate's name scaled to the data."""
    sigmoid = set(rec.sigmoid)
    out = {k: (v if v != [0, 1] or k in sigmoid else None) for k, v in _RANGES.items()}
    return out | dict.fromkeys(sigmoid, [0, 1])


def _round(x: Any, digits: int) -> Any:
    if isinstance(x, list):
        return [_round(v, digits) for v in x]
    return round(x, digits) if math.isfinite(x) else None


def _rows(t: Tensor, digits: int = 4) -> list[Any]:
    """A tensor as nested lists, rounded; NaN / inf (a diverged model) become null."""
    out = _round(t.detach().float().cpu().tolist(), digits)
    assert isinstance(out, list)
    return out


def _part_key(part: tuple[str, int, str]) -> str:
    name, layer, direction = part
    return f"{name}_l{layer}" + (f"_{direction}" if name == "encoder" else "")


def page_data(
    rec: Recording, saturation: Mapping[SatKey, tuple[Tensor, Tensor]] | None = None
) -> dict[str, Any]:
    """The recording as plain JSON-ready data: tokens, α, and per part and gate the
    ``(T, H)`` values plus the units ordered by how much they vary (and, with a corpus,
    each unit's saturation fractions)."""
    parts = []
    for part, traces in rec.gates.items():
        gates, order, sat = {}, {}, {}
        first = gate_panels(rec.cell, list(traces))
        for name in first + [n for n in traces if n not in first]:
            values = traces[name]
            gates[name] = _rows(values.float())
            spread = values.float().std(0, unbiased=False) if values.shape[0] > 1 else values[0]
            order[name] = spread.abs().argsort(descending=True, stable=True).tolist()
            if saturation and (*part, name) in saturation:
                lf, rf = saturation[(*part, name)]
                sat[name] = [_rows(lf), _rows(rf)]
        name, layer, direction = part
        title = f"{name} layer {layer}" + (f", {direction}" if name == "encoder" else "")
        parts.append(
            {
                "key": _part_key(part),
                "title": title,
                "tokens": "src" if name == "encoder" else "out",
                "gates": gates,
                "order": order,
                "saturation": sat,
            }
        )
    return {
        "cell": rec.cell,
        "src": rec.src_tokens,
        "out": rec.out_tokens,
        "translation": rec.translation,
        "attention": None if rec.attention is None else _rows(rec.attention),
        "ranges": _ranges(rec),
        "parts": parts,
    }


GATE_CONTROLS = (
    '<div class="controls"><label>part <select id="part"></select></label>'
    '<label>gate <select id="gate"></select></label>'
    '<span class="unit"><label for="unit">unit</label> <button id="prev" type="button" '
    'aria-label="previous unit" title="previous unit">◀</button> <input id="unit" '
    'type="number" min="0" style="width:5em"> <button id="next" type="button" '
    'aria-label="next unit" title="next unit">▶</button></span>'
    '<label>units that vary most <select id="top"></select></label></div>'
    '<div id="follow" class="tokens"></div><p id="legend" class="legend"></p>'
)


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(written_bytes(path)).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


GATE_CSS = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 70em;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 2em; }
.sent { font-size: 1.1em; background: #f4f4f4; padding: .4em .7em; border-radius: 4px; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { color: #555; font-size: .9em; }
.controls > label, .controls > .unit { margin-right: 1.2em; white-space: nowrap; }
select, input { font-size: 1em; }
.tokens { display: flex; flex-wrap: wrap; gap: 3px; margin: .8em 0; }
.tok { display: inline-flex; flex-direction: column; align-items: center;
       border: 1px solid #ccc; border-radius: 3px; min-width: 1.8em; cursor: default; }
.tok .t { font: 15px/1.6 ui-monospace, monospace; padding: 0 .3em; white-space: pre; }
.tok .v { font-size: .72em; color: #333; background: #fff; width: 100%;
          text-align: center; border-top: 1px solid #ddd; }
.tok.sel { outline: 2px solid #000; }
.legend { font-size: .85em; color: #555; }
.bar { display: inline-block; width: 12em; height: .8em; vertical-align: middle;
       border: 1px solid #aaa; }
"""

# The gate view, shared with the page of `rnnkit serve` (rnnkit.serve.page): functions of a
# global `D` (page_data's shape) and the controls of GATE_CONTROLS; wireGates() starts it.
GATE_JS = r"""
const $ = (id) => document.getElementById(id);
// a token as drawn: what would not show (controls, format characters as U+202E, which
// turns the text after it around, spaces) as a visible sign: ␣, <U+001B>, <U+202E>
// (the Control Pictures ␀..␟ are missing from common fonts: a box)
const INVISIBLE = /[\p{Cc}\p{Cf}\p{Z}]/gu;
function visible(c) {
  const n = c.codePointAt(0);
  return n === 32 ? "\u2423" : `<U+${n.toString(16).toUpperCase().padStart(4, "0")}>`;
}
const show = (t) => (t === "\u2581" ? "\u2423" : t.replace(INVISIBLE, visible));
function colour(v, lo, hi) {  // (0,1) ranges: white to blue; symmetric: blue-white-red
  if (v === null) return "#ccc";
  if (lo === 0) {
    const a = Math.max(0, Math.min(1, (v - lo) / (hi - lo)));
    const c = (k) => Math.round(255 - k * a);
    return `rgb(${c(222)},${c(153)},${c(75)})`;
  }
  const a = Math.max(-1, Math.min(1, v / hi));
  return a >= 0
    ? `rgb(255,${Math.round(255 - 170 * a)},${Math.round(255 - 180 * a)})`
    : `rgb(${Math.round(255 + 190 * a)},${Math.round(255 + 120 * a)},255)`;
}
function tokenBox(text, v, lo, hi, digits) {
  const box = document.createElement("span");
  box.className = "tok";
  const t = document.createElement("span");
  t.className = "t"; t.textContent = show(text); t.style.background = colour(v, lo, hi);
  if (lo === 0 ? v > 0.6 : Math.abs(v) > 0.7 * hi) t.style.color = "#fff";
  const n = document.createElement("span");
  n.className = "v"; n.textContent = v === null ? "nan" : v.toFixed(digits);
  box.append(t, n);
  return box;
}
function part() { return D.parts[$("part").selectedIndex]; }
function fillGates() {
  const g = $("gate"), keep = g.value;
  g.innerHTML = "";
  for (const name of Object.keys(part().gates)) g.add(new Option(name, name));
  if (keep in part().gates) g.value = keep;
  fillUnits();
}
function fillUnits() {
  const p = part(), gate = $("gate").value, s = $("top");
  const H = p.gates[gate][0].length;
  $("unit").max = H - 1;
  s.innerHTML = "";
  p.order[gate].slice(0, 20).forEach((u, r) => s.add(new Option(`#${r + 1}: unit ${u}`, u)));
  if (+$("unit").value > H - 1) $("unit").value = p.order[gate][0];
  draw();
}
function draw() {
  const p = part(), gate = $("gate").value, vals = p.gates[gate];
  const H = vals[0].length;
  let u = Math.max(0, Math.min(H - 1, Math.trunc(+$("unit").value) || 0));  // (1e9: H - 1)
  $("unit").value = u;
  $("top").value = u;  // (blank when u is not among the units that vary most)
  const col = vals.map((row) => row[u]);
  let [lo, hi] = D.ranges[gate] || [null, null];
  if (lo === null) {  // one scale for every unit of this gate and layer, as the figures
    hi = vals.reduce((m, row) => row.reduce((a, v) => Math.max(a, Math.abs(v ?? 0)), m), 1e-6);
    lo = -hi;
  }
  const toks = p.tokens === "src" ? D.src : D.out, box = $("follow");
  box.innerHTML = "";
  toks.forEach((t, i) => box.append(tokenBox(t, col[i], lo, hi, 3)));
  const rank = p.order[gate].indexOf(u) + 1;
  // the server sends the first units_sent units of units_total: say how many there are
  const of = D.units_total > H && H === D.units_sent ? `${D.units_total} (the first ${H} sent)` : H;
  let text = `${p.title}, ${gate}, unit ${u} of ${of} ` +
    `(rank ${rank} by variation over this sentence); ` +
    (lo === 0 ? "white = 0 (shut), blue = 1 (open)"
      : `blue = ${lo.toFixed(2)}, white = 0, red = ${hi.toFixed(2)}`);
  if (p.tokens === "out") text += "; each output token shows the step that wrote it";
  const sat = p.saturation[gate];
  if (sat) text += `; over the corpus: ${(100 * sat[0][u]).toFixed(1)}% of steps < 0.1, ` +
    `${(100 * sat[1][u]).toFixed(1)}% > 0.9`;
  $("legend").textContent = text;
}
function attention(t) {
  const box = $("att-src");
  box.innerHTML = "";
  D.src.forEach((s, j) => box.append(tokenBox(s, t === null ? 0 : D.attention[t][j], 0, 1, 2)));
  document.querySelectorAll("#att-out .tok").forEach((e, i) => e.classList.toggle("sel", i === t));
}
function wireGates() {
  $("part").innerHTML = "";
  D.parts.forEach((p) => $("part").add(new Option(p.title, p.key)));
  $("unit").value = 0;
  fillGates();
  $("unit").value = part().order[$("gate").value][0]; draw();
}
$("part").onchange = () => {  // units of another layer are unrelated: start at its top one
  fillGates(); $("unit").value = part().order[$("gate").value][0]; draw();
};
$("gate").onchange = fillUnits;
$("unit").oninput = draw;
$("top").onchange = () => { $("unit").value = $("top").value; draw(); };
$("prev").onclick = () => { $("unit").value = +$("unit").value - 1; draw(); };
$("next").onclick = () => { $("unit").value = +$("unit").value + 1; draw(); };
"""

_JS = (
    'const D = JSON.parse(document.getElementById("data").textContent);\n'
    + GATE_JS
    + r"""
wireGates();
if (D.attention) {
  D.out.forEach((t, i) => {
    const b = tokenBox(t, null, 0, 1, 0);
    b.querySelector(".v").textContent = `${i + 1}`;
    b.querySelector(".t").style.background = "#fff";
    b.onmouseenter = () => attention(i); b.onclick = () => attention(i);
    $("att-out").append(b);
  });
  attention(0);
}
"""
)


def write_html(
    rec: Recording,
    path: str | Path,
    figures: Mapping[str, Path],
    saturation: Mapping[SatKey, tuple[Tensor, Tensor]] | None = None,
    sentence: str | None = None,
) -> Path:
    """Write the self-contained inspection page for ``rec`` to ``path`` atomically.

    Args:
        figures: name → PNG written by :mod:`rnnkit.inspect` (``attention``,
            ``saturation``, and one per part, e.g. ``encoder_l0_forward``); embedded.
        saturation: the corpus statistics, shown beside the unit one follows.
        sentence: the raw source text (default: the source tokens joined).
    Returns:
        ``path``.
    """
    path = Path(path)
    esc = html.escape
    data = json.dumps(page_data(rec, saturation), ensure_ascii=False, separators=(",", ":"))
    data = data.replace("<", "\\u003c")  # no "</script>" can end the JSON block early
    src_text = sentence.strip() if sentence else " ".join(rec.src_tokens[:-1])
    body = [
        f"<h1>rnnkit inspect: {esc(rec.cell)} encoder-decoder</h1>",
        f'<p>source<br><span class="sent">{esc(src_text)}</span></p>',
        f"<p>translation ({esc(rec.decoding)})<br>"
        f'<span class="sent">{esc(rec.translation)}</span></p>',
        "<h2>Follow a unit</h2>",
        GATE_CONTROLS,
    ]
    if rec.attention is not None:
        body += [
            "<h2>Attention</h2>",
            '<p class="legend">Point at an output token: the source tokens are coloured '
            "by its attention weights α (white 0, blue 1).</p>",
            '<div id="att-out" class="tokens"></div><div id="att-src" class="tokens"></div>',
        ]
    captions = {
        "attention": "Attention weights α: one row per output token, one column per "
        "source token (Bahdanau et al. 2015, Fig. 3).",
        "saturation": "Gate saturation over the corpus: each dot is one unit of one gate, "
        "placed by the fraction of steps it spends below 0.1 and above 0.9 "
        "(Karpathy, Johnson & Fei-Fei 2015, Fig. 3).",
    }
    body.append("<h2>Figures</h2>")
    for name, fig in figures.items():
        caption = captions.get(name, f"Gates over time, {name.replace('_', ' ')}.")
        body.append(f"<figure>{_img(fig, caption)}<figcaption>{esc(caption)}</figcaption></figure>")
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>rnnkit inspect: {esc(src_text[:60])}</title>"
        f"<style>{GATE_CSS}</style></head><body>\n"
        + "\n".join(body)
        + f'\n<script type="application/json" id="data">{data}</script>'
        + f"\n<script>{_JS}</script>\n</body></html>\n"
    )
    write_atomic(path, page.encode("utf-8"))
    return path
