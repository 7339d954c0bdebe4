"""Explain a prediction from attention: rollout, flow, raw attention, attention x gradient,
context traceback, each checked against leave-one-out ablation. One method per module.

Nothing heavy is imported here; import the method's module (e.g. `attnlab.explain.rollout`).
"""
