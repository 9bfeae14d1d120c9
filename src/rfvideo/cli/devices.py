"""Device and dtype options shared by the subcommands (resolved inside `run`, so help stays fast)."""

from __future__ import annotations

from rfvideo.cli.errors import UsageError

__all__ = ["resolve_device", "resolve_dtype"]


def resolve_device(name: str) -> str:
    """`"auto"` -> "cuda" when available else "cpu"; anything else checked and returned as given.

    Raises:
        UsageError: not a torch device name, or a CUDA device this machine does not have (one line).
    """
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UsageError(f"--device: {name!r} is not a torch device (auto, cpu, cuda, cuda:N)") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UsageError(f"--device={name}: no CUDA device here (use --device cpu)")
        if device.index is not None and device.index >= count:
            raise UsageError(
                f"--device={name}: this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})"
            )
    return name


def resolve_dtype(name: str):  # -> torch.dtype (torch is imported lazily)
    """A torch dtype by name (`float32`, `bfloat16`, `float16`)."""
    import torch

    value = getattr(torch, name, None)
    if not isinstance(value, torch.dtype):
        raise UsageError(f"--dtype: unknown dtype {name!r} (use e.g. float32, bfloat16, float16)")
    return value
