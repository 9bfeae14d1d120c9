"""The one exception type for user errors in the `rfvideo` console script."""

from __future__ import annotations

__all__ = ["UsageError"]


class UsageError(Exception):
    """A user error (bad argument, missing file, inconsistent config) with a one-line message.

    `rfvideo.cli.main` prints `error: <message>` and returns 2; the full traceback is shown only with
    `--traceback` or `RFVIDEO_TRACEBACK=1`.
    """
