"""The report inline in Jupyter: `attnlab.report.show("out/")` displays out/report.html.

The page is embedded as the `srcdoc` of a sandboxed iframe: its HTML is attribute-escaped
(nothing in the report can close the attribute or the frame), the sandbox grants scripts but
not the notebook's origin (the page cannot read or change the notebook), and the report's
own Content-Security-Policy still forbids every fetch, so it stays offline.
"""

from __future__ import annotations

import html
from pathlib import Path

from ..errors import InputError


class InlineReport:
    """A report page that renders itself in Jupyter (`_repr_html_`); `.path` is its file."""

    def __init__(self, path: Path, height: int = 900):
        self.path = path
        self.height = height

    def _repr_html_(self) -> str:
        page = self.path.read_text(encoding="utf-8")
        return (f'<iframe sandbox="allow-scripts" title="attnlab report" srcdoc="{html.escape(page, quote=True)}" '
                f'style="width:100%;height:{int(self.height)}px;border:1px solid #ccc"></iframe>')

    def __repr__(self) -> str:
        return f"InlineReport({str(self.path)!r})"


def show(report, height: int = 900) -> InlineReport:
    """The report at `report` (a report.html file or the folder holding one) for inline display."""
    path = Path(report)
    if path.is_dir():
        path = path / "report.html"
    if not path.is_file():
        raise InputError(f"no report at {path}: write one with `attnlab inspect --out DIR` "
                         "or attnlab.report.write.write_report(DIR, model, tokenizer, text)")
    if not isinstance(height, int) or height < 100:
        raise InputError(f"height must be an integer number of pixels >= 100, got {height!r}")
    return InlineReport(path, height)
