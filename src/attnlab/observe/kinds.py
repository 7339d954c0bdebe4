"""head_kinds(): statistics + probe scores + one `kind` label per head.

A head gets the first kind whose rule it meets, in this order (THRESHOLDS):
  retrieval       retrieval >= 0.3 over >= 4 copy events
  induction       induction >= 0.3 (probe: random tokens repeated twice)
  previous-token  prev_token_probe >= 0.5, or prev_token >= 0.5 on the text
  sink            sink_mass >= 0.5 (half of every query's attention on the first token)
  local           local_mass >= 0.5 (half the attention within `local_window` tokens)
  global          everything else (attention spread far back)
Missing probe scores (NaN: probes skipped) never match.

Stacks: every stack (encoder, decoder, ...) is labelled by the same rules. Cross-attention
heads (`decoder.cross`) have no previous token, own position or distance (their keys are
the encoder's tokens), so only `sink` (half the attention on the first encoder token) and
`global` can match there. The probes run on decoder-only causal LMs only (`probe_skip`):
an encoder or an encoder-decoder gets kinds from its statistics alone.
"""

from __future__ import annotations

import math

THRESHOLDS = {"retrieval": 0.3, "retrieval_min_events": 4, "induction": 0.3, "previous-token": 0.5,
              "sink": 0.5, "local": 0.5}
KINDS = ("retrieval", "induction", "previous-token", "sink", "local", "global")
PROBE_COLUMNS = ("induction", "prev_token_probe", "retrieval", "retrieval_events")
DEFAULT_TOKENS = 512


def _at_least(value, threshold: float) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value)) and value >= threshold


def label(row, t: dict = THRESHOLDS) -> str:
    """The kind of one head from its statistics and probe scores (a dict or a DataFrame row)."""
    get = row.get
    if _at_least(get("retrieval"), t["retrieval"]) and _at_least(get("retrieval_events"), t["retrieval_min_events"]):
        return "retrieval"
    if _at_least(get("induction"), t["induction"]):
        return "induction"
    if _at_least(get("prev_token_probe"), t["previous-token"]) or _at_least(get("prev_token"), t["previous-token"]):
        return "previous-token"
    if _at_least(get("sink_mass"), t["sink"]):
        return "sink"
    if _at_least(get("local_mass"), t["local"]):
        return "local"
    return "global"


def default_text(tokenizer, n_tokens: int = DEFAULT_TOKENS) -> str:
    """The default input: the first `n_tokens` tokens of Hamlet."""
    from ..bench.corpora import passage

    return passage(tokenizer, n_tokens)


def add_kinds(df, probes=None):
    """df with the probe columns merged in (NaN when absent) and a `kind` column."""
    attrs = dict(df.attrs)
    if probes is not None:
        on = ["stack", "layer", "head"] if "stack" in df and "stack" in probes else ["layer", "head"]
        df = df.merge(probes, on=on, how="left")
    else:
        df = df.copy()
    for col in PROBE_COLUMNS:
        if col not in df:
            df[col] = float("nan")
    df["kind"] = [label(r) for r in df.to_dict("records")]
    df.attrs = attrs
    return df


def probe_skip(model) -> str | None:
    """Why the probes cannot run on `model` (None: they can). Induction needs causal
    self-attention (an encoder sees the answer ahead) and retrieval greedy generation
    from one stack: both are defined for decoder-only causal LMs only."""
    from ..models import loaded_kind

    kind = loaded_kind(model)
    if kind == "causal":
        return None
    what = "an encoder-decoder" if kind == "encoder-decoder" else "an encoder (non-causal)"
    return (f"induction and retrieval probes skipped: they need a decoder-only causal LM and "
            f"{type(model).__name__} is {what}; head kinds come from the statistics alone")


def run_probes(model, tokenizer, n_needles: int = 4, needle_length: int = 1024, induction_length: int = 64,
               seed: int = 0, progress=None):
    """DataFrame[stack, layer, head, induction, prev_token_probe, retrieval, retrieval_events].

    Retrieval needs a generative model whose context holds `needle_length` tokens; for
    others (encoders) its columns are NaN / 0 events.
    """
    from ..models import context_length
    from .probes import induction_scores, retrieval_scores

    probes = induction_scores(model, tokenizer, length=induction_length, seed=seed)
    if progress:
        progress("induction", 1, 1)
    limit = context_length(model)
    if model.can_generate() and (limit is None or limit >= needle_length):
        hook = (lambda done, total: progress("retrieval", done, total)) if progress else None
        ret = retrieval_scores(model, tokenizer, n_needles=n_needles, length=needle_length, seed=seed, progress=hook)
        probes = probes.merge(ret, on=["layer", "head"], how="left")
        probes.attrs["cases"] = ret.attrs.get("cases", [])
    else:
        probes["retrieval"], probes["retrieval_events"] = float("nan"), 0
    return probes


def head_kinds(model, tokenizer, text=None, stats=None, probes: bool = True, n_needles: int = 4,
               needle_length: int = 1024, seed: int = 0, progress=None, **stats_params):
    """head_stats() + the probe scores + a `kind` label per head (DataFrame per (layer, head)).

    text: the input of the statistics (default: the first 512 tokens of Hamlet);
    stats: a head_stats() DataFrame to reuse instead of computing one.
    probes=False skips the probes (their columns are NaN; kinds come from the statistics);
    so does a model that is not a decoder-only causal LM (`probe_skip`; df.attrs["notes"]
    says so). df.attrs adds "thresholds" and, with probes, "needle_cases". progress:
    optional callback(stage, done, total), stage in "layers", "induction", "retrieval".
    """
    from .heads import head_stats

    if stats is None:
        text = default_text(tokenizer) if text is None else text
        stats = head_stats(model, tokenizer, text, progress=progress, **stats_params)
    skip = probe_skip(model) if probes else None
    probes = probes and skip is None
    scores = run_probes(model, tokenizer, n_needles, needle_length, seed=seed, progress=progress) if probes else None
    df = add_kinds(stats, scores)
    df.attrs["thresholds"] = dict(THRESHOLDS)
    df.attrs["notes"] = [skip] if skip else []
    if scores is not None:
        df.attrs["needle_cases"] = scores.attrs.get("cases", [])
    return df
