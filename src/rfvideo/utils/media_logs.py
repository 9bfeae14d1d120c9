"""Quiet the native video libraries while reading many videos.

decord's bundled ffmpeg and its C++ reader print lines such as "moov atom not found" / "ERROR opening"
straight to the process's stderr for every unreadable file; `precompute` already lists each such video
with its reason in its report, so those lines are noise that buries the progress bar.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

__all__ = ["quiet_media_logs", "silence_native_stderr"]


def quiet_media_logs() -> None:
    """Set ffmpeg's log level to quiet in decord and PyAV (process-wide, idempotent)."""
    try:
        import decord

        decord.logging.set_level(decord.logging.QUIET)
    except (ImportError, AttributeError):  # decord is optional at this layer; PyAV is the fallback
        pass
    try:
        import av.logging

        av.logging.set_level(None)  # PyAV >= 13: None turns ffmpeg's logging off
    except (ImportError, AttributeError):
        pass


@contextlib.contextmanager
def silence_native_stderr() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for the duration (C/C++ writes that bypass `sys.stderr`).

    Python exceptions raised inside still propagate with their message; only text written to the
    stream meanwhile is dropped.
    """
    fd = 2  # native code writes to descriptor 2 whatever `sys.stderr` has been replaced with
    sys.stderr.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), fd)
            try:
                yield
            finally:
                os.dup2(saved, fd)
    finally:
        os.close(saved)
