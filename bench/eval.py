"""Evaluation cost: seconds to score N videos per VBench dimension with rfvideo.eval (CPU).

The backbones are *stand-ins* of realistic-ish width but reduced depth, random weights, built offline:
DINO: transformers ViT (width 384, 4 layers, patch 16); CLIP: transformers CLIP vision tower (width 384,
4 layers, patch 32) + projection; flow / interpolation / MUSIQ: small conv nets. Real ViT-B/16, ViT-L/14,
RAFT (20 iterations), AMT-S and MUSIQ cost one to two orders of magnitude more per frame on CPU; the
numbers measure our preprocessing + loop overhead plus a small model, not a paper-scale evaluation.

Usage: python bench/eval.py [--videos 4] [--frames 16] [--height 240] [--width 416] [--threads 2]
Writes the "Evaluation cost" section of bench/RESULTS.md (`<!-- bench/eval.py:begin -->` ... `:end -->`).
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from common import RESULTS, load_average, timed, write_section
from rfvideo.eval import AMTInterpolator, RAFTFlow, score_dimension


class ConvNet(torch.nn.Module):
    def __init__(self, cin: int, cout: int, width: int = 32) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(cin, width, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(width, width, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(width, cout, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build_backbones() -> dict:
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection, ViTConfig, ViTModel

    torch.manual_seed(0)
    vit = ViTModel(
        ViTConfig(
            hidden_size=384, num_hidden_layers=4, num_attention_heads=6, intermediate_size=1536, patch_size=16
        ),
        add_pooling_layer=False,
    ).eval()
    clip_v = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=384,
            num_hidden_layers=4,
            num_attention_heads=6,
            intermediate_size=1536,
            patch_size=32,
            projection_dim=256,
        )
    ).eval()
    clip_image = lambda x: clip_v(pixel_values=x).image_embeds  # noqa: E731
    dino = lambda x: vit(pixel_values=x, interpolate_pos_encoding=True).last_hidden_state[:, 0]  # noqa: E731
    head = torch.nn.Linear(256, 1).eval()
    flow_net = ConvNet(6, 2).eval()
    raft_like = lambda a, b, iters=20, test_mode=True: (None, flow_net(torch.cat([a, b], 1) / 255))  # noqa: E731
    interp_net = ConvNet(6, 3).eval()
    amt_like = lambda a, b, embt, scale_factor=1.0, eval=True: {  # noqa: E731
        "imgt_pred": (a + b) / 2 + 0.01 * interp_net(torch.cat([a, b], 1))
    }
    musiq_net = ConvNet(3, 1).eval()
    musiq = lambda x: 50 + musiq_net(x).mean()  # noqa: E731

    class ViCLIPLike:
        def encode_vision(self, x: torch.Tensor, test: bool = True) -> torch.Tensor:
            return clip_image(x.flatten(0, 1)).mean(0, keepdim=True)

        def encode_text(self, text: str) -> torch.Tensor:
            g = torch.Generator().manual_seed(len(text))
            return torch.randn(1, 256, generator=g)

    class CLIPLike:
        logit_scale = 100.0
        image = staticmethod(clip_image)

        @staticmethod
        def text(texts: list[str]) -> torch.Tensor:
            return torch.randn(len(texts), 256, generator=torch.Generator().manual_seed(1))

    return {
        "temporal_flickering": None,
        "subject_consistency": dino,
        "background_consistency": clip_image,
        "aesthetic_quality": (clip_image, head),
        "imaging_quality": musiq,
        "dynamic_degree": RAFTFlow(raft_like),
        "motion_smoothness": AMTInterpolator(amt_like),
        "overall_consistency": ViCLIPLike(),
        "temporal_style": ViCLIPLike(),
        "appearance_style": CLIPLike(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=4)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--width", type=int, default=416)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    videos = torch.rand(args.videos, args.frames, 3, args.height, args.width, generator=gen)
    prompts = [f"prompt number {i}" for i in range(args.videos)]
    backbones = build_backbones()
    rows = []
    with torch.no_grad():
        for dim, bb in backbones.items():
            c0 = time.process_time()
            dt, res = timed(
                lambda dim=dim, bb=bb: score_dimension(
                    dim, videos, bb, prompts=prompts, styles=prompts, fps=16.0
                )
            )
            cpu = time.process_time() - c0
            rows.append((dim, dt, cpu, dt / args.videos, res.aggregate))
    header = (
        "| dimension | stand-in backbone | wall s | CPU s | wall s / video | score (random) |\n"
        "|---|---|---:|---:|---:|---:|"
    )
    kinds = {
        "temporal_flickering": "none",
        "subject_consistency": "ViT w384 x4, p16 (DINO stand-in)",
        "background_consistency": "CLIP-ViT w384 x4, p32",
        "aesthetic_quality": "CLIP-ViT w384 x4 + linear head",
        "imaging_quality": "3-layer conv (MUSIQ stand-in)",
        "dynamic_degree": "3-layer conv (RAFT stand-in, 1 pass)",
        "motion_smoothness": "3-layer conv (AMT stand-in)",
        "overall_consistency": "CLIP-ViT w384 x4 on 8 frames",
        "temporal_style": "CLIP-ViT w384 x4 on 8 frames",
        "appearance_style": "CLIP-ViT w384 x4 per frame (PIL resize)",
    }
    lines = [f"| {d} | {kinds[d]} | {t:.2f} | {c:.2f} | {tv:.3f} | {s:.4f} |" for d, t, c, tv, s in rows]
    table = "\n".join([header, *lines])
    print(table)
    body = (
        "## Evaluation cost (rfvideo.eval, CPU)\n\n"
        f"{args.videos} videos x {args.frames} frames x {args.height}x{args.width}, float in-loop tensors, "
        f"torch {torch.__version__}, {args.threads} threads, {platform.processor() or platform.machine()}, "
        f"load average {load_average()}. "
        "The machine is shared (2 cores, several jobs): CPU s is this process's CPU time, wall s includes "
        "waiting. Backbones are random stand-ins of realistic-ish width, reduced depth (see bench/eval.py): "
        "the real VBench models (ViT-B/16, ViT-L/14, RAFT x20, AMT-S, MUSIQ, ViCLIP-L) cost far more per "
        "frame; use a GPU for real evaluation.\n\n"
        f"{table}\n\nReproduce: `python bench/eval.py`."
    )
    write_section("eval.py", body, results=args.results)
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
