"""Decode overlapped with generation: the frames equal the sequential stream's bit for bit, decode of chunk i
really runs while chunk i + 1 is generated, errors propagate and an early stop does not hang.

Legend: `b` batch, `c` latent channels, `k` latent frames of a chunk, `h w` latent size, `F` pixel frames.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import torch

from rfvideo.decoders import decode_overlapped, decode_sequential
from test_decoders_tiny import tiny_tae

SPLIT = [3, 3, 1, 2]


def chunks(events: list[str] | None = None) -> Iterator[tuple[int, torch.Tensor]]:
    """A stand-in generator: chunk i's latents (1 c k h w) are drawn when the consumer asks for them."""
    gen = torch.Generator().manual_seed(0)
    for i, k in enumerate(SPLIT):
        if events is not None:
            events.append(f"gen {i}")
        yield i, torch.randn(1, 16, k, 2, 3, generator=gen)


@pytest.mark.parametrize("eager_first", [True, False])
def test_overlapped_frames_equal_sequential_stream(eager_first):
    model = tiny_tae()
    ref = list(decode_sequential(chunks(), model.stream_decoder()))
    out = list(decode_overlapped(chunks(), model.stream_decoder(), eager_first=eager_first))
    assert [i for i, _ in out] == list(range(len(SPLIT))) == [i for i, _ in ref]
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(out, ref))
    assert [f.shape[1] for _, f in out] == [4 * k - 3 if i == 0 else 4 * k for i, k in enumerate(SPLIT)]


class _Handshake:
    """A stream decoder whose decode of chunk i (i >= 1) finishes only once chunk i + 1 is being generated:
    without overlap it would wait forever (here: time out and fail)."""

    def __init__(self) -> None:
        self.generating = [threading.Event() for _ in range(len(SPLIT) + 1)]
        self.calls: list[tuple[int, str]] = []
        self.n = 0

    def __call__(self, latents: torch.Tensor, *, frame_offset: int | None = None) -> torch.Tensor:
        i, self.n = self.n, self.n + 1
        self.calls.append((i, threading.current_thread().name))
        if 1 <= i < len(SPLIT) - 1 and not self.generating[i + 1].wait(timeout=20):
            raise AssertionError(f"chunk {i + 1} was not generated while chunk {i} decoded")
        return latents.clone()

    def reset(self) -> None:
        self.n = 0

    def cache_bytes(self) -> int:
        return 0


def test_decode_of_chunk_i_runs_while_chunk_i_plus_1_is_generated():
    dec = _Handshake()

    def gen() -> Iterator[tuple[int, torch.Tensor]]:
        for i, z in chunks():
            dec.generating[i].set()
            yield i, z

    out = list(decode_overlapped(gen(), dec, eager_first=True))
    assert [i for i, _ in out] == [0, 1, 2, 3]
    assert [i for i, _ in dec.calls] == [0, 1, 2, 3]  # in order, one at a time
    assert all(name.startswith("rfvideo-decode") for _, name in dec.calls)


def test_errors_propagate_and_early_stop_returns():
    model = tiny_tae()

    def failing() -> Iterator[tuple[int, torch.Tensor]]:
        yield from list(chunks())[:2]
        raise RuntimeError("generator failed at chunk 2")

    with pytest.raises(RuntimeError, match="chunk 2"):
        list(decode_overlapped(failing(), model.stream_decoder()))
    bad = [(0, torch.randn(1, 16, 2, 2, 3)), (1, torch.randn(1, 4, 2, 2, 3))]  # wrong channels
    with pytest.raises(ValueError, match="c=16"):
        list(decode_overlapped(iter(bad), model.stream_decoder(), eager_first=False))
    it = decode_overlapped(chunks(), model.stream_decoder())
    assert next(it)[0] == 0
    it.close()  # waits for the running decode, no hang


@torch.no_grad()
def test_overlap_with_the_wan_vae_stream_equals_its_full_decode():
    from diffusers import AutoencoderKLWan

    from helpers import randomize_
    from rfvideo.models.vae import WanVAE

    torch.manual_seed(0)
    vae = AutoencoderKLWan(base_dim=4, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1)
    vae = WanVAE(randomize_(vae, torch.Generator().manual_seed(1), scale=0.1))
    parts = list(chunks())
    out = torch.cat([f for _, f in decode_overlapped(iter(parts), vae.stream_decoder())], 1)
    torch.testing.assert_close(out, vae.decode(torch.cat([z for _, z in parts], 2)), atol=1e-5, rtol=0)
