"""LAION improved aesthetic predictor (christophschuhmann/improved-aesthetic-predictor) as a reward.

CLIP ViT-L/14 image embedding (projected, 768-d), L2-normalised, then an MLP without activations:
Linear(768, 1024) Dropout(0.2) Linear(1024, 128) Dropout(0.2) Linear(128, 64) Dropout(0.1) Linear(64, 16)
Linear(16, 1). Its checkpoint (e.g. `sac+logos+ava1-l14-linearMSE.pth`) is a plain state dict with keys
`layers.{0,2,4,6,7}.{weight,bias}`; it loads with `torch.load(weights_only=True)`. Scores are on the
AVA 1-10 scale (VBench's aesthetic dimension uses the older single-Linear head and divides by 10).

Legend: `n` images, `d` CLIP embedding width (768 for ViT-L/14).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPModel

from rfvideo.rewards.base import FrameReward
from rfvideo.rewards.clip_score import CLIPImageProcessor, _features
from rfvideo.rewards.preprocess import ImagePreprocess

__all__ = ["AESTHETIC_CLIP", "AestheticMLP", "AestheticReward"]

AESTHETIC_CLIP = "openai/clip-vit-large-patch14"


class AestheticMLP(nn.Module):
    """The improved-aesthetic-predictor head; parameter names match its `.pth` (`layers.N.*`)."""

    def __init__(self, input_size: int = 768) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(input_size, 1024),
            nn.Dropout(0.2),
            nn.Linear(1024, 128),
            nn.Dropout(0.2),
            nn.Linear(128, 64),
            nn.Dropout(0.1),
            nn.Linear(64, 16),
            nn.Linear(16, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`(n d)` normalised embeddings -> `(n 1)` scores."""
        return self.layers(x)

    @classmethod
    def from_checkpoint(cls, path: str | Path, input_size: int = 768) -> AestheticMLP:
        """Load the `.pth` state dict (weights only, strict)."""
        state = torch.load(str(path), map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        head = cls(input_size)
        head.load_state_dict(state, strict=True)
        return head


class AestheticReward(FrameReward):
    """LAION aesthetic score per frame (AVA 1-10 scale).

    Args:
        clip: CLIP model whose projected image embedding feeds the head (ViT-L/14 for the released head).
        head: the aesthetic MLP.
        preprocess: CLIP image preprocessing (default: OpenAI CLIP's 224 bicubic, torchvision-placed centre
            crop, mean/std; what the predictor's reference code feeds its CLIP).
    """

    name = "aesthetic"

    def __init__(
        self, clip: CLIPModel, head: AestheticMLP, preprocess: ImagePreprocess | None = None
    ) -> None:
        super().__init__()
        if head.layers[0].in_features != clip.config.projection_dim:
            raise ValueError(
                f"head input {head.layers[0].in_features} != CLIP projection_dim {clip.config.projection_dim}"
            )
        self.clip = clip
        self.head = head
        self.preprocess = preprocess or ImagePreprocess(crop_offset="round")
        self.freeze()

    @classmethod
    def from_pretrained(
        cls,
        head_path: str | Path,
        clip_path_or_id: str | Path = AESTHETIC_CLIP,
        *,
        torch_dtype: torch.dtype = torch.float32,
        **kwargs: Any,
    ) -> AestheticReward:
        """Load the head `.pth` and the CLIP model + image processor (local directory or hub id)."""
        from rfvideo.models.hub import resolve_pretrained

        clip_path_or_id = resolve_pretrained(clip_path_or_id, what="aesthetic CLIP model")
        clip = CLIPModel.from_pretrained(str(clip_path_or_id), torch_dtype=torch_dtype, **kwargs)
        # The predictor's reference code preprocesses with OpenAI CLIP's torchvision transform: crop offsets
        # round like torchvision's CenterCrop, not like transformers' processor.
        preprocess = ImagePreprocess.from_processor(
            CLIPImageProcessor.from_pretrained(str(clip_path_or_id)), crop_offset="round"
        )
        head = AestheticMLP.from_checkpoint(head_path, clip.config.projection_dim).to(torch_dtype)
        return cls(clip, head, preprocess)

    def score_images(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        p = next(self.clip.parameters())
        pixels = self.preprocess(images.to(p.device)).to(p.dtype)
        emb = F.normalize(_features(self.clip.get_image_features(pixel_values=pixels)).float(), dim=-1)
        return self.head(emb.to(p.dtype)).squeeze(-1).float().to(images.device)
