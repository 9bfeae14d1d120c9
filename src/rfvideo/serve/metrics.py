"""Server-wide counters for `GET /metrics`, updated from worker threads."""

from __future__ import annotations

import threading
import time
from typing import Any

__all__ = ["ServeMetrics"]


class ServeMetrics:
    """Thread-safe counters of one server.

    `mean_fps` is pixel frames generated per second of generation time (model + decode, summed over
    every stream): the generator's end-to-end throughput, independent of how long clients idle.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self.chunks_generated = 0
        self.frames_generated = 0
        self.generation_seconds = 0.0
        self.streams_started = 0
        self.active_streams = 0
        self.busy_rejections = 0
        self.errors = 0
        self.connections = 0
        self.slow_client_closes = 0  # connections closed for not reading their messages
        self.timeouts = 0  # streams stopped for want of an ack + connections closed for idling
        self.host_rejections = 0  # requests refused for their Host header
        self.throttled_reads = 0  # times a connection was read slower for its message rate

    def add(self, name: str, amount: int = 1) -> None:
        """Increment (or with a negative amount, decrement) one integer counter."""
        with self._lock:
            setattr(self, name, getattr(self, name) + amount)

    def record_chunk(self, frames: int, seconds: float) -> None:
        """Count one generated chunk of `frames` pixel frames that took `seconds` to make."""
        with self._lock:
            self.chunks_generated += 1
            self.frames_generated += frames
            self.generation_seconds += seconds

    def snapshot(self) -> dict[str, Any]:
        """The counters as a JSON-ready dict."""
        with self._lock:
            fps = self.frames_generated / self.generation_seconds if self.generation_seconds > 0 else 0.0
            return {
                "chunks_generated": self.chunks_generated,
                "frames_generated": self.frames_generated,
                "active_streams": self.active_streams,
                "streams_started": self.streams_started,
                "busy_rejections": self.busy_rejections,
                "errors": self.errors,
                "connections": self.connections,
                "slow_client_closes": self.slow_client_closes,
                "timeouts": self.timeouts,
                "host_rejections": self.host_rejections,
                "throttled_reads": self.throttled_reads,
                "mean_fps": round(fps, 3),
                "uptime_s": round(time.monotonic() - self._start, 3),
            }
