"""Plot held-out perplexity vs attention-transfer tokens (hedgehog + window 64) from ppl.json.

    python3 benchmarks/convert_plot.py   # -> benchmarks/results/convert/ppl_vs_tokens.png
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "convert"


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads((RESULTS / "ppl.json").read_text())
    fig, ax = plt.subplots(figsize=(6, 4))
    for run in data["runs"]:
        if run["curve"]:
            xs = [c["tokens"] for c in run["curve"]]
            ax.plot(xs, [c["ppl"] for c in run["curve"]], "o-", label=f"{run['feature_map']} + window {run['window']}")
    ax.axhline(data["teacher_ppl"], color="k", ls="--", label=f"teacher (softmax) {data['teacher_ppl']:.1f}")
    ax.axhline(data["window_only_ppl"], color="gray", ls=":", label=f"window 64 only {data['window_only_ppl']:.1f}")
    ax.set_xlabel("attention-transfer tokens")
    ax.set_ylabel("held-out perplexity (first 2048 eval tokens)")
    ax.set_title("SmolLM2-135M: perplexity vs transfer tokens")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "ppl_vs_tokens.png", dpi=120)


if __name__ == "__main__":
    main()
