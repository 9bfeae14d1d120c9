"""PickScore (Kirstain et al. 2023): a CLIP-H/14 fine-tuned on Pick-a-Pic human preferences.

Weights `yuvalkirstain/PickScore_v1` are a transformers `CLIPModel`; tokenizer and image processor come from
`laion/CLIP-ViT-H-14-laion2B-s32B-b79K`. Score as in the authors' code: `exp(logit_scale) * cos` (~20-23 for
typical images).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from rfvideo.rewards.clip_score import ClipSimilarityReward, Scale

__all__ = ["PICKSCORE_MODEL", "PICKSCORE_PROCESSOR", "PickScoreReward"]

PICKSCORE_MODEL = "yuvalkirstain/PickScore_v1"
PICKSCORE_PROCESSOR = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"


class PickScoreReward(ClipSimilarityReward):
    """PickScore per frame; build from objects like `ClipSimilarityReward` or with `from_pretrained`."""

    name = "pickscore"
    default_scale: Scale = "logit"

    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls,
        path_or_id: str | Path = PICKSCORE_MODEL,
        *,
        processor_path: str | Path | None = PICKSCORE_PROCESSOR,
        torch_dtype: torch.dtype = torch.float32,
        **kwargs: Any,
    ) -> PickScoreReward:
        """Load PickScore; both arguments accept a local directory (offline) or a hub id."""
        return super().from_pretrained(
            path_or_id, processor_path=processor_path, torch_dtype=torch_dtype, **kwargs
        )
