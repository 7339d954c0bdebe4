"""Benchmarks: real-text corpora, cases, timing and memory."""
