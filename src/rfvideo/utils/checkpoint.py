"""Safe checkpoint loading: `torch.load(weights_only=True)` with errors that name the file.

A zero-byte or cut-off file (a copy that did not finish, a full disk) otherwise surfaces as a bare
`EOFError` or torch's "failed finding central directory"; here it is a `ValueError` naming the file and
saying it is truncated. A pickle that needs arbitrary code is still refused (weights_only), in one line.

Before torch reads a zip-format checkpoint (torch's format since 1.6), `check_archive` reads its
directory: contents declared far larger than the file (compressed members: torch stores tensors
uncompressed, so only a crafted archive inflates) are refused before anything is inflated; then every
member's CRC-32 is checked in 1 MiB pieces, so flipped bits inside a tensor are an error, not wrong
weights. Files that are neither zip nor pickle (a text file, a safetensors file) are named as such.
"""

from __future__ import annotations

import os
import pickle
import pickletools
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["UnsafeCheckpointError", "check_archive", "load_checkpoint"]

# torch's zip reader messages for an archive whose end (the central directory) is missing or cut.
_TRUNCATED_MARKERS = ("central directory", "failed reading zip archive", "file not found", "unexpected eof")
# Declared contents may exceed the file by this factor plus slack (directory, padding) and no more:
# torch writes every member stored (uncompressed), so its archives declare about their own size.
_MAX_INFLATION = 2
_INFLATION_SLACK = 2**20
_PIECE = 2**20
_PICKLE_PROTO = 0x80  # pickle protocol >= 2 starts with PROTO; legacy torch files are such pickles


class UnsafeCheckpointError(pickle.UnpicklingError, ValueError):
    """A checkpoint whose pickle needs code to load (refused by `weights_only=True`).

    Both an `UnpicklingError` (what torch raises, and what callers catch) and a `ValueError` (what the
    CLI reports as one `error:` line).
    """


def check_archive(path: str | os.PathLike[str], *, verify_crc: bool = True) -> None:
    """Check a checkpoint file's container before torch reads it (no tensor is built).

    Args:
        path: An existing, non-empty file.
        verify_crc: Also read every zip member (in 1 MiB pieces) and compare its CRC-32 with the
            directory's; members whose recorded CRC is 0 (CRC writing turned off) are not checked.

    Raises:
        ValueError: Not a torch checkpoint (neither zip nor pickle); a zip whose members declare more
            than twice the file's size (a compressed archive, refused before inflating); a member whose
            CRC does not match (flipped bits). One line naming the file (and the member).
    """
    p = Path(path)
    size = p.stat().st_size
    with open(p, "rb") as fh:
        head = fh.read(4)
    if not head.startswith(b"PK"):
        if not head or head[0] != _PICKLE_PROTO:
            raise ValueError(
                f"checkpoint {str(p)!r} is not a torch checkpoint (neither torch's zip format nor a pickle)"
            )
        return  # a legacy pickle: no checksums to check
    if not zipfile.is_zipfile(p):
        return  # cut short: load_checkpoint names the truncation
    try:
        with zipfile.ZipFile(p) as zf:
            infos = zf.infolist()
            declared = sum(i.file_size for i in infos)
            if declared > _MAX_INFLATION * size + _INFLATION_SLACK:
                raise ValueError(
                    f"checkpoint {str(p)!r} declares {declared / 2**20:.1f} MiB of contents in a "
                    f"{size / 2**20:.1f} MiB archive (compressed members; torch stores tensors "
                    "uncompressed): refusing to inflate it"
                )
            if not verify_crc:
                return
            for info in infos:
                if info.is_dir() or (info.CRC == 0 and info.file_size > 0):
                    continue
                with zf.open(info) as member:  # zipfile compares the CRC when the member is read out
                    while member.read(_PIECE):
                        pass
    except zipfile.BadZipFile as e:
        member = re.search(r"for file '?([^']+)'?", str(e))
        where = f" in member {member.group(1)!r}" if member else ""
        raise ValueError(
            f"checkpoint {str(p)!r} is corrupt: {str(e).splitlines()[0]}{where} (CRC-32 mismatch or a "
            "damaged archive: a bad copy or flipped bits; its weights cannot be trusted)"
        ) from None


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


def load_checkpoint(
    path: str | os.PathLike[str], *, map_location: str | torch.device = "cpu", verify: bool = True
) -> Any:
    """Load a checkpoint written by `torch.save` (e.g. a Lightning `.ckpt`) without running code.

    Args:
        path: The checkpoint file.
        map_location: Where tensors go (default CPU).
        verify: Check the archive first (`check_archive`: size declared by its directory, CRC-32 of
            every member). Costs one extra read of the file.

    Returns:
        The loaded object (for Lightning checkpoints a dict with `state_dict`, ...).

    Raises:
        ValueError: The file does not exist, is a directory, is empty, truncated or corrupt (CRC), would
            inflate far beyond its size, or is not a torch checkpoint; the message names the file.
        UnsafeCheckpointError: The file needs arbitrary code to load (refused by `weights_only=True`);
            a `pickle.UnpicklingError` and a `ValueError`.
    """
    p = Path(path)
    if not p.exists():
        raise ValueError(f"checkpoint not found: {str(p)!r}")
    if p.is_dir():
        raise ValueError(f"checkpoint {str(p)!r} is a directory, expected a file")
    size = p.stat().st_size
    if size == 0:
        raise ValueError(f"checkpoint {str(p)!r} is truncated: the file is empty (0 bytes)")
    check_archive(p, verify_crc=verify)
    try:
        return torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        # A cut legacy file can stop inside a class name ("collections.Ord"), which the weights-only
        # unpickler then refuses: ask about truncation first.
        if _looks_truncated(p, e):
            raise ValueError(f"checkpoint {str(p)!r} is truncated ({size} bytes)") from e
        if "weights only" in str(e).lower() or "weights_only" in str(e).lower():
            what = re.search(r"unsupported (?:global: )?GLOBAL ([\w.]+)", str(e), flags=re.IGNORECASE)
            detail = f" (it calls {what.group(1)})" if what else ""
            raise UnsafeCheckpointError(
                f"checkpoint {str(p)!r} refused: it needs code to load, which weights_only=True forbids"
                f"{detail}; load only files you trust with torch.load directly"
            ) from e
        raise ValueError(f"checkpoint {str(p)!r} is not a readable torch checkpoint: {e}") from e
    except (EOFError, RuntimeError) as e:
        if _looks_truncated(p, e):
            raise ValueError(f"checkpoint {str(p)!r} is truncated ({size} bytes)") from e
        raise ValueError(f"checkpoint {str(p)!r} could not be loaded: {e}") from e
