"""models/tiny.py: the one table of small model sizes. The "tiny" flavour is the tests' model as written
out by hand before the table existed, the builder builds exactly the table's model, the real-size flavour
is Wan2.1-T2V-1.3B's, and an unknown flavour is named in the error."""

from __future__ import annotations

import pytest
import torch

from rfvideo.models import CausalWanTransformer
from rfvideo.models.tiny import WAN_FLAVOURS, tiny_causal_wan, wan_config


def test_tiny_flavour_is_the_tests_hand_written_config() -> None:
    # the literal tests/helpers.tiny_wan_config held before the table: every reference output depends on it
    assert wan_config("tiny") == dict(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4,
        text_dim=24, freq_dim=32, ffn_dim=64, num_layers=2, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024,
    )  # fmt: skip
    assert wan_config("tiny", num_layers=1)["num_layers"] == 1 and wan_config("tiny")["num_layers"] == 2


def test_builder_builds_the_tables_model_with_its_seed() -> None:
    torch.manual_seed(7)
    want = CausalWanTransformer(**wan_config("tiny16", ffn_dim=32), num_frames_per_chunk=3)
    got = tiny_causal_wan(flavour="tiny16", ffn_dim=32, num_frames_per_chunk=3, seed=7)
    assert got.config.in_channels == got.config.out_channels == 16 and got.config.ffn_dim == 32
    sd_want, sd_got = want.state_dict(), got.state_dict()
    assert sd_want.keys() == sd_got.keys() and all(torch.equal(sd_want[k], sd_got[k]) for k in sd_want)
    other = tiny_causal_wan(flavour="tiny16", ffn_dim=32, num_frames_per_chunk=3, seed=8)
    assert not torch.equal(other.proj_out.weight, got.proj_out.weight)


@pytest.mark.parametrize("flavour", sorted(WAN_FLAVOURS))
def test_every_flavour_builds_and_splits_the_head_for_rope(flavour: str) -> None:
    with torch.device("meta"):
        model = CausalWanTransformer(**wan_config(flavour))
    d = model.config.attention_head_dim
    assert d - 4 * (d // 6) > 0  # Wan's RoPE split: t = d - 2 h, h = w = 2 (d // 6)
    if flavour == "wan2.1-1.3b":  # the published transformer: 1.3 B parameters
        assert 1.2e9 < sum(p.numel() for p in model.parameters()) < 1.5e9


def test_unknown_flavour_is_named() -> None:
    with pytest.raises(ValueError, match="'huge'"):
        wan_config("huge")
    with pytest.raises(ValueError, match="'huge'"):
        tiny_causal_wan(flavour="huge")
