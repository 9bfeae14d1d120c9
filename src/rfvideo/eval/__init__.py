"""rfvideo.eval."""
