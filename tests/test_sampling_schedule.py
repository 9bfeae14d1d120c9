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


def _causvid_table_sigma(t: float) -> float:
    """Reference written from CausVid's documented rule: its wrapper's `FlowMatchScheduler(shift=8,
    sigma_min=0, extra_one_step=True)` with 1000 steps has sigmas `8 s / (1 + 7 s)` at s = 1 - i / 1000,
    i = 0..999, timesteps `1000 sigma`, and a timestep `t` uses the entry whose timestep is nearest."""
    table = [8 * (1 - i / 1000) / (1 + 7 * (1 - i / 1000)) for i in range(1000)]
    return min(table, key=lambda s: abs(1000 * s - t))


def test_table_lookup_matches_causvid_rule_and_hand_values():
    sched = FlowMatchSchedule(denoising_steps=(1000, 757, 522), shift=1.0, sigma_lookup="table")
    # Hand-computed: 757 is nearest entry i = 720 (s = 0.28): 8 * 0.28 / (1 + 7 * 0.28) = 2.24 / 2.96 = 28/37
    # (timestep 756.76); 522 is i = 880 (s = 0.12): 0.96 / 1.84 = 12/23 (timestep 521.74).
    want = torch.tensor([1.0, 28 / 37, 12 / 23], dtype=torch.float32)
    assert torch.equal(sched.sigmas, want)
    ref = torch.tensor([_causvid_table_sigma(t) for t in (1000, 757, 522)], dtype=torch.float32)
    assert torch.equal(sched.sigmas, ref)
    # 2.4e-4 / 2.6e-4 below the continuous t / 1000; the model is still conditioned on the steps themselves.
    gap = torch.tensor([0.757, 0.522]) - sched.sigmas[1:]
    torch.testing.assert_close(gap, torch.tensor([2.4324e-4, 2.6087e-4]), atol=1e-7, rtol=0)
    assert sched.timesteps.tolist() == [1000.0, 757.0, 522.0]
    assert sched.model_timesteps == [1000.0, 757.0, 522.0]
    # Shifted steps are looked up after the shift (CausVid's warped variant uses table entries themselves).
    warped = FlowMatchSchedule(shift=5.0, sigma_lookup="table", sigma_table_shift=5.0)
    entries = warped.sigma_table()
    assert all(bool((entries - s).abs().min() < 1e-7) for s in warped.sigmas.double())
    assert warped.sigma_table().shape == (1000,) and float(entries[0]) == 1.0


def test_table_lookup_random_steps_against_reference():
    g = torch.Generator().manual_seed(3)
    steps = sorted({int(x) for x in torch.randint(1, 1000, (6,), generator=g)}, reverse=True)
    sched = FlowMatchSchedule(denoising_steps=(1000, *steps), shift=1.0, sigma_lookup="table")
    ref = torch.tensor([_causvid_table_sigma(t) for t in (1000, *steps)], dtype=torch.float32)
    assert torch.equal(sched.sigmas, ref)
    # the continuous lookup would differ at every interior step
    assert not torch.equal(FlowMatchSchedule(denoising_steps=(1000, *steps), shift=1.0).sigmas, ref)


def test_default_continuous_lookup_is_bit_identical_to_before():
    for kwargs in ({}, dict(shift=1.0, denoising_steps=(1000, 757, 522)), dict(shift=3.0)):
        sched = FlowMatchSchedule(**kwargs)
        assert sched.sigma_lookup == "continuous"
        # the formula the schedule has always used, written out
        raw = torch.tensor(sched.denoising_steps, dtype=torch.float64) / 1000
        want = (sched.shift * raw / (1 + (sched.shift - 1) * raw)).to(torch.float32)
        assert torch.equal(sched.sigmas, want)
        # the sampler's conditioning timestep, as it computed it (float32 sigma times T, in Python)
        assert sched.model_timesteps == [s * 1000 for s in want.tolist()]
        # the table fields are not read without the table lookup
        assert torch.equal(
            FlowMatchSchedule(**kwargs, sigma_table_size=7, sigma_table_shift=2.0).sigmas, want
        )


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        (dict(sigma_lookup="nearest"), "'nearest'"),
        (dict(sigma_lookup="table", sigma_table_size=1), "sigma_table_size must be an int >= 2, got 1"),
        (dict(sigma_table_size=True), "True"),
        (dict(sigma_table_shift=0.0), "sigma_table_shift must be a finite number > 0, got 0.0"),
        (dict(sigma_table_shift=float("nan")), "nan"),
    ],
)
def test_sigma_lookup_rejects_bad_input(kwargs, needle):
    with pytest.raises(ValueError) as err:
        FlowMatchSchedule(**kwargs)
    assert needle in str(err.value)
