"""build_report(): one self-contained, offline HTML file from heads.json (+ token views).

Everything the page shows from data (token text, model names, commands) goes either
through html.escape into the static HTML, or into a JSON island (`data.island`) that the
script reads with JSON.parse and puts on the page with textContent only. A Content
Security Policy allows no network at all and only the page's own script (by hash), so
even a string that escaped escaping could not run.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from datetime import datetime, timezone
from pathlib import Path

from .data import STATS, island, load_heads

ASSETS = Path(__file__).parent / "assets"
REPORT_NAME = "report.html"


def _e(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _facts(doc: dict, made: dict) -> str:
    params = doc.get("params") or {}
    rows = [
        ("model", doc.get("model")),
        ("input length", f"{doc.get('n_tokens')} tokens"),
        ("kernel", doc.get("kernel")),
        ("statistics created", doc.get("created")),
        ("command", doc.get("command")),
        ("parameters", ", ".join(f"{k}={v}" for k, v in params.items()) if isinstance(params, dict) else params),
    ] + list(made.items())
    return "\n".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)


def _limits(doc: dict, views: dict | None) -> list[str]:
    """Plain-text notes on every view that is limited or downsampled."""
    notes = [str(n) for n in doc.get("notes") or []]
    names = list(dict.fromkeys(str(h.get("stack") or "decoder") for h in doc.get("heads") or []))
    if len(names) > 1:
        notes.append(f"Stacks: {', '.join(names)}; each has its own grids, kinds and token view. "
                     + ("Cross-attention rows are decoder tokens and its keys encoder tokens; previous token, "
                        "self, mean distance and local mass are not defined there (no shared positions). "
                        if any(n.endswith(".cross") for n in names) else "")
                     + ("The decoder read the input shifted right (teacher forcing: the decoder start token, "
                        "then the text but its last token)." if doc.get("stack_tokens") else ""))
    if views is None:
        notes.append("No token view or rollout: this report was built from heads.json alone, without the model.")
        return notes
    n, w = views["n_tokens"], views["window"]
    if w < n:
        exact = "exact for them, since a causal model's first queries see only those keys" if views["causal"] \
            else "computed on those tokens alone (the model is not causal, so later tokens are left out)"
        notes.append(f"Token view and rollout cover the first {w} of {n} tokens ({exact}).")
    notes.append(f"Token view: maps embedded for {len(views['heads'])} chosen heads only (not all heads), "
                 f"the top {views['k']} keys of every query as float16; 'attended by' lists only queries "
                 f"that have the token among their top {views['k']}.")
    if views.get("rollout"):
        r = views["rollout"]
        of = f" over the {r['stack']} stack's self-attention only" if len(names) > 1 and r.get("stack") else ""
        notes.append(f"Rollout{of}: the top {r['k']} input positions of every target, float16 ({r.get('source', '')}).")
    return notes


def _explain_section(out_dir: Path):
    """(title, html) from DIR/explain.json via attnlab.explain.view.render_section, or None."""
    path = out_dir / "explain.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        from ..explain.view import render_section

        return ("Explanation", render_section(data))
    except Exception as exc:  # a broken explain.json must not cost the user the whole report
        return ("Explanation", f"<p>{_e(path.name)} is present but cannot be shown: {_e(repr(exc))}</p>")


def _slug(title: str, n: int) -> str:
    return f"extra-{n}-" + "".join(c if c.isalnum() else "-" for c in title.lower())[:40]


def render(doc: dict, views: dict | None, sections, made: dict, size_note: str) -> str:
    """The whole page as a string (see build_report)."""
    script = (ASSETS / "report.js").read_text(encoding="utf-8")
    style = (ASSETS / "report.css").read_text(encoding="utf-8")
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    csp = (f"default-src 'none'; script-src 'sha256-{digest}'; style-src 'unsafe-inline'; "
           "img-src data:; font-src data:; base-uri 'none'; form-action 'none'")
    slim = {k: v for k, v in doc.items() if k != "tokens"}
    window = views["window"] if views else 0
    slim.pop("stack_tokens", None)
    payload = {"doc": slim, "stats": [list(s) for s in STATS], "views": views,
               "tokens": list(doc.get("tokens") or [])[:window],
               "stack_tokens": {k: list(v)[:window] for k, v in (doc.get("stack_tokens") or {}).items()}}
    extra = [(_slug(t, i), t, body) for i, (t, body) in enumerate(sections)]
    nav = "".join(f'<a href="#{_e(s)}">{_e(t)}</a>' for s, t, _ in extra)
    blocks = "\n".join(f'<div id="{_e(s)}">\n{body}\n</div>' if body.lstrip().startswith("<section")
                        else f'<section id="{_e(s)}"><h2>{_e(t)}</h2>\n{body}\n</section>' for s, t, body in extra)
    notes = "".join(f"<li>{_e(n)}</li>" for n in _limits(doc, views))
    values = {"CSP": _e(csp), "STYLE": style, "TITLE": _e(f"attnlab report: {doc.get('model')}"),
              "MODEL": _e(doc.get("model")), "FACTS": _facts(doc, made), "NAV": nav, "LIMITS": notes,
              "EXTRA": blocks, "SIZE": _e(size_note), "DATA": island(payload), "SCRIPT": script}
    template = (ASSETS / "page.html").read_text(encoding="utf-8")
    # one pass over the template only: text that lands on the page is never searched again
    return re.sub(r"\{\{([A-Z]+)\}\}", lambda m: values[m.group(1)], template)


def build_report(out_dir, heads: dict | None = None, views: dict | None = None, sections=(),
                 made: dict | None = None, name: str = REPORT_NAME) -> Path:
    """Write DIR/report.html and return its path.

    heads: the heads.json document (default: read DIR/heads.json).
    views: token_views() output (token view + rollout), or None for a statistics-only page.
    sections: extra (title, html) pairs; the html must already be escaped (it is put on the
      page as is). If DIR/explain.json exists, attnlab.explain.view.render_section(data)
      adds an "Explanation" section.
    made: extra facts for the header (label -> text), e.g. generation time.
    """
    out_dir = Path(out_dir)
    doc = heads if heads is not None else load_heads(out_dir / "heads.json")
    sections = list(sections)
    explain = _explain_section(out_dir)
    if explain is not None:
        sections.append(explain)
    made = {"report made": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"), **(made or {})}
    page, size = render(doc, views, sections, made, ""), -1
    for _ in range(4):  # the page states its own size: settle the digits that change
        if len(page.encode("utf-8")) == size:
            break
        size = len(page.encode("utf-8"))
        page = render(doc, views, sections, made, f"This file is {size / 1024:.1f} KiB ({size} bytes).")
    path = out_dir / name
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path
