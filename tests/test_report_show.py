"""attnlab.report.show: the report inline in Jupyter, escaped and sandboxed."""

from __future__ import annotations

import html
import re

import pytest

from attnlab.errors import InputError
from attnlab.report import show


def test_inline_report_is_escaped_and_sandboxed(tmp_path):
    page = '<html><body><p title="x">a</p>"></iframe><script>alert(1)</script></body></html>'
    (tmp_path / "report.html").write_text(page)
    out = show(tmp_path)._repr_html_()
    m = re.fullmatch(r'<iframe sandbox="allow-scripts" title="attnlab report" srcdoc="([^"]*)" style="[^"]*"></iframe>', out)
    assert m, out  # one iframe: nothing in the page closed the attribute or the frame
    assert html.unescape(m.group(1)) == page  # the page itself, unchanged
    assert "allow-same-origin" not in out


def test_show_errors(tmp_path):
    with pytest.raises(InputError, match="no report"):
        show(tmp_path)
    (tmp_path / "report.html").write_text("<html></html>")
    with pytest.raises(InputError, match="height"):
        show(tmp_path / "report.html", height=10)
