"""A batch of 4 prompts of different lengths (left padding) vs each prompt alone, under KV policies.

    python3 benchmarks/kv_batch.py --out benchmarks/results/kv/batch.json

SmolLM2-135M-Instruct, torch.set_num_threads(1); 4 Hamlet passages of 160 / 240 / 320 / 400
tokens; greedy, 16 new tokens. Per policy: whether every row's tokens equal the prompt
alone, and whether every head kept the same tokens (positions counted from the first real token).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SPECS = ("snapkv:ratio=0.5,window=32", "adaptive:policy=snapkv,ratio=0.75,window=32", "h2o:ratio=0.5",
         "streaming:ratio=0.5", "knorm:ratio=0.5", "tova:ratio=0.5", "random:ratio=0.5")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--new-tokens", type=int, default=16)
    ap.add_argument("--specs", default=";".join(SPECS), help="';'-separated KV specs")
    ap.add_argument("--out", default="benchmarks/results/kv/batch.json")
    args = ap.parse_args()
    import torch

    import attnlab
    from attnlab.bench.corpora import passage

    torch.set_num_threads(1)
    model, tok = attnlab.load()
    texts = [passage(tok, n, start_token=1000 * i) for i, n in enumerate((160, 240, 320, 400))]
    tok.padding_side = "left"
    rows = []
    for spec in args.specs.split(";"):
        def run(batch):
            enc = tok(batch, return_tensors="pt", padding=True)
            with torch.no_grad(), attnlab.attach(model, kv=spec) as s:
                out = model.generate(**enc, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                                     do_sample=False, pad_token_id=tok.pad_token_id or tok.eos_token_id)
            return out[:, enc["input_ids"].shape[1]:], s.kv.layers()
        together, layers_b = run(texts)
        same_tokens, same_kept = [], []
        for i, text in enumerate(texts):
            alone, layers_a = run([text])
            same_tokens.append(bool(torch.equal(together[i], alone[0])))
            same_kept.append(all(torch.equal(lb.pos[i][lb.keep[i]], la.pos[0][la.keep[0]])
                                 for lb, la in zip(layers_b.values(), layers_a.values())))
        rows.append(dict(spec=spec, same_tokens=same_tokens, same_kept_tokens=same_kept))
        print(json.dumps(rows[-1]), flush=True)
    Path(args.out).write_text(json.dumps(dict(threads=1, lengths=[160, 240, 320, 400], rows=rows), indent=1))


if __name__ == "__main__":
    main()
