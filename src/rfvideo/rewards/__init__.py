"""rfvideo.rewards."""
