"""Truncated `WanVAE.decode_last(context=K)` against diffusers' decode of the truncated latent slice.

Shapes: `b` batch, `F` pixel frames, `f` latent frames, `c` latent channels, `H W` pixels, `h w` latents.
"""

from __future__ import annotations

import re

import einops
import pytest
import torch
from diffusers import AutoencoderKLWan

from helpers import randomize_
from rfvideo.models.vae import WanVAE, num_pixel_frames

MEAN = [0.1, -0.2, 0.3, 0.5]
STD = [1.5, 0.5, 2.0, 0.8]


def tiny_vae(seed: int = 0, **overrides) -> AutoencoderKLWan:
    cfg = dict(
        base_dim=4, z_dim=4, dim_mult=[1, 2, 2, 2], num_res_blocks=1, latents_mean=MEAN, latents_std=STD
    )
    cfg.update(overrides)
    # scale 0.2 keeps decoded pixels inside (-1, 1), so the output clamp does not zero any gradient
    return randomize_(AutoencoderKLWan(**cfg), torch.Generator().manual_seed(seed), scale=0.2)


def wan22_vae() -> AutoencoderKLWan:
    """Wan2.2's layout: residual up-blocks whose `first_chunk` path differs, 2x2 patchify."""
    return tiny_vae(
        4, is_residual=True, patch_size=2, in_channels=12, out_channels=12, scale_factor_spatial=16
    )


@pytest.fixture(scope="module")
def wrapped() -> WanVAE:
    return WanVAE(tiny_vae())


def rand(*shape: int, seed: int = 1, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def cf(lat: torch.Tensor) -> torch.Tensor:
    """This file's latents (b f c h w) in the VAE's layout (b c f h w): a view, so gradients flow back."""
    return einops.rearrange(lat, "b f c h w -> b c f h w")


def diffusers_decode(vae: AutoencoderKLWan, lat: torch.Tensor) -> torch.Tensor:
    """diffusers' own decode of normalised latents (b f c h w) -> video (b F 3 H W) in [0, 1]."""
    mean = torch.tensor(MEAN, dtype=lat.dtype).view(1, -1, 1, 1, 1)
    std = torch.tensor(STD, dtype=lat.dtype).view(1, -1, 1, 1, 1)
    out = vae.decode(einops.rearrange(lat, "b f c h w -> b c f h w") * std + mean).sample
    return einops.rearrange((out.clamp(-1, 1) + 1) / 2, "b C F H W -> b F C H W")


def first_needed(f: int, num_frames: int) -> int:
    """Latent frame of the first of the last `num_frames` pixel frames (pixel p > 0 <- latent ceil(p/4))."""
    p = num_pixel_frames(f) - num_frames
    return 0 if p == 0 else -(-p // 4)


@pytest.mark.parametrize("num_frames", [1, 5, 13])
def test_context_covering_all_frames_is_the_exact_decode_bit_for_bit(wrapped: WanVAE, num_frames: int):
    lat = rand(2, 4, 4, 3, 2)
    exact = wrapped.decode_last(cf(lat), num_frames, context=None)
    j = first_needed(4, num_frames)
    for k in (j, j + 1, 100):
        torch.testing.assert_close(wrapped.decode_last(cf(lat), num_frames, context=k), exact, rtol=0, atol=0)
    # the default (decode_context=None) is exact too
    torch.testing.assert_close(wrapped.decode_last(cf(lat), num_frames), exact, rtol=0, atol=0)


@pytest.mark.parametrize(
    "num_frames,context",
    [(1, 0), (1, 2), (4, 1), (5, 0), (8, 1)],
)
def test_truncated_equals_diffusers_decode_of_the_slice(wrapped: WanVAE, num_frames: int, context: int):
    f = 5
    lat = rand(2, f, 4, 3, 2, seed=2)
    s = max(0, first_needed(f, num_frames) - context)
    ref = diffusers_decode(wrapped.vae, lat[:, s:])[:, -num_frames:]
    for ckpt in (False, True):
        out = wrapped.decode_last(cf(lat), num_frames, context=context, checkpoint=ckpt)
        assert out.shape == (2, num_frames, 3, 24, 16)
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)
    # an approximation, not a copy of the exact decode: the restart changes the scored frames
    assert (out - wrapped.decode_last(cf(lat), num_frames)).abs().max() > 1e-4


def test_wan22_first_chunk_path_restarts_too() -> None:
    vae = wan22_vae()
    w = WanVAE(vae)
    lat = rand(1, 4, 4, 1, 1, seed=3)
    for num_frames, context in ((1, 0), (1, 1), (5, 1), (4, 2)):
        s = max(0, first_needed(4, num_frames) - context)
        ref = diffusers_decode(vae, lat[:, s:])[:, -num_frames:]
        torch.testing.assert_close(
            w.decode_last(cf(lat), num_frames, context=context), ref, rtol=0, atol=1e-6
        )


@pytest.mark.parametrize("num_frames,context", [(1, 1), (4, 1), (5, 0), (1, 0)])
def test_gradient_reaches_only_the_returned_frames_latents(wrapped: WanVAE, num_frames: int, context: int):
    """grad == that of a decode of cat(lat[s:j].detach(), lat[j:]): context frames are a constant."""
    f = 4
    lat = rand(1, f, 4, 2, 2, seed=5)
    weight = rand(1, num_frames, 3, 16, 16, seed=6)
    j = first_needed(f, num_frames)
    s = max(0, j - context)
    x = lat.clone().requires_grad_(True)
    inp = torch.cat([x[:, s:j].detach(), x[:, j:]], dim=1)
    (diffusers_decode(wrapped.vae, inp)[:, -num_frames:] * weight).sum().backward()
    grads = []
    for ckpt in (False, True):
        y = lat.clone().requires_grad_(True)
        (wrapped.decode_last(cf(y), num_frames, checkpoint=ckpt, context=context) * weight).sum().backward()
        grads.append(y.grad)
        torch.testing.assert_close(y.grad, x.grad, rtol=1e-4, atol=1e-6)
        assert y.grad[:, j:].abs().amax(dim=(0, 2, 3, 4)).min() > 0 and (
            j == 0 or y.grad[:, :j].abs().max() == 0
        )
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-7)
    assert all(p.grad is None for p in wrapped.parameters())


def test_decode_context_is_the_default_and_none_stays_exact(tmp_path) -> None:
    vae = tiny_vae(seed=7)
    lat = rand(1, 4, 4, 2, 2, seed=8)
    plain, truncated = WanVAE(vae), WanVAE(vae, decode_context=1)
    assert plain.decode_context is None and truncated.decode_context == 1
    torch.testing.assert_close(
        truncated.decode_last(cf(lat)), plain.decode_last(cf(lat), context=1), rtol=0, atol=0
    )
    # an explicit context=None asks for the exact decode whatever the VAE's default
    torch.testing.assert_close(
        truncated.decode_last(cf(lat), context=None), plain.decode_last(cf(lat)), rtol=0, atol=0
    )
    assert (truncated.decode_last(cf(lat)) - plain.decode_last(cf(lat))).abs().max() > 1e-4
    vae.save_pretrained(tmp_path / "vae")
    loaded = WanVAE.from_pretrained(tmp_path, decode_context=2)
    assert loaded.decode_context == 2
    torch.testing.assert_close(
        loaded.decode_last(cf(lat)), plain.decode_last(cf(lat), context=2), rtol=0, atol=0
    )
    # the YAML loader passes it through (experiments set it under the vae's init_args)
    from rfvideo.modules.components import load_wan_vae

    assert load_wan_vae(str(tmp_path), decode_context=3).decode_context == 3
    assert load_wan_vae(str(tmp_path)).decode_context is None


@pytest.mark.slow  # four decodes of 32 latent frames: ~3 min on the loaded 2-core machine
def test_context_beyond_the_receptive_field_is_exact() -> None:
    """The tiny config's causal temporal convs reach the last pixel frame back 29 latent frames.

    Counting kernel-3 causal convs (2 frames back each at their own rate) from the output: 9 at 4x rate
    (up-blocks 2 and 3, conv_out), the second time upsampler and 4 convs at 2x rate, the first time
    upsampler and 9 convs at latent rate (conv_in, mid block, up-block 0): pixel 4(L-1) depends on latent
    frames L-30 .. L-1. A NaN planted in a latent frame marks every output that depends on it, whatever
    the weights (NaN * 0 is NaN): L-30 reaches the last frame, L-31 does not, and a restart 30 frames
    back reproduces the exact decode bit for bit. (Numerically the edge of the cone is tiny: a unit
    perturbation at d = 28 already moves the last frame by less than float64 resolves.)
    """
    w = WanVAE(tiny_vae(seed=9))
    f, reach = 32, 29
    lat = rand(1, f, 4, 1, 1, seed=10)
    with torch.no_grad():
        exact = w.decode_last(cf(lat), 1)
        torch.testing.assert_close(w.decode_last(cf(lat), 1, context=reach + 1), exact, rtol=0, atol=0)
        for j, reaches in ((f - 1 - reach, True), (f - 2 - reach, False)):
            marked = lat.clone()
            marked[:, j] = float("nan")
            assert bool(w.decode_last(cf(marked), 1).isnan().any()) is reaches, j


@pytest.mark.parametrize("bad", [-1, 1.5, True, "2", 2.0])
def test_bad_context_is_a_one_line_value_error(wrapped: WanVAE, bad) -> None:
    lat = rand(1, 3, 4, 2, 2)
    with pytest.raises(ValueError, match=r"^context must be None \(exact\) or an int >= 0") as e:
        wrapped.decode_last(cf(lat), 1, context=bad)
    assert repr(bad) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ValueError, match=r"^decode_context must be .*" + re.escape(repr(bad))):
        WanVAE(tiny_vae(), decode_context=bad)
    # checked before any file is read
    with pytest.raises(ValueError, match="decode_context"):
        WanVAE.from_pretrained("/nonexistent/folder", decode_context=bad)


def test_context_zero_cannot_supply_a_partial_latent_frame(wrapped: WanVAE) -> None:
    """K = 0 decodes latent frame j alone from a fresh cache: one pixel frame, not its four."""
    lat = rand(1, 3, 4, 2, 2)
    assert wrapped.decode_last(cf(lat), 1, context=0).shape[1] == 1
    with pytest.raises(ValueError, match=r"context=0 .* latent frame 2.* num_frames=4 needs context >= 1"):
        wrapped.decode_last(cf(lat), 4, context=0)
    assert wrapped.decode_last(cf(lat), 4, context=1).shape[1] == 4
