"""The demo's claims: the 2-std rule on hand-computed per-seed differences, the results file round trip,
and the check of a run against stored claims (agrees, wrong direction, wrong size)."""

from __future__ import annotations

import statistics

import pytest

from rfvideo.demo.report import check_claims, claims_from, read_results, render_results

METRICS = ("reward_last", "reward_all", "colour_last", "shape", "motion", "direction", "area")
ROWS = ("stage1", "stage2_last_frame", "ablation_all_frames", "hacking_colour_only")


def _row(**values: float) -> dict[str, float]:
    return {m: values.get(m, 0.5) for m in METRICS}


def _results(motion_all: list[float], reward_s2: list[float]) -> dict[str, dict[str, dict[str, float]]]:
    out = {}
    for i, (m, r) in enumerate(zip(motion_all, reward_s2, strict=True)):
        out[str(i)] = {
            "stage1": _row(reward_last=0.1),
            "stage2_last_frame": _row(reward_last=r, motion=1.0),
            "ablation_all_frames": _row(motion=m),
            "hacking_colour_only": _row(),
        }
    return out


def _claim(claims: list[dict], cid: str) -> dict:
    return next(c for c in claims if c["id"] == cid)


def test_claims_follow_the_two_std_rule_on_hand_computed_differences():
    # ablation motion diffs: -0.5, -0.4, -0.6 -> mean -0.5, std 0.1: a finding, 3 of 3 seeds
    # stage-2 reward diffs: +0.2, -0.1, +0.05 -> mean 0.05, std 0.15: not distinguishable
    claims = claims_from(_results([0.5, 0.6, 0.4], [0.3, 0.0, 0.15]))
    motion = _claim(claims, "ablation_motion")
    assert motion["diffs"] == pytest.approx([-0.5, -0.4, -0.6])
    assert motion["mean"] == pytest.approx(-0.5) and motion["std"] == pytest.approx(0.1)
    assert motion["finding"] and motion["same_sign"] == 3
    assert "lowers motion (px/frame)" in motion["text"] and "3 of 3 seeds" in motion["text"]
    reward = _claim(claims, "stage2_reward")
    assert reward["mean"] == pytest.approx(0.05)
    assert reward["std"] == pytest.approx(statistics.stdev([0.2, -0.1, 0.05]))
    assert not reward["finding"] and "not distinguishable" in reward["text"]
    assert "2 of 3 seeds above 0" in reward["text"]
    # a single seed never makes a finding (no seed-to-seed std to compare with)
    assert not any(c["finding"] for c in claims_from(_results([0.5], [0.3])))


def test_results_file_round_trips_and_shows_every_per_seed_value(tmp_path):
    results = _results([0.5, 0.6, 0.4], [0.3, 0.0, 0.15])
    ref = {"the procedural clips": _row(reward_last=1.0)}
    text = render_results(results, ref, meta={"eval_seeds": 2})
    path = tmp_path / "r.md"
    path.write_text(text)
    back = read_results(path)
    assert back["results"] == results and back["reference"] == ref
    assert "0.500 / 0.600 / 0.400" in text  # every per-seed value of the ablation's motion
    assert "| reference: the procedural clips |" in text
    with pytest.raises(ValueError, match="demo-results-json"):
        (tmp_path / "bad.md").write_text("no block")
        read_results(tmp_path / "bad.md")


def test_check_claims_agrees_in_size_and_direction_only():
    stored = {"claims": claims_from(_results([0.5, 0.6, 0.4], [0.3, 0.0, 0.15]))}

    def verdict(motion_all: float, reward: float) -> dict[str, bool]:
        run = _results([motion_all], [reward])["0"]
        return {cid: ok for cid, ok, _ in check_claims(stored, run)}

    assert verdict(0.45, 0.2)["ablation_motion"]  # diff -0.55: inside -0.5 ± 0.2
    assert not verdict(0.05, 0.2)["ablation_motion"]  # diff -0.95: right direction, too large
    assert not verdict(1.2, 0.2)["ablation_motion"]  # diff +0.2: wrong direction
    assert verdict(0.45, 0.2)["stage2_reward"]  # not distinguishable: +0.1 within 0.05 + 0.3
    assert not verdict(0.45, 0.9)["stage2_reward"]  # +0.8: outside what the seeds showed
