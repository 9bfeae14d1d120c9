"""rfvideo.sampling."""
