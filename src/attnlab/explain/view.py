"""The explanation section of the HTML report: one self-contained HTML fragment.

render_section(data) takes the explain.json dict (see `run.explain_context`) and returns
HTML with inline styles only (no scripts, no external resources). Every string taken
from the data goes through html.escape.
"""

from __future__ import annotations

from html import escape

_BAR = "display:inline-block;height:0.8em;background:{color};width:{width:.1f}px;vertical-align:middle"


def _esc(value) -> str:
    return escape(str(value), quote=True)


def _bar(value: float, top: float, color: str) -> str:
    width = 0.0 if top <= 0 or value is None else max(0.0, 60.0 * float(value) / top)
    return f'<span style="{_BAR.format(color=color, width=width)}"></span>'


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return f"{value:.{digits}g}"
    return _esc(value)


def _columns(data) -> list:
    cols = [(name, entry) for name, entry in data.get("methods", {}).items()]
    if "ablation" in data:
        cols.append(("ablation (ground truth)", data["ablation"]))
    return cols


def _passage_rows(data, cols) -> str:
    flags = data.get("injection") or []
    rows = []
    for p in data.get("passages", []):
        k = p.get("index", 0)
        preview = str(p.get("text", ""))
        preview = preview[:160] + ("…" if len(preview) > 160 else "")
        flag = flags[k] if k < len(flags) else {}
        warn = ' <b style="color:#b00">⚠ possible injected instruction</b>' if flag.get("flagged") else ""
        cells = [f"<td>{_esc(k)}</td><td style=\"max-width:28em;font-size:0.85em\">{_esc(preview)}{warn}</td>"]
        for name, entry in cols:
            scores = entry.get("scores") or []
            top = max((abs(s) for s in scores), default=0.0)
            value = scores[k] if k < len(scores) else None
            rank = (entry.get("ranking") or []).index(k) + 1 if k in (entry.get("ranking") or []) else "–"
            color = "#c44" if name.startswith("ablation") else "#48c"
            cells.append(f"<td>{_bar(abs(value or 0.0), top, color)} {_fmt(value)} <small>#{_esc(rank)}</small></td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return "\n".join(rows)


def _summary_rows(cols) -> str:
    rows = []
    for name, entry in cols:
        rows.append(f"<tr><td>{_esc(name)}</td><td>{_fmt(entry.get('spearman_vs_ablation'))}</td>"
                    f"<td>{_fmt(entry.get('top1_agrees_with_ablation'))}</td><td>{_fmt(entry.get('seconds'))}</td>"
                    f"<td style=\"font-size:0.85em\">{_esc(entry.get('about', ''))}</td></tr>")
    return "\n".join(rows)


def render_section(data: dict) -> str:
    """HTML fragment explaining which passages the answer came from, per method and by ablation."""
    cols = _columns(data)
    head = "".join(f"<th>{_esc(name)}</th>" for name, _ in cols)
    table = "border-collapse:collapse;margin:0.5em 0"
    return f"""<section class="attnlab-explain" style="font-family:sans-serif">
<h2>Explanation: which passages the answer came from</h2>
<p>Question: <q>{_esc(data.get('question', ''))}</q> — answer: <q>{_esc(data.get('answer', ''))}</q>
({_esc(data.get('n_tokens', '?'))} tokens{_esc(', model ' + str(data['model'])) if data.get('model') else ''}).
Scores per passage (bar, value, rank #); the ablation column is the drop in the answer's
log-probability (nats) when the passage is removed.</p>
<table style="{table}" border="1" cellpadding="4">
<tr><th>passage</th><th>text</th>{head}</tr>
{_passage_rows(data, cols)}
</table>
<table style="{table}" border="1" cellpadding="4">
<tr><th>method</th><th>Spearman vs ablation</th><th>top-1 = ablation's</th><th>seconds</th><th>what</th></tr>
{_summary_rows([c for c in cols if not c[0].startswith('ablation')])}
</table>
</section>"""
