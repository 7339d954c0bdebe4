"""The report in a real browser: headless Chromium opens it from disk, a person's clicks work,
nothing from the data runs, and long inputs still give a small working page."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch

import tiny
from attnlab.report.html import build_report
from attnlab.report.views import token_views
from test_report_html import EVIL, evil_tokens, fake_heads

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
HEADS = [(0, 1), (2, 3), (1, 0)]


def shown(token: str) -> str:
    """What the token pane displays for a token (visible whitespace marks, see report.js)."""
    return token.replace("\n", "\u21b5\n").replace("\t", "\u21e5").replace("\r", "\u240d")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        context = p.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True, args=FLAGS,
                                                       viewport={"width": 1280, "height": 900})
        yield context
        context.close()


def open_page(browser, path: Path):
    """Open `path` from disk; returns (page, problems) where problems collects console errors,
    uncaught exceptions and dialogs (alert/confirm) as they happen."""
    page = browser.new_page()
    problems = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
    page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    page.goto(path.as_uri())
    page.wait_for_selector("body[data-ready='1']", timeout=15000)
    return page, problems


def shot(page, tmp_path: Path, name: str) -> Path:
    """Full-page screenshot into tmp_path (and $ATTNLAB_SHOTS when set, to look at)."""
    out = tmp_path / name
    page.screenshot(path=str(out), full_page=True)
    if os.environ.get("ATTNLAB_SHOTS"):
        Path(os.environ["ATTNLAB_SHOTS"]).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(os.environ["ATTNLAB_SHOTS"]) / name), full_page=True)
    assert out.read_bytes()[:4] == b"\x89PNG" and out.stat().st_size > 10_000
    return out


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A report of a tiny Llama over 60 hostile tokens; token view on the first 40."""
    out = tmp_path_factory.mktemp("report")
    tokens = evil_tokens(60)
    ids = torch.randint(3, tiny.VOCAB, (1, 60), generator=torch.Generator().manual_seed(5))
    views = token_views(tiny.llama(), ids, HEADS, k=8, window=40)
    sections = [("Extra <b>section</b>", "<p id='extra'>made by a caller &lt;b&gt;</p>")]
    return build_report(out, heads=fake_heads(3, 4, tokens), views=views, sections=sections), tokens


def styles(page, box: str) -> list[str]:
    return page.eval_on_selector_all(f"#{box} .tok-span", "spans => spans.map(s => s.style.background)")


def test_grid_hover_and_click_open_the_token_view(browser, report, tmp_path):
    page, problems = open_page(browser, report[0])
    assert page.locator("#grid-list .grid-card").count() == 10
    page.locator('#grid-list .grid-card[data-stat="sink_mass"] .cell[data-key="1.2"]').hover()
    tip = page.locator("#tip")
    assert tip.is_visible() and "layer 1, head 2" in tip.inner_text() and "top received" in tip.inner_text()
    assert page.input_value("#tv-layer") == "0" and page.input_value("#tv-head") == "1"
    before = styles(page, "tv-text")
    page.locator('#kind-grid .cell[data-key="2.3"]').click()
    assert page.input_value("#tv-layer") == "2" and page.input_value("#tv-head") == "3"
    assert page.locator('.cell.sel[data-key="2.3"]').count() == 11 and "layer 2 head 3" in page.inner_text("#tv-status")
    assert styles(page, "tv-text") != before
    page.locator('#tv-text .tok-span[data-pos="9"]').click()
    assert "token 9:" in page.inner_text("#tv-status") and page.locator("#tv-list li").count() >= 1
    painted = [i for i, s in enumerate(styles(page, "tv-text")) if s]
    assert painted and max(painted) <= 9  # causal: token 9 attends only to tokens 0..9
    page.check('input[name="tv-dir"][value="in"]')
    assert "queries have it among their top 8" in page.inner_text("#tv-status")
    assert min(i for i, s in enumerate(styles(page, "tv-text")) if s) >= 9  # what attends to 9 comes after it
    page.locator('#ro-text .tok-span[data-pos="20"]').click()
    assert page.inner_text("#ro-status").startswith("target 20") and page.input_value("#ro-target") == "20"
    assert page.locator("#ro-list li").count() >= 2
    page.locator('#tv-text .tok-span[data-pos="30"]').hover()
    shot(page, tmp_path, "report_tiny.png")
    assert problems == []


def test_hostile_text_stays_text(browser, report):
    page, problems = open_page(browser, report[0])
    tokens = report[1]
    assert page.evaluate("window.__pwned") is None
    assert page.locator("img").count() == 0 and page.locator("script").count() == 2
    assert page.eval_on_selector_all("#tv-text .tok-span", "s => s.map(x => x.textContent)") == [shown(t) for t in tokens[:40]]
    assert page.inner_text("h1") == "Attention report: tiny <b>llama</b>"
    assert page.text_content("table.sinks td.tok") == tokens[0].replace("\n", "\u21b5")
    assert page.inner_text("#extra") == "made by a caller <b>"
    hovered = next(h for h in fake_heads(3, 4, tokens)["heads"] if any(r["token"] in EVIL for r in h["top_received"]))
    page.locator(f'#grid-list .cell[data-key="{hovered["layer"]}.{hovered["head"]}"]').first.hover()
    tip = page.text_content("#tip")
    assert all(f"\u00ab{r['token']}\u00bb".replace("\n", "\u21b5") in tip for r in hovered["top_received"])
    page.locator('#tv-text .tok-span[data-pos="2"]').click()  # a token holding </script><script>...
    assert page.evaluate("window.__pwned") is None and problems == []


def test_long_input_gives_a_small_working_report(browser, tmp_path):
    n, window = 8192, 1024
    tokens = [f" t{i}" if i % 50 else "\n" for i in range(n)]
    ids = torch.randint(3, tiny.VOCAB, (1, n), generator=torch.Generator().manual_seed(6))
    views = token_views(tiny.llama(max_position_embeddings=n), ids, HEADS, k=16, window=window)
    path = build_report(tmp_path, heads=fake_heads(3, 4, tokens), views=views)
    size = path.stat().st_size
    assert size < 1_500_000, size
    page, problems = open_page(browser, path)
    notes = page.inner_text("#notes")
    assert f"first {window} of {n} tokens" in notes and f"({size} bytes)" in notes
    assert page.locator("#tv-text .tok-span").count() == window
    page.locator('#tv-text .tok-span[data-pos="1000"]').click()
    assert "token 1000:" in page.inner_text("#tv-status")
    assert page.locator("#ro-target option").count() == window
    shot(page, tmp_path, "report_long.png")
    assert problems == []


@pytest.mark.real
def test_report_of_real_smollm2_statistics(browser, smollm2, hamlet, tmp_path):
    """issue 3's head statistics of SmolLM2 -> heads.json -> report, opened in the browser."""
    from attnlab.bench.corpora import passage
    from attnlab.observe.export import heads_document, write_heads
    from attnlab.observe.kinds import head_kinds
    from attnlab.report.write import write_report

    model, tok = smollm2
    text = passage(tok, 160, hamlet)
    df = head_kinds(model, tok, text, probes=False)
    write_heads(df, tmp_path, heads_document(df, "smollm2-135m", command="test"))
    info = write_report(tmp_path, model, tok, text, max_heads=4)
    assert len(info["heads"]) == 4
    page, problems = open_page(browser, Path(info["report"]))
    assert page.locator("#grid-list .grid-card").count() == 7
    assert page.locator("#grid-list .cell").count() == 7 * 30 * 9
    sinks = page.eval_on_selector_all("table.sinks tr td:first-child", "tds => tds.map(t => t.textContent)")
    assert "0" in sinks
    n = page.locator("#tv-text .tok-span").count()
    assert n == len(tok(text)["input_ids"])
    page.locator(f'#tv-text .tok-span[data-pos="{n - 1}"]').click()
    assert page.locator("#tv-list li").count() >= 1
    shot(page, tmp_path, "report_smollm2.png")
    assert problems == []
