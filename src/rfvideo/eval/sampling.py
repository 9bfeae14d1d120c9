"""Sample suite jobs into a folder: resumable, never a partial file, protocol-tagged, with a progress bar.

``sample_jobs(generate, jobs, out_dir, protocol=..., fps=...)`` calls ``generate(prompts, seeds)`` (a
batch of videos ``(b F 3 H W)`` in [0, 1]) for every job whose file is missing or invalid, and writes
each video with ``write_video`` (temporary name, then rename). A file is valid when it decodes, carries
this protocol's id and has the frame count of this run's videos; anything else is sampled again.
Give each rank its ``shard`` of the jobs; ranks share nothing but the folder.

Shape legend: b videos, F pixel frames, H/W pixel height/width.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rfvideo.eval.protocol import read_video_tag, record_video_format, video_tag, write_protocol
from rfvideo.eval.suite import SuiteJob

GenerateFn = Callable[[list[str], list[int]], torch.Tensor]


@dataclass
class SampleReport:
    """What ``sample_jobs`` did: files written, files kept from an earlier run, and the protocol id."""

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
    """Generate and save every job not already valid in ``out_dir``.

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
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps!r}")
    writer = write or write_video
    root = Path(out_dir)
    pid = write_protocol(root, protocol, dimensions)
    todo = [j for j in jobs if not existing_is_valid(root / j.filename, pid, num_frames)]
    todo_set = set(todo)
    skipped = [j.filename for j in jobs if j not in todo_set]
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
            if start == 0:  # frames and resolution follow from the config: recorded beside the protocol
                record_video_format(root, *videos.shape[1:2], *videos.shape[3:5])
            for j, video in zip(batch, videos):
                writer(root / j.filename, video, fps, metadata=video_tag(pid))
                written.append(j.filename)
                bar.update(1)
    finally:
        bar.close()
    return SampleReport(written, skipped, pid)
