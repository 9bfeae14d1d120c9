"""Distil a tiny streaming decoder from a frozen Wan-family VAE: the student learns the teacher's decode.

A user with a new base (Wan2.2, a fine-tuned VAE) gets a matching fast decoder: precompute latent shards
of their videos once (`rfvideo precompute`, the existing data path), then train a `TinyVideoDecoder` to
reproduce `teacher.decode(latents)` from the same latents. The target is the teacher's decode, not the
source video, so the student copies the teacher's reconstruction (including its errors) and drops into
the same slot. Loss: mean squared error on [0, 1] pixels plus `l1_weight` x L1 (both per pixel); logged
with the PSNR against the teacher (`train/psnr`, `val/psnr`).

The teacher is frozen (no grad, eval) and left out of checkpoints (its own weights are its source);
`export_path` writes the student in the TAEHV key layout, so `build_decoder("tae", export_path,
widths=...)` loads it.

Legend: `b` batch, `c` latent channels, `f` latent frames, `h w` latent size, `F` pixel frames,
`H W` pixel size.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import einops
import lightning as L
import torch
from lightning.pytorch.cli import OptimizerCallable
from torch import nn

from rfvideo.decoders.tiny import TinyVideoDecoder

__all__ = ["DecoderDistillModule"]

_TEACHER = "teacher."


def _default_optimizer(params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.99), weight_decay=0.0)


def psnr(mse: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of a mean squared error on [0, 1] pixels."""
    return -10.0 * torch.log10(mse.clamp_min(1e-12))


class DecoderDistillModule(L.LightningModule):
    """Train `student` to reproduce `teacher.decode` on latent shards.

    Args:
        student: The decoder to train (a `TinyVideoDecoder`, normalised latent space).
        teacher: A frozen decoder in the slot (`WanVAE`, LightVAE, or any `VideoDecoder`), same latents.
        optimizer: Builds the optimizer from the student's parameters (default AdamW, lr 1e-3).
        clip_latent_frames: Latent frames per training clip: a seeded random window of each batch's
            latents, decoded by both as a video of its own (None: the whole latent video).
        l1_weight: Weight of the L1 term next to the MSE.
        seed: Seed of the window positions (step `s` draws from `seed + s`).
        latents_key: Batch field of the latents, `(b f c h w)` as the shards store them.
        export_path: Where `on_fit_end` writes the student (`.safetensors`, TAEHV layout); None: nowhere.
    """

    def __init__(
        self,
        *,
        student: TinyVideoDecoder,
        teacher: nn.Module,
        optimizer: OptimizerCallable = _default_optimizer,
        clip_latent_frames: int | None = None,
        l1_weight: float = 0.0,
        seed: int = 0,
        latents_key: str = "latents",
        export_path: str | None = None,
    ) -> None:
        super().__init__()
        if clip_latent_frames is not None and (
            isinstance(clip_latent_frames, bool)
            or not isinstance(clip_latent_frames, int)
            or clip_latent_frames < 1
        ):
            raise ValueError(f"clip_latent_frames must be None or a positive int, got {clip_latent_frames!r}")
        if not isinstance(l1_weight, (int, float)) or l1_weight < 0:
            raise ValueError(f"l1_weight must be >= 0, got {l1_weight!r}")
        for name in ("latent_channels", "temporal_factor", "spatial_factor"):
            s, t = getattr(student, name), getattr(teacher, name, None)
            if t is not None and s != t:
                raise ValueError(f"student {name}={s} differs from the teacher's {t}")
        self.student = student
        self.teacher = teacher.requires_grad_(False).eval()
        self.optimizer_fn = optimizer
        self.clip_latent_frames = clip_latent_frames
        self.l1_weight = float(l1_weight)
        self.seed = int(seed)
        self.latents_key = latents_key
        self.export_path = export_path

    def train(self, mode: bool = True) -> DecoderDistillModule:
        """Train the student only: the teacher stays in eval mode whatever Lightning asks."""
        super().train(mode)
        self.teacher.eval()
        return self

    # ---------------------------------------------------------------- data
    def _latents(self, batch: dict[str, Any], *, train: bool) -> torch.Tensor:
        """The batch's latents (b f c h w) -> the slot's (b c f h w), a seeded window when training."""
        if self.latents_key not in batch:
            raise ValueError(f"batch has no {self.latents_key!r} field (fields: {sorted(batch)})")
        z = einops.rearrange(batch[self.latents_key], "b f c h w -> b c f h w").float()
        k = self.clip_latent_frames
        if k is None or k >= z.shape[2]:
            return z
        start = 0
        if train:
            gen = torch.Generator().manual_seed(self.seed + int(self.global_step))
            start = int(torch.randint(0, z.shape[2] - k + 1, (1,), generator=gen))
        return z[:, :, start : start + k]

    def _losses(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            target = self.teacher.decode(z).float()  # (b F 3 H W) in [0, 1]
        pred = self.student.decode(z).float()
        if pred.shape != target.shape:
            raise ValueError(f"student decodes to {tuple(pred.shape)}, the teacher to {tuple(target.shape)}")
        mse = torch.mean((pred - target) ** 2)
        loss = mse + self.l1_weight * torch.mean((pred - target).abs()) if self.l1_weight else mse
        return {"loss": loss, "mse": mse.detach(), "psnr": psnr(mse.detach())}

    # ---------------------------------------------------------------- steps
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        out = self._losses(self._latents(batch, train=True))
        self.log_dict({f"train/{k}": v for k, v in out.items()}, prog_bar=True, on_step=True)
        if not math.isfinite(float(out["loss"])):
            raise FloatingPointError(f"non-finite distillation loss at step {self.global_step}")
        return out["loss"]

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        out = self._losses(self._latents(batch, train=False))
        self.log_dict({f"val/{k}": v for k, v in out.items()}, on_epoch=True, sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_fn(self.student.parameters())

    # ---------------------------------------------------------------- checkpoints and export
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Leave the frozen teacher out: it reloads from its own weights."""
        sd = checkpoint.get("state_dict", {})
        for key in [k for k in sd if k.startswith(_TEACHER)]:
            del sd[key]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Put the live teacher's weights back so the strict load sees every key."""
        sd = checkpoint.setdefault("state_dict", {})
        for key, value in self.teacher.state_dict().items():
            sd.setdefault(_TEACHER + key, value)

    def export_student(self, path: str | Path) -> Path:
        """Write the student's weights (TAEHV key layout, `.safetensors`) for `build_decoder("tae", path)`."""
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.student.state_dict().items()}, str(path))
        return path

    def on_fit_end(self) -> None:
        if self.export_path is not None and self.trainer.is_global_zero:
            self.export_student(self.export_path)
