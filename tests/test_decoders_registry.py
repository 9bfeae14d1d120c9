"""The decoder registry and slot protocol: every name builds its decoder from a local path, each built
decoder satisfies `VideoDecoder` with its frame arithmetic from `num_pixel_frames`, and bad names fail in
one line.

Legend: `b` batch, `c` latent channels, `f` latent frames, `h w` latent size, `F` pixel frames.
"""

from __future__ import annotations

import pytest
import torch
from diffusers import AutoencoderKLWan
from safetensors.torch import save_file

from helpers import randomize_
from rfvideo.decoders import DECODERS, StreamDecoder, TinyVideoDecoder, VideoDecoder, build_decoder
from rfvideo.models.vae import WanVAE, num_pixel_frames
from test_decoders_tiny import WIDTHS, tiny_tae


def test_registry_names_and_unknown_name():
    assert list(DECODERS) == ["wan", "tae", "lighttae", "lightvae"]
    assert all(spec.help and "\n" not in spec.help for spec in DECODERS.values())
    with pytest.raises(ValueError) as err:
        build_decoder("vae", "x")
    assert str(err.value) == "unknown decoder 'vae'; valid: wan, tae, lighttae, lightvae"


@torch.no_grad()
def test_every_builder_gives_a_slot_decoder(tmp_path):
    torch.manual_seed(0)
    wan = AutoencoderKLWan(base_dim=4, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1)
    randomize_(wan, torch.Generator().manual_seed(1), scale=0.1).save_pretrained(tmp_path / "wan" / "vae")
    save_file(tiny_tae().state_dict(), str(tmp_path / "taew2_1.safetensors"))
    built = {
        "wan": build_decoder("wan", tmp_path / "wan", torch_dtype=torch.float32, device="cpu"),
        "tae": build_decoder("tae", tmp_path / "taew2_1.safetensors", widths=WIDTHS, device="cpu"),
        "lighttae": build_decoder("lighttae", tmp_path / "taew2_1.safetensors", widths=WIDTHS),
    }
    assert isinstance(built["wan"], WanVAE) and isinstance(built["tae"], TinyVideoDecoder)
    z = torch.randn(1, 16, 3, 2, 3, generator=torch.Generator().manual_seed(2))
    for name, dec in built.items():
        assert isinstance(dec, VideoDecoder), name
        assert (dec.temporal_factor, dec.spatial_factor, dec.latent_channels) == (4, 8, 16), name
        video = dec.decode(z)
        assert video.shape == (1, num_pixel_frames(3, dec.temporal_factor), 3, 16, 24), name
        stream = dec.stream_decoder()
        assert isinstance(stream, StreamDecoder), name
        torch.testing.assert_close(torch.cat([stream(z[:, :, :1]), stream(z[:, :, 1:])], 1), video)
        torch.testing.assert_close(dec.decode_last(z, 2), video[:, -2:])
