"""rfvideo.data."""
