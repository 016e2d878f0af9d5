"""Rank fusion against hand-computed values."""
from __future__ import annotations

import pytest

from toolkit.fusion import convex, fuse, minmax, rrf


def test_rrf_hand_computed():
    dense = [(1, 0.9), (2, 0.8), (3, 0.1)]
    lexical = [(3, 12.0), (1, 5.0)]
    fused = dict(rrf([dense, lexical], k=60))
    assert fused[1] == pytest.approx(1 / 61 + 1 / 62)
    assert fused[2] == pytest.approx(1 / 62)
    assert fused[3] == pytest.approx(1 / 63 + 1 / 61)
    assert [row for row, _ in rrf([dense, lexical], k=60)] == [1, 3, 2]


def test_rrf_weights_and_ties_break_by_row():
    assert rrf([[(5, 1.0)], [(4, 1.0)]], k=10) == [(4, 1 / 11), (5, 1 / 11)]
    weighted = rrf([[(5, 1.0)], [(4, 1.0)]], weights=[2.0, 1.0], k=10)
    assert weighted[0] == (5, pytest.approx(2 / 11))


def test_minmax_and_convex_hand_computed():
    assert minmax([(1, 3.0), (2, 1.0), (3, 2.0)]) == {1: 1.0, 2: 0.0, 3: 0.5}
    assert minmax([(7, 4.0)]) == {7: 1.0}
    fused = dict(convex([[(1, 0.9), (2, 0.5)], [(2, 10.0), (3, 0.0)]], weights=[0.75, 0.25]))
    assert fused == {1: pytest.approx(0.75), 2: pytest.approx(0.25), 3: pytest.approx(0.0)}


def test_fuse_rejects_unknown_method():
    with pytest.raises(ValueError, match="'method' parameter of fuse must be 'rrf' or 'convex'"):
        fuse([[(1, 1.0)]], "max")
