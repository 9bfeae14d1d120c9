"""rfvideo.streaming: pixel frames while the video is generated, interactive prompt-switching streams."""

from rfvideo.streaming.generator import StreamingGenerator as StreamingGenerator
from rfvideo.streaming.generator import check_stream_length as check_stream_length
from rfvideo.streaming.video import stream_video as stream_video
