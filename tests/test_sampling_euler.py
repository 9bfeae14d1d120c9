"""euler_sample_cfg vs diffusers' FlowMatchEulerDiscreteScheduler driving the same WanTransformer3DModel."""

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, WanTransformer3DModel

from helpers import randomize_, tiny_wan_config
from rfvideo.sampling import euler_sample_cfg, euler_sigmas, shift_sigma


@pytest.fixture(scope="module")
def wan():
    model = WanTransformer3DModel(**tiny_wan_config()).eval()
    return randomize_(model, torch.Generator().manual_seed(0))


def _inputs(seed=0, b=2):
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(b, 4, 3, 8, 8, generator=g)
    cond = torch.randn(b, 5, 24, generator=g)
    uncond = torch.randn(b, 5, 24, generator=g)
    return noise, cond, uncond


def _unshift(sp, k=5.0):
    # Inverse of s' = k s / (1 + (k-1) s): s = s' / (k - (k-1) s').
    return sp / (k - (k - 1) * sp)


@torch.no_grad()
def test_euler_cfg_matches_diffusers_scheduler(wan):
    noise, cond, uncond = _inputs()
    model_fn = lambda x, t, c: wan(x, t, c, return_dict=False)[0]
    g_scale, n = 5.0, 6
    # 937.5 (unshifted 0.75) is not on the 6-step grid: it is inserted, diffusers gets the same grid.
    out = euler_sample_cfg(
        model_fn, noise, cond, uncond, num_steps=n, shift=5.0, guidance_scale=g_scale,
        return_timesteps=(1000.0, 937.5, 0.0),
    )  # fmt: skip
    grid = euler_sigmas(n, shift=5.0, include_timesteps=(1000.0, 937.5, 0.0))
    assert len(grid) == n + 2  # n grid levels + 1 inserted + the end 0

    ref = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=5.0)
    ref.set_timesteps(sigmas=_unshift(grid[:-1]).tolist())
    torch.testing.assert_close(ref.sigmas.double(), grid, atol=1e-6, rtol=0)
    x, states = noise.clone(), {}
    for t in ref.timesteps:
        states[round(float(t), 1)] = x
        tb = t.expand(x.shape[0])
        v_c, v_u = model_fn(x, tb, cond), model_fn(x, tb, uncond)
        x = ref.step(v_u + g_scale * (v_c - v_u), t, x, return_dict=False)[0]

    torch.testing.assert_close(out.latents, x, atol=1e-4, rtol=1e-4)
    assert out.trajectory.shape == (2, 3, 4, 3, 8, 8)
    torch.testing.assert_close(out.trajectory[:, 0], noise)
    torch.testing.assert_close(out.trajectory[:, 1], states[937.5], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out.trajectory[:, 2], out.latents)
    assert out.timesteps.tolist() == [1000.0, 937.5, 0.0]
    # Guidance matters: a different scale gives a different endpoint.
    other = euler_sample_cfg(model_fn, noise, cond, uncond, num_steps=n, guidance_scale=1.0)
    assert not torch.allclose(other.latents, out.latents, atol=1e-3)


def test_default_return_timesteps_are_on_the_trajectory():
    # The default grid of 50 steps plus the 4 few-step timesteps: every requested state is a grid state.
    grid = euler_sigmas(50, shift=5.0, include_timesteps=(1000.0, 937.5, 833.33, 625.0, 0.0))
    for t in (1.0, 0.9375, 0.83333, 0.625, 0.0):
        assert (grid - t).abs().min() < 1e-9
    assert torch.all(grid[1:] < grid[:-1])
    # 50 uniform levels + 0.9375, 0.83333 and 0.625 (off the uniform grid) + the end 0.
    assert len(grid) == 54
    assert (grid - shift_sigma(0.5, 5.0)).abs().min() < 1e-6


def test_euler_counts_model_calls_and_uses_timesteps():
    calls = []

    def model_fn(x, t, c):
        calls.append(float(t[0]))
        return x * 0.1 + c.mean()

    noise, cond, uncond = _inputs(b=1)
    euler_sample_cfg(model_fn, noise, cond, uncond, num_steps=4, guidance_scale=3.0, return_timesteps=(0.0,))
    assert len(calls) == 8  # 4 steps x (cond + uncond)
    expected = (shift_sigma(torch.tensor([1.0, 1.0, 0.75, 0.75, 0.5, 0.5, 0.25, 0.25]), 5.0) * 1000).tolist()
    assert calls == pytest.approx(expected, abs=1e-3)


def test_euler_rejects_bad_input():
    noise, cond, uncond = _inputs()
    fn = lambda x, t, c: x
    with pytest.raises(ValueError, match="batch mismatch: noise has 2, cond has 1"):
        euler_sample_cfg(fn, noise, cond[:1], uncond)
    with pytest.raises(ValueError, match="guidance_scale=5.0 needs uncond"):
        euler_sample_cfg(fn, noise, cond, None)
    with pytest.raises(ValueError, match="1200"):
        euler_sample_cfg(fn, noise, cond, uncond, return_timesteps=(1200.0,))
    with pytest.raises(ValueError, match="num_steps"):
        euler_sample_cfg(fn, noise, cond, uncond, num_steps=0)


def test_default_returns_the_few_step_states_and_the_clean_endpoint():
    noise, cond, _ = _inputs(b=1)
    calls = []

    def model_fn(x, t, c):
        calls.append(round(float(t[0]), 3))
        return 0.5 * x + c.mean()

    out = euler_sample_cfg(model_fn, noise, cond, None, num_steps=4, guidance_scale=1.0)
    torch.testing.assert_close(out.timesteps, torch.tensor([1000.0, 937.5, 2500.0 / 3, 625.0, 0.0]))
    assert out.trajectory.shape == (1, 5, 4, 3, 8, 8)
    torch.testing.assert_close(out.trajectory[:, 0], noise)
    torch.testing.assert_close(out.trajectory[:, -1], out.latents)
    # The 4-step grid (shift 5) is exactly the few-step schedule: nothing is inserted.
    assert calls == [1000.0, 937.5, 833.333, 625.0]
    # With a linear model the Euler step is exact arithmetic: check one step by hand.
    x1 = noise + (0.9375 - 1.0) * (0.5 * noise + cond.mean())
    torch.testing.assert_close(out.trajectory[:, 1], x1)
