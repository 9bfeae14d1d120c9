"""What `rfvideo serve` builds from a pipeline: `streaming_factory` (fresh streams over one model, equal to a
directly built stream) and the prefix re-decoding stream decoder for VAEs without their own."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from rfvideo.demo.world.codec import PoolingVideoCodec
from rfvideo.pipeline import FewStepFlowScheduler, RFVideoPipeline
from rfvideo.serve.loading import streaming_factory
from rfvideo.streaming import StreamingGenerator
from test_serve_app import LATENT, SCHEDULE, encode_prompt, parts  # noqa: F401  (fixture)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)  # see test_serve_app.py


class CRCText(torch.nn.Module):
    """`TextEncoder.encode`'s contract over the serve tests' CRC-seeded embeddings."""

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        emb = encode_prompt(prompts)
        return emb, torch.ones(emb.shape[:2], dtype=torch.long)


def pipeline(parts: Any, vae: Any) -> RFVideoPipeline:  # noqa: F811
    return RFVideoPipeline(
        transformer=parts[0], vae=vae, scheduler=FewStepFlowScheduler.from_schedule(SCHEDULE),
        text_encoder=CRCText(), num_frames=5, height=8 * LATENT[0], width=8 * LATENT[1],
    )  # fmt: skip


def test_factory_streams_equal_a_direct_generator(parts: Any) -> None:  # noqa: F811
    make = streaming_factory(pipeline(parts, parts[1]), max_chunks=None)
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
        streaming_factory(pipeline(parts, codec), max_chunks=None)
    gen = streaming_factory(pipeline(parts, codec), max_chunks=3)()
    gen.reset(1)
    gen.set_prompt("p")
    frames = [gen.next_chunk() for _ in range(3)]
    assert [f.shape[1] for f in frames] == [5, 8, 8] and frames[0].shape[-2:] == (16, 32)
    with pytest.raises(ValueError, match="max_chunks=3"):
        gen.next_chunk()
