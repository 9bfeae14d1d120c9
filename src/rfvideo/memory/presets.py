"""Published model configs for `estimate-memory` when a config's model folders are not downloaded yet.

Only `config.json`-level numbers (no weights): enough to build each model on the meta device.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PRESETS"]

_WAN21_T2V_1_3B: dict[str, Any] = {
    # Wan-AI/Wan2.1-T2V-1.3B-Diffusers transformer/config.json
    "transformer": {
        "_class_name": "WanTransformer3DModel", "patch_size": [1, 2, 2], "num_attention_heads": 12,
        "attention_head_dim": 128, "in_channels": 16, "out_channels": 16, "text_dim": 4096, "freq_dim": 256,
        "ffn_dim": 8960, "num_layers": 30, "cross_attn_norm": True, "qk_norm": "rms_norm_across_heads",
        "eps": 1e-6, "image_dim": None, "added_kv_proj_dim": None, "rope_max_seq_len": 1024,
    },
    # vae/config.json: diffusers' AutoencoderKLWan defaults are Wan2.1's VAE
    "vae": {"_class_name": "AutoencoderKLWan"},
    # text_encoder/config.json: the umT5-XXL encoder
    "text_encoder": {
        "model_type": "umt5", "architectures": ["UMT5EncoderModel"], "d_model": 4096, "d_ff": 10240,
        "d_kv": 64, "num_heads": 64, "num_layers": 24, "vocab_size": 256384,
        "feed_forward_proj": "gated-gelu", "relative_attention_num_buckets": 32,
        "relative_attention_max_distance": 128, "tie_word_embeddings": False,
    },
    # ImageReward v1.0's med_config.json (BLIP's BERT-base with cross-attention)
    "image_reward_med_config": {
        "vocab_size": 30524, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
        "intermediate_size": 3072, "max_position_embeddings": 512, "add_cross_attention": True,
    },
}  # fmt: skip

PRESETS: dict[str, dict[str, Any]] = {"wan2.1-t2v-1.3b": _WAN21_T2V_1_3B}
