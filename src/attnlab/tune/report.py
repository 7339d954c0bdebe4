"""A "tuned heads" grid for the HTML report: layers x heads, the tuner's heads marked.

    from attnlab.report.html import build_report
    build_report(out_dir, sections=[tuned_heads_section(adapter, kinds=df)])

Each cell is one head: filled when the adapter tunes it, shaded by its step-1 score |a_h|
(lofit) when there is one, and labelled with its taxonomy kind (`attnlab.head_kinds`) when
kinds are given (a DataFrame or heads.json's "heads" rows), so tuned heads can be compared
with the taxonomy at a glance. `attnlab inspect --adapter DIR` adds this grid to report.html.
"""

from __future__ import annotations

from html import escape

SHORT = {"retrieval": "R", "induction": "I", "previous-token": "P", "sink": "S", "local": "L", "global": ""}


def _kind_map(kinds) -> dict:
    """(stack, layer, head) and (layer, head) -> kind, from a DataFrame or a list of row dicts."""
    if kinds is None:
        return {}
    rows = [r for _, r in kinds.iterrows()] if hasattr(kinds, "iterrows") else list(kinds)
    out = {}
    for r in rows:
        if r.get("kind") is None:
            continue
        out.setdefault((int(r["layer"]), int(r["head"])), str(r["kind"]))  # short form (single-stack)
        if r.get("stack") is not None:
            out[(str(r["stack"]), int(r["layer"]), int(r["head"]))] = str(r["kind"])
    return out


def _cell(tuned: bool, score: float | None, top: float, kind: str, label: str) -> str:
    shade = 0.25 + 0.75 * (score / top) if tuned and score is not None and top > 0 else (1.0 if tuned else 0.0)
    style = f"background: rgba(200, 60, 30, {shade:.2f});" if tuned else ""
    title = escape(label + (f", {kind}" if kind else "") + (f", |a| = {score:.4f}" if score is not None else ""))
    return f'<td style="{style}" title="{title}">{escape(SHORT.get(kind, kind[:1].upper()))}</td>'


def tuned_heads_section(adapter, kinds=None, title: str = "Tuned heads") -> tuple[str, str]:
    """(title, escaped html) of the grid for `adapter` (an Adapter with .heads and .meta)."""
    sites = adapter.recipe.get("sites") or []
    if not sites:
        return title, f"<p>{escape(adapter.method)} does not address individual heads (a module-level baseline).</p>"
    chosen = {(s, int(l), int(h)) for s, l, h in adapter.heads}
    scores = (adapter.meta.get("selection") or {}).get("scores") or {}
    top = max(scores.values(), default=0.0)
    kmap = _kind_map(kinds)
    width = max(int(r[2]) for r in sites)
    head = "".join(f"<th>{h}</th>" for h in range(width))
    rows = []
    for s, l, H, *_ in sites:
        cells = "".join(_cell((s, l, h) in chosen, scores.get(f"{s}:{l}:{h}"), top,
                              kmap.get((s, l, h), kmap.get((l, h), "")),
                              f"{s}:{l}:{h}") for h in range(int(H)))
        rows.append(f"<tr><th>{escape(s)}:{l}</th>{cells}</tr>")
    note = (f"<p>{escape(adapter.method)}: {len(chosen)} tuned heads (filled), shade = step-1 score; "
            "letters: taxonomy kind (R retrieval, I induction, P previous-token, S sink, L local, blank global).</p>")
    if kmap:
        counts = {}
        for s, l, h in chosen:
            kind = kmap.get((s, l, h), kmap.get((l, h), "unknown"))
            counts[kind] = counts.get(kind, 0) + 1
        every = {}
        for key, kind in kmap.items():
            if len(key) == 3 or not any(len(k) == 3 for k in kmap):
                every[kind] = every.get(kind, 0) + 1
        total = sum(every.values()) or 1
        parts = ", ".join(f"{escape(k)} {n} (all heads: {every.get(k, 0) / total:.0%})"
                          for k, n in sorted(counts.items(), key=lambda kv: -kv[1]))
        note += f"<p>Tuned heads by kind: {parts}.</p>"
    style = ("<style>table.tuned-heads{border-collapse:collapse;font-size:11px}"
             "table.tuned-heads td{width:16px;height:16px;border:1px solid #ccc;text-align:center;padding:0}"
             "table.tuned-heads th{font-weight:normal;padding:0 4px}</style>")
    return title, style + note + f'<table class="tuned-heads"><tr><th></th>{head}</tr>{"".join(rows)}</table>'
