"""Stage inputs computed once: `latents` (raw videos -> VAE latent shards) or `embeddings` (prompts ->
umT5 embedding shards), both resumable."""

from __future__ import annotations

import argparse

from rfvideo.cli.argtypes import positive_int
from rfvideo.cli.errors import UsageError

__all__ = ["add_arguments", "run"]

# The Wan VAE downsamples space by 8 and time by 4 (first frame alone): sizes must fit those strides.
SPATIAL_STRIDE = 8
TEMPORAL_STRIDE = 4


class _Renamed(argparse.Action):
    """An old option name that now fails with the new name (it counted something ambiguous)."""

    def __init__(self, option_strings: list[str], dest: str, new: str = "", **kwargs: object) -> None:
        self.new = new
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)  # type: ignore[arg-type]

    def __call__(self, parser, namespace, values, option_string=None) -> None:  # noqa: ANN001
        parser.error(f"{option_string} was renamed to {self.new} (it counts pixel frames)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `rfvideo precompute latents|embeddings`."""
    sub = parser.add_subparsers(dest="what", required=True)
    lat = sub.add_parser("latents", help="videos -> Wan VAE latent shards")
    lat.add_argument("--wan", required=True, help="Wan2.1 diffusers folder or hub id (uses vae/)")
    lat.add_argument("--videos", required=True, help="folder of videos, or a .jsonl/.csv manifest")
    lat.add_argument("--out", required=True, help="shard directory")
    lat.add_argument("--pixel-frames", type=positive_int, default=81, help="pixel frames per clip (1 + 4k)")
    lat.add_argument("--num-frames", action=_Renamed, new="--pixel-frames")
    lat.add_argument("--height", type=positive_int, default=480, help="pixel height (multiple of 8)")
    lat.add_argument("--width", type=positive_int, default=832, help="pixel width (multiple of 8)")
    lat.add_argument("--shard-size", type=positive_int, default=64)
    lat.add_argument("--sampling", choices=("uniform", "first"), default="uniform")
    emb = sub.add_parser("embeddings", help="prompts -> umT5 embedding shards")
    emb.add_argument(
        "--wan", required=True, help="Wan2.1 diffusers folder or hub id (text_encoder/, tokenizer/)"
    )
    emb.add_argument("--prompts", required=True, help="prompt file (.txt/.jsonl/.csv)")
    emb.add_argument("--out", required=True, help="embedding store directory")
    emb.add_argument("--shard-size", type=positive_int, default=256)
    emb.add_argument("--batch-size", type=positive_int, default=16)
    for q in (lat, emb):
        q.add_argument("--device", default="auto", help="cuda, cpu, ... (auto: cuda when available)")
        q.add_argument("--dtype", default="float32", help="weights dtype (e.g. bfloat16)")


def check_latent_sizes(pixel_frames: int, height: int, width: int) -> None:
    """Refuse sizes the VAE cannot encode, before any video is decoded."""
    if (pixel_frames - 1) % TEMPORAL_STRIDE:
        raise UsageError(f"--pixel-frames must be 1 + {TEMPORAL_STRIDE}k (e.g. 81), got {pixel_frames}")
    for name, value in (("--height", height), ("--width", width)):
        if value % SPATIAL_STRIDE:
            raise UsageError(f"{name} must be a multiple of {SPATIAL_STRIDE}, got {value}")


def run(args: argparse.Namespace) -> int:
    """Encode the videos or prompts; exit 1 when nothing was encoded."""
    from rfvideo.cli.devices import resolve_device, resolve_dtype

    if args.what == "latents":
        check_latent_sizes(args.pixel_frames, args.height, args.width)
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype)
    if args.what == "latents":
        return _latents(args, device, dtype)
    return _embeddings(args, device, dtype)


def _latents(args: argparse.Namespace, device: str, dtype: object) -> int:
    from rfvideo.data.precompute import precompute_latents
    from rfvideo.models import WanVAE
    from rfvideo.utils.media_logs import quiet_media_logs

    vae = WanVAE.from_pretrained(args.wan, subfolder="vae", torch_dtype=dtype).to(device)
    quiet_media_logs()
    report = precompute_latents(
        args.videos, args.out, vae, num_frames=args.pixel_frames, height=args.height, width=args.width,
        shard_size=args.shard_size, sampling=args.sampling, device=device, dtype=dtype,
    )  # fmt: skip
    print(
        f"encoded {report.num_encoded} videos, skipped {report.num_failed} "
        f"(see {args.out}/precompute_report.json)"
    )
    if report.num_encoded == 0 and report.num_resumed == 0:
        print("error: no video was encoded", flush=True)
        return 1
    return 0


def _embeddings(args: argparse.Namespace, device: str, dtype: object) -> int:
    from rfvideo.data.prompts import load_prompts
    from rfvideo.models import TextEncoder, precompute_prompt_embeddings

    prompts = load_prompts(args.prompts).prompts  # before the weights: a bad file fails in seconds
    if not prompts:
        raise UsageError(f"--prompts: no prompt in {args.prompts!r}")
    text = TextEncoder.from_pretrained(
        args.wan, subfolder="text_encoder", tokenizer_subfolder="tokenizer", torch_dtype=dtype
    ).to(device)
    out = precompute_prompt_embeddings(
        text, prompts, args.out, shard_size=args.shard_size, batch_size=args.batch_size
    )
    print(f"embedded {len(prompts)} prompts into {out}")
    return 0
