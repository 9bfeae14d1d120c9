"""`rfvideo generate`: prompts -> mp4 files through `RFVideoPipeline.stream`, each file written while it is
generated.

    rfvideo generate --model outputs/demo/pipeline --prompt "a red square moving left" --out videos/
    rfvideo generate --config X.yaml --ckpt last.ckpt --prompts prompts.txt --num-frames 81 --out videos/

The model comes from `--model DIR|HUB_ID`, `--config [--ckpt]` or `--demo` (`rfvideo.cli.model_source`);
sizes are in pixels (`--num-frames 81 --height 480 --width 832`, default the model's own). Every chunk is
decoded as soon as it is clean and its frames go straight into the mp4 encoder, so the first frames exist
after one chunk and a video never sits whole in memory.

Files: `{index:04d}-{slug}.mp4` (`index` counts videos from 0 in prompt order, `slug` is the prompt in
lower-case letters, digits and dashes, at most 80 characters), so any prompt, however long and whatever
characters it holds, gives a valid and unique name; the full prompt is in the file's `comment` tag and in
`generate.json` beside the files, with each file's seed and the settings. An existing file is never
replaced (`--overwrite` allows it). Video `i` of prompt `p` (0-based) uses seed `--seed + p * --num-samples
+ i`, the noise `RFVideoPipeline(prompt, generator=torch.Generator().manual_seed(seed))` draws.

Speed, printed at the end (`rfvideo.utils.timings`): model-only FPS, end-to-end FPS (text, generator and
decode), time to the first pixel frame from the call (text encoding included; loading reported apart).
"""

from __future__ import annotations

import argparse
import json
import re
import unicodedata
from pathlib import Path
from typing import Any

from rfvideo.cli.argtypes import nonnegative_int, positive_float, positive_int
from rfvideo.cli.errors import UsageError
from rfvideo.cli.model_source import (
    add_model_arguments,
    check_model_arguments,
    frame_count_problems,
    load_pipeline,
)

__all__ = ["NAME_TEMPLATE", "add_arguments", "output_name", "read_prompt_file", "run", "slug"]

NAME_TEMPLATE = "{index:04d}-{slug}.mp4"
SLUG_CHARS = 80


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `rfvideo generate`."""
    add_model_arguments(parser, demo=True)
    parser.add_argument("--prompt", action="append", default=[], help="a prompt (repeatable)")
    parser.add_argument("--prompts", default=None, metavar="FILE", help="a text file, one prompt a line")
    parser.add_argument(
        "--num-frames", type=positive_int, default=None, help="pixel frames, 1 + 4k (default: the model's)"
    )
    parser.add_argument("--height", type=positive_int, default=None, help="pixels (default: the model's)")
    parser.add_argument("--width", type=positive_int, default=None, help="pixels (default: the model's)")
    parser.add_argument("--num-samples", type=positive_int, default=1, help="videos per prompt (default: 1)")
    parser.add_argument("--seed", type=nonnegative_int, default=0, help="base seed (default: 0; see above)")
    parser.add_argument("--fps", type=positive_float, default=None, help="frame rate (default: the model's)")
    parser.add_argument("--crf", type=nonnegative_int, default=None, help="x264 quality (default: 23)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing files of the same name")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--out", required=True, help="output folder")


def slug(prompt: str, limit: int = SLUG_CHARS) -> str:
    """The prompt as a file-name part: ASCII lower-case letters, digits and single dashes, <= `limit`."""
    ascii_text = unicodedata.normalize("NFKD", prompt).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return text[:limit].rstrip("-") or "video"


def output_name(index: int, prompt: str) -> str:
    """The file name of video `index` (`NAME_TEMPLATE`)."""
    return NAME_TEMPLATE.format(index=index, slug=slug(prompt))


def read_prompt_file(path: str) -> list[str]:
    """Non-empty lines of a UTF-8 text file (surrounding whitespace dropped).

    Raises:
        UsageError: no such file, not UTF-8, or no prompt in it.
    """
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--prompts: no such file: {path!r}")
    try:
        lines = p.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as e:
        raise UsageError(f"--prompts: {path!r} is not UTF-8 (byte {e.start})") from None
    prompts = [line.strip() for line in lines if line.strip()]
    if not prompts:
        raise UsageError(f"--prompts: {path!r} holds no prompt")
    return prompts


def _prompts(args: argparse.Namespace) -> list[str]:
    prompts = list(args.prompt)
    for i, p in enumerate(prompts):
        if not p.strip():
            raise UsageError(f"--prompt: prompt {i} is empty: {p!r}")
    if args.prompts:
        prompts += read_prompt_file(args.prompts)
    if not prompts:
        raise UsageError("give --prompt TEXT (repeatable) or --prompts FILE")
    return [p.strip() for p in prompts]


def _plan(args: argparse.Namespace, prompts: list[str], out: Path) -> list[dict[str, Any]]:
    jobs = []
    for pi, prompt in enumerate(prompts):
        for i in range(args.num_samples):
            index = pi * args.num_samples + i
            jobs.append({"file": output_name(index, prompt), "prompt": prompt, "seed": args.seed + index})
    if not args.overwrite:
        existing = [j["file"] for j in jobs if (out / j["file"]).exists()]
        if existing:
            raise UsageError(
                f"--out: {len(existing)} file(s) exist already (first: {existing[0]!r}); "
                "use another folder or --overwrite"
            )
    return jobs


def run(args: argparse.Namespace) -> int:
    """Validate, load the pipeline, stream every video into its mp4, write generate.json, print speeds."""
    prompts = _prompts(args)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out: {args.out!r} is a file, expected a folder")
    jobs = _plan(args, prompts, out)
    problems = check_model_arguments(args)
    if not problems:
        problems = frame_count_problems(args, args.num_frames)
    if problems:
        raise UsageError("\n".join(problems))

    import torch
    from tqdm.auto import tqdm

    from rfvideo.streaming import Mp4StreamWriter
    from rfvideo.utils.timings import GenerationTimings

    pipe = load_pipeline(args)
    num_frames = args.num_frames or pipe.config.num_frames
    height, width = args.height or pipe.config.height, args.width or pipe.config.width
    try:
        pipe.check_inputs(prompts, None, num_frames, height, width, "pt")
    except ValueError as e:
        raise UsageError(str(e)) from None
    fps = args.fps or pipe.config.fps
    out.mkdir(parents=True, exist_ok=True)
    total = GenerationTimings(load_s=pipe.load_seconds)
    firsts: list[float] = []
    bar = tqdm(total=len(jobs), desc="videos", unit="video", disable=args.no_progress)
    for job in jobs:
        g = torch.Generator().manual_seed(job["seed"])
        path = out / job["file"]
        with Mp4StreamWriter(path, fps=fps, crf=args.crf, metadata={"comment": job["prompt"]}) as writer:
            stream = pipe.stream(
                job["prompt"], generator=g, num_frames=num_frames, height=height, width=width
            )
            for frames in stream:
                writer.write(frames[0].clamp(0, 1))
                bar.set_postfix(chunk=f"{stream.chunk_index}/{stream.max_chunks}", refresh=True)
        t = stream.timings
        job |= {"pixel_frames": t.pixel_frames, "timings": t.to_dict()}
        for stage in ("text", "denoise", "decode"):
            setattr(total, f"{stage}_s", getattr(total, f"{stage}_s") + getattr(t, f"{stage}_s"))
        total.pixel_frames += t.pixel_frames
        firsts.append(t.first_frame_s or 0.0)
        bar.update(1)
        bar.write(f"wrote {path}  (seed {job['seed']})")
    bar.close()
    total.first_frame_s = sum(firsts) / len(firsts)
    settings = {
        "source": {"model": args.model, "config": args.config, "ckpt": args.ckpt, "demo": bool(args.demo)},
        "use_ema": not args.no_ema,
        "preset": args.preset,
        "num_frames": num_frames,
        "height": height,
        "width": width,
        "num_frames_per_chunk": pipe.num_frames_per_chunk,
        "timesteps": pipe.scheduler.timesteps,
        "fps": fps,
        "crf": args.crf,
        "seed_rule": "seed = --seed + prompt_index * --num-samples + i",
        "name_rule": NAME_TEMPLATE,
        "device": str(pipe.device),
        "dtype": str(pipe.dtype),
        "files": jobs,
        "speed": total.to_dict(),
    }
    (out / "generate.json").write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
    print(f"{len(jobs)} video(s) in {out}: {total.summary()} (first frame: mean over the videos)")
    return 0
