"""Where the seconds of one generation went: loading, text, denoising, decoding, and the first pixel frame.

Every surface that generates (the pipeline's `__call__` and `stream`, `rfvideo generate / sample / serve`)
reports these same numbers, defined once here:

  model-only FPS     pixel frames / seconds in the generator (denoising forwards and context passes);
  end-to-end FPS     pixel frames / seconds of text encoding, generator and decode together;
  time to 1st frame  seconds from the call (or the stream's start) to the first decoded pixel frame,
                     text encoding included; loading is reported apart (`load_s`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch

__all__ = ["GenerationTimings", "sync_device"]


def sync_device(device: torch.device | str | None) -> None:
    """Wait for queued kernels before reading the clock (accelerators run asynchronously)."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class GenerationTimings:
    """Seconds per stage of one call (or stream so far), and the derived speeds."""

    load_s: float | None = None
    """Seconds to build the pipeline (None: not measured, e.g. built from objects in memory)."""
    text_s: float = 0.0
    """Prompt encoding."""
    denoise_s: float = 0.0
    """Generator forwards: denoising steps, context passes, re-caches."""
    decode_s: float = 0.0
    """Latents -> pixels."""
    first_frame_s: float | None = None
    """From the call to the first decoded pixel frame."""
    pixel_frames: int = 0
    """Pixel frames produced (per video)."""

    @property
    def model_fps(self) -> float:
        return self.pixel_frames / self.denoise_s if self.denoise_s > 0 else float("inf")

    @property
    def end_to_end_fps(self) -> float:
        total = self.text_s + self.denoise_s + self.decode_s
        return self.pixel_frames / total if total > 0 else float("inf")

    @contextmanager
    def measure(self, stage: str, device: torch.device | str | None = None) -> Iterator[None]:
        """Add the seconds of the `with` body to `<stage>_s` (synchronising `device` first and last)."""
        sync_device(device)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            sync_device(device)
            setattr(self, f"{stage}_s", getattr(self, f"{stage}_s") + time.perf_counter() - t0)

    def to_dict(self) -> dict[str, float | int | None]:
        """Plain numbers (for JSON): every field plus `model_fps` and `end_to_end_fps`."""
        return asdict(self) | {"model_fps": self.model_fps, "end_to_end_fps": self.end_to_end_fps}

    def summary(self) -> str:
        """One line for a terminal."""
        first = "n/a" if self.first_frame_s is None else f"{self.first_frame_s:.3f} s"
        load = "" if self.load_s is None else f" | load {self.load_s:.2f} s"
        return (
            f"{self.pixel_frames} pixel frames | model-only FPS {self.model_fps:.2f} | end-to-end FPS "
            f"{self.end_to_end_fps:.2f} | first pixel frame {first} from the call | "
            f"text {self.text_s:.3f} s, denoise {self.denoise_s:.3f} s, decode {self.decode_s:.3f} s{load}"
        )
