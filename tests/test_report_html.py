"""The HTML report as a file: self-contained, escaped, sized, with its hooks; PNG figures."""

from __future__ import annotations

import html
import json
import re
import sys
import types

import numpy as np
import pytest

from attnlab.report.data import choose_heads, island, load_heads, parse_heads
from attnlab.report.html import build_report

KINDS = ["sink", "previous-token", "induction", "retrieval", "local", "global"]
# strings a user's document may hold; each must reach the page as text, never as markup
EVIL = ["<script>window.__pwned=1;alert(1)</script>", "</script><script>window.__pwned=2</script>",
        "<img src=x onerror=\"window.__pwned=3;alert(3)\">", '"quoted" \'single\'', "back\\slash\\n",
        "&amp; &lt;b&gt; &#60;", "\n", "{{DATA}}", "\u2028\u2029", "<!--", "]]>", "`${x}`"]


def fake_heads(n_layers: int, n_heads: int, tokens: list[str], seed: int = 0) -> dict:
    """A heads.json document in issue 3's schema, with random statistics and the given tokens."""
    rng = np.random.default_rng(seed)
    heads = []
    for layer in range(n_layers):
        for head in range(n_heads):
            top = [{"position": int(p), "token": tokens[p], "value": float(rng.random())}
                   for p in rng.choice(len(tokens), 3, replace=False)]
            stats = {k: float(rng.random()) for k in ("entropy_norm", "sink_mass", "prev_token", "self_mass",
                                                       "local_mass", "induction", "prev_token_probe", "retrieval")}
            heads.append({"layer": layer, "head": head, "entropy": float(3 * rng.random()),
                          "mean_distance": float(50 * rng.random()), **stats, "retrieval_events": 12,
                          "kind": KINDS[(layer * n_heads + head) % len(KINDS)], "top_received": top})
    return {"model": "tiny <b>llama</b>", "n_tokens": len(tokens), "kernel": "eager",
            "created": "2026-11-21T21:00:00Z", "command": "attnlab inspect --prompt '<script>alert(1)</script>'",
            "params": {"local_window": 32, "top_k": 3}, "tokens": tokens, "heads": heads,
            "sinks": [{"position": 0, "token": tokens[0], "heads_fraction": 0.9, "mean_received": 0.5},
                      {"position": 3, "token": tokens[3], "heads_fraction": 0.4, "mean_received": 0.2}]}


def evil_tokens(n: int) -> list[str]:
    return [EVIL[i // 2 % len(EVIL)] if i % 2 == 0 else f" w{i}" for i in range(n)]


def test_island_has_no_markup_and_round_trips():
    obj = {"t": EVIL, "nan": float("nan")}
    text = island(obj)
    assert not re.search(r"[<>&\u2028\u2029]", text)
    assert json.loads(text) == {"t": EVIL, "nan": None}


def test_page_is_self_contained_and_escaped(tmp_path):
    doc = fake_heads(2, 3, evil_tokens(20))
    path = build_report(tmp_path, heads=doc, sections=[("Extra <x>", "<p>given &lt;ok&gt;</p>")])
    page = path.read_text(encoding="utf-8")
    assert page.count("<script") == 2  # the JSON island and the page's own script, nothing else
    assert "</script><script>" not in page and "<img" not in page and "<b>llama" not in page
    assert "tiny &lt;b&gt;llama&lt;/b&gt;" in page and "Extra &lt;x&gt;" in page and "<p>given &lt;ok&gt;</p>" in page
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", page)  # nothing to fetch
    csp = html.unescape(re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', page).group(1))
    assert csp.startswith("default-src 'none'; script-src 'sha256-")
    size = path.stat().st_size
    assert f"({size} bytes)" in page
    data = re.search(r'<script type="application/json" id="attnlab-data">(.*?)</script>', page, re.S).group(1)
    assert json.loads(data)["doc"]["heads"][0]["top_received"][0]["token"] in doc["tokens"]


def test_explain_json_adds_a_section(tmp_path, monkeypatch):
    view = types.ModuleType("attnlab.explain.view")
    view.render_section = lambda data: f"<p class='explain'>method {data['method']}</p>"
    monkeypatch.setitem(sys.modules, "attnlab.explain.view", view)
    (tmp_path / "explain.json").write_text(json.dumps({"method": "rollout"}))
    page = build_report(tmp_path, heads=fake_heads(1, 2, ["a", "b", "c", "d"])).read_text()
    assert "<h2>Explanation</h2>" in page and "<p class='explain'>method rollout</p>" in page


def test_explain_section_of_issue7_and_a_broken_file(tmp_path, monkeypatch):
    view = types.ModuleType("attnlab.explain.view")
    view.render_section = lambda data: f"<section class='x'><h2>Explanation: {data['q']}</h2></section>"
    monkeypatch.setitem(sys.modules, "attnlab.explain.view", view)
    doc = fake_heads(1, 2, ["a", "b", "c", "d"])
    (tmp_path / "explain.json").write_text(json.dumps({"q": "why"}))
    page = build_report(tmp_path, heads=doc).read_text()
    assert "<section class='x'><h2>Explanation: why</h2></section>" in page and "<h2>Explanation</h2>" not in page
    (tmp_path / "explain.json").write_text("{not json <script>")
    page = build_report(tmp_path, heads=doc).read_text()
    assert "explain.json is present but cannot be shown" in page and "<script>" not in page.split("<main>")[1].split("<script")[0]


def test_reads_heads_json_with_nan(tmp_path):
    doc = fake_heads(2, 2, ["a", "b", "c", "d"])
    doc["heads"][0]["induction"] = float("nan")
    (tmp_path / "heads.json").write_text(json.dumps(doc))  # json writes NaN, which browsers reject
    assert load_heads(tmp_path / "heads.json")["heads"][0]["induction"] is None
    page = build_report(tmp_path).read_text()
    data = re.search(r'id="attnlab-data">(.*?)</script>', page, re.S).group(1)
    assert json.loads(data)["doc"]["heads"][0]["induction"] is None and "NaN" not in data
    with pytest.raises(FileNotFoundError, match="attnlab inspect"):
        load_heads(tmp_path / "missing" / "heads.json")


def test_choose_heads_is_bounded_and_varied():
    doc = fake_heads(5, 4, ["a"] * 8)
    chosen = choose_heads(doc, 6)
    assert len(chosen) == 6 == len(set(chosen))
    kinds = {h["kind"] for h in doc["heads"] if (h["layer"], h["head"]) in chosen}
    assert kinds == set(KINDS)
    best = max((h for h in doc["heads"] if h["kind"] == "induction"), key=lambda h: h["induction"])
    assert (best["layer"], best["head"]) in chosen


def test_parse_heads():
    doc = fake_heads(3, 2, ["a"] * 8)
    assert parse_heads("0.1, 2.0", doc) == [(0, 1), (2, 0)]
    with pytest.raises(ValueError, match="LAYER.HEAD"):
        parse_heads("3", doc)
    with pytest.raises(ValueError, match="no head 3.0"):
        parse_heads("3.0", doc)


def test_pngs(tmp_path):
    from attnlab.report.plots import grid, write_pngs

    doc = fake_heads(3, 4, ["a"] * 8)
    doc["heads"][5]["retrieval"] = None
    paths = write_pngs(tmp_path, doc)
    names = sorted(p.name for p in paths)
    assert "kinds.png" in names and "grid_sink_mass.png" in names and len(names) == 11
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)
    values = grid(doc, "retrieval")
    assert values.shape == (3, 4) and np.isnan(values[1, 1]) and values[0, 0] == doc["heads"][0]["retrieval"]
