"""Compiled cached inference (`rfvideo.sampling.compile_cached`) equals eager on a tiny random model.

Legend: `b` batch, `c` channels, `f` latent frames, `h w` latent height/width, `n d` text tokens / width.
"""

from __future__ import annotations

import pytest
import torch

from helpers import randomize_, tiny_wan_config
from rfvideo.models import CausalWanTransformer
from rfvideo.sampling import FlowMatchSchedule, sample_chunkwise
from rfvideo.sampling.compile import compile_cached, uncompile


def _model(**causal):
    model = CausalWanTransformer(**tiny_wan_config(), num_frames_per_chunk=3, **causal)
    return randomize_(model, torch.Generator().manual_seed(0)).eval()


@pytest.mark.slow
@pytest.mark.parametrize("causal", [{}, {"local_attn_size": 6, "sink_size": 1, "rope_mode": "relative"}])
def test_compiled_sampler_equals_eager(causal):
    model = _model(**causal)
    g = torch.Generator().manual_seed(1)
    noise, text = torch.randn(1, 4, 12, 8, 8, generator=g), torch.randn(1, 5, 24, generator=g)
    sched = FlowMatchSchedule()
    eager = sample_chunkwise(model, noise, text, schedule=sched, generator=torch.Generator().manual_seed(2))
    compile_cached(model)
    assert "self_attention_qkv" in vars(model.blocks[0])
    try:
        compiled = sample_chunkwise(
            model, noise, text, schedule=sched, generator=torch.Generator().manual_seed(2)
        )
    finally:
        uncompile(model)
    torch.testing.assert_close(compiled, eager, atol=1e-4, rtol=1e-4)
    assert "self_attention_qkv" not in vars(model.blocks[0])
    again = sample_chunkwise(model, noise, text, schedule=sched, generator=torch.Generator().manual_seed(2))
    assert torch.equal(again, eager)


def test_bad_backend_and_failing_compiler_raise_clear_errors():
    model = _model()
    with pytest.raises(ValueError, match="unknown torch.compile backend 'nope'"):
        compile_cached(model, backend="nope")
    with pytest.raises(ValueError, match="mode must be one of"):
        compile_cached(model, mode="fastest")

    def broken(gm, example_inputs):  # noqa: ANN001, ANN202 - torch.compile backend signature
        raise OSError("no C compiler found")

    with pytest.raises(RuntimeError, match="cannot compile on cpu: .*no C compiler found"):
        compile_cached(model, backend=broken)
    assert "self_attention_qkv" not in vars(model.blocks[0])  # nothing was swapped in
