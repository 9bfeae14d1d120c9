"""`rfvideo precompute` and `rfvideo vbench` on tiny checkpoints / mp4s written by the test: the CLI gives
the same numbers as calling the library directly."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import AutoencoderKLWan
from transformers import ByT5Tokenizer, UMT5Config, UMT5EncoderModel

from rfvideo.cli import main
from rfvideo.data import ShardedTensorDataset, write_video
from rfvideo.eval import score_video_folder
from rfvideo.models import PromptEmbeddingStore, TextEncoder, WanVAE


def _smooth_video(g: torch.Generator, frames: int = 9, size: int = 32) -> torch.Tensor:
    """(F 3 H W) in [0,1]: a random low-frequency pattern drifting over time (codec friendly)."""
    base = torch.rand(1, 3, 4, 4, generator=g)
    big = torch.nn.functional.interpolate(base, size=(size * 2, size * 2), mode="bilinear")
    return torch.stack([big[0, :, t : t + size, t : t + size] for t in range(frames)])


@pytest.fixture()
def tiny_wan(tmp_path):
    """A diffusers-layout Wan folder with a tiny VAE, a tiny umT5 and a file-free tokenizer."""
    root = tmp_path / "wan"
    torch.manual_seed(0)
    AutoencoderKLWan(
        base_dim=4, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
        latents_mean=[0.1, -0.2, 0.05, 0.3], latents_std=[1.5, 0.7, 2.0, 1.1],
    ).save_pretrained(root / "vae")  # fmt: skip
    cfg = UMT5Config(vocab_size=384, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2)
    UMT5EncoderModel(cfg).save_pretrained(root / "text_encoder")
    ByT5Tokenizer().save_pretrained(root / "tokenizer")
    return root


def test_precompute_embeddings_equals_direct_encode(tiny_wan, tmp_path):
    prompts = ["a red square moving left", "a blue circle", "waves at dusk"]
    (tmp_path / "p.txt").write_text("\n".join(prompts) + "\n")
    out = tmp_path / "emb"
    assert main(["precompute", "embeddings", "--wan", str(tiny_wan), "--prompts", str(tmp_path / "p.txt"),
                 "--out", str(out), "--device", "cpu"]) == 0  # fmt: skip
    text = TextEncoder.from_pretrained(tiny_wan, subfolder="text_encoder", tokenizer_subfolder="tokenizer")
    want, want_mask = text.encode(prompts)
    got, got_mask = PromptEmbeddingStore(out).get(prompts)
    torch.testing.assert_close(got, want)
    assert torch.equal(got_mask, want_mask)


def test_precompute_latents_equals_direct_encode_and_reports_corrupt(tiny_wan, tmp_path):
    g = torch.Generator().manual_seed(0)
    videos = tmp_path / "videos"
    clip = _smooth_video(g)
    write_video(videos / "good.mp4", clip, fps=8)
    (videos / "good.txt").write_text("a drifting pattern")
    (videos / "bad.mp4").write_bytes((videos / "good.mp4").read_bytes()[:200])  # truncated
    (videos / "bad.txt").write_text("broken")
    out = tmp_path / "lat"
    argv = ["precompute", "latents", "--wan", str(tiny_wan), "--videos", str(videos), "--out", str(out),
            "--pixel-frames", "9", "--height", "32", "--width", "32", "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    ds = ShardedTensorDataset(out)
    assert len(ds) == 1
    report = json.loads((out / "precompute_report.json").read_text())
    assert "bad.mp4" in json.dumps(report)
    from rfvideo.data import read_video

    vae = WanVAE.from_pretrained(tiny_wan, subfolder="vae")
    decoded = read_video(videos / "good.mp4", num_frames=9, height=32, width=32)
    with torch.no_grad():
        want = vae.encode(decoded[None])[0].transpose(0, 1)  # (c f h w) -> the shards' (f c h w)
    torch.testing.assert_close(ds[0]["latents"], want, atol=1e-5, rtol=1e-5)


def test_vbench_command_equals_library(tmp_path, capsys):
    g = torch.Generator().manual_seed(1)
    for i in range(2):
        write_video(tmp_path / "v" / f"a quiet lake-{i}.mp4", _smooth_video(g, frames=8), fps=8)
    out = tmp_path / "scores.json"
    assert main(["vbench", "--videos", str(tmp_path / "v"), "--dimensions", "temporal_flickering",
                 "--out", str(out)]) == 0  # fmt: skip
    got = json.loads(out.read_text())
    want = score_video_folder(tmp_path / "v", ["temporal_flickering"], {})
    assert got["dimensions"]["temporal_flickering"]["score"] == pytest.approx(
        want["dimensions"]["temporal_flickering"]["score"], abs=1e-9
    )
    assert 0.0 < got["dimensions"]["temporal_flickering"]["score"] < 1.0
    assert "temporal_flickering" in capsys.readouterr().out


def test_vbench_command_rejects_malformed_backbone(tmp_path, capsys):
    assert main(["vbench", "--videos", str(tmp_path), "--backbone", "subject_consistency"]) == 2
    assert capsys.readouterr().err == "error: --backbone expects DIMENSION=PATH, got 'subject_consistency'\n"
