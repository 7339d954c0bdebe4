"""The retrieval tasks of attnlab.bench.needles: single needle, multi-key, variable tracking."""

import re

import pytest

from attnlab.bench.needles import (answer_correct, answer_score, make_case, make_cases, make_multikey_case,
                                   make_vt_case)


@pytest.fixture(scope="module")
def tok(smollm2):
    return smollm2[1]


def test_single_needle_keeps_its_question_and_old_prompt(tok, hamlet):
    case = make_case(tok, hamlet, 512, 0.5, seed=3)
    assert case.prompt.endswith(case.question)
    assert case.question.startswith("\n\nRemember the secret number. The secret number of ")
    assert case.prompt[case.needle_start:].startswith(case.needle)
    assert case.task == "needle" and case.answer in case.needle


@pytest.mark.parametrize("depth", [0.1, 0.5, 0.9])
def test_multikey_has_distinct_needles_and_asks_for_the_one_at_depth(tok, hamlet, depth):
    case = make_multikey_case(tok, hamlet, 1024, depth, seed=7, keys=4)
    body = case.prompt[:-len(case.question)]
    found = re.findall(r"The secret number of (\w+) is (\d+)\.", body)
    assert len(found) == 4
    names, numbers = zip(*found)
    assert len(set(names)) == 4 and len(set(numbers)) == 4
    asked = re.search(r"The secret number of (\w+) is$", case.question).group(1)
    assert dict(found)[asked] == case.answer
    assert abs(case.needle_start / len(body) - depth) < 0.1  # the asked needle sits near its depth
    assert abs(case.n_tokens - 1024) <= 12
    assert case.task == "multikey"


def test_vt_chain_is_in_order_and_the_answer_is_every_name(tok, hamlet):
    case = make_vt_case(tok, hamlet, 1024, 0.2, seed=5, hops=2)
    body = case.prompt[:-len(case.question)]
    first = re.search(r"VAR ([A-Z]{5}) = (\d{5})\.", body)
    links = re.findall(r"VAR ([A-Z]{5}) = VAR ([A-Z]{5})\.", body)
    assert first and len(links) == 2
    chain = [first.group(1)]
    for new, old in links:  # each link refers to the previous variable, later in the text
        assert old == chain[-1]
        chain.append(new)
    assert case.answer.split() == chain
    assert first.group(2) in case.question
    assert body.index(first.group(0)) < body.index(f"VAR {chain[1]} =") < body.index(f"VAR {chain[2]} =")
    assert case.question.endswith("are VAR") and case.task == "vt"


def test_answer_scores():
    assert answer_score("4817", " 4817.\n") == 1.0
    assert answer_score("4817", " 48170") == 0.0
    assert answer_score("4817", "no number") == 0.0
    assert answer_score("QKZPD MWTRB", " QKZPD, VAR MWTRB, VAR") == 1.0
    assert answer_score("QKZPD MWTRB", " QKZPD = 48172.") == 0.5
    assert answer_score("QKZPD MWTRB", " QKZPDX, MWTRBB") == 0.0  # whole words only
    assert answer_correct("QKZPD MWTRB", "MWTRB QKZPD") and not answer_correct("QKZPD MWTRB", "QKZPD")


def test_make_cases_dispatches_tasks_and_refuses_bad_input(tok, hamlet):
    cases = make_cases(tok, hamlet, [512], [0.25, 0.75], seed=1, task="vt", hops=1)
    assert [c.task for c in cases] == ["vt", "vt"] and all(len(c.answer.split()) == 2 for c in cases)
    assert cases[0].answer != cases[1].answer
    with pytest.raises(ValueError, match="unknown needle task"):
        make_cases(tok, hamlet, [512], [0.5], task="nope")
    with pytest.raises(ValueError, match="keys must be"):
        make_multikey_case(tok, hamlet, 512, 0.5, seed=0, keys=1)
    with pytest.raises(ValueError, match="hops must be"):
        make_vt_case(tok, hamlet, 512, 0.5, seed=0, hops=0)
    with pytest.raises(ValueError, match="cannot build"):
        make_multikey_case(tok, hamlet[:2000], 4096, 0.5, seed=0)
