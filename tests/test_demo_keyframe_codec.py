"""The demo's keyframe codec against naive loops: Wan's latent layout, lossless in space, `decode_last` the
tail of `decode` in value and gradient, and world clips reconstructed with square squares."""

from __future__ import annotations

import pytest
import torch

from rfvideo.demo.world.keyframe_codec import KeyframeCodec
from rfvideo.demo.world.metrics import shape_score
from rfvideo.demo.world.world import render_clip, split_specs


def _naive_encode(video: torch.Tensor, p: int) -> torch.Tensor:
    """Loops: latent j, channel (c, dy, dx), cell (y, x) <- frame 4j, channel c, pixel (py+dy, px+dx)."""
    b, F, _, H, W = video.shape
    f = 1 + (F - 1) // 4
    z = torch.zeros(b, f, 3 * p * p, H // p, W // p, dtype=video.dtype)
    for j in range(f):
        for c in range(3):
            for dy in range(p):
                for dx in range(p):
                    z[:, j, c * p * p + dy * p + dx] = video[:, 4 * j, c, dy::p, dx::p] * 2 - 1
    return z.transpose(1, 2)  # (b c f h w), the VAE layout


def test_keyframe_codec_encode_matches_naive_loops_and_decode_inverts_it():
    g = torch.Generator().manual_seed(0)
    codec = KeyframeCodec(spatial_factor=4)
    video = torch.rand(2, 9, 3, 8, 12, generator=g, dtype=torch.float64)
    z = codec.encode(video)
    torch.testing.assert_close(z, _naive_encode(video, 4))
    rec = codec.decode(z)
    assert rec.shape == video.shape
    # keyframes come back exactly; frames 4j-3 .. 4j show keyframe 4j
    for t in range(9):
        key = 0 if t == 0 else 4 * ((t + 3) // 4)
        torch.testing.assert_close(rec[:, t], video[:, key])


def test_keyframe_codec_latents_std_divides_the_latents_and_decode_undoes_it():
    g = torch.Generator().manual_seed(1)
    video = torch.rand(2, 5, 3, 8, 8, generator=g, dtype=torch.float64)
    plain, scaled = KeyframeCodec(spatial_factor=2), KeyframeCodec(spatial_factor=2, latents_std=0.25)
    z = scaled.encode(video)
    torch.testing.assert_close(z, _naive_encode(video, 2) / 0.25)
    torch.testing.assert_close(scaled.decode(z), plain.decode(plain.encode(video)))
    with pytest.raises(ValueError, match="latents_std must be > 0, got 0.0"):
        KeyframeCodec(latents_std=0.0)


@pytest.mark.parametrize("num_frames", [1, 3, 4, 5, 9])
def test_keyframe_codec_decode_last_equals_tail_of_decode_in_value_and_gradient(num_frames):
    g = torch.Generator().manual_seed(num_frames)
    codec = KeyframeCodec(spatial_factor=2)
    lat = torch.randn(2, 12, 3, 2, 2, generator=g, dtype=torch.float64) * 0.5
    w = torch.randn(2, num_frames, 3, 4, 4, generator=g, dtype=torch.float64)
    a, b = lat.clone().requires_grad_(True), lat.clone().requires_grad_(True)
    (codec.decode_last(a, num_frames) * w).sum().backward()
    (codec.decode(b)[:, -num_frames:] * w).sum().backward()
    torch.testing.assert_close(a.grad, b.grad)
    assert a.grad.abs().sum() > 0


def test_keyframe_codec_rejects_bad_input_and_stays_frozen():
    codec = KeyframeCodec()
    with pytest.raises(ValueError, match="pixel frame count"):
        codec.encode(torch.rand(1, 8, 3, 16, 16))
    with pytest.raises(ValueError, match="divisible"):
        codec.encode(torch.rand(1, 5, 3, 10, 16))
    with pytest.raises(ValueError, match="num_frames"):
        codec.decode_last(torch.randn(1, 48, 2, 2, 2), 6)
    with pytest.raises(ValueError, match="c=48"):
        codec.decode(torch.randn(1, 12, 2, 2, 2))
    codec.train()
    assert not codec.training and not any(p.requires_grad for p in codec.parameters())


def test_keyframe_codec_reconstructs_world_clips_as_squares():
    _, held = split_specs()
    clips = torch.stack(
        [render_clip(s, num_frames=9, size=32, seed=k, speed=1.5) for k, s in enumerate(held)]
    )
    codec = KeyframeCodec(spatial_factor=4)
    rec = codec.decode(codec.encode(clips))
    assert (shape_score(rec.flatten(0, 1)) == 1).all()
    torch.testing.assert_close(rec[:, ::4], clips[:, ::4])


def test_keyframe_codec_mean_cells_match_a_cell_loop_and_are_lossless_on_the_lattice():
    g = torch.Generator().manual_seed(2)
    codec = KeyframeCodec(spatial_factor=4, cells="mean", latents_std=0.25)
    video = torch.rand(2, 5, 3, 8, 12, generator=g, dtype=torch.float64)
    z = codec.encode(video)
    assert z.shape == (2, 3, 2, 2, 3) and codec.latent_channels == 3
    for j, y, x in [(0, 0, 0), (1, 1, 2), (1, 0, 1)]:
        cell = video[:, 4 * j, :, 4 * y : 4 * y + 4, 4 * x : 4 * x + 4]  # (b 3 4 4)
        torch.testing.assert_close(z[:, :, j, y, x], (cell * 2 - 1).mean((-1, -2)) / 0.25)
    rec = codec.decode(z)
    torch.testing.assert_close(rec[:, 4, :, 5, 9], video[:, 4, :, 4:8, 8:12].mean((-1, -2)))
    # a picture drawn on the 4-pixel lattice (the demo world's clips at speed 1, no jitter) comes back exactly
    spec = split_specs()[1][0]
    clip = render_clip(spec, num_frames=9, size=32, seed=0, speed=1.0, phase_jitter=0.0, offset_jitter=0.0)
    rec = codec.decode(codec.encode(clip[None]))[0]
    torch.testing.assert_close(rec[::4], clip[::4])
    assert (shape_score(rec) == 1).all()
    with pytest.raises(ValueError, match="cells must be 'fold' or 'mean', got 'max'"):
        KeyframeCodec(cells="max")
