"""Published model sizes for `estimate-memory` when a config's model folders are not downloaded yet.

Only `config.json`-level numbers (no weights): enough to build each model on the meta device. The
generator's numbers are the "wan2.1-1.3b" flavour of `rfvideo.models.tiny.WAN_FLAVOURS` (one table of model
sizes); the frozen parts' live here. Named `MODEL_SIZES`, not presets: an inference preset
(`rfvideo.pipeline.presets.PRESETS`) is a different thing (a schedule and causal options).
"""

from __future__ import annotations

from typing import Any

from rfvideo.models.tiny import wan_config

__all__ = ["MODEL_SIZES"]

_WAN21_T2V_1_3B: dict[str, Any] = {
    # Wan-AI/Wan2.1-T2V-1.3B-Diffusers transformer/config.json
    "transformer": {
        "_class_name": "WanTransformer3DModel", **wan_config("wan2.1-1.3b"), "image_dim": None,
        "added_kv_proj_dim": None,
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

#: Model sizes by the name `estimate-memory --preset` takes.
MODEL_SIZES: dict[str, dict[str, Any]] = {"wan2.1-t2v-1.3b": _WAN21_T2V_1_3B}
