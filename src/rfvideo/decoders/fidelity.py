"""How closely one decoder reproduces another: PSNR of the student's decode against the teacher's.

Used to report a distilled (or downloaded) tiny decoder's reconstruction quality on held-out latents:
`reconstruction_psnr(student, teacher, batches)`. Both decode the same normalised latents; the teacher's
decode is the reference. PSNR per video is `10 log10(1 / mse)` on [0, 1] pixels.

Legend: `b` batch, `c` latent channels, `f` latent frames, `h w` latent size.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from rfvideo.decoders.protocol import VideoDecoder

__all__ = ["FidelityReport", "reconstruction_psnr"]


@dataclass(kw_only=True)
class FidelityReport:
    """PSNR of a student decoder against a teacher over held-out videos."""

    psnr_per_video: list[float]
    """dB, one per video, in input order."""
    mse: float
    """Mean squared error over every pixel of every video."""

    @property
    def psnr_mean(self) -> float:
        """Mean of the per-video PSNRs (dB)."""
        return sum(self.psnr_per_video) / len(self.psnr_per_video)

    @property
    def psnr_std(self) -> float:
        """Sample standard deviation of the per-video PSNRs (dB); 0 for one video."""
        n, m = len(self.psnr_per_video), self.psnr_mean
        return math.sqrt(sum((p - m) ** 2 for p in self.psnr_per_video) / (n - 1)) if n > 1 else 0.0


@torch.no_grad()
def reconstruction_psnr(
    student: VideoDecoder, teacher: VideoDecoder, batches: Iterable[torch.Tensor]
) -> FidelityReport:
    """PSNR of `student.decode(z)` against `teacher.decode(z)` for every batch `z (b c f h w)`.

    Raises:
        ValueError: No latents, or decodes of different shapes.
    """
    per_video: list[float] = []
    total, count = 0.0, 0
    for z in batches:
        ref, out = teacher.decode(z).float(), student.decode(z).float()
        if ref.shape != out.shape:
            raise ValueError(f"student decodes to {tuple(out.shape)}, the teacher to {tuple(ref.shape)}")
        err = (out - ref) ** 2
        for mse in err.flatten(1).mean(dim=1).tolist():
            per_video.append(-10.0 * math.log10(max(mse, 1e-12)))
        total, count = total + float(err.sum()), count + err.numel()
    if not per_video:
        raise ValueError("no held-out latents to compare")
    return FidelityReport(psnr_per_video=per_video, mse=total / count)
