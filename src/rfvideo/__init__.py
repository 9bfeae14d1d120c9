"""rfvideo: reward-guided chunk-wise autoregressive text-to-video generation (Reward-Forcing)."""

__version__ = "0.1.0"
