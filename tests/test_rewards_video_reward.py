"""VideoReward interface: frame sampling, smart resize, head combination, gradients, on a tiny stand-in model.

Shapes: b batch, f input frames, t sampled frames, k heads.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rfvideo.rewards.ensemble import RewardEnsemble
from rfvideo.rewards.frames import FrameSelector
from rfvideo.rewards.preprocess import CLIP_MEAN, CLIP_STD
from rfvideo.rewards.video_reward import (
    CallableVideoReward,
    FrameSampling,
    VideoPreprocess,
    smart_resize_size,
)

HEADS = ("VQ", "MQ", "TA")


class TinyVideoModel(nn.Module):
    """Stand-in for a VLM video reward: per-frame features -> VQ, temporal differences -> MQ, prompt -> TA."""

    def __init__(self, gen: torch.Generator) -> None:
        super().__init__()
        self.proj = nn.Parameter(torch.randn(3, 8, generator=gen))
        self.text = nn.Parameter(torch.randn(64, 8, generator=gen))

    def forward(self, clip: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        feats = torch.einsum("btchw,cd->btd", clip, self.proj) / clip[0, 0, 0].numel()  # (b t d)
        vq = feats.pow(2).sum(-1).mean(1)
        mq = -(clip[:, 1:] - clip[:, :-1]).abs().mean((1, 2, 3, 4)) if clip.shape[1] > 1 else vq * 0
        emb = torch.stack([self.text[sum(map(ord, p)) % 64] for p in prompts])  # (b d)
        ta = (feats.mean(1) * emb).sum(-1)
        return torch.stack([vq, mq, ta], dim=1)  # (b k)


def test_frame_sampling_hand_values() -> None:
    # 81 frames at 16 fps to 2 fps: every 8th frame, ceil(81 / 8) = 11 frames.
    s = FrameSampling(source_fps=16, target_fps=2)
    assert s.indices(81).tolist() == list(range(0, 81, 8))
    # Qwen2-VL packs frame pairs: pad to 12 by repeating the last one.
    assert FrameSampling(source_fps=16, target_fps=2, multiple_of=2).indices(81).tolist()[-2:] == [80, 80]
    # Exactly 4 of those 11: linspace(0, 10, 4) = 0, 3.33, 6.67, 10 -> 0, 3, 7, 10 -> frames 0, 24, 56, 80.
    assert FrameSampling(source_fps=16, target_fps=2, num_frames=4).indices(81).tolist() == [0, 24, 56, 80]
    assert FrameSampling(max_frames=3).indices(5).tolist() == [0, 2, 4]
    assert FrameSampling(max_frames=8).indices(5).tolist() == [0, 1, 2, 3, 4]
    # Fewer frames than asked: uniform repeats.
    assert FrameSampling(num_frames=4).indices(2).tolist() == [0, 0, 1, 1]
    # qwen_vl_utils rule: 81 / 16 * 2 = 10.1 -> floor to pairs = 10 frames spread over 0..80.
    q = FrameSampling(source_fps=16, target_fps=2, uniform=True, min_frames=4, multiple_of=2)
    assert q.indices(81).tolist() == torch.linspace(0, 80, 10).round().long().tolist()
    # Short clip: 9 / 16 * 2 = 1.1 < min_frames 4 -> 4 frames.
    assert q.indices(9).tolist() == [0, 3, 5, 8]
    # 24 fps to 10 fps: timestamps 0, 2.4, 4.8 ... floored.
    assert FrameSampling(source_fps=24, target_fps=10).indices(10).tolist() == [0, 2, 4, 7, 9]


def test_smart_resize_hand_values() -> None:
    # 480x832 rounds to 476x840 (area 399840 > 448^2); beta = sqrt(480*832 / 200704) = 1.4106,
    # floor(480 / beta / 28) * 28 = 336, floor(832 / beta / 28) * 28 = 588.
    assert smart_resize_size(480, 832) == (336, 588)
    # Small input is scaled up to min_pixels: 20x20 -> ceil(20 * sqrt(3136 / 400) / 28) * 28 = 56.
    assert smart_resize_size(20, 20) == (56, 56)
    assert smart_resize_size(56, 84) == (56, 84)
    assert smart_resize_size(70, 70) == (56, 56)  # 70 / 28 = 2.5 rounds to even, as upstream


def test_smart_resize_matches_transformers() -> None:
    qwen = pytest.importorskip("transformers.models.qwen2_vl.image_processing_pil_qwen2_vl")
    for h, w in [(480, 832), (81, 97), (720, 1280), (33, 500), (28, 28), (1000, 30), (450, 451)]:
        for mn, mx in [(3136, 448 * 448), (3136, 12845056), (100 * 28 * 28, 200 * 28 * 28)]:
            want = qwen.smart_resize(h, w, factor=28, min_pixels=mn, max_pixels=mx)
            assert smart_resize_size(h, w, min_pixels=mn, max_pixels=mx) == tuple(want), (h, w, mn, mx)


def _reward(gen: torch.Generator, **kwargs) -> CallableVideoReward:
    defaults = dict(
        heads=HEADS,
        head_weights={"VQ": 0.5, "MQ": 2.0, "TA": 1.0},
        head_norm={"TA": (0.3, 2.0)},
        sampling=FrameSampling(source_fps=16, target_fps=4, multiple_of=2),
        preprocess=VideoPreprocess(factor=4, min_pixels=16, max_pixels=12 * 16),
    )
    defaults.update(kwargs)
    return CallableVideoReward(TinyVideoModel(gen), **defaults)


def test_matches_naive_pipeline() -> None:
    gen = torch.Generator().manual_seed(0)
    reward = _reward(gen)
    video = torch.rand(2, 9, 3, 11, 15, generator=gen)
    prompts = ["a cat", "a dog running"]
    got = reward(video, prompts)
    # Naive: 16 -> 4 fps keeps frames 0, 4, 8, padded to 4 frames; 11x15 -> rounded 12x16 = 192 <= 192.
    frames = video[:, [0, 4, 8, 8]]
    x = F.interpolate(
        frames.flatten(0, 1), size=(12, 16), mode="bicubic", align_corners=False, antialias=True
    )
    x = (x - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    raw = reward.fn(x.view(2, 4, 3, 12, 16), prompts)
    want = 0.5 * raw[:, 0] + 2.0 * raw[:, 1] + (raw[:, 2] - 0.3) / 2.0
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
    heads = reward.head_scores(video, prompts)
    assert set(heads) == set(HEADS)
    torch.testing.assert_close(heads["TA"], (raw[:, 2] - 0.3) / 2.0)
    assert reward.is_video and reward.name == "video_reward"


def test_grad_reaches_only_sampled_frames() -> None:
    gen = torch.Generator().manual_seed(1)
    reward = _reward(gen)
    video = torch.rand(1, 9, 3, 10, 14, generator=gen, requires_grad=True)
    reward(video, ["a cat"]).sum().backward()
    per_frame = video.grad.abs().sum((0, 2, 3, 4))
    assert (per_frame[[0, 4, 8]] > 0).all()
    assert per_frame[[1, 2, 3, 5, 6, 7]].eq(0).all()
    assert reward.frames_read(9) == [0, 4, 8]
    assert not any(p.requires_grad for p in reward.parameters())


def test_gradcheck_float64() -> None:
    gen = torch.Generator().manual_seed(2)
    reward = _reward(gen).to(torch.float64)
    video = torch.rand(1, 5, 3, 6, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    # `score` is the float64 math (forward adds validation and the contract's float32 cast).
    assert torch.autograd.gradcheck(lambda v: reward.score(v, ["a cat"]), (video,), atol=1e-6, fast_mode=True)


def test_single_head_and_dict_outputs() -> None:
    gen = torch.Generator().manual_seed(3)
    model = TinyVideoModel(gen)
    video = torch.rand(2, 4, 3, 8, 8, generator=gen)
    single = CallableVideoReward(lambda c, p: model(c, p)[:, 2], preprocess=VideoPreprocess(size=(8, 8)))
    as_dict = CallableVideoReward(
        lambda c, p: {h: model(c, p)[:, i] for i, h in enumerate(HEADS)},
        heads=HEADS,
        head_weights={"TA": 1.0},
        preprocess=VideoPreprocess(size=(8, 8)),
    )
    torch.testing.assert_close(single(video, ["x", "y"]), as_dict(video, ["x", "y"]))


def test_in_ensemble_sees_whole_clip() -> None:
    gen = torch.Generator().manual_seed(4)
    seen: list[int] = []

    def fn(clip: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        seen.append(clip.shape[1])
        return clip.mean((1, 2, 3, 4))

    reward = CallableVideoReward(fn, preprocess=VideoPreprocess(size=(8, 8)), name="tiny_video")
    ens = RewardEnsemble({"tiny_video": reward}, {"tiny_video": 1.0}, FrameSelector(policy="last"))
    video = torch.rand(1, 6, 3, 8, 8, generator=gen)
    ens(video, ["a cat"])
    assert seen == [6]  # the last-frame selector does not apply to video rewards


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(heads=()), "heads"),
        (dict(heads=("a", "a")), "heads"),
        (dict(heads=("a",), head_weights={"b": 1.0}), "unknown heads"),
        (dict(heads=("a",), head_norm={"a": (0.0, 0.0)}), "std <= 0"),
    ],
)
def test_bad_config(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        CallableVideoReward(lambda c, p: c.mean((1, 2, 3, 4)), **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(source_fps=16), "go together"),
        (dict(source_fps=16, target_fps=0), "target_fps"),
        (dict(num_frames=0), "num_frames"),
        (dict(multiple_of=0), "multiple_of"),
        (dict(min_frames=0), "min_frames"),
    ],
)
def test_bad_sampling(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        FrameSampling(**kwargs)


def test_bad_inputs_and_outputs() -> None:
    gen = torch.Generator().manual_seed(5)
    video = torch.rand(2, 4, 3, 8, 8, generator=gen)
    wrong = CallableVideoReward(
        lambda c, p: c.mean((2, 3, 4)), heads=HEADS, preprocess=VideoPreprocess(size=(8, 8))
    )
    with pytest.raises(ValueError, match=r"returned shape \(2, 4\)"):
        wrong(video, ["x", "y"])
    reward = _reward(gen)
    with pytest.raises(ValueError, match="b f 3 H W"):
        reward(video[:, 0], ["x", "y"])
    with pytest.raises(ValueError, match="1 prompts"):
        reward(video, ["x"])
    with pytest.raises(ValueError, match="callable"):
        CallableVideoReward(3)
    with pytest.raises(ValueError, match="mode"):
        VideoPreprocess(mode="area")
