"""The self-contained HTML attention report and its PNG figures.

  html.build_report(out_dir, heads, views=..., sections=...)  writes DIR/report.html
  write.write_report(out_dir, model, tokenizer, text, ...)      heads.json + model -> report (+ PNGs)
  views.token_views(model, ids, heads, ...)                     top-k maps of chosen heads + rollout
  plots.write_pngs(out_dir, heads)                              DIR/*.png grids (matplotlib)
  show(DIR_or_report_html)                                      the report inline in Jupyter

Nothing heavy is imported here: each function loads what it needs when called.
"""

from .show import show

__all__ = ["show"]
