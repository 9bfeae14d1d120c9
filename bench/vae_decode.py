"""The reward decode (issue 13 section 3): how far back Wan2.1's causal decoder reaches, and what a
truncated `WanVAE.decode_last(context=K)` costs in error and saves in time.

Model: diffusers' `AutoencoderKLWan()` with its default config, which is Wan2.1's VAE (base_dim 96, z_dim 16,
dim_mult [1, 2, 4, 4], 2 residual blocks per stage, temporal upsampling in the first two up-blocks), i.e. the
real widths and layer counts, with PyTorch's default random initialisation drawn from an explicit seed
(Wan2.1's weights are not available here). Random weights may under- or over-state the error of the trained
decoder: the measured errors say how this architecture mixes time at initialisation, not what a trained
decoder does.

Parts (one run, CPU, fp32 unless noted):

1. Structural reach, float64, tiny spatial size (1x1 latents = 8x8 px; the temporal wiring does not
   depend on the spatial size, and a small one makes a 42-latent-frame video affordable): perturb latent
   frame 0 of an L-frame video and record, per later latent frame d, the largest change of its last pixel
   frame. The last d with any change at all is the decoder's receptive field in latent frames
   (bit-identical beyond it). The decoder runs the same function at every latent step, so this is also
   how much the last pixel frame moves when the latent frame d before it is perturbed.
2. Truncation, fp32, 8x8 latents = 64x64 px, 9 latent frames (33 pixel frames): per K = 0 .. 8 the last
   pixel frame of `decode_last(context=K)` against the exact decode (max abs and PSNR in [0, 1] pixels),
   and its time against the exact `decode_last` (no_grad forward, the part K changes: the trailing frame
   decoded with grad and its backward are the same for every K). The fp32 noise floor is the fp32 exact
   decode's error against a float64 decode. The perturbation profile of part 1 is repeated at this size.

Sizes: 8x8 latents is the smallest spatial size whose interior is not all border for the decoder's
first layers, and one latent frame at the real widths costs ~5 s there on this 2-core CPU (16x16 costs
~4.5x more); 9 latent frames is a short clip that fits the time. Writes the "VAE decode" section of
bench/RESULTS.md. Run: `nice -n 10 python bench/vae_decode.py [--no-write] [--pretrained WAN_DIR]` (with
trained weights the same table measures the real trade-off; nothing is downloaded).

Legend: `b` batch, `f` latent frames, `c` latent channels (16), `h w` latent size, `F` pixel frames.
"""

from __future__ import annotations

import argparse
import math
import platform
import time

import torch
from diffusers import AutoencoderKLWan
from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d, WanResample

from common import load_average, markers, timed, write_section
from rfvideo.models.vae import WanVAE, num_pixel_frames

PRETRAINED: str | None = None  # --pretrained: a diffusers folder (subfolder vae) instead of random weights


def real_vae(seed: int, dtype: torch.dtype = torch.float32) -> WanVAE:
    """Wan2.1's VAE architecture with PyTorch-default random weights drawn from `seed` (or `--pretrained`)."""
    if PRETRAINED is not None:
        return WanVAE.from_pretrained(PRETRAINED, torch_dtype=dtype)
    torch.manual_seed(seed)  # diffusers' constructor draws from the global generator
    return WanVAE(AutoencoderKLWan().to(dtype))


def latents_of(f: int, hw: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Normalised latents (1 16 f hw hw): unit Gaussian, like the generator's output scale."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, 16, f, hw, hw, generator=g, dtype=torch.float64).to(dtype)  # (b c f h w)


def causal_chain() -> list[tuple[str, float]]:
    """The decoder's causal temporal convolutions in order, with the latent frames each reaches back.

    A kernel-3 causal conv at a frame rate r (1 at latent rate, 2 after the first temporal upsample, 4
    after the second) sees its own frame and 2 earlier ones: 2 / r latent frames.
    """
    dec = AutoencoderKLWan().decoder
    out, rate = [], 1
    for name, m in dec.named_modules():
        if isinstance(m, WanCausalConv3d) and m.kernel_size[0] > 1 and not name.endswith("time_conv"):
            out.append((name, (m.kernel_size[0] - 1) / rate))
        if isinstance(m, WanResample) and m.mode == "upsample3d":
            # its time_conv runs at the current rate and doubles the frames after it
            out.append((f"{name}.time_conv", (m.time_conv.kernel_size[0] - 1) / rate))
            rate *= 2
    return out


def per_latent_change(a: torch.Tensor, b: torch.Tensor) -> list[float]:
    """Max abs difference of two videos (b F 3 H W) at each latent frame's last pixel frame (0, 4, 8 ..)."""
    return [float(x) for x in (a - b)[:, ::4].abs().amax(dim=(0, 2, 3, 4))]


def reach(vae: WanVAE, lat: torch.Tensor, seed: int) -> dict:
    """Perturb latent frame 0 by unit noise; change of every later latent frame's pixels."""
    g = torch.Generator().manual_seed(seed)
    pert = lat.clone()
    pert[:, :, 0] += torch.randn(pert[:, :, 0].shape, generator=g, dtype=torch.float64).to(lat.dtype)
    with torch.no_grad():
        change = per_latent_change(vae.decode(lat), vae.decode(pert))
    nonzero = [d for d, c in enumerate(change) if c > 0]
    return {"change": change, "reach": max(nonzero)}


def nan_reach(vae: WanVAE, lat: torch.Tensor, j: int) -> int:
    """Latent frames from j to the last one whose last pixel frame depends on latent frame j at all.

    A NaN planted in latent frame j marks every output computed from it whatever the weights (NaN * 0
    is NaN), so this is the structural dependence, free of rounding; j > 1 avoids the first frames'
    special cases (frame 0 skips the time upsamplers), so it holds in the middle of any video.
    """
    marked = lat.clone()
    marked[:, :, j] = float("nan")
    with torch.no_grad():
        bad = vae.decode(marked)[:, ::4].isnan().flatten(2).any(-1)[0]  # (f): last pixel of each latent
    return max(int(i) for i in bad.nonzero().flatten()) - j


def last_frame_change(vae: WanVAE, lat: torch.Tensor, j: int, seed: int) -> float:
    """Max abs change of the last pixel frame when latent frame j gets unit noise."""
    g = torch.Generator().manual_seed(seed)
    pert = lat.clone()
    pert[:, :, j] += torch.randn(pert[:, :, j].shape, generator=g, dtype=torch.float64).to(lat.dtype)
    with torch.no_grad():
        return float((vae.decode_last(lat, 1) - vae.decode_last(pert, 1)).abs().max())


def _decode_timed(fn) -> tuple[torch.Tensor, float]:
    with torch.no_grad():
        t, out = timed(fn)
    return out, t


def psnr(err_mse: float) -> float:
    return math.inf if err_mse == 0 else -10.0 * math.log10(err_mse)


def truncation(vae: WanVAE, lat: torch.Tensor) -> dict:
    f = lat.shape[2]
    exact, t_exact = _decode_timed(lambda: vae.decode_last(lat, 1, context=None))
    rows = []
    for k in range(f):
        out, t = _decode_timed(lambda k=k: vae.decode_last(lat, 1, context=k))
        diff = out - exact
        rows.append(
            {
                "K": k,
                "max_abs": float(diff.abs().max()),
                "psnr": psnr(float(diff.pow(2).mean())),
                "time": t,
            }
        )
    # exact again, after the K runs, so a load change during the run shows as two different exact times
    _, t_exact2 = _decode_timed(lambda: vae.decode_last(lat, 1, context=None))
    return {"exact": exact, "t_exact": t_exact, "t_exact2": t_exact2, "rows": rows}


def fmt(x: float) -> str:
    return "inf (bit-identical)" if math.isinf(x) else f"{x:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reach-frames", type=int, default=42, help="latent frames of the structural run")
    ap.add_argument("--reach-size", type=int, default=1, help="latent height/width of the structural run")
    ap.add_argument("--frames", type=int, default=9, help="latent frames of the truncation run")
    ap.add_argument("--size", type=int, default=8, help="latent height/width of the truncation run")
    ap.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    ap.add_argument("--skip-reach", action="store_true")
    ap.add_argument(
        "--pretrained", default=None, help="local diffusers folder of Wan2.1 (its vae/): trained weights"
    )
    args = ap.parse_args()
    global PRETRAINED
    PRETRAINED = args.pretrained
    load_start, t_start = load_average(), time.perf_counter()
    chain = causal_chain()
    theory = sum(r for _, r in chain)
    print(f"{len(chain)} causal temporal convs, reach {theory} latent frames by the count", flush=True)

    lines = []
    if not args.skip_reach:
        vae64 = real_vae(args.seed, torch.float64)
        lat64 = latents_of(args.reach_frames, args.reach_size, args.seed + 1, torch.float64)
        r = reach(vae64, lat64, args.seed + 2)
        print("structural reach (latent frames):", r["reach"], flush=True)
        print("change per latent distance:", " ".join(f"{c:.1e}" for c in r["change"]), flush=True)
        r["nan_reach"] = nan_reach(vae64, lat64, 2)
        print("structural (NaN) reach from latent frame 2:", r["nan_reach"], flush=True)
        del vae64
        lines.append(r)

    vae = real_vae(args.seed)
    lat = latents_of(args.frames, args.size, args.seed + 4)
    vae64 = real_vae(args.seed, torch.float64)
    with torch.no_grad():
        ref64 = vae64.decode_last(lat.double(), 1)
    del vae64
    prof = reach(vae, lat, args.seed + 2)
    print("fp32 profile at size", args.size, " ".join(f"{c:.1e}" for c in prof["change"]), flush=True)
    tr = truncation(vae, lat)
    noise = float((tr["exact"].double() - ref64).abs().max())
    print(f"fp32 noise floor {noise:.2e}; exact {tr['t_exact']:.2f}s / {tr['t_exact2']:.2f}s", flush=True)
    for row in tr["rows"]:
        print(row, flush=True)
    load_end, wall = load_average(), time.perf_counter() - t_start

    px = 8 * args.size
    nf = num_pixel_frames(args.frames)
    t_ex = 0.5 * (tr["t_exact"] + tr["t_exact2"])
    out = [
        "## VAE decode (truncated reward decode, `python bench/vae_decode.py`)",
        "",
        f"Wan2.1's VAE architecture (diffusers `AutoencoderKLWan()` default config: base_dim 96, z_dim 16, "
        f"{sum(p.numel() for p in vae.vae.decoder.parameters()) / 1e6:.1f} M decoder parameters) with "
        + (
            f"**PyTorch-default random weights** (seed {args.seed}); Wan2.1's trained weights are not "
            "available here. Random weights may under- or over-state the error of the trained decoder. "
            if PRETRAINED is None
            else f"trained weights from `{PRETRAINED}`. "
        )
        + f"CPU {platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"load average {load_start} at start, {load_end} at end ({wall / 60:.1f} min in all; the machine "
        "is shared, so times are noisy: both exact timings are shown).",
        "",
        f"**Receptive field.** The decoder has {len(chain)} causal temporal convolutions (kernel 3, each "
        "reaching 2 frames back at its own frame rate): 12 at latent rate (conv_in, 4 in the mid block, 6 "
        "in up-block 0, its time upsampler), 7 at 2x rate (6 in up-block 1, its time upsampler) and 13 at 4x "
        f"rate (6 + 6 in up-blocks 2 and 3, conv_out): {theory:g} latent frame lengths. In whole frames, "
        "pixel frame 4(L-1), the last one, is computed from latent frames L-38 .. L-1: it reaches 37 latent "
        "frames back, so every earlier frame of a 21-latent-frame Wan2.1 video reaches the last pixel "
        "frame, and `context >= 38` is the exact decode in any video.",
    ]
    if lines:
        r = lines[0]
        d = r["reach"]
        out += [
            f"Measured at {args.reach_size}x{args.reach_size} latents, {args.reach_frames} latent frames: a "
            "NaN planted in latent frame 2 reaches the last pixel frame of the latent frame "
            f"{r['nan_reach']} after it and no further (structural, whatever the weights). Unit noise "
            "added to latent frame 0 (float64) moves the last pixel frame of latent frame d by "
            + ", ".join(
                f"d={i}: {c:.1e}" for i, c in enumerate(r["change"]) if i in (1, 4, 8, 12, 16, 20, 24, 30)
            )
            + f"; the last change is at d = {d} (bit-identical beyond). The decoder runs the same function "
            "at every latent step, so this is also how far the last pixel frame moves when the latent frame "
            "d before it changes: the influence decays with distance but stays above 1e-6 (about the fp32 "
            f"noise floor below) up to d = {max(i for i, c in enumerate(r['change']) if c > 1e-6)} with "
            "these weights.",
        ]
    out += [
        "",
        f"**Truncated decode.** `decode_last(latents, 1, context=K)`, {args.frames} latent frames "
        f"({nf} pixel frames) of {args.size}x{args.size} ({px}x{px} px), fp32, last pixel frame against the "
        f"exact decode. fp32 noise floor (exact fp32 vs float64): max abs {noise:.1e}. Times: no_grad "
        f"forward, one run each; exact `decode_last` {tr['t_exact']:.2f} s before the K runs and "
        f"{tr['t_exact2']:.2f} s after. The trailing frame decoded with grad, and its backward, cost the "
        "same for every K.",
        "",
        "| K (context latent frames) | latent frames decoded | max abs error | PSNR (dB, [0,1] px) "
        "| time (s) | time / exact |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in tr["rows"]:
        k = row["K"]
        out.append(
            f"| {k} | {min(k + 1, args.frames)} | {row['max_abs']:.2e} | {fmt(row['psnr'])} | "
            f"{row['time']:.2f} | {row['time'] / t_ex:.2f} |"
        )
    out.append(f"| exact (None) | {args.frames} | 0 | inf | {t_ex:.2f} | 1.00 |")
    out += [
        "",
        "Perturbation profile at this size (unit noise on latent frame 0, max abs change of the last pixel "
        "frame of latent frame d): "
        + ", ".join(f"d={i}: {c:.1e}" for i, c in enumerate(prof["change"]))
        + ".",
    ]
    begin, end = markers("vae_decode.py")
    print(f"{begin}\n" + "\n".join(out) + f"\n{end}")
    if not args.no_write:
        write_section("vae_decode.py", "\n".join(out))


if __name__ == "__main__":
    main()
