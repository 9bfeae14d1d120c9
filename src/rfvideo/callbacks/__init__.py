"""rfvideo.callbacks."""
