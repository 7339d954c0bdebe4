"""Benchmark specs, corpora, and the summary arithmetic (ratios, crossover, best, memory)."""

import pytest

from attnlab.bench import corpora
from attnlab.bench.results import best_tradeoff, crossover, memory_ratios
from attnlab.bench.spec import BenchConfig, parse_ints, parse_kernels, split_kernels


def test_split_kernels_keeps_params_with_their_kernel():
    text = "eager:block_size=64,chunked,eager@repeats=1@needles=0;sdpa"
    assert split_kernels(text) == ["eager:block_size=64", "chunked", "eager@repeats=1@needles=0", "sdpa"]
    assert split_kernels("eager:block_size=64,x=2,sdpa") == ["eager:block_size=64,x=2", "sdpa"]


def test_parse_kernels_puts_dense_first_and_reads_options():
    specs = parse_kernels("eager:block_size=64,eager@repeats=1@needles=0@max_length=512")
    assert [s.label for s in specs] == ["sdpa", "eager:block_size=64", "eager"]
    assert specs[1].params == {"block_size": 64} and specs[1].repeats is None and specs[1].needles
    assert specs[2].repeats == 1 and not specs[2].needles and specs[2].max_length == 512
    assert specs[1].max_length is None and specs[1].runs_at(10**6)
    assert parse_kernels("eager@min_length=100")[1].runs_at(100) and not specs[2].runs_at(513)
    assert not parse_kernels("eager@min_length=100")[1].runs_at(99)
    assert specs[1].parity_params() == {"block_size": 64}  # exact kernel: checked as given


@pytest.mark.parametrize("text, message", [
    ("nope", "unknown kernel 'nope'"),
    ("eager:bogus=1", "has no parameter"),
    ("eager@fast=1", "bad bench option"),
    ("eager,eager", "listed twice"),
])
def test_bad_kernel_specs_are_errors(text, message):
    with pytest.raises(ValueError, match=message):
        parse_kernels(text)


def test_parse_ints_and_config_validation(tmp_path):
    assert parse_ints("2048, 4096", "--lengths") == (2048, 4096)
    for bad in ("", "0", "a,b"):
        with pytest.raises(ValueError):
            parse_ints(bad, "--lengths")
    with pytest.raises(ValueError, match="repeats"):
        BenchConfig(out=tmp_path, repeats=0).validate()
    with pytest.raises(ValueError, match="fewer than one per needle length"):
        BenchConfig(out=tmp_path, needles=1, needle_lengths=(512, 1024)).validate()


def test_austen_and_kjv_are_read_from_debian_packages():
    pride = corpora.austen("prideprejudice")
    assert "It is a truth universally acknowledged" in pride[:2000] and len(pride) > 600_000
    with pytest.raises(ValueError, match="available: emma"):
        corpora.austen("ulysses")
    psalm = corpora.load_corpus("kjv:ps23:1-6")
    assert psalm.splitlines()[0] == "The LORD is my shepherd; I shall not want."
    assert len(psalm.splitlines()) == 6
    assert corpora.load_corpus("hamlet") == corpora.shakespeare("hamlet")


def test_load_corpus_reads_files_and_rejects_unknown_names(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("some text")
    assert corpora.load_corpus(str(path)) == "some text"
    with pytest.raises(ValueError, match="unknown corpus 'nothing'"):
        corpora.load_corpus("nothing")


def _row(kernel, length, speedup, ppl_change=0.0, name=None):
    return {"kernel": kernel, "name": name or kernel.split(":")[0], "length": length, "speedup": speedup,
            "ppl_change_pct": ppl_change, "kl": 0.0, "density": 0.5, "attention_share": 0.5,
            "peak_rss_mb": 1000.0 + length / 10, "prefill_rss_mb": length / 10}


def test_crossover_is_the_length_from_which_a_kernel_stays_faster():
    rows = [_row("sdpa", n, 1.0) for n in (1, 2, 4)]
    rows += [_row("a", 1, 0.5), _row("a", 2, 1.2), _row("a", 4, 1.8)]
    rows += [_row("b", 1, 1.1), _row("b", 2, 0.9), _row("b", 4, 1.3)]
    rows += [_row("c", 1, 0.5), _row("c", 2, 0.7), _row("c", 4, 0.9)]
    out = crossover(rows)
    assert out["a"]["faster_from"] == 2 and out["a"]["sdpa_faster_at"] == [1]
    assert out["b"]["faster_from"] == 4 and out["b"]["sdpa_faster_at"] == [1, 2]
    assert out["c"]["faster_from"] is None and out["c"]["sdpa_faster_at"] == [1, 2, 4]
    assert "sdpa" not in out


def test_best_tradeoff_respects_ppl_and_needle_tolerances():
    rows = [_row("streaming:window=8", 8, 3.0, ppl_change=9.0), _row("block_topk", 8, 2.0, ppl_change=1.0),
            _row("flexprefill", 8, 2.5, ppl_change=0.5), _row("chunked", 8, 4.0)]
    needles = {"flexprefill": {"delta_pts": -10.0}, "block_topk": {"delta_pts": 0.0}}
    best = best_tradeoff(rows, needles)[8]
    assert best["best_quality_kept"]["kernel"] == "block_topk"  # flexprefill loses needles
    assert best["fastest"]["kernel"] == "streaming:window=8"  # chunked is exact, not sparse


def test_memory_ratio_pairs_chunked_with_eager():
    rows = [_row("eager", 4, 1.0), _row("chunked:block=2", 4, 1.0, name="chunked"), _row("eager", 8, 1.0)]
    rows[0]["peak_rss_mb"] = 2000.0
    out = memory_ratios(rows)
    assert list(out) == [4] and out[4]["peak_ratio"] == pytest.approx(rows[1]["peak_rss_mb"] / 2000.0)


def test_best_tradeoff_needs_needles_when_the_run_tested_them():
    rows = [_row("streaming:window=8", 8, 3.0, ppl_change=1.0), _row("block_topk", 8, 2.0, ppl_change=1.0)]
    tested = best_tradeoff(rows, {"block_topk": {"delta_pts": 0.0}})[8]
    assert tested["best_quality_kept"]["kernel"] == "block_topk"  # streaming skipped the needles
    untested = best_tradeoff(rows, {})[8]
    assert untested["best_quality_kept"]["kernel"] == "streaming:window=8"  # no needle test at all: ppl decides


def test_best_tradeoff_never_picks_a_leaky_row():
    rows = [_row("block_topk:pool=mean", 8, 3.0), _row("block_topk", 8, 2.0, ppl_change=1.0)]
    rows[0]["ppl_change_pct"] = None  # leaky, not scored
    best = best_tradeoff(rows, {})[8]
    assert best["best_quality_kept"]["kernel"] == "block_topk"
    assert best["fastest"]["kernel"] == "block_topk:pool=mean"
