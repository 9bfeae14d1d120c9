"""An mp4 written while the video is generated: each chunk's frames are encoded and muxed as they arrive.

Same encoding as `rfvideo.data.video_io.write_video` (H.264 via PyAV, yuv420p, the frame rate as a
rational), so a video streamed chunk by chunk gives the same file, byte for byte, as the whole video
written at once. The file is written under a temporary name and moved into place on `close()`, so readers
never see half a file; an exception inside `with` removes it.

Legend: `F` pixel frames, `H W` pixel height/width.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import einops
import torch

__all__ = ["Mp4StreamWriter"]


class Mp4StreamWriter:
    """Incremental H.264 mp4 writer: `write(frames)` per chunk, then `close()` (or use it as a context).

    Args:
        path: Output file (its parent is created).
        fps: Frame rate.
        crf: x264 constant rate factor (None: x264's default 23).
        metadata: Container tags (e.g. "comment").

    Raises:
        ValueError: a non-positive `fps`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fps: float = 16.0,
        crf: int | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps!r}")
        self.path = Path(path)
        self.fps = float(fps)
        self.crf = crf
        self.metadata = dict(metadata or {})
        self.frames_written = 0
        self._tmp = self.path.with_name(self.path.name + ".tmp")
        self._container: Any = None
        self._stream: Any = None
        self._size: tuple[int, int] | None = None
        self._closed = False

    def _open(self, h: int, w: int) -> None:
        import av

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._container = av.open(str(self._tmp), mode="w", format="mp4")
        for key, value in self.metadata.items():
            self._container.metadata[str(key)] = str(value)
        stream = self._container.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = int(w), int(h), "yuv420p"
        if self.crf is not None:
            stream.options = {"crf": str(int(self.crf))}
        self._stream = stream
        self._size = (h, w)

    def write(self, frames: torch.Tensor) -> None:
        """Encode and mux `frames (F 3 H W)` (float in [0, 1], clamped, or uint8) after those already written.

        Raises:
            ValueError: wrong shape, odd height/width (yuv420p), a size other than the first chunk's, or a
                closed writer.
        """
        import av

        if self._closed:
            raise ValueError(f"{self.path}: writer already closed")
        if frames.ndim != 4 or frames.shape[1] != 3 or frames.shape[0] < 1:
            raise ValueError(f"frames must be (F 3 H W) with F >= 1, got shape {tuple(frames.shape)}")
        h, w = int(frames.shape[-2]), int(frames.shape[-1])
        if h % 2 or w % 2:
            raise ValueError(f"yuv420p needs even height and width, got {h}x{w}")
        if self._size is None:
            self._open(h, w)
        elif (h, w) != self._size:
            raise ValueError(f"frame size {h}x{w} differs from the stream's {self._size[0]}x{self._size[1]}")
        if frames.dtype != torch.uint8:
            frames = (frames.detach().float().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
        rgb = einops.rearrange(frames.cpu(), "F C H W -> F H W C").contiguous().numpy()
        try:
            for frame in rgb:
                for packet in self._stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    self._container.mux(packet)
        except BaseException:
            self.abort()
            raise
        self.frames_written += len(rgb)

    def close(self) -> Path:
        """Flush the encoder and move the finished file into place; returns its path.

        Raises:
            ValueError: nothing was written (an mp4 needs at least one frame).
        """
        if self._closed:
            return self.path
        if self._container is None:
            self._closed = True
            raise ValueError(f"{self.path}: no frames written")
        try:
            for packet in self._stream.encode():  # flush the encoder's delayed frames
                self._container.mux(packet)
        except BaseException:
            self.abort()
            raise
        self._container.close()
        self._closed = True
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Stop without a file: close the container and remove the partial temporary file."""
        if self._container is not None and not self._closed:
            try:
                self._container.close()
            except Exception:  # noqa: BLE001 - a broken container must not hide the original error
                pass
        self._closed = True
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> Mp4StreamWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
