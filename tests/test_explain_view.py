"""The report's explanation section: every string escaped, no external resources."""

from attnlab.explain.view import render_section


def _data():
    evil = '<script>alert("x")</script>'
    return {
        "question": "Who <b>wins</b>?", "answer": evil, "n_tokens": 42, "model": "m&m",
        "passages": [{"index": 0, "text": evil + " & more", "n_tokens": 20, "start": 0, "end": 20},
                     {"index": 1, "text": "plain", "n_tokens": 22, "start": 20, "end": 42}],
        "methods": {"traceback": {"scores": [0.9, 0.1], "ranking": [0, 1], "seconds": 0.5, "about": "a<b",
                                  "spearman_vs_ablation": 1.0, "top1_agrees_with_ablation": True},
                    "x<y>": {"scores": [0.2, 0.3], "ranking": [1, 0], "seconds": 0.1, "about": "",
                             "spearman_vs_ablation": None, "top1_agrees_with_ablation": False}},
        "ablation": {"scores": [3.0, -0.1], "ranking": [0, 1], "seconds": 2.0},
        "injection": [{"flagged": True}, {"flagged": False}],
    }


def test_render_section_escapes_everything():
    html = render_section(_data())
    assert "<script" not in html and "<b>wins" not in html and "x<y>" not in html
    assert "&lt;script&gt;" in html and "m&amp;m" in html and "x&lt;y&gt;" in html and "a&lt;b" in html
    assert "possible injected instruction" in html
    assert "http" not in html and "src=" not in html
    assert html.count("<tr>") == (1 + 2) + (1 + 2)  # header + 2 passages, header + 2 methods


def test_render_section_tolerates_missing_parts():
    html = render_section({"passages": [{"index": 0, "text": "t"}], "methods": {}})
    assert html.startswith("<section") and html.endswith("</section>")
