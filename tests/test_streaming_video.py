"""`stream_video`: pixel frames per chunk equal the decode of `sample_chunkwise`'s video, and the first
frames wait only for the first chunk's denoising forwards and one decode.

Legend: `b` batch, `c` latent channels, `f` latent frames, `h w` latent height/width, `F` pixel frames.
"""

from __future__ import annotations

import pytest
import torch

from rfvideo.sampling import FlowMatchSchedule, sample_chunkwise
from rfvideo.streaming import stream_video
from streaming_helpers import LATENT, K, encode_prompt, tiny_model, tiny_vae

SCHED = FlowMatchSchedule()  # 4 steps


@pytest.fixture(scope="module")
def vae():
    return tiny_vae()


def _noise(chunks: int, b: int = 2, seed: int = 3) -> torch.Tensor:
    return torch.randn(b, 4, K * chunks, *LATENT, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("causal", [{}, {"local_attn_size": 5, "sink_size": 1, "rope_mode": "relative"}])
def test_frames_equal_decode_of_sample_chunkwise(vae, causal) -> None:
    model = tiny_model(**causal)
    noise, emb = _noise(4), encode_prompt(["a red fox", "rain on a lake"])
    ref = sample_chunkwise(model, noise, emb, schedule=SCHED, generator=torch.Generator().manual_seed(9))
    ref_video = vae.decode(ref)
    chunks = list(
        stream_video(model, vae, noise, emb, schedule=SCHED, generator=torch.Generator().manual_seed(9))
    )
    assert [i for i, _ in chunks] == [0, 1, 2, 3]
    # chunk 0: 1 + 4 (K - 1) pixel frames, later chunks 4 K
    assert [c.shape[1] for _, c in chunks] == [1 + 4 * (K - 1)] + [4 * K] * 3
    video = torch.cat([c for _, c in chunks], dim=1)
    assert video.shape == ref_video.shape == (2, 1 + 4 * (4 * K - 1), 3, 16, 16)
    assert (video - ref_video).abs().max() <= 1e-5
    assert ref_video.std() > 1e-3


def test_first_frames_after_denoising_forwards_and_one_decode(vae) -> None:
    """Chunk 0's pixels need its 4 denoising forwards and one decode; its context pass runs afterwards."""
    model = tiny_model()
    events: list[str] = []
    model.register_forward_hook(lambda *_: events.append("forward"))
    decoder_calls = vae.vae.decoder.register_forward_hook(lambda *_: events.append("decode_frame"))
    try:
        it = stream_video(model, vae, _noise(3, b=1), encode_prompt(["a red fox"]), schedule=SCHED)
        next(it)
        # one streamed decode of a K-frame chunk = K causal decoder steps, after exactly the 4 forwards
        assert events == ["forward"] * SCHED.num_steps + ["decode_frame"] * K
        events.clear()
        next(it)
        # chunk 1: chunk 0's deferred context pass, then its own denoising forwards, then its decode
        assert events == ["forward"] * (1 + SCHED.num_steps) + ["decode_frame"] * K
    finally:
        decoder_calls.remove()


def test_history_decoder_fallback_equals_decode(vae) -> None:
    """A VAE without `stream_decoder` (e.g. the demo codec) streams through `decode_last` on the history."""
    from rfvideo.streaming import HistoryStreamDecoder, stream_decoder_for

    assert not isinstance(stream_decoder_for(vae), HistoryStreamDecoder)
    lat = torch.randn(1, 4, 5, *LATENT, generator=torch.Generator().manual_seed(4))  # (b c f h w)
    decoder = HistoryStreamDecoder(vae)
    parts = [
        decoder(lat[:, :, :2], frame_offset=0),
        decoder(lat[:, :, 2:3]),
        decoder(lat[:, :, 3:], frame_offset=3),
    ]
    assert [p.shape[1] for p in parts] == [5, 4, 8]
    assert (torch.cat(parts, 1) - vae.decode(lat)).abs().max() <= 1e-5
    with pytest.raises(ValueError, match="frame_offset=2"):
        decoder(lat[:, :, :1], frame_offset=2)
