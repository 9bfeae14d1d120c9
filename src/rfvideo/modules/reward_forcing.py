"""Stage 2: reward forcing: self-rollout, decode what the rewards score, maximise the reward (design.md §1.3).

Per micro-batch:
  1. rollout: the generator produces the whole video chunk by chunk from its own KV cache exactly as at
     inference (sampling.rollout); the exit step is drawn from a generator seeded by the global step (same
     on every rank); chunks before the first scored latent frame run without grad.
  2. decode only the trailing pixel frames that the ensemble's frame selector needs
     (`WanVAE.decode_last`, optionally checkpointed).
  3. loss = -mean_b R_total(video_tail, prompts) + anchor_weight * ||theta - theta_init||^2 / numel.

Legend: `b` batch, `c` latent channels, `f` latent frames, `h w` latent size, `F` pixel frames,
`n` decoded pixel frames, `H W` pixel size.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from einops import rearrange
from torch import nn

from rfvideo.modules.base import VideoGeneratorModule
from rfvideo.sampling import rollout

__all__ = ["RewardForcingModule", "pixel_to_latent_frame"]


def pixel_to_latent_frame(pixel_frame: int, temporal_factor: int = 4) -> int:
    """Latent frame from which a causal Wan VAE decodes pixel frame `p` (frame 0 alone, then groups of 4)."""
    return 0 if pixel_frame == 0 else 1 + (pixel_frame - 1) // temporal_factor


class RewardForcingModule(VideoGeneratorModule):
    """Reward optimisation of the causal generator through its own rollout (no teacher, no critic).

    Args:
        rewards: a `RewardEnsemble`; `pixel_frames(F, generator)` says which pixel frames to decode and
            `forward(video (b n 3 H W), prompts, frame_indices=...) -> RewardOutput(total, terms)`. Frozen.
        anchor_weight: weight of the L2 anchor to the initial generator weights (0 disables it).
        exit_per_chunk: draw one exit step per chunk instead of one shared step.
        checkpoint_decoder: recompute the decode in backward instead of storing its activations.
        **kwargs: see `VideoGeneratorModule` (generator, vae, text_encoder, optimizer, ...).
    """

    def __init__(
        self,
        *args: Any,
        rewards: nn.Module,
        anchor_weight: float = 0.0,
        exit_per_chunk: bool = False,
        checkpoint_decoder: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if anchor_weight < 0:
            raise ValueError(f"anchor_weight must be >= 0, got {anchor_weight}")
        self.rewards = rewards
        rewards.requires_grad_(False)
        rewards.eval()
        self.anchor_weight = float(anchor_weight)
        self.exit_per_chunk = exit_per_chunk
        self.checkpoint_decoder = checkpoint_decoder
        self.save_hyperparameters(
            ignore=["generator", "vae", "text_encoder", "optimizer", "scheduler", "rewards"]
        )
        self._anchor: list[torch.Tensor] | None = None
        if self.anchor_weight > 0:
            # Kept outside the state_dict on purpose: the anchor is the *initial* weights, which a resumed run
            # must get from the same initial checkpoint, not from the moving weights.
            self._anchor = [p.detach().clone() for p in self.generator.parameters()]

    def scored_pixel_frames(self, num_pixel_frames: int, generator: torch.Generator) -> list[int]:
        """Pixel frames to decode: the ensemble's `pixel_frames` (all frames if it holds a video reward)."""
        select = getattr(self.rewards, "pixel_frames", None)
        if select is None:
            frames = getattr(self.rewards, "frames", None)
            select = frames.pixel_frames if frames is not None else (lambda n, g=None: [n - 1])
        sel = sorted(int(p) for p in select(num_pixel_frames, generator))
        if not sel:
            raise ValueError("the reward frame selector selected no frames")
        return sel

    def compute_loss(self, batch: Mapping[str, Any], batch_idx: int) -> tuple[torch.Tensor, dict[str, Any]]:
        prompts = list(batch["prompt"])
        emb = self.encode_prompts(prompts, batch)
        b, f = len(prompts), self.num_latent_frames
        k = int(self.generator.num_frames_per_chunk)
        tf = int(getattr(self.vae, "temporal_factor", 4))
        num_pixel = 1 + tf * (f - 1)
        # Same draw on every rank (a `random` frame policy must agree with the decode).
        sel = self.scored_pixel_frames(num_pixel, self.step_generator(batch_idx, per_rank=False, salt=5))
        first_pixel = sel[0]
        first_latent = pixel_to_latent_frame(first_pixel, tf)
        noise = self.noise(b, f, self.step_generator(batch_idx, per_rank=True, salt=2))
        out = rollout(
            self.generator,
            noise,
            emb,
            schedule=self.schedule,
            generator=self.step_generator(batch_idx, per_rank=True, salt=3),
            exit_generator=self.step_generator(batch_idx, per_rank=False, salt=4),
            exit_per_chunk=self.exit_per_chunk,
            grad_from_chunk=first_latent // k,
        )
        latents = rearrange(out.latents, "b c f h w -> b f c h w")
        vae_dtype = next(self.vae.parameters()).dtype
        video = self.vae.decode_last(
            latents.to(vae_dtype), num_frames=num_pixel - first_pixel, checkpoint=self.checkpoint_decoder
        )  # (b n 3 H W), the trailing frames from the first scored one
        result = self.rewards(
            video.float(), prompts, generator=self.step_generator(batch_idx, per_rank=True, salt=5)
        )
        loss = -result.total.float().mean()
        logs: dict[str, Any] = {
            f"train/reward/{k_}": v.detach().float().mean() for k_, v in result.terms.items()
        }
        logs["train/reward/total"] = result.total.detach().float().mean()
        if self._anchor is not None:
            sq = sum(
                ((p.float() - a.to(p.device, torch.float32)) ** 2).sum()
                for p, a in zip(self.generator.parameters(), self._anchor, strict=True)
            )
            n = sum(a.numel() for a in self._anchor)
            anchor = sq / n
            loss = loss + self.anchor_weight * anchor
            logs["train/anchor"] = anchor.detach()
        logs["train/exit_step"] = float(out.exit_steps[-1])
        return loss, logs
