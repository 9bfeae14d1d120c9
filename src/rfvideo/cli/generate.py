"""`rfvideo generate`: prompts -> mp4 files with a trained module, each file written while it is generated.

Every chunk's latents are decoded by the VAE's streaming decoder as soon as the sampler yields them and
the frames go straight into the mp4 encoder (`rfvideo.streaming`), so the first frames exist after one
chunk and a video never sits whole in memory. Files are named VBench's way, `{prompt}-{i}.mp4` (the name
`rfvideo vbench` reads the prompt from), with `generate.json` beside them holding the settings, the files
and the speed numbers. Video `i` of prompt `p` (0-based position in the `--prompt` list) uses seed
`--seed + p * --num-samples + i`, the noise `module.generate` draws for that seed.

Speed, printed at the end (all of them exclude loading, prompt encoding and mp4 encoding):
  model-only FPS     pixel frames / seconds in the generator (denoising forwards + context passes);
  end-to-end FPS     pixel frames / seconds in the generator and the streamed VAE decode;
  time to 1st frame  seconds from a video's start (noise drawn) to its first decoded pixel frames
                     (chunk 0's denoising forwards and one decode), the mean over the videos.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rfvideo.cli.argtypes import nonnegative_int, positive_float, positive_int
from rfvideo.cli.errors import UsageError

__all__ = ["add_arguments", "run", "speed_summary"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `rfvideo generate`."""
    parser.add_argument(
        "--config", action="append", required=True, help="the experiment YAML the module was trained with"
    )
    parser.add_argument("--ckpt", default=None, help="Lightning checkpoint (generator + EMA); default: none")
    parser.add_argument("--prompt", action="append", required=True, help="repeat for several prompts")
    parser.add_argument(
        "--latent-frames",
        type=positive_int,
        default=None,
        help="latent frames per video, a multiple of the chunk size (pixel frames = 1 + 4 (n - 1)); "
        "default: the config's num_latent_frames",
    )
    parser.add_argument("--num-samples", type=positive_int, default=1, help="videos per prompt")
    parser.add_argument("--seed", type=nonnegative_int, default=0, help="base seed (see the module doc)")
    parser.add_argument("--no-ema", action="store_true", help="use the trained weights, not their EMA")
    parser.add_argument("--fps", type=positive_float, default=16.0, help="frame rate of the files")
    parser.add_argument("--crf", type=nonnegative_int, default=None, help="x264 quality (default 23)")
    parser.add_argument("--no-progress", action="store_true", help="no per-chunk progress bar")
    parser.add_argument("--out", required=True, help="output folder")


def _filenames(prompts: list[str], num_samples: int) -> list[list[str]]:
    from rfvideo.eval.suite import vbench_filename

    try:
        return [[vbench_filename(p, i) for i in range(num_samples)] for p in prompts]
    except ValueError as e:
        raise UsageError(f"--prompt: {e}") from e


def speed_summary(timings: list[list[dict[str, float]]], frames: list[list[int]]) -> dict[str, float]:
    """The three speed numbers from per-video, per-chunk `{"model", "decode"}` seconds and pixel frames.

    Args:
        timings: `timings[v][c]`: seconds of chunk `c` of video `v` in the generator and in the decode.
        frames: `frames[v][c]`: pixel frames chunk `c` of video `v` produced.

    Returns:
        `model_fps`, `end_to_end_fps`, `time_to_first_frame_s` (defined in the module docstring).
    """
    total = sum(sum(f) for f in frames)
    model = sum(c["model"] for video in timings for c in video)
    decode = sum(c["decode"] for video in timings for c in video)
    first = [video[0]["model"] + video[0]["decode"] for video in timings]
    return {
        "model_fps": total / model if model > 0 else float("inf"),
        "end_to_end_fps": total / (model + decode) if model + decode > 0 else float("inf"),
        "time_to_first_frame_s": sum(first) / len(first),
        "pixel_frames": float(total),
    }


def run(args: argparse.Namespace) -> int:
    """Validate, build the module, stream every video into its mp4, write generate.json, print speeds."""
    for p in args.prompt:
        if not p.strip():
            raise UsageError(f"--prompt: prompt {p!r} is empty")
    names = _filenames(args.prompt, args.num_samples)
    for c in args.config:
        if not Path(c).is_file():
            raise UsageError(f"--config: no such file: {c}")

    import torch
    from tqdm.auto import tqdm

    from rfvideo.cli.lightning import build_module, load_module_checkpoint
    from rfvideo.cli.preflight import preflight_checkpoint
    from rfvideo.streaming import Mp4StreamWriter, stream_video

    if args.ckpt:
        preflight_checkpoint(args.ckpt, option="--ckpt")
    # The requested length goes through the config, so preflight checks it (a multiple of the chunk size,
    # the RoPE table) before any weights load.
    overrides = (
        [] if args.latent_frames is None else [f"--model.init_args.num_latent_frames={args.latent_frames}"]
    )
    module = build_module(args.config, overrides)
    if args.ckpt:
        try:
            load_module_checkpoint(module, args.ckpt)
        except ValueError as e:
            raise UsageError(f"--ckpt: {e}") from e
    model = module.generator_ema if not args.no_ema and module.generator_ema is not None else module.generator
    model.eval()
    k = int(model.num_frames_per_chunk)
    f = int(args.latent_frames or module.num_latent_frames)
    if f % k:
        # Reached only when the config leaves the chunk size to the loader's default.
        raise UsageError(f"--latent-frames={f} is not a multiple of the generator's chunk size {k}")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    timings: list[list[dict[str, float]]] = []
    frames: list[list[int]] = []
    files: list[dict[str, Any]] = []
    for pi, prompt in enumerate(args.prompt):
        emb = module.encode_prompts([prompt])
        for i in range(args.num_samples):
            seed = args.seed + pi * args.num_samples + i
            g = torch.Generator().manual_seed(seed)
            noise = module.noise(1, f, g)  # the noise module.generate draws for this seed
            path = out / names[pi][i]
            video_timings: list[dict[str, float]] = []
            counts: list[int] = []
            bar = tqdm(total=f // k, desc=path.name[:40], unit="chunk", disable=args.no_progress)
            with Mp4StreamWriter(path, fps=args.fps, crf=args.crf, metadata={"comment": prompt}) as writer:
                for _, chunk in stream_video(
                    model,
                    module.vae,
                    noise,
                    emb,
                    schedule=module.schedule,
                    generator=g,
                    timings=video_timings,
                ):
                    writer.write(chunk[0].float().clamp(0, 1))
                    counts.append(int(chunk.shape[1]))
                    bar.update(1)
            bar.close()
            timings.append(video_timings)
            frames.append(counts)
            files.append({"file": path.name, "prompt": prompt, "seed": seed, "pixel_frames": sum(counts)})
            print(f"wrote {path}  ({prompt!r}, seed {seed})")

    speed = speed_summary(timings, frames)
    settings = {
        "config": [str(c) for c in args.config],
        "ckpt": args.ckpt,
        "use_ema": not args.no_ema and module.generator_ema is not None,
        "latent_frames": f,
        "num_frames_per_chunk": k,
        "latent_size": list(module.latent_size),
        "timesteps": [float(t) for t in module.schedule.timesteps],
        "fps": args.fps,
        "crf": args.crf,
        "seed": args.seed,
        "seed_rule": "seed = --seed + prompt_index * --num-samples + i",
        "num_samples": args.num_samples,
        "device": str(next(model.parameters()).device),
        "dtype": str(next(model.parameters()).dtype),
        "files": files,
        "speed": speed,
    }
    (out / "generate.json").write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
    print(
        f"model-only FPS {speed['model_fps']:.2f} (pixel frames / generator seconds) | "
        f"end-to-end FPS {speed['end_to_end_fps']:.2f} (generator + streamed VAE decode) | "
        f"time to first pixel frame {speed['time_to_first_frame_s']:.3f} s (mean over {len(files)} videos; "
        "loading, prompt encoding and mp4 encoding excluded)"
    )
    return 0
