"""rfvideo.models."""
