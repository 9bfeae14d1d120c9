"""`save_pretrained` / `from_pretrained` for small rfvideo modules defined by their constructor arguments.

A subclass calls `self.register_config(**kwargs)` with its constructor's arguments (JSON values); the folder
then holds `config.json` (those arguments) and `model.safetensors` (every parameter and persistent buffer),
and `from_pretrained` rebuilds the module from the config and loads the tensors strictly. Used by the
decoders that sit in the pipeline's VAE slot without being a diffusers model (the demo's codecs).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors.torch import load_file, save_file

__all__ = ["ConfigSaved"]

T = TypeVar("T", bound="ConfigSaved")
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


class ConfigSaved:
    """Mixin for `nn.Module`s: a folder of `config.json` + `model.safetensors`."""

    _rfvideo_config: dict[str, Any]

    def register_config(self, **kwargs: Any) -> None:
        """Record the constructor arguments that rebuild this module (JSON-serialisable values)."""
        json.dumps(kwargs)  # fail now, not at save time
        self._rfvideo_config = dict(kwargs)

    def save_pretrained(self, directory: str | os.PathLike[str]) -> None:
        """Write `config.json` and `model.safetensors` into `directory` (created)."""
        root = Path(directory)
        root.mkdir(parents=True, exist_ok=True)
        config = {"_class_name": type(self).__name__, **self._rfvideo_config}
        (root / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}  # type: ignore[attr-defined]
        save_file(state, root / WEIGHTS_NAME)

    @classmethod
    def from_pretrained(
        cls: type[T],
        path: str | os.PathLike[str],
        *,
        subfolder: str | None = None,
        torch_dtype: torch.dtype | None = None,
    ) -> T:
        """Rebuild from a folder written by `save_pretrained` (strict: every tensor present, none extra).

        Raises:
            ValueError: no such folder, a config of another class, or tensors that do not match.
        """
        root = Path(path) / (subfolder or "")
        if not (root / CONFIG_NAME).is_file():
            raise ValueError(f"{str(root)!r} has no {CONFIG_NAME} for {cls.__name__}")
        config = json.loads((root / CONFIG_NAME).read_text(encoding="utf-8"))
        name = config.pop("_class_name", None)
        if name != cls.__name__:
            raise ValueError(f"{str(root / CONFIG_NAME)!r} describes {name!r}, not {cls.__name__}")
        module = cls(**config)
        try:
            module.load_state_dict(load_file(root / WEIGHTS_NAME), strict=True)  # type: ignore[attr-defined]
        except RuntimeError as e:
            raise ValueError(f"{str(root)!r}: {str(e).splitlines()[0]}") from None
        if torch_dtype is not None:
            module.to(torch_dtype)  # type: ignore[attr-defined]
        return module
