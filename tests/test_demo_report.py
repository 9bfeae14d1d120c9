"""The demo's claims across worlds: the across-world rule on hand-computed per-run differences (a finding
needs twice the across-world std and one sign in every world), the within-world spread, the run range a
single `make demo` is checked against, the results file round trip, and a one-world run making no verdict."""

from __future__ import annotations

import statistics

import pytest

from rfvideo.demo.report import check_claims, claims_from, read_results, render_results

METRICS = ("reward_last", "reward_all", "colour_last", "shape", "motion", "direction", "area")


def _row(**values: float) -> dict[str, float]:
    return {m: values.get(m, 0.5) for m in METRICS}


def _results(motion: dict[int, list[float]], reward: dict[int, list[float]]) -> dict:
    """world -> seed -> rows; ablation motion - stage 2 motion = `motion[w][s] - 1.0`, stage 2 reward -
    stage 1 reward = `reward[w][s] - 0.1`."""
    out: dict = {}
    for w in motion:
        out[str(w)] = {}
        for s, (m, r) in enumerate(zip(motion[w], reward[w], strict=True)):
            out[str(w)][str(s)] = {
                "stage1": _row(reward_last=0.1),
                "stage2_last_frame": _row(reward_last=r, motion=1.0),
                "ablation_all_frames": _row(motion=m),
                "hacking_colour_only": _row(),
            }
    return out


def _claim(claims: list[dict], cid: str) -> dict:
    return next(c for c in claims if c["id"] == cid)


# ablation motion diffs per world (2 seeds): w0 -0.5/-0.6, w1 -0.4/-0.4, w2 -0.6/-0.5
#   world means -0.55, -0.40, -0.55 -> mean -0.5, across-world std 0.0866: a finding in 3 of 3 worlds
# stage-2 reward diffs: w0 +0.30/+0.20, w1 +0.10/+0.10, w2 -0.05/-0.05
#   world means +0.25, +0.10, -0.05: mean +0.1, but one world below 0: not a finding
MOTION = {0: [0.5, 0.4], 1: [0.6, 0.6], 2: [0.4, 0.5]}
REWARD = {0: [0.4, 0.3], 1: [0.2, 0.2], 2: [0.05, 0.05]}


def test_a_finding_needs_twice_the_across_world_std_and_one_sign_in_every_world():
    claims = claims_from(_results(MOTION, REWARD))
    motion = _claim(claims, "ablation_motion")
    assert motion["world_means"] == pytest.approx([-0.55, -0.40, -0.55])
    assert motion["mean"] == pytest.approx(-0.5)
    assert motion["across_std"] == pytest.approx(statistics.stdev([-0.55, -0.40, -0.55]))
    # within a world: mean of the seed-to-seed stds (0.0707, 0, 0.0707)
    assert motion["within_std"] == pytest.approx(2 * statistics.stdev([-0.5, -0.6]) / 3)
    flat = [-0.5, -0.6, -0.4, -0.4, -0.6, -0.5]
    assert motion["range"] == pytest.approx(
        [-0.5 - 2 * statistics.stdev(flat), -0.5 + 2 * statistics.stdev(flat)]
    )
    assert motion["finding"] and motion["same_sign_worlds"] == 3
    assert "lowers motion (px/frame)" in motion["text"] and "3 of 3 worlds" in motion["text"]
    reward = _claim(claims, "stage2_reward")
    assert reward["mean"] == pytest.approx(0.1) and reward["same_sign_worlds"] == 2
    assert abs(reward["mean"]) < 2 * reward["across_std"]
    assert not reward["finding"] and "not a finding" in reward["text"] and "only 2 of 3" in reward["text"]


def test_one_sign_is_not_enough_when_the_worlds_spread_widely():
    # world means +0.05, +0.30, +0.01: every world above 0, but the mean is under 2 across-world stds
    res = _results({0: [0.5], 1: [0.6], 2: [0.4]}, {0: [0.15], 1: [0.4], 2: [0.11]})
    reward = _claim(claims_from(res), "stage2_reward")
    assert reward["same_sign_worlds"] == 3 and not reward["finding"]
    assert "under twice the across-world std" in reward["text"]
    assert reward["within_std"] is None  # one training seed a world: no within-world spread


def test_fewer_than_three_worlds_make_no_verdict():
    res = _results({0: [0.5, 0.6], 1: [0.4, 0.45]}, {0: [0.3, 0.3], 1: [0.2, 0.2]})
    claims = claims_from(res)
    assert not any(c["finding"] for c in claims)
    assert all("no verdict" in c["text"] for c in claims)
    text = render_results(_results({0: [0.5]}, {0: [0.3]}), {}, meta={"eval_seeds": 2})
    body = text.split("<!--")[0]
    # a single run prints its differences, never a distinguishability verdict
    assert "not distinguishable" not in body and "not a finding" not in body and "no verdict" in body
    assert "+0.200" in body  # stage-2 reward - stage-1 reward of the run


def test_results_file_round_trips_with_every_per_world_value(tmp_path):
    results = _results(MOTION, REWARD)
    ref = {"the procedural clips": _row(reward_last=1.0)}
    text = render_results(results, ref, meta={"eval_seeds": 2})
    path = tmp_path / "r.md"
    path.write_text(text)
    back = read_results(path)
    assert back["results"] == results and back["reference"] == ref
    assert "| ablation: world reward on all frames | 1 | 0 |" in text  # every run's row
    assert "-0.550 / -0.400 / -0.550" in text  # every per-world mean of the claim
    assert "| reference: the procedural clips |" in text
    with pytest.raises(ValueError, match="demo-results-json"):
        (tmp_path / "bad.md").write_text("no block")
        read_results(tmp_path / "bad.md")


def test_check_claims_uses_the_run_range_and_the_sign_of_findings():
    stored = {"claims": claims_from(_results(MOTION, REWARD))}
    lo, hi = _claim(stored["claims"], "ablation_motion")["range"]

    def verdict(motion_all: float, reward: float) -> dict[str, bool]:
        run = _results({0: [motion_all]}, {0: [reward]})["0"]["0"]
        return {cid: ok for cid, ok, _ in check_claims(stored, run)}

    assert verdict(0.5, 0.2)["ablation_motion"]  # diff -0.5: the mean
    assert not verdict(1.0 + hi + 0.05, 0.2)["ablation_motion"]  # above the range
    assert not verdict(1.0 + lo - 0.05, 0.2)["ablation_motion"]  # below it
    assert verdict(0.5, 0.2)["stage2_reward"]  # not a finding: inside its range is all it takes
    assert not verdict(0.5, 0.9)["stage2_reward"]  # +0.8: outside what the worlds showed
    lines = [line for _, _, line in check_claims(stored, _results({0: [0.5]}, {0: [0.2]})["0"]["0"])]
    assert all("this run" in x and "committed claim" in x for x in lines)
