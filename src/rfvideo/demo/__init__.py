"""rfvideo.demo: `make demo`, the whole Reward-Forcing recipe offline on the CPU in a procedural world."""

from rfvideo.demo.main import main
from rfvideo.demo.settings import DemoSettings

__all__ = ["DemoSettings", "main"]
