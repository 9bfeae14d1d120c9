"""Checks run on a parsed config before any weights load (at real size a load takes minutes).

Each check raises `UsageError` with one line naming the offending value.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

from rfvideo.cli.errors import UsageError

__all__ = ["preflight_checkpoint", "preflight_config"]


def preflight_checkpoint(path: str | os.PathLike[str], *, option: str = "--ckpt") -> None:
    """A checkpoint file exists, is not empty, and (for torch's zip format) is not cut short.

    Reads the zip directory only, never the tensors.
    """
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{option}: no such file: {str(p)!r}")
    if p.is_dir():
        raise UsageError(f"{option}: {str(p)!r} is a directory, expected a checkpoint file")
    size = p.stat().st_size
    if size == 0:
        raise UsageError(f"{option}: checkpoint {str(p)!r} is truncated: the file is empty (0 bytes)")
    with open(p, "rb") as fh:
        head = fh.read(2)
    if head == b"PK" and not zipfile.is_zipfile(p):
        raise UsageError(
            f"{option}: checkpoint {str(p)!r} is truncated ({size} bytes; its zip directory is missing)"
        )


def preflight_config(config: Any) -> None:
    """Check a parsed LightningCLI config (one subcommand's namespace) before it is instantiated."""
    del config
