"""Video file IO: decode with decord, encode mp4 with PyAV, frame selection and resize/center-crop.

Shapes (einops): `F` pixel frames, `H W` pixel height/width; videos are `(F 3 H W)` float in [0, 1].
Both backends are imported inside the functions, so `rfvideo.data` imports without them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path

import einops
import torch
import torch.nn.functional as F

from rfvideo.utils.video_decode import MAX_DECODED_BYTES, VideoTooLargeError, decode_frames

__all__ = [
    "VideoReadError",
    "VideoTooLargeError",
    "VideoTooShortError",
    "frame_indices",
    "read_video",
    "resize_center_crop",
    "write_video",
]


class VideoReadError(ValueError):
    """A video file is missing, corrupt or cannot be decoded."""


class VideoTooShortError(ValueError):
    """A video has fewer frames than requested."""


def frame_indices(total: int, num_frames: int, mode: str = "uniform") -> list[int]:
    """Which of `total` frames to keep.

    Args:
        total: Frames in the file.
        num_frames: Frames wanted.
        mode: "first" (the first `num_frames`) or "uniform" (evenly spaced over the whole clip,
            first and last included; this changes the apparent frame rate of long clips).

    Raises:
        VideoTooShortError: `total < num_frames`.
        ValueError: Bad `num_frames` or `mode`.
    """
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
        raise ValueError(f"num_frames must be a positive int, got {num_frames!r}")
    if mode not in ("first", "uniform"):
        raise ValueError(f"frame sampling mode must be 'first' or 'uniform', got {mode!r}")
    if total < num_frames:
        raise VideoTooShortError(f"video has {total} frames, fewer than the {num_frames} requested")
    if mode == "first" or num_frames == 1:
        return list(range(num_frames))
    # nearest frame, halves rounded up (Python's round() would round half to even)
    return [int(i * (total - 1) / (num_frames - 1) + 0.5) for i in range(num_frames)]


def resize_center_crop(video: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize `(F 3 H W)` so it covers `height x width` (scale by the limiting side), then center-crop.

    For a target of the clip's aspect ratio this is a plain resize; otherwise the short side (relative
    to the target) is matched and the long side cropped, so no frame is distorted or padded.
    """
    if video.ndim != 4 or video.shape[1] != 3:
        raise ValueError(f"video must be (F 3 H W), got shape {tuple(video.shape)}")
    for name, v in (("height", height), ("width", width)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    h, w = video.shape[-2:]
    scale = max(height / h, width / w)
    new_h, new_w = max(height, round(h * scale)), max(width, round(w * scale))
    if (new_h, new_w) != (h, w):
        # antialias: downscaling high-res sources without it aliases fine texture
        video = F.interpolate(
            video, size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False
        )
    top, left = (new_h - height) // 2, (new_w - width) // 2
    return video[:, :, top : top + height, left : left + width].clamp(0.0, 1.0)


def read_video(
    path: str | os.PathLike[str],
    *,
    num_frames: int | None = None,
    sampling: str = "uniform",
    height: int | None = None,
    width: int | None = None,
    max_bytes: int = MAX_DECODED_BYTES,
) -> torch.Tensor:
    """Decode a video file to `(F 3 H W)` float in [0, 1] with decord.

    Args:
        path: Video file (mp4 or anything ffmpeg reads).
        num_frames: Frames to keep (see `frame_indices`); None keeps all.
        sampling: "uniform" or "first".
        height, width: If both given, resize + center-crop to this size.
        max_bytes: Most uint8 bytes the decoded frames may take, checked from the container header
            before decoding (`rfvideo.utils.video_decode`).

    Raises:
        VideoReadError: Missing, corrupt or undecodable file, or decord not installed.
        VideoTooShortError: Fewer than `num_frames` frames.
        VideoTooLargeError: The decoded frames would exceed `max_bytes` (a ValueError).
    """
    p = Path(path)
    if not p.is_file():
        raise VideoReadError(f"video file not found: {str(p)!r}")
    if (height is None) != (width is None):
        raise ValueError(f"give both height and width or neither, got {height!r} x {width!r}")

    if num_frames is not None:
        frame_indices(num_frames, num_frames, sampling)  # argument errors stay plain ValueErrors

    def pick(total: int) -> list[int]:
        if total < 1:
            raise VideoReadError(f"video {str(p)!r} has no frames")
        return list(range(total)) if num_frames is None else frame_indices(total, num_frames, sampling)

    try:
        import av
        from decord._ffi.base import DECORDError
    except ImportError as e:  # pragma: no cover - decord2 / av are dependencies
        raise VideoReadError(f"reading video needs decord and av: {e}") from e
    try:
        # header checked against max_bytes first; decoded in pieces (PyAV for widths decord2 cannot do)
        frames, _ = decode_frames(p, pick, max_bytes=max_bytes)  # (F H W 3) uint8
    except (VideoReadError, VideoTooShortError, VideoTooLargeError):
        raise
    except (DECORDError, av.error.FFmpegError, RuntimeError, OSError, ValueError) as e:
        # a corrupt or undecodable file (other errors, e.g. MemoryError, are not the file's fault)
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise VideoReadError(f"cannot decode {str(p)!r}: {type(e).__name__}: {first}") from e
    video = einops.rearrange(torch.from_numpy(frames), "F H W C -> F C H W").float() / 255.0
    if height is not None and width is not None:
        video = resize_center_crop(video, height, width)
    return video


def write_video(
    path: str | os.PathLike[str],
    video: torch.Tensor,
    fps: float = 16.0,
    *,
    crf: int | None = None,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Encode `(F 3 H W)` in [0, 1] as H.264 mp4 (yuv420p, plays everywhere) with PyAV.

    The file is written under a temporary name and moved into place, so readers never see half a file.

    Args:
        path: Output file (its parent is created).
        video: (F 3 H W) float in [0, 1] (clamped) or uint8; H and W must be even (yuv420p).
        fps: Frame rate.
        crf: x264 constant rate factor (0 lossless-ish .. 51 worst; None: x264's default 23).
        metadata: container tags (the mp4 muxer keeps standard keys such as "comment" and "title").

    Returns:
        The written path.
    """
    import av

    if video.ndim != 4 or video.shape[1] != 3 or video.shape[0] < 1:
        raise ValueError(f"video must be (F 3 H W) with F >= 1, got shape {tuple(video.shape)}")
    h, w = video.shape[-2:]
    if h % 2 or w % 2:
        raise ValueError(f"yuv420p needs even height and width, got {h}x{w}")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps!r}")
    if video.dtype != torch.uint8:
        video = (video.detach().float().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
    frames = einops.rearrange(video.cpu(), "F C H W -> F H W C").contiguous().numpy()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    container = av.open(str(tmp), mode="w", format="mp4")
    try:
        for key, value in (metadata or {}).items():
            container.metadata[str(key)] = str(value)
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = int(w), int(h), "yuv420p"
        if crf is not None:
            stream.options = {"crf": str(int(crf))}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():  # flush the encoder
            container.mux(packet)
    except BaseException:
        container.close()
        tmp.unlink(missing_ok=True)  # an interrupted write leaves nothing behind
        raise
    container.close()
    os.replace(tmp, out)
    return out
