"""Sample VBench's standard prompt suite with a trained model: `{prompt}-{i}.mp4` + protocol.json.

Run it once per rank under torchrun (`torchrun --nproc-per-node 8 -m rfvideo.cli sample ...`): each rank
takes every WORLD_SIZE-th video from RANK. A rerun skips valid videos, so an interrupted run resumes.

The model comes from `--model DIR|HUB_ID` or `--config [--ckpt]` (`rfvideo.cli.model_source`; no reward
model or data is built). Decoding is streamed (`RFVideoPipeline.stream`): each chunk is decoded as it is
made and goes straight into the mp4 encoder, so a video never sits whole in memory; the file is renamed
into place when complete. The frames are the pipeline's `__call__`'s for the same seed (the streaming
decoder equals the full decode).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path

from rfvideo.cli.argtypes import nonnegative_int, positive_float, positive_int
from rfvideo.cli.errors import UsageError
from rfvideo.cli.model_source import add_model_arguments, check_model_arguments, load_pipeline

__all__ = ["add_arguments", "first_prompts", "run", "sample_device"]

SUITES = ("vbench",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `rfvideo sample`."""
    parser.add_argument("--suite", choices=SUITES, default="vbench", help="prompt suite (VBench's standard)")
    parser.add_argument("--out", required=True, help="video folder (protocol.json is written there)")
    parser.add_argument(
        "--dimensions",
        nargs="+",
        default=None,
        help="only these VBench dimensions' prompts (default: all 16)",
    )
    parser.add_argument(
        "--prompts-per-dimension",
        type=positive_int,
        default=None,
        metavar="N",
        help="only the first N prompts of each dimension (a quick check; seeds stay the full run's)",
    )
    parser.add_argument("--num-seeds", type=positive_int, default=5, help="videos per prompt (VBench: 5)")
    parser.add_argument("--seed", type=nonnegative_int, default=0, help="base seed (seed = base + k*N + i)")
    parser.add_argument(
        "--extended", action="store_true", help="generate from the Wan2.1-extended prompts (names: original)"
    )
    parser.add_argument(
        "--num-frames", type=positive_int, default=None, help="pixel frames per video (default: the model's)"
    )
    parser.add_argument(
        "--fps", type=positive_float, default=None, help="mp4 frame rate (default: the model's)"
    )
    add_model_arguments(parser)
    parser.add_argument(
        "--suite-dir", default=None, help="folder of VBench_full_info.json (default: shipped)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def sample_device(name: str, *, cuda_count: int, environ: Mapping[str, str]) -> str:
    """The device of this rank: ``auto`` puts torchrun's rank ``LOCAL_RANK`` on its own GPU.

    Args:
        name: ``auto`` or a torch device string (returned as given).
        cuda_count: visible CUDA devices (``torch.cuda.device_count()``).
        environ: the process environment (torchrun sets ``LOCAL_RANK``).
    """
    if name != "auto":
        return name
    if cuda_count < 1:
        return "cpu"
    try:
        local = int(environ.get("LOCAL_RANK", "0"))
    except ValueError as e:
        raise UsageError(f"LOCAL_RANK must be an integer, got {environ.get('LOCAL_RANK')!r}") from e
    return f"cuda:{local % cuda_count}"


def first_prompts(jobs: list, dimensions: list[str], n: int) -> list:
    """The jobs of the first ``n`` prompts (suite order) of each of ``dimensions``, in suite order.

    A prompt tagged with two of the dimensions counts for both; every job keeps its seed and name, so
    the videos are the ones a full run makes.
    """
    keep: set[int] = set()
    for d in dimensions:
        seen: list[int] = []
        for j in jobs:
            if d in j.dimensions and j.suite_index not in seen:
                seen.append(j.suite_index)
        keep.update(seen[:n])
    return [j for j in jobs if j.suite_index in keep]


def run(args: argparse.Namespace) -> int:
    """Build the module, shard the suite over ranks, sample what is missing."""
    from rfvideo.eval.aggregate import ALL_DIMENSIONS, canonical_dimension
    from rfvideo.eval.protocol import ProtocolMismatchError, file_sha256, package_versions
    from rfvideo.eval.suite import (
        EXTENDED_PROMPTS,
        FULL_INFO,
        dist_env,
        packaged_suite_dir,
        shard,
        suite_jobs,
    )

    suite_dir = Path(args.suite_dir) if args.suite_dir else packaged_suite_dir()
    if not (suite_dir / FULL_INFO).is_file():
        raise UsageError(f"--suite-dir: no {FULL_INFO} in {suite_dir}")
    problems = check_model_arguments(args)
    if problems:
        raise UsageError("\n".join(problems))
    dims = None
    if args.dimensions:
        try:
            dims = [canonical_dimension(d) for d in args.dimensions]
        except ValueError as e:
            raise UsageError(f"--dimensions: {e}") from e
    try:
        jobs = suite_jobs(
            suite_dir, dimensions=dims, num_seeds=args.num_seeds, base_seed=args.seed, extended=args.extended
        )
        rank, world = dist_env()
    except (ValueError, FileNotFoundError) as e:
        raise UsageError(str(e)) from e
    if args.prompts_per_dimension is not None:
        jobs = first_prompts(jobs, dims or list(ALL_DIMENSIONS), args.prompts_per_dimension)
    mine = shard(jobs, rank, world)

    import os

    import torch

    from rfvideo.eval.sampling import pipeline_video_stream, stream_jobs

    args.device = sample_device(args.device, cuda_count=torch.cuda.device_count(), environ=os.environ)
    pipe = load_pipeline(args)
    fps = args.fps or float(pipe.config.fps)
    num_frames = args.num_frames or pipe.config.num_frames
    try:
        stream = pipeline_video_stream(pipe, num_frames=num_frames)
    except ValueError as e:
        raise UsageError(f"--num-frames: {e}") from e

    def named_hash(path: str | Path) -> dict[str, str]:
        return {"name": Path(path).name, "sha256": file_sha256(path)}

    protocol = {
        "suite": args.suite,
        "prompt_file": named_hash(suite_dir / FULL_INFO),
        "extended_prompts": named_hash(suite_dir / EXTENDED_PROMPTS) if args.extended else None,
        "num_seeds": args.num_seeds,
        "seed_rule": "seed = base_seed + suite_index * num_seeds + i",
        "base_seed": args.seed,
        "checkpoint": named_hash(args.ckpt) if args.ckpt else None,
        "config": [named_hash(c) for c in args.config or []],
        "model": args.model,
        "preset": args.preset,
        "num_frames": num_frames,
        "use_ema": not args.no_ema,
        "fps": fps,
        "decode_dtype": str(next(pipe.vae.parameters()).dtype),
        "versions": package_versions(),
    }
    try:
        report = stream_jobs(
            stream,
            mine,
            args.out,
            protocol=protocol,
            dimensions=dims or list(ALL_DIMENSIONS),
            fps=fps,
            progress=not args.no_progress,
        )
    except ProtocolMismatchError as e:
        raise UsageError(str(e)) from e
    print(
        f"rank {rank}/{world}: wrote {len(report.written)}, kept {len(report.skipped)} of {len(mine)} videos "
        f"in {args.out} (protocol {report.protocol_id})"
    )
    return 0
