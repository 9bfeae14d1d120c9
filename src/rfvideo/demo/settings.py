"""Every size and step count of the demo in one place (the caches are keyed by the parts they depend on)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import asdict, dataclass

__all__ = ["DemoSettings"]


@dataclass(frozen=True)
class DemoSettings:
    """The world, the components and the training schedule of the demo.

    World: `size` x `size` pixels, `num_pixel_frames` frames, squares of side `size / 4` moving `speed`
    px/frame through the frame centre. Codec: `KeyframeCodec(spatial_factor)`. Stages: base flow matching
    (`base_steps`), ODE trajectories (`traj_per_prompt` per training prompt, `ode_euler_steps` Euler steps,
    CFG `cfg_scale`), ODE init (`ode_steps`), reward forcing (`reward_steps` per run).
    """

    size: int = 32
    num_pixel_frames: int = 9
    speed: float = 1.5
    spatial_factor: int = 4
    clips_per_prompt: int = 8
    text_max_length: int = 40
    text_dim: int = 32
    base_steps: int = 1000
    base_batch: int = 8
    base_lr: float = 1e-3
    traj_per_prompt: int = 4
    ode_euler_steps: int = 16
    cfg_scale: float = 3.0
    ode_steps: int = 200
    ode_lr: float = 5e-4
    reward_steps: int = 100
    reward_batch: int = 4
    reward_lr: float = 1e-3
    reward_ema: float = 0.8
    eval_seeds: int = 2
    world_seed: int = 0

    @classmethod
    def fast(cls) -> DemoSettings:
        """A few steps everywhere: a smoke run (tests), its numbers mean nothing."""
        return cls(
            clips_per_prompt=1, base_steps=3, traj_per_prompt=1, ode_euler_steps=2, ode_steps=2,
            reward_steps=2, eval_seeds=2,
        )  # fmt: skip

    def replace(self, **changes: object) -> DemoSettings:
        return dataclasses.replace(self, **changes)

    @property
    def latent_size(self) -> tuple[int, int]:
        return (self.size // self.spatial_factor, self.size // self.spatial_factor)

    @property
    def num_latent_frames(self) -> int:
        return 1 + (self.num_pixel_frames - 1) // 4

    def world_key(self) -> str:
        """Hash of what the shared world (base model and trajectories) depends on."""
        fields = [
            "size", "num_pixel_frames", "speed", "spatial_factor", "clips_per_prompt", "text_max_length",
            "text_dim", "base_steps", "base_batch", "base_lr", "traj_per_prompt", "ode_euler_steps",
            "cfg_scale", "world_seed",
        ]  # fmt: skip
        blob = json.dumps({k: asdict(self)[k] for k in fields}, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]
