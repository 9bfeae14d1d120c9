"""Stage 2: reward forcing: self-rollout, decode what the rewards score, maximise the reward.

Reward-Forcing (Zhang et al., arXiv 2601.16933), stage 2.

Per micro-batch:
  1. rollout: the generator produces the whole video chunk by chunk from its own KV cache exactly as at
     inference (sampling.rollout); the exit step is drawn from a generator seeded by the global step (same
     on every rank); chunks before the first scored latent frame run without grad.
  2. draw the step's frames once (`RewardEnsemble.plan_frames`, same draw on every rank) and decode only the
     trailing pixel frames they need (`WanVAE.decode_last`, optionally checkpointed).
  3. loss = -mean_b R_total(video_tail, prompts) + anchor_weight * ||theta - theta_init||^2 / numel, the
     ensemble scoring exactly the drawn frames. A NaN/Inf reward term skips the step (counted, on every
     rank) unless the ensemble was built with `on_nonfinite="raise"`.

Legend: `b` batch, `c` latent channels, `f` latent frames, `h w` latent size, `F` pixel frames,
`n` decoded pixel frames, `H W` pixel size.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from rfvideo.models.vae import latent_frames_for_pixel_frames, num_pixel_frames
from rfvideo.modules.base import VideoGeneratorModule
from rfvideo.modules.random_streams import Salt
from rfvideo.pipeline.pipeline import vae_factors
from rfvideo.rewards.ensemble import RewardEnsemble
from rfvideo.rewards.frames import FramePlan
from rfvideo.sampling import rollout

__all__ = ["RewardForcingModule"]


class RewardForcingModule(VideoGeneratorModule):
    """Reward optimisation of the causal generator through its own rollout (no teacher, no critic).

    Args:
        rewards: a `RewardEnsemble` (its reward models frozen; its running statistics train).
        anchor_weight: weight of the L2 anchor to the initial trained weights (0 disables it). The anchor
            is copied from the weights given at construction and moved once, at the first step, to each
            parameter's device and sharding (a DTensor shard under FSDP2).
        exit_per_chunk: draw one exit step per chunk instead of one shared step.
        checkpoint_decoder: recompute the decode in backward instead of storing its activations.
        **kwargs: see `VideoGeneratorModule` (generator, vae, text_encoder, optimizer, generator_lora, ...).
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
        if not isinstance(rewards, RewardEnsemble):
            raise ValueError(f"rewards must be a RewardEnsemble, got {type(rewards).__name__}")
        self.rewards = rewards
        rewards.requires_grad_(False)
        self.anchor_weight = float(anchor_weight)
        self.exit_per_chunk = exit_per_chunk
        self.checkpoint_decoder = checkpoint_decoder
        self.save_hyperparameters(
            ignore=["generator", "vae", "text_encoder", "optimizer", "scheduler", "rewards"]
        )
        self._anchor: list[torch.Tensor] | None = None
        self._anchor_placed = False
        if self.anchor_weight > 0:
            # Kept outside the state_dict on purpose: the anchor is the *initial* weights, which a resumed run
            # must get from the same initial checkpoint, not from the moving weights.
            # Over the trained parameters only (with LoRA the adapters: the frozen base cannot move).
            self._anchor = [p.detach().float().clone() for p in self._trainable()]

    # Override hooks that were removed, and what replaced each: a subclass still defining one would
    # otherwise be silently never called.
    REMOVED_HOOKS = {
        "scored_pixel_frames": "frame_plan(num_pixel_frames, batch_idx) -> FramePlan (its `decoded` frames "
        "are decoded, its `selected` ones scored; or give the ensemble a frame selector)",
    }

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, replacement in RewardForcingModule.REMOVED_HOOKS.items():
            if name in vars(cls):
                raise TypeError(
                    f"{cls.__qualname__}.{name} overrides a hook RewardForcingModule no longer calls; "
                    f"override {replacement} instead"
                )

    def frame_plan(self, num_pixel_frames: int, batch_idx: int) -> FramePlan:
        """This step's frames: drawn once from a generator shared by all ranks (resumable)."""
        return self.rewards.plan_frames(
            num_pixel_frames, self.step_generator(batch_idx, per_rank=False, salt=Salt.FRAME_PLAN)
        )

    def _place_anchor(self) -> None:
        """Move the anchor once onto each parameter's device and layout (its shard under FSDP2)."""
        from torch.distributed.tensor import DTensor, distribute_tensor

        assert self._anchor is not None
        placed = []
        for p, a in zip(self._trainable(), self._anchor, strict=True):
            if isinstance(p, DTensor):
                placed.append(distribute_tensor(a.to(p.device), p.device_mesh, list(p.placements)))
            else:
                placed.append(a.to(p.device))
        self._anchor = placed
        self._anchor_placed = True

    def anchor_penalty(self) -> torch.Tensor:
        """`||theta - theta_init||^2 / numel` in float32, differentiable w.r.t. the generator weights."""
        if self._anchor is None:
            raise ValueError("anchor_penalty needs anchor_weight > 0")
        if not self._anchor_placed:
            self._place_anchor()
        sq = None
        for p, a in zip(self._trainable(), self._anchor, strict=True):
            term = ((p.float() - a) ** 2).sum()
            sq = term if sq is None else sq + term
        assert sq is not None
        full = getattr(sq, "full_tensor", None)  # a DTensor sum is partial per shard: all-reduce it
        total = full() if full is not None else sq
        return total / sum(a.numel() for a in self._anchor)

    def compute_loss(self, batch: Mapping[str, Any], batch_idx: int) -> tuple[torch.Tensor, dict[str, Any]]:
        prompts = list(batch["prompt"])
        emb = self.encode_prompts(prompts, batch)
        b, f = len(prompts), self.num_latent_frames
        k = int(self.generator.num_frames_per_chunk)
        tf = vae_factors(self.vae)[0]
        num_pixel = num_pixel_frames(f, tf)
        # One draw, the same on every rank, decides both what is decoded and what is scored.
        plan = self.frame_plan(num_pixel, batch_idx)
        first_pixel = plan.decoded[0]
        first_latent = latent_frames_for_pixel_frames([first_pixel], num_pixel, tf)[0]
        noise = self.noise(b, f, self.step_generator(batch_idx, per_rank=True, salt=Salt.ROLLOUT_NOISE))
        out = rollout(
            self.generator,
            noise,
            emb,
            schedule=self.schedule,
            generator=self.step_generator(batch_idx, per_rank=True, salt=Salt.RENOISE),
            exit_generator=self.step_generator(batch_idx, per_rank=False, salt=Salt.EXIT_STEPS),
            exit_per_chunk=self.exit_per_chunk,
            grad_from_chunk=first_latent // k,
        )
        vae_dtype = next(self.vae.parameters()).dtype
        video = self.vae.decode_last(
            out.latents.to(vae_dtype), num_frames=num_pixel - first_pixel, checkpoint=self.checkpoint_decoder
        )  # (b n 3 H W), the trailing frames from the first scored one
        result = self.rewards(video.float(), prompts, plan=plan, on_nonfinite="report")
        if result.nonfinite:
            self._skip_reason = f"reward terms {result.nonfinite} returned NaN/Inf"
        loss = -result.total.float().mean()
        logs: dict[str, Any] = {
            f"train/reward/{k_}": v.detach().float().mean() for k_, v in result.terms.items()
        }
        logs["train/reward/total"] = result.total.detach().float().mean()
        if self._anchor is not None:
            anchor = self.anchor_penalty()
            loss = loss + self.anchor_weight * anchor
            logs["train/anchor"] = anchor.detach()
        logs["train/exit_step"] = float(out.exit_steps[-1])
        return loss, logs
