"""Chunk-wise sampler and training rollout vs a naive reference that recomputes the whole prefix.

Each test runs on two generators that follow docs/interfaces.md "Generator": a toy causal model defined
here (mean-pooled attention over visible frames: makes the sampler's bookkeeping checkable on its own),
and `rfvideo.models.CausalWanTransformer` on a tiny random config when it is importable.
Legend: `b` batch, `c` channels, `f` latent frames, `k` frames per chunk, `h w` latent height/width.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rfvideo.sampling import FlowMatchSchedule, add_noise, rollout, sample_chunkwise, stream_chunks

K = 3  # frames per chunk


class ToyCache:
    def __init__(self):
        self.slots: dict[int, torch.Tensor] = {}

    def reset(self):
        self.slots.clear()

    def before(self, offset: int, like: torch.Tensor) -> torch.Tensor:
        kept = [self.slots[o] for o in sorted(self.slots) if o < offset]
        return torch.cat(kept, 1) if kept else like[:, :0]


class ToyCausal(nn.Module):
    """v = tanh(W x + mean of visible frames' values + text); values depend on each frame and its t."""

    def __init__(self, c: int = 4, d: int = 24):
        super().__init__()
        self.num_frames_per_chunk = K
        self.inp = nn.Linear(c, c)
        self.val = nn.Linear(c + 1, c)
        self.txt = nn.Linear(d, c)

    def new_kv_cache(self, batch_size, device=None, dtype=None):
        return ToyCache()

    def forward(self, x, t, ehs, attention_mode="full", kv_cache=None, frame_offset=None, write_cache=False):
        b, c, f, h, w = x.shape
        t = t[:, None].expand(b, f) if t.ndim == 1 else t
        vals = self.val(torch.cat([x.mean((3, 4)).transpose(1, 2), t[..., None] / 1000], -1))  # b f c
        if attention_mode == "block_causal":
            chunk = torch.arange(f) // K
            mask = (chunk[None, :] <= chunk[:, None]).float()
            ctx = (mask @ vals) / mask.sum(1, keepdim=True)
        elif attention_mode == "cached":
            seen = torch.cat([kv_cache.before(frame_offset, vals), vals], 1)
            ctx = seen.mean(1, keepdim=True).expand(b, f, c)
            if write_cache:
                kv_cache.slots[frame_offset] = vals.detach()
        else:
            raise NotImplementedError(attention_mode)
        ctx = ctx + self.txt(ehs.mean(1))[:, None]
        return torch.tanh(self.inp(x.movedim(1, -1)).movedim(-1, 1) + ctx.transpose(1, 2)[..., None, None])


def _causal_wan(**window):
    models = pytest.importorskip("rfvideo.models")
    if not hasattr(models, "CausalWanTransformer"):
        pytest.skip("rfvideo.models.CausalWanTransformer not available yet")
    from helpers import randomize_, tiny_wan_config

    model = models.CausalWanTransformer(**tiny_wan_config(), num_frames_per_chunk=K, **window)
    return randomize_(model, torch.Generator().manual_seed(0)).eval()


@pytest.fixture(params=["toy", "causal_wan", "causal_wan_window_sink"])
def model(request):
    if request.param == "toy":
        torch.manual_seed(0)
        return ToyCausal()
    if request.param == "causal_wan":
        return _causal_wan()
    # Rolling cache of long videos: 1 sink frame + 5 recent frames, so chunk 2 already evicts frames.
    return _causal_wan(local_attn_size=6, sink_size=1)


def _inputs(b=2, chunks=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 4, K * chunks, 8, 8, generator=g), torch.randn(b, 5, 24, generator=g)


def naive_reference(model, noise, ehs, sched, generator, exits=None):
    """Recompute the whole clean prefix with one block_causal forward for every chunk and step.

    Returns the clean chunks and, per chunk, the noisy input of its last (exit) step.
    """
    b, f = noise.shape[0], noise.shape[2]
    sigmas, ts = sched.sigmas.tolist(), sched.timesteps.tolist()
    outs, exit_inputs = [], []
    for i in range(f // K):
        x = noise[:, :, i * K : (i + 1) * K]
        last = sched.num_steps - 1 if exits is None else exits[i]
        for j in range(last + 1):
            prefix = torch.cat([*outs, x], 2)
            t = torch.cat([torch.zeros(b, i * K), torch.full((b, K), ts[j])], 1)
            v = model(prefix, t, ehs, attention_mode="block_causal")[:, :, -K:]
            x0 = x - sigmas[j] * v
            if j < last:
                x = add_noise(x0, torch.randn(x0.shape, generator=generator), sigmas[j + 1])
        outs.append(x0)
        exit_inputs.append(x)
    return outs, exit_inputs


def _count_forwards(model):
    record = []
    handle = model.register_forward_hook(
        lambda m, a, kw, out: record.append(torch.is_grad_enabled()), with_kwargs=True
    )
    return record, handle


def test_sample_chunkwise_matches_naive_prefix_recompute(model):
    noise, ehs = _inputs()
    sched = FlowMatchSchedule()
    out = sample_chunkwise(model, noise, ehs, schedule=sched, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        ref, _ = naive_reference(model, noise, ehs, sched, torch.Generator().manual_seed(7))
    assert out.shape == noise.shape
    torch.testing.assert_close(out, torch.cat(ref, 2), atol=1e-5, rtol=1e-5)
    # The re-noising draws matter: another generator seed gives another video.
    other = sample_chunkwise(model, noise, ehs, schedule=sched, generator=torch.Generator().manual_seed(8))
    assert not torch.allclose(other, out)


def test_stream_chunks_yields_the_same_latents_as_soon_as_ready(model):
    noise, ehs = _inputs()
    sched = FlowMatchSchedule()
    full = sample_chunkwise(model, noise, ehs, schedule=sched, generator=torch.Generator().manual_seed(3))
    calls, handle = _count_forwards(model)
    stream = stream_chunks(model, noise, ehs, schedule=sched, generator=torch.Generator().manual_seed(3))
    i0, c0 = next(stream)
    # Chunk 0 is yielded after its 4 steps, before its context pass (which runs on the next resume).
    assert (i0, len(calls)) == (0, sched.num_steps)
    i1, c1 = next(stream)
    assert (i1, len(calls)) == (1, 2 * sched.num_steps + 1)
    rest = [(i1, c1), *stream]
    handle.remove()
    assert len(calls) == 3 * (sched.num_steps + 1)
    assert [i for i, _ in rest] == [1, 2]
    torch.testing.assert_close(torch.cat([c0, *[c for _, c in rest]], 2), full, atol=0, rtol=0)
    assert not any(calls)  # inference runs without autograd


@pytest.mark.parametrize("exit_step", [0, 2])
def test_rollout_values_and_gradients_only_through_exit_step(model, exit_step):
    noise, ehs = _inputs(chunks=3)
    sched = FlowMatchSchedule()
    calls, handle = _count_forwards(model)
    out = rollout(model, noise, ehs, schedule=sched, generator=torch.Generator().manual_seed(5),
                  exit_step=exit_step, grad_from_chunk=2)  # fmt: skip
    handle.remove()
    # Chunks 0-1 fully no_grad; chunk 2: exactly one grad-enabled forward (its exit step).
    assert sum(calls) == 1
    assert len(calls) == 3 * (exit_step + 1) + 3  # steps up to the exit + one context pass per chunk
    assert out.exit_steps == (exit_step,) * 3
    torch.testing.assert_close(out.exit_timesteps, sched.timesteps[[exit_step] * 3])
    assert [c.requires_grad for c in out.chunks] == [False, False, True]
    assert out.chunks[0].grad_fn is None and out.chunks[1].grad_fn is None

    model.zero_grad()
    weight = torch.randn(out.latents[:, :, 2 * K :].shape, generator=torch.Generator().manual_seed(1))
    (out.latents[:, :, 2 * K :] * weight).sum().backward()
    ours = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    # Hand-built: the exit-step forward alone, on a cache filled (no grad) with the reference's clean
    # chunks 0-1 and the reference's noisy input of chunk 2's exit step.
    with torch.no_grad():
        ref, exit_inputs = naive_reference(
            model, noise, ehs, sched, torch.Generator().manual_seed(5), [exit_step] * 3
        )
    torch.testing.assert_close(out.latents.detach(), torch.cat(ref, 2), atol=1e-5, rtol=1e-5)
    cache = model.new_kv_cache(2, device=noise.device, dtype=noise.dtype)
    with torch.no_grad():
        for i in range(2):
            model(ref[i], torch.zeros(2, K), ehs, attention_mode="cached", kv_cache=cache, frame_offset=i * K,
                  write_cache=True)  # fmt: skip
    model.zero_grad()
    t = torch.full((2, K), float(sched.timesteps[exit_step]))
    v = model(exit_inputs[2], t, ehs, attention_mode="cached", kv_cache=cache, frame_offset=2 * K)
    x0 = exit_inputs[2] - float(sched.sigmas[exit_step]) * v
    torch.testing.assert_close(out.chunks[2].detach(), x0.detach(), atol=1e-5, rtol=1e-5)
    (x0 * weight).sum().backward()
    theirs = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert ours.keys() == theirs.keys() and len(ours) > 0
    for n in ours:
        torch.testing.assert_close(ours[n], theirs[n], atol=1e-5, rtol=1e-4, msg=n)


def test_rollout_all_chunks_backward_without_inplace_errors(model):
    noise, ehs = _inputs(b=1, chunks=3)
    sched = FlowMatchSchedule()
    out = rollout(model, noise, ehs, schedule=sched, generator=torch.Generator().manual_seed(0),
                  exit_generator=torch.Generator().manual_seed(11), exit_per_chunk=True)  # fmt: skip
    assert all(c.requires_grad for c in out.chunks)
    out.latents.square().mean().backward()  # raises if the cache wrote into a tensor saved for backward
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    # Exit step = last step for every chunk: the rollout is the inference sampler.
    full = rollout(model, noise, ehs, schedule=sched, generator=torch.Generator().manual_seed(0), exit_step=3)
    ref = sample_chunkwise(model, noise, ehs, schedule=sched, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(full.latents.detach(), ref, atol=1e-6, rtol=1e-6)


def test_rollout_exit_steps_follow_the_exit_generator():
    model, (noise, ehs), sched = ToyCausal(), _inputs(b=1, chunks=4), FlowMatchSchedule()
    run = lambda seed, **kw: (
        rollout(
            model, noise, ehs, schedule=sched, exit_generator=torch.Generator().manual_seed(seed), **kw
        ).exit_steps
    )
    assert run(123) == run(123)
    assert len(set(run(123))) == 1  # one shared exit step per iteration by default
    per_chunk = {run(s, exit_per_chunk=True) for s in range(8)}
    assert len(per_chunk) > 1 and all(0 <= e < 4 for steps in per_chunk for e in steps)
    assert {run(s)[0] for s in range(16)} == {0, 1, 2, 3}
    # An explicit exit step wins over the generator.
    assert run(123, exit_step=[1, 0, 3, 2]) == (1, 0, 3, 2)


def test_bad_inputs_raise_value_errors():
    model, sched = ToyCausal(), FlowMatchSchedule()
    noise, ehs = _inputs(b=2, chunks=2)
    with pytest.raises(ValueError, match="f=5 must be a positive multiple of num_frames_per_chunk=3"):
        sample_chunkwise(model, noise[:, :, :5], ehs, schedule=sched)
    with pytest.raises(ValueError, match="noise has batch 2, encoder_hidden_states has batch 1"):
        sample_chunkwise(model, noise, ehs[:1], schedule=sched)
    with pytest.raises(ValueError, match="noise has batch 2, encoder_hidden_states has batch 3"):
        rollout(model, noise, torch.cat([ehs, ehs[:1]]), schedule=sched, exit_step=0)
    with pytest.raises(ValueError, match="exit_step or exit_generator"):
        rollout(model, noise, ehs, schedule=sched)
    with pytest.raises(ValueError, match=r"exit steps \(4, 4\)"):
        rollout(model, noise, ehs, schedule=sched, exit_step=4)
    with pytest.raises(ValueError, match="grad_from_chunk=3"):
        rollout(model, noise, ehs, schedule=sched, exit_step=0, grad_from_chunk=3)
    with pytest.raises(ValueError, match="exit_step has 3 entries"):
        rollout(model, noise, ehs, schedule=sched, exit_step=[0, 1, 2])


def test_absolute_rope_stream_past_the_table_raises_before_the_chunk_runs():
    from helpers import randomize_, tiny_wan_config
    from rfvideo.models import CausalWanTransformer

    model = CausalWanTransformer(**tiny_wan_config(rope_max_seq_len=8), num_frames_per_chunk=K)
    model = randomize_(model, torch.Generator().manual_seed(0)).eval()
    noise, ehs = _inputs(b=1, chunks=3)
    blocks_run = []
    handle = model.blocks[0].register_forward_pre_hook(lambda m, a: blocks_run.append(1))
    stream = stream_chunks(model, noise, ehs, schedule=FlowMatchSchedule())
    assert [next(stream)[0], next(stream)[0]] == [0, 1]
    ran = len(blocks_run)
    with pytest.raises(ValueError, match=r"latent frame 8 is past the RoPE table \(rope_max_seq_len=8\)"):
        next(stream)
    handle.remove()
    assert len(blocks_run) == ran + 1  # chunk 1's context pass ran; chunk 2 never reached a block
