"""TinyVideoDecoder (TAEHV taew2_1 / LightTAE lighttaew2_1): against a frame-by-frame reference, exact
streaming, causality, `decode_last`, and the strict loader on files in the checkpoint's key layout.

Legend: `b` batch, `c` latent channels, `f` latent frames, `h w` latent size, `F` pixel frames, `C` features.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from rfvideo.decoders import TinyVideoDecoder, build_decoder, wan21_latent_stats
from rfvideo.decoders.tiny import MemBlock, SoftClamp, TGrow, TPool
from rfvideo.models.vae import num_pixel_frames

C, WIDTHS, ENC, HW, FRAMES = 16, (16, 8, 8, 8), 8, (2, 3), 8


def tiny_tae(seed: int = 0, **kw: object) -> TinyVideoDecoder:
    """A tiny random TAEHV (decoder widths 16/8/8/8, encoder width 8), every weight seeded noise."""
    kw.setdefault("encoder_width", ENC)
    model = TinyVideoDecoder(latent_channels=C, widths=WIDTHS, **kw)  # type: ignore[arg-type]
    return seeded_init_(model, torch.Generator().manual_seed(seed)).eval()


def seeded_init_(model: TinyVideoDecoder, gen: torch.Generator) -> TinyVideoDecoder:
    """Seeded weights at 1 / sqrt(fan_in) (activations keep their scale through 20 layers), biases
    nonzero, the last conv's bias at 0.5: the output sits inside (0, 1), so the clamp rarely saturates
    and every frame carries gradient."""
    with torch.no_grad():
        for p in model.parameters():
            fan_in = p[0].numel() if p.ndim > 1 else 1
            scale = 1.0 / fan_in**0.5 if p.ndim > 1 else 0.05
            p.copy_(torch.randn(p.shape, generator=gen) * scale)
        model.decoder[-1].bias.add_(0.5)
    return model


def latents(seed: int = 1, frames: int = FRAMES, batch: int = 1) -> torch.Tensor:
    return torch.randn(batch, C, frames, *HW, generator=torch.Generator().manual_seed(seed))


def checkpoint_layout(model: TinyVideoDecoder) -> dict[str, torch.Tensor]:
    """The file's layout: `encoder.{i}.*` / `decoder.{i}.*`, no key at decoder index 0 (the clamp)."""
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    assert not any(k.startswith("decoder.0.") for k in sd) and any(k.startswith("decoder.1.") for k in sd)
    return sd


# ------------------------------------------------------------------ a frame-by-frame reference
def _conv(layer: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    return F.conv2d(x, layer.weight, layer.bias, stride=layer.stride, padding=layer.padding)


def naive_frames(layers: nn.Sequential, frames: list[torch.Tensor]) -> list[torch.Tensor]:
    """TAEHV semantics one frame at a time: MemBlock past = its own previous input (zeros at t = 0),
    TGrow channel group j -> sub-frame j, TPool = `stride` frames side by side."""
    for layer in layers:
        if isinstance(layer, MemBlock):
            out = []
            for t, x in enumerate(frames):
                past = frames[t - 1] if t else torch.zeros_like(x)
                c0, c2, c4 = layer.conv[0], layer.conv[2], layer.conv[4]
                h = _conv(c4, F.relu(_conv(c2, F.relu(_conv(c0, torch.cat([x, past], 1))))))
                out.append(F.relu(h + x))
        elif isinstance(layer, TGrow):
            out = []
            for x in frames:
                y, n = _conv(layer.conv, x), x.shape[1]
                out += [y[:, j * n : (j + 1) * n] for j in range(layer.stride)]
        elif isinstance(layer, TPool):
            s = layer.stride
            out = [_conv(layer.conv, torch.cat(frames[i : i + s], 1)) for i in range(0, len(frames), s)]
        elif isinstance(layer, SoftClamp):
            out = [3 * torch.tanh(x / 3) for x in frames]
        elif isinstance(layer, nn.Conv2d):
            out = [_conv(layer, x) for x in frames]
        elif isinstance(layer, nn.ReLU):
            out = [F.relu(x) for x in frames]
        elif isinstance(layer, nn.Upsample):
            out = [F.interpolate(x, scale_factor=2, mode="nearest") for x in frames]
        else:
            raise AssertionError(f"unexpected layer {layer}")
        frames = out
    return frames


def naive_decode(model: TinyVideoDecoder, z: torch.Tensor) -> torch.Tensor:
    """(b c f h w) normalised -> (b F 3 H W): 4 frames per latent, clamp to [0, 1], drop the first 3."""
    if model.latent_space == "raw":
        mean, std = (torch.tensor(s).view(1, -1, 1, 1, 1) for s in wan21_latent_stats())
        z = z * std + mean
    frames = naive_frames(model.decoder, list(z.unbind(2)))
    return torch.stack(frames, 1).clamp(0, 1)[:, 3:]


# ------------------------------------------------------------------ decode
@torch.no_grad()
def test_decode_matches_frame_by_frame_reference_and_frame_count():
    model, z = tiny_tae(), latents()
    video = model.decode(z)
    assert video.shape == (1, num_pixel_frames(FRAMES), 3, HW[0] * 8, HW[1] * 8)
    ref = naive_decode(model, z)
    torch.testing.assert_close(video, ref, atol=1e-6, rtol=0)
    assert 0.05 < video.std() and 0.0 <= video.min() and video.max() <= 1.0  # not saturated or flat


@torch.no_grad()
def test_lighttae_unnormalises_inside_with_wan_stats():
    raw = tiny_tae(latent_space="raw")
    norm = tiny_tae(latent_space="normalized")  # same seed: same weights
    z = latents()
    mean, std = (torch.tensor(s).view(1, -1, 1, 1, 1) for s in wan21_latent_stats())
    torch.testing.assert_close(raw.decode(z), norm.decode(z * std + mean), atol=1e-6, rtol=0)
    torch.testing.assert_close(raw.decode(z), naive_decode(raw, z), atol=1e-6, rtol=0)
    assert (raw.decode(z) - norm.decode(z)).abs().max() > 1e-3


# ------------------------------------------------------------------ streaming and causality
@pytest.mark.parametrize("split", [[1] * FRAMES, [3, 3, 2], [4, 4], [2, 1, 4, 1]], ids=str)
@torch.no_grad()
def test_stream_equals_full_decode(split):
    model, z = tiny_tae(), latents(batch=2)
    full = model.decode(z)
    stream, outs, start = model.stream_decoder(), [], 0
    for k in split:
        outs.append(stream(z[:, :, start : start + k], frame_offset=start))
        assert outs[-1].shape[1] == (4 * k - 3 if start == 0 else 4 * k)
        start += k
    assert (torch.cat(outs, 1) - full).abs().max() <= 1e-6
    # the carried state is one frame of features per MemBlock, whatever the chunk size
    assert stream.cache_bytes() == sum(
        2 * w * (HW[0] * 2**s) * (HW[1] * 2**s) * 4 * 3 for s, w in enumerate(WIDTHS[:3])
    )


@torch.no_grad()
def test_stream_is_not_the_same_as_restarting_each_chunk():
    """The carried memory matters: decoding chunk 2 alone (fresh memory) differs from the stream."""
    model, z = tiny_tae(), latents()
    stream = model.stream_decoder()
    stream(z[:, :, :4])
    carried = stream(z[:, :, 4:])
    fresh = model.stream_decoder()
    fresh(z[:, :, :1])  # one frame of context only
    assert (carried - fresh(z[:, :, 4:], frame_offset=1)).abs().max() > 1e-4


@torch.no_grad()
def test_causality_perturbing_latent_k_leaves_earlier_frames_bit_identical():
    model, z = tiny_tae(), latents()
    base = model.decode(z)
    for k in range(1, FRAMES):
        z2 = z.clone()
        z2[:, :, k] += torch.randn(z2[:, :, k].shape, generator=torch.Generator().manual_seed(k))
        out = model.decode(z2)
        assert torch.equal(out[:, : 4 * k - 3], base[:, : 4 * k - 3]), k
        assert (out[:, 4 * k - 3] - base[:, 4 * k - 3]).abs().max() > 0, k


@torch.no_grad()
def test_stream_rejects_out_of_order_and_other_shapes_and_resets():
    model, z = tiny_tae(), latents(batch=2)
    stream = model.stream_decoder()
    first = stream(z[:, :, :2])
    with pytest.raises(ValueError, match="frame_offset=5"):
        stream(z[:, :, 2:4], frame_offset=5)
    with pytest.raises(ValueError, match="does not continue"):
        stream(z[:1, :, 2:4])
    with pytest.raises(ValueError, match="c=16"):
        stream(torch.randn(2, 4, 2, *HW))
    stream.reset()
    assert torch.equal(stream(z[:, :, :2], frame_offset=0), first)


# ------------------------------------------------------------------ decode_last
def test_decode_last_exact_differentiable_and_checkpointed():
    model = tiny_tae()
    model.requires_grad_(False)
    z = latents().requires_grad_(True)
    full = model.decode(z.detach())
    for n in (1, 6, num_pixel_frames(FRAMES)):
        out = model.decode_last(z, n)
        torch.testing.assert_close(out, full[:, -n:], atol=1e-6, rtol=0)
    out = model.decode_last(z, 6)  # pixel frames 23..28 need latents 6 and 7
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(3))
    (g,) = torch.autograd.grad((out * weights).sum(), z)
    assert g[:, :, :6].abs().max() == 0 and g[:, :, 6:].abs().sum(dim=(0, 1, 3, 4)).gt(0).all()
    # same value and gradient as the full decode with the prefix detached
    zz = z.detach()[:, :, 6:].clone().requires_grad_(True)
    ref = model.decode(torch.cat([z.detach()[:, :, :6], zz], 2))[:, -6:]
    (g_ref,) = torch.autograd.grad((ref * weights).sum(), zz)
    torch.testing.assert_close(g[:, :, 6:], g_ref, atol=1e-5, rtol=1e-4)
    out_ck = model.decode_last(z, 6, checkpoint=True)
    (g_ck,) = torch.autograd.grad((out_ck * weights).sum(), z)
    torch.testing.assert_close(out_ck, out, atol=0, rtol=0)
    torch.testing.assert_close(g_ck, g, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="num_frames"):
        model.decode_last(z, 0)


# ------------------------------------------------------------------ encode
@torch.no_grad()
def test_encode_matches_frame_by_frame_reference():
    model = tiny_tae()
    video = torch.rand(2, 9, 3, 16, 24, generator=torch.Generator().manual_seed(4))
    z = model.encode(video)
    assert z.shape == (2, C, 3, *HW)
    padded = torch.cat([video, video[:, -1:].expand(-1, 3, -1, -1, -1)], 1)  # 12 frames
    ref = torch.stack(naive_frames(model.encoder, list(padded.unbind(1))), 2)
    torch.testing.assert_close(z, ref, atol=1e-6, rtol=0)


# ------------------------------------------------------------------ loading
@pytest.mark.parametrize(("name", "fmt"), [("tae", "pth"), ("lighttae", "safetensors")])
@torch.no_grad()
def test_loader_reads_checkpoint_layout_strictly(tmp_path, fmt, name):
    space = "normalized" if name == "tae" else "raw"
    src = tiny_tae(seed=5, latent_space=space)
    sd = checkpoint_layout(src)
    path = tmp_path / f"weights.{fmt}"
    torch.save(sd, path) if fmt == "pth" else save_file(sd, str(path))
    z = latents()
    loaded = build_decoder(name, path, widths=WIDTHS, latent_channels=C)  # encoder.* skipped
    assert isinstance(loaded, TinyVideoDecoder) and loaded.encoder is None and loaded.latent_space == space
    assert not any(p.requires_grad for p in loaded.parameters()) and not loaded.training
    torch.testing.assert_close(loaded.decode(z), src.decode(z), atol=0, rtol=0)
    # a folder holding the one file, and the encoder half on request
    enc = TinyVideoDecoder.from_pretrained(tmp_path, latent_space=space, widths=WIDTHS, load_encoder=True)
    video = torch.rand(1, 5, 3, 16, 24, generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(enc.encode(video), src.encode(video), atol=0, rtol=0)


def test_loader_names_missing_unexpected_and_shape_mismatch_in_one_line(tmp_path):
    sd = checkpoint_layout(tiny_tae())
    cases = {
        "missing": (
            {k: v for k, v in sd.items() if k != "decoder.9.conv.2.weight"},
            "decoder.9.conv.2.weight",
        ),
        "unexpected": ({**sd, "decoder.30.weight": torch.zeros(1)}, "decoder.30.weight"),
        "shape": ({**sd, "decoder.1.bias": torch.zeros(7)}, "decoder.1.bias"),
        "foreign": ({**sd, "model.x": torch.zeros(1)}, "model.x"),
    }
    for what, (bad, key) in cases.items():
        path = tmp_path / f"{what}.safetensors"
        save_file(bad, str(path))
        with pytest.raises(ValueError, match=key.replace(".", r"\.")) as err:
            TinyVideoDecoder.from_pretrained(path, widths=WIDTHS)
        assert "\n" not in str(err.value), what
    with pytest.raises(ValueError, match="shape mismatch"):  # the right file with the wrong widths
        save_file(sd, str(tmp_path / "ok.safetensors"))
        TinyVideoDecoder.from_pretrained(tmp_path / "ok.safetensors", widths=(16, 8, 8, 4))
    with pytest.raises(ValueError, match="unknown decoder 'taehv'; valid: wan, tae, lighttae, lightvae"):
        build_decoder("taehv", tmp_path / "ok.safetensors")


@torch.no_grad()
def test_loader_keeps_last_subframe_rows_of_a_wider_first_tgrow(tmp_path):
    """Files whose first TGrow was trained with stride 2 load as TAEHV does: the last sub-frame's rows."""
    model = tiny_tae()
    sd = checkpoint_layout(model)
    w = sd["decoder.7.conv.weight"]  # (16 16 1 1): stride 1
    sd["decoder.7.conv.weight"] = torch.cat([torch.randn(w.shape, generator=torch.Generator()), w], 0)
    save_file(sd, str(tmp_path / "wide.safetensors"))
    loaded = TinyVideoDecoder.from_pretrained(tmp_path / "wide.safetensors", widths=WIDTHS)
    z = latents()
    torch.testing.assert_close(loaded.decode(z), model.decode(z), atol=0, rtol=0)
