"""Print the tables of docs/kv.md from benchmarks/results/kv/*.json (whatever has finished).

    python3 benchmarks/kv_report.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RES = HERE / "results" / "kv"
sys.path.insert(0, str(HERE))


def needles() -> None:
    from kv_needles import summary

    path = RES / "needles_4096.json"
    if path.exists():
        d = json.loads(path.read_text())
        n = len({r["depth"] for r in d["rows"]})
        print(f"## needles: {d['command']}\n## {n} needles done, depths {sorted({r['depth'] for r in d['rows']})}")
        print(summary(d["rows"]))


def kvpress() -> None:
    from kv_kvpress import table

    path, attn = RES / "kvpress_4096.json", RES / "needles_4096.json"
    if path.exists() and attn.exists():
        rows = json.loads(path.read_text())["rows"]
        depths = {round(x["depth"], 6) for x in rows}
        print(f"## kvpress 0.5.5 vs attnlab on needles at depths {sorted(depths)} ({len(rows)} kvpress runs done)")
        print(table(json.loads(attn.read_text())["rows"], rows, depths))
        print("## kvpress peak RSS during decode (MB) / decode tok/s")
        for r in rows:
            print(f"{r['policy']:<10} {r['ratio'] or 0:>5} depth {r['depth']:.1f}: {r['peak_rss_decode_mb']:.0f} MB, "
                  f"{r['decode_tokens_per_s']:.1f} tok/s, cache {r['kv_bytes'] / 2**20:.1f} MB")


def memory() -> None:
    path = RES / "memory_4096.json"
    if path.exists():
        d = json.loads(path.read_text())
        print(f"## {d['command']}")
        for r in d["rows"]:
            print(f"{r['spec']:<45} cache {r['kv_bytes'] / 2**20:7.1f} MB  peak RSS decode {r['peak_rss_decode_mb']:6.0f} MB"
                  f"  decode {r['decode_tokens_per_s']:.2f} tok/s  prefill {r['prefill_seconds']:.1f} s  "
                  f"correct={r['correct']}")


def batch() -> None:
    path = RES / "batch.json"
    if path.exists():
        for r in json.loads(path.read_text())["rows"]:
            print(f"batch {r['spec']}: same tokens as alone {r['same_tokens']}, same kept tokens {r['same_kept_tokens']}")


if __name__ == "__main__":
    needles(), kvpress(), memory(), batch()
