"""Differentiable CLIP preprocessing vs transformers' own CLIPImageProcessor (PIL path); HPSv2's letterbox
vs a PIL implementation; open_clip's prompt cleaning on hand-written cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import CLIPImageProcessor

from rfvideo.rewards.preprocess import (
    ImagePreprocess,
    Letterbox,
    center_crop,
    clean_prompt_open_clip,
    letterbox,
    longest_edge_size,
    resize_shortest_edge,
    shortest_edge_size,
)


def _smooth_uint8(h: int, w: int, g: torch.Generator) -> torch.Tensor:
    """Seeded natural-ish image (low-frequency noise + texture), uint8 `(3 h w)`."""
    low = torch.rand(1, 3, max(h // 16, 2), max(w // 16, 2), generator=g)
    img = torch.nn.functional.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)[0]
    img = img * 0.8 + 0.2 * torch.rand(3, h, w, generator=g)
    return (img * 255).round().clamp(0, 255).to(torch.uint8)


@pytest.mark.parametrize("hw", [(240, 416), (300, 260), (224, 224), (120, 200)])
def test_matches_clip_image_processor(hw: tuple[int, int]) -> None:
    g = torch.Generator().manual_seed(hw[0] * 1000 + hw[1])
    imgs = torch.stack([_smooth_uint8(*hw, g) for _ in range(2)])  # (n 3 H W) uint8
    proc = CLIPImageProcessor()
    ref = proc(images=[im.permute(1, 2, 0).numpy() for im in imgs], return_tensors="pt")["pixel_values"]
    pre = ImagePreprocess.from_processor(proc)
    ours = pre(imgs.float() / 255)
    assert ours.shape == ref.shape == (2, 3, 224, 224)
    # PIL rounds the resized image to uint8 and uses fixed-point weights; torch does neither. One grey
    # level after normalisation is 1 / 255 / min(std) ~= 0.0146.
    diff = (ours - ref).abs()
    one_level = 1 / 255 / min(pre.std)
    # Measured: mean 0.30, max 1.09 grey levels (uint8 rounding alone gives a mean of 0.25).
    assert diff.mean() < 0.35 * one_level, diff.mean()
    assert diff.max() < 1.5 * one_level, diff.max()


def test_from_processor_reads_custom_settings() -> None:
    proc = CLIPImageProcessor(
        size={"shortest_edge": 32},
        crop_size={"height": 24, "width": 28},
        image_mean=[0.1, 0.2, 0.3],
        image_std=[0.5, 0.6, 0.7],
        resample=2,
    )
    pre = ImagePreprocess.from_processor(proc)
    assert (pre.size, pre.crop, pre.mode) == (32, (24, 28), "bilinear")
    assert tuple(pre.mean) == (0.1, 0.2, 0.3) and tuple(pre.std) == (0.5, 0.6, 0.7)
    g = torch.Generator().manual_seed(0)
    img = _smooth_uint8(50, 70, g)[None]
    ref = proc(images=[img[0].permute(1, 2, 0).numpy()], return_tensors="pt")["pixel_values"]
    ours = pre(img.float() / 255)
    assert ours.shape == ref.shape == (1, 3, 24, 28)
    assert (ours - ref).abs().max() < 1.5 / 255 / 0.5


def test_sizes_crop_and_gradient() -> None:
    assert shortest_edge_size(480, 832, 224) == (224, 388)
    assert shortest_edge_size(832, 480, 224) == (388, 224)
    x = torch.arange(2 * 3 * 5 * 7, dtype=torch.float32).view(2, 3, 5, 7)
    assert torch.equal(center_crop(x, 3, 4), x[..., 1:4, 1:5])
    with pytest.raises(ValueError, match="larger than the image"):
        center_crop(x, 6, 4)
    video = torch.rand(2, 3, 40, 60, generator=torch.Generator().manual_seed(1), requires_grad=True)
    ImagePreprocess(size=16, crop=(16, 16))(video).sum().backward()
    assert video.grad is not None and video.grad.abs().sum() > 0


def test_bad_config_raises() -> None:
    with pytest.raises(ValueError, match="mode"):
        ImagePreprocess(mode="lanczos")
    with pytest.raises(ValueError, match="std"):
        ImagePreprocess(std=(0.1, 0.0, 0.2))
    with pytest.raises(ValueError, match=r"\(n 3 H W\)"):
        ImagePreprocess()(torch.rand(3, 8, 8))


def test_square_resize_processor_refused() -> None:
    proc = CLIPImageProcessor(size={"height": 32, "width": 32})
    with pytest.raises(ValueError, match="shortest-edge"):
        ImagePreprocess.from_processor(proc)


def _pil_letterbox(img: torch.Tensor, size: int) -> torch.Tensor:
    """Naive HPSv2 letterbox with PIL: each channel as a float ("F") image, antialiased bicubic resize of
    the long side to `size` (short side rounded), pasted at (pad_w // 2, pad_h // 2) on a zero canvas."""
    h, w = img.shape[-2:]
    new_h, new_w = round(h * size / max(h, w)), round(w * size / max(h, w))
    out = torch.zeros(3, size, size)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    for c in range(3):
        resized = Image.fromarray(img[c].numpy().astype(np.float32), mode="F").resize(
            (new_w, new_h), Image.Resampling.BICUBIC
        )
        out[c, top : top + new_h, left : left + new_w] = torch.from_numpy(np.array(resized))
    return out


@pytest.mark.parametrize("hw", [(60, 104), (104, 60), (480, 832), (50, 50), (31, 77)])
def test_letterbox_matches_pil(hw: tuple[int, int]) -> None:
    g = torch.Generator().manual_seed(hw[0] * 7 + hw[1])
    imgs = torch.stack([_smooth_uint8(*hw, g) for _ in range(2)]).float() / 255  # (n 3 H W)
    size = 32
    ours = letterbox(imgs, size)
    ref = torch.stack([_pil_letterbox(im, size) for im in imgs])
    assert ours.shape == ref.shape == (2, 3, size, size)
    torch.testing.assert_close(ours, ref, atol=2e-5, rtol=0)
    # The whole frame is kept: the padding is exactly zero and the picture spans the long side.
    new_h, new_w = longest_edge_size(*hw, size)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    assert ours[..., :top, :].abs().sum() == 0 and ours[..., top + new_h :, :].abs().sum() == 0
    assert ours[..., :, :left].abs().sum() == 0 and ours[..., :, left + new_w :].abs().sum() == 0


def test_letterbox_sizes_normalisation_and_gradient() -> None:
    assert longest_edge_size(480, 832, 224) == (129, 224)  # 480 * 224 / 832 = 129.23
    assert longest_edge_size(832, 480, 224) == (224, 129)
    assert longest_edge_size(60, 104, 224) == (129, 224)  # 129.23 as well: the 480x832 aspect ratio
    assert longest_edge_size(3, 8, 224) == (84, 224)
    pre = Letterbox(size=16, mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 2.0))
    video = torch.rand(2, 3, 30, 52, generator=torch.Generator().manual_seed(3), requires_grad=True)
    x = pre(video)
    ref = (letterbox(video.detach(), 16) - torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)) / torch.tensor(
        [0.5, 0.25, 2.0]
    ).view(1, 3, 1, 1)
    torch.testing.assert_close(x, ref)
    # padding rows are the normalised fill (0 -> -mean / std)
    torch.testing.assert_close(x[0, :, 0, 0], torch.tensor([-0.2, -0.8, -0.15]))
    x.sum().backward()
    # every input pixel reaches the output (a centre crop would leave the left/right columns at zero grad)
    assert video.grad is not None and (video.grad[..., :, :5].abs().sum() > 0)
    assert video.grad[..., :, -5:].abs().sum() > 0
    with pytest.raises(ValueError, match="size"):
        Letterbox(size=0)
    with pytest.raises(ValueError, match="mode"):
        Letterbox(mode="area")
    with pytest.raises(ValueError, match=r"\(n 3 H W\)"):
        Letterbox()(torch.rand(3, 8, 8))


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        # ftfy uncurls quotes; HTML entities are unescaped (twice: "&amp;amp;" -> "&")
        ("A dog\u2019s \u201cbone\u201d &amp; a cat", 'a dog\'s "bone" & a cat'),
        ("fish &amp;amp; chips", "fish & chips"),
        ("  two\t\nspaces   here ", "two spaces here"),
        ("mojibake: caf\u00c3\u00a9", "mojibake: caf\u00e9"),  # UTF-8 read as Latin-1, repaired by ftfy
        ("plain prompt", "plain prompt"),
    ],
)
def test_clean_prompt_open_clip(raw: str, clean: str) -> None:
    assert clean_prompt_open_clip(raw) == clean


def test_center_crop_offsets_floor_and_round() -> None:
    x = torch.arange(55, dtype=torch.float32).view(1, 1, 1, 55).expand(1, 3, 32, 55)
    # 55 - 32 = 23: transformers starts at 23 // 2 = 11, torchvision at round(11.5) = 12
    assert center_crop(x, 32, 32)[0, 0, 0, 0] == 11
    assert center_crop(x, 32, 32, offset="round")[0, 0, 0, 0] == 12
    y = torch.arange(57, dtype=torch.float32).view(1, 1, 1, 57).expand(1, 3, 32, 57)
    # 57 - 32 = 25: 12 both ways (Python's and torchvision's round(12.5) is 12)
    assert center_crop(y, 32, 32, offset="round")[0, 0, 0, 0] == center_crop(y, 32, 32)[0, 0, 0, 0] == 12
    pre = ImagePreprocess(size=32, crop=(32, 32), crop_offset="round", mean=(0, 0, 0), std=(1, 1, 1))
    img = torch.rand(1, 3, 60, 104, generator=torch.Generator().manual_seed(2))
    resized = resize_shortest_edge(img, 32)  # (32, 55)
    torch.testing.assert_close(pre(img), resized[..., 12:44])
    with pytest.raises(ValueError, match="offset"):
        center_crop(x, 32, 32, offset="ceil")
    with pytest.raises(ValueError, match="crop_offset"):
        ImagePreprocess(crop_offset="ceil")
