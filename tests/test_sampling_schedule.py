"""FlowMatchSchedule and the flow conversions vs the spec and diffusers' FlowMatchEulerDiscreteScheduler."""

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from rfvideo.sampling import (
    FlowMatchSchedule,
    add_noise,
    eps_from_flow,
    expand_sigma,
    flow_from_x0,
    shift_sigma,
    x0_from_flow,
)


def test_schedule_matches_spec_numbers():
    sched = FlowMatchSchedule()
    torch.testing.assert_close(sched.timesteps, torch.tensor([1000.0, 937.5, 2500.0 / 3, 625.0]))
    torch.testing.assert_close(sched.sigmas, sched.timesteps / 1000)
    assert sched.num_steps == 4
    # Hand-computed: k s / (1 + (k-1) s) at s = 0.5, k = 5 -> 2.5 / 3.
    assert shift_sigma(0.5, 5.0) == pytest.approx(2.5 / 3)
    assert FlowMatchSchedule(shift=1.0).timesteps.tolist() == [1000.0, 750.0, 500.0, 250.0]


def test_schedule_matches_diffusers():
    ref = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=5.0)
    ref.set_timesteps(sigmas=[1.0, 0.75, 0.5, 0.25])
    sched = FlowMatchSchedule(shift=5.0, denoising_steps=(1000, 750, 500, 250))
    torch.testing.assert_close(sched.timesteps, ref.timesteps.float())
    torch.testing.assert_close(sched.sigmas, ref.sigmas[:-1].float())


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        (dict(denoising_steps=(1000, 500, 750)), "(1000, 500, 750)"),
        (dict(denoising_steps=()), "()"),
        (dict(denoising_steps=(1000, 0)), "(1000, 0)"),
        (dict(denoising_steps=(1500, 750)), "(1500, 750)"),
        (dict(denoising_steps=(900, 500)), "(900, 500)"),
        (dict(shift=0.0), "0.0"),
        (dict(num_train_timesteps=-3), "-3"),
    ],
)
def test_schedule_rejects_bad_input(kwargs, needle):
    with pytest.raises(ValueError) as err:
        FlowMatchSchedule(**kwargs)
    assert needle in str(err.value)


def test_conversions_round_trip():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 4, 6, 8, 8, generator=g)
    eps = torch.randn(2, 4, 6, 8, 8, generator=g)
    sigma = expand_sigma(torch.rand(2, 6, generator=g) * 0.9 + 0.05)
    assert sigma.shape == (2, 1, 6, 1, 1)
    x_t = add_noise(x0, eps, sigma)
    v = eps - x0  # the model's target (flow matching)
    torch.testing.assert_close(x0_from_flow(x_t, v, sigma), x0)
    torch.testing.assert_close(eps_from_flow(x_t, v, sigma), eps)
    torch.testing.assert_close(flow_from_x0(x_t, x0, sigma), v)
    # Per-sample (b,) sigmas and Python floats broadcast the same way.
    s = torch.tensor([0.3, 0.7])
    torch.testing.assert_close(add_noise(x0, eps, expand_sigma(s))[1], add_noise(x0[1], eps[1], 0.7))
    with pytest.raises(ValueError, match="sigma > 0"):
        flow_from_x0(x_t, x0, 0.0)


def test_add_noise_matches_diffusers_scale_noise():
    ref = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=5.0)
    ref.set_timesteps(sigmas=[1.0, 0.75, 0.5, 0.25])
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(2, 1, 3, 4, 4, generator=g), torch.randn(2, 1, 3, 4, 4, generator=g)
    sched = FlowMatchSchedule()
    for t, s in zip(sched.timesteps, sched.sigmas):
        expected = ref.scale_noise(x0, ref.timesteps[(ref.timesteps - t).abs().argmin()][None], eps)
        torch.testing.assert_close(add_noise(x0, eps, float(s)), expected)
