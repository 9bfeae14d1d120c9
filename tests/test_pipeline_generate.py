"""`RFVideoPipeline.__call__` against the path it replaced (the chunk-wise sampler + one full decode, which
`VideoGeneratorModule.generate` ran), bit for bit, in three cache modes; `stream` against `__call__`; the
callback contract; bad input before any work.

Legend: `b` videos, `c` latent channels, `f` latent frames, `h w` latent size, `F` pixel frames.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rfvideo.pipeline import FewStepFlowScheduler, RFVideoPipeline
from rfvideo.sampling import FlowMatchSchedule, stream_chunks
from streaming_helpers import LATENT, K, encode_prompt, tiny_model, tiny_vae

MODES = {
    "global": {},
    "window+sinks": {"local_attn_size": 5, "sink_size": 1},
    "relative": {"local_attn_size": 5, "sink_size": 1, "rope_mode": "relative"},
}
SCHED = FlowMatchSchedule(denoising_steps=(1000, 750, 500))


class FakeTextEncoder(torch.nn.Module):
    """The streaming tests' CRC-seeded embeddings behind `TextEncoder.encode`'s contract (all tokens real)."""

    tokenizer = None
    max_length = 5
    cache_size = 0

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        emb = encode_prompt(prompts)
        return emb, torch.ones(emb.shape[:2], dtype=torch.long)


def make_pipe(mode: str, seed: int = 0) -> RFVideoPipeline:
    return RFVideoPipeline(
        transformer=tiny_model(seed, **MODES[mode]),
        vae=tiny_vae(),
        scheduler=FewStepFlowScheduler.from_schedule(SCHED),
        text_encoder=FakeTextEncoder(),
        num_frames=1 + 4 * (3 * K - 1),
        height=8 * LATENT[0],
        width=8 * LATENT[1],
    )


def old_generate(pipe: RFVideoPipeline, prompt: str, seed: int, f: int) -> torch.Tensor:
    """What `VideoGeneratorModule.generate` ran before the pipeline, written out (one video)."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(1, 4, f, *LATENT, generator=g)
    emb = encode_prompt([prompt])
    chunks = [c for _, c in stream_chunks(pipe.transformer, noise, emb, schedule=SCHED, generator=g)]
    return pipe.vae.decode(torch.cat(chunks, dim=2)).float().clamp(0, 1)


@pytest.mark.parametrize("mode", list(MODES))
def test_call_equals_the_path_it_replaced_bit_for_bit(mode: str) -> None:
    pipe = make_pipe(mode)
    f = 4 * K  # past the window of 5 frames: the cache rolls
    prompts, seeds = ["a red fox", "a snowy owl"], [3, 4]
    out = pipe(
        prompts,
        num_frames=1 + 4 * (f - 1),
        generator=[torch.Generator().manual_seed(s) for s in seeds],
        output_type="pt",
        progress=False,
    )
    assert out.frames.shape == (2, 1 + 4 * (f - 1), 3, 8 * LATENT[0], 8 * LATENT[1])
    for i, (p, s) in enumerate(zip(prompts, seeds, strict=True)):
        assert torch.equal(out.frames[i : i + 1], old_generate(pipe, p, s, f))
    t = out.timings
    assert t.pixel_frames == 1 + 4 * (f - 1) and t.denoise_s > 0 and t.decode_s > 0 and t.text_s > 0
    assert t.first_frame_s >= t.text_s + t.denoise_s + t.decode_s and t.model_fps > t.end_to_end_fps


def test_global_rng_untouched_and_single_generator_batches() -> None:
    pipe = make_pipe("global")
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = pipe("a red fox", generator=torch.Generator().manual_seed(1), output_type="pt", progress=False)
    b = pipe("a red fox", generator=torch.Generator().manual_seed(1), output_type="pt", progress=False)
    pipe("a red fox", output_type="latent", progress=False)  # generator=None: OS entropy, not the global RNG
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a.frames, b.frames)
    # one generator for a batch of two: one noise draw for both (reproducible), two different videos
    two = [
        pipe(
            "a red fox",
            num_videos_per_prompt=2,
            generator=torch.Generator().manual_seed(1),
            output_type="latent",
        )
        for _ in range(2)
    ]
    assert (
        torch.equal(two[0].frames, two[1].frames) and (two[0].frames[1] - two[0].frames[0]).abs().max() > 1e-3
    )


def test_output_types_and_latents_argument() -> None:
    pipe = make_pipe("global")
    g = lambda: torch.Generator().manual_seed(2)  # noqa: E731
    pt = pipe("a red fox", generator=g(), output_type="pt", progress=False).frames
    arr = pipe("a red fox", generator=g(), output_type="np", progress=False).frames
    pil = pipe("a red fox", generator=g(), output_type="pil", progress=False).frames
    lat = pipe("a red fox", generator=g(), output_type="latent", progress=False).frames
    (tup,) = pipe("a red fox", generator=g(), output_type="pt", return_dict=False, progress=False)
    assert isinstance(arr, np.ndarray) and arr.shape == (1, pt.shape[1], pt.shape[3], pt.shape[4], 3)
    np.testing.assert_array_equal(arr[0], pt[0].permute(0, 2, 3, 1).numpy())
    assert len(pil) == 1 and len(pil[0]) == pt.shape[1] and pil[0][0].size == (pt.shape[4], pt.shape[3])
    assert lat.shape == (1, 4, 3 * K, *LATENT) and torch.equal(tup, pt)
    assert torch.equal(pipe.decode_latents(lat), pt)
    # given initial noise = the noise the generator would draw: the same video
    noise = torch.randn(1, 4, 3 * K, *LATENT, generator=g())
    gen = g()
    torch.randn(noise.shape, generator=gen)  # advance past the initial draw, as __call__ does
    again = pipe("a red fox", latents=noise, generator=gen, output_type="pt", progress=False).frames
    assert torch.equal(again, pt)


def test_stream_equals_call() -> None:
    pipe = make_pipe("relative")
    num_frames = 1 + 4 * (4 * K - 1)
    call = pipe(
        "a red fox", num_frames=num_frames, generator=torch.Generator().manual_seed(5), output_type="pt"
    )
    stream = pipe.stream("a red fox", num_frames=num_frames, generator=torch.Generator().manual_seed(5))
    chunks = list(stream)
    assert len(chunks) == 4 and stream.chunk_index == 4
    assert (torch.cat(chunks, dim=1) - call.frames).abs().max() <= 1e-5
    t = stream.timings
    assert t.pixel_frames == num_frames and t.first_frame_s is not None and t.text_s > 0
    assert t.first_frame_s <= t.text_s + t.denoise_s + t.decode_s + 1.0


def test_callback_replaces_latents_as_diffusers_contract_says() -> None:
    pipe = make_pipe("global")
    calls: list[tuple[int, int, float]] = []

    def record(p, i, t, kwargs):
        calls.append((p.current_chunk, i, t))
        assert set(kwargs) == {"latents"} and kwargs["latents"].shape == (1, 4, K, *LATENT)
        return {}

    base = pipe("a red fox", generator=torch.Generator().manual_seed(0), output_type="latent", progress=False)
    same = pipe(
        "a red fox",
        generator=torch.Generator().manual_seed(0),
        output_type="latent",
        callback_on_step_end=record,
        progress=False,
    )
    assert torch.equal(base.frames, same.frames)  # a callback that returns nothing changes nothing
    steps = SCHED.num_steps
    assert [c[1] for c in calls] == list(range(3 * steps)) and [c[0] for c in calls[::steps]] == [0, 1, 2]
    assert [c[2] for c in calls[:steps]] == pytest.approx([float(t) for t in SCHED.timesteps])

    def zero_last_chunk_output(p, i, t, kwargs):
        if p.current_chunk == 2 and i % steps == steps - 1:
            return {"latents": torch.zeros_like(kwargs["latents"])}
        return {}

    edited = pipe(
        "a red fox",
        generator=torch.Generator().manual_seed(0),
        output_type="latent",
        callback_on_step_end=zero_last_chunk_output,
        progress=False,
    ).frames
    # the returned tensor replaced the chunk's output; earlier chunks are untouched
    assert torch.equal(edited[:, :, : 2 * K], base.frames[:, :, : 2 * K])
    assert edited[:, :, 2 * K :].abs().max() == 0


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"prompt": ""}, "prompt 0 must be a non-empty string"),
        ({"prompt": ["ok", "  "]}, "prompt 1"),
        ({"prompt": "a", "num_frames": 10}, "num_frames=10"),
        (
            {"prompt": "a", "num_frames": 9},
            "num_frames=9 is 3 latent frames, not a multiple of the chunk size 2",
        ),
        ({"prompt": "a", "height": 12}, "height=12"),
        ({"prompt": "a", "output_type": "gif"}, "output_type='gif'"),
        ({"prompt": None}, "exactly one of prompt and prompt_embeds"),
        ({"prompt": "a", "generator": [torch.Generator(), torch.Generator()]}, "2 generators for 1 videos"),
        (
            {"prompt": "a", "latents": torch.zeros(1, 4, 1, 2, 2)},
            r"latents must have shape \(1, 4, 6, 2, 2\)",
        ),
        ({"prompt": "a", "callback_on_step_end_tensor_inputs": ["noise"]}, "noise"),
    ],
)
def test_bad_input_is_one_line_before_any_work(kwargs: dict, match: str) -> None:
    pipe = make_pipe("global")
    pipe.encode_prompt = None  # any work (encoding the prompt first) would fail differently
    with pytest.raises(ValueError, match=match) as e:
        pipe(**kwargs)
    assert "\n" not in str(e.value)
