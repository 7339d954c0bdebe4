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


def stacks_of(doc: dict) -> list[str]:
    """The site names of a heads.json in order ("decoder" for documents without stacks)."""
    return list(dict.fromkeys(str(h.get("stack") or "decoder") for h in doc["heads"]))


def _key(head: dict, several: bool) -> tuple:
    """(layer, head) on a single-stack document, (stack, layer, head) on one with several."""
    pair = (int(head["layer"]), int(head["head"]))
    return (str(head.get("stack") or "decoder"), *pair) if several else pair


def choose_heads(doc: dict, max_heads: int = 12) -> list[tuple]:
    """A bounded, varied set of heads for the token view: (layer, head) pairs, or
    (stack, layer, head) triples when the document has several stacks (then every stack
    gets its turn, so cross-attention is represented too).

    Kinds take turns (induction, retrieval, previous-token, global, local, sink, then any
    other label); within a kind the head with the highest score for that kind comes first.
    """
    stacks = stacks_of(doc)
    several = len(stacks) > 1
    groups: dict[tuple, list[dict]] = {}
    for head in doc["heads"]:
        stack = str(head.get("stack") or "decoder")
        groups.setdefault((stacks.index(stack), kind_name(head.get("kind"))), []).append(head)
    rank = {k: i for i, k in enumerate(KIND_ORDER)}
    order = sorted(groups, key=lambda g: (rank.get(g[1], len(rank)), g[1], g[0]))
    queues = {g: sorted(groups[g], key=lambda h: -_score(h, g[1])) for g in order}
    chosen: list[tuple] = []
    while len(chosen) < max_heads and any(queues.values()):
        for group in order:
            if queues[group] and len(chosen) < max_heads:
                chosen.append(_key(queues[group].pop(0), several))
    return sorted(chosen, key=lambda t: (stacks.index(t[0]), *t[1:]) if several else t)


def parse_heads(spec: str, doc: dict | None = None) -> list[tuple]:
    """'3.1,5.2' -> [(3, 1), (5, 2)]; 'decoder.cross:1.0' -> [('decoder.cross', 1, 0)].

    Checked against the heads in `doc` when given; on a document with several stacks every
    head must name its stack.
    """
    several = doc is not None and len(stacks_of(doc)) > 1
    valid = {_key(h, True) for h in doc["heads"]} if doc else None
    out = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        stack, _, pair = part.rpartition(":")
        try:
            layer, head = (int(x) for x in pair.split("."))
        except ValueError:
            raise ValueError(f"bad head {part!r}: write LAYER.HEAD, e.g. 3.1 (or STACK:LAYER.HEAD)") from None
        if several and not stack:
            raise ValueError(f"head {part!r}: this model has several stacks ({', '.join(stacks_of(doc))}); "
                             f"write STACK:LAYER.HEAD, e.g. {stacks_of(doc)[0]}:{layer}.{head}")
        if valid is not None:
            name = stack or stacks_of(doc)[0]
            if (name, layer, head) not in valid:
                mine = [(l, h) for s, l, h in valid if s == name]
                if not mine:
                    raise ValueError(f"no stack {name!r}; stacks: {', '.join(stacks_of(doc))}")
                raise ValueError(f"no head {(stack + ':') if stack else ''}{layer}.{head}; layers "
                                 f"0..{max(l for l, _ in mine)}, heads 0..{max(h for _, h in mine)}")
        out.append((stack, layer, head) if stack else (layer, head))
    return out


def island(obj) -> str:
    """JSON that is safe inside <script type="application/json">: no '<', '>', '&', U+2028/9."""
    text = json.dumps(_finite(obj), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    for raw, esc in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(raw, esc)
    return text
