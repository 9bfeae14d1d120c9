"""Raw videos -> VAE latent shards (the core of the `precompute` command).

Shapes (einops): `b` videos per encoder call, `F` pixel frames (1 + 4k), `H W` pixel size, `f c h w`
latent frames/channels/height/width.

Per video: decode (decord, PyAV fallback) -> `num_frames` frames (uniformly spaced or the first) ->
resize (cover) + center-crop to `height x width` -> [0, 1] -> `vae.encode((b F 3 H W)) -> (b c f h w)`,
stored per clip as `(f c h w)` (the shards' layout)
-> a `ShardWriter` sample `{"prompt", "latents" (f c h w), "path"}` keyed by the video's absolute path.
A video that cannot be read, is too short, has no prompt (or a caption file that is not UTF-8), or
fails to encode is skipped and listed in `precompute_report.json`; the run goes on, and the videos
already read are encoded and written. The native decoders' per-file error lines (ffmpeg's "moov atom
not found", ...) are kept off the terminal: the report holds each reason. Re-running resumes: videos
in finished shards are not decoded again (only the last, unfinished shard is redone).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from einops import rearrange
from tqdm.auto import tqdm

from rfvideo.data.shards import ShardWriter, _atomic_write_json
from rfvideo.data.video_io import VideoReadError, VideoTooShortError, read_video
from rfvideo.utils.media_logs import quiet_media_logs, silence_native_stderr

__all__ = ["PrecomputeReport", "VideoEncoder", "list_videos", "precompute_latents"]

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")
REPORT_NAME = "precompute_report.json"


class VideoEncoder(Protocol):
    """Anything with `encode(video (b F 3 H W) in [0, 1]) -> latents (b f c h w)`, e.g. `WanVAE`."""

    def encode(self, video: torch.Tensor) -> torch.Tensor: ...


@dataclass(kw_only=True)
class PrecomputeReport:
    """What a `precompute_latents` run did (also written to `<out_dir>/precompute_report.json`)."""

    out_dir: str
    num_videos: int
    """Videos given."""
    num_encoded: int
    """Videos encoded and written by this run."""
    num_resumed: int
    """Videos already in finished shards of an earlier run (not redone)."""
    num_failed: int
    """Videos skipped: unreadable/corrupt, too short, no prompt, or encode error."""
    num_samples: int
    """Samples in the store after the run."""
    num_shards: int
    failed: list[dict[str, str]] = field(default_factory=list)
    """One entry per skipped video: `{"path", "reason", "error"}`, reason one of "unreadable",
    "too_short", "no_prompt", "bad_caption", "encode_error"."""


def list_videos(source: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Video files of a directory (recursive, sorted) or an explicit list (kept in order)."""
    if isinstance(source, (str, os.PathLike)):
        p = Path(source)
        if not p.is_dir():
            raise ValueError(f"not a directory: {str(p)!r} (give a directory, a manifest or a list of paths)")
        return sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in VIDEO_SUFFIXES)
    return [Path(q) for q in source]


def _read_manifest(path: Path, video_field: str, prompt_field: str) -> tuple[list[Path], dict[str, str]]:
    """(video paths, {absolute path: prompt}) from a .jsonl/.csv manifest; relative paths are relative
    to the manifest's directory."""
    if path.suffix.lower() == ".jsonl":
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    elif path.suffix.lower() == ".csv":
        with open(path, encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
    else:
        raise ValueError(f"manifest must be .jsonl or .csv, got {str(path)!r}")
    videos, prompts = [], {}
    for i, row in enumerate(rows):
        if video_field not in row:
            raise ValueError(f"{path}: row {i + 1} has no field {video_field!r}")
        v = Path(row[video_field])
        v = v if v.is_absolute() else path.parent / v
        videos.append(v)
        if isinstance(row.get(prompt_field), str):
            prompts[str(v.resolve())] = row[prompt_field]
    return videos, prompts


class CaptionError(ValueError):
    """A sidecar caption that cannot be read as text."""


def _read_caption(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")  # a BOM (Windows editors) is not part of the caption
    except UnicodeDecodeError as e:
        raise CaptionError(
            f"{path}: caption is not UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start})"
        ) from None


def _prompt_for(
    video: Path,
    prompts: Mapping[str, str] | Callable[[Path], str | None] | None,
    manifest: Mapping[str, str],
) -> str | None:
    """Caption of `video`: `prompts` (callable or mapping), then the manifest, then a sidecar .txt."""
    text = None
    if callable(prompts):
        text = prompts(video)
    elif prompts is not None:
        for k in (str(video.resolve()), str(video), video.name):
            if k in prompts:
                text = prompts[k]
                break
    if text is None:
        text = manifest.get(str(video.resolve()))
    if text is None:  # sidecar caption: clip.mp4 -> clip.txt
        sidecar = video.with_suffix(".txt")
        text = _read_caption(sidecar) if sidecar.is_file() else None
    text = text.strip() if isinstance(text, str) else None
    return text or None


def precompute_latents(
    video_paths_or_dir: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    vae: VideoEncoder,
    *,
    num_frames: int,
    height: int,
    width: int,
    shard_size: int = 64,
    batch_size: int = 1,
    sampling: str = "uniform",
    prompts: Mapping[str, str] | Callable[[Path], str | None] | None = None,
    video_field: str = "video",
    prompt_field: str = "prompt",
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    latent_dtype: torch.dtype | None = None,
    progress: bool = True,
    quiet: bool = True,
) -> PrecomputeReport:
    """Encode raw videos to latent shards in `out_dir` (resumable; see module docstring).

    Args:
        video_paths_or_dir: A directory (all videos below it), a list of video paths, or a `.jsonl` /
            `.csv` manifest with `video_field` (path, relative to the manifest) and `prompt_field`.
        out_dir: Shard directory (created; an earlier run with the same settings is resumed).
        vae: Encoder, `encode((b F 3 H W) in [0, 1]) -> (b f c h w)` (e.g. `rfvideo.models.WanVAE`).
        num_frames: Pixel frames per clip, 1 + 4k (e.g. 81).
        height, width: Pixel size after resize + center-crop, multiples of 8 (Wan's VAE stride).
        shard_size: Videos per shard file.
        batch_size: Videos per `vae.encode` call.
        sampling: "uniform" (evenly spaced over the clip) or "first" (the first `num_frames`).
        prompts: Caption per video: a mapping (absolute path, path as given, or file name) or a
            function; falls back to the manifest, then to a sidecar `<video stem>.txt`.
        video_field, prompt_field: Manifest fields.
        device, dtype: Where/in which dtype the video goes into the encoder (default: CPU, fp32).
        latent_dtype: Storage dtype of the latents (default: as returned by the encoder).
        progress: Show a tqdm bar.
        quiet: Keep the native decoders' per-file error lines off stderr (the report has the reasons).

    Returns:
        The report (also written, atomically, to `<out_dir>/precompute_report.json`).

    Raises:
        ValueError: Bad arguments or a store in `out_dir` made with other settings. Per-video problems
            never raise; they are reported.
    """
    _check_settings(num_frames, height, width, batch_size, sampling)
    manifest_prompts: dict[str, str] = {}
    src = video_paths_or_dir
    if isinstance(src, (str, os.PathLike)) and Path(src).is_file():
        videos, manifest_prompts = _read_manifest(Path(src), video_field, prompt_field)
    else:
        videos = list_videos(src)
    if quiet:
        quiet_media_logs()
    meta = {
        "kind": "latents",
        "num_frames": num_frames,
        "height": height,
        "width": width,
        "sampling": sampling,
    }
    out = Path(out_dir)
    run = _LatentRun(
        writer=ShardWriter(out, shard_size=shard_size, prefix="latents", meta=meta),
        vae=vae,
        device=device,
        dtype=dtype,
        latent_dtype=latent_dtype,
    )

    def read_clip(video: Path) -> tuple[str, torch.Tensor] | None:
        """(prompt, clip (F 3 H W)) of one video, or None after recording why it cannot be used."""
        try:
            prompt = _prompt_for(Path(video), prompts, manifest_prompts)
        except CaptionError as e:
            return run.fail(video, "bad_caption", e)
        if prompt is None:
            return run.fail(video, "no_prompt", "no prompt given and no sidecar .txt caption")
        try:
            with silence_native_stderr() if quiet else contextlib.nullcontext():
                clip = read_video(video, num_frames=num_frames, sampling=sampling, height=height, width=width)
        except VideoTooShortError as e:
            return run.fail(video, "too_short", e)
        except (VideoReadError, ValueError, RuntimeError, OSError) as e:
            return run.fail(video, "unreadable", e)
        return prompt, clip

    bar = tqdm(total=len(videos), desc="latents", unit="video", disable=not progress)
    try:
        for video in videos:
            key = str(Path(video).resolve())
            bar.update(1)
            if key in run.writer.done_keys:
                run.resumed += 1
                continue
            found = read_clip(video)
            if found is not None:
                run.pending.append((key, *found))
                if len(run.pending) >= batch_size:
                    run.encode_pending()
            bar.set_postfix(failed=len(run.failed))
        run.encode_pending()
        run.writer.close()
    finally:
        bar.close()
        # also on interruption: the report then describes the finished shards and failures so far
        report = run.write_report(out, len(videos))
    return report


def _check_settings(num_frames: int, height: int, width: int, batch_size: int, sampling: str) -> None:
    """One-line errors for settings every video would fail on, before any video is read."""
    if (
        isinstance(num_frames, bool)
        or not isinstance(num_frames, int)
        or num_frames < 1
        or (num_frames - 1) % 4
    ):
        raise ValueError(f"num_frames must be 1 + 4k (1, 5, 9, ..., 81), got {num_frames!r}")
    for name, v in (("height", height), ("width", width), ("batch_size", batch_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    for name, v in (("height", height), ("width", width)):
        if v % 8:  # else every video would fail to encode, one by one, after decoding
            raise ValueError(f"{name} must be a multiple of 8 (the VAE's stride), got {v}")
    if sampling not in ("uniform", "first"):
        raise ValueError(f"sampling must be 'uniform' or 'first', got {sampling!r}")


@dataclass
class _LatentRun:
    """The state of one `precompute_latents` run: the shard writer, the clips waiting for the encoder, the
    counts and the failures the report lists."""

    writer: ShardWriter
    vae: VideoEncoder
    device: torch.device | str | None
    dtype: torch.dtype
    latent_dtype: torch.dtype | None
    pending: list[tuple[str, str, torch.Tensor]] = field(default_factory=list)  # (key, prompt, (F 3 H W))
    failed: list[dict[str, str]] = field(default_factory=list)
    encoded: int = 0
    resumed: int = 0

    def fail(self, path: Path, reason: str, err: BaseException | str) -> None:
        msg = err if isinstance(err, str) else f"{type(err).__name__}: {err}"
        self.failed.append({"path": str(path), "reason": reason, "error": msg[:500]})

    def encode_pending(self) -> None:
        """Encode the waiting clips as one batch and write them; a failing batch is reported, not raised."""
        if not self.pending:
            return
        batch = torch.stack([v for _, _, v in self.pending]).to(device=self.device, dtype=self.dtype)
        try:
            with torch.no_grad():
                latents = self.vae.encode(batch)  # (b c f h w)
            if latents.ndim != 5 or latents.shape[0] != len(self.pending):
                raise ValueError(f"encoder returned shape {tuple(latents.shape)}, expected (b c f h w)")
            latents = rearrange(latents, "b c f h w -> b f c h w")  # the shards' layout
        except Exception as e:  # a bad clip must not end a long run; the report lists it
            for key, _, _ in self.pending:
                self.fail(Path(key), "encode_error", e)
            self.pending.clear()
            return
        latents = latents.detach().cpu()
        if self.latent_dtype is not None:
            latents = latents.to(self.latent_dtype)
        for (key, prompt, _), lat in zip(self.pending, latents):
            self.writer.add({"prompt": prompt, "latents": lat, "path": key}, key=key)
            self.encoded += 1
        self.pending.clear()

    def write_report(self, out: Path, num_videos: int) -> PrecomputeReport:
        report = PrecomputeReport(
            out_dir=str(out),
            num_videos=num_videos,
            num_encoded=self.encoded,
            num_resumed=self.resumed,
            num_failed=len(self.failed),
            num_samples=self.writer.num_written,
            num_shards=self.writer.num_shards,
            failed=self.failed,
        )
        _atomic_write_json(out / REPORT_NAME, asdict(report))
        return report


def load_report(out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The report of the last run in `out_dir` as a dict."""
    return json.loads((Path(out_dir) / REPORT_NAME).read_text(encoding="utf-8"))
