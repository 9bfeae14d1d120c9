"""Precomputed prompt embeddings: safetensors shards plus a JSON index, and a reader.

Shapes (einops): `b` prompts, `k` prompts in a shard, `n` tokens (the encoder's `max_length`), `l` tokens kept
in a shard (its longest prompt), `d` text width.

Layout of a store directory:
```
index.json                 {"version", "max_length", "dim", "dtype", "shard_size",
                            "shards": {file: [prompt, ...]}, "prompts": {prompt: [file, row]}}
shard_00000.safetensors    embeds (k l d), lengths (k,) int64
```
Wan's embeddings are zero after each prompt's tokens, so a shard stores only its first `l` token rows
(l = longest prompt in the shard) and the reader pads back to `n` with zeros: about 10-20x smaller than
storing 512 rows per prompt. Prompts are keyed by their cleaned text (`clean_prompt`), the text the
encoder actually sees. Every file is written to a temporary name and moved into place with
`os.replace`, so an interrupted run leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm

from rfvideo.models.text_encoder import TextEncoder, clean_prompt, validate_prompts

__all__ = ["PromptEmbeddingStore", "precompute_prompt_embeddings"]

INDEX_NAME = "index.json"
_VERSION = 1


def _atomic_write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, ensure_ascii=False, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _atomic_save_safetensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
    os.replace(tmp, path)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def precompute_prompt_embeddings(
    encoder: TextEncoder,
    prompts: Sequence[str],
    out_dir: str | os.PathLike[str],
    *,
    shard_size: int = 256,
    batch_size: int = 16,
    dtype: torch.dtype | None = None,
    progress: bool = True,
) -> Path:
    """Encode every prompt once and write them to `out_dir` as shards plus `index.json`.

    Prompts are cleaned and de-duplicated (first occurrence wins) and cut into shards of `shard_size`
    in order. Re-running with the same prompts, shard size and encoder settings resumes: a shard whose
    file exists and whose prompt list the index records unchanged is skipped.

    Args:
        encoder: The frozen text encoder.
        prompts: Prompt set (non-blank strings).
        out_dir: Directory of the store (created if missing).
        shard_size: Prompts per shard file.
        batch_size: Prompts per encoder call.
        dtype: Storage dtype (default: the encoder's dtype; bf16 halves the size of fp32).
        progress: Show a tqdm bar over prompts.

    Returns:
        `out_dir` as a Path.

    Raises:
        ValueError: Bad prompts or sizes, or `out_dir` holds a store made with other settings.
    """
    for name, v in (("shard_size", shard_size), ("batch_size", batch_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    validate_prompts(prompts)
    unique = list(dict.fromkeys(clean_prompt(p) for p in prompts))
    dtype = dtype or encoder.dtype
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    settings = {
        "version": _VERSION,
        "max_length": encoder.max_length,
        "dim": encoder.dim,
        "dtype": _dtype_name(dtype),
        "shard_size": shard_size,
    }
    index: dict[str, Any] = {**settings, "shards": {}, "prompts": {}}
    index_path = out / INDEX_NAME
    if index_path.exists():
        old = json.loads(index_path.read_text(encoding="utf-8"))
        clash = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
        if clash:
            raise ValueError(f"{out} holds a store made with other settings (old, new): {clash}")
        index["shards"] = old.get("shards", {})

    chunks = [unique[i : i + shard_size] for i in range(0, len(unique), shard_size)]
    names = [f"shard_{i:05d}.safetensors" for i in range(len(chunks))]
    done = [index["shards"].get(n) == c and (out / n).exists() for n, c in zip(names, chunks)]
    # Shards of an earlier, different plan are forgotten (their files get overwritten when recomputed).
    index["shards"] = {n: c for n, c, d in zip(names, chunks, done) if d}
    bar = tqdm(
        total=len(unique),
        initial=sum(len(c) for c, d in zip(chunks, done) if d),
        desc="prompt embeddings",
        unit="prompt",
        disable=not progress,
    )
    try:
        for name, chunk, finished in zip(names, chunks, done):
            if finished:
                continue
            embs, lengths = [], []
            for i in range(0, len(chunk), batch_size):
                emb, mask = encoder.encode(chunk[i : i + batch_size])  # (b n d), (b n)
                embs.append(emb.to(device="cpu", dtype=dtype))
                lengths.append(mask.sum(dim=1).cpu().long())
                bar.update(len(chunk[i : i + batch_size]))
            emb = torch.cat(embs)  # (k n d)
            length = torch.cat(lengths)  # (k,)
            keep = max(1, int(length.max()))
            _atomic_save_safetensors(out / name, {"embeds": emb[:, :keep], "lengths": length})
            index["shards"][name] = chunk
            _atomic_write_json(index_path, _with_prompt_map(index))
    finally:
        bar.close()
    _atomic_write_json(index_path, _with_prompt_map(index))
    return out


def _with_prompt_map(index: dict[str, Any]) -> dict[str, Any]:
    prompts = {
        p: [name, row] for name, chunk in sorted(index["shards"].items()) for row, p in enumerate(chunk)
    }
    return {**index, "prompts": prompts}


class PromptEmbeddingStore:
    """Reads a store written by `precompute_prompt_embeddings`.

    Rows are read lazily (memory-mapped slices of the shard), so many data-loader workers can share
    one store without loading it whole.

    Args:
        directory: The store directory (holding `index.json`).
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        index_path = self.directory / INDEX_NAME
        if not index_path.is_file():
            raise ValueError(f"no prompt-embedding index at {index_path}")
        index = json.loads(index_path.read_text(encoding="utf-8"))
        if index.get("version") != _VERSION:
            raise ValueError(f"unsupported store version {index.get('version')!r} in {index_path}")
        self.max_length: int = int(index["max_length"])
        self.dim: int = int(index["dim"])
        self.dtype: torch.dtype = getattr(torch, index["dtype"])
        self._rows: dict[str, tuple[str, int]] = {p: (s, int(r)) for p, (s, r) in index["prompts"].items()}

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, prompt: object) -> bool:
        return isinstance(prompt, str) and clean_prompt(prompt) in self._rows

    @property
    def prompts(self) -> list[str]:
        """The stored (cleaned) prompts."""
        return list(self._rows)

    def get(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings of `prompts`, equal to `TextEncoder.encode(prompts)` (in the stored dtype, on CPU).

        Returns:
            `(embeds (b n d), mask (b n) bool)`, n = `max_length`, zero beyond each prompt's tokens.

        Raises:
            KeyError: A prompt is not in the store (the message names it).
            ValueError: A prompt is not a non-blank string.
        """
        validate_prompts(prompts)
        keys = [clean_prompt(p) for p in prompts]
        for p, k in zip(prompts, keys):
            if k not in self._rows:
                raise KeyError(f"prompt not in the embedding store {self.directory}: {p!r}")
        embeds = torch.zeros(len(keys), self.max_length, self.dim, dtype=self.dtype)
        mask = torch.zeros(len(keys), self.max_length, dtype=torch.bool)
        by_shard: dict[str, list[tuple[int, int]]] = {}
        for i, k in enumerate(keys):
            shard, row = self._rows[k]
            by_shard.setdefault(shard, []).append((i, row))
        for shard, items in by_shard.items():
            with safe_open(str(self.directory / shard), framework="pt") as fh:
                emb_slice = fh.get_slice("embeds")  # (k l d)
                lengths = fh.get_tensor("lengths")  # (k,)
                for i, row in items:
                    n = int(lengths[row])
                    embeds[i, :n] = emb_slice[row : row + 1, :n][0]
                    mask[i, :n] = True
        return embeds, mask
