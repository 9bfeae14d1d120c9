"""LightVAE: a quarter-width random Wan VAE saved under the *original* Wan key names loads strictly through
the registry (diffusers' Wan VAE converter), decodes like the source, and streams == full decode.

Legend: `b` batch, `c` latent channels, `f` latent frames, `h w` latent size, `F` pixel frames.
"""

from __future__ import annotations

import re

import pytest
import torch
from diffusers import AutoencoderKLWan
from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers
from safetensors.torch import save_file

from helpers import randomize_
from rfvideo.decoders import LIGHT_VAE_BASE_DIM, build_decoder, load_light_vae
from rfvideo.models.vae import WanVAE

_RES = {"norm1.gamma": "residual.0.gamma", "conv1": "residual.2", "norm2.gamma": "residual.3.gamma"}
_RES |= {"conv2": "residual.6", "conv_shortcut": "shortcut"}


def _res(rest: str) -> str:
    for new, old in _RES.items():
        if rest == new or rest.startswith(new + "."):
            return old + rest[len(new) :]
    raise AssertionError(rest)


def to_original_names(key: str) -> str:
    """diffusers `AutoencoderKLWan` name -> original Wan2.1 VAE name: the inverse of diffusers' converter,
    written here for the test (Wan's decoder keeps its up stages flat: 3 residual blocks + 1 resample)."""
    if key.startswith(("quant_conv.", "post_quant_conv.")):
        return key.replace("post_quant_conv", "conv2").replace("quant_conv", "conv1")
    side, rest = key.split(".", 1)
    if rest.startswith("conv_in."):
        return f"{side}.conv1.{rest[8:]}"
    if rest.startswith("norm_out."):
        return f"{side}.head.0.{rest[9:]}"
    if rest.startswith("conv_out."):
        return f"{side}.head.2.{rest[9:]}"
    m = re.fullmatch(r"mid_block\.resnets\.(\d)\.(.+)", rest)
    if m:
        return f"{side}.middle.{2 * int(m.group(1))}.{_res(m.group(2))}"
    m = re.fullmatch(r"mid_block\.attentions\.0\.(.+)", rest)
    if m:
        return f"{side}.middle.1.{m.group(1)}"
    m = re.fullmatch(r"down_blocks\.(\d+)\.(.+)", rest)
    if m:
        tail = m.group(2) if m.group(2).startswith(("resample", "time_conv")) else _res(m.group(2))
        return f"{side}.downsamples.{m.group(1)}.{tail}"
    m = re.fullmatch(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", rest)
    if m:
        return f"{side}.upsamples.{4 * int(m.group(1)) + int(m.group(2))}.{_res(m.group(3))}"
    m = re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.(.+)", rest)
    if m:
        return f"{side}.upsamples.{4 * int(m.group(1)) + 3}.{m.group(2)}"
    raise AssertionError(key)


@pytest.fixture(scope="module")
def source() -> AutoencoderKLWan:
    torch.manual_seed(0)  # the constructor draws its init from the global RNG; then every weight is seeded
    vae = AutoencoderKLWan(base_dim=LIGHT_VAE_BASE_DIM)
    return randomize_(vae, torch.Generator().manual_seed(1), scale=0.05).eval()  # type: ignore[return-value]


def original_layout(vae: AutoencoderKLWan) -> dict[str, torch.Tensor]:
    sd = {to_original_names(k): v.clone() for k, v in vae.state_dict().items()}
    # the inverse really is the inverse of diffusers' converter, key for key
    back = convert_wan_vae_to_diffusers(dict(sd))
    assert set(back) == set(vae.state_dict()) and all(
        torch.equal(back[k], v) for k, v in vae.state_dict().items()
    )
    return sd


def latents(f: int = 3) -> torch.Tensor:
    """(b c f h w), normalised."""
    return torch.randn(1, 16, f, 2, 3, generator=torch.Generator().manual_seed(2))


@torch.no_grad()
def test_quarter_width_original_layout_loads_strictly_decodes_and_streams(tmp_path, source):
    sd = original_layout(source)
    assert "decoder.upsamples.4.shortcut.weight" in sd and "conv2.weight" in sd  # original names
    torch.save(sd, tmp_path / "lightvaew2_1.pth")
    save_file(sd, str(tmp_path / "lightvaew2_1.safetensors"))
    for name in ("lightvaew2_1.pth", "lightvaew2_1.safetensors"):
        vae = build_decoder("lightvae", tmp_path / name)
        assert isinstance(vae, WanVAE) and vae.vae.config.base_dim == 24 == 96 // 4
        own = vae.vae.state_dict()
        assert set(own) == set(source.state_dict())
        assert all(torch.equal(own[k], v) for k, v in source.state_dict().items())
    z = latents(f=2)
    video = vae.decode(z)
    assert video.shape == (1, 5, 3, 16, 24) and video.std() > 0.01
    # streamed one latent frame at a time == full decode
    stream = vae.stream_decoder()
    parts = [stream(z[:, :, :1]), stream(z[:, :, 1:])]
    assert [p.shape[1] for p in parts] == [1, 4]
    assert (torch.cat(parts, 1) - video).abs().max() <= 1e-6


def test_wrong_width_or_key_is_one_line(tmp_path, source):
    sd = original_layout(source)
    save_file(sd, str(tmp_path / "w.safetensors"))
    with pytest.raises(
        ValueError, match=r"shape mismatch at 'decoder\.[^']+': file .* model .*base_dim=96"
    ) as err:
        load_light_vae(tmp_path / "w.safetensors", base_dim=96)
    assert "\n" not in str(err.value)
    del sd["decoder.upsamples.5.residual.2.weight"]
    save_file(sd, str(tmp_path / "m.safetensors"))
    with pytest.raises(ValueError, match=r"missing \['decoder\.up_blocks\.1\.resnets\.1\.conv1\.weight'\]"):
        build_decoder("lightvae", tmp_path / "m.safetensors")


@torch.no_grad()
def test_diffusers_folder_loads_too(tmp_path, source):
    source.save_pretrained(tmp_path / "vae")
    vae = build_decoder("lightvae", tmp_path)
    assert isinstance(vae, WanVAE) and vae.vae.config.base_dim == 24
