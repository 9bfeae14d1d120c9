"""Tiny seeded factories shared by the tests (2 layers, width 32, a few latent frames, 8x8 latents)."""

from __future__ import annotations

from typing import Any

from rfvideo.models.tiny import randomize_, wan_config

__all__ = ["randomize_", "tiny_fit_yaml", "tiny_recipe_yaml", "tiny_wan_config"]


def tiny_wan_config(**overrides: Any) -> dict[str, Any]:
    """Config keys of diffusers' `WanTransformer3DModel` for the 2-layer, width-32 "tiny" flavour
    (`rfvideo.models.tiny.WAN_FLAVOURS`), with `overrides`."""
    return wan_config("tiny", **overrides)


def tiny_fit_yaml(
    root: str, *, checkpoint: str = "save_last: true", model_extra: str = "", epochs: int = 8
) -> str:
    """A one-step `rfvideo fit` config of `RewardForcingModule` on the tiny demo components (CPU, no logger),
    checkpoints under `<root>/ckpt` (`checkpoint`: the ModelCheckpoint init_args), `model_extra` extra
    `init_args` lines (indented 4 spaces), `epochs` prompts per epoch of the world's prompt file."""
    return f"""
seed_everything: 0
trainer:
  accelerator: cpu
  devices: 1
  max_steps: 1
  logger: false
  enable_progress_bar: false
  enable_model_summary: false
  default_root_dir: {root}
  callbacks:
    - class_path: lightning.pytorch.callbacks.ModelCheckpoint
      init_args: {{dirpath: {root}/ckpt, {checkpoint}}}
model:
  class_path: rfvideo.modules.RewardForcingModule
  init_args:
    generator:
      class_path: rfvideo.models.tiny.tiny_causal_wan
      init_args: {{num_frames_per_chunk: 1, seed: 1, init_scale: 0.1}}
    vae:
      class_path: rfvideo.models.tiny.tiny_wan_vae
      init_args: {{seed: 2}}
    text_encoder:
      class_path: rfvideo.models.tiny.tiny_text_encoder
      init_args: {{seed: 3}}
    rewards:
      class_path: rfvideo.rewards.RewardEnsemble
      init_args:
        terms:
          c: {{class_path: rfvideo.demo.world.prompt_color.PromptColorReward}}
        weights: {{c: 1.0}}
    num_latent_frames: 2
    latent_size: [4, 4]
{model_extra}data:
  class_path: rfvideo.demo.world.data.DemoPromptDataModule
  init_args: {{batch_size: 2, epoch_length: {epochs}}}
"""


def tiny_recipe_yaml(*, latent_frames: int = 4, latent_size: tuple[int, int] = (2, 2)) -> str:
    """A tiny stage-1 recipe config on the demo's tiny components (chunks of 2 latent frames, a width-4 Wan
    VAE: 8 pixels per latent pixel): what the inference commands build a pipeline from."""
    h, w = latent_size
    return f"""
model:
  class_path: rfvideo.modules.ODEInitModule
  init_args:
    generator:
      class_path: rfvideo.models.tiny.tiny_causal_wan
      init_args: {{num_frames_per_chunk: 2, seed: 1, init_scale: 0.2}}
    vae:
      class_path: rfvideo.models.tiny.tiny_wan_vae
      init_args: {{seed: 2}}
    text_encoder:
      class_path: rfvideo.models.tiny.tiny_text_encoder
      init_args: {{seed: 3}}
    num_latent_frames: {latent_frames}
    latent_size: [{h}, {w}]
"""
