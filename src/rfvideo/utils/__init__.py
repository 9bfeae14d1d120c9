"""Small helpers shared across packages (no Lightning)."""

from rfvideo.utils.checkpoint import load_checkpoint

__all__ = ["load_checkpoint"]
