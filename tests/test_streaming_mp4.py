"""`Mp4StreamWriter`: chunks written as they arrive give the file `write_video` writes for the whole video,
byte for byte; an interrupted stream leaves no file; bad frames are refused with the value named.

Legend: `F` pixel frames, `H W` pixel height/width.
"""

from __future__ import annotations

import pytest
import torch

from rfvideo.data.video_io import write_video
from rfvideo.streaming import Mp4StreamWriter


def _video(frames: int = 13, seed: int = 0) -> torch.Tensor:
    return torch.rand(frames, 3, 16, 24, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("split", [(13,), (1, 4, 4, 4), (5, 8)])
def test_chunked_file_equals_write_video(tmp_path, split) -> None:
    video = _video()
    ref = write_video(tmp_path / "ref.mp4", video, fps=16.0, metadata={"comment": "a red fox"})
    path = tmp_path / "sub" / "streamed.mp4"
    with Mp4StreamWriter(path, fps=16.0, metadata={"comment": "a red fox"}) as writer:
        start = 0
        for n in split:
            writer.write(video[start : start + n])
            start += n
            assert not path.exists()  # a reader never sees half a file
    assert writer.frames_written == 13
    assert path.read_bytes() == ref.read_bytes()


def test_interrupted_stream_leaves_no_file(tmp_path) -> None:
    path = tmp_path / "cut.mp4"
    with pytest.raises(RuntimeError, match="generation failed"), Mp4StreamWriter(path) as writer:
        writer.write(_video(5))
        raise RuntimeError("generation failed")
    assert list(tmp_path.iterdir()) == []


def test_bad_frames(tmp_path) -> None:
    writer = Mp4StreamWriter(tmp_path / "x.mp4")
    with pytest.raises(ValueError, match=r"\(5, 4, 16, 24\)"):
        writer.write(torch.rand(5, 4, 16, 24))
    with pytest.raises(ValueError, match="15x24"):
        writer.write(torch.rand(5, 3, 15, 24))
    writer.write(_video(1))
    with pytest.raises(ValueError, match="16x32 differs"):
        writer.write(torch.rand(4, 3, 16, 32))
    writer.close()
    with pytest.raises(ValueError, match="closed"):
        writer.write(_video(1))
    with pytest.raises(ValueError, match="no frames"):
        Mp4StreamWriter(tmp_path / "empty.mp4").close()
    with pytest.raises(ValueError, match="fps"):
        Mp4StreamWriter(tmp_path / "y.mp4", fps=0)
