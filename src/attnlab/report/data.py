"""Reading heads.json, choosing which heads get token-view maps, and the page's JSON island."""

from __future__ import annotations

import json
import math
from pathlib import Path

# (field of a head in heads.json, label on the page, what it measures)
STATS = (
    ("entropy", "entropy (nats)", "mean over queries of -sum_j p(j) ln p(j)"),
    ("entropy_norm", "normalised entropy", "entropy / ln(visible keys): 0 = one key, 1 = uniform"),
    ("sink_mass", "sink mass", "mean attention on position 0"),
    ("prev_token", "previous token", "mean attention on the previous token"),
    ("self_mass", "self", "mean attention on the query's own position"),
    ("mean_distance", "mean distance (tokens)", "mean over queries of sum_j p(j) |i - j|"),
    ("local_mass", "local mass", "mean attention on keys closer than the local window"),
    ("induction", "induction (probe)", "attention to the token after the previous occurrence, on repeated random tokens"),
    ("prev_token_probe", "previous token (probe)", "previous-token attention on the repeated random tokens"),
    ("retrieval", "retrieval (probe)", "share of needle-copy steps where the head's top key is the copied token"),
)

# which statistic shows that a head is a typical member of its kind
KIND_SCORE = {"sink": "sink_mass", "previous-token": "prev_token", "induction": "induction",
              "retrieval": "retrieval", "local": "local_mass", "global": "mean_distance"}
KIND_ORDER = ("induction", "retrieval", "previous-token", "global", "local", "sink")


def _finite(obj):
    """obj with every non-finite float (NaN, inf) replaced by None, so JSON stays strict."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def load_heads(path: str | Path) -> dict:
    """The heads.json document (issue 3's schema), non-finite numbers turned into null."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `attnlab inspect --out {path.parent}` first")
    doc = _finite(json.loads(path.read_text(encoding="utf-8")))
    if not isinstance(doc, dict) or not isinstance(doc.get("heads"), list):
        raise ValueError(f"{path} is not an attnlab heads.json (no 'heads' list)")
    return doc


def kind_name(kind) -> str:
    """A kind label in one spelling: lower case, words joined by '-'."""
    return str(kind or "unknown").strip().lower().replace("_", "-").replace(" ", "-")


def _score(head: dict, kind: str) -> float:
    value = head.get(KIND_SCORE.get(kind, "entropy_norm"))
    return float(value) if isinstance(value, (int, float)) else float("-inf")


def choose_heads(doc: dict, max_heads: int = 12) -> list[tuple[int, int]]:
    """A bounded, varied set of (layer, head)s for the token view.

    Kinds take turns (induction, retrieval, previous-token, global, local, sink, then any
    other label); within a kind the head with the highest score for that kind comes first.
    """
    groups: dict[str, list[dict]] = {}
    for head in doc["heads"]:
        groups.setdefault(kind_name(head.get("kind")), []).append(head)
    order = [k for k in KIND_ORDER if k in groups] + sorted(k for k in groups if k not in KIND_ORDER)
    queues = {k: sorted(groups[k], key=lambda h: -_score(h, k)) for k in order}
    chosen: list[tuple[int, int]] = []
    while len(chosen) < max_heads and any(queues.values()):
        for kind in order:
            if queues[kind] and len(chosen) < max_heads:
                head = queues[kind].pop(0)
                chosen.append((int(head["layer"]), int(head["head"])))
    return sorted(chosen)


def parse_heads(spec: str, doc: dict | None = None) -> list[tuple[int, int]]:
    """'3.1,5.2' -> [(3, 1), (5, 2)]; checked against the heads in `doc` when given."""
    valid = {(int(h["layer"]), int(h["head"])) for h in doc["heads"]} if doc else None
    out = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        try:
            layer, head = (int(x) for x in part.split("."))
        except ValueError:
            raise ValueError(f"bad head {part!r}: write LAYER.HEAD, e.g. 3.1") from None
        if valid is not None and (layer, head) not in valid:
            raise ValueError(f"no head {layer}.{head}; layers 0..{max(l for l, _ in valid)}, "
                             f"heads 0..{max(h for _, h in valid)}")
        out.append((layer, head))
    return out


def island(obj) -> str:
    """JSON that is safe inside <script type="application/json">: no '<', '>', '&', U+2028/9."""
    text = json.dumps(_finite(obj), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    for raw, esc in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(raw, esc)
    return text
