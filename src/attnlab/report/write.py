"""write_report(): heads.json + the model -> DIR/report.html (and DIR/*.png), what inspect calls."""

from __future__ import annotations

import time
from pathlib import Path


def token_texts(tokenizer, ids: list[int]) -> list[str]:
    """The text of every token id on its own (what a person reads for that position)."""
    return [tokenizer.decode([i]) for i in ids]


def write_report(out_dir, model, tokenizer, text: str, max_tokens: int | None = None, truncate: bool = False,
                 heads: dict | None = None, map_heads=None, max_heads: int = 12, k: int = 16,
                 window: int = 1024, png: bool = False, sections=()) -> dict:
    """Build DIR/report.html for `text` from DIR/heads.json (or `heads`), with the model's token views.

    map_heads: (layer, head)s whose maps the token view embeds, or "L.H,L.H" text; default
      `data.choose_heads(heads, max_heads)`. k: keys kept per query. window: tokens covered
      by the token view and rollout (the first `window`). png: also write DIR/*.png.
    Returns {"report": path, "bytes": size, "seconds": wall time, "heads": [...], "pngs": [...]}.
    """
    from ..text import encode, teacher_forced
    from .data import choose_heads, load_heads, parse_heads
    from .html import build_report
    from .views import token_views

    start = time.perf_counter()
    out_dir = Path(out_dir)
    doc = heads if heads is not None else load_heads(out_dir / "heads.json")
    if isinstance(map_heads, str):
        try:
            map_heads = parse_heads(map_heads, doc)
        except ValueError as exc:
            from ..errors import OptionError

            raise OptionError(f"--map-heads: {exc}") from None
    chosen = list(map_heads) if map_heads else choose_heads(doc, max_heads)
    ids = encode(model, tokenizer, text, max_tokens=max_tokens, truncate=truncate)["input_ids"]  # [1, T]
    if len(doc.get("tokens") or []) != ids.shape[1]:
        doc = {**doc, "tokens": token_texts(tokenizer, ids[0].tolist())}
    dec = teacher_forced(model, {"input_ids": ids}).get("decoder_input_ids")  # [1, T] or None
    if dec is not None:  # an encoder-decoder: its decoder's own tokens (the input shifted right)
        doc = {**doc, "stack_tokens": {**(doc.get("stack_tokens") or {}),
                                       "decoder": token_texts(tokenizer, dec[0].tolist())}}
    views = token_views(model, ids, chosen, k=k, window=window)
    pngs = []
    if png:
        from .plots import write_pngs

        pngs = [str(p) for p in write_pngs(out_dir, doc)]
    made = {"report generation": f"{time.perf_counter() - start:.1f} s (token views, rollout"
                                 f"{', PNGs' if png else ''}; statistics not included)"}
    path = build_report(out_dir, heads=doc, views=views, sections=sections, made=made)
    return {"report": str(path), "bytes": path.stat().st_size, "seconds": round(time.perf_counter() - start, 2),
            "heads": [head_label(h) for h in chosen], "pngs": pngs}


def head_label(head: tuple) -> str:
    """(3, 1) -> '3.1'; ('decoder.cross', 1, 0) -> 'decoder.cross:1.0' (what --map-heads reads)."""
    return ".".join(map(str, head)) if len(head) == 2 else f"{head[0]}:{head[1]}.{head[2]}"


def report_for_inspect(model_name: str | None, out_dir, text: str | None = None, max_tokens: int | None = None,
                       png: bool = False, map_heads: str | None = None, adapter=None) -> dict:
    """What `attnlab inspect` runs after writing heads.json: the same model and input -> report.

    The input is resolved exactly as inspect resolves it (`observe.inspect.resolve_text`),
    so the token view shows the tokens the statistics were computed on. adapter: a saved
    `attnlab tune` folder; it is loaded onto the model (a different base model is refused)
    and its heads are drawn as a "Tuned heads" grid lettered by the heads.json taxonomy.
    """
    from ..models import load
    from ..observe.inspect import resolve_text
    from .data import load_heads

    model, tokenizer = load(model_name)
    text, truncate = resolve_text(model, tokenizer, text, max_tokens)
    sections = []
    if adapter is not None:
        from ..tune import load as load_adapter
        from ..tune.report import tuned_heads_section

        doc = load_heads(Path(out_dir) / "heads.json")
        sections.append(tuned_heads_section(load_adapter(adapter, model), kinds=doc.get("heads")))
    return write_report(out_dir, model, tokenizer, text, max_tokens=max_tokens, truncate=truncate,
                        map_heads=map_heads, png=png, sections=sections)
