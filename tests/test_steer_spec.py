"""Head selection and the --modify text form."""

from __future__ import annotations

import pandas as pd
import pytest

from attnlab import steer
from attnlab.steer.heads import format_ints, format_pairs, select
from attnlab.steer.kinds import top_heads
from attnlab.steer.spec import parse_modifier


def test_select_forms():
    assert select().everything and select(layers="all").everything and select(heads="all").everything
    h = select(layers="0-2;5")
    assert h.index(1, 4).tolist() == [0, 1, 2, 3] and h.index(3, 4) is None and h.index(5, 4) is not None
    h = select(heads="3:1;5:0-2")
    assert h.index(3, 4).tolist() == [1] and h.index(5, 4).tolist() == [0, 1, 2] and h.index(4, 4) is None
    assert select(heads=[(3, 1), (5, 0)]) == select(heads="3:1;5:0")
    assert select(layers=range(3)) == select(layers="0-2") == select(layers=[0, 1, 2])
    both = select(layers=[0], heads="2:3")
    assert both.as_pairs(3, 4) == [(0, 0), (0, 1), (0, 2), (0, 3), (2, 3)]
    assert format_ints([0, 1, 2, 5, 7, 8]) == "0-2;5;7-8" and format_pairs([(5, 2), (3, 1)]) == "3:1;5:2"
    with pytest.raises(ValueError, match="layer:head"):
        select(heads="3")


def test_parse_modifier_builds_the_factory_result():
    assert parse_modifier("sink_scale:factor=0.5,layers=0-5") == steer.sink_scale(0.5, layers=range(6))
    assert parse_modifier("calibrate:factor=0.3,threshold=4,heads=2:1;3:0") == \
        steer.calibrate(0.3, 4.0, heads=[(2, 1), (3, 0)])
    assert parse_modifier("mask:layers=3") == steer.mask(layers=[3])
    assert parse_modifier("recency:boost=2,window=8").window == 8
    assert parse_modifier("emphasize:alpha=0.2,span=Remember").span == "Remember"


@pytest.mark.parametrize("spec, message", [
    ("sink:factor=0.5", "valid modifiers"),
    ("sink_scale:fctor=0.5", "its parameters"),
    ("sink_scale:factor", "expected key=value"),
    ("sink_scale:factor=-1", "must be a number > 0"),
    ("mask:kind=retrieval,top=5", "needs a model"),
    ("mask:top=5", "needs kind="),
    ("mask:kind=retrieval,layers=0-3", "not both"),
])
def test_parse_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_modifier(spec)


def test_top_heads_ranks_by_score_and_rejects_unknown_kinds():
    df = pd.DataFrame({"layer": [0, 0, 1, 1], "head": [0, 1, 0, 1], "score": [0.1, 0.9, 0.9, 0.0]})
    assert top_heads(df, 2) == [(0, 1), (1, 0)]
    assert top_heads(df, 10) == [(0, 1), (1, 0), (0, 0), (1, 1)]
    from attnlab.steer.kinds import kind_scores

    with pytest.raises(ValueError, match="valid kinds"):
        kind_scores(None, None, "copying")
