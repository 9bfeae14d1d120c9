"""Prompt sets: txt / jsonl / csv files, a prompt dataset, and the join with precomputed embeddings.

Shapes (einops): `b` prompts, `n` text tokens, `d` text width.

Formats (chosen by suffix):
- `.txt`: one prompt per line.
- `.jsonl`: one JSON object per line, the prompt under `field` (default "prompt").
- `.csv`: a header row, the prompt in column `field` (default "prompt"; VidProM lists use "prompt").
Empty prompts (blank lines, empty or whitespace-only fields) are skipped and counted by default
(`on_empty="skip"`, a warning gives the count), or raise with `on_empty="error"`. Files are UTF-8 (a
leading byte-order mark is dropped); any other encoding is an error naming the file and line.
"""

from __future__ import annotations

import csv
import io
import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

__all__ = ["EmbeddingLookup", "LoadedPrompts", "PromptDataset", "load_prompts"]


class EmbeddingLookup(Protocol):
    """Anything with `get(prompts) -> (embeds (b n d), mask (b n))`, e.g. `PromptEmbeddingStore`."""

    def get(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]: ...


@dataclass(kw_only=True)
class LoadedPrompts:
    """Result of `load_prompts`."""

    prompts: list[str]
    """Non-empty prompts, stripped, in file order (duplicates kept)."""
    num_skipped: int
    """Empty prompts that were skipped."""
    source: str
    """The file read."""


def _read_text(path: Path) -> str:
    """The file as UTF-8 text, a leading byte-order mark dropped (Windows editors write one).

    Raises:
        ValueError: The file is not UTF-8; names the file, the line and the byte.
    """
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise ValueError(
            f"{path}:{line}: not UTF-8 text (byte 0x{data[e.start]:02x} at column {column}); "
            "re-save the file as UTF-8"
        ) from None


def _rows(path: Path, field: str) -> list[tuple[int, Any]]:
    """(line number, raw value) per record."""
    suffix = path.suffix.lower()
    if suffix not in (".txt", ".jsonl", ".csv"):
        raise ValueError(f"unsupported prompt file {str(path)!r}: expected .txt, .jsonl or .csv")
    with io.StringIO(_read_text(path), newline="") as fh:
        if suffix == ".txt":
            return [(i + 1, line.rstrip("\r\n")) for i, line in enumerate(fh)]
        if suffix == ".jsonl":
            out = []
            for i, line in enumerate(fh):
                if not line.strip():
                    out.append((i + 1, ""))
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{i + 1}: invalid JSON ({e})") from e
                if not isinstance(record, dict) or field not in record:
                    raise ValueError(f"{path}:{i + 1}: no field {field!r} in {line.strip()[:80]!r}")
                out.append((i + 1, record[field]))
            return out
        if suffix == ".csv":
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or field not in reader.fieldnames:
                raise ValueError(f"{path}: no column {field!r} (columns: {reader.fieldnames})")
            return [(reader.line_num, row[field]) for row in reader]
    raise ValueError(f"unsupported prompt file {str(path)!r}: expected .txt, .jsonl or .csv")


def load_prompts(
    path: str | os.PathLike[str], *, field: str = "prompt", on_empty: str = "skip"
) -> LoadedPrompts:
    """Read a prompt file.

    Args:
        path: A `.txt`, `.jsonl` or `.csv` file.
        field: JSON field / CSV column holding the prompt (ignored for `.txt`).
        on_empty: "skip" (count and warn) or "error" (raise, naming the line).

    Returns:
        The prompts and the number skipped.

    Raises:
        ValueError: Unknown format, missing field/column, a non-string prompt, or an empty prompt with
            `on_empty="error"`.
    """
    if on_empty not in ("skip", "error"):
        raise ValueError(f"on_empty must be 'skip' or 'error', got {on_empty!r}")
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"prompt file not found: {str(p)!r}")
    prompts: list[str] = []
    skipped = 0
    for line, value in _rows(p, field):
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise ValueError(f"{p}:{line}: prompt must be a string, got {value!r}")
        text = value.strip()
        if not text:
            if on_empty == "error":
                raise ValueError(f"{p}:{line}: empty prompt")
            skipped += 1
            continue
        prompts.append(text)
    if skipped:
        warnings.warn(f"{p}: skipped {skipped} empty prompt(s)", stacklevel=2)
    return LoadedPrompts(prompts=prompts, num_skipped=skipped, source=str(p))


class PromptDataset(torch.utils.data.Dataset):
    """Map-style dataset of prompts: item i is `{"prompt": str}`.

    Args:
        prompts: Non-empty prompt strings.
    """

    def __init__(self, prompts: Sequence[str]) -> None:
        for i, p in enumerate(prompts):
            if not isinstance(p, str) or not p.strip():
                raise ValueError(f"prompt {i} must be a non-empty string, got {p!r}")
        self.prompts = list(prompts)

    def __len__(self) -> int:
        return len(self.prompts)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"prompt": self.prompts[index]}
