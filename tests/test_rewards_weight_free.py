"""Weight-free rewards against hand-computed values, a naive VBench loop, and gradient checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rfvideo.rewards.weight_free import ColorfulnessReward, MotionReward, TemporalFlickerReward, colorfulness


def _video(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def test_flicker_hand_computed() -> None:
    # frames 0.2 -> 0.4 -> 0.3 everywhere: MAE in 0..255 = (51 + 25.5) / 2 = 38.25
    v = torch.tensor([0.2, 0.4, 0.3]).view(1, 3, 1, 1, 1).expand(1, 3, 3, 2, 2).clone()
    out = TemporalFlickerReward()(v, ["p"])
    torch.testing.assert_close(out, torch.tensor([(255 - 38.25) / 255]))


def test_flicker_matches_vbench_loop_on_uint8() -> None:
    """VBench: per consecutive pair mean |a - b| over the uint8 frame (cv2.absdiff), mean over pairs."""
    v8 = (_video((2, 5, 3, 6, 7), 0) * 255).round().to(torch.uint8)
    ref = []
    for vid in v8.numpy().transpose(0, 1, 3, 4, 2):  # (f h w c) as VBench reads it
        maes = [
            np.mean(np.abs(vid[i].astype(np.int32) - vid[i + 1].astype(np.int32)))
            for i in range(len(vid) - 1)
        ]
        ref.append((255.0 - np.mean(maes)) / 255.0)
    out = TemporalFlickerReward()(v8.float() / 255, ["a", "b"])
    torch.testing.assert_close(out, torch.tensor(ref, dtype=torch.float32), atol=1e-5, rtol=0)


def test_flicker_needs_two_frames_and_has_gradient() -> None:
    with pytest.raises(ValueError, match="at least 2 frames, got 1"):
        TemporalFlickerReward()(_video((1, 1, 3, 4, 4), 1), ["a"])
    v = _video((1, 3, 3, 4, 4), 2).requires_grad_(True)
    TemporalFlickerReward()(v, ["a"]).sum().backward()
    assert v.grad.abs().sum() > 0


@pytest.mark.parametrize(("shift", "down"), [(1, 1), (2, 1), (2, 2), (4, 4)])
def test_motion_exact_on_translated_ramp(shift: int, down: int) -> None:
    """I(x) = a x + c translated by `shift` pixels: I_t = -a shift, |grad I| = a -> speed = shift."""
    w, h, a = 48, 16, 0.015
    x = torch.arange(w, dtype=torch.float32)
    f0 = (0.1 + a * x).expand(h, w)
    f1 = (0.1 + a * (x - shift)).clamp_min(0).expand(h, w)
    v = torch.stack([f0, f1]).view(1, 2, 1, h, w).expand(1, 2, 3, h, w).clone()
    # Clamping only touches the first `shift` columns; crop them away so the ramp is exactly linear.
    v = v[..., 8:]
    out = MotionReward(downsample=down)(v, ["p"])
    torch.testing.assert_close(out, torch.tensor([float(shift)]), atol=1e-3, rtol=1e-3)


def test_motion_zero_for_static_grows_with_shift_and_differentiable() -> None:
    base = _video((1, 1, 3, 40, 40), 3)
    base = torch.nn.functional.avg_pool2d(base[0], 5, stride=1, padding=2)[None]  # smooth texture
    static = base.expand(1, 3, 3, 40, 40).clone()
    r = MotionReward(downsample=2)
    assert r(static, ["p"]).item() < 1e-4
    moving = [torch.cat([base, base.roll(s, -1)], 1) for s in (1, 2)]
    s1, s2 = (r(m, ["p"]).item() for m in moving)
    assert 0 < s1 < s2
    v = moving[0].clone().requires_grad_(True)
    r(v, ["p"]).sum().backward()
    assert torch.isfinite(v.grad).all() and v.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="downsample"):
        MotionReward(downsample=0)
    with pytest.raises(ValueError, match="too small"):
        MotionReward(downsample=16)(static, ["p"])


def test_colorfulness_hand_computed() -> None:
    # Two pixels, pure red (255, 0, 0) and grey (0.5 -> 127.5): rg = [255, 0], yb = [127.5, 0].
    img = torch.tensor([[1.0, 0.5], [0.0, 0.5], [0.0, 0.5]]).view(1, 3, 1, 2)
    std_rg, std_yb, mu_rg, mu_yb = 127.5, 63.75, 127.5, 63.75
    expected = np.sqrt(std_rg**2 + std_yb**2) + 0.3 * np.sqrt(mu_rg**2 + mu_yb**2)
    torch.testing.assert_close(colorfulness(img), torch.tensor([expected], dtype=torch.float32))
    grey = torch.full((1, 3, 4, 4), 0.3)
    assert colorfulness(grey).item() < 0.01


def test_colorfulness_matches_numpy_and_frame_mean() -> None:
    v = _video((2, 3, 3, 5, 6), 4)
    out = ColorfulnessReward()(v.requires_grad_(True), ["a", "b"])
    ref = []
    for vid in v.detach().numpy() * 255:
        per = []
        for fr in vid:
            rg, yb = fr[0] - fr[1], 0.5 * (fr[0] + fr[1]) - fr[2]
            per.append(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))
        ref.append(np.mean(per))
    torch.testing.assert_close(out, torch.tensor(ref, dtype=torch.float32), atol=1e-3, rtol=1e-5)
    out.sum().backward()
    assert torch.isfinite(v.grad).all() and v.grad.abs().sum() > 0
