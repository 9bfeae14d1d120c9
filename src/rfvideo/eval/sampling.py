"""Sample suite jobs into a folder: resumable, never a partial file, protocol-tagged, with a progress bar.

Two ways to produce a video, one folder logic:

- ``stream_jobs(stream, jobs, out_dir, ...)``: ``stream(prompt, seed)`` yields a video's pixel frames
  chunk by chunk (``pipeline_video_stream``: ``RFVideoPipeline.stream``, the chunk-wise sampler and the
  VAE's streaming decoder); each chunk goes into the mp4 encoder as it arrives (``Mp4StreamWriter``), so a
  video never sits whole in memory. What ``rfvideo sample`` uses.
- ``sample_jobs(generate, jobs, out_dir, ...)``: ``generate(prompts, seeds)`` returns whole videos
  ``(b F 3 H W)`` (any object with only a ``generate`` method), written with ``write_video``.

Both write under a temporary name and rename, and check the video format (frames, resolution) against
``protocol.json`` before the file is moved into place, so a refused video leaves nothing behind. A file
is valid when it decodes, carries this protocol's id and has the frame count of this run's videos;
anything else is sampled again. Give each rank its ``shard`` of the jobs; ranks share nothing but the
folder.

Shape legend: b videos, F pixel frames (per chunk: the chunk's), H/W pixel height/width, c latent
channels, f latent frames, h/w latent height/width, n/d text tokens/width.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rfvideo.eval.protocol import read_video_tag, record_video_format, video_tag, write_protocol
from rfvideo.eval.suite import SuiteJob

GenerateFn = Callable[[list[str], list[int]], torch.Tensor]
VideoStreamFn = Callable[[str, int], Iterable[torch.Tensor]]

__all__ = [
    "GenerateFn",
    "SampleReport",
    "VideoStreamFn",
    "existing_is_valid",
    "pipeline_video_stream",
    "sample_jobs",
    "stream_jobs",
    "video_frame_count",
]


@dataclass
class SampleReport:
    """What ``sample_jobs`` / ``stream_jobs`` did: files written, files kept from an earlier run, the id."""

    written: list[str]
    skipped: list[str]
    protocol_id: str


def video_frame_count(path: str | os.PathLike) -> int | None:
    """Frames PyAV decodes from ``path``; None when the file cannot be decoded (e.g. truncated)."""
    import av

    try:
        with av.open(os.fspath(path)) as c:
            return sum(1 for _ in c.decode(video=0))
    except (av.error.FFmpegError, OSError, ValueError):
        return None


def existing_is_valid(path: Path, pid: str, num_frames: int | None) -> bool:
    """A file from an earlier run can be kept: it decodes, has this protocol's tag and frame count."""
    if not path.is_file():
        return False
    try:
        if read_video_tag(path) != pid:
            return False
    except (OSError, ValueError):
        return False
    n = video_frame_count(path)
    return n is not None and n > 0 and (num_frames is None or n == num_frames)


def _start(
    jobs: Sequence[SuiteJob],
    out_dir: str | os.PathLike,
    protocol: Mapping[str, Any],
    dimensions: Sequence[str],
    fps: float,
    num_frames: int | None,
) -> tuple[Path, str, list[SuiteJob], list[str]]:
    """Write (or check) protocol.json; split the jobs into those to sample and the valid files kept."""
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps!r}")
    if num_frames is not None and (isinstance(num_frames, bool) or not isinstance(num_frames, int)):
        raise ValueError(f"num_frames must be None or an int, got {num_frames!r}")
    root = Path(out_dir)
    pid = write_protocol(root, protocol, dimensions)
    todo = [j for j in jobs if not existing_is_valid(root / j.filename, pid, num_frames)]
    todo_set = set(todo)
    return root, pid, todo, [j.filename for j in jobs if j not in todo_set]


def sample_jobs(
    generate: GenerateFn,
    jobs: Sequence[SuiteJob],
    out_dir: str | os.PathLike,
    *,
    protocol: Mapping[str, Any],
    dimensions: Sequence[str],
    fps: float,
    num_frames: int | None = None,
    batch_size: int = 1,
    progress: bool = True,
    write: Callable[..., Any] | None = None,
) -> SampleReport:
    """Generate whole videos and save every job not already valid in ``out_dir``.

    Args:
        generate: ``(prompts, seeds) -> (b F 3 H W)`` in [0, 1].
        jobs: this rank's jobs (see ``rfvideo.eval.suite.shard``).
        out_dir: the video folder (``protocol.json`` is written there).
        protocol: the sampling protocol (``rfvideo.eval.protocol``); refused if the folder holds another.
        dimensions: the dimensions sampled (recorded in protocol.json).
        fps: frame rate written into the mp4s.
        num_frames: pixel frames each video must have (checks kept files; None: any).
        batch_size: videos per ``generate`` call.
        progress: show a tqdm progress bar.
        write: the writer (default ``rfvideo.data.video_io.write_video``; tests pass a failing one).

    Returns:
        The files written and skipped, and the protocol id.
    """
    from tqdm.auto import tqdm

    from rfvideo.data.video_io import write_video

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    writer = write or write_video
    root, pid, todo, skipped = _start(jobs, out_dir, protocol, dimensions, fps, num_frames)
    written: list[str] = []
    bar = tqdm(total=len(jobs), initial=len(skipped), desc="sampling", unit="video", disable=not progress)
    try:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            videos = generate([j.gen_prompt for j in batch], [j.seed for j in batch])
            if videos.ndim != 5 or videos.shape[0] != len(batch) or videos.shape[2] != 3:
                raise ValueError(
                    f"generate returned shape {tuple(videos.shape)} for {len(batch)} prompts; "
                    "expected (b F 3 H W)"
                )
            if num_frames is not None and videos.shape[1] != num_frames:
                raise ValueError(f"generate returned {videos.shape[1]} frames, the protocol has {num_frames}")
            # Frames and resolution follow from the config: recorded beside the protocol, checked per batch.
            record_video_format(root, *videos.shape[1:2], *videos.shape[3:5])
            for j, video in zip(batch, videos):
                writer(root / j.filename, video, fps, metadata=video_tag(pid))
                written.append(j.filename)
                bar.update(1)
    finally:
        bar.close()
    return SampleReport(written, skipped, pid)


def stream_jobs(
    stream: VideoStreamFn,
    jobs: Sequence[SuiteJob],
    out_dir: str | os.PathLike,
    *,
    protocol: Mapping[str, Any],
    dimensions: Sequence[str],
    fps: float,
    num_frames: int | None = None,
    crf: int | None = None,
    progress: bool = True,
) -> SampleReport:
    """Stream every job not already valid in ``out_dir`` into its mp4, chunk by chunk.

    Each chunk ``stream`` yields is encoded at once (``rfvideo.streaming.Mp4StreamWriter``, the same H.264
    encoding as ``write_video``); the file appears under its name only when the whole video is written
    and its format agrees with ``protocol.json`` (an error or an interrupt removes the temporary file).

    Args:
        stream: ``(prompt, seed) -> iterable of frames (F 3 H W)`` in [0, 1], one item per chunk, in order
            (``pipeline_video_stream``).
        jobs: this rank's jobs (see ``rfvideo.eval.suite.shard``).
        out_dir: the video folder (``protocol.json`` is written there).
        protocol: the sampling protocol; refused if the folder holds another.
        dimensions: the dimensions sampled (recorded in protocol.json).
        fps: frame rate written into the mp4s.
        num_frames: pixel frames each video must have (checks kept files; None: any).
        crf: x264 constant rate factor (None: x264's default, as ``write_video``).
        progress: show a tqdm progress bar (one step per video, the chunk count beside it).

    Returns:
        The files written and skipped, and the protocol id.

    Raises:
        ValueError: a chunk that is not ``(F 3 H W)``, a video without frames or with another frame count
            than ``num_frames``.
        ProtocolMismatchError: the folder holds another protocol or another video format.
    """
    from tqdm.auto import tqdm

    from rfvideo.streaming import Mp4StreamWriter

    root, pid, todo, skipped = _start(jobs, out_dir, protocol, dimensions, fps, num_frames)
    written: list[str] = []
    bar = tqdm(total=len(jobs), initial=len(skipped), desc="sampling", unit="video", disable=not progress)
    try:
        for j in todo:
            with Mp4StreamWriter(root / j.filename, fps=fps, crf=crf, metadata=video_tag(pid)) as writer:
                size: tuple[int, int] | None = None
                for c, frames in enumerate(stream(j.gen_prompt, j.seed)):
                    if frames.ndim != 4 or frames.shape[1] != 3:
                        raise ValueError(
                            f"stream returned a chunk of shape {tuple(frames.shape)} for {j.filename!r}; "
                            "expected (F 3 H W)"
                        )
                    size = (int(frames.shape[2]), int(frames.shape[3]))
                    writer.write(frames)
                    bar.set_postfix(chunk=c + 1, refresh=False)
                n = writer.frames_written
                if size is None or n == 0:
                    raise ValueError(f"stream returned no frames for {j.filename!r}")
                if num_frames is not None and n != num_frames:
                    raise ValueError(
                        f"stream returned {n} frames for {j.filename!r}, the protocol has {num_frames}"
                    )
                # Before the rename: a video of another format than the folder's is never left there.
                record_video_format(root, n, *size)
            written.append(j.filename)
            bar.update(1)
    finally:
        bar.close()
    return SampleReport(written, skipped, pid)


def pipeline_video_stream(pipe: Any, *, num_frames: int | None = None) -> VideoStreamFn:
    """``(prompt, seed) -> chunks of pixel frames`` of an ``RFVideoPipeline``: its ``stream`` with a CPU
    generator seeded with ``seed``, so the video is ``pipe(prompt, generator=...)``'s (the streaming decoder
    equals the full decode) and ``module.generate``'s for a module's pipeline.

    Args:
        pipe: the pipeline.
        num_frames: pixel frames per video (``1 + 4k``, a chunk multiple); default the pipeline's.

    Returns:
        The stream function; each chunk is float32 ``(F 3 H W)`` in [0, 1] on the CPU.

    Raises:
        ValueError: a ``num_frames`` the pipeline refuses (checked here, before any video).
    """
    frames_per_video = pipe.config.num_frames if num_frames is None else num_frames
    pipe.check_inputs("check", None, frames_per_video, pipe.config.height, pipe.config.width, "pt")

    def stream(prompt: str, seed: int) -> Iterator[torch.Tensor]:
        g = torch.Generator().manual_seed(int(seed))
        for frames in pipe.stream(prompt, generator=g, num_frames=frames_per_video):
            yield frames[0].clamp(0, 1)  # (F 3 H W)

    return stream
