"""Reconstruction PSNR of a (distilled) tiny decoder against its teacher on held-out latents.

Held out = the seeded validation split that `RFVideoDataModule(train_shards=..., val_split=N, seed=S)`
makes, i.e. the same videos `experiments/decoders/tiny_decoder.yaml` validates on (val_split 8, seed 0).
Both decoders decode each held-out latent video whole (or its first `--max-latent-frames`); the teacher's
decode is the reference. Prints one table (per-video PSNR, mean +- std, overall MSE) and the machine load.

Run:
    python bench/decoder_psnr.py --teacher wan:WAN \
        --student outputs/decoders/tiny_decoder/student.safetensors --shards data/latents --held-out 8 \
        [--student-name tae] [--widths 256,128,64,64] [--device cuda]

`--teacher NAME:PATH` and `--student` go through `rfvideo.decoders.build_decoder` (names: wan, tae,
lighttae, lightvae), so a downloaded taew2_1 / lighttaew2_1 is measured the same way.

Legend: `b` batch, `f` latent frames, `c` latent channels, `h w` latent size.
"""

from __future__ import annotations

import argparse

import einops
import torch

from common import load_average
from rfvideo.data import RFVideoDataModule
from rfvideo.decoders import FidelityReport, build_decoder, reconstruction_psnr


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", required=True, help="NAME:PATH of the teacher, e.g. wan:/weights/Wan2.1")
    p.add_argument("--student", required=True, help="student weights (TAEHV layout)")
    p.add_argument("--student-name", default="tae", help="registry name of the student (tae, lighttae)")
    p.add_argument("--widths", default="256,128,64,64", help="student decoder widths")
    p.add_argument("--latent-channels", type=int, default=16)
    p.add_argument("--shards", required=True, help="latent shard directory")
    p.add_argument("--held-out", type=float, default=8, help="the data module's val_split")
    p.add_argument("--seed", type=int, default=0, help="seed of the data module's split")
    p.add_argument("--max-latent-frames", type=int, default=None)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> FidelityReport:
    args = _args(argv)
    name, sep, path = args.teacher.partition(":")
    if not sep:
        raise SystemExit(f"--teacher must be NAME:PATH, got {args.teacher!r}")
    device = torch.device(args.device)
    teacher = build_decoder(name, path, device=device)
    widths = [int(w) for w in args.widths.split(",")]
    student = build_decoder(
        args.student_name, args.student, widths=widths, latent_channels=args.latent_channels, device=device
    )
    held_out = int(args.held_out) if float(args.held_out).is_integer() else args.held_out
    dm = RFVideoDataModule(train_shards=args.shards, val_split=held_out, seed=args.seed)
    dm.setup("validate")

    def batches():
        for i in range(len(dm.val_dataset)):
            z = dm.val_dataset[i]["latents"]  # (f c h w), normalised
            if args.max_latent_frames is not None:
                z = z[: args.max_latent_frames]
            yield einops.rearrange(z, "f c h w -> 1 c f h w").float().to(device)

    report = reconstruction_psnr(student, teacher, batches())
    print(f"held-out PSNR of {args.student_name} ({args.student}) vs {name} on {args.shards}")
    print(f"machine load (1/5/15 min): {load_average()}")
    print("| video | PSNR (dB) |\n|---|---|")
    for i, p in enumerate(report.psnr_per_video):
        print(f"| {i} | {p:.2f} |")
    n = len(report.psnr_per_video)
    print(f"| mean +- std ({n} videos) | {report.psnr_mean:.2f} +- {report.psnr_std:.2f} |")
    print(f"overall MSE {report.mse:.3e}")
    return report


if __name__ == "__main__":
    main()
