"""rfvideo.modules."""
