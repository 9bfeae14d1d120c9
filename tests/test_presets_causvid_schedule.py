"""The `causvid` preset's sigma table: the sampler conditions on CausVid's integer steps and converts /
re-noises with the nearest entry of its 1000-entry shift-8 table, as CausVid's `InferencePipeline` does;
the scheduler component saves the lookup; the other presets keep the continuous `t / T`.

Shapes: `b` batch, `c` latent channels, `f` latent frames, `k` frames per chunk, `h w` latent size,
`n d` text tokens / width.
"""

from __future__ import annotations

import torch

from helpers import randomize_, tiny_wan_config
from rfvideo.models import CausalWanTransformer
from rfvideo.pipeline.presets import get_preset
from rfvideo.pipeline.scheduler import FewStepFlowScheduler
from rfvideo.sampling import FlowMatchSchedule, sample_chunkwise

K = 3


def _table_sigma(t: float) -> float:
    """CausVid's documented rule (`wan_wrapper.py`: `FlowMatchScheduler(shift=8.0, sigma_min=0.0,
    extra_one_step=True).set_timesteps(1000)`; `add_noise` / `_convert_flow_pred_to_x0` take the entry
    whose timestep is nearest to `t`)."""
    table = [8 * (1 - i / 1000) / (1 + 7 * (1 - i / 1000)) for i in range(1000)]
    return min(table, key=lambda s: abs(1000 * s - t))


def _inputs(f: int = 6):
    g = torch.Generator().manual_seed(4)
    noise = torch.randn(1, 4, f, 8, 8, generator=g)  # (b c f h w)
    text = torch.randn(1, 5, 24, generator=g)  # (b n d)
    return noise, text


def _reference_causvid(model, noise, text, generator, steps=(1000, 757, 522)):
    """CausVid's `causal_inference.py` loop written out: per chunk, predict x0 at each integer step with the
    table sigma, re-noise to the next step's table sigma, then write the clean chunk at t = 0."""
    b, _, f = noise.shape[:3]
    cache = model.new_kv_cache(b, dtype=noise.dtype)
    cache.reset()
    out = []
    for start in range(0, f, K):
        x = noise[:, :, start : start + K]
        for j, t in enumerate(steps):
            v = model(
                x, torch.full((b, K), float(t)), text,
                attention_mode="cached", kv_cache=cache, frame_offset=start, write_cache=False,
            )  # fmt: skip
            x0 = x - _table_sigma(t) * v
            if j + 1 < len(steps):
                s_next = _table_sigma(steps[j + 1])
                eps = torch.randn(x0.shape, generator=generator)
                x = (1 - s_next) * x0 + s_next * eps
        out.append(x0)
        model(
            x0, torch.zeros(b, K), text,
            attention_mode="cached", kv_cache=cache, frame_offset=start, write_cache=True,
        )  # fmt: skip
    return torch.cat(out, dim=2)


@torch.no_grad()
def test_causvid_preset_samples_as_causvids_loop():
    model = randomize_(
        CausalWanTransformer(**tiny_wan_config(), num_frames_per_chunk=K), torch.Generator().manual_seed(0)
    )
    model.eval()
    preset = get_preset("causvid")
    preset.apply(model)
    schedule = preset.flow_schedule()
    assert schedule.sigma_lookup == "table" and schedule.model_timesteps == [1000.0, 757.0, 522.0]
    noise, text = _inputs()
    got = sample_chunkwise(model, noise, text, schedule=schedule, generator=torch.Generator().manual_seed(5))
    want = _reference_causvid(model, noise, text, torch.Generator().manual_seed(5))
    torch.testing.assert_close(got, want, atol=2e-6, rtol=1e-5)
    # the continuous lookup (the preset before this option) is measurably off the reference
    continuous = FlowMatchSchedule(denoising_steps=(1000, 757, 522), shift=1.0)
    off = sample_chunkwise(
        model, noise, text, schedule=continuous, generator=torch.Generator().manual_seed(5)
    )
    assert (off - want).abs().max() > 1e-4


def test_scheduler_component_saves_the_lookup(tmp_path):
    schedule = get_preset("causvid").flow_schedule()
    FewStepFlowScheduler.from_schedule(schedule).save_config(tmp_path)
    loaded = FewStepFlowScheduler.from_config(FewStepFlowScheduler.load_config(tmp_path))
    assert loaded.schedule == schedule
    assert torch.equal(loaded.schedule.sigmas, torch.tensor([1.0, 28 / 37, 12 / 23]))
    # a scheduler config written before the option existed reads as the continuous lookup
    old = {"num_train_timesteps": 1000, "shift": 5.0, "denoising_steps": [1000.0, 750.0, 500.0, 250.0]}
    assert FewStepFlowScheduler.from_config(old).schedule == FlowMatchSchedule()


def test_only_causvid_uses_the_table():
    for name in ("rfvideo", "self-forcing", "longlive", "reward-forcing-lu"):
        schedule = get_preset(name).flow_schedule()
        assert schedule.sigma_lookup == "continuous"
        assert torch.equal(schedule.sigmas, FlowMatchSchedule().sigmas)
    causvid = get_preset("causvid").schedule
    assert (causvid["sigma_lookup"], causvid["sigma_table_size"], causvid["sigma_table_shift"]) == (
        "table",
        1000,
        8.0,
    )
