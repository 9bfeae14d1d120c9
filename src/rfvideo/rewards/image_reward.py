"""ImageReward (Xu et al. 2023, THUDM/ImageReward): the paper's training reward, differentiable in the pixels.

Architecture (ImageReward v1.0, `ImageReward.pt`):
    image (224x224, CLIP mean/std) -> BLIP ViT-L/16 -> 197 image tokens (d_v = 1024)
    prompt -> BERT tokenizer ([CLS] ... [SEP], padded/truncated to 35) -> BLIP text encoder
        (BERT-base, 12 layers, each with cross-attention to the image tokens) -> hidden state at position 0
    -> MLP 768 -> 1024 -> 128 -> 64 -> 16 -> 1 (no activations; dropouts between, inactive in eval)
    -> (r - 0.16717362830052426) / 1.0333394966054072

ImageReward's released `score` feeds the tokenizer output unchanged, so position 0 holds [CLS], not BLIP
ITM's [ENC]; we follow the released code (`first_token="cls"`); "enc" is available for experiments.

Differences from the original pipeline (documented, not bugs):
- Resize: torchvision resizes a PIL image with PIL's bicubic filter (antialiased) and quantises to uint8;
  we resize the float tensor with `F.interpolate(mode="bicubic", antialias=True)` and never quantise,
  so pixel values differ by up to about one 8-bit step; this is what makes the reward differentiable.
- Attention masks: see `rfvideo.rewards.blip` (identical in fp32).

A video is scored frame by frame and the per-frame rewards are averaged (`FrameReward`); which frames
reach the reward is the ensemble's frame selector's job (the paper scores the last frame only).

Shapes: b batch, f frames, n = b*f images, H W input size, s image size (224), l text length, d width.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from transformers import AutoTokenizer, BlipTextModel, BlipVisionModel, PreTrainedTokenizerBase

from rfvideo.rewards.aesthetic import AestheticMLP
from rfvideo.rewards.base import FrameReward
from rfvideo.rewards.blip import (
    blip_text_config,
    blip_vision_config,
    convert_blip_text_state_dict,
    convert_blip_vision_state_dict,
)
from rfvideo.rewards.preprocess import center_crop, resize_shortest_edge

#: CLIP/BLIP normalisation used by ImageReward's `_transform`.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
#: ImageReward's reward normalisation constants (ImageReward.py).
IMAGE_REWARD_MEAN = 0.16717362830052426
IMAGE_REWARD_STD = 1.0333394966054072
#: Prompt length ImageReward tokenizes to (padding="max_length", truncation=True).
IMAGE_REWARD_MAX_LENGTH = 35


def resize_center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """torchvision `Resize(size)` + `CenterCrop(size)` on float tensors, differentiable.

    Args:
        images: (n 3 H W), any range.
        size: output side.

    Returns:
        (n 3 size size). The shorter side becomes `size`, the longer `int(size * long / short)`
        (torchvision's truncation); the crop window is placed with torchvision's rounding.
    """
    # antialias matches PIL's downscaling filter; float in, float out (no uint8 round trip).
    return center_crop(resize_shortest_edge(images, size), size, size, offset="round")


class ImageRewardMLP(AestheticMLP):
    """ImageReward's head: five Linear layers, no activations (they are commented out upstream).

    The same layer stack as the LAION improved aesthetic head (both descend from one script), with
    upstream's `layers` Sequential indices (Dropouts at 1, 3, 5), so checkpoint keys map 1:1.
    """


def convert_image_reward_state_dict(
    state: Mapping[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Split and rename an official `ImageReward.pt` state dict.

    Returns:
        (vision, text, mlp) state dicts for `BlipVisionModel`, `BlipTextModel` and `ImageRewardMLP`.

    Raises:
        ValueError: a key outside the known layout. `blip.vision_proj.*` / `blip.text_proj.*` (BLIP's
            contrastive projections, unused by the reward) are dropped on purpose.
    """
    vision: dict[str, torch.Tensor] = {}
    text: dict[str, torch.Tensor] = {}
    mlp: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("blip.visual_encoder."):
            vision[key.removeprefix("blip.visual_encoder.")] = value
        elif key.startswith("blip.text_encoder."):
            text[key.removeprefix("blip.text_encoder.")] = value
        elif key.startswith("mlp."):
            mlp[key.removeprefix("mlp.")] = value
        elif key.startswith(("blip.vision_proj.", "blip.text_proj.")):
            continue
        else:
            raise ValueError(f"unexpected key {key!r} in ImageReward checkpoint")
    return convert_blip_vision_state_dict(vision), convert_blip_text_state_dict(text), mlp


def load_blip_tokenizer(path: str | os.PathLike[str]) -> PreTrainedTokenizerBase:
    """A local `bert-base-uncased` tokenizer with BLIP's added tokens (`init_tokenizer` in BLIP's blip.py).

    BLIP sets bos to a new [DEC] token and adds [ENC]; the ids (30522, 30523 for bert-base-uncased) match
    the checkpoint's 30524-row word embedding.
    """
    from rfvideo.models.hub import resolve_pretrained

    tok = AutoTokenizer.from_pretrained(resolve_pretrained(path, what="BLIP tokenizer"))
    tok.add_special_tokens({"bos_token": "[DEC]"})
    tok.add_tokens(["[ENC]"], special_tokens=True)
    return tok


def _load_strict(module: nn.Module, state: Mapping[str, torch.Tensor], *, what: str) -> None:
    """`load_state_dict(strict=True)` with a ValueError naming missing/unexpected keys and bad shapes."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(f"{what}: missing keys {missing}, unexpected keys {unexpected}")
    bad = [
        f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items() if v.shape != own[k].shape
    ]
    if bad:
        raise ValueError(f"{what}: shape mismatch (checkpoint vs model) {bad}")
    module.load_state_dict(state, strict=True)


class ImageReward(FrameReward):
    """ImageReward as a differentiable `Reward`: mean over frames of the normalised per-frame score.

    Args:
        vision: BLIP ViT as `BlipVisionModel`.
        text: BLIP text encoder as `BlipTextModel` (cross-attention layers, no pooler).
        mlp: the reward head.
        tokenizer: BLIP's tokenizer (`load_blip_tokenizer`).
        image_size: ViT input side (224).
        max_length: prompt length in tokens (35).
        first_token: "cls" (released ImageReward) or "enc" (BLIP ITM: position 0 replaced by [ENC]).
        reward_mean, reward_std: output normalisation.
        name: log name.
    """

    def __init__(
        self,
        vision: BlipVisionModel,
        text: BlipTextModel,
        mlp: ImageRewardMLP,
        tokenizer: PreTrainedTokenizerBase,
        *,
        image_size: int = 224,
        max_length: int = IMAGE_REWARD_MAX_LENGTH,
        first_token: str = "cls",
        reward_mean: float = IMAGE_REWARD_MEAN,
        reward_std: float = IMAGE_REWARD_STD,
        name: str = "image_reward",
    ) -> None:
        super().__init__()
        if first_token not in ("cls", "enc"):
            raise ValueError(f"first_token must be 'cls' or 'enc', got {first_token!r}")
        if reward_std <= 0:
            raise ValueError(f"reward_std must be positive, got {reward_std}")
        self.name = name
        self.vision = vision
        self.text = text
        self.mlp = mlp
        self.tokenizer = tokenizer
        self.image_size = image_size
        self.max_length = max_length
        self.first_token = first_token
        self.reward_mean = reward_mean
        self.reward_std = reward_std
        self.register_buffer("pixel_mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)
        self.freeze()

    @classmethod
    def from_pretrained(
        cls,
        checkpoint: str | os.PathLike[str],
        *,
        med_config: str | os.PathLike[str],
        tokenizer: str | os.PathLike[str],
        vit: str | Mapping[str, int] = "large",
        image_size: int = 224,
        dtype: torch.dtype = torch.float32,
        **kwargs: Any,
    ) -> ImageReward:
        """Build from the official files, all local: no download.

        Args:
            checkpoint: `ImageReward.pt` (a plain state dict; loaded with `weights_only=True`).
            med_config: `med_config.json` from the ImageReward release.
            tokenizer: a local `bert-base-uncased` tokenizer directory.
            vit: "large" for ImageReward v1.0 (a size dict for tests).
            image_size: 224 for ImageReward v1.0.
            dtype: parameter dtype.
            **kwargs: forwarded to the constructor (name, first_token, ...).
        """
        with open(med_config) as fh:
            med = json.load(fh)
        vision_cfg = blip_vision_config(vit, image_size=image_size)
        text_cfg = blip_text_config(med, encoder_width=vision_cfg.hidden_size)
        state = torch.load(os.fspath(checkpoint), map_location="cpu", weights_only=True)
        if not isinstance(state, Mapping):
            raise ValueError(f"{checkpoint} does not hold a state dict (got {type(state).__name__})")
        vision_sd, text_sd, mlp_sd = convert_image_reward_state_dict(state)
        vision = BlipVisionModel(vision_cfg)
        text = BlipTextModel(text_cfg, add_pooling_layer=False)
        mlp = ImageRewardMLP(text_cfg.hidden_size)
        # strict: every parameter is filled, and the converter already refused unknown keys.
        for what, module, sd in (
            ("vision", vision, vision_sd),
            ("text", text, text_sd),
            ("mlp", mlp, mlp_sd),
        ):
            _load_strict(module, sd, what=f"{checkpoint} ({what})")
        model = cls(vision, text, mlp, load_blip_tokenizer(tokenizer), image_size=image_size, **kwargs)
        return model.to(dtype)  # the pixel mean/std buffers follow, so inputs are cast to this dtype

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """(n 3 H W) in [0,1] -> (n 3 s s) resized, centre-cropped, CLIP-normalised."""
        images = resize_center_crop(images, self.image_size)
        return (images - self.pixel_mean.to(images.dtype)) / self.pixel_std.to(images.dtype)

    def tokenize(self, prompts: Sequence[str], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts -> (ids (b l), mask (b l)) as ImageReward tokenizes them."""
        tok = self.tokenizer(
            list(prompts),
            padding="max_length",
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        ids = tok["input_ids"].to(device)
        if self.first_token == "enc":
            ids = ids.clone()
            ids[:, 0] = self.tokenizer.convert_tokens_to_ids("[ENC]")
        return ids, tok["attention_mask"].to(device)

    def score_pixels(self, pixels: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Normalised reward of preprocessed images.

        Args:
            pixels: (n 3 s s) preprocessed.
            ids, mask: (n l) token ids and attention mask, one row per image.

        Returns:
            (n,) rewards.
        """
        image_embeds = self.vision(pixel_values=pixels).last_hidden_state  # (n 1+p d_v)
        image_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=pixels.device)
        hidden = self.text(
            input_ids=ids,
            attention_mask=mask,
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=image_mask,
            is_decoder=False,  # bidirectional self-attention, as BLIP's "multimodal" mode
        ).last_hidden_state  # (n l d)
        raw = self.mlp(hidden[:, 0]).squeeze(-1)  # (n,)
        return (raw - self.reward_mean) / self.reward_std

    def score_images(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        """ImageReward of each image against its prompt.

        Args:
            images: (n 3 H W) in [0, 1].
            prompts: n prompts.

        Returns:
            (n,) rewards, differentiable w.r.t. `images`.
        """
        param_dtype = self.pixel_mean.dtype
        pixels = self.preprocess(images.to(param_dtype))
        ids, mask = self.tokenize(prompts, images.device)
        return self.score_pixels(pixels, ids, mask)
