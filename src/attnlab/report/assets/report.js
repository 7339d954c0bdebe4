(function () {
"use strict";
// Every string from the data reaches the page through textContent or a DOM property,
// never through innerHTML: token text cannot become markup.
var D = JSON.parse(document.getElementById("attnlab-data").textContent);
var doc = D.doc, views = D.views, tokens = D.tokens || [];
var heads = doc.heads || [];
function $(id) { return document.getElementById(id); }
function el(tag, cls, text) {
  var e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = String(text);
  return e;
}
function isNum(v) { return typeof v === "number" && isFinite(v); }
function fmt(v) {
  if (!isNum(v)) return "n/a";
  if (Number.isInteger(v)) return String(v);
  return Math.abs(v) >= 100 ? v.toFixed(1) : v.toPrecision(4);
}
function show(t) { return String(t).replace(/\n/g, "\u21b5").replace(/\t/g, "\u21e5").replace(/\r/g, "\u240d"); }

// Heads are addressed by (stack, layer, head); a single-stack document has one stack and
// looks exactly as before. An encoder-decoder has "encoder", "decoder", "decoder.cross".
function stackOf(h) { return String(h.stack || "decoder"); }
var stacks = [], dims = {}, byKey = {};
heads.forEach(function (h) {
  var s = stackOf(h);
  if (!(s in dims)) { stacks.push(s); dims[s] = {layers: 0, heads: 0}; }
  dims[s].layers = Math.max(dims[s].layers, h.layer + 1); dims[s].heads = Math.max(dims[s].heads, h.head + 1);
  byKey[s + "|" + h.layer + "." + h.head] = h;
});
var multi = stacks.length > 1;
function stackTitle(s) {
  if (/\.cross$/.test(s)) return s + ": cross-attention (" + s.replace(/\.cross$/, "") + " queries, encoder tokens as keys)";
  return s + ": self-attention";
}
function headName(s, l, h) { return (multi ? s + " " : "") + "layer " + l + " head " + h; }
// token texts by whose tokens they are: "input" (the text) or a stack with its own ("decoder")
function tokensOf(which) { return which && which !== "input" && D.stack_tokens && D.stack_tokens[which] ? D.stack_tokens[which] : tokens; }
function stackInfo(s) {
  var all = (views && views.stacks) || {}, one = multi ? all[s] : all[Object.keys(all)[0]];
  return one || {causal: views ? views.causal : true, queries: "input", keys: "input"};
}

var VIR = [[68,1,84],[72,40,120],[62,74,137],[49,104,142],[38,130,142],[31,158,137],[53,183,121],[109,205,89],[180,222,44],[253,231,37]];
function viridis(t) {
  t = Math.min(1, Math.max(0, t)) * (VIR.length - 1);
  var i = Math.min(VIR.length - 2, Math.floor(t)), f = t - i, a = VIR[i], b = VIR[i + 1];
  return "rgb(" + [0, 1, 2].map(function (c) { return Math.round(a[c] + f * (b[c] - a[c])); }).join(",") + ")";
}
var KIND_COLORS = {"sink": "#6c757d", "previous-token": "#2a9d8f", "induction": "#e4572e", "retrieval": "#8e44ad",
  "local": "#4c8bd6", "global": "#e9c46a", "mixed": "#b8c1cc", "unknown": "#d9dee6"};
var SPARE = ["#f4a261", "#264653", "#a7c957", "#bc4749", "#6a4c93", "#1982c4"];
function kindOf(h) { return String(h.kind === undefined || h.kind === null ? "unknown" : h.kind).trim().toLowerCase().replace(/[_ ]/g, "-"); }
function kindColor(k) {
  if (!(k in KIND_COLORS)) KIND_COLORS[k] = SPARE[Object.keys(KIND_COLORS).length % SPARE.length];
  return KIND_COLORS[k];
}

// ---- tooltip ----
var tip = $("tip");
function tipShow(ev, h) {
  tip.textContent = "";
  tip.appendChild(el("b", "", (multi ? stackOf(h) + " " : "") + "layer " + h.layer + ", head " + h.head));
  tip.appendChild(document.createTextNode("  kind: " + kindOf(h) + "\n"));
  D.stats.forEach(function (s) { if (s[0] in h) tip.appendChild(document.createTextNode(s[1] + ": " + fmt(h[s[0]]) + "\n")); });
  if ("retrieval_events" in h) tip.appendChild(document.createTextNode("retrieval copy events: " + fmt(h.retrieval_events) + "\n"));
  var top = h.top_received || [];
  if (top.length) {
    tip.appendChild(el("b", "", "top received"));
    top.forEach(function (r) { tip.appendChild(document.createTextNode("\n  pos " + r.position + "  \u00ab" + show(r.token) + "\u00bb  " + fmt(r.value))); });
  }
  tipMove(ev);
  tip.hidden = false;
}
function tipMove(ev) {
  var x = ev.clientX + 14, y = ev.clientY + 14, w = tip.offsetWidth, hgt = tip.offsetHeight;
  if (x + w > window.innerWidth - 4) x = ev.clientX - w - 14;
  if (y + hgt > window.innerHeight - 4) y = Math.max(4, ev.clientY - hgt - 14);
  tip.style.left = x + "px"; tip.style.top = y + "px";
}
function tipHide() { tip.hidden = true; }

// ---- grids ----
function gridCard(title, desc, colorOf, stack) {
  var card = el("div", "grid-card"), grid = el("div", "grid");
  var nLayers = dims[stack].layers, nHeads = dims[stack].heads;
  var cw = Math.max(4, Math.min(14, Math.floor(260 / Math.max(1, nHeads))));
  var ch = Math.max(3, Math.min(14, Math.floor(420 / Math.max(1, nLayers))));
  card.appendChild(el("h3", "", title));
  if (desc) card.title = desc;
  card.dataset.stack = stack;
  grid.style.gridTemplateColumns = "repeat(" + nHeads + ", " + cw + "px)";
  grid.style.setProperty("--cw", cw + "px"); grid.style.setProperty("--ch", ch + "px");
  for (var l = 0; l < nLayers; l++) for (var k = 0; k < nHeads; k++) {
    var h = byKey[stack + "|" + l + "." + k], c = el("div", "cell");
    c.dataset.key = l + "." + k; c.dataset.stack = stack;
    var color = h ? colorOf(h) : null;
    if (color) c.style.background = color; else c.classList.add("na");
    grid.appendChild(c);
  }
  grid.addEventListener("mousemove", function (ev) {
    var h = byKey[stack + "|" + (ev.target.dataset && ev.target.dataset.key)];
    if (h) tipShow(ev, h); else tipHide();
  });
  grid.addEventListener("mouseleave", tipHide);
  grid.addEventListener("click", function (ev) {
    var h = byKey[stack + "|" + (ev.target.dataset && ev.target.dataset.key)];
    if (h) selectHead(h.layer, h.head, stack);
  });
  card.appendChild(grid);
  card.appendChild(el("div", "grid-axis", "\u2192 heads 0\u2013" + (nHeads - 1) + ", \u2193 layers 0\u2013" + (nLayers - 1)));
  return card;
}
// one block of cards per stack (its own title); a single stack fills the list directly
function stackBox(list, stack, note) {
  if (!multi) return list;
  var block = el("div", "stack-block"), inner = el("div", "grid-list");
  block.dataset.stack = stack;
  block.appendChild(el("h3", "stack-title", stackTitle(stack)));
  if (note) block.appendChild(el("p", "help", note));
  block.appendChild(inner); list.appendChild(block);
  return inner;
}
function buildGrids() {
  var list = $("grid-list");
  if (multi) list.classList.add("stacked");
  stacks.forEach(function (stack) {
    var mine = heads.filter(function (h) { return stackOf(h) === stack; });
    var skipped = D.stats.filter(function (s) {  // defined in other stacks, not in this one
      return !mine.some(function (h) { return isNum(h[s[0]]); }) && heads.some(function (h) { return isNum(h[s[0]]); });
    });
    var note = /\.cross$/.test(stack) && skipped.length ? "Not defined for cross-attention (its keys are encoder tokens, not positions among the queries): "
      + skipped.map(function (s) { return s[1]; }).join(", ") + "." : "";
    var box = stackBox(list, stack, note);
    D.stats.forEach(function (s) { statCard(box, s, mine, stack); });
  });
  if (!list.querySelector(".grid-card")) list.appendChild(el("p", "help", "No numeric statistics in heads.json."));
}
function statCard(list, s, mine, stack) {
    var vals = mine.map(function (h) { return h[s[0]]; }).filter(isNum);
    if (!vals.length) return;
    var lo = Math.min.apply(null, vals), hi = Math.max.apply(null, vals), span = hi - lo || 1;
    var card = gridCard(s[1], s[2], function (h) { return isNum(h[s[0]]) ? viridis((h[s[0]] - lo) / span) : null; }, stack);
    card.dataset.stat = s[0];
    var bar = el("div", "scale");
    bar.style.background = "linear-gradient(to right," + VIR.map(function (c) { return "rgb(" + c.join(",") + ")"; }).join(",") + ")";
    card.appendChild(bar);
    var ax = el("div", "axis");
    ax.appendChild(el("span", "", fmt(lo))); ax.appendChild(el("span", "", fmt(hi)));
    card.appendChild(ax);
    list.appendChild(card);
}
function buildKinds() {
  stacks.forEach(function (stack) { kindCard($("kind-grid"), stack); });
}
function kindCard(box, stack) {
  var counts = {};
  heads.forEach(function (h) { if (stackOf(h) !== stack) return; var k = kindOf(h); counts[k] = (counts[k] || 0) + 1; });
  var card = gridCard(multi ? stackTitle(stack) : "kind of each head", "", function (h) { return kindColor(kindOf(h)); }, stack);
  var legend = el("div", "legend");
  Object.keys(counts).sort(function (a, b) { return counts[b] - counts[a]; }).forEach(function (k) {
    var item = el("span"), sw = el("span", "swatch");
    sw.style.background = kindColor(k);
    item.appendChild(sw); item.appendChild(document.createTextNode(k + " (" + counts[k] + ")"));
    legend.appendChild(item);
  });
  card.appendChild(legend);
  box.appendChild(card);
}
function buildSinks() {
  var sinks = doc.sinks || [], box = $("sink-table");
  if (!sinks.length) { box.appendChild(el("p", "help", "No sink tokens above the threshold.")); return; }
  var t = el("table", "sinks"), head = el("tr"), of = sinks.some(function (s) { return s.stack; });
  (of ? ["tokens of"] : []).concat(["position", "token", "share of heads", "mean received"]).forEach(function (c) { head.appendChild(el("th", "", c)); });
  t.appendChild(head);
  sinks.forEach(function (s) {
    var r = el("tr");
    if (of) r.appendChild(el("td", "", s.stack || ""));
    r.appendChild(el("td", "", s.position)); r.appendChild(el("td", "tok", show(s.token)));
    r.appendChild(el("td", "", fmt(s.heads_fraction))); r.appendChild(el("td", "", fmt(s.mean_received)));
    t.appendChild(r);
  });
  box.appendChild(t);
}

// ---- packed arrays ----
function bytes(b64) {
  var bin = atob(b64), u = new Uint8Array(bin.length);
  for (var i = 0; i < bin.length; i++) u[i] = bin.charCodeAt(i);
  return new DataView(u.buffer);
}
function f16(h) {
  var s = (h & 0x8000) ? -1 : 1, e = (h >> 10) & 0x1f, f = h & 0x3ff;
  if (e === 0) return s * Math.pow(2, -14) * (f / 1024);
  if (e === 31) return f ? NaN : s * Infinity;
  return s * Math.pow(2, e - 15) * (1 + f / 1024);
}
function unpack(idxB64, valB64, k) {
  var di = bytes(idxB64), dv = bytes(valB64), n = di.byteLength / 2;
  var idx = new Uint16Array(n), val = new Float32Array(n);
  for (var i = 0; i < n; i++) { idx[i] = di.getUint16(2 * i, true); val[i] = f16(dv.getUint16(2 * i, true)); }
  return {idx: idx, val: val, k: k, rows: n / k};
}

// ---- token text panes ----
// WordPiece-style tokens carry no spaces of their own: space them out so words stay readable
var spaced = tokens.filter(function (t) { return /^\s/.test(t); }).length < 0.05 * tokens.length;
function tokenPane(boxId, onClick, toks) {
  var box = $(boxId), spans = [];
  toks = toks || tokens;
  box.textContent = "";
  if (spaced) box.classList.add("spaced");
  toks.forEach(function (t, i) {
    var s = el("span", "tok-span", show(t).replace(/\u21b5/g, "\u21b5\n"));
    s.dataset.pos = i; s.title = "position " + i;
    box.appendChild(s); spans.push(s);
  });
  if (!box.dataset.wired) {
    box.dataset.wired = "1";
    box.addEventListener("click", function (ev) { if (ev.target.dataset && ev.target.dataset.pos !== undefined) box.onPick(+ev.target.dataset.pos); });
  }
  box.onPick = onClick;
  return spans;
}
function paint(spans, weights, rgb, focus, skip) {
  var max = 0;
  weights.forEach(function (w, i) { if (!(skip && skip(i)) && w > max) max = w; });
  spans.forEach(function (s, i) {
    var w = weights[i] || 0, a = max > 0 ? Math.min(1, w / max) : 0;
    s.style.background = w > 0 ? "rgba(" + rgb + "," + (0.08 + 0.85 * a).toFixed(3) + ")" : "";
    s.classList.toggle("focus", i === focus);
  });
}
function reveal(box, span) {
  var top = span.offsetParent === box ? span.offsetTop : span.offsetTop - box.offsetTop;
  if (top < box.scrollTop || top > box.scrollTop + box.clientHeight - 20) box.scrollTop = Math.max(0, top - box.clientHeight / 2);
}
function fillList(listId, weights, n, toks) {
  toks = toks || tokens;
  var list = $(listId), order = [];
  list.textContent = "";
  weights.forEach(function (w, i) { if (w > 0) order.push(i); });
  order.sort(function (a, b) { return weights[b] - weights[a]; });
  order.slice(0, n).forEach(function (i) {
    var li = el("li");
    li.appendChild(el("span", "tok", show(toks[i])));
    li.appendChild(document.createTextNode(" pos " + i + "  " + fmt(weights[i])));
    list.appendChild(li);
  });
  return order.length;
}

// ---- token view ----
// Self-attention: the pane holds the stack's tokens, a click picks the query (or the key).
// Cross-attention: the pane holds the keys (encoder tokens); "where it attends" takes the
// query (a decoder token) from the query menu, "what attends to it" lists decoder queries.
var maps = {}, tv = {stack: stacks[0], layer: 0, head: 0, pos: 0, qpos: 0, spans: [], pane: null};
function mapOf(s, l, h) {
  var key = s + "|" + l + "." + h, m = maps[key];
  if (m && !m.idx) m = maps[key] = unpack(m.packed.idx, m.packed.val, views.k);
  return m || null;
}
function mapNames() {
  return Object.keys(maps).map(function (k) { return multi ? k.replace("|", " ") : k.split("|")[1]; }).join(", ");
}
function isCross(s) { return /\.cross$/.test(s); }
function fillSelect(sel, n, label) {
  sel.textContent = "";
  for (var i = 0; i < n; i++) { var o = el("option", "", label ? label(i) : String(i)); o.value = String(i); sel.appendChild(o); }
}
function setPane() {
  var info = stackInfo(tv.stack), which = isCross(tv.stack) ? info.keys : info.queries;
  if (tv.pane !== which) {
    var toks = tokensOf(which).slice(0, tokens.length);
    tv.spans = tokenPane("tv-text", function (i) { tv.pos = i; drawTokenView(); }, toks);
    tv.pane = which; tv.pos = Math.min(tv.pos, toks.length - 1);
  }
  var q = $("tv-query-box"), qs = tokensOf(info.queries).slice(0, tokens.length);
  q.hidden = !isCross(tv.stack);
  if (isCross(tv.stack) && $("tv-query").options.length !== qs.length) {
    fillSelect($("tv-query"), qs.length, function (i) { return i + ": " + show(qs[i]).slice(0, 24); });
    tv.qpos = qs.length - 1; $("tv-query").value = String(tv.qpos);
  }
}
function selectHead(l, h, s) {
  s = s || tv.stack;
  if (s !== tv.stack) {
    tv.stack = s; $("tv-stack").value = s;
    fillSelect($("tv-layer"), dims[s].layers); fillSelect($("tv-head"), dims[s].heads);
  }
  $("tv-layer").value = String(l); $("tv-head").value = String(h);
  tv.layer = l; tv.head = h;
  document.querySelectorAll(".cell.sel").forEach(function (c) { c.classList.remove("sel"); });
  document.querySelectorAll('.cell[data-key="' + l + "." + h + '"]').forEach(function (c) { if (c.dataset.stack === s) c.classList.add("sel"); });
  if (views && tokens.length) { setPane(); drawTokenView(); }
}
function drawTokenView() {
  var status = $("tv-status"), m = views ? mapOf(tv.stack, tv.layer, tv.head) : null, cross = isCross(tv.stack);
  var info = stackInfo(tv.stack), keyToks = tokensOf(info.keys), qToks = tokensOf(info.queries);
  var w = new Float32Array(tv.spans.length), dir = document.querySelector('input[name="tv-dir"]:checked').value;
  var name = headName(tv.stack, tv.layer, tv.head);
  if (!m) {
    var have = mapNames();
    status.textContent = "no map embedded for " + name + (have ? "; embedded: " + have : "");
    paint(tv.spans, w, "36,86,179", tv.pos); $("tv-list").textContent = "";
    return;
  }
  var k = m.k, covered = 0, q = cross ? tv.qpos : tv.pos;
  if (dir === "out") {
    for (var j = 0; j < k; j++) { var v = m.val[q * k + j]; if (v > 0) { w[m.idx[q * k + j]] = v; covered += v; } }
  } else {
    var rows = new Float32Array(m.rows);
    for (var r = (info.causal && !cross) ? tv.pos : 0; r < m.rows; r++) {
      for (var c = 0; c < k; c++) if (m.idx[r * k + c] === tv.pos && m.val[r * k + c] > 0) rows[r] = m.val[r * k + c];
    }
    if (!cross) w = rows;
  }
  var painted = !(cross && dir === "in");
  paint(tv.spans, painted ? w : new Float32Array(tv.spans.length), dir === "out" ? "36,86,179" : "228,87,46", cross && dir === "out" ? -1 : tv.pos,
        $("tv-skip").checked ? function (i) { return i === 0 && tv.pos !== 0; } : null);
  var n = cross && dir === "in" ? fillList("tv-list", rows, 40, qToks) : fillList("tv-list", w, 40, dir === "out" ? keyToks : qToks);
  var what = cross ? (dir === "out" ? "decoder token " + q + " \u00ab" + show(qToks[q] || "") + "\u00bb" : "encoder token " + tv.pos) : "token " + tv.pos;
  status.textContent = name + ", " + what + ": " + (dir === "out"
    ? "its top " + k + " keys hold " + (100 * covered).toFixed(1) + "% of its attention"
    : n + " queries have it among their top " + k + (cross ? " (decoder queries, listed)" : ""));
}
function buildTokenView() {
  var ls = $("tv-layer"), hs = $("tv-head"), ss = $("tv-stack");
  if (!views || !tokens.length) { $("tv-note").textContent = "No token view in this report (see the notes)."; return; }
  function mapStack(p) { return multi ? String(p.stack || stacks[0]) : stacks[0]; }
  (views.heads || []).forEach(function (p) { maps[mapStack(p) + "|" + p.layer + "." + p.head] = {packed: p}; });
  stacks.forEach(function (s) { var o = el("option", "", s); o.value = s; ss.appendChild(o); });
  $("tv-stack-box").hidden = !multi;
  fillSelect(ls, dims[tv.stack].layers); fillSelect(hs, dims[tv.stack].heads);
  $("tv-note").textContent = "Click a token. Maps are embedded for these heads only: " + mapNames()
    + " (top " + views.k + " keys per query). Showing tokens 0\u2013" + (tokens.length - 1) + " of " + views.n_tokens + "."
    + (multi ? " Cross-attention: pick the decoder query in the query menu; the tokens shown are the encoder's (its keys)." : "");
  tv.pos = tokens.length - 1;
  setPane();
  ls.addEventListener("change", function () { selectHead(+ls.value, +hs.value); });
  hs.addEventListener("change", function () { selectHead(+ls.value, +hs.value); });
  ss.addEventListener("change", function () { selectHead(0, 0, ss.value); });
  $("tv-query").addEventListener("change", function () { tv.qpos = +$("tv-query").value; drawTokenView(); });
  document.querySelectorAll('input[name="tv-dir"]').forEach(function (r) { r.addEventListener("change", drawTokenView); });
  $("tv-skip").addEventListener("change", drawTokenView);
  var first = views.heads && views.heads[0];
  selectHead(first ? first.layer : 0, first ? first.head : 0, first ? mapStack(first) : stacks[0]);
  reveal($("tv-text"), tv.spans[tv.pos]);
}

// ---- rollout ----
var ro = {target: 0, spans: [], m: null, toks: tokens};
function r_stack() { return views && views.rollout && views.rollout.stack; }
function drawRollout() {
  var m = ro.m, w = new Float32Array(ro.toks.length), t = ro.target, skip = $("ro-skip").checked;
  for (var j = 0; j < m.k; j++) { var v = m.val[t * m.k + j]; if (v > 0) w[m.idx[t * m.k + j]] = v; }
  paint(ro.spans, w, "42,157,143", t, skip ? function (i) { return i === 0 || i === t; } : null);
  $("ro-target").value = String(t);
  fillList("ro-list", w, 40, ro.toks);
  $("ro-status").textContent = "target " + t + " \u00ab" + show(ro.toks[t]) + "\u00bb" + (multi && r_stack() ? " (" + r_stack() + " self-attention)" : "");
}
function buildRollout() {
  var r = views && views.rollout, sel = $("ro-target");
  if (!r || !tokens.length) { $("ro-status").textContent = "No rollout in this report (see the notes)."; return; }
  ro.m = unpack(r.idx, r.val, r.k);
  ro.toks = tokensOf(r.stack && multi ? stackInfo(r.stack).keys : "input").slice(0, tokens.length);
  for (var i = 0; i < ro.m.rows; i++) { var o = el("option", "", i + ": " + show(ro.toks[i]).slice(0, 24)); o.value = String(i); sel.appendChild(o); }
  ro.spans = tokenPane("ro-text", function (i) { if (i < ro.m.rows) { ro.target = i; drawRollout(); } }, ro.toks);
  sel.addEventListener("change", function () { ro.target = +sel.value; drawRollout(); reveal($("ro-text"), ro.spans[ro.target]); });
  $("ro-skip").addEventListener("change", drawRollout);
  ro.target = ro.m.rows - 1;
  drawRollout();
  reveal($("ro-text"), ro.spans[ro.target]);
}

buildGrids(); buildKinds(); buildSinks(); buildTokenView(); buildRollout();
document.body.dataset.ready = "1";
})();
