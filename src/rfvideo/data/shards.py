"""Sample shards: safetensors files plus a JSON index, a resumable atomic writer and a lazy reader.

Used for ODE trajectories (stage 1) and precomputed video latents. Shapes (einops): `k` samples in a
shard, `...` a field's per-sample shape, e.g. trajectory `(s f c h w)`, latents `(f c h w)`.

Layout of a shard directory:
```
index.json                 {"version", "prefix", "shard_size", "meta", "num_samples",
                            "shards": [{"file", "num_samples", "keys": [...]}, ...]}
shard_00000.safetensors    one stacked tensor per tensor field: <field> (k ...);
                           non-tensor fields (str, int, float, bool) as JSON in the file's metadata
```
Every file is written under a temporary name and moved into place with `os.replace`, the shard first
and the index after it, so an interrupted run leaves only whole shards that the index lists (a shard
file the index does not list is overwritten on resume). Samples carry a unique string `key` (a video
path, a prompt id); a resumed writer knows the keys of finished shards (`done_keys`) and drops samples
with those keys, so the caller may simply replay its inputs. Samples buffered in an unfinished shard
are lost on interruption and produced again on resume.

Several writers (e.g. one per rank) may share a directory if each has its own `prefix` and
`index_name`; the reader merges every `*index.json` in the directory, in name order.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

__all__ = ["ShardWriter", "ShardedTensorDataset"]

INDEX_NAME = "index.json"
_VERSION = 1
_META_KEY = "rfvideo_fields"
_SCALARS = (str, int, float, bool)


def _atomic_write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, ensure_ascii=False)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class ShardWriter:
    """Appends samples (dicts of tensors and scalars) to safetensors shards of `shard_size` samples.

    Args:
        out_dir: Directory of the shards (created if missing).
        shard_size: Samples per shard file.
        prefix: File name prefix of the shards (`<prefix>_00000.safetensors`).
        index_name: Name of the index file (give each concurrent writer its own).
        meta: JSON-able settings recorded in the index (e.g. frame count, resolution); resuming with
            different `meta`, `prefix` or `shard_size` raises instead of mixing two datasets.

    Use as a context manager, or call `close()` to write the last, partial shard.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike[str],
        *,
        shard_size: int,
        prefix: str = "shard",
        index_name: str = INDEX_NAME,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
            raise ValueError(f"shard_size must be a positive int, got {shard_size!r}")
        if not prefix or "/" in prefix or os.sep in prefix:
            raise ValueError(f"prefix must be a plain file-name prefix, got {prefix!r}")
        if not index_name.endswith(INDEX_NAME):
            raise ValueError(
                f"index_name must end with {INDEX_NAME!r} (the reader's pattern), got {index_name!r}"
            )
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.shard_size = shard_size
        self.prefix = prefix
        self.index_path = self.out_dir / index_name
        self.meta = json.loads(json.dumps(dict(meta or {})))  # normalise (tuples -> lists) for comparison
        self._shards: list[dict[str, Any]] = []
        if self.index_path.exists():
            old = json.loads(self.index_path.read_text(encoding="utf-8"))
            settings = {"version": _VERSION, "prefix": prefix, "shard_size": shard_size, "meta": self.meta}
            clash = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
            if clash:
                raise ValueError(f"{self.index_path} was written with other settings (old, new): {clash}")
            # A listed shard whose file vanished is forgotten (its samples are produced again).
            self._shards = [s for s in old["shards"] if (self.out_dir / s["file"]).is_file()]
        self.done_keys: set[str] = {k for s in self._shards for k in s["keys"]}
        self._buffer: list[dict[str, Any]] = []
        self._buffer_keys: list[str] = []
        self._fields: dict[str, Any] | None = None
        self._closed = False

    @property
    def num_written(self) -> int:
        """Samples in finished shards (including those of an earlier, resumed run)."""
        return sum(int(s["num_samples"]) for s in self._shards)

    @property
    def num_shards(self) -> int:
        """Finished shard files."""
        return len(self._shards)

    def _check_fields(self, sample: Mapping[str, Any]) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        for name, value in sample.items():
            if not isinstance(name, str) or not name or "/" in name:
                raise ValueError(f"sample field names must be non-empty strings without '/', got {name!r}")
            if isinstance(value, torch.Tensor):
                fields[name] = ("tensor", tuple(value.shape), value.dtype)
            elif isinstance(value, _SCALARS):
                fields[name] = ("scalar",)
            else:
                raise ValueError(
                    f"field {name!r} must be a tensor, str, int, float or bool, got {type(value)}"
                )
        if self._fields is not None and fields != self._fields:
            raise ValueError(
                f"samples in a shard need the same fields, shapes and dtypes: {fields} != {self._fields}"
            )
        return fields

    def add(self, sample: Mapping[str, Any], *, key: str) -> bool:
        """Buffer one sample; writes a shard once `shard_size` samples are buffered.

        Args:
            sample: Field name -> tensor (any shape, same per field within a shard) or str/int/float/bool.
            key: Unique id of the sample (e.g. the source video path).

        Returns:
            False if `key` is already in a finished shard (the sample is dropped), else True.
        """
        if self._closed:
            raise ValueError("ShardWriter is closed")
        if not isinstance(key, str):
            raise ValueError(f"key must be a str, got {key!r}")
        if key in self.done_keys:
            return False
        if key in self._buffer_keys:
            raise ValueError(f"duplicate sample key {key!r}")
        self._fields = self._check_fields(sample)
        self._buffer.append(dict(sample))
        self._buffer_keys.append(key)
        if len(self._buffer) >= self.shard_size:
            self.flush()
        return True

    def flush(self) -> None:
        """Write the buffered samples as one shard (even if fewer than `shard_size`) and update the index."""
        if not self._buffer:
            return
        tensors: dict[str, torch.Tensor] = {}
        scalars: dict[str, list[Any]] = {}
        for name in self._buffer[0]:
            values = [s[name] for s in self._buffer]
            if isinstance(values[0], torch.Tensor):
                tensors[name] = torch.stack([v.detach().cpu() for v in values]).contiguous()  # (k ...)
            else:
                scalars[name] = values
        file = f"{self.prefix}_{len(self._shards):05d}.safetensors"
        tmp = self.out_dir / (file + ".tmp")
        save_file(tensors, str(tmp), metadata={_META_KEY: json.dumps(scalars, ensure_ascii=False)})
        os.replace(tmp, self.out_dir / file)
        self._shards.append({"file": file, "num_samples": len(self._buffer), "keys": list(self._buffer_keys)})
        self.done_keys.update(self._buffer_keys)
        self._buffer, self._buffer_keys, self._fields = [], [], None
        self._write_index()

    def _write_index(self) -> None:
        _atomic_write_json(
            self.index_path,
            {
                "version": _VERSION,
                "prefix": self.prefix,
                "shard_size": self.shard_size,
                "meta": self.meta,
                "num_samples": self.num_written,
                "shards": self._shards,
            },
        )

    def close(self) -> None:
        """Write the last, partial shard and the index (also for an empty dataset)."""
        if self._closed:
            return
        self.flush()
        self._write_index()
        self._closed = True

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        # On an exception the buffered samples are *not* written: a resume redoes them.
        if exc_type is None:
            self.close()


class ShardedTensorDataset(torch.utils.data.Dataset):
    """Map-style dataset over a shard directory; sample i is a dict of its fields.

    Rows are read lazily: a shard is opened (memory-mapped) on first use and at most `cache_size`
    open shards are kept per process (least recently used dropped), so data-loader workers neither
    load whole shards nor share file handles (the cache is not pickled).

    Args:
        directory: The shard directory (holding one or more `*index.json`).
        cache_size: Open shards kept per process.
    """

    def __init__(self, directory: str | os.PathLike[str], *, cache_size: int = 4) -> None:
        self.directory = Path(directory)
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 1:
            raise ValueError(f"cache_size must be a positive int, got {cache_size!r}")
        index_files = sorted(self.directory.glob(f"*{INDEX_NAME}"))
        if not index_files:
            raise ValueError(f"no {INDEX_NAME} in shard directory {self.directory}")
        self.files: list[str] = []
        self.keys: list[str] = []
        counts: list[int] = []
        self.meta: dict[str, Any] = {}
        for path in index_files:
            index = json.loads(path.read_text(encoding="utf-8"))
            if index.get("version") != _VERSION:
                raise ValueError(f"unsupported shard index version {index.get('version')!r} in {path}")
            self.meta = self.meta or dict(index.get("meta", {}))
            for s in index["shards"]:
                self.files.append(s["file"])
                counts.append(int(s["num_samples"]))
                self.keys.extend(s["keys"])
        # starts[j] = global index of shard j's first sample
        self._starts = [0]
        for n in counts:
            self._starts.append(self._starts[-1] + n)
        self.cache_size = cache_size
        self._cache: OrderedDict[int, tuple[Any, dict[str, list[Any]]]] = OrderedDict()

    def __len__(self) -> int:
        return self._starts[-1]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_cache"] = OrderedDict()
        return state

    def _shard(self, j: int) -> tuple[Any, dict[str, list[Any]]]:
        if j in self._cache:
            self._cache.move_to_end(j)
            return self._cache[j]
        handle = safe_open(str(self.directory / self.files[j]), framework="pt")
        scalars = json.loads((handle.metadata() or {}).get(_META_KEY, "{}"))
        self._cache[j] = (handle, scalars)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return self._cache[j]

    def locate(self, index: int) -> tuple[int, int]:
        """(shard number, row in shard) of sample `index`."""
        n = len(self)
        if isinstance(index, bool) or not isinstance(index, int) or not -n <= index < n:
            raise IndexError(f"sample index {index!r} out of range for {n} samples")
        index %= n
        lo, hi = 0, len(self.files) - 1
        while lo < hi:  # last shard whose start <= index
            mid = (lo + hi + 1) // 2
            if self._starts[mid] <= index:
                lo = mid
            else:
                hi = mid - 1
        return lo, index - self._starts[lo]

    def __getitem__(self, index: int) -> dict[str, Any]:
        j, row = self.locate(int(index))
        handle, scalars = self._shard(j)
        sample: dict[str, Any] = {name: values[row] for name, values in scalars.items()}
        for name in handle.keys():
            sample[name] = handle.get_slice(name)[row : row + 1][0]  # (...) copied out of the mmap
        return sample
