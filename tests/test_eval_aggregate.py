"""VBench Quality / Semantic / Total aggregation against hand-computed values (cal_final_score.py)."""

import pytest

from rfvideo.eval import NORMALIZE, aggregate_scores, normalized_score, vbench_script_scores
from rfvideo.eval.aggregate import ALL_DIMENSIONS

# Quality dimensions at the midpoint of [Min, Max] (normalised 0.5), dynamic degree 1.0 (x weight 0.5);
# semantic dimensions at Min except scene at Max.
MID = {
    "subject consistency": 0.5731,
    "background consistency": 0.63075,
    "temporal flickering": 0.81465,
    "motion smoothness": 0.85175,
    "aesthetic quality": 0.5,
    "imaging quality": 0.5,
    "dynamic degree": 1.0,
    "object class": 0.0,
    "multiple objects": 0.0,
    "human action": 0.0,
    "color": 0.0,
    "spatial relationship": 0.0,
    "scene": 0.8222,
    "appearance style": 0.0009,
    "temporal style": 0.0,
    "overall consistency": 0.0,
}


def test_full_row_hand_computed():
    agg = aggregate_scores(MID)
    # Quality = (6 * 0.5 + 0.5) / 6.5 = 7/13; Semantic = 1/9; Total = (4 * 7/13 + 1/9) / 5 = 53/117.
    assert agg.quality == pytest.approx(7 / 13, abs=1e-12)
    assert agg.semantic == pytest.approx(1 / 9, abs=1e-12)
    assert agg.total == pytest.approx(53 / 117, abs=1e-12)
    assert agg.complete and agg.label.startswith("VBench Total")
    assert vbench_script_scores(MID) == pytest.approx((7 / 13, 1 / 9, 53 / 117), abs=1e-12)


def test_extremes_and_no_clipping():
    top = {d: NORMALIZE[d][1] for d in ALL_DIMENSIONS}
    assert aggregate_scores(top).total == pytest.approx(1.0)
    # Above Max is not clipped: 0.364 -> 1, 0.728 -> 2.
    assert normalized_score("overall consistency", 0.728) == pytest.approx(2.0)
    assert normalized_score("dynamic_degree", 0.6) == pytest.approx(0.3)  # weight 0.5


def test_subset_is_labelled_and_differs_from_vbench_script():
    sub = {"subject_consistency": 0.5731, "dynamic_degree": 1.0}
    agg = aggregate_scores(sub)
    assert agg.quality == pytest.approx((0.5 + 0.5) / 1.5)
    assert agg.semantic is None and agg.total == agg.quality
    assert not agg.complete and agg.label == "subset of 2/16: subject_consistency,dynamic_degree"
    # VBench's script treats missing dimensions as raw 0 (negative normalised scores for some).
    q, s, t = vbench_script_scores(sub)
    expected_q = (0.5 + 0.5 - 0.2615 / 0.7385 - 0.6293 / 0.3707 - 0.706 / 0.2915) / 6.5
    assert q == pytest.approx(expected_q, abs=1e-12)
    assert s == pytest.approx((-0.0009 / 0.2846) / 9, abs=1e-12)
    assert t == pytest.approx((4 * q + s) / 5, abs=1e-12)


def test_bad_dimension_names():
    with pytest.raises(ValueError, match="unknown VBench dimension 'beauty'"):
        aggregate_scores({"beauty": 0.5})
    with pytest.raises(ValueError, match="no scores"):
        aggregate_scores({})
