"""rfvideo.streaming: pixel frames while the video is generated, interactive prompt-switching streams."""

from rfvideo.streaming.decoders import HistoryStreamDecoder as HistoryStreamDecoder
from rfvideo.streaming.decoders import stream_decoder_for as stream_decoder_for
from rfvideo.streaming.generator import StreamingGenerator as StreamingGenerator
from rfvideo.streaming.generator import check_stream_length as check_stream_length
from rfvideo.streaming.mp4 import Mp4StreamWriter as Mp4StreamWriter
from rfvideo.streaming.video import stream_video as stream_video
