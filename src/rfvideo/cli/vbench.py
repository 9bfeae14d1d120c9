"""Score a folder of `{prompt}-{i}.mp4` videos on VBench dimensions: rfvideo's code, VBench's, or both.

Without `--official` the in-loop dimensions are scored by rfvideo's code (VBench's formulas, one video
in memory at a time). With `--official` VBench 0.1.5's own evaluator also runs, in the isolated
environment (`make vbench-env`), on any of the 16 dimensions; both columns are printed with each side's
Quality / Semantic / Total (VBench's constants; an aggregate over fewer than 16 dimensions is labelled a
subset).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rfvideo.cli.errors import UsageError

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `rfvideo vbench`."""
    parser.add_argument("--videos", required=True, help="folder of {prompt}-{i}.mp4 files")
    parser.add_argument(
        "--dimensions", nargs="+", default=["temporal_flickering"], help="VBench dimensions (any of the 16)"
    )
    parser.add_argument(
        "--backbone", action="append", default=[], metavar="DIMENSION=PATH",
        help="local weights per dimension (repeat); see rfvideo.eval.backbones for what each path holds",
    )  # fmt: skip
    parser.add_argument(
        "--full-info", default=None,
        help="VBench_full_info.json: score each dimension on its own prompts (VBench's standard evaluation) "
        "and read appearance_style phrases; 'suite' = the copy shipped with rfvideo",
    )  # fmt: skip
    parser.add_argument("--precision", choices=("fp32", "vbench"), default="fp32",
                        help="vbench: CLIP in fp16 on CUDA, as VBench runs it (fp32 on the CPU)")  # fmt: skip
    parser.add_argument("--official", action="store_true", help="also run VBench's own evaluator")
    parser.add_argument("--vbench-python", default=None, help="isolated interpreter (default .venv-vbench)")
    parser.add_argument("--vbench-cache", default=None, help="VBench's weight cache (VBENCH_CACHE_DIR)")
    parser.add_argument("--out", default=None, help="write the scores as JSON here")
    parser.add_argument("--device", default="auto", help="cuda, cpu, ... (auto: cuda when available)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _spec(items: list[str]) -> dict[str, str]:
    spec: dict[str, str] = {}
    for item in items:
        dim, sep, path = item.partition("=")
        if not sep or not dim or not path:
            raise UsageError(f"--backbone expects DIMENSION=PATH, got {item!r}")
        spec[dim] = path
    return spec


def _suite_full_info(videos: Path) -> str | None:
    """A folder sampled by `rfvideo sample --suite vbench` is scored on VBench's per-dimension prompts.

    Without this, every dimension would score every video of the folder (e.g. subject consistency on
    the temporal-flickering prompts' static videos), which is not VBench's evaluation.
    """
    from rfvideo.eval.protocol import file_sha256, read_protocol
    from rfvideo.eval.suite import FULL_INFO, packaged_suite_dir

    try:
        data = read_protocol(videos)
    except ValueError as e:
        raise UsageError(str(e)) from e
    if data is None or data["protocol"].get("suite") != "vbench":
        return None
    shipped = packaged_suite_dir() / FULL_INFO
    want = (data["protocol"].get("prompt_file") or {}).get("sha256")
    if want != file_sha256(shipped):
        raise UsageError(
            f"--full-info: {videos} was sampled from a prompt file other than rfvideo's VBench suite "
            f"(sha256 {str(want)[:12]}...): give that VBench_full_info.json"
        )
    print(f"scoring on VBench's per-dimension prompts ({shipped.name}, from {videos}'s protocol.json)")
    return str(shipped)


def run(args: argparse.Namespace) -> int:
    """Score with rfvideo's code (in-loop dimensions) and optionally VBench's; print and write JSON."""
    spec = _spec(args.backbone)
    if not Path(args.videos).is_dir():
        raise UsageError(f"--videos: not a folder: {args.videos}")
    from rfvideo.cli.devices import resolve_device
    from rfvideo.eval.official import default_python, format_report, merge_reports, run_official

    dims, ours_dims = _dimensions(args, spec)
    full_info = _full_info(args)
    device = resolve_device(args.device)
    ours = _score_ours(args, spec, ours_dims, full_info, device) if ours_dims else None
    theirs = None
    if args.official:
        python = args.vbench_python or default_python()
        if not Path(python).is_file():
            raise UsageError(f"--vbench-python: no interpreter at {python} (build it with `make vbench-env`)")
        theirs = run_official(
            args.videos, dims, python=python, full_info=full_info, device=device, cache_dir=args.vbench_cache
        )
    report = merge_reports(ours, theirs)
    print(format_report(report))
    if args.out:
        # rfvideo's result at the top level (as without --official), VBench's and the comparison beside it.
        data = dict(ours or {"dimensions": {}})
        data["precision"] = args.precision
        if theirs is not None:
            data["vbench"] = {d: {"score": s.score, "per_video": s.per_video} for d, s in theirs.items()}
        data["comparison"] = report
        Path(args.out).write_text(json.dumps(data, indent=2, default=float) + "\n", encoding="utf-8")
    return 0


def _dimensions(args: argparse.Namespace, spec: dict[str, str]) -> tuple[list[str], list[str]]:
    """(every requested dimension, canonical; those rfvideo's own code scores here), or a UsageError."""
    from rfvideo.eval.aggregate import canonical_dimension
    from rfvideo.eval.registry import get_dimension

    try:
        dims = [canonical_dimension(d) for d in args.dimensions]
        entries = {d: get_dimension(d) for d in dims}
    except ValueError as e:
        raise UsageError(f"--dimensions: {e}") from e
    not_ours = [d for d, e in entries.items() if not e.in_loop]
    if not_ours and not args.official:
        raise UsageError(f"--dimensions: {not_ours} need VBench's evaluator: add --official")
    ours_dims = [d for d, e in entries.items() if e.in_loop and (not e.needs_backbone or d in spec)]
    missing = [d for d, e in entries.items() if e.in_loop and e.needs_backbone and d not in spec]
    if missing and not args.official:
        raise UsageError(f"--backbone: no weights given for {missing} (DIMENSION=PATH)")
    return dims, ours_dims


def _full_info(args: argparse.Namespace) -> str | None:
    """The VBench_full_info.json the videos were sampled from (`--full-info`, the packaged suite's with
    --official, else the one the folder's protocol names), checked to exist."""
    full_info = args.full_info
    if full_info == "suite" or (full_info is None and args.official):
        # VBench's evaluator scores each dimension on its own prompts; ours must see the same videos.
        from rfvideo.eval.suite import FULL_INFO, packaged_suite_dir

        full_info = str(packaged_suite_dir() / FULL_INFO)
    if full_info is None:
        full_info = _suite_full_info(Path(args.videos))
    if full_info is not None and not Path(full_info).is_file():
        raise UsageError(f"--full-info: no such file: {full_info}")
    return full_info


def _score_ours(
    args: argparse.Namespace, spec: dict[str, str], dims: list[str], full_info: str | None, device: Any
) -> dict[str, Any]:
    """rfvideo's scores of `dims` over the folder, with a progress bar unless --no-progress."""
    from rfvideo.eval.backbones import load_backbones
    from rfvideo.eval.folder import score_video_folder
    from rfvideo.eval.protocol import ProtocolMismatchError

    backbones = load_backbones({d: spec[d] for d in dims if d in spec}, device, args.precision)
    bar = None
    if not args.no_progress:
        from tqdm.auto import tqdm

        bar = tqdm(desc="scoring", unit="video")

    def progress(done: int, total: int, name: str) -> None:
        if bar is not None:
            bar.total = total
            bar.update(1)

    try:
        return score_video_folder(
            args.videos, dims, backbones, full_info=full_info, device=device, progress=progress
        )
    except ProtocolMismatchError as e:
        raise UsageError(str(e)) from e
    finally:
        if bar is not None:
            bar.close()
