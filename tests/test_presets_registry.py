"""Inference presets: names, validation, the peers' documented schedules, `set_causal_options`, and the
`rfvideo` preset bit-identical to today's defaults.

Shapes: `b` batch, `c` latent channels, `f` latent frames, `h w` latent size, `n d` text tokens / width.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from helpers import randomize_, tiny_wan_config
from rfvideo.models import CausalOptions, CausalWanTransformer
from rfvideo.pipeline.presets import PRESETS, InferencePreset, get_preset, preset_names
from rfvideo.sampling import FlowMatchSchedule, sample_chunkwise


def _model(seed: int = 0, **causal) -> CausalWanTransformer:
    g = torch.Generator().manual_seed(seed)
    return randomize_(CausalWanTransformer(**tiny_wan_config(), **causal), g).eval()


def _sample(model: CausalWanTransformer, schedule: FlowMatchSchedule, f: int = 9) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(1, 4, f, 8, 8, generator=g)  # (b c f h w)
    text = torch.randn(1, 5, 24, generator=g)  # (b n d)
    return sample_chunkwise(model, noise, text, schedule=schedule, generator=torch.Generator().manual_seed(2))


def test_names_and_unknown_name_lists_the_valid_ones():
    assert preset_names() == [
        "rfvideo", "self-forcing", "causvid", "longlive", "longlive-interactive", "reward-forcing-lu"
    ]  # fmt: skip
    assert get_preset("longlive") is PRESETS["longlive"]
    with pytest.raises(ValueError, match=r"'longlife'; valid presets: rfvideo, self-forcing, causvid"):
        get_preset("longlife")
    with pytest.raises(TypeError):
        PRESETS["mine"] = PRESETS["rfvideo"]  # read-only registry
    with pytest.raises(dataclasses.FrozenInstanceError):
        PRESETS["rfvideo"].context_timestep = 1.0


@torch.no_grad()
def test_rfvideo_preset_is_bit_identical_to_todays_defaults():
    preset = get_preset("rfvideo")
    assert preset.causal_options() == CausalOptions()
    assert preset.flow_schedule() == FlowMatchSchedule() and preset.context_timestep == 0.0
    default = _model()
    switched = _model(local_attn_size=9, sink_size=3, rope_mode="relative", sink_eviction="ema")
    assert preset.apply(switched) == default.causal_options
    strip = lambda c: {k: v for k, v in c.items() if not k.startswith("_")}  # noqa: E731
    assert strip(switched.config) == strip(default.config)
    want = _sample(default, FlowMatchSchedule())
    assert torch.equal(_sample(switched, preset.flow_schedule()), want)


def test_peer_presets_set_their_documented_options():
    lu = get_preset("reward-forcing-lu").causal_options()
    assert (lu.local_attn_size, lu.sink_size, lu.rope_mode, lu.sink_eviction) == (9, 3, "relative", "ema")
    assert (lu.sink_ema_decay, lu.sink_fold, lu.partial_eviction) == (0.999, "before_attend", "overwrite")
    ll = get_preset("longlive").causal_options()
    assert (ll.local_attn_size, ll.sink_size, ll.rope_mode, ll.sink_eviction) == (12, 3, "absolute", "drop")
    assert (ll.recache_visibility, ll.recache_sinks) == ("all_held", "keep")
    # its interactive config (global_sink: false): the same but the re-cache's first frames become the sinks
    li = get_preset("longlive-interactive").causal_options()
    assert dataclasses.replace(li, recache_sinks="keep") == ll and li.recache_sinks == "resink"
    assert get_preset("longlive-interactive").schedule == get_preset("longlive").schedule
    for name in ("self-forcing", "causvid"):
        assert get_preset(name).causal_options() == CausalOptions()  # global attention, no sinks
    for p in PRESETS.values():
        assert p.context_timestep == 0.0  # every peer's context pass is at t = 0 (context_noise: 0)
        assert p.num_frames_per_chunk in (None, 3)


def test_schedules_follow_each_peers_step_rule():
    """Self-Forcing / LongLive / Reward Forcing warp their steps through a 1000-entry shift-5 table
    (`timesteps[1000 - step]`, sigmas = shift(linspace(1, 0, 1001)[:-1])); CausVid uses its steps as is."""
    s = torch.linspace(1.0, 0.0, 1001, dtype=torch.float64)[:-1]
    table = 5.0 * s / (1 + 4.0 * s) * 1000  # the peers' shifted timestep table
    warped = torch.stack([table[1000 - t] for t in (1000, 750, 500, 250)]).float()
    for name in ("rfvideo", "self-forcing", "longlive", "longlive-interactive", "reward-forcing-lu"):
        torch.testing.assert_close(get_preset(name).flow_schedule().timesteps, warped, atol=1e-3, rtol=0)
    assert get_preset("causvid").flow_schedule().timesteps.tolist() == [1000.0, 757.0, 522.0]


def test_set_causal_options_takes_options_whole_and_refuses_old_caches(tmp_path):
    model = _model()
    old_cache = model.new_kv_cache(1)
    opts = get_preset("reward-forcing-lu").apply(model)
    assert model.causal_options == opts and model.new_kv_cache(1).options == opts
    for key, value in opts.to_config().items():
        assert model.config[key] == value
    model.save_pretrained(tmp_path)
    assert CausalWanTransformer.from_pretrained(tmp_path).causal_options == opts
    x, t, text = torch.randn(1, 4, 3, 8, 8), torch.zeros(1, 3), torch.randn(1, 5, 24)
    with pytest.raises(ValueError, match="KVCache options .* differ"):
        model(x, t, text, attention_mode="cached", kv_cache=old_cache, frame_offset=0)
    with pytest.raises(ValueError, match="needs a CausalOptions"):
        model.set_causal_options({"sink_size": 3})  # type: ignore[arg-type]


def test_apply_refuses_a_chunk_size_the_peer_never_trained():
    model = _model(num_frames_per_chunk=1)
    with pytest.raises(ValueError, match="num_frames_per_chunk=3, the model has 1"):
        get_preset("longlive").apply(model)
    assert get_preset("rfvideo").apply(model).num_frames_per_chunk == 1  # rfvideo keeps the model's


def test_option_values_and_the_peer_bug_combination_are_refused():
    for name, bad in [("recache_visibility", "all"), ("recache_sinks", "drop"), ("sink_fold", "late"),
                      ("partial_eviction", "copy")]:  # fmt: skip
        with pytest.raises(ValueError, match=f"{name} must be one of"):
            CausalOptions(**{name: bad})
    # LongLive's resink re-encodes evicted frames, all seeing each other: no causal visibility to keep
    with pytest.raises(ValueError, match="recache_sinks='resink' .* needs recache_visibility='all_held'"):
        CausalOptions(local_attn_size=12, sink_size=3, recache_sinks="resink")
    # Reward Forcing's EMA path without sinks rotates queries at negative RoPE positions: refused
    for lu in ({"sink_fold": "before_attend"}, {"partial_eviction": "overwrite"}):
        with pytest.raises(ValueError, match="need sink_size >= 1, got 0"):
            CausalOptions(local_attn_size=6, sink_eviction="ema", **lu)
    with pytest.raises(ValueError, match="need sink_size >= 1"):
        dataclasses.replace(get_preset("reward-forcing-lu").causal_options(), sink_size=0)
    CausalOptions(local_attn_size=6, sink_eviction="ema")  # rfvideo's own rule stays allowed
    with pytest.raises(ValueError, match="must set every behaviour field"):
        InferencePreset(name="half", causal={"sink_size": 3})
    with pytest.raises(ValueError, match="not FlowMatchSchedule arguments"):
        InferencePreset(name="x", causal=dict(PRESETS["rfvideo"].causal), schedule={"steps": 4})


def test_apply_preset_sets_the_pipelines_transformer_and_scheduler():
    from rfvideo.models.tiny import tiny_causal_wan, tiny_text_encoder, tiny_wan_vae
    from rfvideo.pipeline import FewStepFlowScheduler, RFVideoPipeline
    from rfvideo.pipeline.presets import apply_preset

    gen = tiny_causal_wan(num_frames_per_chunk=3, seed=1)
    pipe = RFVideoPipeline(gen, tiny_wan_vae(), FewStepFlowScheduler(), tiny_text_encoder())
    preset = apply_preset(pipe, "reward-forcing-lu")
    assert pipe.transformer.causal_options == preset.causal_options(CausalOptions())
    assert pipe.scheduler.schedule == preset.flow_schedule()
    assert apply_preset(pipe, "causvid").name == "causvid"
    assert pipe.scheduler.schedule.timesteps.tolist() == [1000.0, 757.0, 522.0]
    assert pipe.transformer.causal_options == CausalOptions()
