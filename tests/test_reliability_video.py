"""Decode bombs (issue 23, item 8): a small mp4 holding 300 frames of 1024x1024 is refused from its
container header before anything is decoded, by `rfvideo vbench`'s folder reader and by the data
reader; VBench's protocol sizes pass; decoding goes in pieces into one buffer and equals a whole decode.
Legend: `F` frames, `H W` pixel height/width."""

from __future__ import annotations

from pathlib import Path

import av
import decord
import numpy as np
import pytest
import torch

from rfvideo.data.video_io import read_video as data_read_video
from rfvideo.eval.folder import read_video as folder_read_video

pytest.importorskip("decord")


def _mp4(path: Path, frames: np.ndarray, fps: int = 16) -> Path:
    """Encode `(F H W 3)` uint8 frames losslessly-enough (ultrafast x264) into `path`."""
    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        s.options = {"preset": "ultrafast", "crf": "0"}
        for f in frames:
            for packet in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return path


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 black 1024x1024 frames: a few KB on disk, 900 MiB decoded (the issue's file)."""
    path = tmp_path_factory.mktemp("bomb") / "a black square-0.mp4"
    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=16)
        s.width, s.height, s.pix_fmt = 1024, 1024, "yuv420p"
        s.options = {"preset": "ultrafast"}
        black = av.VideoFrame.from_ndarray(np.zeros((1024, 1024, 3), np.uint8), format="rgb24")
        for _ in range(300):
            for packet in s.encode(black):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    assert path.stat().st_size < 100_000
    return path


_REAL_READER = decord.VideoReader


class _NoDecode:
    """Stands in for decord.VideoReader: any decode is a test failure (the file must be refused first)."""

    def __init__(self, *a, **k) -> None:
        self.n = len(_REAL_READER(*a, **k))  # the frame index only (demuxed, not decoded)

    def __len__(self) -> int:
        return self.n

    def get_avg_fps(self) -> float:
        return 16.0

    def get_batch(self, idx):
        raise AssertionError(f"decoded {len(idx)} frames of a video that should have been refused")


def test_decode_bomb_is_refused_before_decoding(bomb: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decord, "VideoReader", _NoDecode)
    with pytest.raises(
        ValueError, match=r"has 300 frames of 1024x1024 \(900 MiB decoded\); the limit is 512"
    ):
        folder_read_video(bomb)
    with pytest.raises(ValueError, match=r"300 frames of 1024x1024"):
        data_read_video(bomb)
    # a few frames of it are fine (the data reader samples num_frames)
    monkeypatch.undo()
    assert data_read_video(bomb, num_frames=4).shape == (4, 3, 1024, 1024)


def test_limit_is_a_parameter_and_vbench_sizes_pass(tmp_path: Path) -> None:
    from rfvideo.utils.video_decode import MAX_DECODED_BYTES, VideoHeader

    # VBench protocol sizes (frames, height, width) fit the default budget with room
    for frames, h, w in ((16, 320, 512), (81, 480, 832), (120, 720, 1280), (33, 512, 512)):
        assert (
            VideoHeader(frames=frames, height=h, width=w, fps=16.0).decoded_bytes() < MAX_DECODED_BYTES / 1.5
        )
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (20, 32, 64, 3), generator=g, dtype=torch.uint8).numpy()
    path = _mp4(tmp_path / "v.mp4", frames)
    with pytest.raises(ValueError, match="the limit is 0 MiB"):
        folder_read_video(path, max_bytes=20 * 32 * 64 * 3 - 1)
    video, _ = folder_read_video(path, max_bytes=20 * 32 * 64 * 3)
    assert video.shape == (20, 3, 32, 64)


@pytest.mark.parametrize("width", [64, 48])  # 48: decord2's stride bug, decoded by the PyAV fallback
def test_pieces_equal_a_whole_decode(tmp_path: Path, width: int) -> None:
    g = torch.Generator().manual_seed(1)
    frames = torch.randint(0, 256, (37, 32, width, 3), generator=g, dtype=torch.uint8).numpy()
    path = _mp4(tmp_path / "v.mp4", frames)
    with av.open(str(path)) as c:  # reference: PyAV, all frames in one go
        ref = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    from rfvideo.utils.video_decode import decode_frames

    got, header = decode_frames(path, piece=5)
    assert (header.frames, header.height, header.width) == (37, 32, width)
    np.testing.assert_array_equal(got, ref)
    picked, _ = decode_frames(path, [36, 0, 7, 7], piece=3)
    np.testing.assert_array_equal(picked, ref[[36, 0, 7, 7]])
    video, fps = folder_read_video(path)
    assert fps == 16.0 and torch.equal(video, torch.from_numpy(ref).permute(0, 3, 1, 2))
    with pytest.raises(ValueError, match="outside"):
        decode_frames(path, [37])
