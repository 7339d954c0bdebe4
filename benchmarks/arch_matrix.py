"""The architecture matrix: results/arch_matrix.json -> docs/generated/arch_matrix.md.

The JSON is written by the test suite (tests/test_arch_matrix.py, when every cell ran);
this module only renders it (`table`); `benchmarks/docs_tables.py` writes it with the
other generated tables, which docs/models.md includes.
Run: python3 -m pytest tests/test_arch_matrix.py && python3 benchmarks/docs_tables.py
     (--check: exit 1 if a generated table is not up to date, write nothing)
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "arch_matrix.json"
KERNELS = ("sdpa", "eager", "chunked", "stats", "streaming", "block_topk", "flexprefill", "window")
# feature column -> the JSON cells it combines (one per kernel the feature ran under)
KINDS = ("decoder", "encoder", "vision", "encoder-decoder", "audio")  # row order, then by name
FEATURES = {"generate": "generate/", "head stats": "head_stats/", "cross-attention stats": "cross_stats/"}


def combine(outcomes: list[str]) -> str:
    """One table cell from several outcomes: FAIL wins; equal outcomes stay; else listed."""
    if "FAIL" in outcomes:
        return "FAIL"
    return outcomes[0] if len(set(outcomes)) == 1 else " / ".join(sorted(set(outcomes)))


def row_cells(cells: dict) -> list[str]:
    """The table cells of one architecture: its kernels, then its features."""
    out = [cells[k] for k in KERNELS]
    for prefix in FEATURES.values():
        out.append(combine([v for c, v in sorted(cells.items()) if c.startswith(prefix)]))
    return out


def summary(archs: dict, unsupported: dict) -> list[str]:
    """The count lines under the table."""
    kernel = [c for row in archs.values() for c in row_cells(row["cells"])[:len(KERNELS)]]
    feature = [c for row in archs.values() for c in row_cells(row["cells"])[len(KERNELS):]]

    def counts(cells):
        return (f"{cells.count('exact')} exact, {cells.count('refused')} refused, "
                f"{cells.count('FAIL')} failing")

    return [f"{len(archs)} architectures x {len(KERNELS)} kernels: {counts(kernel)}; "
            f"features ({', '.join(FEATURES)}): {counts(feature)}, {feature.count('n/a')} n/a; "
            f"{len(unsupported)} more architectures unsupported ({', '.join(sorted(unsupported))})."]


def table(data: dict) -> str:
    """The Markdown between the markers: table, summary and how it was made."""
    head = ["architecture", "kind", *KERNELS, *FEATURES]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in sorted(data["archs"].items(), key=lambda item: (_kind_rank(item[1]["kind"]), item[0])):
        lines.append("| " + " | ".join([f"`{name}`", row["kind"], *row_cells(row["cells"])]) + " |")
    for name, row in sorted(data["unsupported"].items()):
        blank = ["—"] * (len(head) - 3)
        lines.append(f"| `{name}` | {row['kind']} | not routable through AttentionInterface: clear error | "
                     + " | ".join(blank) + " |")
    versions = ", ".join(f"{k} {v}" for k, v in sorted(data["versions"].items()))
    refused = "; ".join(f"`{a}`: {why}" for a, why in sorted(data["refused_for"].items()))
    return "\n".join([
        *lines, "",
        *summary(data["archs"], data["unsupported"]), "",
        "exact: every hidden state of every stack and the output equal stock eager `transformers` on real "
        "positions (1e-5 sdpa, 1e-4 others, sparse kernels at a full budget); greedy `generate()` on a KV cache "
        "gives its tokens (sdpa, eager, chunked, stats); `HeadStats` (stats, eager) equals a reference from its "
        f"attention maps within 1e-4. refused: `RefusedCall` before computing ({refused}).", "",
        f"Generated ({versions}) by `python3 -m pytest tests/test_arch_matrix.py && python3 benchmarks/docs_tables.py`"
        " (the tests write `benchmarks/results/arch_matrix.json`, the script renders it here).",
    ])


def _kind_rank(kind: str) -> int:
    return KINDS.index(kind) if kind in KINDS else len(KINDS)
