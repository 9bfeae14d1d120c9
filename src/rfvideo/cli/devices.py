"""Device and dtype options shared by the subcommands (resolved inside `run`, so help stays fast)."""

from __future__ import annotations

from rfvideo.cli.errors import UsageError

__all__ = ["resolve_device", "resolve_dtype"]


def resolve_device(name: str) -> str:
    """`"auto"` -> "cuda" when available else "cpu"; anything else is returned as given."""
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(name: str):  # -> torch.dtype (torch is imported lazily)
    """A torch dtype by name (`float32`, `bfloat16`, `float16`)."""
    import torch

    value = getattr(torch, name, None)
    if not isinstance(value, torch.dtype):
        raise UsageError(f"--dtype: unknown dtype {name!r} (use e.g. float32, bfloat16, float16)")
    return value
