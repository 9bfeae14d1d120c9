"""HPSv2 / HPSv2.1 (Wu et al. 2023): an open_clip ViT-H-14 fine-tuned on human preferences, run here as a
transformers `CLIPModel`.

open_clip needs torchvision, which does not install beside our torch, so the released checkpoints
(`HPS_v2_compressed.pt`, `HPS_v2.1_compressed.pt`; a dict whose `state_dict` holds the open_clip weights)
are converted key by key into transformers' CLIP layout (`open_clip_to_hf`), loaded strictly into a
`CLIPModel` built from the `laion/CLIP-ViT-H-14-laion2B-s32B-b79K` config, whose tokenizer and image
processor settings (mean/std) match open_clip's ViT-H-14 ones. Score as in the authors' code
(`hpsv2.img_score.score`): the cosine of the normalised image and text embeddings (no logit scale),
~0.2-0.35.

Inputs as hpsv2 prepares them (tests/reward_crosscheck checks both against the hpsv2 package):
- image: hpsv2 builds its transform with `light_augmentation=True`, i.e. open_clip's letterbox (long side
  to 224, zero padding to a square; `rfvideo.rewards.preprocess.Letterbox`), so a 480x832 frame is scored
  whole, with black bars, not centre-cropped as transformers' CLIP processor would;
- prompt: open_clip's tokenizer cleans it first (`ftfy.fix_text`, double `html.unescape`, whitespace;
  `clean_prompt_open_clip`), then the same BPE as transformers' CLIP tokenizer.

open_clip -> transformers:
    visual.conv1.weight                  vision_model.embeddings.patch_embedding.weight
    visual.class_embedding               vision_model.embeddings.class_embedding
    visual.positional_embedding          vision_model.embeddings.position_embedding.weight
    visual.ln_pre / ln_post              vision_model.pre_layrnorm / post_layernorm
    visual.proj (w e)                    visual_projection.weight (e w), transposed
    token_embedding.weight               text_model.embeddings.token_embedding.weight
    positional_embedding                 text_model.embeddings.position_embedding.weight
    ln_final                             text_model.final_layer_norm
    text_projection (w e)                text_projection.weight (e w), transposed
    logit_scale                          logit_scale
  per block ([visual.]transformer.resblocks.N -> {vision,text}_model.encoder.layers.N):
    ln_1 / ln_2                          layer_norm1 / layer_norm2
    attn.in_proj_{weight,bias} (3w ...)  self_attn.{q,k,v}_proj.{weight,bias}, split in q, k, v order
    attn.out_proj                        self_attn.out_proj
    mlp.c_fc / mlp.c_proj                mlp.fc1 / mlp.fc2
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, CLIPConfig, CLIPModel

from rfvideo.rewards.clip_score import CLIPImageProcessor, ClipSimilarityReward, Preprocess, Scale
from rfvideo.rewards.preprocess import Letterbox, clean_prompt_open_clip

__all__ = ["HPS_PROCESSOR", "HPSv2Reward", "hf_to_open_clip", "load_open_clip_state_dict", "open_clip_to_hf"]

HPS_PROCESSOR = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"

_TOP = {
    "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
    "visual.class_embedding": "vision_model.embeddings.class_embedding",
    "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
    "visual.ln_pre.weight": "vision_model.pre_layrnorm.weight",
    "visual.ln_pre.bias": "vision_model.pre_layrnorm.bias",
    "visual.ln_post.weight": "vision_model.post_layernorm.weight",
    "visual.ln_post.bias": "vision_model.post_layernorm.bias",
    "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
    "positional_embedding": "text_model.embeddings.position_embedding.weight",
    "ln_final.weight": "text_model.final_layer_norm.weight",
    "ln_final.bias": "text_model.final_layer_norm.bias",
    "logit_scale": "logit_scale",
}
_TRANSPOSED = {"visual.proj": "visual_projection.weight", "text_projection": "text_projection.weight"}
_BLOCK = {
    "ln_1": "layer_norm1",
    "ln_2": "layer_norm2",
    "attn.out_proj": "self_attn.out_proj",
    "mlp.c_fc": "mlp.fc1",
    "mlp.c_proj": "mlp.fc2",
}
# open_clip names the fused projection `attn.in_proj_weight` (underscore), everything else `<module>.weight`.
_BLOCK_RE = re.compile(r"^(visual\.)?transformer\.resblocks\.(\d+)\.(attn\.in_proj_|.+\.)(weight|bias)$")
_HF_BLOCK_RE = re.compile(r"^(vision|text)_model\.encoder\.layers\.(\d+)\.(.+)\.(weight|bias)$")
# Non-parameter entries some open_clip checkpoints carry (the text causal mask buffer).
_IGNORED = {"attn_mask"}


def open_clip_to_hf(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Convert an open_clip CLIP (ViT image tower, built-in text tower) state dict to transformers' names.

    A `module.` prefix (DDP) is stripped. Unknown keys (e.g. layer scale, attention pooling, a custom text
    tower) raise `ValueError` rather than being dropped.
    """
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state_dict.items():
        key = key.removeprefix("module.")
        if key in _IGNORED:
            continue
        if key in _TOP:
            out[_TOP[key]] = value
        elif key in _TRANSPOSED:
            out[_TRANSPOSED[key]] = value.t().contiguous()
        elif m := _BLOCK_RE.match(key):
            tower = "vision_model" if m.group(1) else "text_model"
            prefix = f"{tower}.encoder.layers.{m.group(2)}"
            name, kind = m.group(3)[:-1], m.group(4)
            if name == "attn.in_proj":
                for proj, part in zip(("q", "k", "v"), value.chunk(3, dim=0)):
                    out[f"{prefix}.self_attn.{proj}_proj.{kind}"] = part.contiguous()
            elif name in _BLOCK:
                out[f"{prefix}.{_BLOCK[name]}.{kind}"] = value
            else:
                unknown.append(key)
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"unknown open_clip keys (not a plain ViT CLIP?): {sorted(unknown)[:10]}")
    return out


def hf_to_open_clip(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of `open_clip_to_hf` (q/k/v fused back into `in_proj`); `position_ids` buffers are skipped."""
    top = {v: k for k, v in _TOP.items()}
    transposed = {v: k for k, v in _TRANSPOSED.items()}
    block = {v: k for k, v in _BLOCK.items()}
    out: dict[str, torch.Tensor] = {}
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state_dict.items():
        if key.endswith("position_ids"):
            continue
        if key in top:
            out[top[key]] = value
        elif key in transposed:
            out[transposed[key]] = value.t().contiguous()
        elif m := _HF_BLOCK_RE.match(key):
            prefix = f"{'visual.' if m.group(1) == 'vision' else ''}transformer.resblocks.{m.group(2)}"
            name, kind = m.group(3), m.group(4)
            if pm := re.fullmatch(r"self_attn\.([qkv])_proj", name):
                qkv.setdefault(f"{prefix}.attn.in_proj_{kind}", {})[pm.group(1)] = value
            elif name in block:
                out[f"{prefix}.{block[name]}.{kind}"] = value
            else:
                raise ValueError(f"unknown transformers CLIP key {key}")
        else:
            raise ValueError(f"unknown transformers CLIP key {key}")
    for key, parts in qkv.items():
        out[key] = torch.cat([parts["q"], parts["k"], parts["v"]], 0)
    return out


def load_open_clip_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read an open_clip checkpoint (a state dict, or a dict with `state_dict`) with `weights_only=True`."""
    ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(ckpt, dict) and "state_dict" in ckpt:
        ckpt = ckpt["state_dict"]
    if not isinstance(ckpt, dict) or not all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        raise ValueError(f"{path}: expected a state dict of tensors")
    return ckpt


class HPSv2Reward(ClipSimilarityReward):
    """HPSv2 / v2.1 per frame: `cos(image, text)` of the converted ViT-H-14 (or `scale="logit"`).

    Defaults follow hpsv2's scoring path: `Letterbox` at the vision tower's image size and open_clip's
    prompt cleaning (pass `preprocess=` / `text_clean=` to override).
    """

    name = "hps"
    default_scale: Scale = "cosine"
    default_text_clean = staticmethod(clean_prompt_open_clip)

    @classmethod
    def default_preprocess(cls, model: CLIPModel) -> Preprocess:
        """hpsv2's letterbox at the model's image size, OpenAI CLIP mean/std."""
        return Letterbox(size=int(model.config.vision_config.image_size))

    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls,
        path_or_id: str | Path,
        *,
        processor_path: str | Path | None = HPS_PROCESSOR,
        torch_dtype: torch.dtype = torch.float32,
        **kwargs: Any,
    ) -> HPSv2Reward:
        """Build from an HPS checkpoint.

        Args:
            path_or_id: `HPS_v2_compressed.pt` / `HPS_v2.1_compressed.pt` (open_clip format), or a directory /
                hub id of an already converted transformers `CLIPModel`.
            processor_path: directory or hub id with the ViT-H-14 `config.json`, tokenizer and image
                processor (no weights are read from it). Required with an open_clip checkpoint; with a
                converted model, None means "beside the weights".
            torch_dtype: model dtype.
            **kwargs: constructor options (`scale`, `max_length`, `preprocess`, `text_clean`).
        """
        from rfvideo.models.hub import resolve_pretrained

        path_or_id = resolve_pretrained(path_or_id, what="HPS checkpoint or CLIP model")
        processor_path = processor_path and resolve_pretrained(processor_path, what="HPS processor")
        path = Path(path_or_id)
        if path.is_file():
            if processor_path is None:
                raise ValueError(
                    "processor_path is required with an open_clip checkpoint (config and tokenizer)"
                )
            model = CLIPModel(CLIPConfig.from_pretrained(str(processor_path))).eval()
            missing, unexpected = model.load_state_dict(
                open_clip_to_hf(load_open_clip_state_dict(path)), strict=False
            )
            missing = [k for k in missing if not k.endswith("position_ids")]
            if missing or unexpected:
                raise ValueError(
                    f"{path}: checkpoint does not fit the config: missing {missing}, unexpected {unexpected}"
                )
        else:
            model = CLIPModel.from_pretrained(str(path_or_id), torch_dtype=torch_dtype)
        source = str(processor_path or path_or_id)
        tokenizer = AutoTokenizer.from_pretrained(source)
        if "preprocess" not in kwargs:
            # mean/std from the processor; the letterbox side is the vision tower's input size.
            processor = CLIPImageProcessor.from_pretrained(source)
            kwargs["preprocess"] = Letterbox(
                size=int(model.config.vision_config.image_size),
                mean=tuple(processor.image_mean),
                std=tuple(processor.image_std),
            )
        return cls(model.to(torch_dtype), tokenizer, **kwargs)
