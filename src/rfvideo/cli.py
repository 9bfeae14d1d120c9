"""The `rfvideo` console script: LightningCLI (`fit|validate|test|predict --config X.yaml`) plus
`rfvideo generate` (prompts -> mp4 with a trained module) and `rfvideo trajectories` (stage-1 data).

Models and data are chosen by `class_path` in YAML (experiments/); a misspelt key is rejected by
jsonargparse with one error naming the key.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from lightning.pytorch.cli import LightningCLI

__all__ = ["main", "write_mp4"]

_EXTRA = ("generate",)


def write_mp4(video: torch.Tensor, path: str | Path, *, fps: int = 16) -> None:
    """Write a video `(F 3 H W)` in [0, 1] as H.264 mp4 with PyAV."""
    import av
    import numpy as np

    frames = (video.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    h, w = frames.shape[1:3]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = w - w % 2, h - h % 2
        stream.pix_fmt = "yuv420p"
        for fr in frames:
            img = av.VideoFrame.from_ndarray(
                np.ascontiguousarray(fr[: h - h % 2, : w - w % 2]), format="rgb24"
            )
            for packet in stream.encode(img):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def build_cli(args: list[str], *, run: bool = True) -> LightningCLI:
    return LightningCLI(
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=args,
        run=run,
        save_config_kwargs={"overwrite": True},
    )


def generate(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="rfvideo generate", description="prompts -> mp4 files")
    p.add_argument("--config", required=True, help="the experiment YAML the checkpoint was trained with")
    p.add_argument(
        "--ckpt", default=None, help="Lightning checkpoint (generator + EMA); default: config's weights"
    )
    p.add_argument("--prompt", action="append", required=True, help="repeat for several videos")
    p.add_argument("--num-frames", type=int, default=None, help="latent frames (multiple of the chunk size)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-ema", action="store_true")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    cli = build_cli(["--config", a.config], run=False)
    module = cli.model
    if a.ckpt:
        ckpt = torch.load(a.ckpt, map_location="cpu", weights_only=True)
        module.load_state_dict(ckpt["state_dict"], strict=True)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for i, prompt in enumerate(a.prompt):
        video = module.generate(
            [prompt], seeds=[a.seed + i], num_latent_frames=a.num_frames, use_ema=not a.no_ema
        )
        path = out / f"{i:03d}.mp4"
        write_mp4(video[0], path)
        print(f"wrote {path}  ({prompt!r})")
    return 0


def trajectories(argv: list[str]) -> int:
    """Stage-1 data: ODE trajectories of the bidirectional Wan base (full attention, CFG) into shards."""
    p = argparse.ArgumentParser(prog="rfvideo trajectories", description=trajectories.__doc__)
    p.add_argument(
        "--wan", required=True, help="Wan2.1 diffusers folder (transformer/, text_encoder/, tokenizer/)"
    )
    p.add_argument("--prompts", required=True, help="prompt file (.txt/.jsonl/.csv)")
    p.add_argument("--out", required=True, help="shard directory")
    p.add_argument("--num-latent-frames", type=int, default=21)
    p.add_argument("--latent-size", type=int, nargs=2, default=(60, 104))
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--guidance", type=float, default=5.0)
    p.add_argument("--negative-prompt", default="")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = p.parse_args(argv)
    from rfvideo.data.prompts import load_prompts
    from rfvideo.modules.components import load_causal_wan, load_text_encoder
    from rfvideo.modules.trajectories import generate_trajectories, write_trajectory_shards

    base = load_causal_wan(a.wan, dtype=a.dtype).to(a.device).eval()
    text = load_text_encoder(a.wan, dtype=a.dtype).to(a.device)

    def embed(prompts: list[str]) -> torch.Tensor:
        emb, mask = text.encode(prompts)
        return emb * mask.unsqueeze(-1).to(emb.dtype)

    uncond = embed([a.negative_prompt]) if a.negative_prompt.strip() else embed(["."]) * 0
    prompts = load_prompts(a.prompts).prompts
    data = generate_trajectories(
        base, prompts, embed, uncond=uncond, seeds=[a.seed + i for i in range(len(prompts))],
        num_latent_frames=a.num_latent_frames, latent_size=tuple(a.latent_size),
        latent_channels=int(base.config.in_channels), num_steps=a.steps, guidance_scale=a.guidance,
        batch_size=a.batch_size,
    )  # fmt: skip
    print(f"wrote {len(prompts)} trajectories to {write_trajectory_shards(data, a.out)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "generate":
        return generate(argv[1:])
    if argv and argv[0] == "trajectories":
        return trajectories(argv[1:])
    build_cli(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
