"""The documentation: generated tables are current, the site builds strictly and opens from
disk, and the quickstart code blocks of the README and the docs run as written."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd, cwd, timeout=600, shell=False):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, shell=shell, env=env)


def test_generated_tables_are_current():
    res = _run([sys.executable, "benchmarks/docs_tables.py", "--check"], ROOT)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.skipif(shutil.which("mkdocs") is None, reason="mkdocs not installed: pip install '.[docs]'")
def test_site_builds_strictly_and_opens_from_disk(tmp_path):
    res = _run(["mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")], ROOT)
    assert res.returncode == 0, res.stdout + res.stderr
    site = tmp_path / "site"
    pages = {p.relative_to(site).as_posix() for p in site.rglob("*.html")}
    for page in ("index.html", "api/core.html", "kernels.html", "models.html"):
        assert page in pages
    index = (site / "index.html").read_text()
    # file:// needs links to files, not to folders a web server would resolve
    assert 'href="install.html"' in index and 'href="install/"' not in index
    api = (site / "api" / "core.html").read_text()
    assert "attnlab.core.session.attach" in api  # the API page was generated from the docstring


def code_blocks(markdown: str, language: str) -> list[str]:
    """The fenced code blocks of `language` in a Markdown text, in order."""
    return re.findall(rf"```{language}\n(.*?)```", markdown, flags=re.S)


def _section(markdown: str, title: str) -> str:
    """The text from the heading containing `title` to the next heading of the same level."""
    m = re.search(rf"^(#+) [^\n]*{title}[^\n]*$", markdown, flags=re.M | re.I)
    assert m, f"no heading with {title!r}"
    level = len(m.group(1))
    rest = markdown[m.end():]
    nxt = re.search(rf"^#{{1,{level}}} ", rest, flags=re.M)
    return rest[: nxt.start()] if nxt else rest


QUICKSTARTS = ("README.md", "docs/quickstart.md")


def quickstart_blocks() -> list[tuple[str, str, str]]:
    """(doc, language, code) of every quickstart block; a block both docs share is listed once."""
    seen, out = set(), []
    for doc in QUICKSTARTS:
        text = _section((ROOT / doc).read_text(), "quickstart")
        for language in ("python", "bash"):
            blocks = code_blocks(text, language)
            assert blocks, f"{doc}: the quickstart has no {language} block"
            out += [(doc, language, b) for b in blocks if b not in seen]
            seen.update(blocks)
    return out


@pytest.mark.real
@pytest.mark.parametrize("doc,language,block", quickstart_blocks(), ids=lambda v: v if len(v) < 20 else None)
def test_quickstart_blocks_run_as_written(doc, language, block, tmp_path):
    cmd = [sys.executable, "-c", block] if language == "python" else ["bash", "-euo", "pipefail", "-c", block]
    res = _run(cmd, tmp_path)
    assert res.returncode == 0, f"{doc} {language} block failed:\n{block}\n{res.stderr[-3000:]}"
