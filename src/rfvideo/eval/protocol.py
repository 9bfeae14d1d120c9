"""The sampling protocol of a VBench video folder: ``protocol.json`` and a tag inside every mp4.

Everything that changes a video for a given prompt and index (checkpoint bytes, config, prompt files,
extended prompts or not, seeds, frames, resolution, fps, decode dtype, package versions) goes into the
protocol; its SHA-256 over canonical JSON is the protocol id. ``rfvideo sample`` writes ``protocol.json``
beside the videos and the id into each mp4's "comment" tag, refuses to add videos of another protocol to
a folder, and scoring (``check_folder_protocol``) refuses a folder whose videos carry different ids.
Which dimensions were sampled is recorded but is not part of the id (sampling more dimensions later adds
prompts under the same protocol).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

PROTOCOL_FILE = "protocol.json"
TAG_KEY = "comment"
TAG_PREFIX = "rfvideo-protocol:"


class ProtocolMismatchError(ValueError):
    """Videos of two sampling protocols would be (or are) mixed in one folder."""


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file's bytes (streamed)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def package_versions(names: Sequence[str] = ("rfvideo", "torch", "diffusers", "transformers", "av")) -> dict:
    """Installed versions of the packages that change a sampled video (None if not installed)."""
    import importlib.metadata as md

    out: dict[str, str | None] = {}
    for n in names:
        try:
            out[n] = md.version(n)
        except md.PackageNotFoundError:
            out[n] = None
    return out


def protocol_id(protocol: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of ``protocol`` (sorted keys, no whitespace), first 16 hex digits."""
    text = json.dumps(protocol, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def video_tag(pid: str) -> dict[str, str]:
    """The mp4 metadata that marks a video as sampled under protocol ``pid``."""
    return {TAG_KEY: TAG_PREFIX + pid}


def read_video_tag(path: str | os.PathLike) -> str | None:
    """The protocol id stored in an mp4 (None when the file carries none)."""
    import av

    with av.open(os.fspath(path)) as c:
        value = c.metadata.get(TAG_KEY, "")
    return value[len(TAG_PREFIX) :] if value.startswith(TAG_PREFIX) else None


def read_protocol(folder: str | os.PathLike) -> dict[str, Any] | None:
    """``protocol.json`` of ``folder`` (None when absent); checks that its id matches its content."""
    p = Path(folder) / PROTOCOL_FILE
    if not p.is_file():
        return None
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{p}: not a valid protocol file ({e})") from e
    if not isinstance(data, dict) or "protocol" not in data or "protocol_id" not in data:
        raise ValueError(f"{p}: not a protocol file (needs 'protocol' and 'protocol_id')")
    if protocol_id(data["protocol"]) != data["protocol_id"]:
        raise ValueError(f"{p}: protocol_id does not match its protocol (the file was edited)")
    return data


def write_protocol(folder: str | os.PathLike, protocol: Mapping[str, Any], dimensions: Sequence[str]) -> str:
    """Write (or extend) ``protocol.json``; returns the protocol id.

    Raises:
        ValueError: the folder already holds a protocol with another id (videos would be mixed).
    """
    root = Path(folder)
    pid = protocol_id(protocol)
    old = read_protocol(root)
    if old is not None and old["protocol_id"] != pid:
        changed = sorted(
            k
            for k in set(old["protocol"]) | set(protocol)
            if old["protocol"].get(k) != protocol.get(k)  # type: ignore[union-attr]
        )
        raise ProtocolMismatchError(
            f"{root} holds videos of another sampling protocol ({old['protocol_id']}; differs in "
            f"{', '.join(changed)}): use a new output folder"
        )
    dims = sorted(set(old["dimensions"] if old else ()) | set(dimensions))
    data = {"protocol_id": pid, "protocol": dict(protocol), "dimensions": dims}
    if old is not None and "video" in old:
        data["video"] = old["video"]
    _write(root, data)
    return pid


def _write(root: Path, data: Mapping[str, Any]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{PROTOCOL_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, root / PROTOCOL_FILE)


def record_video_format(folder: str | os.PathLike, frames: int, height: int, width: int) -> None:
    """Store the videos' frames and resolution in ``protocol.json`` (the config fixes them, so they are
    recorded, not hashed); a later run producing another format is refused.

    Raises:
        ProtocolMismatchError: the folder's videos have another frame count or resolution.
    """
    root = Path(folder)
    data = read_protocol(root)
    if data is None:
        raise ValueError(f"{root}: no {PROTOCOL_FILE} to record the video format in")
    fmt = {"frames": int(frames), "height": int(height), "width": int(width)}
    if data.get("video") not in (None, fmt):
        raise ProtocolMismatchError(
            f"{root}: its videos are {data['video']}, this run makes {fmt}: use a new output folder"
        )
    if data.get("video") is None:
        _write(root, {**data, "video": fmt})


def check_folder_protocol(folder: str | os.PathLike, files: Sequence[Path]) -> dict[str, Any] | None:
    """Refuse a folder whose videos were sampled under different protocols.

    A folder with ``protocol.json``: every video must carry its id. Without one: videos may carry no tag
    (videos from elsewhere), but all tagged videos must agree.

    Returns:
        ``protocol.json``'s content, ``{"protocol_id": id}`` for agreeing tags without a file, or None.

    Raises:
        ValueError: naming a file of each protocol.
    """
    declared = read_protocol(folder)
    tags = {f.name: read_video_tag(f) for f in files}
    if declared is not None:
        pid = declared["protocol_id"]
        bad = [(n, t) for n, t in tags.items() if t != pid]
        if bad:
            name, tag = bad[0]
            raise ProtocolMismatchError(
                f"{folder}: {name} was sampled under protocol {tag or 'unknown (no tag)'}, not "
                f"{PROTOCOL_FILE}'s {pid} ({len(bad)} such file(s)); refusing to mix protocols"
            )
        return declared
    seen: dict[str, str] = {}
    for n, t in tags.items():
        if t is not None:
            seen.setdefault(t, n)
    if len(seen) > 1:
        (a, fa), (b, fb) = list(seen.items())[:2]
        raise ProtocolMismatchError(
            f"{folder}: {fa} (protocol {a}) and {fb} (protocol {b}) mix sampling protocols"
        )
    return {"protocol_id": next(iter(seen))} if seen else None
