"""rfvideo.distributed."""
