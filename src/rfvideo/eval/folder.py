"""Offline scoring of a folder of mp4 files named VBench's way, ``{prompt}-{i}.mp4``.

Frames are decoded with decord (uint8, all frames), so these numbers follow VBench's own pipeline. VBench
decodes three dimensions (temporal flickering, dynamic degree, motion smoothness) with OpenCV instead; both
use FFmpeg's decoders, and the cross-check (tests/vbench_crosscheck) compares them on the same files.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from rfvideo.eval.aggregate import aggregate_scores, canonical_dimension
from rfvideo.eval.dispatch import IMPLEMENTED_DIMENSIONS, score_dimension

_INDEX_SUFFIX = re.compile(r"-\d+$")


def prompt_from_filename(path: str | os.PathLike) -> str:
    """VBench ``get_prompt_from_filename``: ``"a cat-3.mp4" -> "a cat"``, ``"a cat.mp4" -> "a cat"``."""
    return _INDEX_SUFFIX.sub("", Path(path).stem)


def read_video(path: str | os.PathLike) -> tuple[torch.Tensor, float]:
    """Decode an mp4 with decord (as VBench): ``(f 3 h w)`` uint8 and its average fps.

    decord2 3.4 fails on frame widths that are not a multiple of 64 (so do VBench's decord readers);
    those files are decoded with PyAV instead (same FFmpeg decoder, RGB24 conversion by swscale).
    """
    try:
        from decord import VideoReader, cpu
    except ImportError as e:  # pragma: no cover - decord2 is a core dependency
        raise ImportError("reading mp4 files needs decord (pip install decord2)") from e
    vr = VideoReader(os.fspath(path), ctx=cpu(0), num_threads=1)
    fps = float(vr.get_avg_fps())
    try:
        frames = vr.get_batch(list(range(len(vr)))).asnumpy()
    except Exception:  # decord's DECORDError: stride/size mismatch on unaligned widths
        import av
        import numpy as np

        with av.open(os.fspath(path)) as container:
            frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    return torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous(), fps


def _styles_from_full_info(full_info: str | os.PathLike) -> dict[str, str]:
    with open(full_info, encoding="utf-8") as f:
        items = json.load(f)
    return {
        it["prompt_en"]: it["auxiliary_info"]["appearance_style"]["appearance_style"]
        if isinstance(it["auxiliary_info"]["appearance_style"], dict)
        else it["auxiliary_info"]["appearance_style"]
        for it in items
        if "appearance_style" in it.get("auxiliary_info", {})
    }


def score_video_folder(
    videos_dir: str | os.PathLike,
    dimensions: Sequence[str],
    backbones: Mapping[str, Any],
    *,
    full_info: str | os.PathLike | None = None,
    styles: Mapping[str, str] | None = None,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Score every ``*.mp4`` in ``videos_dir`` on ``dimensions``.

    Args:
        videos_dir: folder of ``{prompt}-{i}.mp4`` files (the prompt is read from the name).
        dimensions: VBench dimension keys to compute (see ``IMPLEMENTED_DIMENSIONS``).
        backbones: ``{dimension: backbone}``, e.g. from ``load_backbones``.
        full_info: VBench_full_info.json; used for appearance_style's style phrases (by prompt).
        styles: explicit ``{prompt: style phrase}`` for appearance_style (overrides ``full_info``).
        device: where the models run.

    Returns:
        ``{"dimensions": {dim: {"score": float, "per_video": {filename: float}}}, "aggregate": {...},
        "num_videos": int}``; "aggregate" holds quality / semantic / total and a label naming the subset.
    """
    root = Path(videos_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"videos_dir is not a directory: {root}")
    files = sorted(p for p in root.iterdir() if p.suffix.lower() == ".mp4")
    if not files:
        raise ValueError(f"no .mp4 files in {root}")
    dims = [canonical_dimension(d) for d in dimensions]
    for d in dims:
        if d not in IMPLEMENTED_DIMENSIONS:
            raise ValueError(
                f"dimension {d!r} is not implemented; implemented: {', '.join(IMPLEMENTED_DIMENSIONS)}"
            )
        if d != "temporal_flickering" and d not in backbones:
            raise ValueError(f"no backbone given for dimension {d!r}")
    style_map = dict(_styles_from_full_info(full_info)) if full_info else {}
    style_map.update(styles or {})

    decoded = [read_video(p) for p in files]
    videos = [v for v, _ in decoded]
    fps = [r for _, r in decoded]
    prompts = [prompt_from_filename(p) for p in files]
    out: dict[str, Any] = {"dimensions": {}, "num_videos": len(files)}
    raw: dict[str, float] = {}
    for d in dims:
        dim_styles = None
        if d == "appearance_style":
            missing = [p for p in prompts if p not in style_map]
            if missing:
                raise ValueError(
                    f"appearance_style: no style phrase for prompts {missing[:3]} (give full_info/styles)"
                )
            dim_styles = [style_map[p] for p in prompts]
        res = score_dimension(
            d, videos, backbones.get(d), prompts=prompts, styles=dim_styles, fps=fps, device=device
        )
        raw[d] = res.aggregate
        out["dimensions"][d] = {
            "score": res.aggregate,
            "per_video": {f.name: s for f, s in zip(files, res.per_video)},
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
