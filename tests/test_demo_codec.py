"""The demo's pooling codec: exact against a naive per-frame/per-cell implementation, `decode_last` equal to
the tail of `decode` in value and gradient, and codec reconstructions keep the prompt colour."""

from __future__ import annotations

import pytest
import torch

from rfvideo.demo.world.codec import PoolingVideoCodec
from rfvideo.demo.world.prompt_color import PromptColorReward
from rfvideo.demo.world.world import render_clip, split_specs


def _naive_encode(video: torch.Tensor, s: int, c: int) -> torch.Tensor:
    """Loops: latent j <- mean of pixel frames {0} (j=0) or 4j-3..4j, each s x s cell averaged, padded."""
    b, F, _, H, W = video.shape
    f = 1 + (F - 1) // 4
    z = torch.zeros(b, f, c, H // s, W // s, dtype=torch.float64)
    for j in range(f):
        frames = [0] if j == 0 else list(range(4 * j - 3, 4 * j + 1))
        for y in range(H // s):
            for x in range(W // s):
                cell = video[:, frames, :, y * s : (y + 1) * s, x * s : (x + 1) * s].double() * 2 - 1
                z[:, j, :3, y, x] = cell.mean((1, 3, 4))
    return z.transpose(1, 2)  # (b c f h w), the VAE layout


def _naive_decode(z: torch.Tensor, s: int) -> torch.Tensor:
    z = z.transpose(1, 2)  # (b c f h w) -> (b f c h w)
    b, f, _, h, w = z.shape
    out = []
    for j in range(f):
        img = z[:, j, :3].repeat_interleave(s, -2).repeat_interleave(s, -1)
        out += [img] * (1 if j == 0 else 4)
    return ((torch.stack(out, 1).clamp(-1, 1) + 1) / 2).to(z.dtype)


def _codec(g: torch.Generator, c: int = 4) -> PoolingVideoCodec:
    mean, std = torch.randn(c, generator=g) * 0.1, torch.rand(c, generator=g) + 0.5
    return PoolingVideoCodec(latent_channels=c, latents_mean=mean.tolist(), latents_std=std.tolist()).double()


def test_demo_codec_encode_decode_match_naive_loops():
    g = torch.Generator().manual_seed(0)
    codec = _codec(g)
    video = torch.rand(2, 9, 3, 16, 24, generator=g, dtype=torch.float64)
    z = codec.encode(video)
    mean, std = (
        codec.latents_mean.double().view(1, -1, 1, 1, 1),
        codec.latents_std.double().view(1, -1, 1, 1, 1),
    )
    torch.testing.assert_close(z, (_naive_encode(video, 8, 4) - mean) / std)
    lat = torch.randn(2, 4, 3, 2, 3, generator=g, dtype=torch.float64)
    torch.testing.assert_close(codec.decode(lat), _naive_decode(lat * std + mean, 8))
    # A video that is constant over each latent frame's pixels and cells is reconstructed exactly.
    torch.testing.assert_close(codec.decode(codec.encode(codec.decode(lat))), codec.decode(lat))


@pytest.mark.parametrize("num_frames", [1, 3, 4, 5, 9])
def test_demo_codec_decode_last_equals_tail_of_decode_in_value_and_gradient(num_frames):
    g = torch.Generator().manual_seed(num_frames)
    codec = _codec(g)
    lat = torch.randn(2, 4, 3, 2, 2, generator=g, dtype=torch.float64) * 0.5
    w = torch.randn(2, num_frames, 3, 16, 16, generator=g, dtype=torch.float64)
    a = lat.clone().requires_grad_(True)
    (codec.decode_last(a, num_frames, checkpoint=True) * w).sum().backward()
    b = lat.clone().requires_grad_(True)
    full = codec.decode(b)
    (full[:, -num_frames:] * w).sum().backward()
    torch.testing.assert_close(codec.decode_last(lat, num_frames), full[:, -num_frames:].detach())
    torch.testing.assert_close(a.grad, b.grad)
    assert a.grad.abs().sum() > 0
    if num_frames <= 4:  # only the last latent frame is decoded: no gradient to earlier ones
        assert a.grad[:, :, :2].abs().sum() == 0


def test_demo_codec_rejects_bad_input():
    codec = PoolingVideoCodec()
    with pytest.raises(ValueError, match="pixel frame count"):
        codec.encode(torch.rand(1, 8, 3, 16, 16))
    with pytest.raises(ValueError, match="divisible"):
        codec.encode(torch.rand(1, 5, 3, 12, 16))
    with pytest.raises(ValueError, match="num_frames"):
        codec.decode_last(torch.randn(1, 3, 2, 2, 2), 6)
    with pytest.raises(ValueError, match="latent_channels"):
        PoolingVideoCodec(latent_channels=2)


def test_demo_codec_reconstruction_keeps_the_prompt_colour():
    """Cell averaging blends the square's edges with the grey background, so the colour match drops,
    but the reconstruction is still far closer to the prompt's colour than to any other world colour."""
    _, held = split_specs()
    prompts = [s.prompt for s in held]
    clips = torch.stack(
        [render_clip(s, num_frames=9, size=64, seed=k, speed=3.0) for k, s in enumerate(held)]
    )
    codec = PoolingVideoCodec()
    recon = codec.decode(codec.encode(clips))
    reward = PromptColorReward()
    right = reward(recon[:, -1:], prompts)
    assert (reward(clips[:, -1:], prompts) > 0.99).all()
    assert (right > 0.3).all()
    wrong = [p.replace(s.color, "blue" if s.color != "blue" else "red") for p, s in zip(prompts, held)]
    assert (right > reward(recon[:, -1:], wrong) + 0.2).all()
