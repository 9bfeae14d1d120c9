"""Dynamic degree, as VBench (vbench/dynamic_degree.py).

Frames (RGB, native resolution, float 0..255) are taken every ``max(1, round(fps / 8))`` frames. For each
consecutive pair, both frames are replicate-padded to a multiple of 8 (RAFT's "sintel" padder), the flow
model runs (RAFT, 20 iterations), and the pair's score is the mean of the top 5% flow magnitudes over the
*padded* field (``int(H_pad * W_pad * 0.05)`` values; NaN magnitudes skipped, as numpy's sort does).
A video is dynamic when at least ``round(4 * n / 16)`` pairs score above ``6.0 * min(H, W) / 256``, where
n is the number of *sampled frames* (VBench's code counts frames, not pairs; Python's round is
half-to-even). Dataset score: the fraction of dynamic videos.

Shape legend: f frames, h/w height/width, hp/wp padded height/width.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F

from rfvideo.eval.preprocess import VideoBatch, as_video_list, to_255
from rfvideo.eval.result import DimensionScore

# (1 3 hp wp) float 0..255, (1 3 hp wp) -> flow (1 2 hp wp)
FlowFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class RAFTFlow:
    """Adapter for a RAFT module with the original (princeton-vl / VBench third_party) call signature.

    ``model(image1, image2, iters=20, test_mode=True)`` returns ``(flow_low, flow_up)``; VBench uses
    ``flow_up``. For torchvision's ``raft_large`` (which returns a list of flows), pass
    ``lambda a, b: model(a / 127.5 - 1, b / 127.5 - 1, num_flow_updates=20)[-1]`` instead.
    """

    def __init__(self, model: torch.nn.Module, iters: int = 20) -> None:
        self.model = model
        self.iters = iters

    def __call__(self, image1: torch.Tensor, image2: torch.Tensor) -> torch.Tensor:
        return self.model(image1, image2, iters=self.iters, test_mode=True)[1]


def sampling_interval(fps: float) -> int:
    """VBench: ``max(1, round(fps / 8))`` (about 8 sampled frames per second)."""
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    return max(1, round(fps / 8))


def pad_to_multiple(x: torch.Tensor, divisor: int) -> torch.Tensor:
    """Replicate-pad ``(n c h w)`` so h and w are multiples of ``divisor``, as InputPadder."""
    h, w = x.shape[-2:]
    ph = (((h // divisor) + 1) * divisor - h) % divisor
    pw = (((w // divisor) + 1) * divisor - w) % divisor
    return F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2], mode="replicate")


def top5_flow_magnitude(flow: torch.Tensor) -> float:
    """Mean of the largest 5% of flow magnitudes of ``(1 2 h w)`` (VBench ``get_score``).

    VBench takes ``np.sort(-rad)[:k]``; numpy sorts NaN last, so NaN magnitudes are skipped while
    at least ``k`` values are not NaN (and the mean is NaN otherwise). ``torch.topk`` would rank NaN
    first, so the NaNs are dropped before ranking.
    """
    rad = flow[0].double().pow(2).sum(dim=0).sqrt().flatten()
    k = int(rad.numel() * 0.05)
    if k == 0:
        raise ValueError(f"flow field {tuple(flow.shape[-2:])} too small for a top-5% mean")
    finite = rad[~rad.isnan()]
    if finite.numel() < k:
        return float("nan")
    return finite.topk(k).values.mean().item()


# RAFT's 4-level correlation pyramid at 1/8 resolution degenerates when a padded side is 64-127 px
# (1/8 size 8-15): VBench's RAFT then returns NaN everywhere and every pair of such a video fails the
# threshold, so dynamic degree is 0 whatever the motion. Warned once per size.
_NAN_SIDE = range(64, 128)
_warned_sizes: set[tuple[int, int]] = set()


def warn_degenerate_size(height: int, width: int) -> None:
    """Warn (once per size) that VBench's RAFT returns all-NaN flow for this padded frame size."""
    if (height in _NAN_SIDE or width in _NAN_SIDE) and (height, width) not in _warned_sizes:
        _warned_sizes.add((height, width))
        warnings.warn(
            f"dynamic_degree: padded frame size {height}x{width} has a side of 64-127 px, where VBench's "
            "RAFT returns all-NaN flow: such videos always score 0 (static); score at a larger size",
            stacklevel=4,
        )


def video_is_dynamic(scores: list[float], height: int, width: int, num_frames: int) -> bool:
    """VBench ``check_move`` with ``set_params``: threshold and count from the frame size and count."""
    thres = 6.0 * (min(height, width) / 256.0)
    count_num = round(4 * (num_frames / 16.0))
    count = 0
    for s in scores:
        if s > thres:
            count += 1
        if count >= count_num:
            return True
    return False


def dynamic_degree(
    videos: VideoBatch, flow: FlowFn, fps: float | list[float], device: torch.device | str = "cpu"
) -> DimensionScore:
    """VBench dynamic degree.

    Args:
        videos: ``(b f 3 h w)`` or list of ``(f 3 h w)``; float [0, 1] or uint8.
        flow: optical-flow callable on 0..255 frames (e.g. ``RAFTFlow(raft)``).
        fps: frame rate of the videos (one value, or one per video); sets the sampling interval.
        device: where the flow model runs.

    Returns:
        Per-video 1.0 (dynamic) / 0.0 (static); aggregate = fraction of dynamic videos.
    """
    vids = as_video_list(videos)
    rates = list(fps) if isinstance(fps, (list, tuple)) else [float(fps)] * len(vids)
    if len(rates) != len(vids):
        raise ValueError(f"dynamic_degree: {len(rates)} fps values for {len(vids)} videos")
    per_video = []
    for video, rate in zip(vids, rates):
        scores, (h, w), n = pair_flow_scores(video, flow, rate, device)
        per_video.append(1.0 if video_is_dynamic(scores, h, w, n) else 0.0)
    return DimensionScore("dynamic_degree", per_video, sum(per_video) / len(per_video))


def pair_flow_scores(
    video: torch.Tensor, flow: FlowFn, fps: float, device: torch.device | str = "cpu"
) -> tuple[list[float], tuple[int, int], int]:
    """Per consecutive sampled pair, the top-5% flow magnitude (VBench's ``static_score`` list).

    Args:
        video: ``(f 3 h w)`` float [0, 1] or uint8.
        flow: optical-flow callable on padded 0..255 frames.
        fps: the video's frame rate (sampling interval).
        device: where the flow model runs.

    Returns:
        ``(scores, (h, w), number of sampled frames)``.
    """
    frames = to_255(video)[:: sampling_interval(fps)]
    h, w = frames.shape[-2:]
    scores = []
    with torch.no_grad():
        for a, b in zip(frames[:-1], frames[1:]):
            pa = pad_to_multiple(a[None], 8).to(device)
            warn_degenerate_size(*pa.shape[-2:])
            pb = pad_to_multiple(b[None], 8).to(device)
            scores.append(top5_flow_magnitude(flow(pa, pb).float().cpu()))
    return scores, (h, w), frames.shape[0]
