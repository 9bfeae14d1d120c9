"""The reward contract: validation, frozen/eval behaviour, frame averaging of image rewards."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rfvideo.rewards.base import FrameReward, Reward, validate_video

_GEN = torch.Generator().manual_seed(0)  # parametrize data is built at collection time: seed it here


def _rand(*shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=_GEN)


def _with_max(video: torch.Tensor, value: float) -> torch.Tensor:
    """`video` with one element set to `value` (so the error message's max is known exactly)."""
    video.view(-1)[0] = value
    return video


class _MeanPixel(FrameReward):
    """Toy image reward with a dropout layer and a weight: w * mean pixel (+ len(prompt) / 100)."""

    name = "mean_pixel"

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(2.0))
        self.drop = nn.Dropout(0.5)
        self.freeze()

    def score_images(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        bonus = torch.tensor([len(p) / 100 for p in prompts])
        return self.drop(self.w * images.mean((1, 2, 3))) + bonus


def _video(b: int = 2, f: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, f, 3, 4, 5, generator=torch.Generator().manual_seed(seed))


def test_frame_reward_averages_frames_with_prompt_per_video() -> None:
    r = _MeanPixel()
    v = _video()
    out = r(v, ["ab", "abcd"])
    expected = 2 * v.mean((2, 3, 4)).mean(1) + torch.tensor([0.02, 0.04])
    torch.testing.assert_close(out, expected)


def test_frozen_and_stays_eval() -> None:
    r = _MeanPixel()
    assert not any(p.requires_grad for p in r.parameters())
    parent = nn.ModuleDict({"r": r}).train()
    assert not r.training and not r.drop.training
    v = _video(seed=1).requires_grad_(True)
    a, b = r(v, ["x", "y"]), r(v, ["x", "y"])
    torch.testing.assert_close(a, b)  # no dropout noise
    a.sum().backward()
    torch.testing.assert_close(v.grad, torch.full_like(v, 2.0 / (3 * 3 * 4 * 5)))
    assert parent.training


@pytest.mark.parametrize(
    ("video", "prompts", "match"),
    [
        (_rand(2, 3, 4, 4), ["a", "b"], r"\(b f 3 H W\)"),
        (_rand(2, 1, 4, 4, 4), ["a", "b"], r"\(b f 3 H W\)"),
        (_rand(2, 1, 3, 4, 4), ["a"], "1 prompts for a batch of 2"),
        (_rand(1, 1, 3, 4, 4), "a", "list of str"),
        (_with_max(_rand(1, 1, 3, 4, 4), 1.95), ["a"], r"\[0, 1\], got min .* max 1\.95"),
        (_rand(1, 1, 3, 4, 4) - 0.5, ["a"], r"\[0, 1\]"),
        ((_rand(1, 1, 3, 4, 4) * 255).to(torch.uint8), ["a"], "floating point"),
        (_rand(1, 0, 3, 4, 4), ["a"], "empty"),
    ],
)
def test_validation_errors(video: torch.Tensor, prompts: list[str], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _MeanPixel()(video, prompts)
    with pytest.raises(ValueError, match=match):
        validate_video(video, prompts)


def test_score_shape_checked() -> None:
    class Bad(Reward):
        name = "bad"

        def score(self, video: torch.Tensor, prompts: list[str]) -> torch.Tensor:
            return video.mean((1, 2, 3))  # (b H) not (b,)

    with pytest.raises(RuntimeError, match="shape"):
        Bad()(_video(), ["a", "b"])


def test_rewards_package_does_not_import_lightning() -> None:
    import subprocess
    import sys

    code = (
        "import sys, rfvideo.rewards\n"
        "sys.exit(int(any(m.startswith(('lightning', 'pytorch_lightning')) for m in sys.modules)))"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
