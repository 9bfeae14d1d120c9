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

__all__ = ["main"]


def build_cli(args: list[str] | None, *, run: bool = True) -> LightningCLI:
    """LightningCLI over any LightningModule / DataModule class_path; `args=None` parses `sys.argv`."""
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
    from rfvideo.data.video_io import write_video

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
        write_video(path, video[0])
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


def precompute(argv: list[str]) -> int:
    """Stage inputs computed once: `latents` (raw videos -> VAE latent shards) or `embeddings` (prompts ->
    umT5 embedding shards), both resumable."""
    p = argparse.ArgumentParser(prog="rfvideo precompute", description=precompute.__doc__)
    sub = p.add_subparsers(dest="what", required=True)
    lat = sub.add_parser("latents", help="videos -> Wan VAE latent shards")
    lat.add_argument("--wan", required=True, help="Wan2.1 diffusers folder or hub id (uses vae/)")
    lat.add_argument("--videos", required=True, help="folder of videos, or a .jsonl/.csv manifest")
    lat.add_argument("--out", required=True, help="shard directory")
    lat.add_argument("--num-frames", type=int, default=81, help="pixel frames per clip (1 + 4k)")
    lat.add_argument("--height", type=int, default=480)
    lat.add_argument("--width", type=int, default=832)
    lat.add_argument("--shard-size", type=int, default=64)
    lat.add_argument("--sampling", choices=("uniform", "first"), default="uniform")
    emb = sub.add_parser("embeddings", help="prompts -> umT5 embedding shards")
    emb.add_argument(
        "--wan", required=True, help="Wan2.1 diffusers folder or hub id (text_encoder/, tokenizer/)"
    )
    emb.add_argument("--prompts", required=True, help="prompt file (.txt/.jsonl/.csv)")
    emb.add_argument("--out", required=True, help="embedding store directory")
    emb.add_argument("--shard-size", type=int, default=256)
    emb.add_argument("--batch-size", type=int, default=16)
    for q in (lat, emb):
        q.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
        q.add_argument("--dtype", default="float32", help="weights dtype (e.g. bfloat16)")
    a = p.parse_args(argv)
    dtype = _dtype(a.dtype)
    if a.what == "latents":
        from rfvideo.data.precompute import precompute_latents
        from rfvideo.models import WanVAE

        vae = WanVAE.from_pretrained(a.wan, subfolder="vae", torch_dtype=dtype).to(a.device)
        report = precompute_latents(
            a.videos, a.out, vae, num_frames=a.num_frames, height=a.height, width=a.width,
            shard_size=a.shard_size, sampling=a.sampling, device=a.device, dtype=dtype,
        )  # fmt: skip
        print(
            f"encoded {report.num_encoded} videos, skipped {report.num_failed} "
            f"(see {a.out}/precompute_report.json)"
        )
        return 0
    from rfvideo.data.prompts import load_prompts
    from rfvideo.models import TextEncoder, precompute_prompt_embeddings

    text = TextEncoder.from_pretrained(
        a.wan, subfolder="text_encoder", tokenizer_subfolder="tokenizer", torch_dtype=dtype
    ).to(a.device)
    prompts = load_prompts(a.prompts).prompts
    out = precompute_prompt_embeddings(text, prompts, a.out, shard_size=a.shard_size, batch_size=a.batch_size)
    print(f"embedded {len(prompts)} prompts into {out}")
    return 0


def vbench(argv: list[str]) -> int:
    """Score a folder of `{prompt}-{i}.mp4` videos on VBench dimensions (VBench's formulas)."""
    import json

    from rfvideo.eval import IMPLEMENTED_DIMENSIONS, load_backbones, score_video_folder

    p = argparse.ArgumentParser(prog="rfvideo vbench", description=vbench.__doc__)
    p.add_argument("--videos", required=True, help="folder of {prompt}-{i}.mp4 files")
    p.add_argument(
        "--dimensions", nargs="+", default=["temporal_flickering"], help=f"any of {IMPLEMENTED_DIMENSIONS}"
    )
    p.add_argument(
        "--backbone", action="append", default=[], metavar="DIMENSION=PATH",
        help="local weights per dimension (repeat); see rfvideo.eval.backbones for what each path holds",
    )  # fmt: skip
    p.add_argument("--full-info", default=None, help="VBench_full_info.json (appearance_style phrases)")
    p.add_argument("--out", default=None, help="write the scores as JSON here")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = p.parse_args(argv)
    spec: dict[str, str] = {}
    for item in a.backbone:
        dim, sep, path = item.partition("=")
        if not sep or not dim or not path:
            p.error(f"--backbone expects DIMENSION=PATH, got {item!r}")
        spec[dim] = path
    backbones = load_backbones(spec, device=a.device) if spec else {}
    scores = score_video_folder(a.videos, a.dimensions, backbones, full_info=a.full_info, device=a.device)
    text = json.dumps(scores, indent=2, default=float)
    if a.out:
        Path(a.out).write_text(text + "\n")
    for dim, r in scores["dimensions"].items():
        print(f"{dim:24s} {r['score']:.4f}")
    agg = scores["aggregate"]
    print(f"aggregate ({agg.get('label', '')}): " + ", ".join(
        f"{k} {agg[k]:.4f}" for k in ("quality", "semantic", "total") if isinstance(agg.get(k), float)
    ))  # fmt: skip
    return 0


def _dtype(name: str) -> torch.dtype:
    value = getattr(torch, name, None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"unknown dtype {name!r} (use e.g. float32, bfloat16, float16)")
    return value


_COMMANDS = {"generate": generate, "trajectories": trajectories, "precompute": precompute, "vbench": vbench}


def main(argv: list[str] | None = None) -> int:
    from_command_line = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in _COMMANDS:
        return _COMMANDS[argv[0]](argv[1:])
    # From the console script LightningCLI reads sys.argv itself (passing it again makes it warn).
    build_cli(None if from_command_line else argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
