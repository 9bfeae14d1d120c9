"""SHA-256 digests of the safetensors files of a folder: record them at export, verify them at load.

safetensors has no checksum of its own: a flipped bit inside a tensor loads as a wrong weight. An exported
folder's index records `{relative path: sha256 hex}`; `verify_digests` re-hashes each file (in 1 MiB
pieces) and names the first that differs. Paths are relative to the folder and may not leave it.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath

__all__ = ["file_sha256", "record_digests", "verify_digests"]

_PIECE = 2**20
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file as 64 lower-case hex digits, read in 1 MiB pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while piece := fh.read(_PIECE):
            h.update(piece)
    return h.hexdigest()


def _inside(folder: Path, name: str) -> Path:
    rel = PurePosixPath(name)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts or "\x00" in name:
        raise ValueError(f"digest index names {name!r}, a path outside the folder {str(folder)!r}")
    return folder.joinpath(*rel.parts)


def record_digests(
    folder: str | os.PathLike[str], files: Iterable[str] | None = None, *, pattern: str = "*.safetensors"
) -> dict[str, str]:
    """Hash files of `folder` for its index.

    Args:
        folder: The exported folder.
        files: Paths relative to `folder` (POSIX separators); None: every file matching `pattern` below it.
        pattern: Glob of the files hashed when `files` is None.

    Returns:
        `{relative POSIX path: sha256 hex}`, sorted by path (JSON-ready).
    """
    root = Path(folder)
    if files is None:
        names = [p.relative_to(root).as_posix() for p in root.rglob(pattern) if p.is_file()]
    else:
        names = list(files)
    return {name: file_sha256(_inside(root, name)) for name in sorted(names)}


def verify_digests(folder: str | os.PathLike[str], index: Mapping[str, str]) -> None:
    """Check every file `index` lists against its recorded SHA-256.

    Args:
        folder: The folder the paths are relative to.
        index: `{relative POSIX path: sha256 hex}` as `record_digests` returns it.

    Raises:
        ValueError: A path leaves the folder, a digest is not 64 hex digits, a file is missing, or a
            file's SHA-256 differs (one line naming the file).
    """
    root = Path(folder)
    for name, want in sorted(index.items()):
        path = _inside(root, name)
        if not isinstance(want, str) or not _HEX64.match(want.lower()):
            raise ValueError(f"digest index: the SHA-256 of {name!r} is not 64 hex digits")
        if not path.is_file():
            raise ValueError(f"{name!r} is missing from {str(root)!r} (its digest is recorded in the index)")
        got = file_sha256(path)
        if got != want.lower():
            raise ValueError(
                f"{name!r} in {str(root)!r} does not match its recorded SHA-256 (recorded {want[:12]}..., "
                f"file {got[:12]}...): the file was changed or damaged; re-export or re-copy it"
            )
