"""heads.json / heads.csv: the files `attnlab inspect` writes (the HTML report reads them).

heads.json schema (SCHEMA_VERSION 2; version 1 had no "stack"):
  {"model": str, "n_tokens": int, "kernel": str, "created": ISO-8601 UTC time,
   "command": str, "params": {...},
   "tokens": [token text, ...],                       # the input, one entry per token
   "stacks": [site name, ...],                        # in the order the model runs them
   "stack_tokens": {"decoder": [token text, ...]},   # only stacks whose tokens differ
                                                      # (an encoder-decoder's decoder input)
   "notes": [text, ...],                              # e.g. why the probes were skipped
   "heads": [{"stack", "layer", "head", "entropy", "entropy_norm", "sink_mass", "prev_token",
              "self_mass", "mean_distance", "local_mass", "induction", "prev_token_probe",
              "retrieval", "retrieval_events", "kind",
              "top_received": [{"position", "token", "value"}, ...]}, ...],
   "sinks": [{"position", "token", "heads_fraction", "mean_received"}, ...]}
"stack" is the site name: "decoder" (a causal LM), "encoder" (BERT), or per stack of an
encoder-decoder "encoder", "decoder", "decoder.cross" (cross-attention: its rows are
decoder tokens, its keys and top_received the encoder's tokens). With several stacks
every sink also has a "stack": whose tokens its position counts ("encoder" / "decoder").
Missing probe scores are null. heads.csv holds the scalar columns of "heads".
Both files are written under temporary names and renamed when complete, so an error
never leaves a partial file behind.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

SCHEMA_VERSION = 2
HEAD_FIELDS = ("stack", "layer", "head", "entropy", "entropy_norm", "sink_mass", "prev_token", "self_mass",
               "mean_distance", "local_mass", "induction", "prev_token_probe", "retrieval",
               "retrieval_events", "kind")


def _clean(value):
    """JSON-safe scalar: NaN -> None, numpy scalars -> Python."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def heads_document(df, model: str, kernel: str = "eager", command: str = "", params: dict | None = None) -> dict:
    """The heads.json document of a head_kinds() / head_stats() DataFrame."""
    heads = []
    for row in df.to_dict("records"):
        entry = {f: _clean(row.get(f, float("nan"))) for f in HEAD_FIELDS}
        entry["stack"] = entry["stack"] or "decoder"
        if entry["retrieval_events"] is not None:
            entry["retrieval_events"] = int(entry["retrieval_events"])
        entry["top_received"] = list(row.get("top_received") or [])
        heads.append(entry)
    n_tokens = df.attrs.get("n_tokens")
    return {
        "schema_version": SCHEMA_VERSION,
        "model": model,
        "n_tokens": n_tokens,
        "kernel": kernel,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "params": {**df.attrs.get("params", {}), **(params or {})},
        "tokens": list(df.attrs.get("tokens", [])),
        "stacks": list(dict.fromkeys(h["stack"] for h in heads)),
        **({"stack_tokens": df.attrs["stack_tokens"]} if df.attrs.get("stack_tokens") else {}),
        "notes": list(df.attrs.get("notes", [])),
        "heads": heads,
        "sinks": list(df.attrs.get("sinks", [])),
    }


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_heads(df, out_dir, document: dict) -> tuple[Path, Path]:
    """Write out_dir/heads.csv and out_dir/heads.json (created if needed); returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cols = [c for c in HEAD_FIELDS if c in df.columns]
    csv_text = df[cols].to_csv(index=False)
    json_text = json.dumps(document, indent=1, ensure_ascii=False)
    csv_path, json_path = out / "heads.csv", out / "heads.json"
    _write_atomic(csv_path, csv_text)
    _write_atomic(json_path, json_text)
    return csv_path, json_path
