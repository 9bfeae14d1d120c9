"""Safe checkpoint loading: `torch.load(weights_only=True)` with errors that name the file.

A zero-byte or cut-off file (a copy that did not finish, a full disk) otherwise surfaces as a bare
`EOFError` or torch's "failed finding central directory"; here it is a `ValueError` naming the file and
saying it is truncated. A pickle that needs arbitrary code is still refused (weights_only).
"""

from __future__ import annotations

import os
import pickle
import pickletools
import zipfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["load_checkpoint"]

# torch's zip reader messages for an archive whose end (the central directory) is missing or cut.
_TRUNCATED_MARKERS = ("central directory", "failed reading zip archive", "file not found", "unexpected eof")


def _legacy_pickles_cut(path: Path) -> bool:
    """Whether a legacy (pre-zip) torch file ends inside one of its leading pickles (magic number,
    protocol, sys info, the object, the storage keys). Reads opcodes only, never runs them."""
    with open(path, "rb") as fh:
        for _ in range(5):
            try:
                for _op in pickletools.genops(fh):
                    pass
            except ValueError:  # "pickle exhausted before seeing STOP" / a cut argument
                return True
            except Exception:  # not a pickle stream at all: not a truncation question
                return False
    return False


def _looks_truncated(path: Path, error: BaseException) -> bool:
    if isinstance(error, EOFError):
        return True
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head.startswith(b"PK"):
        return not zipfile.is_zipfile(path)  # a zip (torch's format since 1.6) whose end is missing
    if _legacy_pickles_cut(path):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and any(m in text for m in _TRUNCATED_MARKERS)


def load_checkpoint(path: str | os.PathLike[str], *, map_location: str | torch.device = "cpu") -> Any:
    """Load a checkpoint written by `torch.save` (e.g. a Lightning `.ckpt`) without running code.

    Args:
        path: The checkpoint file.
        map_location: Where tensors go (default CPU).

    Returns:
        The loaded object (for Lightning checkpoints a dict with `state_dict`, ...).

    Raises:
        ValueError: The file does not exist, is a directory, is empty or truncated, or is not a torch
            checkpoint; the message names the file.
        pickle.UnpicklingError: The file needs arbitrary code to load (refused by `weights_only=True`).
    """
    p = Path(path)
    if not p.exists():
        raise ValueError(f"checkpoint not found: {str(p)!r}")
    if p.is_dir():
        raise ValueError(f"checkpoint {str(p)!r} is a directory, expected a file")
    size = p.stat().st_size
    if size == 0:
        raise ValueError(f"checkpoint {str(p)!r} is truncated: the file is empty (0 bytes)")
    try:
        return torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        # A cut legacy file can stop inside a class name ("collections.Ord"), which the weights-only
        # unpickler then refuses: ask about truncation first.
        if _looks_truncated(p, e):
            raise ValueError(f"checkpoint {str(p)!r} is truncated ({size} bytes)") from e
        if "weights only" in str(e).lower() or "weights_only" in str(e).lower():
            raise pickle.UnpicklingError(f"{p}: refused to load (needs code to unpickle): {e}") from e
        raise ValueError(f"checkpoint {str(p)!r} is not a readable torch checkpoint: {e}") from e
    except (EOFError, RuntimeError) as e:
        if _looks_truncated(p, e):
            raise ValueError(f"checkpoint {str(p)!r} is truncated ({size} bytes)") from e
        raise ValueError(f"checkpoint {str(p)!r} could not be loaded: {e}") from e
