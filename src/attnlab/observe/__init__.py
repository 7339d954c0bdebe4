"""Observe: streaming per-head attention statistics and the probes of the head taxonomy.

stats.HeadStats (the observer), heads.head_stats (DataFrame per head), probes
(induction, previous-token, retrieval), kinds.head_kinds (labels), export (heads.json).
Nothing is imported here: import the submodule you need.
"""
