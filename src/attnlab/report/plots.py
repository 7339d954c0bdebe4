"""DIR/*.png: matplotlib figures of the report's layer x head grids, for papers and slides."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .data import STATS, kind_name, stacks_of

KIND_COLORS = {"sink": "#6c757d", "previous-token": "#2a9d8f", "induction": "#e4572e", "retrieval": "#8e44ad",
               "local": "#4c8bd6", "global": "#e9c46a", "mixed": "#b8c1cc", "unknown": "#d9dee6"}
SPARE = ("#f4a261", "#264653", "#a7c957", "#bc4749", "#6a4c93", "#1982c4")


def _only(doc: dict, stack: str | None) -> dict:
    """doc with only the heads of one stack (None: all heads, a single-stack document)."""
    if stack is None:
        return doc
    return {**doc, "heads": [h for h in doc["heads"] if str(h.get("stack") or "decoder") == stack],
            "model": f"{doc.get('model')} ({stack})"}


def grid(doc: dict, field: str, stack: str | None = None) -> np.ndarray:
    """[layers, heads] float array of one statistic (of one stack's heads); NaN where a head has no value."""
    doc = _only(doc, stack)
    n_layers = 1 + max(h["layer"] for h in doc["heads"])
    n_heads = 1 + max(h["head"] for h in doc["heads"])
    out = np.full((n_layers, n_heads), np.nan)
    for h in doc["heads"]:
        value = h.get(field)
        if isinstance(value, (int, float)):
            out[h["layer"], h["head"]] = value
    return out


def _figure(shape: tuple[int, int]):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    layers, heads = shape
    width = min(12.0, 2.4 + 0.32 * heads)
    height = min(14.0, 1.6 + 0.2 * layers)
    return plt, plt.subplots(figsize=(width, height), dpi=120)


def _title(doc: dict, what: str) -> str:
    return f"{what}\n{doc.get('model')}, {doc.get('n_tokens')} tokens"


def plot_stat(doc: dict, field: str, label: str, path: Path) -> Path:
    values = grid(doc, field)
    plt, (fig, ax) = _figure(values.shape)
    cmap = plt.get_cmap("viridis").with_extremes(bad="#dddddd")
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, aspect="auto", interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.08, pad=0.03, label=label)
    ax.set(xlabel="head", ylabel="layer", title=_title(doc, label))
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return path


def plot_kinds(doc: dict, path: Path) -> Path:
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    kinds = sorted({kind_name(h.get("kind")) for h in doc["heads"]})
    colors = [KIND_COLORS.get(k, SPARE[i % len(SPARE)]) for i, k in enumerate(kinds)]
    codes = np.full(grid(doc, "layer").shape, np.nan)  # [layers, heads]
    for h in doc["heads"]:
        codes[h["layer"], h["head"]] = kinds.index(kind_name(h.get("kind")))
    plt, (fig, ax) = _figure(codes.shape)
    ax.imshow(np.ma.masked_invalid(codes), cmap=ListedColormap(colors), vmin=-0.5, vmax=len(kinds) - 0.5,
              aspect="auto", interpolation="nearest")
    counts = {k: sum(kind_name(h.get("kind")) == k for h in doc["heads"]) for k in kinds}
    ax.legend(handles=[Patch(color=c, label=f"{k} ({counts[k]})") for k, c in zip(kinds, colors)],
              loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8, frameon=False)
    ax.set(xlabel="head", ylabel="layer", title=_title(doc, "head kinds"))
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return path


def write_pngs(out_dir, doc: dict) -> list[Path]:
    """DIR/grid_<statistic>.png for every statistic present, and DIR/kinds.png. Returns the paths.

    A document with several stacks gets one set per stack: grid_<stack>_<statistic>.png and
    kinds_<stack>.png (stack "decoder.cross" spelled "decoder-cross").
    """
    out_dir = Path(out_dir)
    stacks = stacks_of(doc)
    tmp = []  # drawn under temporary names, renamed only when every figure is done
    try:
        for stack in (stacks if len(stacks) > 1 else [None]):
            part, tag = _only(doc, stack), ("" if stack is None else stack.replace(".", "-") + "_")
            for field, label, _ in STATS:
                if not np.isnan(grid(part, field)).all():
                    tmp.append(plot_stat(part, field, label, out_dir / f".grid_{tag}{field}.png.tmp"))
            tmp.append(plot_kinds(part, out_dir / f".kinds{'_' + tag[:-1] if tag else ''}.png.tmp"))
    except BaseException:
        for path in tmp:
            path.unlink(missing_ok=True)
        raise
    return [path.replace(path.with_name(path.name[1:-4])) for path in tmp]
