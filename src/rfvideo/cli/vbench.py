"""Score a folder of `{prompt}-{i}.mp4` videos on VBench dimensions (VBench's formulas)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rfvideo.cli.errors import UsageError

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `rfvideo vbench`."""
    parser.add_argument("--videos", required=True, help="folder of {prompt}-{i}.mp4 files")
    parser.add_argument(
        "--dimensions", nargs="+", default=["temporal_flickering"],
        help="VBench dimensions (rfvideo.eval.IMPLEMENTED_DIMENSIONS)",
    )  # fmt: skip
    parser.add_argument(
        "--backbone", action="append", default=[], metavar="DIMENSION=PATH",
        help="local weights per dimension (repeat); see rfvideo.eval.backbones for what each path holds",
    )  # fmt: skip
    parser.add_argument("--full-info", default=None, help="VBench_full_info.json (appearance_style phrases)")
    parser.add_argument("--out", default=None, help="write the scores as JSON here")
    parser.add_argument("--device", default="auto", help="cuda, cpu, ... (auto: cuda when available)")


def run(args: argparse.Namespace) -> int:
    """Load the backbones named, score the folder, print and optionally write the scores."""
    spec: dict[str, str] = {}
    for item in args.backbone:
        dim, sep, path = item.partition("=")
        if not sep or not dim or not path:
            raise UsageError(f"--backbone expects DIMENSION=PATH, got {item!r}")
        spec[dim] = path

    from rfvideo.cli.devices import resolve_device
    from rfvideo.eval import IMPLEMENTED_DIMENSIONS, load_backbones, score_video_folder

    unknown = [d for d in args.dimensions if d not in IMPLEMENTED_DIMENSIONS]
    if unknown:
        raise UsageError(f"--dimensions: unknown {unknown} (choose from {list(IMPLEMENTED_DIMENSIONS)})")
    device = resolve_device(args.device)
    backbones = load_backbones(spec, device=device) if spec else {}
    scores = score_video_folder(
        args.videos, args.dimensions, backbones, full_info=args.full_info, device=device
    )
    text = json.dumps(scores, indent=2, default=float)
    if args.out:
        Path(args.out).write_text(text + "\n")
    for dim, r in scores["dimensions"].items():
        print(f"{dim:24s} {r['score']:.4f}")
    agg = scores["aggregate"]
    print(f"aggregate ({agg.get('label', '')}): " + ", ".join(
        f"{k} {agg[k]:.4f}" for k in ("quality", "semantic", "total") if isinstance(agg.get(k), float)
    ))  # fmt: skip
    return 0
