"""RewardEnsemble: weights, frame routing (planned frames), normalisation (hand-computed), the reward
contract, NaN handling (and its collective calls), gradients."""

from __future__ import annotations

import pytest
import torch

from rfvideo.rewards.base import FrameReward, Reward
from rfvideo.rewards.ensemble import RewardEnsemble
from rfvideo.rewards.frames import FramePlan, FrameSelector
from rfvideo.rewards.weight_free import TemporalFlickerReward


class _FrameMean(FrameReward):
    """Image reward: mean pixel of the frame; records which frames it saw (by their constant value)."""

    name = "frame_mean"

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def score_images(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        self.seen.append(images.detach()[:, 0, 0, 0])
        return images.mean((1, 2, 3))


class _Const(Reward):
    name = "const"
    is_video = True

    def __init__(self, values: list[float]) -> None:
        super().__init__()
        self.values = values

    def score(self, video: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        return torch.tensor(self.values) + 0 * video.sum((1, 2, 3, 4))


def _indexed_video(b: int = 2, f: int = 9) -> torch.Tensor:
    """Frame i of video j is the constant (10 j + i) / 100: what a reward saw identifies the frame."""
    vals = torch.tensor([[(10 * j + i) / 100 for i in range(f)] for j in range(b)])
    return vals.view(b, f, 1, 1, 1).expand(b, f, 3, 4, 4).clone()


@pytest.mark.parametrize(
    ("frames", "expected"),
    [
        (FrameSelector(policy="last"), [8]),
        (FrameSelector(policy="last_chunk", k=4), [5, 6, 7, 8]),
        (FrameSelector(policy="strided", k=4), [0, 4, 8]),
        (FrameSelector(policy="all"), list(range(9))),
    ],
)
def test_image_rewards_see_selected_frames_video_rewards_whole_clip(
    frames: FrameSelector, expected: list[int]
):
    img, flick = _FrameMean(), TemporalFlickerReward()
    ens = RewardEnsemble({"img": img, "flicker": flick}, {"img": 1.0, "flicker": 0.0}, frames)
    v = _indexed_video()
    out = ens(v, ["a", "b"])
    seen = torch.cat(img.seen)
    want = torch.tensor([(10 * j + i) / 100 for j in range(2) for i in expected])
    torch.testing.assert_close(seen, want)
    torch.testing.assert_close(out.terms["img"], want.view(2, -1).mean(1))
    # flicker saw all 9 frames: consecutive difference 0.01 everywhere
    torch.testing.assert_close(out.terms["flicker"], torch.full((2,), 1 - 0.01))


def test_random_policy_scores_exactly_the_planned_frames() -> None:
    img = _FrameMean()
    ens = RewardEnsemble({"img": img}, {"img": 1.0}, FrameSelector(policy="random", k=3))
    v = _indexed_video(1, 20)
    plan = ens.plan_frames(20, torch.Generator().manual_seed(5))
    expected = FrameSelector(policy="random", k=3).scored_frames(20, torch.Generator().manual_seed(5))
    assert plan.selected == expected and plan.decoded == list(range(expected[0], 20))
    tail = v[:, plan.decoded]  # what a trainer decodes: the tail from the first selected frame
    ens(tail, ["a"], plan=plan)
    torch.testing.assert_close(img.seen[0], torch.tensor([i / 100 for i in expected]))
    # drawing again inside the ensemble would score other frames: refused
    with pytest.raises(ValueError, match="random frame policy needs the frames drawn"):
        ens(tail, ["a"])
    with pytest.raises(ValueError, match=f"the plan decodes {len(plan.decoded)} frames but the video has"):
        ens(tail[:, 1:], ["a"], plan=plan)


def test_video_reward_plan_decodes_whole_clip_and_image_terms_keep_their_policy() -> None:
    img, flick = _FrameMean(), TemporalFlickerReward()
    ens = RewardEnsemble(
        {"img": img, "fl": flick}, {"img": 1.0, "fl": 1.0}, FrameSelector(policy="random", k=2)
    )
    plan = ens.plan_frames(9, torch.Generator().manual_seed(1))
    assert plan.decoded == list(range(9)) and len(plan.selected) == 2
    v = _indexed_video(2, 9)
    out = ens(v, ["a", "b"], plan=plan)
    want = torch.tensor([(10 * j + i) / 100 for j in range(2) for i in plan.selected])
    torch.testing.assert_close(torch.cat(img.seen), want)
    torch.testing.assert_close(out.terms["fl"], torch.full((2,), 1 - 0.01))
    with pytest.raises(ValueError, match="need the whole clip"):
        ens(v[:, 3:], ["a", "b"], plan=FramePlan(decoded=list(range(3, 9)), selected=[7, 8]))


class _Raw(torch.nn.Module):
    """Not a `Reward` subclass (no output check of its own): returns whatever it is given."""

    def __init__(self, out: object) -> None:
        super().__init__()
        self.out = out

    def forward(self, video: torch.Tensor, prompts: list[str]) -> object:
        return self.out


@pytest.mark.parametrize(
    ("out", "match"),
    [
        (torch.ones(2, 1), r"'bad' returned shape \(2, 1\); the contract is \(b,\) = \(2,\)"),
        (torch.ones(3), r"'bad' returned shape \(3,\)"),
        (torch.ones(2, dtype=torch.long), r"'bad' returned dtype torch.int64"),
        ([1.0, 2.0], r"'bad' returned list"),
    ],
)
def test_reward_contract_is_checked_at_the_ensemble(out: object, match: str) -> None:
    ens = RewardEnsemble({"good": _Const([1.0, 2.0]), "bad": _Raw(out)}, {"good": 1.0, "bad": 1.0})
    with pytest.raises(ValueError, match=match):
        ens(_indexed_video(), ["x", "y"])


def test_weights_and_fixed_normalisation_hand_computed() -> None:
    ens = RewardEnsemble(
        {"a": _Const([1.0, 3.0]), "b": _Const([10.0, 20.0])},
        {"a": 0.5, "b": -2.0},
        normalize={"b": "fixed"},
        fixed_stats={"b": (15.0, 5.0)},
    )
    out = ens(_indexed_video(), ["x", "y"])
    torch.testing.assert_close(out.normalized["b"], torch.tensor([-1.0, 1.0]))
    torch.testing.assert_close(out.terms["b"], torch.tensor([10.0, 20.0]))
    torch.testing.assert_close(out.total, torch.tensor([0.5 * 1 - 2 * -1, 0.5 * 3 - 2 * 1]))


def test_running_normalisation_hand_computed_and_checkpointed() -> None:
    term = _Const([1.0, 3.0])
    ens = RewardEnsemble({"r": term}, {"r": 1.0}, normalize={"r": "running"}, momentum=0.9, eps=0.0).train()
    v = _indexed_video()
    out = ens(v, ["x", "y"])
    # first batch: m = 2, v = mean((x - 2)^2) = 1
    torch.testing.assert_close(out.normalized["r"], torch.tensor([-1.0, 1.0]))
    term.values = [5.0, 7.0]
    out = ens(v, ["x", "y"])
    # m = 0.9 * 2 + 0.1 * 6 = 2.4; batch var about 2.4: ((2.6^2 + 4.6^2) / 2) = 13.96; v = 0.9 + 1.396 = 2.296
    m, var = 2.4, 0.9 * 1 + 0.1 * 13.96
    torch.testing.assert_close(out.normalized["r"], (torch.tensor([5.0, 7.0]) - m) / var**0.5)
    sd = ens.state_dict()
    torch.testing.assert_close(sd["running_mean_r"], torch.tensor(m))
    torch.testing.assert_close(sd["running_var_r"], torch.tensor(var))
    assert int(sd["running_count_r"]) == 2
    # eval: statistics frozen
    ens.eval()
    term.values = [100.0, 200.0]
    ens(v, ["x", "y"])
    torch.testing.assert_close(ens.running_mean_r, torch.tensor(m))
    # restore into a fresh ensemble
    fresh = RewardEnsemble({"r": _Const([0.0, 0.0])}, {"r": 1.0}, normalize={"r": "running"})
    fresh.load_state_dict(sd)
    torch.testing.assert_close(fresh.running_var_r, torch.tensor(var))


def test_nonfinite_raise_or_report() -> None:
    terms = {"good": _Const([1.0, 2.0]), "bad": _Const([0.5, float("nan")])}
    ens = RewardEnsemble(terms, {"good": 1.0, "bad": 1.0})
    with pytest.raises(FloatingPointError, match="'bad'.*nan"):
        ens(_indexed_video(), ["x", "y"])  # unset, and the caller does not say: raise
    out = ens(_indexed_video(), ["x", "y"], on_nonfinite="report")  # unset: the caller decides
    assert out.nonfinite == ["bad"] and torch.isnan(out.total[1]) and out.total[0] == 1.5
    strict = RewardEnsemble(terms, {"good": 1.0, "bad": 1.0}, on_nonfinite="raise")
    with pytest.raises(FloatingPointError, match="'bad'"):
        strict(_indexed_video(), ["x", "y"], on_nonfinite="report")  # the user's explicit raise wins
    ens = RewardEnsemble(
        terms, {"good": 1.0, "bad": 1.0}, on_nonfinite="report", normalize={"bad": "running"}
    )
    out = ens.train()(_indexed_video(), ["x", "y"])
    assert out.nonfinite == ["bad"]
    assert torch.isnan(out.total).all()
    assert int(ens.running_count_bad) == 0  # NaN never entered the statistics


def test_running_statistics_make_the_same_collective_calls_for_a_nonfinite_batch(monkeypatch) -> None:
    """Under DDP one rank's NaN must not skip the all-reduce the other ranks make (that would hang), and the
    flag it contributes makes every rank skip the update."""
    import torch.distributed as dist

    calls: list[torch.Tensor] = []
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "all_reduce", lambda t, *a, **k: calls.append(t.clone()))
    term = _Const([1.0, 3.0])
    ens = RewardEnsemble({"r": term}, {"r": 1.0}, normalize={"r": "running"}, on_nonfinite="report").train()
    ens(_indexed_video(), ["x", "y"])
    assert len(calls) == 1 and int(ens.running_count_r) == 1
    term.values = [float("nan"), 2.0]
    out = ens(_indexed_video(), ["x", "y"])
    assert len(calls) == 2 and float(calls[1][3]) == 1.0  # joined the collective, flagged non-finite
    assert int(ens.running_count_r) == 1 and float(ens.running_mean_r) == 2.0  # no update
    assert out.nonfinite == ["r"] and torch.isnan(out.total).all()


def test_gradient_flows_to_video_through_selected_frames_only() -> None:
    img, flick = _FrameMean(), TemporalFlickerReward()
    ens = RewardEnsemble(
        {"img": img, "flicker": flick}, {"img": 2.0, "flicker": 0.0}, FrameSelector(policy="last")
    )
    v = torch.rand(2, 5, 3, 4, 4, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    ens(v, ["a", "b"]).total.sum().backward()
    assert torch.all(v.grad[:, :-1] == 0)
    torch.testing.assert_close(v.grad[:, -1], torch.full((2, 3, 4, 4), 2.0 / 48))
    ens2 = RewardEnsemble({"flicker": flick}, {"flicker": 1.0})
    v.grad = None
    ens2(v, ["a", "b"]).total.sum().backward()
    assert v.grad[:, 0].abs().sum() > 0


def test_a_plan_of_the_tail_scores_what_the_whole_clip_scores() -> None:
    img = _FrameMean()
    ens = RewardEnsemble({"img": img}, {"img": 1.0}, FrameSelector(policy="last_chunk", k=2))
    plan = ens.plan_frames(9)
    assert plan == FramePlan(decoded=[7, 8], selected=[7, 8]) and plan.scored_positions == [0, 1]
    full = _indexed_video()
    out = ens(full[:, [7, 8]], ["a", "b"], plan=plan)
    torch.testing.assert_close(out.terms["img"], ens(full, ["a", "b"]).terms["img"])
    with pytest.raises(ValueError, match="the plan decodes 3 frames but the video has 2"):
        ens(full[:, [7, 8]], ["a", "b"], plan=FramePlan(decoded=[6, 7, 8], selected=[8]))
    ens_v = RewardEnsemble({"img": img, "fl": TemporalFlickerReward()}, {"img": 1.0, "fl": 1.0})
    assert ens_v.plan_frames(9) == FramePlan(decoded=list(range(9)), selected=[8])


@pytest.mark.parametrize(
    "decoded,selected,match",
    [
        ([], [1], "contiguous ascending run"),
        ([3, 5, 6], [6], "contiguous ascending run"),
        ([-1, 0], [0], "contiguous ascending run"),
        ([4, 5, 6], [], "ascending, distinct and not empty"),
        ([4, 5, 6], [6, 5], "ascending, distinct and not empty"),
        ([4, 5, 6], [5, 5], "ascending, distinct and not empty"),
        ([4, 5, 6], [3, 6], r"selected frames \[3, 6\] are not all in the decoded frames \[4, 5, 6\]"),
        ([4, 5, 6], [7], "are not all in the decoded frames"),
    ],
)
def test_frame_plan_is_validated_once_where_it_is_made(decoded, selected, match) -> None:
    with pytest.raises(ValueError, match=match):
        FramePlan(decoded=decoded, selected=selected)


def test_bad_configuration() -> None:
    t = {"a": _Const([1.0])}
    with pytest.raises(ValueError, match="weights keys"):
        RewardEnsemble(t, {"b": 1.0})
    with pytest.raises(ValueError, match="normalize\\['a'\\] must be"):
        RewardEnsemble(t, {"a": 1.0}, normalize={"a": "zscore"})
    with pytest.raises(ValueError, match="fixed_stats keys"):
        RewardEnsemble(t, {"a": 1.0}, normalize={"a": "fixed"})
    with pytest.raises(ValueError, match="std > 0"):
        RewardEnsemble(t, {"a": 1.0}, normalize={"a": "fixed"}, fixed_stats={"a": (0.0, 0.0)})
    with pytest.raises(ValueError, match="momentum"):
        RewardEnsemble(t, {"a": 1.0}, momentum=1.0)
    with pytest.raises(ValueError, match="empty"):
        RewardEnsemble({}, {})
