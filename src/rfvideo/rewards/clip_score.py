"""CLIP text-image similarity rewards on transformers' `CLIPModel` (plain CLIP; base of PickScore and HPS).

    reward(image, prompt) = scale * cos(E_img(preprocess(image)), E_txt(tokenize(prompt)))

`scale` is "cosine" (1: the raw cosine, CLIP score / 100 without the clamp at 0, HPSv2's convention) or
"logit" (`exp(logit_scale)`, ~100 for trained CLIP: the model's own `logits_per_image`, PickScore's
convention). Image embeddings carry gradients to the pixels; text embeddings do not (prompts are data) and
are computed once per distinct prompt in a call. `preprocess` is any differentiable `(n 3 H W) -> model
input` callable (a centre crop like transformers' processor, or HPSv2's letterbox); `text_clean` optionally
rewrites each prompt before the tokenizer (HPSv2: open_clip's ftfy / HTML-unescape cleaning).
In transformers >= 5 `get_image_features` / `get_text_features` return an output object whose
`pooler_output` is the *projected* embedding.

Legend: `n` images, `H W` pixel size, `d` joint embedding width, `t` tokens.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from transformers import AutoTokenizer, CLIPModel

try:  # transformers >= 5 without torchvision: the PIL processor (same settings, no fallback warning)
    from transformers import CLIPImageProcessorPil as CLIPImageProcessor
except ImportError:  # transformers 4
    from transformers import CLIPImageProcessor

from rfvideo.rewards.base import FrameReward
from rfvideo.rewards.preprocess import ImagePreprocess

__all__ = ["CLIPImageProcessor", "ClipScoreReward", "ClipSimilarityReward", "load_clip_processing"]

Scale = Literal["cosine", "logit"]
#: Differentiable `(n 3 H W)` in [0, 1] -> `(n 3 h w)` model input.
Preprocess = Callable[[torch.Tensor], torch.Tensor]


def _features(out: Any) -> torch.Tensor:
    """transformers 5 returns an output object (projected `pooler_output`); older versions a tensor."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def load_clip_processing(path_or_id: str | Path, **kwargs: Any) -> tuple[Any, ImagePreprocess]:
    """Tokenizer and differentiable image preprocessing from a CLIP processor directory or hub id."""
    from rfvideo.models.hub import resolve_pretrained

    path_or_id = resolve_pretrained(path_or_id, what="CLIP tokenizer / processor")
    tokenizer = AutoTokenizer.from_pretrained(str(path_or_id), **kwargs)
    processor = CLIPImageProcessor.from_pretrained(str(path_or_id), **kwargs)
    return tokenizer, ImagePreprocess.from_processor(processor)


class ClipSimilarityReward(FrameReward):
    """`scale * cos(image, text)` of a transformers `CLIPModel`, per frame.

    Args:
        model: the CLIP model (frozen here).
        tokenizer: its tokenizer (callable like a transformers tokenizer).
        preprocess: differentiable image preprocessing matching the model's own image transform
            (default: the class's `default_preprocess`, else 224 shortest-edge resize + centre crop).
        scale: "cosine" or "logit" (see the module docstring).
        max_length: token limit (default: the text model's position table).
        text_clean: prompt rewrite applied before tokenizing (default: the class's `default_text_clean`).
    """

    name = "clip_similarity"
    default_scale: Scale = "cosine"
    #: Prompt rewrite before the tokenizer (None: the tokenizer sees the prompt as given). Subclasses set a
    #: `staticmethod`, so reading it from an instance gives the plain function.
    default_text_clean: Callable[[str], str] | None = None

    def __init__(
        self,
        model: CLIPModel,
        tokenizer: Any,
        preprocess: Preprocess | None = None,
        *,
        scale: Scale | None = None,
        max_length: int | None = None,
        text_clean: Callable[[str], str] | None = None,
    ) -> None:
        super().__init__()
        scale = scale or self.default_scale
        if scale not in ("cosine", "logit"):
            raise ValueError(f"scale must be cosine or logit, got {scale!r}")
        self.model = model
        self.tokenizer = tokenizer
        self.preprocess = preprocess or self.default_preprocess(model)
        self.scale = scale
        self.max_length = max_length or model.config.text_config.max_position_embeddings
        self.text_clean = text_clean if text_clean is not None else self.default_text_clean
        self.freeze()

    @classmethod
    def default_preprocess(cls, model: CLIPModel) -> Preprocess:
        """Image preprocessing when none is given: transformers' CLIP processor defaults (224 crop)."""
        return ImagePreprocess()

    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str | Path,
        *,
        processor_path: str | Path | None = None,
        torch_dtype: torch.dtype = torch.float32,
        **kwargs: Any,
    ) -> ClipSimilarityReward:
        """Load model, tokenizer and processor settings from a local directory or hub id.

        Args:
            path_or_id: `CLIPModel` weights (directory or hub id).
            processor_path: where tokenizer and image processor live, if not beside the weights.
            torch_dtype: model dtype.
            **kwargs: forwarded to the constructor (`scale`, `max_length`).
        """
        from rfvideo.models.hub import resolve_pretrained

        path_or_id = resolve_pretrained(path_or_id, what="CLIP model")
        model = CLIPModel.from_pretrained(str(path_or_id), torch_dtype=torch_dtype)
        tokenizer, preprocess = load_clip_processing(processor_path or path_or_id)
        return cls(model, tokenizer, preprocess, **kwargs)

    @property
    def _device_dtype(self) -> tuple[torch.device, torch.dtype]:
        p = next(self.model.parameters())
        return p.device, p.dtype

    @torch.no_grad()
    def text_features(self, prompts: list[str]) -> torch.Tensor:
        """`n` prompts -> `(n d)` L2-normalised text embeddings (no grad)."""
        device, _ = self._device_dtype
        if self.text_clean is not None:
            prompts = [self.text_clean(p) for p in prompts]
        tok = self.tokenizer(
            prompts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        out = self.model.get_text_features(
            input_ids=tok["input_ids"].to(device), attention_mask=tok["attention_mask"].to(device)
        )
        return F.normalize(_features(out).float(), dim=-1)

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """`(n 3 H W)` in [0, 1] -> `(n d)` L2-normalised image embeddings (differentiable)."""
        device, dtype = self._device_dtype
        pixels = self.preprocess(images.to(device)).to(dtype)
        return F.normalize(_features(self.model.get_image_features(pixel_values=pixels)).float(), dim=-1)

    def score_images(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        unique = list(dict.fromkeys(prompts))  # frames of one video share a prompt: encode it once
        text = self.text_features(unique)[[unique.index(p) for p in prompts]]  # (n d)
        cos = (self.image_features(images) * text).sum(-1)
        if self.scale == "logit":
            cos = cos * self.model.logit_scale.detach().float().exp()
        return cos.to(images.device)


class ClipScoreReward(ClipSimilarityReward):
    """Plain CLIP text-image cosine (e.g. `openai/clip-vit-large-patch14`); "logit" gives 100-scale."""

    name = "clip_score"
