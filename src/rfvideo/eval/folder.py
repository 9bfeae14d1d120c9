"""Offline scoring of a folder of mp4 files named VBench's way, ``{prompt}-{i}.mp4``.

Frames are decoded with decord (uint8, all frames), so these numbers follow VBench's own pipeline. VBench
decodes three dimensions (temporal flickering, dynamic degree, motion smoothness) with OpenCV instead; both
use FFmpeg's decoders, and the cross-check (tests/vbench_crosscheck) compares them on the same files.

Videos are decoded and scored one at a time (memory holds one video, not the folder); the per-video
partial results are merged with each dimension's own weighting (``weighted_merge``), which is how VBench
aggregates them. With ``full_info`` (VBench_full_info.json) each dimension sees only the videos of the
prompts VBench tags with it, and only indices 0-4, as VBench's standard-suite evaluation does.

Shape legend: f frames, h/w height/width, c channels (3).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from rfvideo.eval.aggregate import aggregate_scores
from rfvideo.eval.registry import in_loop_dimension
from rfvideo.eval.result import DimensionScore, weighted_merge
from rfvideo.utils.video_decode import MAX_DECODED_BYTES, decode_frames

_INDEX_SUFFIX = re.compile(r"-(\d+)$")
# VBench's standard-suite evaluation looks for these indices only (vbench/__init__.py, range(5)).
VBENCH_INDICES = range(5)


def prompt_from_filename(path: str | os.PathLike) -> str:
    """VBench ``get_prompt_from_filename``: ``"a cat-3.mp4" -> "a cat"``, ``"a cat.mp4" -> "a cat"``."""
    return _INDEX_SUFFIX.sub("", Path(path).stem)


def index_from_filename(path: str | os.PathLike) -> int | None:
    """The ``i`` of ``{prompt}-{i}.mp4``, None without one."""
    m = _INDEX_SUFFIX.search(Path(path).stem)
    return int(m.group(1)) if m else None


def read_video(path: str | os.PathLike, *, max_bytes: int = MAX_DECODED_BYTES) -> tuple[torch.Tensor, float]:
    """Decode an mp4 with decord (as VBench): ``(f 3 h w)`` uint8 and its average fps.

    The header's frames x size is checked against ``max_bytes`` before any frame is decoded (a small
    file can hold gigabytes of frames), and frames are decoded in pieces into one buffer
    (`rfvideo.utils.video_decode.decode_frames`).

    decord2 3.4 fails on a few frame widths (measured: 16, 24, 48 and 72 px at any height, while e.g.
    32, 96, 196, 208, 236, 416 and 544 decode); VBench's decord readers fail on them too. Those files
    are decoded with PyAV instead (same FFmpeg decoder, RGB24 conversion by swscale). The result does
    not depend on decord's global bridge setting.

    Raises:
        VideoTooLargeError: the decoded frames would exceed ``max_bytes`` (a ValueError naming the file).
    """
    frames, header = decode_frames(path, max_bytes=max_bytes)
    return torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous(), header.fps


def load_full_info(full_info: str | os.PathLike) -> list[dict[str, Any]]:
    """VBench_full_info.json as a list of ``{"prompt_en", "dimension", "auxiliary_info"?}``."""
    with open(full_info, encoding="utf-8") as f:
        items = json.load(f)
    if not isinstance(items, list) or not all(isinstance(it, dict) and "prompt_en" in it for it in items):
        raise ValueError(f"{full_info} is not a VBench full-info list of {{prompt_en, dimension}} entries")
    return items


def styles_from_full_info(items: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """``{prompt: appearance style phrase}`` from full-info entries."""
    out = {}
    for it in items:
        aux = it.get("auxiliary_info", {}).get("appearance_style")
        if aux is not None:
            out[it["prompt_en"]] = aux["appearance_style"] if isinstance(aux, dict) else aux
    return out


def _dimension_prompts(items: Sequence[Mapping[str, Any]], dims: Sequence[str]) -> dict[str, set[str]]:
    return {d: {it["prompt_en"] for it in items if d in it.get("dimension", ())} for d in dims}


def score_video_folder(
    videos_dir: str | os.PathLike,
    dimensions: Sequence[str],
    backbones: Mapping[str, Any],
    *,
    full_info: str | os.PathLike | None = None,
    styles: Mapping[str, str] | None = None,
    device: torch.device | str = "cpu",
    check_protocol: bool = True,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, Any]:
    """Score every ``*.mp4`` in ``videos_dir`` on ``dimensions``, one video in memory at a time.

    Args:
        videos_dir: folder of ``{prompt}-{i}.mp4`` files (the prompt is read from the name).
        dimensions: VBench dimension keys to compute (see ``IMPLEMENTED_DIMENSIONS``).
        backbones: ``{dimension: backbone}``, e.g. from ``load_backbones``.
        full_info: VBench_full_info.json: restrict each dimension to its tagged prompts (indices 0-4), as
            VBench's standard evaluation does, and read appearance_style's style phrases.
        styles: explicit ``{prompt: style phrase}`` for appearance_style (overrides ``full_info``).
        device: where the models run.
        check_protocol: refuse a folder whose videos come from different sampling protocols
            (``rfvideo.eval.protocol``).
        progress: called as ``progress(done, total, filename)`` after each video.

    Returns:
        ``{"dimensions": {dim: {"score": float, "per_video": {filename: float}, "num_videos": int}},
        "aggregate": {...}, "num_videos": int, "protocol": dict | None}``; "aggregate" holds quality /
        semantic / total and a label naming the subset.
    """
    from rfvideo.eval.protocol import check_folder_protocol

    root = Path(videos_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"videos_dir is not a directory: {root}")
    files = sorted(p for p in root.iterdir() if p.suffix.lower() == ".mp4")
    if not files:
        raise ValueError(f"no .mp4 files in {root}")
    entries = [in_loop_dimension(d) for d in dimensions]
    if not entries:
        raise ValueError("score_video_folder: no dimensions")
    for e in entries:
        if e.needs_backbone and backbones.get(e.name) is None:
            raise ValueError(f"no backbone given for dimension {e.name!r}")
    protocol = check_folder_protocol(root, files) if check_protocol else None

    items = load_full_info(full_info) if full_info else None
    style_map = styles_from_full_info(items) if items else {}
    style_map.update(styles or {})
    tagged = _dimension_prompts(items, [e.name for e in entries]) if items else None

    plan = _scoring_plan(root, files, [e.name for e in entries], tagged, style_map)
    parts: dict[str, list[DimensionScore]] = {e.name: [] for e in entries}
    names: dict[str, list[str]] = {e.name: [] for e in entries}
    for k, (f, prompt, dims) in enumerate(plan):
        if dims:
            video, fps = read_video(f)
            for d in dims:
                res = _score_one(d, video, fps, prompt, style_map, backbones, device, f)
                parts[d].append(res)
                names[d].append(f.name)
            del video
        if progress is not None:
            progress(k + 1, len(plan), f.name)

    out: dict[str, Any] = {"dimensions": {}, "num_videos": len(files), "protocol": protocol}
    raw: dict[str, float] = {}
    for e in entries:
        merged = weighted_merge(parts[e.name])
        raw[e.name] = merged.aggregate
        out["dimensions"][e.name] = {
            "score": merged.aggregate,
            "per_video": dict(zip(names[e.name], merged.per_video)),
            "num_videos": len(names[e.name]),
        }
    agg = aggregate_scores(raw)
    out["aggregate"] = {
        "quality": agg.quality,
        "semantic": agg.semantic,
        "total": agg.total,
        "complete": agg.complete,
        "label": agg.label,
    }
    return out


def _scoring_plan(
    root: Path,
    files: Sequence[Path],
    dimensions: Sequence[str],
    tagged: Mapping[str, set[str]] | None,
    style_map: Mapping[str, str],
) -> list[tuple[Path, str, list[str]]]:
    """`(file, prompt, dimensions that score it)` per file; checked before any decoding so that a bad folder
    fails fast (a style phrase missing, a dimension no video belongs to)."""
    plan: list[tuple[Path, str, list[str]]] = []
    for f in files:
        prompt = prompt_from_filename(f)
        dims = list(dimensions)
        if tagged is not None:
            in_range = index_from_filename(f) in VBENCH_INDICES
            dims = [d for d in dims if in_range and prompt in tagged[d]]
        if "appearance_style" in dims and prompt not in style_map:
            raise ValueError(
                f"appearance_style: no style phrase for prompt {prompt!r} (give full_info/styles)"
            )
        plan.append((f, prompt, dims))
    for d in dimensions:
        if not any(d in dims for _, _, dims in plan):
            raise ValueError(f"no video in {root} belongs to dimension {d!r}'s prompts")
    return plan


def _score_one(
    d: str,
    video: torch.Tensor,
    fps: float,
    prompt: str,
    style_map: Mapping[str, str],
    backbones: Mapping[str, Any],
    device: torch.device | str,
    path: Path,
) -> DimensionScore:
    from rfvideo.eval.dispatch import score_dimension

    dim = in_loop_dimension(d)
    if video.shape[0] < dim.min_frames:
        raise ValueError(f"{d}: {path.name} has {video.shape[0]} frame(s); at least {dim.min_frames} needed")
    return score_dimension(
        d,
        [video],
        backbones.get(d),
        prompts=[prompt],
        styles=[style_map[prompt]] if d == "appearance_style" else None,
        fps=[fps],
        device=device,
    )
