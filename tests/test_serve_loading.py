"""What `rfvideo serve` builds from a trained recipe: `streaming_factory` and the prefix re-decoding
stream decoder for VAEs without their own (checked against each VAE's full decode)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch

from rfvideo.demo_world.codec import PoolingVideoCodec
from rfvideo.serve.loading import streaming_factory
from rfvideo.streaming import StreamingGenerator
from test_serve_app import LATENT, SCHEDULE, encode_prompt, parts  # noqa: F401  (fixture)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)  # see test_serve_app.py


def latents(f: int, c: int = 4, seed: int = 5) -> torch.Tensor:
    """Random normalised latents (b f c h w)."""
    return torch.randn(1, f, c, 2, 4, generator=torch.Generator().manual_seed(seed))


def recipe(parts: Any, vae: Any) -> SimpleNamespace:  # noqa: F811
    """The attributes of a trained recipe that `StreamingGenerator.from_module` reads."""
    model = parts[0]
    return SimpleNamespace(
        generator=model, generator_ema=None, vae=vae, encode_prompts=encode_prompt,
        schedule=SCHEDULE, latent_size=LATENT,
    )  # fmt: skip


def test_factory_streams_equal_a_direct_generator(parts: Any) -> None:  # noqa: F811
    make = streaming_factory(recipe(parts, parts[1]), max_chunks=None)
    a, b = make(), make()
    assert a.kv_cache is not b.kv_cache  # a fresh cache per stream over the one model
    ref = StreamingGenerator(parts[0], parts[1], encode_prompt, schedule=SCHEDULE, latent_size=LATENT)
    for g in (a, ref):
        g.reset(4)
        g.set_prompt("a red square")
    for _ in range(3):
        torch.testing.assert_close(a.next_chunk(), ref.next_chunk(), rtol=0, atol=0)


def test_factory_streams_a_vae_without_stream_decoder_finitely(parts: Any) -> None:  # noqa: F811
    codec = PoolingVideoCodec(latent_channels=4)
    with pytest.raises(ValueError, match="PoolingVideoCodec.*set max_chunks"):
        streaming_factory(recipe(parts, codec), max_chunks=None)
    gen = streaming_factory(recipe(parts, codec), max_chunks=3)()
    gen.reset(1)
    gen.set_prompt("p")
    frames = [gen.next_chunk() for _ in range(3)]
    assert [f.shape[1] for f in frames] == [5, 8, 8] and frames[0].shape[-2:] == (16, 32)
    with pytest.raises(ValueError, match="max_chunks=3"):
        gen.next_chunk()
