"""Named inference presets: the cache, window, sinks, RoPE layout, eviction and schedule each released
chunk-wise Wan2.1 checkpoint was trained with, so that a peer's checkpoint runs as its own code runs it.

A checkpoint only behaves as trained when the inference around it does what its training did. The peers
differ from rfvideo's defaults in four cache behaviours (fields of `CausalOptions`, each documented there):

- LongLive re-encodes the held frames on a prompt switch with every held frame seeing every other
  (`recache_visibility="all_held"`: its block mask is built but its cached attention path never reads
  it) and, once the window has rolled, keeps the sinks' K/V from the old prompt (`recache_sinks="keep"`):
  its `global_sink: true` mode (the `longlive` preset). Its interactive config (`global_sink: false`, since
  its 2025-12-04 fix; the `longlive-interactive` preset) instead zeroes the cache once more than the
  window was written and re-encodes the last `local_attn_size` frames, every one seeing every other, at
  their absolute positions, writing them from slot 0: the first `sink_size` of them become the new sinks
  and the old sinks are dropped (`recache_sinks="resink"`).
- Reward Forcing (Lu et al.) folds the evicted frames into its EMA sinks before the chunk that needs the
  room attends (`sink_fold="before_attend"`), folds only when exactly `sink_size` frames leave at once and
  otherwise overwrites the sinks with the oldest evicted frames (`partial_eviction="overwrite"`), with a
  fixed decay of 0.999.

rfvideo's own defaults (the `rfvideo` preset) keep each re-encoded frame's original visibility, re-encode
the sinks under the new prompt, fold at the write and fold every evicted frame: each chunk then attends to
what a block-causal forward over the same frames would give it.

Every peer feeds the clean chunk to its context pass at timestep 0 without adding noise
(`context_timestep=0.0`; Self-Forcing, LongLive and Reward Forcing read `context_noise: 0` from their
configs, CausVid multiplies the timestep by 0).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from rfvideo.models.causal_options import CausalOptions
from rfvideo.sampling.schedule import FlowMatchSchedule

__all__ = [
    "PRESETS",
    "PRESET_FILE",
    "InferencePreset",
    "apply_preset",
    "get_preset",
    "preset_names",
    "read_folder_preset",
]

PRESET_FILE = "rfvideo_preset.json"
"""File beside a converted generator's `config.json` naming its preset (`rfvideo convert`)."""

# Not behaviour: the chunk size is the checkpoint's (`InferencePreset.num_frames_per_chunk` checks it) and
# the attention backend is a speed choice with the same math.
_NOT_PRESET = frozenset({"num_frames_per_chunk", "attention_backend"})
_SCHEDULE_KEYS = frozenset(FlowMatchSchedule.__dataclass_fields__)


@dataclass(frozen=True, kw_only=True)
class InferencePreset:
    """One peer's inference settings, whole.

    Attributes:
        name: The preset's name (`PRESETS` key; the `--preset` value).
        causal: `CausalOptions` fields the preset sets (every one but the chunk size and the attention
            backend), replacing the model's.
        schedule: `FlowMatchSchedule` keyword arguments (`denoising_steps`, `shift`, and the sigma lookup
            `sigma_lookup`, `sigma_table_size`, `sigma_table_shift`).
        context_timestep: Timestep of the t = 0 context pass that writes a clean chunk into the cache.
        num_frames_per_chunk: The chunk size the peer's checkpoint was trained with (None: the model's own);
            a converter builds the model with it, `apply` refuses a model with another one.
        description: One line: whose inference this is and what its checkpoint needs.
    """

    name: str
    causal: Mapping[str, Any] = field(default_factory=dict)
    schedule: Mapping[str, Any] = field(default_factory=dict)
    context_timestep: float = 0.0
    num_frames_per_chunk: int | None = None
    description: str = ""

    def __post_init__(self) -> None:
        fields = set(CausalOptions.__dataclass_fields__) - _NOT_PRESET
        unknown = sorted(set(self.causal) - fields)
        if unknown:
            raise ValueError(f"preset {self.name!r}: {unknown} are not preset CausalOptions fields")
        missing = sorted(fields - set(self.causal))
        if missing:
            raise ValueError(f"preset {self.name!r} must set every behaviour field, missing {missing}")
        bad = sorted(set(self.schedule) - _SCHEDULE_KEYS)
        if bad:
            raise ValueError(f"preset {self.name!r}: {bad} are not FlowMatchSchedule arguments")
        if not 0.0 <= float(self.context_timestep) <= 1000.0:
            raise ValueError(f"preset {self.name!r}: context_timestep must be in [0, 1000]")
        # read-only views, so that a shared preset cannot be edited through one caller
        object.__setattr__(self, "causal", MappingProxyType(dict(self.causal)))
        object.__setattr__(self, "schedule", MappingProxyType(dict(self.schedule)))
        self.causal_options()  # validates the combination (one-line ValueError)
        self.flow_schedule()

    def causal_options(self, base: CausalOptions | None = None) -> CausalOptions:
        """`base` (default: `CausalOptions()` with the preset's chunk size) with the preset's fields."""
        if base is None:
            base = CausalOptions(num_frames_per_chunk=self.num_frames_per_chunk or 3)
        return dataclasses.replace(base, **self.causal)

    def flow_schedule(self) -> FlowMatchSchedule:
        """The few-step schedule (`FlowMatchSchedule(**schedule)`)."""
        return FlowMatchSchedule(**self.schedule)

    def apply(self, model: Any) -> CausalOptions:
        """Set the preset's causal options on a `CausalWanTransformer` (its chunk size and attention
        backend are kept); returns the options set.

        Raises:
            ValueError: the model's chunk size differs from the one the peer's checkpoint was trained with.
        """
        current: CausalOptions = model.causal_options
        k = self.num_frames_per_chunk
        if k is not None and current.num_frames_per_chunk != k:
            raise ValueError(
                f"preset {self.name!r} runs checkpoints trained with num_frames_per_chunk={k}, "
                f"the model has {current.num_frames_per_chunk}"
            )
        options = self.causal_options(current)
        model.set_causal_options(options)
        return options


def _behaviour(**fields: Any) -> dict[str, Any]:
    """Every behaviour field: rfvideo's defaults with `fields` replaced."""
    defaults = {k: v for k, v in dataclasses.asdict(CausalOptions()).items() if k not in _NOT_PRESET}
    unknown = sorted(set(fields) - set(defaults))
    if unknown:
        raise ValueError(f"{unknown} are not preset CausalOptions fields")
    return {**defaults, **fields}


_SF_SCHEDULE = {"denoising_steps": (1000, 750, 500, 250), "shift": 5.0}

PRESETS: Mapping[str, InferencePreset] = MappingProxyType(
    {
        p.name: p
        for p in (
            InferencePreset(
                name="rfvideo",
                causal=_behaviour(),
                schedule={"denoising_steps": (1000, 750, 500, 250), "shift": 5.0},
                description="today's defaults (CausalOptions(), FlowMatchSchedule()): global attention, "
                "no sinks, block-causal visibility everywhere; an rfvideo checkpoint trained with a window "
                "keeps its own config instead",
            ),
            InferencePreset(
                name="self-forcing",
                causal=_behaviour(),
                schedule=_SF_SCHEDULE,
                num_frames_per_chunk=3,
                description="Self-Forcing (self_forcing_dmd.pt): 3-frame chunks, global attention, "
                "4 steps (1000, 750, 500, 250) warped by shift 5",
            ),
            InferencePreset(
                name="causvid",
                causal=_behaviour(),
                # configs/wan_causal_dmd.yaml: warp_denoising_step false, so the steps are used unshifted;
                # its wrapper's FlowMatchScheduler(shift=8, sigma_min=0, extra_one_step=True) with 1000
                # entries gives the sigma of each step (nearest timestep) for x0 and the re-noising
                schedule={
                    "denoising_steps": (1000, 757, 522),
                    "shift": 1.0,
                    "sigma_lookup": "table",
                    "sigma_table_size": 1000,
                    "sigma_table_shift": 8.0,
                },
                num_frames_per_chunk=3,
                description="CausVid (autoregressive_checkpoint/model.pt): 3-frame chunks, global attention, "
                "3 unshifted steps (1000, 757, 522), sigmas from its 1000-entry shift-8 table",
            ),
            InferencePreset(
                name="longlive",
                causal=_behaviour(
                    local_attn_size=12, sink_size=3, recache_visibility="all_held", recache_sinks="keep"
                ),
                schedule=_SF_SCHEDULE,
                num_frames_per_chunk=3,
                description="LongLive (longlive_base.pt + lora.pt): 3-frame chunks, 12-frame window with "
                "3 sink frames, absolute RoPE, re-cache with all-held visibility keeping the old sinks (its "
                "global_sink: true)",
            ),
            InferencePreset(
                name="longlive-interactive",
                causal=_behaviour(
                    local_attn_size=12, sink_size=3, recache_visibility="all_held", recache_sinks="resink"
                ),
                schedule=_SF_SCHEDULE,
                num_frames_per_chunk=3,
                description="LongLive's interactive config (configs/longlive_interactive_inference.yaml, "
                "global_sink: false; longlive_base.pt + lora.pt): as longlive, but a switch past the window "
                "re-encodes the last 12 frames, all seeing each other, and the first 3 of them become the "
                "sinks (the old sinks are dropped)",
            ),
            InferencePreset(
                name="reward-forcing-lu",
                causal=_behaviour(
                    local_attn_size=9,
                    sink_size=3,
                    rope_mode="relative",
                    sink_eviction="ema",
                    sink_ema_decay=0.999,
                    sink_fold="before_attend",
                    partial_eviction="overwrite",
                ),  # fmt: skip
                schedule=_SF_SCHEDULE,
                num_frames_per_chunk=3,
                description="Reward Forcing, Lu et al. (rewardforcing.pt): 3-frame chunks, 9-frame window "
                "with 3 EMA sinks (decay 0.999, folded before attending, overwritten on partial evictions), "
                "relative RoPE",
            ),
        )
    }
)
"""Every named preset, by name."""


def preset_names() -> list[str]:
    """The valid preset names, in `PRESETS` order."""
    return list(PRESETS)


def get_preset(name: str) -> InferencePreset:
    """The preset called `name`.

    Raises:
        ValueError: unknown name (the message lists the valid ones).
    """
    if name not in PRESETS:
        raise ValueError(f"unknown inference preset {name!r}; valid presets: {', '.join(PRESETS)}")
    return PRESETS[name]


def read_folder_preset(folder: str | os.PathLike[str]) -> InferencePreset | None:
    """The preset named by `folder/rfvideo_preset.json` (written by `rfvideo convert`), None without one.

    Raises:
        ValueError: the file is not JSON with a known `"preset"` name.
    """
    path = os.path.join(folder, PRESET_FILE)
    if not os.path.isfile(path):
        return None
    try:
        name = json.loads(open(path, encoding="utf-8").read())["preset"]
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f'{path}: expected {{"preset": <name>}} ({e})') from e
    return get_preset(name)


def apply_preset(pipe: Any, name: str | InferencePreset) -> InferencePreset:
    """Set a pipeline's transformer options (`InferencePreset.apply`) and its scheduler to a preset's.

    `pipe` is an `RFVideoPipeline` (anything with `transformer` and diffusers' `register_modules`). The
    preset's `context_timestep` (0.0 for every peer) is for the sampler's context pass.

    Raises:
        ValueError: unknown name, or a transformer whose chunk size the peer never trained with.
    """
    from rfvideo.pipeline.scheduler import FewStepFlowScheduler

    preset = get_preset(name) if isinstance(name, str) else name
    preset.apply(pipe.transformer)
    pipe.register_modules(scheduler=FewStepFlowScheduler.from_schedule(preset.flow_schedule()))
    return preset
