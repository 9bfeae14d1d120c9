"""WanVAE against diffusers' AutoencoderKLWan on a tiny seeded config.

Shapes: `b` batch, `F` pixel frames, `f` latent frames, `c` latent channels, `H W` pixels, `h w` latents.
"""

from __future__ import annotations

import einops
import pytest
import torch
from diffusers import AutoencoderKLWan

from helpers import randomize_
from rfvideo.models.vae import WanVAE, latent_frames_for_pixel_frames, num_latent_frames, num_pixel_frames

MEAN = [0.1, -0.2, 0.3, 0.5]
STD = [1.5, 0.5, 2.0, 0.8]


def tiny_vae(seed: int = 0) -> AutoencoderKLWan:
    vae = AutoencoderKLWan(
        base_dim=4, z_dim=4, dim_mult=[1, 2, 2, 2], num_res_blocks=1, latents_mean=MEAN, latents_std=STD
    )
    # scale 0.2 keeps decoded pixels inside (-1, 1), so the output clamp does not zero any gradient
    return randomize_(vae, torch.Generator().manual_seed(seed), scale=0.2)


@pytest.fixture(scope="module")
def wrapped() -> WanVAE:
    return WanVAE(tiny_vae())


def rand(*shape: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def rand_latents(b: int, f: int, c: int, h: int, w: int, seed: int = 1) -> torch.Tensor:
    """Random latents in the VAE's (b c f h w) layout."""
    return einops.rearrange(rand(b, f, c, h, w, seed=seed), "b f c h w -> b c f h w")


def stats() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(MEAN).view(1, -1, 1, 1, 1), torch.tensor(STD).view(1, -1, 1, 1, 1)


def test_frame_helpers() -> None:
    assert num_latent_frames(81) == 21 and num_pixel_frames(21) == 81
    assert num_latent_frames(1) == 1 and num_pixel_frames(1) == 1
    # latent 0 <-> pixel 0; latent j > 0 <-> pixels 4j-3 .. 4j
    assert latent_frames_for_pixel_frames([0], 9) == [0]
    assert latent_frames_for_pixel_frames([1, 2, 3, 4], 9) == [1]
    assert latent_frames_for_pixel_frames([5], 9) == [2]
    assert latent_frames_for_pixel_frames([-1, 8, 4, 0], 9) == [0, 1, 2]
    assert latent_frames_for_pixel_frames([80], 81) == [20]
    with pytest.raises(ValueError, match="9"):
        latent_frames_for_pixel_frames([9], 9)
    with pytest.raises(ValueError, match="8"):
        num_latent_frames(8)


def test_frozen_and_eval(wrapped: WanVAE) -> None:
    assert not any(p.requires_grad for p in wrapped.parameters())
    wrapped.train()
    assert not wrapped.training and not wrapped.vae.training and not wrapped.vae.decoder.training
    assert isinstance(wrapped.train(True), WanVAE)


def test_encode_matches_diffusers(wrapped: WanVAE) -> None:
    video = torch.rand(2, 5, 3, 32, 24, generator=torch.Generator().manual_seed(2))
    lat = wrapped.encode(video)
    assert lat.shape == (2, 4, 2, 4, 3)
    mean, std = stats()
    ref = wrapped.vae.encode(einops.rearrange(video, "b F C H W -> b C F H W") * 2 - 1).latent_dist.mode()
    ref = (ref - mean) / std
    torch.testing.assert_close(lat, ref, rtol=0, atol=0)
    # sampling is seeded and differs from the mean
    s1 = wrapped.encode(video, sample=True, generator=torch.Generator().manual_seed(3))
    s2 = wrapped.encode(video, sample=True, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(s1, s2, rtol=0, atol=0)
    assert (s1 - lat).abs().max() > 1e-3


def test_decode_matches_diffusers(wrapped: WanVAE) -> None:
    lat = rand_latents(2, 3, 4, 4, 4)
    video = wrapped.decode(lat)
    assert video.shape == (2, 9, 3, 32, 32)
    mean, std = stats()
    ref = wrapped.vae.decode(lat * std + mean).sample
    ref = einops.rearrange((ref + 1) / 2, "b C F H W -> b F C H W")
    torch.testing.assert_close(video, ref, rtol=0, atol=1e-6)
    assert video.min() >= 0 and video.max() <= 1 and video.std() > 1e-3


@pytest.mark.parametrize("num_frames", [1, 3, 4, 5, 8, 9])
def test_decode_last_equals_full_decode(wrapped: WanVAE, num_frames: int) -> None:
    lat = rand_latents(2, 3, 4, 4, 4)
    full = wrapped.decode(lat)
    last = wrapped.decode_last(lat, num_frames)
    assert last.shape == (2, num_frames, 3, 32, 32)
    torch.testing.assert_close(last, full[:, -num_frames:], rtol=0, atol=1e-5)


@pytest.mark.parametrize("num_frames", [1, 5, 9])
def test_checkpointed_decode_equals_plain(wrapped: WanVAE, num_frames: int) -> None:
    lat = rand_latents(2, 3, 4, 4, 4).requires_grad_(True)  # grad on: the checkpointed path is taken
    plain = wrapped.decode_last(lat, num_frames)
    ckpt = wrapped.decode_last(lat, num_frames, checkpoint=True)
    torch.testing.assert_close(ckpt, plain, rtol=0, atol=1e-6)


def naive_grads(vae: WanVAE, lat: torch.Tensor, num_frames: int, weight: torch.Tensor, first: int):
    """Autograd through a full decode, then slice; frames before `first` detached (cache = constant)."""
    x = lat.clone().requires_grad_(True)
    inp = torch.cat([x[:, :, :first].detach(), x[:, :, first:]], dim=2)
    (vae.decode(inp)[:, -num_frames:] * weight).sum().backward()
    y = lat.clone().requires_grad_(True)
    (vae.decode(y)[:, -num_frames:] * weight).sum().backward()
    return x.grad, y.grad


@pytest.mark.parametrize("num_frames,first", [(1, 2), (4, 2), (5, 1), (9, 0)])
def test_decode_last_gradient(wrapped: WanVAE, num_frames: int, first: int) -> None:
    lat = rand_latents(1, 3, 4, 4, 4, seed=5)
    weight = rand(1, num_frames, 3, 32, 32, seed=6)
    ref_detached, ref_full = naive_grads(wrapped, lat, num_frames, weight, first)
    grads = []
    for ckpt in (False, True):
        x = lat.clone().requires_grad_(True)
        (wrapped.decode_last(x, num_frames, checkpoint=ckpt) * weight).sum().backward()
        grads.append(x.grad)
    for g in grads:
        torch.testing.assert_close(g, ref_detached, rtol=1e-4, atol=1e-6)
        # the decoded latent frames get exactly the full-decode gradient's direct part; earlier ones none
        assert g[:, :, first:].abs().max() > 0
        assert first == 0 or g[:, :, :first].abs().max() == 0
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-7)
    # the full decode also sends gradient into earlier frames through the cache: decode_last drops it
    assert first == 0 or ref_full[:, :, :first].abs().max() > 0
    assert not any(p.grad is not None for p in wrapped.parameters())


def test_decode_differentiable_and_params_untouched(wrapped: WanVAE) -> None:
    video = torch.rand(1, 5, 3, 16, 16, generator=torch.Generator().manual_seed(7)).requires_grad_(True)
    wrapped.decode(wrapped.encode(video)).sum().backward()
    assert video.grad is not None and video.grad.abs().max() > 0
    assert all(p.grad is None for p in wrapped.parameters())


def test_from_pretrained_round_trip(tmp_path) -> None:
    vae = tiny_vae(seed=3)
    vae.save_pretrained(tmp_path / "vae")
    loaded = WanVAE.from_pretrained(tmp_path, subfolder="vae", torch_dtype=torch.float32)
    lat = rand_latents(1, 2, 4, 2, 2)
    torch.testing.assert_close(loaded.decode(lat), WanVAE(vae).decode(lat), rtol=0, atol=0)
    torch.testing.assert_close(loaded.latents_std, torch.tensor(STD))


def test_bad_inputs(wrapped: WanVAE) -> None:
    with pytest.raises(ValueError, match="got 4"):
        wrapped.encode(torch.rand(1, 4, 3, 16, 16))
    with pytest.raises(ValueError, match="12x16"):
        wrapped.encode(torch.rand(1, 5, 3, 12, 16))
    with pytest.raises(ValueError, match="shape"):
        wrapped.encode(torch.rand(1, 5, 4, 16, 16))
    with pytest.raises(ValueError, match="c=4"):
        wrapped.decode(torch.rand(1, 3, 2, 2, 2))
    with pytest.raises(ValueError, match="10"):
        wrapped.decode_last(torch.rand(1, 4, 3, 2, 2), 10)
    with pytest.raises(ValueError, match="0"):
        wrapped.decode_last(torch.rand(1, 4, 3, 2, 2), 0)
    with pytest.raises(ValueError, match="AutoencoderKLWan"):
        WanVAE(torch.nn.Linear(2, 2))  # type: ignore[arg-type]


def test_wan22_residual_variant() -> None:
    """Wan2.2's VAE (residual up-blocks, 2x2 patchify, 16x spatial) goes through the same code paths."""
    vae = AutoencoderKLWan(
        base_dim=4,
        z_dim=4,
        dim_mult=[1, 2, 2, 2],
        num_res_blocks=1,
        is_residual=True,
        patch_size=2,
        in_channels=12,
        out_channels=12,
        scale_factor_spatial=16,
        latents_mean=MEAN,
        latents_std=STD,
    )
    w = WanVAE(randomize_(vae, torch.Generator().manual_seed(4), scale=0.2))
    assert w.spatial_factor == 16
    lat = rand_latents(1, 3, 4, 2, 2, seed=8)
    full = w.decode(lat)
    mean, std = stats()
    ref = vae.decode(lat * std + mean).sample
    torch.testing.assert_close(
        full, einops.rearrange((ref + 1) / 2, "b C F H W -> b F C H W"), rtol=0, atol=1e-6
    )
    grads = []
    for ckpt in (False, True):
        x = lat.clone().requires_grad_(True)
        out = w.decode_last(x, 5, checkpoint=ckpt)
        torch.testing.assert_close(out, full[:, -5:], rtol=0, atol=1e-5)
        out.sum().backward()
        grads.append(x.grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-7)
    assert w.encode(torch.rand(1, 5, 3, 32, 32)).shape == (1, 4, 2, 2, 2)
    with pytest.raises(ValueError, match="16"):
        w.encode(torch.rand(1, 5, 3, 24, 32))


@pytest.fixture(scope="module")
def streamed_video(wrapped: WanVAE) -> tuple[torch.Tensor, torch.Tensor]:
    """Latents of a 4-latent-frame video and their full decode (the reference), computed once."""
    lat = rand_latents(2, 4, 4, 2, 3, seed=11)
    return lat, wrapped.decode(lat)


@pytest.mark.parametrize("chunks", [(1, 1, 1, 1), (1, 3), (2, 2), (3, 1), (4,)])
def test_stream_decoder_equals_full_decode(
    wrapped: WanVAE, streamed_video: tuple[torch.Tensor, torch.Tensor], chunks: tuple[int, ...]
) -> None:
    """Chunk-by-chunk decode (feature cache carried between calls) == one decode of the whole video."""
    lat, full = streamed_video
    decoder = wrapped.stream_decoder()
    outs, start = [], 0
    for i, f in enumerate(chunks):
        out = decoder(lat[:, :, start : start + f], frame_offset=start)
        # latent frame 0 -> 1 pixel frame, every later latent frame -> 4
        assert out.shape == (2, 1 + 4 * (f - 1) if i == 0 else 4 * f, 3, 16, 24)
        outs.append(out)
        start += f
    streamed = torch.cat(outs, dim=1)
    assert streamed.shape == full.shape == (2, 13, 3, 16, 24)
    assert (streamed - full).abs().max() <= 1e-5
    assert full.std() > 1e-3  # a non-trivial video: a dropped cache entry would show
    assert decoder.next_frame == 4


def test_stream_decoder_reset_and_wan22(wrapped: WanVAE) -> None:
    decoder = wrapped.stream_decoder()
    a, b = rand_latents(1, 2, 4, 2, 2, seed=12), rand_latents(1, 2, 4, 2, 2, seed=13)
    decoder(a)
    decoder.reset()
    # after reset the next chunk is latent frame 0 of a new video: no state of `a` leaks in
    torch.testing.assert_close(decoder(b), wrapped.decode(b), rtol=0, atol=1e-5)
    # Wan2.2's residual up-blocks with 2x2 patchify stream too
    vae = AutoencoderKLWan(
        base_dim=4, z_dim=4, dim_mult=[1, 2, 2, 2], num_res_blocks=1, is_residual=True, patch_size=2,
        in_channels=12, out_channels=12, scale_factor_spatial=16, latents_mean=MEAN, latents_std=STD,
    )  # fmt: skip
    w = WanVAE(randomize_(vae, torch.Generator().manual_seed(4), scale=0.2))
    lat = rand_latents(1, 3, 4, 1, 1, seed=14)
    dec = w.stream_decoder()
    streamed = torch.cat([dec(lat[:, :, :1]), dec(lat[:, :, 1:2]), dec(lat[:, :, 2:])], dim=1)
    assert (streamed - w.decode(lat)).abs().max() <= 1e-5


def test_stream_decoder_bad_input(wrapped: WanVAE) -> None:
    decoder = wrapped.stream_decoder()
    lat = rand_latents(2, 3, 4, 2, 2, seed=15)
    decoder(lat[:, :, :2], frame_offset=0)
    with pytest.raises(ValueError, match="frame_offset=0"):
        decoder(lat[:, :, 2:], frame_offset=0)  # repeated chunk
    with pytest.raises(ValueError, match="frame_offset=5"):
        decoder(lat[:, :, 2:], frame_offset=5)  # skipped frames
    with pytest.raises(ValueError, match=r"\(1, 4, 1, 2, 2\)"):
        decoder(lat[:1, :, 2:])  # batch changed mid-stream
    with pytest.raises(ValueError, match=r"\(2, 4, 1, 1, 2\)"):
        decoder(lat[:, :, 2:, :1])  # latent size changed mid-stream
    with pytest.raises(ValueError, match="c=4"):
        decoder(rand(2, 3, 1, 2, 2))
    with pytest.raises(ValueError, match="at least one"):
        decoder(lat[:, :, :0])
    # a refused chunk leaves the stream where it was: the right next chunk still decodes exactly
    torch.testing.assert_close(
        decoder(lat[:, :, 2:], frame_offset=2), wrapped.decode(lat)[:, 5:], rtol=0, atol=1e-5
    )
