"""What the demo measures on a video of its world: foreground, squareness, position and motion of the square.

The foreground is every pixel far from the background grey (the same distance the world's reward uses).
`shape_score` is the IoU of that foreground with the best-fitting axis-aligned square (searched over every
side length and position with a summed-area table), so 1 means "exactly one square, nothing else" and a
blob, a smear or scattered pixels score low. `centroid` is the foreground's centre of mass, `motion` the
mean distance it travels between consecutive frames (pixels/frame: the world's clips move at their speed),
`direction_match` whether its net displacement points the way the prompt says.

Legend: `b` videos, `F` frames, `n` images, `H W` pixel size, `s` square sides tried.
"""

from __future__ import annotations

import torch

__all__ = ["centroid", "direction_match", "foreground", "motion", "shape_score"]

BACKGROUND = (0.5, 0.5, 0.5)
# A pixel is foreground when it is this far (RGB distance) from the background: world colours are >= 0.5
# away in each channel they use, codec blur a few hundredths.
FOREGROUND_DISTANCE = 0.25


def foreground(images: torch.Tensor, *, threshold: float = FOREGROUND_DISTANCE) -> torch.Tensor:
    """Hard foreground mask `(n H W)` bool of images `(n 3 H W)` in [0, 1]."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (n 3 H W), got shape {tuple(images.shape)}")
    bg = torch.tensor(BACKGROUND, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return ((images - bg) ** 2).sum(1).sqrt() > threshold


def shape_score(images: torch.Tensor) -> torch.Tensor:
    """IoU `(n,)` of each image's foreground with its best-fitting axis-aligned square (0 if empty).

    For a square of side `s` at `(y, x)`, `inter` is the foreground count inside it (a box sum of the
    summed-area table), so `IoU = inter / (|fg| + s^2 - inter)`; the maximum over every `s, y, x` is exact.
    """
    fg = foreground(images).double()  # (n H W)
    n, H, W = fg.shape
    sat = torch.zeros(n, H + 1, W + 1, dtype=torch.float64, device=fg.device)
    sat[:, 1:, 1:] = fg.cumsum(1).cumsum(2)
    total = fg.sum((1, 2))  # (n,)
    best = torch.zeros(n, dtype=torch.float64, device=fg.device)
    for s in range(1, min(H, W) + 1):
        inter = sat[:, s:, s:] - sat[:, :-s, s:] - sat[:, s:, :-s] + sat[:, :-s, :-s]  # (n H-s+1 W-s+1)
        iou = inter / (total.view(n, 1, 1) + s * s - inter)
        best = torch.maximum(best, iou.flatten(1).amax(1))
    return torch.where(total > 0, best, torch.zeros_like(best)).float()


def centroid(images: torch.Tensor) -> torch.Tensor:
    """Foreground centre of mass `(n 2)` as (y, x) in pixels; NaN for an image without foreground."""
    fg = foreground(images).double()
    _, H, W = fg.shape
    ys = torch.arange(H, dtype=torch.float64, device=fg.device).view(1, H, 1)
    xs = torch.arange(W, dtype=torch.float64, device=fg.device).view(1, 1, W)
    mass = fg.sum((1, 2))
    cy = (fg * ys).sum((1, 2)) / mass
    cx = (fg * xs).sum((1, 2)) / mass
    return torch.stack([cy, cx], 1).float()  # mass 0 -> 0/0 = NaN, on purpose


def motion(video: torch.Tensor) -> torch.Tensor:
    """Mean centroid speed `(b,)` in pixels/frame of videos `(b F 3 H W)`, over frame pairs that both have a
    foreground (0 when fewer than two frames have one)."""
    if video.ndim != 5 or video.shape[1] < 2:
        raise ValueError(f"video must be (b F 3 H W) with F >= 2, got shape {tuple(video.shape)}")
    b, F = video.shape[:2]
    c = centroid(video.flatten(0, 1)).view(b, F, 2)
    step = (c[:, 1:] - c[:, :-1]).norm(dim=-1)  # (b F-1), NaN where a frame is empty
    ok = ~step.isnan()
    return torch.where(ok, step, torch.zeros_like(step)).sum(1) / ok.sum(1).clamp(min=1)


def direction_match(
    video: torch.Tensor, directions: list[tuple[int, int]], *, min_shift: float = 1.0
) -> torch.Tensor:
    """`(b,)` 1.0 where the foreground's net displacement (first to last frame with a foreground) points the
    prompt's way, else 0.0.

    "Points the prompt's way" means: the displacement along the prompt's unit direction `(dy, dx)` is at
    least `min_shift` pixels and larger than the displacement across it (so a still square, or one drifting
    sideways, does not count).
    """
    if video.ndim != 5 or video.shape[1] < 2:
        raise ValueError(f"video must be (b F 3 H W) with F >= 2, got shape {tuple(video.shape)}")
    if len(directions) != video.shape[0]:
        raise ValueError(f"got {len(directions)} directions for {video.shape[0]} videos")
    b, F = video.shape[:2]
    c = centroid(video.flatten(0, 1)).view(b, F, 2).double()
    out = torch.zeros(b)
    for i, (dy, dx) in enumerate(directions):
        seen = c[i][~c[i].isnan().any(-1)]  # (k 2) centroids of the frames with a foreground
        if len(seen) < 2:
            continue
        shift = seen[-1] - seen[0]
        along = float(shift[0] * dy + shift[1] * dx)
        across = float((shift[0] * dx - shift[1] * dy).abs())
        out[i] = float(along >= min_shift and along > across)
    return out
